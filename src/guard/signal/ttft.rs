//! `ttft`: a model server's time to first token, measured with a one-token streamed request,
//! and split into phases, so that slowness is a set of numbers rather than a guess.
//!
//! **A probe never loads a model.** Ollama loads a model on any request for it (gigabytes of
//! memory on a 16 GB host), and every request resets the loaded model's expiry
//! (ollama/ollama `server/sched.go`, `useLoadedRunner`). So the sampler first asks what is
//! loaded, and a model that is not is an unknown sample:
//! - Ollama (`Api::Ollama`): `GET /api/ps` must list the model (`models[].name` or `.model`;
//!   a name without a tag means `:latest`), then `POST /api/generate` with `stream: true`,
//!   `options.num_predict: 1`, `temperature: 0` and the `keep_alive` the gateway uses, so the
//!   probe keeps the model no longer than the gateway's own requests would.
//! - OpenAI-compatible servers such as llama.cpp's `llama-server` (`Api::OpenAi`):
//!   `GET /v1/models` must list the model as an `id` (and, where an entry has a
//!   `status.value`, as llama-server's router mode gives, it must be `loaded`), then
//!   `POST /v1/chat/completions` with `stream: true`, `max_tokens: 1`.
//!
//! Without a model (`TtftParams::model` is `None`) the sampler measures whatever the server
//! has loaded: the first model `/api/ps` (or `/v1/models`, as loaded) lists, picked afresh
//! each sample; none loaded is an unknown sample, as for a named model.
//!
//! A model can still unload between the check and the request; Ollama's `load_duration` then
//! shows it, and such a sample is not idle.
//!
//! Phases, on the monotonic clock, for the generation request (t0 before the connect): t1
//! connected, t2 request written, t3 status and headers parsed, t4 first chunk carrying a
//! token (a non-empty `response` or `thinking` for Ollama, `delta.content` or
//! `delta.reasoning_content` for OpenAI; a stream that ends without one uses its final
//! chunk), t5 end of stream. Reported: `connect` = t1−t0 (the host leg), `request` = t2−t1,
//! `headers` = t3−t2, `first_token` = t4−t2 (the sample's value, in seconds), `total` = t5−t2.
//! From Ollama's final chunk (nanoseconds): `load_duration`, `prompt_eval_duration`,
//! `eval_duration`, `total_duration`, and the residual
//! `queue_wait = total − load − prompt_eval − eval`: with a loaded model, Ollama takes its
//! parallel-slot semaphore after the load checkpoint (ollama/ollama `llm/llama_server.go`,
//! `s.sem.Acquire`), so the residual is the wait for a slot plus templating.
//!
//! A probe that passes its deadline once the model was found loaded is a sample equal to the
//! deadline (`timed_out`), not an unknown: a server too slow to answer is the very thing a
//! guard on this signal watches for.
//!
//! **Idle**: each sample says whether it was taken while the server had nothing else to do,
//! since a threshold on idle latency must not trip on a busy queue (that is what
//! `queue-depth` is for).
//! - Ollama exposes no count of requests in flight (ollama/ollama#3144), but its own
//!   durations say whether this request waited: idle when `queue_wait` ≤
//!   `idle_queue_wait_max` (50 ms) and `load_duration` ≤ `idle_load_max` (100 ms). Without a
//!   final chunk (deadline, error), idleness is undetermined.
//! - llama-server: just before the request, `GET /slots`: idle when no slot
//!   `is_processing`; when `/slots` is off (it needs `--slots`), `/metrics` (needs
//!   `--metrics`): idle when `llamacpp:requests_processing` and `llamacpp:requests_deferred`
//!   are both 0; neither available: undetermined.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::prometheus::{self, Selector};
use super::{Quantity, Reading, Sample, Signal, Unit, http, quote};

