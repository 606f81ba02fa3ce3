//! What `launchgraph up` runs: the signals (SIGTERM and SIGINT stop, SIGHUP reloads), the
//! control socket, the loopback metrics listener, and the supervisor
//! ([`crate::engine::runtime::supervise`]) they all talk to.
//!
//! The control socket is bound first, so a second daemon refuses to start before it touches
//! any unit. Each request from the socket, and each scrape of `GET /metrics`, is handed to the
//! supervising task with a channel for its answer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming as HttpBody};
use hyper::{Method, Request as HttpRequest, Response as HttpResponse, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::control::protocol::{Request, Response};
use crate::control::server::{ControlServer, Incoming, ServerConfig};
use crate::engine::runtime::{self, ControlRequest, Ended};
use crate::exit;

/// What `launchgraph up` needs besides the units directory.
pub struct UpConfig {
    pub supervisor: runtime::SupervisorConfig,
    /// The control socket (see [`crate::paths::default_socket_path`]).
    pub socket: PathBuf,
    /// The group whose members may act through the socket.
    pub admin_group: Option<String>,
    /// Serve `GET /metrics` on this loopback address.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for UpConfig {
    fn default() -> Self {
        Self {
            supervisor: runtime::SupervisorConfig::default(),
            socket: crate::paths::default_socket_path(),
            admin_group: None,
            metrics_listen: None,
        }
    }
}

/// Compiles `dir` and supervises it until SIGTERM or SIGINT, then stops everything in reverse
/// order. Returns the process exit code.
///
/// The control socket is bound first, so a second daemon refuses to start before it touches
/// any unit. An invalid units directory does not make the daemon exit (under launchd that would
/// be a relaunch every ten seconds, each logging the same errors): every error is logged and
/// given to whoever asks over the socket, and the directory is read again on SIGHUP or
/// `launchgraph reload`. SIGTERM or SIGINT then exits with 78.
pub async fn up(dir: PathBuf, config: UpConfig) -> u8 {
    // What the daemon inherited without close-on-exec never reaches what it starts.
    crate::process::mark_inherited_close_on_exec();
    let (mut term, mut int, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        _ => {
            tracing::error!("cannot install signal handlers");
            return exit::SOFTWARE;
        }
    };
    // After the handlers: an ignored SIGHUP (`nohup`) must not be reset to "terminate" first.
    crate::process::reset_inherited_ignored_signals();
    if let Some(addr) = config.metrics_listen
        && !addr.ip().is_loopback()
    {
        tracing::error!(
            "--metrics-listen {addr}: only a loopback address is allowed (127.0.0.1 or [::1])"
        );
        return exit::USAGE;
    }
    let mut server_config = ServerConfig::new(&config.socket);
    server_config.admin_group = config.admin_group.clone();
    let server = match ControlServer::bind(&server_config) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return exit::CANTCREAT;
        }
    };
    // Before anything reads the run records: they are this daemon's alone.
    let state_dir = config.supervisor.state_dir.clone();
    let locked =
        tokio::task::spawn_blocking(move || crate::engine::runs::lock_state_dir(&state_dir)).await;
    let Ok(locked) = locked else {
        tracing::error!("the state directory's lock task failed");
        return exit::SOFTWARE;
    };
    let _state_lock = match locked {
        Ok(lock) => lock,
        Err(e @ crate::engine::runs::LockError::Held { .. }) => {
            tracing::error!("{e}");
            return exit::STATE_LOCKED;
        }
        Err(e) => {
            tracing::error!("{e}");
            return exit::IO;
        }
    };
    tracing::info!(socket = %config.socket.display(), "control socket ready");
    let server_stop = CancellationToken::new();
    let (incoming_tx, incoming) = mpsc::channel::<Incoming>(64);
    let server_task = tokio::spawn(server.serve(incoming_tx, server_stop.clone()));

    let shutdown = CancellationToken::new();
    let (control_tx, control_rx) = mpsc::channel(64);
    tokio::spawn(bridge(incoming, control_tx.clone()));
    if let Some(addr) = config.metrics_listen {
        match serve_metrics(addr, control_tx.clone(), shutdown.clone()).await {
            Ok(bound) => tracing::info!("metrics on http://{bound}/metrics"),
            Err(e) => tracing::error!("--metrics-listen {addr}: {e}"),
        }
    }
    let supervisor = runtime::supervise(dir, config.supervisor, control_rx, shutdown.clone());
    tokio::pin!(supervisor);
    let ended = loop {
        tokio::select! {
            ended = &mut supervisor => break ended,
            _ = term.recv() => {
                tracing::info!(signal = "SIGTERM", "shutdown requested");
                shutdown.cancel();
            }
            _ = int.recv() => {
                tracing::info!(signal = "SIGINT", "shutdown requested");
                shutdown.cancel();
            }
            _ = hup.recv() => {
                tracing::info!(signal = "SIGHUP", "re-reading the units directory");
                reload_on_hup(&control_tx);
            }
        }
    };
    shutdown.cancel();
    server_stop.cancel();
    let _ = server_task.await;
    match ended {
        Ended::AllStopped => exit::OK,
        Ended::NeverLoaded => exit::CONFIG,
    }
}

