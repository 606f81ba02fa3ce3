//! Processes that leave their unit's session and process group with `setsid`: on Linux, run as
//! root, each `exec` unit's processes live in a cgroup of their own, so such a process is still
//! attributed to its unit, reported (`ORPHAN_ADOPTED`) and killed when the unit stops, by
//! `stop`, by the daemon's shutdown and by its own exit alike, and no cgroup directory is
//! left behind.
//!
//! The processes are found by a marker in their environment, which every descendant inherits
//! whatever session it moves to.

mod support;

use std::fs;
use std::path::PathBuf;

use nix::sys::signal::Signal;

use support::{Daemon, UnitDir, array, needs_root, processes_with_env, q, wait_until};

/// A unit whose shell starts `sleep 7779` in a session of its own, then becomes `sleep 1000`.
fn escaping_unit(d: &UnitDir, name: &str, marker: &str) {
    d.unit(
        name,
        &format!(
            "[exec]\ncommand = {}\nenv = {{ LG_ORPHAN_MARK = {} }}\n",
            array(&[
                "/bin/sh",
                "-c",
                "setsid /bin/sleep 7779 & exec /bin/sleep 1000"
            ]),
            q(marker),
        ),
    );
}

/// The pid of the process that escaped, once it runs in a session of its own, found by the
/// marker entry of its environment.
fn escaped(marker_entry: &str, unit_pid: i32) -> i32 {
    let mut escaped = None;
    wait_until("the escaped sleep runs", || {
        // The sleep itself, once in its own session: not the forked shell nor setsid on
        // their way there, which a stop could still catch in the unit's group.
        escaped = processes_with_env(marker_entry).into_iter().find(|&pid| {
            pid != unit_pid
                && cmdline(pid).starts_with("/bin/sleep 7779")
                && nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(pid)))
                    .is_ok_and(|sid| sid.as_raw() == pid)
        });
        escaped.is_some()
    });
    escaped.unwrap()
}

fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Where the cgroup v2 hierarchy is mounted, from /proc/self/mountinfo.
fn cgroup2_mount() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let point = left.split_whitespace().nth(4)?;
        (right.split_whitespace().next() == Some("cgroup2")).then(|| PathBuf::from(point))
    })
}

/// The cgroup directories of the daemons of `d`'s state directory anywhere under the cgroup
/// v2 mount: `launchgraph.<owner>`, the owner being the first 6 bytes of the SHA-256 of the
/// state directory's path, in hex, as the daemon names it.
fn cgroups_of(d: &UnitDir) -> Vec<PathBuf> {
    use sha2::{Digest, Sha256};
    let state = d.units().parent().unwrap().join("state");
    let digest = Sha256::digest(state.as_os_str().as_encoded_bytes());
    let owner: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let name = format!("launchgraph.{owner}");
    let mut found = Vec::new();
    let mut todo: Vec<PathBuf> = cgroup2_mount().into_iter().collect();
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                if entry.file_name().to_str() == Some(name.as_str()) {
                    found.push(entry.path());
                }
                todo.push(entry.path());
            }
        }
    }
    found
}

fn marker(d: &UnitDir) -> String {
    d.units().display().to_string()
}

/// A daemon running `escaper` ([`escaping_unit`]), whose `sleep 7779` has escaped into a
/// session of its own.
struct Escape {
    d: UnitDir,
    /// The environment entry every process of the unit carries.
    entry: String,
    daemon: Daemon,
    unit_pid: i32,
    escaped: i32,
}

impl Escape {
    fn start() -> Self {
        needs_root("putting a unit in a cgroup");
        let d = UnitDir::new();
        let marker = marker(&d);
        let entry = format!("LG_ORPHAN_MARK={marker}");
        escaping_unit(&d, "escaper", &marker);
        let mut daemon = Daemon::start(&d.units());
        let unit_pid = daemon
            .wait_for(0, "escaper running", |t| t.is("escaper", "ready"))
            .pid();
        let escaped = escaped(&entry, unit_pid);
        Self {
            d,
            entry,
            daemon,
            unit_pid,
            escaped,
        }
    }
}

/// Waits, from log line `from`, for `escaped` reported as `ORPHAN_ADOPTED` of `escaper`.
fn reported(daemon: &mut Daemon, from: usize, escaped: i32) {
    daemon.wait_log(from, "the escaped process reported", |l| {
        l.contains("ORPHAN_ADOPTED")
            && l.contains(&format!("pid={escaped}"))
            && l.contains("escaper")
            && l.contains("sleep 7779")
    });
}