/// Which API the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Ollama,
    /// OpenAI-compatible chat completions (llama.cpp's llama-server and the like).
    OpenAi,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtftParams {
    /// The server, `http://127.0.0.1:11434`.
    pub base_url: url::Url,
    pub api: Api,
    /// `None`: whatever model the server has loaded when the sample is taken.
    pub model: Option<String>,
    /// Ollama's `keep_alive` (`"15m"`, `"-1"`): the gateway's. `None` leaves the server's
    /// default (`OLLAMA_KEEP_ALIVE`).
    pub keep_alive: Option<String>,
    pub prompt: String,
    /// Over the whole sample: the loaded-model check and the generation.
    pub deadline: Duration,
    /// Bytes read from any one response.
    pub cap: usize,
    pub idle_queue_wait_max: Duration,
    pub idle_load_max: Duration,
}

impl TtftParams {
    pub fn new(base_url: url::Url, api: Api, model: impl Into<String>) -> Self {
        Self {
            base_url,
            api,
            model: Some(model.into()),
            keep_alive: None,
            prompt: "ok".into(),
            deadline: Duration::from_secs(30),
            cap: 256 * 1024,
            idle_queue_wait_max: Duration::from_millis(50),
            idle_load_max: Duration::from_millis(100),
        }
    }

    /// Measures whatever model the server has loaded.
    pub fn any_loaded(base_url: url::Url, api: Api) -> Self {
        Self {
            model: None,
            ..Self::new(base_url, api, "")
        }
    }
}

/// Client-side phases of the generation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phases {
    pub connect: Duration,
    pub request: Duration,
    /// Request written to status and headers parsed.
    pub headers: Option<Duration>,
    /// Request written to the first chunk carrying a token.
    pub first_token: Option<Duration>,
    /// Request written to the end of the stream.
    pub total: Option<Duration>,
}

/// Ollama's own account of the request, from its final chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSplit {
    pub total: Duration,
    pub load: Duration,
    pub prompt_eval: Duration,
    pub eval: Duration,
    /// `total − load − prompt_eval − eval`, saturating: the wait for a parallel slot.
    pub queue_wait: Duration,
}

/// Whether the server was otherwise idle when the sample was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idleness {
    Idle,
    Busy,
    Undetermined,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtftReading {
    pub phases: Phases,
    pub server: Option<ServerSplit>,
    pub idle: Idleness,
    /// The deadline passed before the stream ended.
    pub timed_out: bool,
    pub deadline: Duration,
}

impl Reading for TtftReading {
    /// The time to first token; the deadline when none came in time.
    fn quantity(&self) -> Quantity {
        let t = self.phases.first_token.unwrap_or(self.deadline);
        Quantity::new(t.as_secs_f64(), Unit::Seconds)
    }
}

/// The models `/api/ps` lists as loaded, in its order (`name`, else `model`).
pub fn ollama_loaded_models(ps: &[u8]) -> Result<Vec<String>, String> {
    Ok(ollama_models(ps)?
        .iter()
        .filter_map(|m| {
            ["name", "model"]
                .iter()
                .find_map(|k| m.get(*k).and_then(Value::as_str))
                .map(str::to_owned)
        })
        .collect())
}

fn ollama_models(ps: &[u8]) -> Result<Vec<Value>, String> {
    let doc: Value = serde_json::from_slice(ps)
        .map_err(|e| format!("/api/ps: not JSON ({e}): {}", quote(ps)))?;
    match doc.get("models").and_then(Value::as_array) {
        Some(models) => Ok(models.clone()),
        None => Err(format!("/api/ps: no \"models\" array: {}", quote(ps))),
    }
}

/// Whether `/api/ps` lists `model` (a name without a tag is `:latest`).
pub fn ollama_has_loaded(ps: &[u8], model: &str) -> Result<bool, String> {
    let models = ollama_models(ps)?;
    let wanted = with_tag(model);
    Ok(models.iter().any(|m| {
        ["name", "model"]
            .iter()
            .filter_map(|k| m.get(*k).and_then(Value::as_str))
            .any(|n| with_tag(n) == wanted)
    }))
}

