//! Supervision benchmark: the real `launchgraph up --units DIR` on generated unit directories,
//! timed from outside with one clock (CLOCK_REALTIME, ns) shared by the benchmark, the units
//! and the daemon's log timestamps.
//!
//! - `gate`: from the instant a requirement's port starts listening to the instant its
//!   dependent is exec'd (tcp readiness probe), for several start-up delays.
//! - `crash`: from a SIGKILL of a unit's process to its new instance's exec, with a zero
//!   backoff; detection alone from the daemon's `backoff` log line.
//! - `idle`: the daemon's RSS and CPU time while 10 ready units are probed every 5 s, and for
//!   TCP probes the floor: a C program making the same connects over the same window.
//! - `up200`: 200 units brought up, then stopped on SIGTERM; `upscale`: the same for 200,
//!   1,000 and 3,000 units (the stamp program only), to see how start-up grows.
//!
//! Run with `cargo bench --bench supervise`, or name parts: `cargo bench --bench supervise --
//! gate crash`. `LAUNCHGRAPH_BENCH_REPS` sets the samples per row (default 30 for `gate`, 40
//! for `crash`, 5 for `up200`, 3 for `upscale`); `LAUNCHGRAPH_BENCH_IDLE_SECS` the idle window (default 60);
//! `LAUNCHGRAPH_BENCH_IDLE=tcp` (or `exec`) runs one row of `idle` alone.
//! `LAUNCHGRAPH_BENCH_BIN` runs another build of the binary instead of this one's;
//! `LAUNCHGRAPH_BENCH_QUIET=PCT` makes each sample wait until the machine is below PCT % busy
//! (for a machine shared with other work; the background load is printed either way).
//! The units are a small C program compiled with `cc` at start into the temp dir: it writes
//! the instant it starts (or the instant right after `listen()`) and then waits. Nothing here
//! asserts a speed; the targets are in docs/performance.md.

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_launchgraph");

/// The binary under test: this build's, or `LAUNCHGRAPH_BENCH_BIN` to compare another build
/// with the same harness.
fn bin() -> String {
    std::env::var("LAUNCHGRAPH_BENCH_BIN").unwrap_or_else(|_| BIN.to_owned())
}

const SEED: u64 = 0x7375_7065_7276;

/// The unit program. `stamp FILE`: append "pid ns" (the instant it started) to FILE, then wait
/// for a signal. `listen PORT DELAY_US FILE`: wait DELAY_US, bind 127.0.0.1:PORT, listen,
/// append "pid ns" (the instant right after `listen()`; FILE `-` for none), then accept and
/// close connections forever. `probe PERIOD_MS PORT...`: every PERIOD_MS, connect to each
/// loopback PORT and close at once, with the system calls the daemon's TCP probe makes (the
/// idle benchmark's floor). `now`: print the instant it started.
const HELPER_C: &str = r#"
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void record(const char *path, long long t) {
    char buf[64];
    int n, fd;
    if (strcmp(path, "-") == 0) return;
    n = snprintf(buf, sizeof buf, "%d %lld\n", (int)getpid(), t);
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) _exit(73);
    if (write(fd, buf, n) != n) _exit(74);
    close(fd);
}

int main(int argc, char **argv) {
    long long t = now_ns();
    if (argc == 3 && strcmp(argv[1], "stamp") == 0) {
        record(argv[2], t);
        for (;;) pause();
    }
    if (argc == 5 && strcmp(argv[1], "listen") == 0) {
        int port = atoi(argv[2]), one = 1, s;
        long long us = atoll(argv[3]);
        struct timespec d = { us / 1000000, (us % 1000000) * 1000 };
        struct sockaddr_in a;
        while (nanosleep(&d, &d) == -1) {}
        s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0) _exit(71);
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) _exit(75);
        if (listen(s, 128) != 0) _exit(75);
        record(argv[4], now_ns());
        for (;;) {
            int c = accept(s, 0, 0);
            if (c >= 0) close(c);
        }
    }
    if (argc >= 3 && strcmp(argv[1], "probe") == 0) {
        long long ms = atoll(argv[2]);
        for (;;) {
            struct timespec d = { ms / 1000, (ms % 1000) * 1000000L };
            int i;
            while (nanosleep(&d, &d) == -1) {}
            for (i = 3; i < argc; i++) {
                struct sockaddr_in a;
                int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                if (s < 0) _exit(71);
                memset(&a, 0, sizeof a);
                a.sin_family = AF_INET;
                a.sin_port = htons(atoi(argv[i]));
                a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                if (connect(s, (struct sockaddr *)&a, sizeof a) != 0 && errno == EINPROGRESS) {
                    struct pollfd p = { s, POLLOUT, 0 };
                    poll(&p, 1, 0);
                }
                close(s);
            }
        }
    }
    if (argc == 2 && strcmp(argv[1], "now") == 0) {
        printf("%lld\n", t);
        return 0;
    }
    fprintf(stderr,
            "usage: helper stamp FILE | listen PORT DELAY_US FILE | probe PERIOD_MS PORT... | now\n");
    return 64;
}
"#;