#[test]
#[ignore = "needs root"]
fn root_stop_kills_and_reports_what_escaped_with_setsid() {
    let Escape {
        d,
        entry,
        mut daemon,
        escaped,
        ..
    } = Escape::start();

    let log = daemon.log_mark();
    let from = daemon.mark();
    daemon.cli(&["stop", "escaper"]).ok();
    daemon.wait_for(from, "escaper stopped", |t| t.is("escaper", "stopped"));
    assert_eq!(
        processes_with_env(&entry),
        Vec::<i32>::new(),
        "the unit is stopped, yet processes it started still run"
    );
    // Adopted and killed: two reports, one of them at least before it died (a zombie has no
    // command line left), each naming the unit.
    reported(&mut daemon, log, escaped);

    let status = daemon.terminate();
    assert_eq!(status.code(), Some(0), "the log:\n{}", daemon.log());
    assert_eq!(cgroups_of(&d), Vec::<PathBuf>::new());
}

#[test]
#[ignore = "needs root"]
fn root_shutdown_kills_and_reports_what_escaped_with_setsid() {
    let Escape {
        d,
        entry,
        mut daemon,
        escaped,
        ..
    } = Escape::start();
    assert!(!cgroups_of(&d).is_empty(), "the running unit has a cgroup");

    let log = daemon.log_mark();
    let status = daemon.stop_with(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "the log:\n{}", daemon.log());
    assert_eq!(
        processes_with_env(&entry),
        Vec::<i32>::new(),
        "the daemon is gone, yet processes its unit started still run"
    );
    reported(&mut daemon, log, escaped);
    assert_eq!(cgroups_of(&d), Vec::<PathBuf>::new());
}

/// The shell exits 0 at once, leaving `sleep 7779` in a session of its own, three times: each
/// time launchgraph adopts it (as subreaper) and kills it with the run it came from.
#[test]
#[ignore = "needs root"]
fn root_a_unit_that_exits_leaves_nothing_of_each_run() {
    needs_root("putting a unit in a cgroup");
    let d = UnitDir::new();
    let marker = marker(&d);
    let entry = format!("LG_ORPHAN_MARK={marker}");
    d.unit(
        "quitter",
        &format!(
            "[exec]\ncommand = {}\nenv = {{ LG_ORPHAN_MARK = {} }}\n",
            array(&["/bin/sh", "-c", "setsid /bin/sleep 7779 & exit 0"]),
            q(&marker),
        ),
    );
    let mut daemon = Daemon::start(&d.units());
    let mut from = 0;
    let mut log = 0;
    for run in 0..3 {
        if run > 0 {
            from = daemon.mark();
            log = daemon.log_mark();
            daemon.cli(&["start", "quitter"]).ok();
        }
        let stopped = daemon.wait_for(from, "quitter stopped", |t| t.is("quitter", "stopped"));
        assert_eq!(stopped.reason, "EXITED_CLEANLY", "{}", stopped.line);
        assert_eq!(
            processes_with_env(&entry),
            Vec::<i32>::new(),
            "run {run} is over, yet a process it started still runs"
        );
        // The escaped process is caught wherever it is on its way (the forked shell, setsid,
        // sleep): its command line says which, so only the unit is checked here.
        daemon.wait_log(log, "the escaped process reported", |l| {
            l.contains("ORPHAN_ADOPTED") && l.contains("unit=\"quitter\"")
        });
    }
    let status = daemon.terminate();
    assert_eq!(status.code(), Some(0), "the log:\n{}", daemon.log());
    assert_eq!(cgroups_of(&d), Vec::<PathBuf>::new());
}

/// A daemon killed outright stops nothing and removes nothing: the next one, on the same
/// units and state, stops what it left, the escaped process included, and its cgroups.
#[test]
#[ignore = "needs root"]
fn root_the_next_daemon_stops_what_a_killed_one_left_in_its_cgroups() {
    let Escape {
        d,
        entry,
        daemon: mut first,
        unit_pid,
        escaped,
    } = Escape::start();
    first.stop_with(Signal::SIGKILL);
    assert!(
        !cgroups_of(&d).is_empty(),
        "a killed daemon leaves its cgroups"
    );
    assert!(
        processes_with_env(&entry).contains(&escaped),
        "and what runs in them"
    );

    let mut second = Daemon::start(&d.units());
    let new_pid = second
        .wait_for(0, "escaper running again", |t| t.is("escaper", "ready"))
        .pid();
    reported(&mut second, 0, escaped);
    let left: Vec<i32> = processes_with_env(&entry)
        .into_iter()
        .filter(|&pid| pid == unit_pid || pid == escaped)
        .collect();
    assert_eq!(
        left,
        Vec::<i32>::new(),
        "the first daemon's processes are gone"
    );
    assert!(processes_with_env(&entry).contains(&new_pid));
    let status = second.terminate();
    assert_eq!(status.code(), Some(0), "the log:\n{}", second.log());
    assert_eq!(processes_with_env(&entry), Vec::<i32>::new());
    assert_eq!(cgroups_of(&d), Vec::<PathBuf>::new());
}

