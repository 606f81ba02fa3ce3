//! The harness of the end-to-end runs against the real stack (tests/real_stack.rs,
//! tests/real_guards.rs): the programs `scripts/e2e-install.sh` installed, passed in
//! `LAUNCHGRAPH_E2E_*` variables; a run directory holding OpenClaw's own HOME, state and config
//! and the units, which on drop kills whatever of the run is left; the units for the model
//! server and the gateway; HTTP on loopback; waits on the daemon's transitions. See docs/e2e.md.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::control::cmdline;
use super::{Daemon, Transition, array, q};

pub const OLLAMA_PORT: u16 = 11434;
pub const GATEWAY_PORT: u16 = 18789;

pub fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

pub fn ms_between(a: u128, b: u128) -> i128 {
    (b as i128 - a as i128) / 1_000_000
}

/// A path the script passes in `name`.
pub fn given(name: &str) -> PathBuf {
    let v = std::env::var_os(name)
        .unwrap_or_else(|| panic!("{name} is unset: run scripts/e2e-real-stack.sh"));
    let p = PathBuf::from(v);
    assert!(p.exists(), "{name}={} does not exist", p.display());
    p
}

pub fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

pub fn say(t0: Instant, what: &str) {
    eprintln!("[e2e {:6.1}s] {what}", t0.elapsed().as_secs_f64());
}

/// What the installer gave, and the run's settings.
pub struct Stack {
    pub node: PathBuf,
    pub entry: PathBuf,
    pub version: String,
    pub proxy: PathBuf,
    pub cache: PathBuf,
    pub gateway_start_timeout: u64,
}

impl Stack {
    pub fn from_env() -> Stack {
        Stack {
            node: given("LAUNCHGRAPH_E2E_NODE"),
            entry: given("LAUNCHGRAPH_E2E_OPENCLAW_ENTRY"),
            version: std::env::var("LAUNCHGRAPH_E2E_OPENCLAW_VERSION")
                .expect("LAUNCHGRAPH_E2E_OPENCLAW_VERSION is unset: run scripts/e2e-real-stack.sh"),
            proxy: given("LAUNCHGRAPH_E2E_OLLAMA_PROXY"),
            cache: given("LAUNCHGRAPH_E2E_CACHE_DIR"),
            gateway_start_timeout: var("LAUNCHGRAPH_E2E_GATEWAY_START_TIMEOUT", "120")
                .parse()
                .expect("LAUNCHGRAPH_E2E_GATEWAY_START_TIMEOUT in seconds"),
        }
    }
}

/// A bound on everything after the installs (`LAUNCHGRAPH_E2E_DEADLINE`, 720 s).
pub struct Deadline(pub Instant, pub u64);

impl Deadline {
    /// `secs`, or less if the overall deadline comes first; fails once it has passed.
    pub fn cap(&self, secs: u64) -> Duration {
        let end = self.0 + Duration::from_secs(self.1);
        let left = end.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "the overall deadline of {}s after the installs has passed",
            self.1
        );
        Duration::from_secs(secs).min(left)
    }
}

// ---------------------------------------------------------------------------------------------
// The run directory, and what is left of the run

/// The processes of the run: every one carries `LAUNCHGRAPH_E2E_RUN=<run>` in its environment
/// (the units set it, children inherit it), which finds them even after they left their
/// process group.
pub fn run_pids(run: &Path) -> Vec<i32> {
    super::processes_with_env(&format!("LAUNCHGRAPH_E2E_RUN={}", run.display()))
}

/// `/tmp/openclaw*` entries: OpenClaw writes its default rolling log and state locks there
/// whatever its state directory.
pub fn openclaw_tmp() -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let Ok(dir) = fs::read_dir("/tmp") else {
        return out;
    };
    for e in dir.flatten() {
        let p = e.path();
        if !e.file_name().to_string_lossy().starts_with("openclaw") {
            continue;
        }
        if p.is_dir()
            && !p.is_symlink()
            && let Ok(inner) = fs::read_dir(&p)
        {
            out.extend(inner.flatten().map(|e| e.path()));
        }
        out.insert(p);
    }
    out
}