type R<T> = Result<T, String>;

/// CLOCK_REALTIME in ns, the clock the units and the daemon's log use.
fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

fn ms(ns: i128) -> f64 {
    ns as f64 / 1e6
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
    // user nice system idle iowait irq softirq steal ...
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    let steal = *v.get(7)?;
    Some((total - idle - steal, steal, total))
}

/// How busy the machine is while this benchmark does nothing, over `window`: (busy %, steal %)
/// of all cores. Other builds on a shared machine show up here.
fn background(window: Duration) -> Option<(f64, f64)> {
    let (b0, s0, t0) = cpu_totals()?;
    std::thread::sleep(window);
    let (b1, s1, t1) = cpu_totals()?;
    let dt = (t1 - t0).max(1) as f64;
    Some(((b1 - b0) as f64 * 100.0 / dt, (s1 - s0) as f64 * 100.0 / dt))
}

/// The background load now; with `LAUNCHGRAPH_BENCH_QUIET=PCT`, first waits (up to 10
/// minutes) until the machine is below PCT % busy for 3 s in a row.
fn settle() -> Option<(f64, f64)> {
    let want = std::env::var("LAUNCHGRAPH_BENCH_QUIET")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok());
    let end = Instant::now() + Duration::from_secs(600);
    let mut calm = 0;
    let mut last = None;
    loop {
        last = background(Duration::from_secs(1)).or(last);
        let Some(threshold) = want else { break };
        match last {
            Some((busy, _)) if busy < threshold => calm += 1,
            _ => calm = 0,
        }
        if calm >= 3 || Instant::now() >= end {
            break;
        }
    }
    last
}

/// With `LAUNCHGRAPH_BENCH_QUIET=PCT`, waits before a sample until the machine was below PCT %
/// busy over 200 ms (at most 60 s; false if it never was). Without it, returns at once.
fn calm() -> bool {
    let Some(threshold) = std::env::var("LAUNCHGRAPH_BENCH_QUIET")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
    else {
        return true;
    };
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        match background(Duration::from_millis(200)) {
            Some((busy, _)) if busy < threshold => return true,
            None => return true,
            _ => {}
        }
    }
    false
}

fn bg_cell(bg: Option<(f64, f64)>) -> String {
    bg.map_or_else(|| "n/a".into(), |(b, s)| format!("{b:.0}%/{s:.0}%"))
}

/// Prints the background load (see [`settle`]) before or after a part.
fn quiet(when: &str) {
    println!(
        "    background {when}: {} busy/steal (1 s, all cores, this benchmark idle); load {}",
        bg_cell(settle()),
        loadavg()
    );
}

/// Polls `f` every `every` until it returns `Some`, for at most `limit`.
fn wait_for<T>(limit: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// A port nothing listens on right now.
fn free_port() -> R<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("cannot bind: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no local address: {e}"))
}

/// The lines "pid ns" a unit program appended to `path`.
fn stamps(path: &Path) -> Vec<(i32, i128)> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect()
}

fn toml_str(s: &str) -> String {
    format!("{s:?}")
}

fn argv(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| toml_str(s)).collect();
    format!("[{}]", quoted.join(", "))
}

// ---------------------------------------------------------------------------------------------
// The daemon and its log.

