//! The kill -9 torture test: the daemon is killed with SIGKILL at random moments, over and over,
//! and started again on the same state directory each time. What it promises
//! (docs/reliability.md): after any such crash, the next daemon stops what the killed one left
//! running (its run records, `<state-dir>/runs/UNIT.json`, say what that is) and starts every
//! unit again, so that each unit runs exactly once, nothing is orphaned, and no record is lost
//! or torn.
//!
//! The units: a chain of long-running `exec` units with readiness probes, a unit (`hub`) whose
//! dependents restart with it, and one that crash-loops every 10 ms. Each unit's processes are
//! found in `/proc` by a marker in their argv that is unique to this run and unit, and every
//! process of theirs carries the run's marker in its environment.
//!
//! Each daemon is killed in one of five phases, drawn from a seeded RNG (the seed is printed;
//! `TORTURE_SEED=N` replays a run, `TORTURE_ITERATIONS=N` changes its length): during the start
//! wave, while the crash-looper restarts, just after a `reload` that changes `hub`, just after a
//! `restart hub`, and while a SIGTERM shutdown is in progress.

mod support;

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use launchgraph::control::protocol::UnitStatus;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use support::control::{cmdline, processes_running, status_json, unit, wait_status};
use support::{Daemon, UnitDir, array, processes_with_env, q};

/// The long-running units and what each requires: `db -> cache -> api` is the chain, `hub`'s
/// dependents (`edge1`, `edge2`) restart with it.
const LONG: [(&str, &[&str]); 6] = [
    ("db", &[]),
    ("cache", &["db"]),
    ("api", &["cache"]),
    ("hub", &["db"]),
    ("edge1", &["hub"]),
    ("edge2", &["hub", "api"]),
];

/// The unit that exits at once and is restarted every 10 ms.
const CRASH: &str = "crash";

/// The environment variable every unit's processes carry (the run's marker is its value).
const MARK_VAR: &str = "LAUNCHGRAPH_TORTURE";

const DEFAULT_ITERATIONS: u32 = 40;

/// Where a daemon is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// During the start wave (or before it: while the previous daemon's leftovers are stopped),
    /// up to 400 ms after the daemon was started.
    StartWave,
    /// Once every long-running unit is ready, while `crash` restarts every 10 ms.
    CrashLoop,
    /// Just after `reload` was answered, with `hub` changed: `hub` and its dependents stop and
    /// start again.
    Reload,
    /// Just after `restart hub` was answered: `hub` and its dependents restart in order.
    Restart,
    /// Just after SIGTERM: the shutdown is stopping units in reverse order.
    Shutdown,
}

impl Phase {
    const ALL: [Phase; 5] = [
        Phase::StartWave,
        Phase::CrashLoop,
        Phase::Reload,
        Phase::Restart,
        Phase::Shutdown,
    ];

    /// The longest wait before the SIGKILL, from the moment the phase begins.
    fn max_delay_ms(self) -> u64 {
        match self {
            Phase::StartWave => 400,
            Phase::CrashLoop | Phase::Reload | Phase::Restart => 150,
            Phase::Shutdown => 100,
        }
    }
}

/// One SIGKILL: when and where.
#[derive(Debug, Clone, Copy)]
struct Kill {
    iteration: u32,
    phase: Phase,
    after: Duration,
}

/// What is known of a killed daemon, to tell where an extra process came from.
struct Crashed {
    kill: Kill,
    /// When it ran, in clock ticks since boot (as a process's start time is given).
    from_tick: u64,
    to_tick: u64,
    /// The run records it left: (file name, content).
    records: Vec<(String, String)>,
    /// Its whole log.
    log: Vec<String>,
}

/// What a failure message says first: the seed, the iteration and the kills so far.
struct Context {
    seed: u64,
    iteration: u32,
    kills: Vec<Crashed>,
}

impl Context {
    fn describe(&self) -> String {
        let mut s = format!(
            "seed {} (replay with TORTURE_SEED={}), iteration {}",
            self.seed, self.seed, self.iteration
        );
        match self.kills.last().map(|c| c.kill) {
            Some(k) => {
                let _ = write!(
                    s,
                    ", after the daemon of iteration {} was killed {:?} into phase {:?}",
                    k.iteration, k.after, k.phase
                );
            }
            None => s.push_str(", no daemon killed yet"),
        }
        let earlier: Vec<String> = self
            .kills
            .iter()
            .map(|c| {
                let k = c.kill;
                format!("#{} {:?}+{}ms", k.iteration, k.phase, k.after.as_millis())
            })
            .collect();
        let _ = write!(s, "; every kill so far: [{}]", earlier.join(", "));
        s
    }