/// The run directory; on drop, kills what is left of the run, removes the `/tmp/openclaw*`
/// entries it created, and removes itself unless the test failed or `LAUNCHGRAPH_E2E_KEEP=1`.
pub struct RunDir {
    pub path: PathBuf,
    tmp_before: BTreeSet<PathBuf>,
}

impl RunDir {
    pub fn new() -> RunDir {
        let tmp = tempfile::Builder::new()
            .prefix("launchgraph-e2e.")
            .tempdir()
            .expect("a run directory");
        let path = fs::canonicalize(tmp.keep()).unwrap();
        let tmp_before = openclaw_tmp();
        for d in [
            "units",
            "state",
            "events",
            "gateway/home",
            "gateway/state",
            "gateway/tmp",
            "ollama/home",
            "llama",
        ] {
            fs::create_dir_all(path.join(d)).unwrap();
        }
        RunDir { path, tmp_before }
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// The tail of each log of the run, for a failure.
    pub fn dump(&self) {
        for (title, rel, lines) in [
            ("launchgraph check", "check.log", 60),
            ("openclaw-gateway stdout", "gateway/stdout.log", 80),
            ("openclaw-gateway stderr", "gateway/stderr.log", 40),
            ("openclaw-gateway file log", "gateway/openclaw.log", 30),
            ("ollama (ollama-proxy-plus) output", "ollama/output.log", 30),
            ("llama-server output", "llama/output.log", 40),
            ("openclaw config", "gateway/config.log", 30),
            ("/api/version poller", "poll.ollama", 20),
        ] {
            let file = self.join(rel);
            let Ok(text) = fs::read_to_string(&file) else {
                continue;
            };
            if text.is_empty() {
                continue;
            }
            eprintln!(
                "\n----- {title} ({}, last {lines} lines) -----",
                file.display()
            );
            let all: Vec<&str> = text.lines().collect();
            for l in &all[all.len().saturating_sub(lines)..] {
                eprintln!("{}", l.chars().take(400).collect::<String>());
            }
        }
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        for pid in run_pids(&self.path) {
            let argv = cmdline(pid).unwrap_or_default().join(" ");
            eprintln!("cleanup: killing leftover process {pid}: {argv:.160}");
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let created: Vec<PathBuf> = openclaw_tmp()
            .difference(&self.tmp_before)
            .cloned()
            .collect();
        for p in created.iter().rev() {
            if p.is_dir() && !p.is_symlink() {
                if fs::remove_dir(p).is_err() {
                    eprintln!(
                        "left {}: it holds files this run did not create",
                        p.display()
                    );
                }
            } else {
                let _ = fs::remove_file(p);
            }
        }
        if std::thread::panicking() || var("LAUNCHGRAPH_E2E_KEEP", "0") == "1" {
            eprintln!("run directory kept: {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// The daemon under test; on a failure, shows its log and the run's logs before it is stopped.
pub struct Up<'a> {
    pub daemon: Daemon,
    pub run: &'a RunDir,
}

impl Drop for Up<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let lines = self.daemon.lines();
            eprintln!("\n----- launchgraph (last 200 lines) -----");
            for l in &lines[lines.len().saturating_sub(200)..] {
                eprintln!("{}", l.chars().take(400).collect::<String>());
            }
            self.run.dump();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP, and our own view of the Ollama API

/// GET `path` on the loopback `port`: the status and body, or `None` when nothing answered
/// within 3 s.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    super::http_get(addr, path, Duration::from_secs(3)).map(|a| (a.code, a.body))
}

/// Whether `body` is JSON holding `key: want` at any depth.
pub fn json_has(body: &str, key: &str, want: &serde_json::Value) -> bool {
    fn walk(v: &serde_json::Value, key: &str, want: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Object(m) => {
                m.get(key) == Some(want) || m.values().any(|v| walk(v, key, want))
            }
            serde_json::Value::Array(a) => a.iter().any(|v| walk(v, key, want)),
            _ => false,
        }
    }
    serde_json::from_str(body).is_ok_and(|v: serde_json::Value| walk(&v, key, want))
}

/// Polls `path` until it answers 200 with a body that satisfies `ok`, within `within`.
pub fn wait_http(
    t0: Instant,
    port: u16,
    path: &str,
    within: Duration,
    what: &str,
    ok: impl Fn(&str) -> bool,
) {
    let end = Instant::now() + within;
    loop {
        let got = http_get(port, path);
        if let Some((200, body)) = &got
            && ok(body)
        {
            say(t0, &format!("ok: {what}: {path} -> 200 {body:.160}"));
            return;
        }
        assert!(
            Instant::now() < end,
            "{what}: {path} answered {got:?} after {within:?}, expected 200"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// One change seen by the poller: the API started answering (`up`, with the time of the last
/// miss before it) or stopped.
#[derive(Debug, Clone, Copy)]
pub enum Seen {
    Up { at: u128, last_miss: u128 },
    Down { at: u128 },
}

/// Our own view of /api/version, independent of launchgraph's probe: polled every few ms while
/// it does not answer, every 200 ms while it does; one record per change, also written to
/// `poll.ollama` in the run directory.
pub struct Poller {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Poller {
    pub fn start(out: PathBuf) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            let mut file = fs::File::create(out).unwrap();
            let (mut up, mut last_miss) = (false, now_ns());
            while !stop2.load(Ordering::SeqCst) {
                let t = now_ns();
                let ok = http_get(OLLAMA_PORT, "/api/version")
                    .is_some_and(|(code, body)| code == 200 && body.contains("version"));
                let change = match (ok, up) {
                    (true, false) => Some(Seen::Up {
                        at: now_ns(),
                        last_miss,
                    }),
                    (false, true) => Some(Seen::Down { at: t }),
                    _ => None,
                };
                if let Some(c) = change {
                    let _ = match c {
                        Seen::Up { at, last_miss } => writeln!(file, "{at} up {last_miss}"),
                        Seen::Down { at } => writeln!(file, "{at} down"),
                    };
                    seen2.lock().unwrap().push(c);
                }
                up = ok;
                if !ok {
                    last_miss = t;
                }
                // A sampler, not a synchronisation: how often it looks bounds what it can see.
                std::thread::sleep(Duration::from_millis(if up { 200 } else { 3 }));
            }
        });
        Poller {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// The `n`th (1-based) time the API started answering: (when, the last miss before).
    pub fn up(&self, n: usize) -> Option<(u128, u128)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter_map(|s| match *s {
                Seen::Up { at, last_miss } => Some((at, last_miss)),
                Seen::Down { .. } => None,
            })
            .nth(n - 1)
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Fails unless nothing accepts connections on `port` (IPv4 or IPv6 loopback): anything there
/// would answer our probes in place of the units.
pub fn port_free(port: u16) {
    for addr in [
        SocketAddr::from(([127, 0, 0, 1], port)),
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
    ] {
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
            "port {port} is already in use (something accepts connections on {addr}), so this \
             run cannot own it. Stop whatever listens there (another gateway or model server) \
             and run again."
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the run

/// The exec time (ns) the process `pid` recorded in `file` (`<ns> <pid> ...` lines).
pub fn stamp(file: &Path, pid: i32) -> Option<u128> {
    fs::read_to_string(file).ok()?.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let ns = f.next()?.parse().ok()?;
        (f.next()? == pid.to_string()).then_some(ns)
    })
}

/// The pids of OpenClaw's spawn-brokers (`spawn broker ready pid=N` in its own output), in the
/// order they appear in the gateway's stdout, then its stderr.
pub fn brokers(run: &RunDir) -> Vec<i32> {
    let mut out = Vec::new();
    for rel in ["gateway/stdout.log", "gateway/stderr.log"] {
        let text = fs::read_to_string(run.join(rel)).unwrap_or_default();
        for line in text.lines() {
            if let Some(rest) = line.split("spawn broker ready pid=").nth(1) {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if let Ok(pid) = digits.parse() {
                    out.push(pid);
                }
            }
        }
    }
    out
}

/// `t` is `unit` going from `from` to `to` for `reason`; `""` matches anything.
pub fn is(t: &Transition, unit: &str, from: &str, to: &str, reason: &str) -> bool {
    let field = |want: &str, got: &str| want.is_empty() || want == got;
    t.unit == unit && field(from, &t.from) && field(to, &t.to) && field(reason, &t.reason)
}

/// The `n`th (1-based) transition so far that satisfies `pred`.
pub fn nth(d: &mut Daemon, n: usize, pred: impl Fn(&Transition) -> bool) -> Option<Transition> {
    d.transitions().into_iter().filter(|t| pred(t)).nth(n - 1)
}

/// Waits for a transition; fails at once if a unit fails meanwhile.
pub fn wait(
    d: &mut Daemon,
    within: Duration,
    from: usize,
    what: &str,
    pred: impl Fn(&Transition) -> bool,
) -> Transition {
    d.wait_for_within(within, from, what, |t| {
        assert!(
            t.to != "failed",
            "a unit failed while waiting for {what}: {}",
            t.line
        );
        pred(t)
    })
}

/// `a` came before `b`, in the daemon's order and not later in time.
#[track_caller]
pub fn assert_before(t0: Instant, a: &Option<Transition>, b: &Option<Transition>, why: &str) {
    let a = a
        .as_ref()
        .unwrap_or_else(|| panic!("{why}: first transition missing"));
    let b = b
        .as_ref()
        .unwrap_or_else(|| panic!("{why}: second transition missing"));
    assert!(
        a.index < b.index && a.ns() <= b.ns(),
        "{why}: out of order:\n  {}\n  {}",
        a.line,
        b.line
    );
    say(t0, &format!("ok: {why}"));
}

// ---------------------------------------------------------------------------------------------
// The units

/// `ollama`: the Ollama API on 127.0.0.1:11434, served by ollama-proxy-plus (its /api/version
/// needs no model). The shell records the exec time, then execs the server (same pid).
/// With `backend`, the unit `llama` on that loopback port serves its model `local/smollm2`
/// (the proxy's `PROVIDERS_LOCAL_*` and `EXTRA_MODELS`), and the unit requires it.
pub fn ollama_unit(run: &RunDir, s: &Stack, backend: Option<u16>) -> String {
    let events = run.join("events/ollama");
    let record = format!(
        "echo \"$(date +%s%N) $$\" >> '{}'; exec \"$0\" \"$@\"",
        events.display()
    );
    let port = OLLAMA_PORT.to_string();
    let command = array(&[
        "/bin/sh",
        "-c",
        &record,
        s.proxy.to_str().unwrap(),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
    ]);
    let run_s = run.path.to_str().unwrap();
    let output = run.join("ollama/output.log");
    let output = q(output.to_str().unwrap());
    let (requires, backend_env) = match backend {
        Some(port) => (
            "requires = [\"llama\"]\n".to_owned(),
            format!(
                ", PROVIDERS_LOCAL_API_KEY = \"EMPTY\", \
                 PROVIDERS_LOCAL_BASE_URL = \"http://127.0.0.1:{port}/v1\", \
                 EXTRA_MODELS = \"local/smollm2\""
            ),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        r#"# The Ollama API on 127.0.0.1:{OLLAMA_PORT}, served by ollama-proxy-plus.
description = "Ollama-API server (ollama-proxy-plus), HTTP on 127.0.0.1:{OLLAMA_PORT}"
{requires}
[exec]
command = {command}
env = {{ HOME = {home}, LAUNCHGRAPH_E2E_RUN = {run}, PYTHONUNBUFFERED = "1"{backend_env} }}
working-directory = {wd}
stdout = {output}
stderr = {output}
stop-timeout = "10s"

[ready]
http = "http://127.0.0.1:{OLLAMA_PORT}/api/version"
body-contains = "version"
interval = "1s"
timeout = "2s"
start-timeout = "90s"

[alive]
http = "http://127.0.0.1:{OLLAMA_PORT}/"
body-contains = "Ollama is running"
interval = "10s"
timeout = "3s"
failures = 3

[restart]
policy = "on-failure"
initial = "1s"
max = "60s"
reset-after = "5m"
start-limit-count = 5
start-limit-period = "10m"
"#,
        home = q(run.join("ollama/home").to_str().unwrap()),
        run = q(run_s),
        wd = q(run.join("ollama").to_str().unwrap()),
    )
}

/// `openclaw-gateway`: the real gateway on 127.0.0.1:18789, run by the absolute path of Node 24
/// (never through openclaw.mjs's `#!/usr/bin/env node`), with its own HOME, state directory
/// and config in the run directory.
pub fn gateway_unit(run: &RunDir, s: &Stack, path: &str) -> String {
    let p = |rel: &str| q(run.join(rel).to_str().unwrap());
    let stamp_import = format!(
        "--import=file://{}",
        run.join("gateway/exec-stamp.mjs").display()
    );
    let command = array(&[
        s.node.to_str().unwrap(),
        &stamp_import,
        s.entry.to_str().unwrap(),
        "gateway",
        "run",
    ]);
    format!(
        r#"# The real OpenClaw gateway {version} on 127.0.0.1:{GATEWAY_PORT}.
description = "OpenClaw Gateway, HTTP/WebSocket on 127.0.0.1:{GATEWAY_PORT}"
requires = ["ollama"]

[exec]
command = {command}
working-directory = {wd}
stdout = {stdout}
stderr = {stderr}
stop-timeout = "30s"

[exec.env]
PATH = {path}
HOME = {home}
TMPDIR = {tmp}
OPENCLAW_STATE_DIR = {state}
OPENCLAW_CONFIG_PATH = {config}
OPENCLAW_SUPERVISOR_MODE = "external"
OPENCLAW_SERVICE_REPAIR_POLICY = "external"
OPENCLAW_DISABLE_BONJOUR = "1"
OPENCLAW_NO_AUTO_UPDATE = "1"
LAUNCHGRAPH_E2E_RUN = {run}
LAUNCHGRAPH_E2E_STAMP = {stamp}

# /startupz: 200 once startup is complete. A cold gateway takes 4 to 8 s on an idle host and
# much longer on a loaded 2-core one.
[ready]
http = "http://127.0.0.1:{GATEWAY_PORT}/startupz"
status = 200
interval = "1s"
timeout = "2s"
start-timeout = "{start_timeout}s"

[alive]
http = "http://127.0.0.1:{GATEWAY_PORT}/healthz"
interval = "10s"
timeout = "3s"
failures = 3

[restart]
policy = "on-failure"
initial = "2s"
max = "2m"
reset-after = "10m"
start-limit-count = 5
start-limit-period = "15m"
no-restart-exit-codes = [78]
"#,
        version = s.version,
        wd = p("gateway"),
        stdout = p("gateway/stdout.log"),
        stderr = p("gateway/stderr.log"),
        path = q(path),
        home = p("gateway/home"),
        tmp = p("gateway/tmp"),
        state = p("gateway/state"),
        config = p("gateway/openclaw.json"),
        run = q(run.path.to_str().unwrap()),
        stamp = p("events/gateway"),
        start_timeout = s.gateway_start_timeout,
    )
}

/// Records the node process's start time (ns since the epoch) and pid, from a preload: the
/// gateway's argv keeps the absolute node path first.
pub const EXEC_STAMP_MJS: &str = r#"// Records this node process's start time (ns since the epoch) and pid, for the e2e run.
import { appendFileSync } from "node:fs";
import { isMainThread } from "node:worker_threads";
const file = process.env.LAUNCHGRAPH_E2E_STAMP;
if (file && isMainThread) {
  const ns = BigInt(Math.round(performance.timeOrigin * 1000)) * 1000n;
  try { appendFileSync(file, `${ns} ${process.pid} ${process.argv[1] ?? ""}\n`); } catch {}
}
"#;

/// Configures the gateway offline in one `openclaw config set --batch-json` call (each call
/// loads the whole CLI: several seconds): local mode, loopback, token auth, our port, and its
/// file log inside the run directory; then `extra` (`{"path": …, "value": …}` entries).
pub fn configure_gateway(run: &RunDir, s: &Stack, path: &str, extra: &[serde_json::Value]) {
    let mut random = [0u8; 12];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .expect("read /dev/urandom");
    let token = random.iter().fold(String::from("e2e-"), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    let batch = serde_json::json!([
        {"path": "gateway.mode", "value": "local"},
        {"path": "gateway.bind", "value": "loopback"},
        {"path": "gateway.port", "value": GATEWAY_PORT},
        {"path": "gateway.auth.mode", "value": "token"},
        {"path": "gateway.auth.token", "value": token},
        {"path": "logging.file", "value": run.join("gateway/openclaw.log")},
    ]);
    let mut batch = batch;
    batch.as_array_mut().unwrap().extend(extra.iter().cloned());
    let config = run.join("gateway/openclaw.json");
    let log = fs::File::create(run.join("gateway/config.log")).unwrap();
    let status = Command::new("timeout")
        .arg("180")
        .arg(&s.node)
        .arg(&s.entry)
        .args(["config", "set", "--strict-json", "--batch-json"])
        .arg(batch.to_string())
        .env_clear()
        .env("PATH", path)
        .env("HOME", run.join("gateway/home"))
        .env("TMPDIR", run.join("gateway/tmp"))
        .env("OPENCLAW_STATE_DIR", run.join("gateway/state"))
        .env("OPENCLAW_CONFIG_PATH", &config)
        .env("OPENCLAW_DISABLE_BONJOUR", "1")
        .env("OPENCLAW_NO_AUTO_UPDATE", "1")
        .env("LAUNCHGRAPH_E2E_RUN", &run.path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .expect("run openclaw config set");
    if !status.success() {
        run.dump();
        panic!("openclaw config set failed: {status}");
    }
    let text = fs::read_to_string(&config).unwrap_or_default();
    assert!(
        text.contains(r#""mode": "local""#),
        "{} does not set gateway.mode local:\n{text}",
        config.display()
    );
}

/// `launchgraph check` on the run's units: its output in `check.log` and on stderr; it must
/// pass.
pub fn check_units(run: &RunDir) {
    let check = Command::new(super::control::BIN)
        .arg("check")
        .arg("--units")
        .arg(run.join("units"))
        .arg("--state-dir")
        .arg(run.join("state"))
        .stdin(Stdio::null())
        .output()
        .expect("run launchgraph check");
    let check_text = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    fs::write(run.join("check.log"), &check_text).unwrap();
    for l in check_text.lines() {
        eprintln!("  check: {l:.300}");
    }
    assert!(
        check.status.success(),
        "launchgraph check exited {:?}:\n{check_text}",
        check.status.code()
    );
}

/// The run's closing lines: `title` PASSED, what ran with the machine's cores and load, each
/// note, and the whole run's time.
pub fn print_summary(title: &str, what_ran: &str, notes: &[(String, String)], t0: Instant) {
    println!("\n== {title}: PASSED");
    println!(
        "   {what_ran}, {} cores, load {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let width = notes
        .iter()
        .map(|(what, _)| what.len())
        .max()
        .unwrap_or(0)
        .max(5);
    for (what, value) in notes {
        println!("   {what:<width$} {value}");
    }
    println!("   {:<width$} {} ms", "total", t0.elapsed().as_millis());
}
