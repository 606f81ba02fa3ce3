//! Guard benchmark: what the shipped guards cost the daemon, and what a TTFT probe adds to the
//! time it measures.
//!
//! - `idle`: the real `launchgraph up --units DIR` with 10 ready units (each with a tcp
//!   `[alive]` probe every 5 s, as in `supervise`'s idle part), run twice in one run: without
//!   guards, then with guards shaped like `units/ollama.toml`'s (a `ttft` guard every 30 s
//!   against a scripted Ollama this benchmark serves on loopback, a `queue-depth` guard every
//!   30 s whose command prints a number, and `swap-out-rate`, `memory-pressure` and
//!   `disk-free` every 10 s). Over the window: on-CPU time of the daemon's live threads
//!   (schedstat), utime+stime of the whole process in ticks (which keeps exited threads'
//!   time), that of its reaped children (the guards' commands), context switches and RSS.
//! - `probe`: the library's `ttft` sampler, called directly, against the scripted Ollama
//!   whose first token leaves a fixed delay D after it has read the request. The stand-in
//!   records, per request, when it had read it and when it had written its last byte; the
//!   probe's overhead is the sample's wall time minus that server time.
//!
//! Run with `cargo bench --bench guards`, or name parts: `cargo bench --bench guards -- probe`.
//! `LAUNCHGRAPH_BENCH_IDLE_SECS` sets the idle window (default 60), `LAUNCHGRAPH_BENCH_REPS`
//! the probes per delay (default 500), `LAUNCHGRAPH_BENCH_BIN` runs another build of the
//! binary. The units are this benchmark's own executable, re-run as a program that listens on
//! a port. Nothing here asserts a speed; the figures are in docs/performance.md.

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use launchgraph::guard::signal::ttft::{Api, Ttft, TtftParams};
use launchgraph::guard::signal::{Sample, Signal};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_launchgraph");

/// The first argument that makes this executable a unit program: `ARG PORT` listens on
/// 127.0.0.1:PORT and accepts and closes connections forever.
const UNIT_ARG: &str = "--guards-bench-unit-listen";

const UNITS: usize = 10;
const MODEL: &str = "llama3.1:8b";

type R<T> = Result<T, String>;

/// The binary under test: this build's, or `LAUNCHGRAPH_BENCH_BIN`.
fn bin() -> String {
    std::env::var("LAUNCHGRAPH_BENCH_BIN").unwrap_or_else(|_| BIN.to_owned())
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The `cpu` line of /proc/stat: (busy, steal, total) ticks over all cores.
fn cpu_totals() -> Option<(u64, u64, u64)> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    let steal = *v.get(7)?;
    Some((total - idle - steal, steal, total))
}

/// (busy %, steal %) of all cores over `window`, while this benchmark sleeps.
fn background(window: Duration) -> Option<(f64, f64)> {
    let (b0, s0, t0) = cpu_totals()?;
    std::thread::sleep(window);
    let (b1, s1, t1) = cpu_totals()?;
    let dt = (t1 - t0).max(1) as f64;
    Some(((b1 - b0) as f64 * 100.0 / dt, (s1 - s0) as f64 * 100.0 / dt))
}

fn quiet(when: &str) {
    let bg = background(Duration::from_secs(1))
        .map_or_else(|| "n/a".into(), |(b, s)| format!("{b:.0}%/{s:.0}%"));
    println!(
        "    background {when}: {bg} busy/steal (1 s, all cores, this benchmark idle); load {}",
        loadavg()
    );
}

fn free_port() -> R<u16> {
    let l = StdListener::bind("127.0.0.1:0").map_err(|e| format!("cannot bind: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no local address: {e}"))
}