/// Hands each request from the socket to the supervisor, and its answer back.
async fn bridge(
    mut incoming: mpsc::Receiver<Incoming>,
    control: mpsc::Sender<runtime::ControlRequest>,
) {
    while let Some(inc) = incoming.recv().await {
        let request = inc.request;
        if let Request::Events { .. } = request {
            // The ring is replayed first, so the stream holds at least all of it.
            let reply = inc.reply.stream(runtime::EVENT_RING + 64);
            if control
                .send(runtime::ControlRequest { request, reply })
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        let (reply, mut answer) = mpsc::channel(1);
        if control
            .send(runtime::ControlRequest { request, reply })
            .await
            .is_err()
        {
            return;
        }
        let replier = inc.reply;
        tokio::spawn(async move {
            if let Some(r) = answer.recv().await {
                replier.send(r);
            }
        });
    }
}

/// SIGHUP is `launchgraph reload`: the answer is logged rather than sent anywhere.
fn reload_on_hup(control: &mpsc::Sender<runtime::ControlRequest>) {
    let (reply, mut answer) = mpsc::channel(1);
    let request = runtime::ControlRequest {
        request: Request::Reload { dry_run: false },
        reply,
    };
    if control.try_send(request).is_err() {
        tracing::warn!("cannot reload now: the supervisor is busy");
        return;
    }
    tokio::spawn(async move {
        // A refusal was logged, with every error, where it was decided.
        if let Some(Response::Reload(r)) = answer.recv().await {
            tracing::info!(
                "reload: added {:?}, removed {:?}, changed {:?}, cycled {:?}",
                r.added,
                r.removed,
                r.changed,
                r.cycled
            );
        }
    });
}

/// `up --metrics-listen`: binds `addr` (a loopback address; checked before) and serves until `shutdown`. Returns
/// the bound address (useful with port 0).
async fn serve_metrics(
    addr: SocketAddr,
    control: mpsc::Sender<ControlRequest>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((s, _)) => s,
                    Err(_) => continue,
                },
            };
            let control = control.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| answer(req, control.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

async fn answer(
    req: HttpRequest<HttpBody>,
    control: mpsc::Sender<ControlRequest>,
) -> Result<HttpResponse<Full<Bytes>>, Infallible> {
    let respond = |status: StatusCode, body: String| {
        let mut r = HttpResponse::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        );
        r
    };
    if req.method() != Method::GET || req.uri().path() != "/metrics" {
        return Ok(respond(
            StatusCode::NOT_FOUND,
            "only GET /metrics is served here\n".into(),
        ));
    }
    let (reply, mut rx) = mpsc::channel(1);
    let sent = control
        .send(ControlRequest {
            request: Request::Metrics,
            reply,
        })
        .await;
    match (sent, rx.recv().await) {
        (Ok(()), Some(Response::Metrics { text })) => Ok(respond(StatusCode::OK, text)),
        // The units directory is invalid: nothing to measure yet.
        (Ok(()), Some(Response::Error { message, .. })) => Ok(respond(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{message}\n"),
        )),
        _ => Ok(respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "launchgraph is shutting down\n".into(),
        )),
    }
}