/// One line of the daemon's log: its timestamp and its message (after the level).
struct LogLine {
    ns: i128,
    msg: String,
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-23T23:59:25.885672Z` as ns since the epoch.
fn parse_ts(s: &str) -> Option<i128> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi, se) = (t.next()??, t.next()??, t.next()??);
    let digits = frac.len().min(9);
    let frac_ns: i128 = frac[..digits].parse::<i128>().ok()? * 10i128.pow(9 - digits as u32);
    let secs = days_from_civil(y, mo, da) * 86_400 + h * 3_600 + mi * 60 + se;
    Some(secs as i128 * 1_000_000_000 + frac_ns)
}

fn read_log(path: &Path) -> Vec<LogLine> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (ts, rest) = l.split_once(' ')?;
            let rest = rest.trim_start();
            let (_level, msg) = rest.split_once(' ')?;
            Some(LogLine {
                ns: parse_ts(ts)?,
                msg: msg.trim_start().to_owned(),
            })
        })
        .collect()
}

/// Timestamps of the log lines that start with `prefix`, in order.
fn log_times(lines: &[LogLine], prefix: &str) -> Vec<i128> {
    lines
        .iter()
        .filter(|l| l.msg.starts_with(prefix))
        .map(|l| l.ns)
        .collect()
}

/// A running `launchgraph up`. Dropping it stops it (SIGTERM, then SIGKILL to it and to the
/// process group of every unit it had), so no process outlives the benchmark, on error paths
/// too.
struct Daemon {
    child: Option<Child>,
    log: PathBuf,
    /// When it was spawned.
    spawned_ns: i128,
}

impl Daemon {
    fn start(units: &Path, log: &Path) -> R<Daemon> {
        let file = fs::File::create(log).map_err(|e| format!("cannot create the log: {e}"))?;
        let mut cmd = Command::new(bin());
        cmd.args(["up", "--units"])
            .arg(units)
            .env("NO_COLOR", "1")
            .env("LAUNCHGRAPH_LOG", "info")
            .env_remove("LAUNCHGRAPH_UNITS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file));
        let spawned_ns = now_ns();
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin()))?;
        Ok(Daemon {
            child: Some(child),
            log: log.to_owned(),
            spawned_ns,
        })
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    fn log(&self) -> Vec<LogLine> {
        read_log(&self.log)
    }

    /// Fails if the daemon has exited: it should run until told to stop.
    fn check_running(&mut self) -> R<()> {
        if let Some(child) = &mut self.child
            && let Ok(Some(status)) = child.try_wait()
        {
            self.child = None;
            let tail: Vec<String> = self
                .log()
                .iter()
                .rev()
                .take(5)
                .map(|l| l.msg.clone())
                .collect();
            return Err(format!(
                "launchgraph up exited early ({status}); last log lines: {tail:?}"
            ));
        }
        Ok(())
    }

    /// Waits until the log has `count` lines starting with `prefix`, checking the daemon is
    /// still running.
    fn wait_log(&mut self, prefix: &str, count: usize, limit: Duration) -> R<Vec<LogLine>> {
        let end = Instant::now() + limit;
        loop {
            let lines = self.log();
            if lines.iter().filter(|l| l.msg.contains(prefix)).count() >= count {
                return Ok(lines);
            }
            self.check_running()?;
            if Instant::now() >= end {
                return Err(format!(
                    "timed out after {limit:?} waiting for {count} log lines with {prefix:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGTERM, then waits for the exit (SIGKILL after `limit`). Returns the time from the
    /// signal to the exit as seen by `waitpid`, and the status.
    fn stop(&mut self, limit: Duration) -> R<(Duration, ExitStatus)> {
        let Some(mut child) = self.child.take() else {
            return Err("the daemon is not running".into());
        };
        let pid = child.id() as i32;
        let units = children_of(pid);
        let done = Arc::new(AtomicBool::new(false));
        let watchdog = {
            let done = done.clone();
            std::thread::spawn(move || {
                let end = Instant::now() + limit;
                while Instant::now() < end {
                    if done.load(Ordering::Acquire) {
                        return false;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                if done.load(Ordering::Acquire) {
                    return false;
                }
                // SAFETY: plain kill(2) on a pid that is our child and not yet waited for.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                true
            })
        };
        let t = Instant::now();
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = child.wait();
        let took = t.elapsed();
        done.store(true, Ordering::Release);
        let killed = watchdog.join().unwrap_or(false);
        if killed {
            kill_groups(&units);
            return Err(format!(
                "the daemon did not stop within {limit:?} of SIGTERM; killed it and its units"
            ));
        }
        let status = status.map_err(|e| format!("cannot wait for the daemon: {e}"))?;
        Ok((took, status))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let Some(child) = &mut self.child else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        let pid = child.id() as i32;
        let units = children_of(pid);
        // SAFETY: plain kill(2) on our child, not yet waited for.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let gone = wait_for(Duration::from_secs(15), Duration::from_millis(10), || {
            matches!(child.try_wait(), Ok(Some(_))).then_some(())
        });
        if gone.is_none() {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = child.wait();
        }
        kill_groups(&units);
    }
}

/// The children of every thread of `pid`: the daemon's units and probes.
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

/// SIGKILL to the process group each unit leads (units run in sessions of their own), for
/// what a daemon that did not stop left behind. ESRCH, the usual answer, is fine.
fn kill_groups(pids: &[i32]) {
    for &p in pids {
        if p > 1 {
            // SAFETY: plain kill(2); a negative pid names the process group the unit leads.
            unsafe { libc::kill(-p, libc::SIGKILL) };
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Figures.

/// Percentiles by nearest rank, in ms.
struct Pct {
    min: f64,
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
            min: v[0],
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: v[v.len() - 1],
        })
    }
}

/// `p50 / p90 / p99 / max`.
struct Quad<'a>(&'a Option<Pct>);

impl fmt::Display for Quad<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cell = match self.0 {
            Some(p) => format!("{:.2} / {:.2} / {:.2} / {:.2}", p.p50, p.p90, p.p99, p.max),
            None => "n/a".into(),
        };
        f.pad(&cell)
    }
}

/// `min / median / max`.
struct Tri<'a>(&'a Option<Pct>);

impl fmt::Display for Tri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cell = match self.0 {
            Some(p) => format!("{:.1} / {:.1} / {:.1}", p.min, p.p50, p.max),
            None => "n/a".into(),
        };
        f.pad(&cell)
    }
}

/// "p50 / p90" of `p`.
fn p50_p90(p: &Option<Pct>) -> String {
    p.as_ref()
        .map_or_else(|| "n/a".into(), |p| format!("{:.2} / {:.2}", p.p50, p.p90))
}

// ---------------------------------------------------------------------------------------------
// The parts.

struct Bench {
    root: PathBuf,
    helper: String,
    rng: fastrand::Rng,
}

impl Bench {
    fn dir(&self, name: &str) -> R<PathBuf> {
        let d = self.root.join(name);
        fs::create_dir_all(&d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        Ok(d)
    }
}

fn write(path: &Path, text: &str) -> R<()> {
    fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Compiles the unit program into `dir`, statically when the toolchain allows (less start-up
/// between exec and the first clock read), and measures that start-up.
fn build_helper(dir: &Path) -> R<(String, String)> {
    let src = dir.join("helper.c");
    write(&src, HELPER_C)?;
    let out = dir.join("helper");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let mut how = String::new();
    for flags in [&["-O2", "-static"][..], &["-O2"][..]] {
        let ok = Command::new(&cc)
            .args(flags)
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            how = format!("{cc} {}", flags.join(" "));
            break;
        }
    }
    if how.is_empty() {
        return Err(format!(
            "cannot compile the unit program with `{cc}` (set CC to a C compiler)"
        ));
    }
    Ok((out.to_string_lossy().into_owned(), how))
}

/// How long from a spawn by this process to the helper's first clock read: an upper bound of
/// the start-up every exec instant below includes.
fn exec_overhead(helper: &str) -> Option<Pct> {
    let mut v = Vec::new();
    for _ in 0..30 {
        let t = now_ns();
        let Ok(out) = Command::new(helper).arg("now").output() else {
            continue;
        };
        if let Ok(s) = String::from_utf8_lossy(&out.stdout).trim().parse::<i128>() {
            v.push(ms(s - t));
        }
    }
    Pct::of(&v)
}

struct GateScenario {
    label: &'static str,
    /// The requirement's delay before it listens, in µs, drawn uniformly.
    delay_us: (u64, u64),
    /// `[ready] interval`, when not the default.
    interval: Option<&'static str>,
}

fn bench_gate(b: &mut Bench, reps: usize) -> R<()> {
    println!("(a) gate latency: requirement's listen() -> dependent's exec, [ready] tcp probe");
    println!(
        "    fresh daemon per sample, one requirement and one dependent; load {}",
        loadavg()
    );
    let scenarios = [
        GateScenario {
            label: "0 (listens at once)",
            delay_us: (0, 0),
            interval: None,
        },
        GateScenario {
            label: "10-50 ms",
            delay_us: (10_000, 50_000),
            interval: None,
        },
        GateScenario {
            label: "50-500 ms",
            delay_us: (50_000, 500_000),
            interval: None,
        },
        GateScenario {
            label: "0.5-2 s",
            delay_us: (500_000, 2_000_000),
            interval: None,
        },
        GateScenario {
            label: "50-500 ms",
            delay_us: (50_000, 500_000),
            interval: Some("10ms"),
        },
    ];
    println!(
        "    {:<20} {:>8} {:>3}  {:>33}  {:>14}  {:>13}  {:>9}",
        "delay before listen",
        "interval",
        "n",
        "gate ms p50 / p90 / p99 / max",
        "listen->ready",
        "ready->exec",
        "bg before"
    );
    for (k, s) in scenarios.iter().enumerate() {
        let bg = settle();
        let (mut gate, mut detect, mut spawn) = (Vec::new(), Vec::new(), Vec::new());
        for trial in 0..reps {
            let delay = if s.delay_us.0 == s.delay_us.1 {
                s.delay_us.0
            } else {
                b.rng.u64(s.delay_us.0..s.delay_us.1)
            };
            let dir = b.dir(&format!("gate/{k}-{trial}"))?;
            let units = dir.join("units");
            fs::create_dir_all(&units).map_err(|e| e.to_string())?;
            let (req_file, dep_file) = (dir.join("req.stamps"), dir.join("dep.stamps"));
            let port = free_port()?;
            let interval = s
                .interval
                .map(|i| format!("interval = {}\n", toml_str(i)))
                .unwrap_or_default();
            write(
                &units.join("req.toml"),
                &format!(
                    "[exec]\ncommand = {}\n\n[ready]\ntcp = \"127.0.0.1:{port}\"\n{interval}",
                    argv(&[
                        &b.helper,
                        "listen",
                        &port.to_string(),
                        &delay.to_string(),
                        &req_file.to_string_lossy()
                    ])
                ),
            )?;
            write(
                &units.join("dep.toml"),
                &format!(
                    "requires = [\"req\"]\n\n[exec]\ncommand = {}\n",
                    argv(&[&b.helper, "stamp", &dep_file.to_string_lossy()])
                ),
            )?;
            calm();
            let mut d = Daemon::start(&units, &dir.join("log"))?;
            let limit = Duration::from_micros(delay) + Duration::from_secs(10);
            let dep = wait_for(limit, Duration::from_millis(5), || {
                stamps(&dep_file).first().copied()
            });
            let Some((_, exec_ns)) = dep else {
                d.check_running()?;
                return Err(format!(
                    "gate: the dependent did not start within {limit:?}"
                ));
            };
            // The requirement writes its stamp right after listen(), but on a busy machine it
            // may be preempted in between, and the dependent start first: wait for it.
            let listened = wait_for(Duration::from_secs(5), Duration::from_millis(5), || {
                stamps(&req_file).first().copied()
            });
            let Some((_, listen_ns)) = listened else {
                return Err("gate: the requirement left no listen instant".into());
            };
            let log = d.log();
            d.stop(Duration::from_secs(15))?;
            gate.push(ms(exec_ns - listen_ns));
            if let Some(&ready) = log_times(&log, "req: started -> ready").first() {
                detect.push(ms(ready - listen_ns));
                spawn.push(ms(exec_ns - ready));
            }
        }
        println!(
            "    {:<20} {:>8} {:>3}  {:>33}  {:>14}  {:>13}  {:>9}",
            s.label,
            s.interval.unwrap_or("1s"),
            gate.len(),
            Quad(&Pct::of(&gate)),
            p50_p90(&Pct::of(&detect)),
            p50_p90(&Pct::of(&spawn)),
            bg_cell(bg),
        );
    }
    println!("    listen->ready: to the daemon's `started -> ready` log line (µs resolution);");
    println!(
        "    ready->exec: from that line to the dependent's first clock read; both p50 / p90, ms;"
    );
    println!(
        "    bg before: the machine's busy/steal % over 1 s before the row, this benchmark idle"
    );
    quiet("after");
    println!();
    Ok(())
}

fn bench_crash(b: &mut Bench, reps: usize) -> R<()> {
    // The daemon's log shows at most 5 identical transitions per unit per minute: kill each
    // unit at most 5 times so that every detection instant is in the log.
    const PER_UNIT: usize = 5;
    let units_n = reps.div_ceil(PER_UNIT).max(1);
    println!(
        "(b) crash handling: SIGKILL -> new instance exec'd, [restart] initial = \"0s\", \
         {units_n} units x {PER_UNIT} kills"
    );
    quiet("before");
    let dir = b.dir("crash")?;
    let units = dir.join("units");
    fs::create_dir_all(&units).map_err(|e| e.to_string())?;
    let files: Vec<PathBuf> = (0..units_n)
        .map(|i| dir.join(format!("c{i:02}.stamps")))
        .collect();
    for (i, f) in files.iter().enumerate() {
        write(
            &units.join(format!("c{i:02}.toml")),
            &format!(
                "[exec]\ncommand = {}\n\n[restart]\ninitial = \"0s\"\nstart-limit-count = 10000\n",
                argv(&[&b.helper, "stamp", &f.to_string_lossy()])
            ),
        )?;
    }
    let mut d = Daemon::start(&units, &dir.join("log"))?;
    d.wait_log("-> ready", units_n, Duration::from_secs(10))?;
    wait_for(Duration::from_secs(5), Duration::from_millis(5), || {
        files.iter().all(|f| !stamps(f).is_empty()).then_some(())
    })
    .ok_or("crash: not every unit started")?;

    // (unit, kill instant, new exec instant)
    let mut kills: Vec<(usize, i128, i128)> = Vec::new();
    for round in 0..PER_UNIT {
        for (i, f) in files.iter().enumerate() {
            if kills.len() >= reps.max(units_n) {
                break;
            }
            std::thread::sleep(Duration::from_millis(30));
            calm();
            let before = stamps(f);
            let Some(&(pid, _)) = before.last() else {
                return Err("crash: a unit has no pid".into());
            };
            let t_kill = now_ns();
            // SAFETY: plain kill(2) of the unit's process, which this benchmark's daemon runs.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let after = wait_for(Duration::from_secs(5), Duration::from_millis(1), || {
                let s = stamps(f);
                (s.len() > before.len()).then(|| s[before.len()])
            });
            let Some((_, exec_ns)) = after else {
                d.check_running()?;
                return Err(format!("crash: c{i:02} was not restarted (round {round})"));
            };
            kills.push((i, t_kill, exec_ns));
        }
    }
    std::thread::sleep(Duration::from_millis(50));
    let log = d.log();
    d.stop(Duration::from_secs(15))?;

    let (mut total, mut detect, mut respawn) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..units_n {
        let backoff = log_times(&log, &format!("c{i:02}: ready -> backoff"));
        let mine: Vec<_> = kills.iter().filter(|k| k.0 == i).collect();
        for (n, &&(_, t_kill, exec_ns)) in mine.iter().enumerate() {
            total.push(ms(exec_ns - t_kill));
            if let Some(&t) = backoff.get(n) {
                detect.push(ms(t - t_kill));
                respawn.push(ms(exec_ns - t));
            }
        }
    }
    println!(
        "    {:<44} {:>3}  {:>33}",
        "phase", "n", "ms p50 / p90 / p99 / max"
    );
    for (label, v) in [
        ("kill -> new instance exec'd (total)", &total),
        ("kill -> `ready -> backoff` line (detection)", &detect),
        ("`backoff` line -> new instance exec'd", &respawn),
    ] {
        println!(
            "    {:<44} {:>3}  {:>33}",
            label,
            v.len(),
            Quad(&Pct::of(v))
        );
    }
    quiet("after");
    println!();
    Ok(())
}

/// utime + stime of `pid`, in clock ticks.
/// A C program making the idle benchmark's connects every 5 s (`helper probe`), to listeners
/// of its own; all killed when dropped.
struct Floor {
    prober: Option<Child>,
    listeners: Vec<Child>,
}

impl Floor {
    fn start(helper: &str, units: usize) -> R<Floor> {
        let spawn = |args: &[&str]| {
            Command::new(helper)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot run {helper}: {e}"))
        };
        // Built up in place, so that whatever was started is killed on every early return.
        let mut floor = Floor {
            prober: None,
            listeners: Vec::new(),
        };
        let mut ports = Vec::new();
        for _ in 0..units {
            let port = free_port()?.to_string();
            floor.listeners.push(spawn(&["listen", &port, "0", "-"])?);
            ports.push(port);
        }
        // The listeners bind at once; their first connects come 5 s later.
        let mut args = vec!["probe", "5000"];
        args.extend(ports.iter().map(String::as_str));
        floor.prober = Some(spawn(&args)?);
        Ok(floor)
    }

    fn on_cpu_ns(&self) -> u64 {
        self.prober
            .as_ref()
            .map_or(0, |p| thread_times(p.id() as i32).iter().map(|t| t.1).sum())
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        for c in self.prober.iter_mut().chain(self.listeners.iter_mut()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn cpu_ticks(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state is field 3, utime 14 and stime 15 (1-based over the whole line).
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// On-CPU ns of each live thread (schedstat), and its context switches.
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

fn bench_idle(b: &mut Bench, secs: u64) -> R<()> {
    const UNITS: usize = 10;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    println!(
        "(c) idle footprint: {UNITS} ready units, each with an [alive] probe every 5 s, \
         sampled over {secs} s from 15 s after the last ready"
    );
    quiet("before");
    println!(
        "    {:<18} {:>9} {:>9} {:>9} {:>9} {:>8} {:>11} {:>10} {:>8}",
        "alive probe",
        "RSS start",
        "RSS max",
        "RSS end",
        "HWM",
        "threads",
        "CPU ms",
        "sched ms",
        "ctx sw"
    );
    // `LAUNCHGRAPH_BENCH_IDLE=tcp` (or `exec`) measures one kind alone.
    let only = std::env::var("LAUNCHGRAPH_BENCH_IDLE").ok();
    for kind in ["tcp", "exec /bin/true"] {
        if only.as_deref().is_some_and(|o| !kind.starts_with(o)) {
            continue;
        }
        let dir = b.dir(&format!("idle-{}", kind.split(' ').next().unwrap_or(kind)))?;
        let units = dir.join("units");
        fs::create_dir_all(&units).map_err(|e| e.to_string())?;
        for i in 0..UNITS {
            let port = free_port()?;
            let alive = if kind == "tcp" {
                format!("tcp = \"127.0.0.1:{port}\"")
            } else {
                "exec = [\"/bin/true\"]".to_owned()
            };
            write(
                &units.join(format!("i{i:02}.toml")),
                &format!(
                    "[exec]\ncommand = {}\n\n[ready]\ntcp = \"127.0.0.1:{port}\"\n\n\
                     [alive]\n{alive}\ninterval = \"5s\"\n",
                    argv(&[&b.helper, "listen", &port.to_string(), "0", "-"])
                ),
            )?;
        }
        let mut d = Daemon::start(&units, &dir.join("log"))?;
        d.wait_log("-> ready", UNITS, Duration::from_secs(10))?;
        // The floor, for the tcp row: a C program making the same connects every 5 s to
        // listeners of its own, measured over the same window.
        let floor = if kind == "tcp" {
            Some(Floor::start(&b.helper, UNITS)?)
        } else {
            None
        };
        // Let the start-up settle, so that the window holds idling alone: the blocking
        // threads the starts woke idle out 10 s after their last job, and the daemon gives
        // back its start-only pages 1 s after the last start and again 12 s after
        // (src/code_pages.rs). Their time is in utime+stime already, outside the window.
        std::thread::sleep(Duration::from_secs(15));
        let pid = d.pid();
        let rss_start = status_kib(pid, "VmRSS:").unwrap_or(0);
        let ticks0 = cpu_ticks(pid).ok_or("idle: cannot read the daemon's stat")?;
        let threads0 = thread_times(pid);
        let floor0 = floor.as_ref().map(Floor::on_cpu_ns);
        let t0 = Instant::now();
        let mut rss_max = rss_start;
        while t0.elapsed() < Duration::from_secs(secs) {
            std::thread::sleep(Duration::from_secs(1).min(Duration::from_secs(secs)));
            d.check_running()?;
            rss_max = rss_max.max(status_kib(pid, "VmRSS:").unwrap_or(0));
        }
        let window = t0.elapsed();
        let ticks1 = cpu_ticks(pid).ok_or("idle: cannot read the daemon's stat")?;
        let threads1 = thread_times(pid);
        let floor_ms = floor
            .as_ref()
            .zip(floor0)
            .map(|(f, ns0)| f.on_cpu_ns().saturating_sub(ns0) as f64 / 1e6);
        drop(floor);
        let rss_end = status_kib(pid, "VmRSS:").unwrap_or(0);
        let hwm = status_kib(pid, "VmHWM:").unwrap_or(0);
        let (mut sched_ns, mut switches) = (0u64, 0u64);
        for (tid, ns, sw) in &threads1 {
            let (ns0, sw0) = threads0
                .iter()
                .find(|t| &t.0 == tid)
                .map_or((0, 0), |t| (t.1, t.2));
            sched_ns += ns.saturating_sub(ns0);
            switches += sw.saturating_sub(sw0);
        }
        d.stop(Duration::from_secs(15))?;
        let cpu_ms = (ticks1 - ticks0) as f64 * 1000.0 / hz;
        let mib = |k: u64| format!("{:.2}M", k as f64 / 1024.0);
        println!(
            "    {:<18} {:>9} {:>9} {:>9} {:>9} {:>8} {:>11} {:>10.1} {:>8}",
            kind,
            mib(rss_start),
            mib(rss_max),
            mib(rss_end),
            mib(hwm),
            threads1.len(),
            format!("{cpu_ms:.0}/{:.0}s", window.as_secs_f64()),
            sched_ns as f64 / 1e6,
            switches
        );
        if let Some(ms) = floor_ms {
            println!(
                "    {:<18} {:>61.1}   (a C program making the same {UNITS} connects every 5 s, \
                 same window)",
                "floor", ms
            );
        }
    }
    println!(
        "    RSS in MiB (VmRSS); CPU ms = utime+stime over the window ({hz:.0} ticks/s, so \
         {:.0} ms resolution);",
        1000.0 / hz
    );
    println!("    sched ms = on-CPU time of the live threads (schedstat, ns resolution);");
    println!("    ctx sw = voluntary + involuntary context switches of those threads (wake-ups)");
    quiet("after");
    println!();
    Ok(())
}

/// `units` exec units brought up, then stopped; `variants` says which programs they run.
fn bench_up(b: &mut Bench, reps: usize, n: usize, variants: &[&str]) -> R<()> {
    println!("(d) {n} exec units brought up (no probes, no dependencies), then SIGTERM");
    quiet("before");
    println!(
        "    {:<24} {:>3}  {:>20}  {:>20}  {:>20}  {:>20}",
        "units run",
        "n",
        "to 1st log line ms",
        "to last ready line",
        "to last exec stamp",
        "SIGTERM -> exit ms"
    );
    println!(
        "    {:<24} {:>3}  {:>20}  {:>20}  {:>20}  {:>20}",
        "", "", "min / med / max", "min / med / max", "min / med / max", "min / med / max"
    );
    for &variant in variants {
        let stamp = variant == "stamp program";
        let dir = b.dir(&format!("up{n}-{}", if stamp { "stamp" } else { "sleep" }))?;
        let units = dir.join("units");
        fs::create_dir_all(&units).map_err(|e| e.to_string())?;
        let stamp_file = dir.join("all.stamps");
        for i in 0..n {
            let cmd = if stamp {
                argv(&[&b.helper, "stamp", &stamp_file.to_string_lossy()])
            } else {
                argv(&["/bin/sleep", "1000"])
            };
            write(
                &units.join(format!("s{i:05}.toml")),
                &format!("[exec]\ncommand = {cmd}\n"),
            )?;
        }
        let (mut first, mut ready, mut exec, mut stop) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for rep in 0..reps {
            let _ = fs::remove_file(&stamp_file);
            // Let the previous run's processes be gone from the kernel's books.
            std::thread::sleep(Duration::from_millis(300 + n as u64 / 2));
            calm();
            let mut d = Daemon::start(&units, &dir.join(format!("log{rep}")))?;
            let t0 = d.spawned_ns;
            let limit = Duration::from_secs(30) + Duration::from_millis(20 * n as u64);
            let log = d.wait_log("started -> ready", n, limit)?;
            if stamp {
                let all = wait_for(limit, Duration::from_millis(5), || {
                    let s = stamps(&stamp_file);
                    (s.len() >= n).then_some(s)
                })
                .ok_or(format!("up{n}: not every unit wrote its stamp"))?;
                if let Some(last) = all.iter().map(|s| s.1).max() {
                    exec.push(ms(last - t0));
                }
            }
            if let Some(f) = log.first() {
                first.push(ms(f.ns - t0));
            }
            if let Some(last) = log
                .iter()
                .filter(|l| l.msg.contains("started -> ready"))
                .map(|l| l.ns)
                .max()
            {
                ready.push(ms(last - t0));
            }
            std::thread::sleep(Duration::from_millis(300));
            let (took, status) = d.stop(Duration::from_secs(30))?;
            if !status.success() {
                return Err(format!("up{n}: the daemon exited with {status} on SIGTERM"));
            }
            stop.push(took.as_secs_f64() * 1e3);
            if stamp {
                let left = stamps(&stamp_file)
                    .iter()
                    .filter(|s| Path::new(&format!("/proc/{}", s.0)).exists())
                    .count();
                if left > 0 {
                    return Err(format!("up{n}: {left} units outlived the daemon"));
                }
            }
        }
        println!(
            "    {:<24} {:>3}  {:>20}  {:>20}  {:>20}  {:>20}",
            variant,
            stop.len(),
            Tri(&Pct::of(&first)),
            Tri(&Pct::of(&ready)),
            Tri(&Pct::of(&exec)),
            Tri(&Pct::of(&stop)),
        );
    }
    println!("    all from the daemon's spawn by this benchmark; the exec stamp is each unit's");
    println!("    first clock read, so the last one is when all {n} processes exist");
    quiet("after");
    println!();
    Ok(())
}

fn sanity() -> R<()> {
    let out = Command::new(bin())
        .args(["up", "--help"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin()))?;
    if !out.status.success() {
        return Err(format!(
            "`launchgraph up --help` failed ({}): this binary has no `up` yet",
            out.status
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |part: &str| only.is_empty() || only.iter().any(|a| a == part);
    let root = match tempfile::tempdir() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("supervise: cannot create a temp dir: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (helper, how) = match build_helper(root.path()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("supervise: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut b = Bench {
        root: root.path().to_owned(),
        helper,
        rng: fastrand::Rng::with_seed(SEED),
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let profile = if cfg!(debug_assertions) {
        "debug (figures are not representative)"
    } else {
        "release (bench profile)"
    };
    println!("supervise: {}", bin());
    let mem_gib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or_else(|| "?".into(), |kib| format!("{:.0}", kib / 1024.0 / 1024.0));
    println!(
        "machine: {cores} cores, {mem_gib} GiB, kernel {}, build {profile}; load {}",
        fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        loadavg()
    );
    println!(
        "unit program: {how}; spawn -> its first clock read: {}",
        match exec_overhead(&b.helper) {
            Some(p) => format!(
                "p50 {:.2} ms, max {:.2} ms (upper bound of its start-up)",
                p.p50, p.max
            ),
            None => "n/a".into(),
        }
    );
    println!();
    if let Err(e) = sanity() {
        eprintln!("supervise: {e}");
        return ExitCode::FAILURE;
    }
    let reps = env_usize("LAUNCHGRAPH_BENCH_REPS");
    let idle_secs = env_usize("LAUNCHGRAPH_BENCH_IDLE_SECS")
        .unwrap_or(60)
        .max(1) as u64;
    let mut result = Ok(());
    if result.is_ok() && wants("gate") {
        result = bench_gate(&mut b, reps.unwrap_or(30).max(1));
    }
    if result.is_ok() && wants("crash") {
        result = bench_crash(&mut b, reps.unwrap_or(40).max(1));
    }
    if result.is_ok() && wants("idle") {
        result = bench_idle(&mut b, idle_secs);
    }
    if result.is_ok() && wants("up200") {
        result = bench_up(
            &mut b,
            reps.unwrap_or(5).max(1),
            200,
            &["/bin/sleep 1000", "stamp program"],
        );
    }
    // How start-up grows with the number of units: linear is the aim.
    if result.is_ok() && wants("upscale") {
        for n in [200, 1000, 3000] {
            if result.is_ok() {
                result = bench_up(&mut b, reps.unwrap_or(3).max(1), n, &["stamp program"]);
            }
        }
    }
    let _ = std::io::stdout().flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("supervise: {e}");
            ExitCode::FAILURE
        }
    }
}
