//! Ollama: its version and model list, asked over its HTTP API.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use serde_json::Value as Json;

use super::collect::{CollectFuture, Collected, Collector, Content};

/// Where Ollama listens unless told otherwise: its own default bind address.
pub(crate) const DEFAULT_OLLAMA: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 11434));

/// The most of an Ollama answer that is kept (a model list is a few KiB per model).
const MAX_OLLAMA_BYTES: usize = 8 * 1024 * 1024;

/// Asks Ollama's API at one address.
pub(super) struct Ollama {
    addr: SocketAddr,
}

impl Ollama {
    pub(super) fn new(addr: SocketAddr) -> Self {
        Self { addr }
    }
}

impl Collector for Ollama {
    fn name(&self) -> &'static str {
        "ollama"
    }

    fn collect(self: Box<Self>, timeout: Duration) -> CollectFuture {
        Box::pin(ollama(self.addr, timeout))
    }
}

/// `GET /api/version` and `GET /api/tags`, together bounded by `timeout`. No proxy (one from
/// the environment would answer for Ollama), no redirects, HTTP/1 only, as the probes do.
async fn ollama(addr: SocketAddr, timeout: Duration) -> Collected {
    let mut c = Collected::default();
    let http = match reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .http1_only()
        .user_agent(concat!(
            "launchgraph/",
            env!("CARGO_PKG_VERSION"),
            " snapshot"
        ))
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            c.warn(format!("ollama not asked: no HTTP client: {e}"));
            return c;
        }
    };
    let deadline = crate::clock::deadline_tokio(timeout);
    for endpoint in ["version", "tags"] {
        let url = format!("http://{addr}/api/{endpoint}");
        let attempt = async {
            let mut response = http.get(&url).send().await?;
            let status = response.status();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_OLLAMA_BYTES {
                    return Ok((status, None));
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>((status, Some(body)))
        };
        match tokio::time::timeout_at(deadline, attempt).await {
            Err(_) => {
                c.warn(format!(
                    "ollama at {addr}: GET /api/{endpoint} gave no answer within {}",
                    humantime::format_duration(timeout)
                ));
                break;
            }
            Ok(Err(e)) if e.is_connect() => {
                c.warn(format!(
                    "ollama not reachable at {addr}: {}",
                    innermost_cause(&e)
                ));
                break;
            }
            Ok(Err(e)) => c.warn(format!(
                "ollama at {addr}: GET /api/{endpoint}: {}",
                innermost_cause(&e)
            )),
            Ok(Ok((status, _))) if status != reqwest::StatusCode::OK => c.warn(format!(
                "ollama at {addr}: GET /api/{endpoint} answered {status}"
            )),
            Ok(Ok((_, None))) => c.warn(format!(
                "ollama at {addr}: GET /api/{endpoint} answered more than {MAX_OLLAMA_BYTES} \
                 bytes; not kept"
            )),
            Ok(Ok((_, Some(body)))) => match serde_json::from_slice::<Json>(&body) {
                Ok(v) => c.add(format!("ollama/{endpoint}.json"), Content::Json(v)),
                Err(e) => c.warn(format!(
                    "ollama at {addr}: GET /api/{endpoint} did not answer JSON: {e}"
                )),
            },
        }
    }
    c
}

/// The last cause in an error's chain: "connection refused", not the URL again.
fn innermost_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