/// A classic daemonizer: a child forks, the grandchild calls `setsid` and forks again, and
/// both intermediate processes exit, so what is left (`sleep 7778`) belongs to no group nor
/// session of the unit and its parent is launchgraph (the subreaper). It is still the unit's:
/// stopping the unit reports it and stops it.
#[test]
#[ignore = "needs root"]
fn root_a_double_forked_daemon_is_stopped_with_its_unit() {
    needs_root("putting a unit in a cgroup");
    let d = UnitDir::new();
    let marker = marker(&d);
    let entry = format!("LG_ORPHAN_MARK={marker}");
    d.unit(
        "daemonizer",
        &format!(
            "[exec]\ncommand = {}\nenv = {{ LG_ORPHAN_MARK = {} }}\n",
            array(&[
                "/bin/sh",
                "-c",
                "(setsid /bin/sh -c '/bin/sleep 7778 & exit 0' &); exec /bin/sleep 1000"
            ]),
            q(&marker),
        ),
    );
    let mut daemon = Daemon::start(&d.units());
    let unit_pid = daemon
        .wait_for(0, "daemonizer running", |t| t.is("daemonizer", "ready"))
        .pid();
    let mut daemonized = None;
    wait_until(
        "the daemonized sleep runs, re-parented to launchgraph",
        || {
            daemonized = processes_with_env(&entry)
                .into_iter()
                // The sleep itself, not the unit's shell nor a process on its way there.
                .find(|&pid| {
                    cmdline(pid).starts_with("/bin/sleep 7778")
                        && parent_of(pid) == Some(daemon.pid())
                });
            daemonized.is_some()
        },
    );
    let daemonized = daemonized.unwrap();
    assert_ne!(
        nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(daemonized))).unwrap(),
        nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(unit_pid))).unwrap(),
        "it left the unit's session: {}",
        String::from_utf8_lossy(
            &std::process::Command::new("ps")
                .args(["-eo", "pid,ppid,pgid,sid,args"])
                .output()
                .unwrap()
                .stdout
        )
    );

    let log = daemon.log_mark();
    let from = daemon.mark();
    daemon.cli(&["stop", "daemonizer"]).ok();
    daemon.wait_for(from, "daemonizer stopped", |t| {
        t.is("daemonizer", "stopped")
    });
    assert_eq!(
        processes_with_env(&entry),
        Vec::<i32>::new(),
        "the unit is stopped, yet the process it daemonized still runs"
    );
    daemon.wait_log(
        log,
        &format!("the daemonized process {daemonized} reported"),
        |l| {
            l.contains("ORPHAN_ADOPTED")
                && l.contains(&format!("pid={daemonized}"))
                && l.contains("unit=\"daemonizer\"")
                && l.contains("sleep 7778")
        },
    );
    let status = daemon.terminate();
    assert_eq!(status.code(), Some(0), "the log:\n{}", daemon.log());
    assert_eq!(cgroups_of(&d), Vec::<PathBuf>::new());
}

/// What escaped is stopped the way the unit is: its stop signal first (here SIGTERM, which the
/// escaped shell catches and records), SIGKILL only after the stop timeout.
#[test]
#[ignore = "needs root"]
fn root_what_escaped_gets_the_units_stop_signal_first() {
    needs_root("putting a unit in a cgroup");
    let d = UnitDir::new();
    let marker = marker(&d);
    let entry = format!("LG_ORPHAN_MARK={marker}");
    let said = d.path("escaped-said");
    d.unit(
        "polite",
        &format!(
            "[exec]\ncommand = {}\nenv = {{ LG_ORPHAN_MARK = {} }}\nstop-timeout = \"30s\"\n",
            array(&[
                "/bin/sh",
                "-c",
                "setsid /bin/sh -c 'trap \"echo TERM > \\\"$1\\\"; exit 0\" TERM; \
                 while :; do /bin/sleep 7777 & wait; done' sh \"$1\" & exec /bin/sleep 1000",
                "sh",
                said.to_str().unwrap(),
            ]),
            q(&marker),
        ),
    );
    let mut daemon = Daemon::start(&d.units());
    let unit_pid = daemon
        .wait_for(0, "polite running", |t| t.is("polite", "ready"))
        .pid();
    wait_until("the escaped shell waits in its loop", || {
        processes_with_env(&entry).into_iter().any(|pid| {
            pid != unit_pid && cmdline(pid).contains("7777") && !cmdline(pid).contains("trap")
        })
    });

    let from = daemon.mark();
    daemon.cli(&["stop", "polite"]).ok();
    daemon.wait_for(from, "polite stopped", |t| t.is("polite", "stopped"));
    assert_eq!(processes_with_env(&entry), Vec::<i32>::new());
    assert_eq!(
        fs::read_to_string(&said).unwrap_or_default(),
        "TERM\n",
        "the escaped shell was not sent SIGTERM before it was killed; the log:\n{}",
        daemon.log()
    );
    let status = daemon.terminate();
    assert_eq!(status.code(), Some(0), "the log:\n{}", daemon.log());
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_ascii_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