fn with_tag(name: &str) -> String {
    // A tag follows the last ':' of the last path segment ("host:port/ns/model" has a colon
    // in the host).
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') {
        name.to_owned()
    } else {
        format!("{name}:latest")
    }
}

/// Whether `/v1/models` lists `model` as loaded.
pub fn openai_has_loaded(models: &[u8], model: &str) -> Result<bool, String> {
    Ok(openai_loaded_models(models)?.iter().any(|m| m == model))
}

/// The model ids `/v1/models` lists as loaded (an entry with a `status.value`, as
/// llama-server's router mode gives, must say `loaded`), in its order.
pub fn openai_loaded_models(models: &[u8]) -> Result<Vec<String>, String> {
    let doc: Value = serde_json::from_slice(models)
        .map_err(|e| format!("/v1/models: not JSON ({e}): {}", quote(models)))?;
    let Some(data) = doc.get("data").and_then(Value::as_array) else {
        return Err(format!("/v1/models: no \"data\" array: {}", quote(models)));
    };
    Ok(data
        .iter()
        .filter(|m| {
            m.pointer("/status/value")
                .and_then(Value::as_str)
                .is_none_or(|s| s == "loaded")
        })
        .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_owned))
        .collect())
}

/// What one streamed line said.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A chunk with a token.
    Token,
    /// A chunk without one (a role header, an empty delta).
    Other,
    /// The final chunk; Ollama's carries its durations.
    Done(Option<ServerSplit>),
    Error(String),
}

fn nanos(v: &Value, key: &str) -> Duration {
    Duration::from_nanos(v.get(key).and_then(Value::as_u64).unwrap_or(0))
}

/// One NDJSON line of Ollama's `/api/generate` stream.
pub fn ollama_line(line: &[u8]) -> StreamEvent {
    let Ok(v) = serde_json::from_slice::<Value>(line) else {
        return StreamEvent::Error(format!("not a JSON line: {}", quote(line)));
    };
    if let Some(e) = v.get("error") {
        return StreamEvent::Error(format!("Ollama: {}", e.as_str().unwrap_or(&e.to_string())));
    }
    let text = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    if v.get("done").and_then(Value::as_bool) == Some(true) {
        let total = nanos(&v, "total_duration");
        let load = nanos(&v, "load_duration");
        let prompt_eval = nanos(&v, "prompt_eval_duration");
        let eval = nanos(&v, "eval_duration");
        let split = v.get("total_duration").map(|_| ServerSplit {
            total,
            load,
            prompt_eval,
            eval,
            queue_wait: total
                .saturating_sub(load)
                .saturating_sub(prompt_eval)
                .saturating_sub(eval),
        });
        return StreamEvent::Done(split);
    }
    if text("response") || text("thinking") {
        StreamEvent::Token
    } else {
        StreamEvent::Other
    }
}

/// One line of an OpenAI-style server-sent event stream.
pub fn openai_line(line: &[u8]) -> StreamEvent {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(data) = line.strip_prefix(b"data:") else {
        // Comments, `event:` and blank separators.
        return StreamEvent::Other;
    };
    let data = data.trim_ascii();
    if data == b"[DONE]" {
        return StreamEvent::Done(None);
    }
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return StreamEvent::Error(format!("not a JSON event: {}", quote(data)));
    };
    if let Some(e) = v.get("error") {
        return StreamEvent::Error(format!("server: {}", quote(e.to_string().as_bytes())));
    }
    let delta = v.pointer("/choices/0/delta");
    let text = |k: &str| {
        delta
            .and_then(|d| d.get(k))
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    if text("content") || text("reasoning_content") {
        StreamEvent::Token
    } else {
        StreamEvent::Other
    }
}

/// Reads a server's list of loaded models.
type ListedModels = fn(&[u8]) -> Result<Vec<String>, String>;

/// The `ttft` sampler.
#[derive(Debug)]
pub struct Ttft {
    params: TtftParams,
}

