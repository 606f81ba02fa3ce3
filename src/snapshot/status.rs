//! The daemon's live status of every unit, asked over its control socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::collect::{CollectFuture, Collected, Collector, Content};
use crate::control::client::{self, ClientError};
use crate::control::protocol::{Request, Response};

/// Asks the daemon at a control socket; none given is a warning.
pub(super) struct LiveStatus {
    socket: Option<PathBuf>,
}

impl LiveStatus {
    pub(super) fn new(socket: Option<PathBuf>) -> Self {
        Self { socket }
    }
}

impl Collector for LiveStatus {
    fn name(&self) -> &'static str {
        "live status"
    }

    fn collect(self: Box<Self>, timeout: Duration) -> CollectFuture {
        Box::pin(async move { live_status(self.socket.as_deref(), timeout).await })
    }
}

/// The daemon's status of every unit, as `launchgraph status` gets it.
async fn live_status(socket: Option<&Path>, timeout: Duration) -> Collected {
    let Some(socket) = socket else {
        return Collected::warning(
            "live status not collected: no control socket was given".to_owned(),
        );
    };
    let answer = tokio::time::timeout(
        timeout,
        client::request(socket, Request::Status { unit: None }),
    )
    .await;
    match answer {
        Ok(Ok(Response::Status { units })) => {
            let mut c = Collected::default();
            c.add(
                "status.json",
                Content::Json(json!({ "socket": socket, "units": units })),
            );
            c
        }
        Ok(Ok(Response::Error { code, message })) => Collected::warning(format!(
            "live status not collected: the daemon at {} answered {code:?}: {message}",
            socket.display()
        )),
        Ok(Ok(other)) => Collected::warning(format!(
            "live status not collected: the daemon at {} answered a status request with {other:?}",
            socket.display()
        )),
        Ok(Err(ClientError::NotRunning { path })) => Collected::warning(format!(
            "daemon not running: nothing answers at {}",
            path.display()
        )),
        Ok(Err(e)) => Collected::warning(format!("live status not collected: {e}")),
        Err(_) => Collected::warning(format!(
            "live status not collected: the daemon at {} gave no answer within {}",
            socket.display(),
            humantime::format_duration(timeout)
        )),
    }
}