    /// Where an unexpected process of `unit` came from: which killed daemon ran when it
    /// started, whether that daemon logged spawning it, and whether a record it left named it.
    fn origin(&self, unit: &str, pid: i32) -> String {
        let Some(started) = stat(pid).map(|s| s.start_ticks) else {
            return format!("pid {pid} is gone");
        };
        let spawned = format!("pid={pid}");
        let names = |l: &String| {
            l.contains(&format!("{unit}:"))
                && l.split_whitespace()
                    .any(|w| w.trim_end_matches(',') == spawned)
        };
        let mut out = Vec::new();
        for c in &self.kills {
            let logged: Vec<&String> = c.log.iter().filter(|l| names(l)).collect();
            let recorded: Vec<&(String, String)> = c
                .records
                .iter()
                .filter(|(_, text)| {
                    serde_json::from_str::<Record>(text).is_ok_and(|r| r.pid == pid as u32)
                })
                .collect();
            let ran = (c.from_tick..=c.to_tick).contains(&started);
            if !ran && logged.is_empty() && recorded.is_empty() {
                continue;
            }
            let mut s = format!(
                "pid {pid} started at tick {started}; the daemon of iteration {} ran from tick {} \
                 to its kill at tick {} ({:?}+{}ms)",
                c.kill.iteration,
                c.from_tick,
                c.to_tick,
                c.kill.phase,
                c.kill.after.as_millis()
            );
            if logged.is_empty() {
                s.push_str("; it never logged the pid (the SPAWNED transition follows the record)");
            } else {
                let lines: Vec<&str> = logged.iter().map(|l| l.as_str()).collect();
                let _ = write!(s, "; it logged:\n    {}", lines.join("\n    "));
            }
            if recorded.is_empty() {
                let left: Vec<String> = c
                    .records
                    .iter()
                    .map(|(n, t)| format!("{n} = {t}"))
                    .collect();
                let _ = write!(
                    s,
                    "\n  no record it left names the pid (it left: {left:?}){}",
                    if logged.is_empty() {
                        ": a process spawned and never recorded, the window between spawn and \
                         record"
                    } else {
                        ""
                    }
                );
            } else {
                let _ = write!(
                    s,
                    "\n  a record it left names the pid ({recorded:?}), yet the next daemon did not \
                     stop it"
                );
            }
            out.push(s);
        }
        if out.is_empty() {
            format!("pid {pid} started at tick {started}, while no killed daemon ran")
        } else {
            out.join("\n")
        }
    }
}

/// Now, in clock ticks since boot (/proc/uptime times `sysconf(_SC_CLK_TCK)`), the unit of a
/// process's start time.
fn ticks_now() -> u64 {
    let uptime = fs::read_to_string("/proc/uptime").unwrap();
    let secs: f64 = uptime.split_whitespace().next().unwrap().parse().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (secs * hz as f64).ceil() as u64
}

/// The files in `dir` and what they hold.
fn snapshot(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let text = fs::read(e.path()).unwrap_or_default();
            (
                e.file_name().to_string_lossy().into_owned(),
                String::from_utf8_lossy(&text).into_owned(),
            )
        })
        .collect();
    files.sort();
    files
}

/// The unit directory, the markers, and the guard that kills every marked process on every
/// exit path (a failed run leaves nothing behind).
struct Torture {
    d: UnitDir,
    /// The run's marker: the tempdir's path, unique to this run.
    mark: String,
}

impl Torture {
    fn new() -> Self {
        let d = UnitDir::new();
        let mark = d.units().parent().unwrap().to_str().unwrap().to_owned();
        fs::create_dir(d.path("bin")).unwrap();
        fs::create_dir(d.path("up")).unwrap();
        let t = Torture { d, mark };
        for (name, requires) in LONG {
            // `sleep` under a name of its own: argv[0] is the marker. GNU sleep ignores its
            // argv[0]; the shell writes its pid (kept across `exec`) for the readiness probe.
            std::os::unix::fs::symlink("/bin/sleep", t.marker(name)).unwrap();
            t.write_long(name, requires, 0);
        }
        std::os::unix::fs::symlink("/bin/false", t.marker(CRASH)).unwrap();
        let crash = format!(
            "[exec]\ncommand = {}\nenv = {{ {MARK_VAR} = {} }}\n\
             [restart]\npolicy = \"always\"\ninitial = \"10ms\"\nmax = \"10ms\"\n\
             factor = 1.0\njitter = 0.5\n\
             start-limit-count = 1000000\nstart-limit-period = \"1s\"\n",
            array(&[&t.marker(CRASH)]),
            q(&t.mark),
        );
        t.d.unit(CRASH, &crash);
        t
    }

