//! `queue-depth`: how many requests wait, read from one of two sources.
//!
//! - A command that prints JSON, run as a bounded helper. Made for OpenClaw's
//!   `openclaw gateway call diagnostics.lanes --json`, which prints
//!   `{"ts":…,"lanes":[{"lane":"main","queuedCount":0,"activeCount":0,"maxConcurrent":8,…},…],
//!   "dynamic":null}`: the `queuedCount` of lane `main` counts agent turns waiting for the
//!   gateway's main lane (openclaw/docs `docs/concepts/queue.md`). A lane and a field, or any
//!   JSON pointer (RFC 6901), picks the number.
//! - A Prometheus metric on a loopback URL, by name and label equalities: llama.cpp's
//!   `llamacpp:requests_deferred` (llama-server `--metrics`). That gauge lags: it is a trend to
//!   hold for a window, not an exact depth. Ollama exposes no queue depth at all
//!   (ollama/ollama#3144).
//!
//! Unit: count. Unknown: the command failed or printed no JSON, the lane or pointer is not
//! there or not a number, the endpoint did not answer 200 within the deadline, the metric is
//! absent or NaN.

use std::time::Duration;

use serde_json::Value;

use super::exec::CommandParams;
use super::prometheus::{self, Selector};
use super::{Quantity, Sample, Signal, Unit, http, quote};