fn argv(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

fn write(path: &Path, text: &str) -> R<()> {
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The unit program: listen, then accept and close connections until killed.
fn unit_listen(port: &str) -> ExitCode {
    let Ok(l) = StdListener::bind(format!("127.0.0.1:{port}")) else {
        return ExitCode::from(75);
    };
    loop {
        let _ = l.accept();
    }
}

// ---------------------------------------------------------------------------------------------
// The scripted Ollama.

/// One request the stand-in answered, on the monotonic clock.
#[derive(Clone, Copy)]
struct Served {
    generate: bool,
    /// The request's head and body fully read.
    received: Instant,
    /// The first token's chunk written (the reply, for anything else).
    first: Instant,
    /// The last byte written.
    last: Instant,
}

/// A loopback Ollama that lists `MODEL` as loaded in `/api/ps` and streams one token, `delay`
/// after it has read an `/api/generate` request, then a final chunk whose durations say the
/// request neither waited nor loaded (so an `idle-only` guard keeps it). It runs on a runtime
/// of its own, so its work is not the sampler's.
struct Stand {
    addr: std::net::SocketAddr,
    delay: Arc<Mutex<Duration>>,
    served: Arc<Mutex<Vec<Served>>>,
    _rt: tokio::runtime::Runtime,
}

impl Stand {
    fn start() -> R<Stand> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| format!("cannot build the stand-in's runtime: {e}"))?;
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .map_err(|e| format!("cannot bind the stand-in: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let delay = Arc::new(Mutex::new(Duration::ZERO));
        let served = Arc::new(Mutex::new(Vec::new()));
        let (d, s) = (Arc::clone(&delay), Arc::clone(&served));
        rt.spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (d, s) = (Arc::clone(&d), Arc::clone(&s));
                tokio::spawn(async move {
                    let _ = serve(sock, &d, &s).await;
                });
            }
        });
        Ok(Stand {
            addr,
            delay,
            served,
            _rt: rt,
        })
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_delay(&self, d: Duration) {
        if let Ok(mut g) = self.delay.lock() {
            *g = d;
        }
    }

    fn take(&self) -> Vec<Served> {
        self.served
            .lock()
            .map(|mut g| std::mem::take(&mut *g))
            .unwrap_or_default()
    }
}