    /// The path whose presence as an element of a process's argv says it runs `unit`.
    fn marker(&self, unit: &str) -> String {
        format!("{}/bin/{unit}", self.mark)
    }

    /// Writes a long-running unit; `generation` changes its environment, so that a reload
    /// restarts it (and its dependents).
    fn write_long(&self, name: &str, requires: &[&str], generation: u32) {
        let up = self.d.path(&format!("up/{name}"));
        let up = up.to_str().unwrap();
        let marker = self.marker(name);
        let requires = if requires.is_empty() {
            String::new()
        } else {
            format!("requires = {}\n", array(requires))
        };
        let toml = format!(
            "{requires}[exec]\ncommand = {}\nenv = {{ {MARK_VAR} = {}, GENERATION = \"{generation}\" }}\n\
             stop-timeout = \"5s\"\n\
             [ready]\nexec = {}\ninterval = \"20ms\"\ntimeout = \"5s\"\nstart-timeout = \"60s\"\n",
            array(&[
                "/bin/sh",
                "-c",
                "echo $$ > \"$1\" && exec \"$2\" 100000",
                "sh",
                up,
                &marker
            ]),
            q(&self.mark),
            // Ready once the pid the unit wrote is a live process (not the zombie of a
            // previous run, nor a file that is still being written).
            array(&[
                "/bin/sh",
                "-c",
                "p=$(cat \"$1\") && grep -qs '^State:[[:space:]]*[RSD]' \"/proc/$p/status\"",
                "sh",
                up
            ]),
        );
        self.d.unit(name, &toml);
    }

    /// The live processes running `unit` (one of their argv elements is its marker).
    fn running(&self, unit: &str) -> Vec<i32> {
        let marker = self.marker(unit);
        processes_running(|argv| argv.contains(&marker))
    }