impl Ttft {
    pub fn new(params: TtftParams) -> Self {
        Self { params }
    }

    fn url(&self, path: &str) -> Result<url::Url, String> {
        self.params
            .base_url
            .join(path)
            .map_err(|e| format!("{}{path}: {e}", self.params.base_url))
    }

    /// GET `path`: the body of a 200, or why not.
    async fn get_ok(&self, path: &str, deadline: Duration) -> Result<Vec<u8>, String> {
        let url = self.url(path)?;
        let (status, body) = http::get(&url, deadline, self.params.cap)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if status != hyper::StatusCode::OK {
            return Err(format!("{url}: HTTP {status}: {}", quote(&body)));
        }
        Ok(body)
    }

    /// The model to measure: the configured one if the server has it loaded, else (with no
    /// model configured) the first one it has loaded; `None` when there is none.
    async fn loaded(&self, deadline: Duration) -> Result<Option<String>, String> {
        let (path, listed): (&str, ListedModels) = match self.params.api {
            Api::Ollama => ("/api/ps", ollama_loaded_models),
            Api::OpenAi => ("/v1/models", openai_loaded_models),
        };
        let body = self.get_ok(path, deadline).await?;
        match &self.params.model {
            Some(m) => {
                let has = match self.params.api {
                    Api::Ollama => ollama_has_loaded(&body, m)?,
                    Api::OpenAi => openai_has_loaded(&body, m)?,
                };
                Ok(has.then(|| m.clone()))
            }
            None => Ok(listed(&body)?.into_iter().next()),
        }
    }

    /// llama-server's view of its slots just before the request.
    async fn openai_idleness(&self, deadline: Duration) -> Idleness {
        if let Ok(body) = self.get_ok("/slots", deadline).await
            && let Ok(Value::Array(slots)) = serde_json::from_slice::<Value>(&body)
        {
            let busy = slots
                .iter()
                .any(|s| s.get("is_processing").and_then(Value::as_bool) == Some(true));
            return if busy { Idleness::Busy } else { Idleness::Idle };
        }
        if let Ok(body) = self.get_ok("/metrics", deadline).await
            && let Ok(samples) = prometheus::parse(&String::from_utf8_lossy(&body))
        {
            let read = |name: &str| Selector::new(name).select(&samples);
            if let (Ok(p), Ok(d)) = (
                read("llamacpp:requests_processing"),
                read("llamacpp:requests_deferred"),
            ) {
                return if p == 0.0 && d == 0.0 {
                    Idleness::Idle
                } else {
                    Idleness::Busy
                };
            }
        }
        Idleness::Undetermined
    }

    fn request_body(&self, model: &str) -> (&'static str, Vec<u8>) {
        let p = &self.params;
        match p.api {
            Api::Ollama => {
                let mut body = json!({
                    "model": model,
                    "prompt": p.prompt,
                    "stream": true,
                    "options": {"num_predict": 1, "temperature": 0},
                });
                if let Some(k) = &p.keep_alive {
                    body["keep_alive"] = json!(k);
                }
                ("/api/generate", body.to_string().into_bytes())
            }
            Api::OpenAi => (
                "/v1/chat/completions",
                json!({
                    "model": model,
                    "messages": [{"role": "user", "content": p.prompt}],
                    "stream": true,
                    "max_tokens": 1,
                    "temperature": 0,
                })
                .to_string()
                .into_bytes(),
            ),
        }
    }

