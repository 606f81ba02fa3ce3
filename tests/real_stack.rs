//! `launchgraph up` against the real stack on Linux: the OpenClaw gateway (openclaw from npm, on
//! Node 24 from npm) and an Ollama-API server (ollama-proxy-plus from PyPI on 127.0.0.1:11434),
//! as two `exec` units. It checks that the gateway starts only once /api/version answers, that
//! a SIGKILL of the model server cycles the gateway in order, and that SIGTERM stops both in
//! reverse order and leaves no process behind. See docs/e2e.md.
//!
//! `scripts/e2e-real-stack.sh` installs the programs (scripts/e2e-install.sh) and runs this
//! test, passing their paths in `LAUNCHGRAPH_E2E_*` variables. Order is read from the daemon's
//! transitions (`events`), and proven again by the times the processes record themselves
//! (their exec) and by a poller of /api/version of our own.

mod support;

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

use support::control::{BIN, cmdline};
use support::{Daemon, Transition, array, process_gone, q};

const OLLAMA_PORT: u16 = 11434;
const GATEWAY_PORT: u16 = 18789;

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn ms_between(a: u128, b: u128) -> i128 {
    (b as i128 - a as i128) / 1_000_000
}

/// A path the script passes in `name`.
fn given(name: &str) -> PathBuf {
    let v = std::env::var_os(name)
        .unwrap_or_else(|| panic!("{name} is unset: run scripts/e2e-real-stack.sh"));
    let p = PathBuf::from(v);
    assert!(p.exists(), "{name}={} does not exist", p.display());
    p
}

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn say(t0: Instant, what: &str) {
    eprintln!("[e2e {:6.1}s] {what}", t0.elapsed().as_secs_f64());
}

/// What the installer gave, and the run's settings.
struct Stack {
    node: PathBuf,
    entry: PathBuf,
    version: String,
    proxy: PathBuf,
    cache: PathBuf,
    gateway_start_timeout: u64,
}