    /// Every live process of any unit of this run: by argv, and by the environment their
    /// descendants inherit.
    fn all_marked(&self) -> Vec<i32> {
        let mut pids = processes_with_env(&format!("{MARK_VAR}={}", self.mark));
        for name in LONG.iter().map(|(n, _)| *n).chain([CRASH]) {
            pids.extend(self.running(name));
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    fn runs_dir(&self) -> PathBuf {
        self.d.path("state").join("runs")
    }
}

impl Drop for Torture {
    fn drop(&mut self) {
        // Whatever is left, however the test ends. A few rounds: a process seen as the fork
        // of a dying daemon may still exec into a marked one.
        for _ in 0..3 {
            for pid in self.all_marked() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// A run record as the daemon writes it (`src/engine/runs.rs`); unknown fields are allowed.
#[derive(Debug, serde::Deserialize)]
struct Record {
    unit: String,
    pid: u32,
    start_ticks: Option<u64>,
}

/// A process's parent, process group, state and start time (field 22 of /proc/PID/stat,
/// https://man7.org/linux/man-pages/man5/proc_pid_stat.5.html).
struct Stat {
    state: String,
    ppid: i32,
    pgrp: i32,
    start_ticks: u64,
}

fn stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    Some(Stat {
        state: f.first()?.to_string(),
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        start_ticks: f.get(19)?.parse().ok()?,
    })
}

/// One line per process: pid, parent, group, state, start time and argv.
fn describe(pids: &[i32]) -> String {
    if pids.is_empty() {
        return "  (none)".into();
    }
    pids.iter()
        .map(|&pid| {
            let argv = cmdline(pid).map(|a| a.join(" ")).unwrap_or_default();
            match stat(pid) {
                Some(st) => format!(
                    "  pid {pid} (ppid {}, pgid {}, state {}, start {}): {argv}",
                    st.ppid, st.pgrp, st.state, st.start_ticks
                ),
                None => format!("  pid {pid} (gone): {argv}"),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the daemon logged about run records and leftovers, then the end of its log.
fn log_excerpt(daemon: &Daemon) -> String {
    let lines = daemon.lines();
    let about: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("run record") || l.contains("previous launchgraph"))
        .collect();
    let tail = &lines[lines.len().saturating_sub(30)..];
    format!(
        "the daemon's log about run records:\n{}\nthe end of its log:\n{}",
        about
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        tail.join("\n")
    )
}

/// Waits until every long-running unit is ready (as `status` says), then returns the status.
fn wait_ready(daemon: &Daemon, ctx: &Context) -> Vec<UnitStatus> {
    daemon.wait_serving();
    wait_status(
        daemon.socket(),
        &format!("every long-running unit ready ({})", ctx.describe()),
        |units| {
            LONG.iter()
                .all(|(n, _)| units.iter().any(|u| u.name == *n && u.state == "ready"))
        },
    )
}

/// The promise, checked while every long-running unit is ready: each runs as exactly one
/// process, the one the daemon reports and has recorded; `crash` runs at most once; every
/// record parses and names its unit.
fn check_running(t: &Torture, daemon: &Daemon, ctx: &Context) {
    let units = status_json(daemon.socket());
    for (name, _) in LONG {
        let reported = unit(&units, name).pid;
        let running = t.running(name);
        if running.len() == 1 && reported == Some(running[0] as u32) {
            continue;
        }
        let origins: Vec<String> = running
            .iter()
            .filter(|&&p| Some(p as u32) != reported)
            .map(|&p| ctx.origin(name, p))
            .collect();
        panic!(
            "{}: unit {name} must run as exactly one process, the one the daemon reports \
             (pid {reported:?}); running with its marker:\n{}\nwhere the others come from:\n{}\n{}",
            ctx.describe(),
            describe(&running),
            origins.join("\n"),
            log_excerpt(daemon)
        );
    }
    let crash = t.running(CRASH);
    assert!(
        crash.len() <= 1,
        "{}: unit {CRASH} runs more than once:\n{}\n{}",
        ctx.describe(),
        describe(&crash),
        log_excerpt(daemon)
    );
    let records = check_records(t, daemon, ctx);
    for (name, _) in LONG {
        let reported = unit(&units, name).pid;
        let record = records.iter().find(|r| r.unit == name);
        let expected = reported.and_then(|p| stat(p as i32)).map(|s| s.start_ticks);
        assert!(
            record.is_some_and(|r| Some(r.pid) == reported && r.start_ticks == expected),
            "{}: unit {name} runs as pid {reported:?} (start {expected:?}) but its run record \
             is {record:?}\n{}",
            ctx.describe(),
            log_excerpt(daemon)
        );
    }
}

/// Every file in `runs/`: a record `UNIT.json` of a unit of this directory that parses and
/// names that unit. Temporary files of an interrupted write (`.UNIT.json.tmp.*`) are never
/// read as records, so they are passed over here (the end of the test lists them); anything
/// else fails, a record set aside as invalid (`UNIT.json.bad`) included, since every record
/// here was written by a daemon.
fn check_records(t: &Torture, daemon: &Daemon, ctx: &Context) -> Vec<Record> {
    let dir = t.runs_dir();
    let mut records = Vec::new();
    let Ok(entries) = fs::read_dir(&dir) else {
        return records;
    };
    let known = |u: &str| u == CRASH || LONG.iter().any(|(n, _)| *n == u);
    for entry in entries {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if is_temporary(&name) {
            continue;
        }
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            // Forgotten since the listing: `crash` exits every few milliseconds.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("{}: cannot read runs/{name}: {e}", ctx.describe()),
        };
        let text = String::from_utf8_lossy(&bytes);
        if let Some(unit) = name.strip_suffix(".json.bad") {
            panic!(
                "{}: the daemon set aside the run record of unit {unit} that a killed daemon \
                 wrote, as invalid (RUN_RECORD_INVALID): runs/{name} holds {text:?}\n{}",
                ctx.describe(),
                log_excerpt(daemon)
            );
        }
        let stem = name.strip_suffix(".json").filter(|u| known(u));
        let Some(stem) = stem else {
            panic!(
                "{}: runs/ holds {name:?}, which is no unit's record: {text:?}\n{}",
                ctx.describe(),
                log_excerpt(daemon)
            );
        };
        let record: Record = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{}: the run record of unit {stem} is torn or not a record ({e}): {text:?}\n{}",
                ctx.describe(),
                log_excerpt(daemon)
            )
        });
        assert_eq!(
            record.unit,
            stem,
            "{}: runs/{name} names another unit: {text:?}",
            ctx.describe()
        );
        records.push(record);
    }
    records
}

/// A record being written (`.UNIT.json.tmp`): a unit's process writes it between its fork
/// and its exec and renames it over `UNIT.json`, and the daemon renames the record back when
/// the run ends, for the next start to write into; nothing reads it.
fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.contains(".json.tmp")
}

fn env_or<T: std::str::FromStr>(name: &str, default: impl FnOnce() -> T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default(),
    }
}

#[test]
fn sigkill_at_any_moment_then_a_restart_runs_every_unit_exactly_once() {
    let seed: u64 = env_or("TORTURE_SEED", || fastrand::u64(..));
    let iterations: u32 = env_or("TORTURE_ITERATIONS", || DEFAULT_ITERATIONS);
    eprintln!("torture: seed {seed} (replay with TORTURE_SEED={seed}), {iterations} iterations");
    let mut rng = fastrand::Rng::with_seed(seed);
    let t = Torture::new();
    let began = Instant::now();
    let mut ctx = Context {
        seed,
        iteration: 0,
        kills: Vec::new(),
    };
    let mut hub_generation = 0;

    for iteration in 1..=iterations {
        ctx.iteration = iteration;
        let phase = Phase::ALL[rng.usize(..Phase::ALL.len())];
        let after = Duration::from_millis(rng.u64(..=phase.max_delay_ms()));
        eprintln!(
            "torture: iteration {iteration}: kill {}ms into {phase:?} ({:?} so far)",
            after.as_millis(),
            began.elapsed()
        );
        let mut daemon = Daemon::start(&t.d.units());
        let from_tick = stat(daemon.pid()).map_or(0, |s| s.start_ticks);
        if phase != Phase::StartWave {
            wait_ready(&daemon, &ctx);
            check_running(&t, &daemon, &ctx);
        }
        match phase {
            Phase::StartWave | Phase::CrashLoop => {}
            Phase::Reload => {
                hub_generation += 1;
                t.write_long("hub", &["db"], hub_generation);
                daemon.cli(&["reload"]).ok();
            }
            Phase::Restart => {
                daemon.cli(&["restart", "hub"]).ok();
            }
            Phase::Shutdown => {
                let _ = kill(Pid::from_raw(daemon.pid()), Signal::SIGTERM);
            }
        }
        // Not a wait for something to happen: the moment of the kill is what is drawn.
        std::thread::sleep(after);
        let to_tick = ticks_now();
        daemon.crash();
        ctx.kills.push(Crashed {
            kill: Kill {
                iteration,
                phase,
                after,
            },
            from_tick,
            to_tick,
            records: snapshot(&t.runs_dir()),
            log: daemon.lines(),
        });
    }

    // A last daemon, stopped cleanly: nothing of any unit outlives it, and no record is left.
    ctx.iteration = iterations + 1;
    let mut daemon = Daemon::start(&t.d.units());
    wait_ready(&daemon, &ctx);
    check_running(&t, &daemon, &ctx);
    let status = daemon.terminate();
    assert!(
        status.success(),
        "{}: the last daemon exited with {status} on SIGTERM\n{}",
        ctx.describe(),
        log_excerpt(&daemon)
    );
    let left = t.all_marked();
    assert!(
        left.is_empty(),
        "{}: processes of the units outlive the daemon's clean stop:\n{}\n{}",
        ctx.describe(),
        describe(&left),
        log_excerpt(&daemon)
    );
    // No record: each run's record is renamed back to its unit's temporary file when the run
    // ends. Those files (`.UNIT.json.tmp`, one per unit at most, never read) are all that may
    // be left; one of another name, or of no unit, was left behind by mistake.
    let known = |u: &str| u == CRASH || LONG.iter().any(|(n, _)| *n == u);
    let left: Vec<String> = fs::read_dir(t.runs_dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            !name
                .strip_prefix('.')
                .and_then(|n| n.strip_suffix(".json.tmp"))
                .is_some_and(known)
        })
        .collect();
    assert!(
        left.is_empty(),
        "{}: run records or stray files are left after a clean stop: {left:?}\n{}",
        ctx.describe(),
        log_excerpt(&daemon)
    );
    eprintln!(
        "torture: seed {seed}: {iterations} kills, then a clean stop, in {:?}",
        began.elapsed()
    );
}