    async fn measure(&self) -> Sample<TtftReading> {
        let p = &self.params;
        let start = Instant::now();
        let left = || p.deadline.saturating_sub(start.elapsed());
        let model = match self.loaded(left()).await {
            Err(reason) => return Sample::unknown(reason),
            Ok(None) => {
                return Sample::unknown(match &p.model {
                    Some(m) => format!("model {m} is not loaded; a probe never loads a model"),
                    None => "no model is loaded; a probe never loads a model".to_owned(),
                });
            }
            Ok(Some(m)) => m,
        };
        let mut idle = match p.api {
            Api::OpenAi => self.openai_idleness(left()).await,
            Api::Ollama => Idleness::Undetermined,
        };

        let (path, body) = self.request_body(&model);
        let url = match self.url(path) {
            Ok(u) => u,
            Err(reason) => return Sample::unknown(reason),
        };
        let timed_out = |phases: Phases, idle| {
            Sample::Known(TtftReading {
                phases,
                server: None,
                idle,
                timed_out: true,
                deadline: p.deadline,
            })
        };
        let zero = Phases {
            connect: Duration::ZERO,
            request: Duration::ZERO,
            headers: None,
            first_token: None,
            total: None,
        };
        let mut ex = match http::send(http::Call {
            url: &url,
            json: Some(body),
            deadline: left(),
            cap: p.cap,
        })
        .await
        {
            Ok(ex) => ex,
            Err(e) if e.is_deadline() => return timed_out(zero, Idleness::Undetermined),
            Err(e) => return Sample::unknown(format!("{url}: {e}")),
        };
        let sent = ex.request_sent();
        let mut phases = Phases {
            connect: ex.connected.saturating_duration_since(ex.started),
            request: sent.saturating_duration_since(ex.connected),
            headers: Some(ex.headers.saturating_duration_since(sent)),
            first_token: None,
            total: None,
        };
        if ex.status != hyper::StatusCode::OK {
            let status = ex.status;
            let body = ex.body().await.unwrap_or_default();
            return Sample::unknown(format!("{url}: HTTP {status}: {}", quote(&body)));
        }

        let parse_line = match p.api {
            Api::Ollama => ollama_line,
            Api::OpenAi => openai_line,
        };
        let mut pending: Vec<u8> = Vec::new();
        let mut server = None;
        let mut done = false;
        while !done {
            let chunk = match ex.next_chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) if e.is_deadline() => {
                    if p.api == Api::Ollama {
                        idle = Idleness::Undetermined;
                    }
                    return timed_out(phases, idle);
                }
                Err(e) => return Sample::unknown(format!("{url}: {e}")),
            };
            let at = Instant::now();
            pending.extend_from_slice(&chunk);
            while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                match parse_line(line) {
                    StreamEvent::Token => {
                        phases
                            .first_token
                            .get_or_insert(at.saturating_duration_since(sent));
                    }
                    StreamEvent::Other => {}
                    StreamEvent::Done(split) => {
                        phases
                            .first_token
                            .get_or_insert(at.saturating_duration_since(sent));
                        server = split;
                        done = true;
                    }
                    StreamEvent::Error(reason) => {
                        return Sample::unknown(format!("{url}: {reason}"));
                    }
                }
            }
        }
        // A last line without its newline.
        if !done && !pending.trim_ascii().is_empty() {
            match parse_line(pending.trim_ascii()) {
                StreamEvent::Done(split) => {
                    server = split;
                    done = true;
                }
                StreamEvent::Error(reason) => return Sample::unknown(format!("{url}: {reason}")),
                StreamEvent::Token | StreamEvent::Other => {}
            }
        }
        if !done && phases.first_token.is_none() {
            return Sample::unknown(format!("{url}: the stream ended without a token"));
        }
        phases.total = Some(sent.elapsed());
        if p.api == Api::Ollama {
            idle = match server {
                Some(s) if s.queue_wait <= p.idle_queue_wait_max && s.load <= p.idle_load_max => {
                    Idleness::Idle
                }
                Some(_) => Idleness::Busy,
                None => Idleness::Undetermined,
            };
        }
        Sample::Known(TtftReading {
            phases,
            server,
            idle,
            timed_out: false,
            deadline: p.deadline,
        })
    }
}

impl Signal for Ttft {
    type Reading = TtftReading;