impl Stack {
    fn from_env() -> Stack {
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
struct Deadline(Instant, u64);

impl Deadline {
    /// `secs`, or less if the overall deadline comes first; fails once it has passed.
    fn cap(&self, secs: u64) -> Duration {
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
fn run_pids(run: &Path) -> Vec<i32> {
    support::processes_with_env(&format!("LAUNCHGRAPH_E2E_RUN={}", run.display()))
}

/// `/tmp/openclaw*` entries: OpenClaw writes its default rolling log and state locks there
/// whatever its state directory.
fn openclaw_tmp() -> BTreeSet<PathBuf> {
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
struct RunDir {
    path: PathBuf,
    tmp_before: BTreeSet<PathBuf>,
}

impl RunDir {
    fn new() -> RunDir {
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
        ] {
            fs::create_dir_all(path.join(d)).unwrap();
        }
        RunDir { path, tmp_before }
    }

    fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// The tail of each log of the run, for a failure.
    fn dump(&self) {
        for (title, rel, lines) in [
            ("launchgraph check", "check.log", 60),
            ("openclaw-gateway stdout", "gateway/stdout.log", 80),
            ("openclaw-gateway stderr", "gateway/stderr.log", 40),
            ("openclaw-gateway file log", "gateway/openclaw.log", 30),
            ("ollama (ollama-proxy-plus) output", "ollama/output.log", 30),
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
struct Up<'a> {
    daemon: Daemon,
    run: &'a RunDir,
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
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    support::http_get(addr, path, Duration::from_secs(3)).map(|a| (a.code, a.body))
}

/// Whether `body` is JSON holding `key: want` at any depth.
fn json_has(body: &str, key: &str, want: &serde_json::Value) -> bool {
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
fn wait_http(
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
enum Seen {
    Up { at: u128, last_miss: u128 },
    Down { at: u128 },
}

/// Our own view of /api/version, independent of launchgraph's probe: polled every few ms while
/// it does not answer, every 200 ms while it does; one record per change, also written to
/// `poll.ollama` in the run directory.
struct Poller {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Poller {
    fn start(out: PathBuf) -> Poller {
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
    fn up(&self, n: usize) -> Option<(u128, u128)> {
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
fn port_free(port: u16) {
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
fn stamp(file: &Path, pid: i32) -> Option<u128> {
    fs::read_to_string(file).ok()?.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let ns = f.next()?.parse().ok()?;
        (f.next()? == pid.to_string()).then_some(ns)
    })
}

/// The pids of OpenClaw's spawn-brokers (`spawn broker ready pid=N` in its own output), in the
/// order they appear in the gateway's stdout, then its stderr.
fn brokers(run: &RunDir) -> Vec<i32> {
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
fn is(t: &Transition, unit: &str, from: &str, to: &str, reason: &str) -> bool {
    let field = |want: &str, got: &str| want.is_empty() || want == got;
    t.unit == unit && field(from, &t.from) && field(to, &t.to) && field(reason, &t.reason)
}

/// The `n`th (1-based) transition so far that satisfies `pred`.
fn nth(d: &mut Daemon, n: usize, pred: impl Fn(&Transition) -> bool) -> Option<Transition> {
    d.transitions().into_iter().filter(|t| pred(t)).nth(n - 1)
}

/// Waits for a transition; fails at once if a unit fails meanwhile.
fn wait(
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
fn assert_before(t0: Instant, a: &Option<Transition>, b: &Option<Transition>, why: &str) {
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
fn ollama_unit(run: &RunDir, s: &Stack) -> String {
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
    format!(
        r#"# The Ollama API on 127.0.0.1:{OLLAMA_PORT}, served by ollama-proxy-plus.
description = "Ollama-API server (ollama-proxy-plus), HTTP on 127.0.0.1:{OLLAMA_PORT}"

[exec]
command = {command}
env = {{ HOME = {home}, LAUNCHGRAPH_E2E_RUN = {run}, PYTHONUNBUFFERED = "1" }}
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
fn gateway_unit(run: &RunDir, s: &Stack, path: &str) -> String {
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
const EXEC_STAMP_MJS: &str = r#"// Records this node process's start time (ns since the epoch) and pid, for the e2e run.
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
/// file log inside the run directory.
fn configure_gateway(run: &RunDir, s: &Stack, path: &str) {
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

// ---------------------------------------------------------------------------------------------
// The run

#[test]
#[ignore = "needs the real stack: run scripts/e2e-real-stack.sh"]
fn the_gateway_waits_for_the_model_server_restarts_with_it_and_stops_before_it() {
    let t0 = Instant::now();
    let s = Stack::from_env();
    let deadline = Deadline(
        Instant::now(),
        var("LAUNCHGRAPH_E2E_DEADLINE", "720")
            .parse()
            .expect("LAUNCHGRAPH_E2E_DEADLINE in seconds"),
    );
    let mut notes: Vec<(String, String)> = Vec::new();
    let mut note = |what: &str, value: String| notes.push((what.to_owned(), value));
    let node_version = Command::new(&s.node)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    say(
        t0,
        &format!(
            "node {node_version}, openclaw {}, ollama-proxy-plus at {}, launchgraph {BIN}",
            s.version,
            s.proxy.display()
        ),
    );

    // 2. The run directory: OpenClaw's own HOME, state and config; the units.
    port_free(OLLAMA_PORT);
    port_free(GATEWAY_PORT);
    let run = RunDir::new();
    say(t0, &format!("run directory: {}", run.path.display()));
    let gw_path = format!(
        "{}:/usr/local/bin:/usr/bin:/bin",
        s.node.parent().unwrap().display()
    );
    // OpenClaw keeps Node's compile cache in $TMPDIR/node-compile-cache (setting
    // NODE_COMPILE_CACHE instead makes openclaw.mjs respawn itself, so the gateway would no
    // longer be the pid we spawn). Keeping it in the install cache makes later runs start like
    // a host where the gateway ran before.
    let compile_cache = s.cache.join("node-compile-cache");
    fs::create_dir_all(&compile_cache).unwrap();
    std::os::unix::fs::symlink(&compile_cache, run.join("gateway/tmp/node-compile-cache")).unwrap();

    say(t0, "configuring OpenClaw in the run directory (offline)");
    let t = Instant::now();
    configure_gateway(&run, &s, &gw_path);
    note(
        "openclaw config set (6 keys, one call)",
        format!("{} ms", t.elapsed().as_millis()),
    );
    fs::write(run.join("gateway/exec-stamp.mjs"), EXEC_STAMP_MJS).unwrap();
    fs::write(run.join("units/ollama.toml"), ollama_unit(&run, &s)).unwrap();
    fs::write(
        run.join("units/openclaw-gateway.toml"),
        gateway_unit(&run, &s, &gw_path),
    )
    .unwrap();

    say(t0, "checking the units (launchgraph check)");
    let check = Command::new(BIN)
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
        "launchgraph check exited {:?}",
        check.status.code()
    );

    // 3. Up: the gateway starts only once /api/version answers.
    let poller = Poller::start(run.join("poll.ollama"));
    say(t0, "starting launchgraph up");
    let t_up = now_ns();
    let mut up = Up {
        daemon: Daemon::start(&run.join("units")),
        run: &run,
    };
    let d = &mut up.daemon;
    wait(d, deadline.cap(120), 0, "ollama to be ready", |t| {
        is(t, "ollama", "started", "ready", "READY")
    });
    wait(
        d,
        deadline.cap(s.gateway_start_timeout + 60),
        0,
        "the gateway to be ready",
        |t| is(t, "openclaw-gateway", "started", "ready", "READY"),
    );
    let t_gw_ready_seen = now_ns();

    let gw = "openclaw-gateway";
    let o_spawn1 = nth(d, 1, |t| is(t, "ollama", "starting", "started", "SPAWNED"));
    let o_ready1 = nth(d, 1, |t| is(t, "ollama", "started", "ready", "READY"));
    let g_wait1 = nth(d, 1, |t| {
        is(t, gw, "", "waiting", "WAITING_FOR_DEPENDENCY") && t.on.as_deref() == Some("ollama")
    });
    let g_start1 = nth(d, 1, |t| is(t, gw, "waiting", "starting", ""));
    let g_spawn1 = nth(d, 1, |t| is(t, gw, "starting", "started", "SPAWNED"));
    let g_ready1 = nth(d, 1, |t| is(t, gw, "started", "ready", "READY")).unwrap();
    let o_pid1 = o_spawn1.expect("ollama was spawned").pid();
    let g_pid1 = g_spawn1.expect("the gateway was spawned").pid();
    say(t0, &format!("ollama pid {o_pid1}, gateway pid {g_pid1}"));

    assert!(
        g_wait1.is_some(),
        "the gateway never waited for ollama (no WAITING_FOR_DEPENDENCY on=ollama)"
    );
    assert_before(
        t0,
        &o_ready1,
        &g_start1,
        "events: ollama ready before the gateway starts",
    );
    let starts = d
        .transitions()
        .iter()
        .filter(|t| is(t, gw, "", "starting", ""))
        .count();
    assert_eq!(
        starts, 1,
        "the gateway was started more than once before it became ready"
    );

    let o_exec1 = stamp(&run.join("events/ollama"), o_pid1)
        .unwrap_or_else(|| panic!("no exec time recorded for ollama pid {o_pid1}"));
    let g_exec1 = stamp(&run.join("events/gateway"), g_pid1)
        .unwrap_or_else(|| panic!("no exec time recorded for gateway pid {g_pid1}"));
    let (api_first1, api_miss1) = poller
        .up(1)
        .expect("our own /api/version poller never saw the API answer");
    let o_ready1_ns = o_ready1.unwrap().ns();
    assert!(
        g_exec1 > o_ready1_ns,
        "timestamps: the gateway process started at {g_exec1}, before launchgraph reported \
         ollama READY at {o_ready1_ns}"
    );
    assert!(
        g_exec1 > api_miss1,
        "timestamps: the gateway process started at {g_exec1}, when /api/version did not \
         answer yet (last miss at {api_miss1})"
    );
    say(
        t0,
        &format!(
            "ok: timestamps: gateway exec {} ms after ollama READY, {} ms after /api/version \
             last failed to answer",
            ms_between(o_ready1_ns, g_exec1),
            ms_between(api_miss1, g_exec1)
        ),
    );
    if g_exec1 < api_first1 {
        say(
            t0,
            &format!(
                "note: launchgraph's probe saw /api/version answer {} ms before our poller did",
                ms_between(g_exec1, api_first1)
            ),
        );
    }
    let ms = |a, b| format!("{} ms", ms_between(a, b));
    note(
        "ollama: exec -> /api/version answers (poller)",
        ms(o_exec1, api_first1),
    );
    note(
        "ollama: exec -> READY (launchgraph)",
        ms(o_exec1, o_ready1_ns),
    );
    note(
        "gate latency: ollama READY -> gateway exec",
        ms(o_ready1_ns, g_exec1),
    );
    note(
        "gate latency: /api/version answers -> gateway exec",
        ms(api_first1, g_exec1),
    );
    note(
        "gateway: exec -> READY (/startupz 200)",
        ms(g_exec1, g_ready1.ns()),
    );
    note("launchgraph up -> gateway READY", ms(t_up, g_ready1.ns()));

    wait_http(
        t0,
        GATEWAY_PORT,
        "/healthz",
        deadline.cap(30),
        "gateway /healthz",
        |b| json_has(b, "status", &"live".into()),
    );
    wait_http(
        t0,
        GATEWAY_PORT,
        "/readyz",
        deadline.cap(60),
        "gateway /readyz",
        |b| json_has(b, "ready", &true.into()),
    );
    note(
        "gateway READY -> /readyz 200 (as polled)",
        ms(t_gw_ready_seen, now_ns()),
    );

    // launchgraph fingerprints a unit once it is ready: what ran, with the package's version.
    let fp_path = run.join("state/fingerprints/openclaw-gateway.json");
    support::wait_until(&format!("a fingerprint at {}", fp_path.display()), || {
        fs::metadata(&fp_path).is_ok_and(|m| m.len() > 0)
    });
    let fp: serde_json::Value = serde_json::from_slice(&fs::read(&fp_path).unwrap()).unwrap();
    let role = |r: &str| {
        fp["files"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["role"] == r)
            .and_then(|f| f["path"].as_str())
            .map(PathBuf::from)
    };
    assert_eq!(
        fp["package"],
        serde_json::json!(["openclaw", s.version]),
        "the gateway's fingerprint names the package that ran: {fp}"
    );
    assert_eq!(role("node"), Some(s.node.clone()), "{fp}");
    assert_eq!(role("entry"), Some(s.entry.clone()), "{fp}");
    say(
        t0,
        &format!(
            "ok: fingerprint: openclaw {}, node {}, entry {}",
            s.version,
            fp["node_version"],
            s.entry.display()
        ),
    );
    let broker1 = brokers(&run).first().copied();
    if let Some(b) = broker1 {
        say(t0, &format!("gateway spawn-broker pid {b}"));
    }

    // 4. SIGKILL the model server: the gateway is stopped first, ollama restarts, then the
    // gateway.
    assert!(
        run_pids(&run.path).contains(&o_pid1),
        "pid {o_pid1} is not this run's ollama process"
    );
    say(t0, &format!("SIGKILL ollama (pid {o_pid1})"));
    let k = d.mark();
    let t_kill = now_ns();
    kill(Pid::from_raw(o_pid1), Signal::SIGKILL).unwrap();
    wait(
        d,
        deadline.cap(s.gateway_start_timeout + 90),
        k,
        "the gateway to be ready again",
        |t| is(t, gw, "started", "ready", "READY"),
    );

    let o_down = nth(d, 1, |t| {
        is(t, "ollama", "ready", "", "") && t.facts.pid == Some(o_pid1 as u32)
    });
    let g_stop = nth(d, 1, |t| {
        is(t, gw, "ready", "stopping", "DEPENDENCY_RESTARTING")
    });
    let g_stopped = nth(d, 1, |t| is(t, gw, "stopping", "", "DEPENDENCY_RESTARTING"));
    let o_start2 = nth(d, 2, |t| is(t, "ollama", "", "starting", ""));
    let o_spawn2 = nth(d, 2, |t| is(t, "ollama", "starting", "started", "SPAWNED"));
    let o_ready2 = nth(d, 2, |t| is(t, "ollama", "started", "ready", "READY"));
    let g_start2 = nth(d, 2, |t| is(t, gw, "waiting", "starting", ""));
    let g_spawn2 = nth(d, 2, |t| is(t, gw, "starting", "started", "SPAWNED"));
    let g_ready2 = nth(d, 2, |t| is(t, gw, "started", "ready", "READY")).unwrap();
    let o_pid2 = o_spawn2.expect("ollama was spawned again").pid();
    let g_pid2 = g_spawn2.expect("the gateway was spawned again").pid();

    assert!(
        o_down.is_some(),
        "no transition of ollama pid {o_pid1} leaving ready after the SIGKILL"
    );
    assert_before(
        t0,
        &o_down,
        &g_stop,
        "events: ollama died, then the gateway was stopped (DEPENDENCY_RESTARTING)",
    );
    assert_before(
        t0,
        &g_stopped,
        &o_start2,
        "events: the gateway was down before ollama was started again",
    );
    assert_before(
        t0,
        &o_ready2,
        &g_start2,
        "events: ollama ready again before the gateway starts again",
    );

    let o_exec2 = stamp(&run.join("events/ollama"), o_pid2)
        .unwrap_or_else(|| panic!("no exec time recorded for the new ollama pid {o_pid2}"));
    let g_exec2 = stamp(&run.join("events/gateway"), g_pid2)
        .unwrap_or_else(|| panic!("no exec time recorded for the new gateway pid {g_pid2}"));
    let g_stopped_ns = g_stopped.unwrap().ns();
    let o_ready2_ns = o_ready2.unwrap().ns();
    assert!(
        o_exec2 > g_stopped_ns,
        "timestamps: ollama was respawned at {o_exec2}, before the gateway was stopped at \
         {g_stopped_ns}"
    );
    assert!(
        process_gone(g_pid1),
        "the first gateway process {g_pid1} is still alive"
    );
    let (api_first2, api_miss2) = poller
        .up(2)
        .expect("our own /api/version poller never saw the API answer again");
    assert!(
        g_exec2 > o_ready2_ns,
        "timestamps: the new gateway started at {g_exec2}, before ollama READY at {o_ready2_ns}"
    );
    assert!(
        g_exec2 > api_miss2,
        "timestamps: the new gateway started at {g_exec2}, when /api/version did not answer \
         yet (last miss at {api_miss2})"
    );
    say(
        t0,
        &format!(
            "ok: timestamps: gateway stopped {} ms after the kill, ollama respawned {} ms after \
             that, gateway respawned {} ms after ollama READY",
            ms_between(t_kill, g_stopped_ns),
            ms_between(g_stopped_ns, o_exec2),
            ms_between(o_ready2_ns, g_exec2)
        ),
    );

    wait_http(
        t0,
        GATEWAY_PORT,
        "/healthz",
        deadline.cap(30),
        "gateway /healthz after the restart",
        |b| json_has(b, "status", &"live".into()),
    );
    let t_health2 = now_ns();
    // What `status` says agrees: both ready, with the new processes.
    for (unit, pid) in [("ollama", o_pid2), (gw, g_pid2)] {
        let st = d.wait_state(unit, "ready");
        assert_eq!(
            st.pid,
            Some(pid as u32),
            "{unit}'s status names its new process: {st:?}"
        );
    }

    // The first gateway's spawn-broker ran in its own session: a process-group stop does not
    // reach it. It must still go away with its gateway.
    if let Some(b) = broker1 {
        let until = Instant::now() + Duration::from_secs(10);
        while !process_gone(b) {
            assert!(
                Instant::now() < until,
                "the first gateway's spawn-broker (pid {b}) outlived its gateway (pid {g_pid1}) \
                 by more than 10 s: {:?}",
                cmdline(b)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        say(
            t0,
            &format!("ok: the first gateway's spawn-broker (pid {b}) is gone"),
        );
    }

    note(
        "restart: SIGKILL -> gateway stopped",
        ms(t_kill, g_stopped_ns),
    );
    note(
        "restart: SIGKILL -> ollama exec again",
        format!("{} (backoff 1s ±10%)", ms(t_kill, o_exec2)),
    );
    note(
        "restart: ollama exec -> /api/version answers",
        ms(o_exec2, api_first2),
    );
    note("restart: ollama exec -> READY", ms(o_exec2, o_ready2_ns));
    note(
        "restart: ollama READY -> gateway exec",
        ms(o_ready2_ns, g_exec2),
    );
    note("restart: gateway exec -> READY", ms(g_exec2, g_ready2.ns()));
    note(
        "restart cycle: SIGKILL -> gateway READY",
        ms(t_kill, g_ready2.ns()),
    );
    note(
        "restart cycle: SIGKILL -> /healthz 200 again",
        ms(t_kill, t_health2),
    );

    // 5. SIGTERM launchgraph: exit 0, the gateway stopped before ollama, nothing left behind.
    let broker2 = brokers(&run).get(1).copied();
    let unit_pids = d.unit_pids();
    let before = run_pids(&run.path);
    say(
        t0,
        &format!("processes of the run before the stop: {before:?}"),
    );
    say(t0, &format!("SIGTERM launchgraph (pid {})", d.pid()));
    let t_term = now_ns();
    let status = d.stop_within(Signal::SIGTERM, deadline.cap(90));
    let t_exit = now_ns();
    assert_eq!(
        status.code(),
        Some(0),
        "launchgraph exited {status} after SIGTERM, expected 0"
    );
    say(
        t0,
        &format!(
            "ok: launchgraph exited 0, {} ms after SIGTERM",
            ms_between(t_term, t_exit)
        ),
    );
    note(
        "shutdown: SIGTERM -> launchgraph exit 0",
        ms(t_term, t_exit),
    );

    let g_shut = nth(d, 1, |t| is(t, gw, "stopping", "stopped", "SHUTDOWN"));
    let o_shut0 = nth(d, 1, |t| is(t, "ollama", "ready", "stopping", "SHUTDOWN"));
    let o_shut = nth(d, 1, |t| is(t, "ollama", "stopping", "stopped", "SHUTDOWN"));
    assert!(
        o_shut.is_some(),
        "no 'ollama: stopping -> stopped SHUTDOWN'"
    );
    assert_before(
        t0,
        &g_shut,
        &o_shut0,
        "events: the gateway was stopped before ollama was asked to stop",
    );
    assert!(
        d.log().contains("all units stopped"),
        "launchgraph did not log 'all units stopped'"
    );

    // Nothing of the run may be left: the units' pids and process groups, the spawn-brokers
    // (own sessions), and anything else carrying the run's marker in its environment.
    let leftovers = || {
        let mut left: BTreeSet<i32> = unit_pids
            .iter()
            .chain(&before)
            .chain(broker1.iter())
            .chain(broker2.iter())
            .copied()
            .filter(|&p| !process_gone(p))
            .collect();
        left.extend(support::in_groups_or_sessions(&unit_pids));
        left.extend(run_pids(&run.path));
        left
    };
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let left = leftovers();
        if left.is_empty() {
            break;
        }
        if Instant::now() >= until {
            let mut msg =
                String::from("processes of the run outlived launchgraph by more than 10 s:");
            for p in &left {
                let _ = write!(msg, "\n  {p}: {:?}", cmdline(*p).unwrap_or_default());
                if Some(*p) == broker1 || Some(*p) == broker2 {
                    msg.push_str("  <- OpenClaw spawn-broker (own session, not in the gateway's process group)");
                }
            }
            panic!("{msg}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    say(
        t0,
        &format!(
            "ok: no process of the run is left (unit pids: {unit_pids:?}; brokers: {broker1:?} {broker2:?})"
        ),
    );
    drop(poller);

    println!("\n== launchgraph e2e against the real stack: PASSED");
    println!(
        "   openclaw {} on node {node_version}, ollama-proxy-plus, {} cores, load {}",
        s.version,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    for (what, value) in &notes {
        println!("   {what:<44} {value}");
    }
    println!(
        "   total                                        {} ms",
        t0.elapsed().as_millis()
    );
}