/// Which number of the command's JSON is the depth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonSelect {
    /// `field` of the element of the top-level `lanes` array whose `lane` is `lane`.
    Lane { lane: String, field: String },
    /// A JSON pointer, `/lanes/0/queuedCount`.
    Pointer(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueDepthParams {
    Command {
        command: CommandParams,
        select: JsonSelect,
    },
    Prometheus {
        /// Must name a loopback address (`127.0.0.1`, `::1`, `localhost`).
        url: url::Url,
        selector: Selector,
        deadline: Duration,
        /// Bytes of exposition read at most.
        cap: usize,
    },
}

impl QueueDepthParams {
    /// `<openclaw> gateway call diagnostics.lanes --json`, lane `main`, `queuedCount`. The CLI
    /// takes seconds to start (Node), hence the deadline.
    pub fn openclaw_main_lane(openclaw: impl Into<String>) -> Self {
        let mut command = CommandParams::new([
            openclaw.into(),
            "gateway".into(),
            "call".into(),
            "diagnostics.lanes".into(),
            "--json".into(),
        ]);
        command.deadline = Duration::from_secs(30);
        Self::Command {
            command,
            select: JsonSelect::Lane {
                lane: "main".into(),
                field: "queuedCount".into(),
            },
        }
    }

    /// `llamacpp:requests_deferred` at `url` (llama-server's `/metrics`).
    pub fn llamacpp_deferred(url: url::Url) -> Self {
        Self::Prometheus {
            url,
            selector: Selector::new("llamacpp:requests_deferred"),
            deadline: Duration::from_secs(5),
            cap: 1024 * 1024,
        }
    }
}

/// The number `select` names in `json`.
pub fn select_json(json: &[u8], select: &JsonSelect) -> Result<f64, String> {
    let doc: Value =
        serde_json::from_slice(json).map_err(|e| format!("not JSON ({e}): {}", quote(json)))?;
    let (found, what) = match select {
        JsonSelect::Pointer(p) => (doc.pointer(p), format!("JSON pointer {p}")),
        JsonSelect::Lane { lane, field } => {
            let Some(lanes) = doc.get("lanes").and_then(Value::as_array) else {
                return Err(format!("no \"lanes\" array: {}", quote(json)));
            };
            let Some(entry) = lanes
                .iter()
                .find(|l| l.get("lane").and_then(Value::as_str) == Some(lane))
            else {
                let names: Vec<&str> = lanes
                    .iter()
                    .filter_map(|l| l.get("lane").and_then(Value::as_str))
                    .collect();
                return Err(format!("no lane {lane:?} among {names:?}"));
            };
            (entry.get(field), format!("lane {lane:?} field {field:?}"))
        }
    };
    match found {
        None => Err(format!("{what}: not in the output")),
        Some(v) => v
            .as_f64()
            .filter(|n| n.is_finite())
            .ok_or_else(|| format!("{what}: {v} is not a number")),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Reads `selector` from the Prometheus text at `url`.
pub async fn read_metric(
    url: &url::Url,
    selector: &Selector,
    deadline: Duration,
    cap: usize,
) -> Result<f64, String> {
    if !is_loopback(url) {
        return Err(format!("{url}: not a loopback address"));
    }
    let (status, body) = http::get(url, deadline, cap)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if status != hyper::StatusCode::OK {
        return Err(format!("{url}: HTTP {status}: {}", quote(&body)));
    }
    let text = String::from_utf8_lossy(&body);
    let samples = prometheus::parse(&text).map_err(|e| format!("{url}: {e}"))?;
    selector.select(&samples).map_err(|e| format!("{url}: {e}"))
}

/// The `queue-depth` sampler.
#[derive(Debug)]
pub struct QueueDepth {
    params: QueueDepthParams,
}

impl QueueDepth {
    pub fn new(params: QueueDepthParams) -> Self {
        Self { params }
    }
}

impl Signal for QueueDepth {
    type Reading = Quantity;

    async fn sample(&mut self) -> Sample<Quantity> {
        let depth = match &self.params {
            QueueDepthParams::Command { command, select } => command
                .run()
                .await
                .and_then(|out| select_json(&out, select)),
            QueueDepthParams::Prometheus {
                url,
                selector,
                deadline,
                cap,
            } => read_metric(url, selector, *deadline, *cap).await,
        };
        match depth {
            Ok(n) => Sample::Known(Quantity::new(n, Unit::Count)),
            Err(reason) => Sample::unknown(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shape of `openclaw gateway call diagnostics.lanes --json` (openclaw@2026.9.6),
    // cut to three lanes.
    const LANES: &str = r#"{"ts":1764892800123,"lanes":[
        {"lane":"active-memory","queuedCount":0,"activeCount":0,"maxConcurrent":1,"draining":false,"generation":0,"blockedBy":null},
        {"lane":"main","queuedCount":4,"activeCount":8,"maxConcurrent":8,"draining":false,"generation":0,"blockedBy":null},
        {"lane":"subagent","queuedCount":1,"activeCount":0,"maxConcurrent":4,"draining":false,"generation":2,"blockedBy":"main"}
        ],"dynamic":null}"#;

    fn lane(lane: &str, field: &str) -> JsonSelect {
        JsonSelect::Lane {
            lane: lane.into(),
            field: field.into(),
        }
    }

    #[test]
    fn lanes_and_pointers_select_numbers() {
        let j = LANES.as_bytes();
        assert_eq!(select_json(j, &lane("main", "queuedCount")), Ok(4.0));
        assert_eq!(select_json(j, &lane("subagent", "queuedCount")), Ok(1.0));
        assert_eq!(
            select_json(j, &JsonSelect::Pointer("/lanes/1/activeCount".into())),
            Ok(8.0)
        );

        let e = select_json(j, &lane("cron", "queuedCount")).unwrap_err();
        assert!(
            e.contains("no lane \"cron\"") && e.contains("\"main\""),
            "{e}"
        );
        let e = select_json(j, &lane("main", "queued")).unwrap_err();
        assert!(e.contains("not in the output"), "{e}");
        let e = select_json(j, &lane("subagent", "blockedBy")).unwrap_err();
        assert!(e.contains("is not a number"), "{e}");
        let e = select_json(j, &JsonSelect::Pointer("/dynamic".into())).unwrap_err();
        assert!(e.contains("null is not a number"), "{e}");
        let e = select_json(b"gateway not running", &lane("main", "queuedCount")).unwrap_err();
        assert!(
            e.starts_with("not JSON") && e.contains("gateway not running"),
            "{e}"
        );
        let e = select_json(b"{\"lanes\":{}}", &lane("main", "queuedCount")).unwrap_err();
        assert!(e.contains("no \"lanes\" array"), "{e}");
    }

    #[test]
    fn only_loopback_urls_are_read() {
        for ok in [
            "http://127.0.0.1:1/m",
            "http://[::1]:1/m",
            "http://localhost/m",
            "http://127.8.0.1/",
        ] {
            assert!(is_loopback(&url::Url::parse(ok).unwrap()), "{ok}");
        }
        for bad in ["http://10.0.0.1/m", "http://example.com/m", "http://[::2]/"] {
            assert!(!is_loopback(&url::Url::parse(bad).unwrap()), "{bad}");
        }
    }
}