    async fn sample(&mut self) -> Sample<TtftReading> {
        self.measure().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_ps_lists_loaded_models_by_name_or_model_with_latest_implied() {
        let ps = br#"{"models":[{"name":"llama3.1:8b","model":"llama3.1:8b","size":6654289920,
            "digest":"46e0c10c039e","expires_at":"2026-12-05T01:00:00Z","size_vram":6654289920},
            {"name":"smollm2:latest","model":"smollm2:latest","size":1}]}"#;
        assert_eq!(ollama_has_loaded(ps, "llama3.1:8b"), Ok(true));
        assert_eq!(ollama_has_loaded(ps, "smollm2"), Ok(true));
        assert_eq!(ollama_has_loaded(ps, "llama3.1"), Ok(false));
        assert_eq!(ollama_has_loaded(br#"{"models":[]}"#, "smollm2"), Ok(false));
        assert!(
            ollama_has_loaded(b"<html>", "x")
                .unwrap_err()
                .contains("not JSON")
        );
        assert_eq!(with_tag("reg:5000/ns/m"), "reg:5000/ns/m:latest");
    }

    #[test]
    fn v1_models_lists_the_model_and_router_mode_must_say_loaded() {
        let m = br#"{"object":"list","data":[{"id":"smollm2","object":"model","owned_by":"llamacpp"}]}"#;
        assert_eq!(openai_has_loaded(m, "smollm2"), Ok(true));
        assert_eq!(openai_has_loaded(m, "other"), Ok(false));
        let router = br#"{"data":[{"id":"a","status":{"value":"unloaded"}},{"id":"b","status":{"value":"loaded"}}]}"#;
        assert_eq!(openai_has_loaded(router, "a"), Ok(false));
        assert_eq!(openai_has_loaded(router, "b"), Ok(true));
    }

    #[test]
    fn ollama_lines_give_tokens_and_the_duration_split() {
        assert_eq!(
            ollama_line(br#"{"model":"m","created_at":"t","response":"Hi","done":false}"#),
            StreamEvent::Token
        );
        assert_eq!(
            ollama_line(br#"{"model":"m","response":"","thinking":"hmm","done":false}"#),
            StreamEvent::Token
        );
        assert_eq!(
            ollama_line(br#"{"model":"m","response":"","done":false}"#),
            StreamEvent::Other
        );
        let done = ollama_line(
            br#"{"model":"m","response":"","done":true,"done_reason":"length","total_duration":900000000,
            "load_duration":100000000,"prompt_eval_count":3,"prompt_eval_duration":200000000,
            "eval_count":1,"eval_duration":50000000}"#,
        );
        let StreamEvent::Done(Some(s)) = done else {
            panic!("{done:?}")
        };
        assert_eq!(s.queue_wait, Duration::from_millis(550));
        assert_eq!(s.load, Duration::from_millis(100));
        assert!(matches!(
            ollama_line(br#"{"error":"model requires more system memory"}"#),
            StreamEvent::Error(e) if e.contains("more system memory")
        ));
        // Durations that add up to more than the total leave no wait, rather than a panic.
        let StreamEvent::Done(Some(s)) =
            ollama_line(br#"{"done":true,"total_duration":1,"load_duration":5}"#)
        else {
            panic!()
        };
        assert_eq!(s.queue_wait, Duration::ZERO);
    }

    #[test]
    fn openai_events_give_tokens_and_the_end() {
        assert_eq!(
            openai_line(br#"data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}"#),
            StreamEvent::Other
        );
        assert_eq!(
            openai_line(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\r"),
            StreamEvent::Token
        );
        assert_eq!(
            openai_line(br#"data:{"choices":[{"delta":{"reasoning_content":"x"}}]}"#),
            StreamEvent::Token
        );
        assert_eq!(openai_line(b"data: [DONE]"), StreamEvent::Done(None));
        assert_eq!(openai_line(b": keep-alive"), StreamEvent::Other);
        assert!(matches!(
            openai_line(b"data: {\"error\":{\"code\":503}}"),
            StreamEvent::Error(_)
        ));
    }
}