async fn serve(
    mut sock: TcpStream,
    delay: &Mutex<Duration>,
    served: &Mutex<Vec<Served>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let received = Instant::now();
    let generate = path == "/api/generate";
    let first;
    if path == "/api/ps" {
        let body = format!(r#"{{"models":[{{"name":"{MODEL}","model":"{MODEL}","size":1}}]}}"#);
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(reply.as_bytes()).await?;
        first = Instant::now();
    } else if generate {
        let d = delay.lock().map(|g| *g).unwrap_or_default();
        sock.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n\
              Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        )
        .await?;
        // The server's time to its first token: the delay under test. None at all for zero:
        // tokio's timer rounds any sleep up to its next 1 ms tick.
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
        let token = format!(r#"{{"model":"{MODEL}","response":"O","done":false}}"#) + "\n";
        sock.write_all(format!("{:x}\r\n{token}\r\n", token.len()).as_bytes())
            .await?;
        first = Instant::now();
        let ns = (d.as_nanos() as u64).max(1);
        let done = format!(
            r#"{{"model":"{MODEL}","response":"","done":true,"total_duration":{ns},"load_duration":0,"prompt_eval_duration":0,"eval_duration":{ns}}}"#
        ) + "\n";
        sock.write_all(format!("{:x}\r\n{done}\r\n0\r\n\r\n", done.len()).as_bytes())
            .await?;
    } else {
        sock.write_all(b"HTTP/1.1 404 X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await?;
        first = Instant::now();
    }
    let last = Instant::now();
    if let Ok(mut s) = served.lock() {
        s.push(Served {
            generate,
            received,
            first,
            last,
        });
    }
    sock.shutdown().await
}

// ---------------------------------------------------------------------------------------------
// The daemon, from outside.

/// A running `launchgraph up`; dropping it stops it (SIGTERM, then SIGKILL), and the units'
/// process groups with it.
struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    fn start(units: &Path, log: &Path) -> R<Daemon> {
        let file = fs::File::create(log).map_err(|e| format!("cannot create the log: {e}"))?;
        let child = Command::new(bin())
            .args(["up", "--units"])
            .arg(units)
            .env("NO_COLOR", "1")
            .env("LAUNCHGRAPH_LOG", "info")
            .env_remove("LAUNCHGRAPH_UNITS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin()))?;
        Ok(Daemon {
            child: Some(child),
            log: log.to_owned(),
        })
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn check_running(&mut self) -> R<()> {
        if let Some(child) = &mut self.child
            && let Ok(Some(status)) = child.try_wait()
        {
            self.child = None;
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            return Err(format!(
                "launchgraph up exited early ({status}); last log lines: {tail:?}"
            ));
        }
        Ok(())
    }

    /// Waits until the log has `count` lines containing `needle`.
    fn wait_log(&mut self, needle: &str, count: usize, limit: Duration) -> R<()> {
        let end = Instant::now() + limit;
        loop {
            if self.log_text().matches(needle).count() >= count {
                return Ok(());
            }
            self.check_running()?;
            if Instant::now() >= end {
                return Err(format!(
                    "timed out after {limit:?} waiting for {count} log lines with {needle:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as i32;
        let units = children_of(pid);
        // SAFETY: plain kill(2) on our child, not yet waited for.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(15);
        while Instant::now() < end && !matches!(child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !matches!(child.try_wait(), Ok(Some(_))) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = child.wait();
        }
        for p in units {
            if p > 1 {
                // SAFETY: plain kill(2) of the process group a unit leads; ESRCH is fine.
                unsafe { libc::kill(-p, libc::SIGKILL) };
            }
        }
    }
}

/// The children of every thread of `pid`: the daemon's units.
fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(list) = fs::read_to_string(task.path().join("children")) {
            out.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    out
}

/// (utime + stime, cutime + cstime) of `pid` in clock ticks: the process's own, exited
/// threads included, and that of its children it has waited for.
fn cpu_ticks(pid: i32) -> Option<(u64, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|x| x.parse().ok())
        .collect();
    // After the comm: utime, stime, cutime, cstime are fields 14-17 of the whole line.
    Some((f.first()? + f.get(1)?, f.get(2)? + f.get(3)?))
}

/// On-CPU ns and context switches of each live thread.
fn thread_times(pid: i32) -> Vec<(String, u64, u64)> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let tid = t.file_name().to_string_lossy().into_owned();
        let ns = fs::read_to_string(t.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        let switches = fs::read_to_string(t.path().join("status"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("ctxt_switches"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        out.push((tid, ns, switches));
    }
    out
}

fn status_kib(pid: i32, key: &str) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------------------------
// (a) Idle cost.

/// The guards of `units/ollama.toml`, at the cadences the project's budget names, pointed at
/// the stand-in and at this machine's temp dir.
fn guards_toml(ollama: &str, disk: &Path) -> String {
    format!(
        r#"
[[guard]]
name = "ttft"
signal = "ttft"
url = "{ollama}"
model = "{MODEL}"
keep-alive = "15m"
idle-only = true
every = "30s"
stat = "median"
window = "5m"
above = "2.5s"
clear-below = "1.5s"
clear-for = "15m"

[[guard]]
name = "queue"
signal = "queue-depth"
command = ["/bin/echo", "0"]
every = "30s"
timeout = "30s"
above = 3
for = "2m"
clear-below = 1
clear-for = "10m"

[[switch]]
name = "cloud-fallback"
guards = ["ttft", "queue"]
when = "all"

[[guard]]
name = "swap"
signal = "swap-out-rate"
every = "10s"
above = "8MiB/s"
for = "5m"
clear-below = "1MiB/s"
clear-for = "10m"
mode = "advise"

[[guard]]
name = "pressure"
signal = "memory-pressure"
every = "10s"
above = "10%"
for = "5m"
mode = "advise"

[[guard]]
name = "disk-low"
signal = "disk-free"
path = {disk:?}
every = "10s"
below = "12%"
for = "2m"
clear-above = "15%"
mode = "advise"
"#
    )
}

struct IdleRow {
    label: &'static str,
    window: Duration,
    threads: usize,
    sched_ms: f64,
    ticks_ms: f64,
    child_ms: f64,
    switches: u64,
    rss_start: u64,
    rss_max: u64,
    rss_end: u64,
    probes: usize,
}

fn idle_run(
    root: &Path,
    stand: &Stand,
    label: &'static str,
    guards: bool,
    secs: u64,
    hz: f64,
) -> R<IdleRow> {
    let dir = root.join(format!("idle-{}", if guards { "guards" } else { "none" }));
    let units = dir.join("units");
    fs::create_dir_all(&units).map_err(|e| format!("cannot create {}: {e}", units.display()))?;
    let me = std::env::current_exe().map_err(|e| format!("no current exe: {e}"))?;
    let me = me.to_string_lossy();
    for i in 0..UNITS {
        let port = free_port()?.to_string();
        let extra = if guards && i == 0 {
            guards_toml(&stand.url(), root)
        } else {
            String::new()
        };
        write(
            &units.join(format!("i{i:02}.toml")),
            &format!(
                "[exec]\ncommand = {}\n\n[ready]\ntcp = \"127.0.0.1:{port}\"\n\n\
                 [alive]\ntcp = \"127.0.0.1:{port}\"\ninterval = \"5s\"\n{extra}",
                argv(&[&me, UNIT_ARG, &port])
            ),
        )?;
    }
    let mut d = Daemon::start(&units, &dir.join("log"))?;
    d.wait_log("-> ready", UNITS, Duration::from_secs(20))?;
    // Let the start-up settle, as supervise's idle part does.
    std::thread::sleep(Duration::from_secs(2));
    stand.take();
    let pid = d.pid();
    let rss_start = status_kib(pid, "VmRSS:").unwrap_or(0);
    let (t0, c0) = cpu_ticks(pid).ok_or("idle: cannot read the daemon's stat")?;
    let threads0 = thread_times(pid);
    let start = Instant::now();
    let mut rss_max = rss_start;
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        d.check_running()?;
        rss_max = rss_max.max(status_kib(pid, "VmRSS:").unwrap_or(0));
    }
    let window = start.elapsed();
    let (t1, c1) = cpu_ticks(pid).ok_or("idle: cannot read the daemon's stat")?;
    let threads1 = thread_times(pid);
    let rss_end = status_kib(pid, "VmRSS:").unwrap_or(0);
    let (mut sched_ns, mut switches) = (0u64, 0u64);
    for (tid, ns, sw) in &threads1 {
        let (ns0, sw0) = threads0
            .iter()
            .find(|t| &t.0 == tid)
            .map_or((0, 0), |t| (t.1, t.2));
        sched_ns += ns.saturating_sub(ns0);
        switches += sw.saturating_sub(sw0);
    }
    let probes = stand.take().iter().filter(|s| s.generate).count();
    if guards && probes == 0 && secs >= 30 {
        return Err("idle: the ttft guard never reached the stand-in".into());
    }
    drop(d);
    Ok(IdleRow {
        label,
        window,
        threads: threads1.len(),
        sched_ms: sched_ns as f64 / 1e6,
        ticks_ms: (t1 - t0) as f64 * 1000.0 / hz,
        child_ms: (c1 - c0) as f64 * 1000.0 / hz,
        switches,
        rss_start,
        rss_max,
        rss_end,
        probes,
    })
}

fn bench_idle(root: &Path, stand: &Stand, secs: u64) -> R<()> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    stand.set_delay(Duration::ZERO);
    println!(
        "(a) idle cost of the shipped guards: {UNITS} ready units, tcp [alive] every 5 s, \
         sampled over {secs} s"
    );
    println!(
        "    guards (on one unit): ttft every 30 s (scripted Ollama on loopback), queue-depth \
         every 30 s (/bin/echo 0),"
    );
    println!("    swap-out-rate, memory-pressure and disk-free every 10 s");
    let mut rows = Vec::new();
    for (label, guards) in [("without guards", false), ("with guards", true)] {
        quiet(&format!("before {label}"));
        rows.push(idle_run(root, stand, label, guards, secs, hz)?);
    }
    quiet("after");
    println!(
        "    {:<16} {:>7} {:>8} {:>10} {:>9} {:>9} {:>7} {:>9} {:>9} {:>9} {:>6}",
        "daemon",
        "window",
        "threads",
        "sched ms",
        "ticks ms",
        "child ms",
        "ctx sw",
        "RSS start",
        "RSS max",
        "RSS end",
        "ttft"
    );
    let mib = |k: u64| format!("{:.2}M", k as f64 / 1024.0);
    for r in &rows {
        println!(
            "    {:<16} {:>6.0}s {:>8} {:>10.1} {:>9.0} {:>9.0} {:>7} {:>9} {:>9} {:>9} {:>6}",
            r.label,
            r.window.as_secs_f64(),
            r.threads,
            r.sched_ms,
            r.ticks_ms,
            r.child_ms,
            r.switches,
            mib(r.rss_start),
            mib(r.rss_max),
            mib(r.rss_end),
            r.probes
        );
    }
    if let [a, b] = &rows[..] {
        println!(
            "    {:<16} {:>7} {:>8} {:>+10.1} {:>+9.0} {:>+9.0} {:>+7} {:>9} {:>+8.2}M {:>+8.2}M",
            "difference",
            "",
            "",
            b.sched_ms - a.sched_ms,
            b.ticks_ms - a.ticks_ms,
            b.child_ms - a.child_ms,
            b.switches as i64 - a.switches as i64,
            "",
            (b.rss_max as f64 - a.rss_max as f64) / 1024.0,
            (b.rss_end as f64 - a.rss_end as f64) / 1024.0,
        );
    }
    println!(
        "    sched ms = on-CPU time of the threads alive at the window's end (schedstat, ns);"
    );
    println!(
        "    ticks ms = utime+stime of the process, exited threads included ({hz:.0} ticks/s, \
         {:.0} ms resolution);",
        1000.0 / hz
    );
    println!(
        "    child ms = utime+stime of the children it reaped (the guards' commands); ctx sw = \
         voluntary + involuntary"
    );
    println!("    switches of the live threads; ttft = probes the stand-in served in the window");
    println!();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (b) TTFT probe overhead.

/// Nearest-rank percentiles, in ms.
struct Pct {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Pct {
    fn of(values: &[f64]) -> Option<Pct> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Some(Pct {
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: v[v.len() - 1],
        })
    }
}

/// `p50 / p90 / p99 / max`.
struct Quad(Option<Pct>);

impl fmt::Display for Quad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cell = match &self.0 {
            Some(p) => format!("{:.3} / {:.3} / {:.3} / {:.3}", p.p50, p.p90, p.p99, p.max),
            None => "n/a".into(),
        };
        f.pad(&cell)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn bench_probe(stand: &Stand, reps: usize) -> R<()> {
    println!(
        "(b) TTFT probe overhead: the library's ttft sampler against the scripted Ollama, \
         {reps} probes per delay"
    );
    println!(
        "    one probe = GET /api/ps, then a streamed POST /api/generate; the stand-in sends \
         its token D after reading"
    );
    println!("    the request, then the final chunk at once, on a runtime thread of its own");
    // The daemon samples guards on a current-thread runtime; so does this.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build a runtime: {e}"))?;
    let url = url::Url::parse(&stand.url()).map_err(|e| e.to_string())?;
    let mut params = TtftParams::new(url, Api::Ollama, MODEL);
    params.keep_alive = Some("15m".into());
    let mut sampler = Ttft::new(params);
    println!(
        "    {:<7} {:<34} {:>37}",
        "D", "figure", "ms p50 / p90 / p99 / max"
    );
    for d in [Duration::ZERO, Duration::from_millis(50)] {
        stand.set_delay(d);
        // Warm-up: the first connection and the allocator's first pages.
        for _ in 0..5 {
            rt.block_on(sampler.sample());
        }
        stand.take();
        quiet(&format!("before D = {} ms", d.as_millis()));
        let (mut overhead, mut ttft_err, mut server) = (Vec::new(), Vec::new(), Vec::new());
        let mut ph: [Vec<f64>; 5] = Default::default();
        let mut unknown = 0;
        for _ in 0..reps {
            let t = Instant::now();
            let s = rt.block_on(sampler.sample());
            let wall = t.elapsed();
            // The sampler can have read the last byte before the stand-in has booked the
            // request: wait for the booking, so each sample gets its own.
            let mut served = stand.take();
            let end = Instant::now() + Duration::from_secs(1);
            while !served.iter().any(|s| s.generate) && Instant::now() < end {
                std::thread::sleep(Duration::from_micros(50));
                served.extend(stand.take());
            }
            let Sample::Known(r) = s else {
                unknown += 1;
                continue;
            };
            let server_time: Duration = served
                .iter()
                .map(|s| s.last.saturating_duration_since(s.received))
                .sum();
            overhead.push(ms(wall.saturating_sub(server_time)));
            server.push(ms(server_time));
            if let (Some(g), Some(ft)) = (served.iter().find(|s| s.generate), r.phases.first_token)
            {
                // What the sampler's first_token adds to the server's own time to it.
                let own = g.first.saturating_duration_since(g.received);
                ttft_err.push(ms(ft.saturating_sub(own)));
            }
            let p = r.phases;
            ph[0].push(ms(p.connect));
            ph[1].push(ms(p.request));
            ph[2].push(p.headers.map_or(f64::NAN, ms));
            ph[3].push(p.first_token.map_or(f64::NAN, ms));
            ph[4].push(p.total.map_or(f64::NAN, ms));
        }
        let dl = format!("{} ms", d.as_millis());
        let row = |label: &str, v: &[f64]| {
            let v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
            println!("    {:<7} {:<34} {:>37}", dl, label, Quad(Pct::of(&v)));
        };
        row("overhead = wall - server time", &overhead);
        row("server time (both requests)", &server);
        row("wall time of one sample", &{
            overhead
                .iter()
                .zip(&server)
                .map(|(o, s)| o + s)
                .collect::<Vec<_>>()
        });
        row("first_token - server's own", &ttft_err);
        for (label, v) in [
            "phase connect",
            "phase request",
            "phase headers",
            "phase first_token",
            "phase total",
        ]
        .iter()
        .zip(&ph)
        {
            row(label, v);
        }
        if unknown > 0 {
            println!("    {dl:<7} {unknown} samples were unknown");
        }
    }
    quiet("after");
    println!(
        "    server time = per request, from the stand-in having read it to its last byte \
         written; overhead is"
    );
    println!(
        "    everything else: connects, writing and parsing on both ends, the JSON, the \
         runtime's wake-ups"
    );
    println!();
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() == 2 && args[0] == UNIT_ARG {
        return unit_listen(&args[1]);
    }
    let only: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let wants = |part: &str| only.is_empty() || only.iter().any(|a| *a == part);
    let root = match tempfile::tempdir() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("guards: cannot create a temp dir: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stand = match Stand::start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("guards: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let profile = if cfg!(debug_assertions) {
        "debug (figures are not representative)"
    } else {
        "release (bench profile)"
    };
    println!("guards: {}", bin());
    println!(
        "machine: {cores} cores, kernel {}, build {profile}; load {}",
        fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        loadavg()
    );
    println!();
    let secs = env_usize("LAUNCHGRAPH_BENCH_IDLE_SECS")
        .unwrap_or(60)
        .max(1) as u64;
    let reps = env_usize("LAUNCHGRAPH_BENCH_REPS").unwrap_or(500).max(1);
    let mut result = Ok(());
    if result.is_ok() && wants("idle") {
        result = bench_idle(root.path(), &stand, secs);
    }
    if result.is_ok() && wants("probe") {
        result = bench_probe(&stand, reps);
    }
    let _ = std::io::stdout().flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guards: {e}");
            ExitCode::FAILURE
        }
    }
}
