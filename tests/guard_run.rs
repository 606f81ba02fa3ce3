//! Guards run by the daemon, end to end: the real binary, real sampling commands reading files
//! the test changes, real action commands writing marker files, and the control protocol's `guards` request and the
//! CLI (`guards`, `guard trip|clear`, `events --json`, `metrics`) reading the result.
//!
//! Every wait is on what the daemon reports (its events, its guards' status) with the
//! harness's generous deadline; nothing asserts speed.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use launchgraph::control::protocol::{EventRecord, GuardStatus};

use support::pressure::{Swapping, Tmpfs};
use support::{Daemon, UnitDir, q, wait_until};

fn guards(d: &Daemon) -> Vec<GuardStatus> {
    support::control::guards(d.socket())
}

fn guard(d: &Daemon, unit: &str, name: &str) -> GuardStatus {
    guards(d)
        .into_iter()
        .find(|g| g.unit == unit && g.guard == name)
        .unwrap_or_else(|| panic!("no guard {unit}/{name}"))
}

fn guard_events(d: &Daemon) -> Vec<EventRecord> {
    support::control::guard_events(d.socket())
}

/// Waits until `guards --json` shows `unit/name` with more samples than `n`: it is still
/// sampling.
fn wait_samples_past(d: &Daemon, unit: &str, name: &str, n: u64) -> GuardStatus {
    let mut last = None;
    wait_until(&format!("{unit}/{name} samples past {n}"), || {
        let g = guard(d, unit, name);
        let more = g.samples > n;
        last = Some(g);
        more
    });
    last.expect("set when done")
}

/// A unit that appends a line to `runs` and exits 0, not restarted: a model pull.
fn pull_unit(runs: &Path) -> String {
    format!(
        r#"[exec]
command = ["/bin/sh", "-c", {script}]

[restart]
policy = "never"
"#,
        script = q(&format!("echo run >> {}", runs.display())),
    )
}

fn runs(path: &Path) -> usize {
    fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

struct Bench {
    d: UnitDir,
    level: PathBuf,
    marker: PathBuf,
    pull_runs: PathBuf,
}

impl Bench {
    fn new(level: u32) -> Self {
        let d = UnitDir::new();
        let b = Self {
            level: d.path("level"),
            marker: d.path("marker"),
            pull_runs: d.path("pull-runs"),
            d,
        };
        b.set(level);
        b.d.unit("pull", &pull_unit(&b.pull_runs));
        b
    }

    fn set(&self, level: u32) {
        // Written whole, then renamed: a sample never reads half a number.
        let tmp = self.d.path("level.tmp");
        fs::write(&tmp, format!("{level}\n")).unwrap();
        fs::rename(&tmp, &self.level).unwrap();
    }

    /// Starts the daemon; waits until the pull unit ran once and is stopped.
    fn start(&self) -> Daemon {
        let mut daemon = Daemon::start(&self.d.units());
        daemon.wait_serving();
        daemon.wait_for(0, "pull stopped after its run", |t| t.is("pull", "stopped"));
        daemon
    }
}

#[test]
fn an_exec_guard_trips_runs_and_verifies_its_action_holds_a_unit_and_releases_it() {
    let b = Bench::new(1);
    let on_trip = format!(
        r#"hold = ["pull"]
[guard.on-trip]
run = [["/bin/sh", "-c", {script}]]
verify = ["/bin/cat", {marker}]
verify-contains = "tripped"
complete-within = "60s"
"#,
        script = q(&format!(
            "echo tripped > {}; echo ran-on-trip",
            b.marker.display()
        )),
        marker = q(b.marker.to_str().unwrap()),
    );
    b.d.unit("watch", &support::watch_unit(&b.level, &on_trip));
    let mut daemon = b.start();
    let first = wait_samples_past(&daemon, "watch", "level", 0);
    assert_eq!(first.state, "ok", "{first:#?}");
    assert_eq!(first.value, Some(1.0));
    assert_eq!(runs(&b.pull_runs), 1);

    // Above the threshold: pending after one sample, tripped after the second.
    let mark = daemon.mark();
    b.set(9);
    daemon.wait_for(mark, "guard pending", |t| {
        t.unit == "watch" && t.from == "ok" && t.to == "pending" && t.reason == "GUARD_PENDING"
    });
    daemon.wait_for(mark, "guard tripped", |t| {
        t.unit == "watch" && t.to == "tripped" && t.reason == "GUARD_TRIPPED"
    });
    // Its command ran, and verify confirmed what it did.
    wait_until("the trip action is confirmed", || {
        guard(&daemon, "watch", "level")
            .action
            .is_some_and(|a| a.progress == "done")
    });
    assert_eq!(fs::read_to_string(&b.marker).unwrap(), "tripped\n");
    let events = guard_events(&daemon);
    let ran = events
        .iter()
        .find(|e| e.guard.as_ref().unwrap().kind == "action-ran")
        .unwrap_or_else(|| panic!("no action-ran event: {events:#?}"));
    let facts = ran.guard.as_ref().unwrap();
    assert_eq!(facts.output.as_deref(), Some("ran-on-trip"), "{ran:#?}");
    assert_eq!(facts.edge.as_deref(), Some("trip"));
    let confirmed = events
        .iter()
        .find(|e| e.guard.as_ref().unwrap().kind == "action-confirmed")
        .unwrap_or_else(|| panic!("no action-confirmed event: {events:#?}"));
    assert_eq!(
        confirmed.reason, "GUARD_TRIPPED",
        "a confirmed trip action carries its edge's reason: {confirmed:#?}"
    );
    let tripped = events
        .iter()
        .find(|e| e.reason == "GUARD_TRIPPED" && e.to == "tripped")
        .unwrap();
    let tf = tripped.guard.as_ref().unwrap();
    assert_eq!(tf.value, Some(9.0));
    assert_eq!(tf.threshold.as_deref(), Some("5"));
    assert_eq!(tf.held_samples, Some(2));

    // The held unit does not start: it waits, and is not failed.
    let mark = daemon.mark();
    daemon.cli(&["start", "pull"]).ok();
    daemon.wait_for(mark, "pull held", |t| {
        t.is("pull", "waiting") && t.reason == "HELD_BY_GUARD"
    });
    let pull = daemon
        .status()
        .into_iter()
        .find(|u| u.name == "pull")
        .unwrap();
    assert_eq!(pull.state, "waiting");
    assert_eq!(pull.reason, "HELD_BY_GUARD");
    assert!(pull.detail.contains("watch/level"), "{pull:#?}");
    assert_eq!(runs(&b.pull_runs), 1, "a held unit ran");

    // It keeps sampling after its action; the metrics show the state.
    let g = guard(&daemon, "watch", "level");
    assert!(g.holding, "{g:#?}");
    let later = wait_samples_past(&daemon, "watch", "level", g.samples + 2);
    assert_eq!(later.state, "tripped");
    // The runbook shows the state the daemon reports, beside the commands.
    let units = b.d.units();
    let book = daemon.cli(&["guards", "--units", units.to_str().unwrap()]);
    let book = book.ok();
    assert!(
        book.contains("  now       tripped, last 9"),
        "the runbook with its state:\n{book}"
    );
    assert!(book.contains("ran-on-trip"), "{book}");
    let metrics = daemon.cli(&["metrics"]).ok().to_owned();
    for line in [
        r#"launchgraph_guard_state{unit="watch",guard="level",signal="exec",state="tripped"} 1"#,
        r#"launchgraph_guard_state{unit="watch",guard="level",signal="exec",state="ok"} 0"#,
        r#"launchgraph_guard_value{unit="watch",guard="level",signal="exec"} 9.0"#,
        r#"launchgraph_guard_trips_total{unit="watch",guard="level"} 1"#,
        r#"launchgraph_guard_action_runs_total{unit="watch",guard="level",action="trip",result="ok"} 1"#,
        r#"launchgraph_guard_action_runs_total{unit="watch",guard="level",action="verify",result="ok"} 1"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line} in\n{metrics}"
        );
    }

    // Cleared: the held unit starts.
    let mark = daemon.mark();
    b.set(0);
    daemon.wait_for(mark, "guard cleared", |t| {
        t.unit == "watch" && t.to == "ok" && t.reason == "GUARD_CLEARED"
    });
    daemon.wait_for(mark, "pull started once released", |t| {
        t.is("pull", "stopped")
    });
    assert_eq!(runs(&b.pull_runs), 2);
    assert!(!guard(&daemon, "watch", "level").holding);
}

/// An action's commands run as its `user`, in their own group, with nothing of the daemon's
/// environment but `PATH`: what the command printed (its uid, gid, groups and environment) is
/// in the action's event. The daemon runs as root with a secret in its environment.
#[test]
#[ignore = "needs root"]
fn root_an_action_runs_as_its_user_with_only_path() {
    support::needs_root("running an action as another user");
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("this test runs an action as the user nobody, which this host lacks");
    let b = Bench::new(9);
    let on_trip = r#"[guard.on-trip]
run = [["/bin/sh", "-c", "echo uid=$(id -u) gid=$(id -g) groups=$(id -G); env | sort | tr '\n' ' '"]]
user = "nobody"
"#;
    b.d.unit("watch", &support::watch_unit(&b.level, on_trip));
    let mut daemon = Daemon::start_with_env(&b.d.units(), &[("LAUNCHGRAPH_TEST_SECRET", "s3cret")]);
    daemon.wait_serving();
    daemon.wait_for(0, "guard tripped", |t| {
        t.unit == "watch" && t.to == "tripped" && t.reason == "GUARD_TRIPPED"
    });
    let mut ran = None;
    wait_until("the trip action done or failed", || {
        ran = guard_events(&daemon)
            .into_iter()
            .find(|e| e.guard.as_ref().unwrap().kind.starts_with("action-"));
        ran.is_some()
    });
    let ran = ran.unwrap();
    // Without a verify, a run that succeeded is the confirmation itself.
    assert_eq!(
        ran.guard.as_ref().unwrap().kind,
        "action-confirmed",
        "{ran:#?}"
    );
    let output = ran
        .guard
        .as_ref()
        .unwrap()
        .output
        .clone()
        .unwrap_or_default();
    let want = format!(
        "uid={uid} gid={gid} groups=",
        uid = nobody.uid,
        gid = nobody.gid
    );
    assert!(output.starts_with(&want), "{output:?}, want {want:?}…");
    let groups: Vec<&str> = output[want.len()..]
        .split_whitespace()
        .take_while(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert!(
        !groups.contains(&"0"),
        "the action kept root's group: {output:?}"
    );
    let env: Vec<&str> = output
        .split_whitespace()
        .filter(|w| w.contains('='))
        .filter(|w| !w.starts_with("uid=") && !w.starts_with("gid=") && !w.starts_with("groups="))
        .collect();
    assert!(
        !output.contains("s3cret"),
        "the daemon's environment reached the action: {output:?}"
    );
    // sh itself adds PWD (and may add SHLVL and `_`); nothing else comes from outside.
    for var in &env {
        let name = var.split('=').next().unwrap();
        assert!(
            ["PATH", "PWD", "SHLVL", "_"].contains(&name),
            "{name} in the action's environment: {output:?}"
        );
    }
    assert!(env.iter().any(|v| v.starts_with("PATH=")), "{output:?}");
}

#[test]
fn a_verify_that_never_confirms_times_the_action_out_visibly() {
    let b = Bench::new(9);
    let on_trip = format!(
        r#"[guard.on-trip]
run = [["/bin/sh", "-c", {script}]]
verify = ["/bin/false"]
complete-within = "2s"
"#,
        script = q(&format!("echo tripped > {}", b.marker.display())),
    );
    b.d.unit("watch", &support::watch_unit(&b.level, &on_trip));
    let mut daemon = b.start();
    daemon.wait_for(0, "the action timed out", |t| {
        t.unit == "watch" && t.reason == "GUARD_ACTION_TIMEOUT"
    });
    let g = guard(&daemon, "watch", "level");
    assert_eq!(g.state, "tripped", "{g:#?}");
    let a = g.action.expect("an action");
    assert_eq!(a.progress, "timed-out");
    assert_eq!(a.reason.as_deref(), Some("GUARD_ACTION_TIMEOUT"));
    assert!(a.deadline_in_secs <= 0.0, "{a:#?}");
    assert_eq!(fs::read_to_string(&b.marker).unwrap(), "tripped\n");
    // Still visible, and still sampling, a while later.
    let later = wait_samples_past(&daemon, "watch", "level", g.samples + 2);
    assert_eq!(
        later.action.and_then(|a| a.reason).as_deref(),
        Some("GUARD_ACTION_TIMEOUT")
    );
    let metrics = daemon.cli(&["metrics"]).ok().to_owned();
    let line = r#"launchgraph_guard_action_runs_total{unit="watch",guard="level",action="verify",result="timeout"} 1"#;
    assert!(
        metrics.lines().any(|l| l == line),
        "no {line} in\n{metrics}"
    );
}

#[test]
fn an_advising_guard_trips_and_says_what_it_would_do_but_runs_and_holds_nothing() {
    let b = Bench::new(1);
    let on_trip = format!(
        r#"mode = "advise"
hold = ["pull"]
on-trip = {{ run = [["/bin/sh", "-c", {script}]] }}
"#,
        script = q(&format!("echo tripped > {}", b.marker.display())),
    );
    b.d.unit("watch", &support::watch_unit(&b.level, &on_trip));
    let mut daemon = b.start();
    let mark = daemon.mark();
    b.set(9);
    daemon.wait_for(mark, "guard tripped", |t| {
        t.unit == "watch" && t.to == "tripped" && t.reason == "GUARD_TRIPPED"
    });
    let events = guard_events(&daemon);
    let advice = events
        .iter()
        .find(|e| e.guard.as_ref().unwrap().kind == "advise")
        .unwrap_or_else(|| panic!("no advice: {events:#?}"));
    let facts = advice.guard.as_ref().unwrap();
    assert!(facts.advise);
    let would = facts.output.as_deref().unwrap();
    assert!(
        would.contains("hold pull") && would.contains("run /bin/sh -c"),
        "{would}"
    );
    // Nothing is held: the unit runs when asked.
    let mark = daemon.mark();
    daemon.cli(&["start", "pull"]).ok();
    daemon.wait_for(mark, "pull ran again", |t| t.is("pull", "stopped"));
    assert_eq!(runs(&b.pull_runs), 2);
    // Samples go on after the edge; by then the command would long have run.
    let g = guard(&daemon, "watch", "level");
    assert!(!g.holding);
    assert!(g.action.is_none(), "{g:#?}");
    wait_samples_past(&daemon, "watch", "level", g.samples + 2);
    assert!(!b.marker.exists(), "an advising guard ran its command");
}

#[test]
fn a_guard_is_tripped_and_cleared_by_hand() {
    let b = Bench::new(1);
    let on_trip = format!(
        r#"on-trip = {{ run = [["/bin/sh", "-c", {script}]] }}
"#,
        // It also prints more than an event keeps: cut, not a failure.
        script = q(&format!(
            "echo run >> {}; head -c 100000 /dev/zero | tr '\\0' x",
            b.marker.display()
        )),
    );
    b.d.unit("watch", &support::watch_unit(&b.level, &on_trip));
    let mut daemon = b.start();
    wait_samples_past(&daemon, "watch", "level", 0);

    let mark = daemon.mark();
    let out = daemon.cli(&["guard", "trip", "watch/level"]);
    assert_eq!(out.ok().trim(), "tripping guard watch/level");
    daemon.wait_for(mark, "tripped by hand", |t| {
        t.unit == "watch" && t.to == "tripped" && t.reason == "GUARD_TRIPPED"
    });
    wait_until("the forced trip's action ran", || runs(&b.marker) == 1);
    wait_until("the forced trip's action is done", || {
        guard(&daemon, "watch", "level")
            .action
            .is_some_and(|a| a.progress == "done")
    });
    let done = guard_events(&daemon)
        .into_iter()
        .find(|e| e.guard.as_ref().unwrap().kind == "action-confirmed")
        .expect("the action's confirmation");
    let printed = done.guard.unwrap().output.unwrap();
    assert_eq!(printed.len(), 16 * 1024, "kept up to the cap");
    assert!(printed.bytes().all(|c| c == b'x'));
    // Samples below the threshold do not clear a trip by hand.
    let g = guard(&daemon, "watch", "level");
    assert!(g.forced, "{g:#?}");
    let later = wait_samples_past(&daemon, "watch", "level", g.samples + 2);
    assert_eq!(later.state, "tripped");
    assert_eq!(later.value, Some(1.0));
    let forced = guard_events(&daemon)
        .into_iter()
        .find(|e| e.reason == "GUARD_TRIPPED")
        .unwrap();
    assert!(forced.guard.unwrap().forced);

    let mark = daemon.mark();
    daemon.cli(&["guard", "clear", "watch/level"]).ok();
    daemon.wait_for(mark, "cleared by hand", |t| {
        t.unit == "watch" && t.to == "ok" && t.reason == "GUARD_CLEARED"
    });
    assert!(!guard(&daemon, "watch", "level").forced);

    // Unknown names are usage errors.
    let out = daemon.cli(&["guard", "trip", "watch/nope"]);
    out.expect(64);
    assert!(out.stderr.contains("no guard watch/nope"), "{out:#?}");
    daemon.cli(&["guard", "trip", "watch"]).expect(64);
}

#[test]
#[ignore = "needs root"]
fn root_forcing_a_guard_needs_the_rights_of_restart() {
    support::needs_root("running the CLI as another user");
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("this test runs the CLI as the user nobody, which this host lacks");
    let (uid, gid) = (nobody.uid.as_raw(), nobody.gid.as_raw());
    let (group, group_gid) =
        support::control::group_nobody_is_not_in().expect("a group in /etc/group");
    let b = Bench::new(1);
    b.d.unit("watch", &support::watch_unit(&b.level, ""));
    let mut daemon = Daemon::start_with_env(&b.d.units(), &[("LAUNCHGRAPH_ADMIN_GROUP", &group)]);
    daemon.wait_serving();
    daemon.wait_for(0, "pull stopped", |t| t.is("pull", "stopped"));
    // Reachable, as the control tests make it: nobody may read, not act.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(daemon.socket(), fs::Permissions::from_mode(0o666)).unwrap();
    let as_nobody = |args: &[&str]| {
        support::control::as_user(
            support::control::cli_command(daemon.socket(), args),
            uid,
            gid,
        )
    };
    let units = b.d.units();
    let book = as_nobody(&["guards", "--json", "--units", units.to_str().unwrap()]);
    let book: serde_json::Value = serde_json::from_str(book.ok()).unwrap();
    let watch = book["units"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["unit"] == "watch"))
        .unwrap_or_else(|| panic!("watch in {book:#}"));
    assert_eq!(
        watch["guards"][0]["live"]["state"], "ok",
        "nobody reads the state: {book:#}"
    );
    for (verb, word) in [("trip", "guard trip"), ("clear", "guard clear")] {
        let out = as_nobody(&["guard", verb, "watch/level"]);
        out.expect(77);
        assert_eq!(
            out.stderr.trim_end(),
            format!(
                "launchgraph: uid {uid} may read but not act: {word} needs root or a member of \
                 the group {group} (gid {group_gid})"
            ),
            "{out:#?}"
        );
    }
    assert_eq!(guard(&daemon, "watch", "level").state, "ok");
}

#[test]
#[ignore = "needs root"]
fn root_a_disk_free_guard_holds_a_pull_unit_while_a_tmpfs_is_full() {
    support::needs_root("mounting a tmpfs");
    let b = Bench::new(0);
    let fsdir = b.d.path("models");
    let tmpfs = Tmpfs::mount(&fsdir, "8m");
    b.d.unit(
        "ollama",
        &format!(
            r#"[exec]
command = ["/bin/sleep", "1000"]

[[guard]]
name = "disk"
signal = "disk-free"
path = {path}
every = "1s"
below = "12%"
samples = 2
clear-above = "50%"
clear-samples = 1
hold = ["pull"]
"#,
            path = q(tmpfs.dir.to_str().unwrap()),
        ),
    );
    let mut daemon = b.start();
    let first = wait_samples_past(&daemon, "ollama", "disk", 0);
    assert_eq!(first.state, "ok");
    assert_eq!(first.value, Some(100.0), "{first:#?}");

    // Fill it: 7.5 of 8 MiB.
    let blob = tmpfs.dir.join("blob");
    fs::write(&blob, vec![0u8; 7 * 1024 * 1024 + 512 * 1024]).unwrap();
    let mark = daemon.mark();
    daemon.wait_for(mark, "disk guard tripped", |t| {
        t.unit == "ollama" && t.to == "tripped" && t.reason == "GUARD_TRIPPED"
    });
    let g = guard(&daemon, "ollama", "disk");
    assert!(g.value.is_some_and(|v| v < 12.0), "{g:#?}");
    assert_eq!(g.value_unit, "percent");
    let metrics = daemon.cli(&["metrics"]).ok().to_owned();
    let ratio = metrics
        .lines()
        .find(|l| l.starts_with("launchgraph_host_disk_free_ratio{"))
        .unwrap_or_else(|| panic!("no disk free ratio in\n{metrics}"));
    assert!(ratio.contains(tmpfs.dir.to_str().unwrap()), "{ratio}");

    let mark = daemon.mark();
    daemon.cli(&["start", "pull"]).ok();
    daemon.wait_for(mark, "pull held", |t| {
        t.is("pull", "waiting") && t.reason == "HELD_BY_GUARD"
    });
    assert_eq!(runs(&b.pull_runs), 1);

    // Empty it: the guard clears and the pull runs.
    fs::remove_file(&blob).unwrap();
    daemon.wait_for(mark, "disk guard cleared", |t| {
        t.unit == "ollama" && t.to == "ok" && t.reason == "GUARD_CLEARED"
    });
    daemon.wait_for(mark, "pull ran once released", |t| t.is("pull", "stopped"));
    assert_eq!(runs(&b.pull_runs), 2);
    drop(daemon);
}

#[test]
fn a_switch_trips_when_all_its_guards_are_tripped_and_clears_when_none_is() {
    let b = Bench::new(1);
    let other = b.d.path("other");
    fs::write(&other, "1\n").unwrap();
    let extra = format!(
        r#"
[[guard]]
name = "other"
signal = "exec"
command = ["/bin/cat", {other}]
every = "1s"
above = 5
samples = 1

[[switch]]
name = "both"
guards = ["level", "other"]
when = "all"
hold = ["pull"]
on-trip = {{ run = [["/bin/sh", "-c", {script}]] }}
"#,
        other = q(other.to_str().unwrap()),
        script = q(&format!("echo run >> {}", b.marker.display())),
    );
    b.d.unit("watch", &support::watch_unit(&b.level, &extra));
    let mut daemon = b.start();
    let sw = guard(&daemon, "watch", "both");
    assert_eq!((sw.signal.as_str(), sw.state.as_str()), ("switch", "ok"));
    let set_other = |v: u32| {
        let tmp = b.d.path("other.tmp");
        fs::write(&tmp, format!("{v}\n")).unwrap();
        fs::rename(&tmp, &other).unwrap();
    };

    // One of two: the switch stays ok.
    let mark = daemon.mark();
    b.set(9);
    daemon.wait_for(mark, "level tripped", |t| {
        t.unit == "watch" && t.to == "tripped"
    });
    let g = guard(&daemon, "watch", "level");
    wait_samples_past(&daemon, "watch", "level", g.samples + 1);
    assert_eq!(guard(&daemon, "watch", "both").state, "ok");
    assert!(!b.marker.exists());

    // Both: it trips, runs its action and holds.
    let mark = daemon.mark();
    set_other(9);
    wait_until("the switch tripped", || {
        guard(&daemon, "watch", "both").state == "tripped"
    });
    wait_until("the switch's action ran", || runs(&b.marker) == 1);
    assert!(guard(&daemon, "watch", "both").holding);
    daemon.cli(&["start", "pull"]).ok();
    daemon.wait_for(mark, "pull held", |t| {
        t.is("pull", "waiting") && t.reason == "HELD_BY_GUARD"
    });
    assert!(
        guard_events(&daemon).iter().any(|e| {
            let g = e.guard.as_ref().unwrap();
            g.guard == "both"
                && e.to == "tripped"
                && e.facts.cause.as_deref() == Some("2 of 2 guards tripped")
        }),
        "{:#?}",
        guard_events(&daemon)
    );

    // One clears: still tripped. Both: cleared, and the held unit runs.
    b.set(0);
    let g = guard(&daemon, "watch", "other");
    wait_samples_past(&daemon, "watch", "other", g.samples + 2);
    assert_eq!(guard(&daemon, "watch", "level").state, "ok");
    assert_eq!(guard(&daemon, "watch", "both").state, "tripped");
    let mark = daemon.mark();
    set_other(0);
    daemon.wait_for(mark, "pull ran once released", |t| t.is("pull", "stopped"));
    assert_eq!(guard(&daemon, "watch", "both").state, "ok");
    assert_eq!(runs(&b.pull_runs), 2);
    assert_eq!(runs(&b.marker), 1, "no action on a member's edge alone");
}

/// A sample that takes longer than `every` delays the next one; two samples of one guard never
/// run at once, and sampling goes on.
#[test]
fn samples_of_one_guard_never_overlap() {
    let b = Bench::new(1);
    let log = b.d.path("samples");
    // Each sample logs its start and end (nanoseconds), taking 1.5 s with every = "1s".
    let script = format!(
        "echo start $(date +%s%N) >> {log}; sleep 1.5; echo end $(date +%s%N) >> {log}; echo 1",
        log = log.display()
    );
    b.d.unit(
        "watch",
        &format!(
            r#"[exec]
command = ["/bin/sleep", "1000"]

[[guard]]
name = "slow"
signal = "exec"
command = ["/bin/sh", "-c", {script}]
every = "1s"
above = 5
"#,
            script = q(&script),
        ),
    );
    let daemon = b.start();
    wait_samples_past(&daemon, "watch", "slow", 3);
    let text = fs::read_to_string(&log).unwrap();
    let mut open: Option<u128> = None;
    let mut last_end = 0u128;
    let mut done = 0;
    for line in text.lines() {
        let (what, t) = line.split_once(' ').unwrap();
        let t: u128 = t.parse().unwrap();
        match what {
            "start" => {
                assert!(open.is_none(), "a sample began while one ran:\n{text}");
                assert!(t >= last_end, "{text}");
                open = Some(t);
            }
            _ => {
                assert!(open.take().is_some(), "{text}");
                last_end = t;
                done += 1;
            }
        }
    }
    assert!(done >= 3, "{text}");
}

#[test]
fn an_action_restarts_units_as_restart_does() {
    let b = Bench::new(1);
    b.d.unit("svc", "[exec]\ncommand = [\"/bin/sleep\", \"1000\"]\n");
    b.d.unit(
        "watch",
        &support::watch_unit(&b.level, "on-trip = { restart = [\"svc\"] }\n"),
    );
    let mut daemon = b.start();
    let first = daemon.wait_for(0, "svc ready", |t| t.is("svc", "ready"));
    let mark = daemon.mark();
    b.set(9);
    daemon.wait_for(mark, "svc restarted", |t| {
        t.is("svc", "starting") && t.reason == "RESTART_REQUESTED"
    });
    let again = daemon.wait_for(mark, "svc ready again", |t| t.is("svc", "ready"));
    assert_ne!(again.pid(), first.pid());
    wait_until("the restart action is done", || {
        guard(&daemon, "watch", "level")
            .action
            .is_some_and(|a| a.progress == "done")
    });
}

/// A signal that cannot be read is `unknown`, with its cause, in status, events, the log and
/// the metrics (which drop the value); a number again brings the guard back.
#[test]
fn an_unreadable_signal_is_unknown_with_its_cause_and_recovers() {
    let b = Bench::new(1);
    b.d.unit("watch", &support::watch_unit(&b.level, ""));
    let mut daemon = b.start();
    wait_samples_past(&daemon, "watch", "level", 0);
    let mark = daemon.mark();
    let log = daemon.log_mark();
    fs::write(&b.level, "lots\n").unwrap();
    daemon.wait_for(mark, "unknown", |t| {
        t.unit == "watch" && t.from == "ok" && t.to == "unknown" && t.reason == "GUARD_UNKNOWN"
    });
    let g = guard(&daemon, "watch", "level");
    assert_eq!((g.state.as_str(), g.phase.as_str()), ("unknown", "ok"));
    assert!(
        g.unknown_cause
            .as_deref()
            .is_some_and(|c| c.contains("lots")),
        "{g:#?}"
    );
    daemon.wait_log(log, "the unknown guard's log line", |l| {
        l.contains("watch: guard level ok -> unknown GUARD_UNKNOWN") && l.contains("lots")
    });
    let metrics = daemon.cli(&["metrics"]).ok().to_owned();
    assert!(
        metrics.lines().any(|l| l
            == r#"launchgraph_guard_state{unit="watch",guard="level",signal="exec",state="unknown"} 1"#),
        "{metrics}"
    );
    assert!(!metrics.contains("launchgraph_guard_value{"), "{metrics}");

    let mark = daemon.mark();
    b.set(1);
    daemon.wait_for(mark, "known again", |t| {
        t.unit == "watch" && t.from == "unknown" && t.to == "ok"
    });
}

/// A reload that leaves a guard as it was keeps its state, its hold and its sampling; one that
/// changes it starts it afresh.
#[test]
fn a_reload_keeps_an_unchanged_guard_tripped_and_restarts_a_changed_one() {
    let b = Bench::new(9);
    b.d.unit(
        "watch",
        &support::watch_unit(&b.level, "hold = [\"pull\"]\n"),
    );
    let mut daemon = b.start();
    daemon.wait_for(0, "tripped", |t| {
        t.unit == "watch" && t.to == "tripped" && t.reason == "GUARD_TRIPPED"
    });
    let before = guard(&daemon, "watch", "level");

    b.d.unit("extra", "[exec]\ncommand = [\"/bin/sleep\", \"1000\"]\n");
    let mark = daemon.mark();
    daemon.cli(&["reload"]).ok();
    daemon.wait_for(mark, "extra started", |t| t.is("extra", "ready"));
    let after = wait_samples_past(&daemon, "watch", "level", before.samples);
    assert_eq!(after.state, "tripped");
    assert!(after.holding);
    assert!(
        daemon.transitions()[mark..]
            .iter()
            .all(|t| t.unit != "watch" || t.reason != "GUARD_CLEARED"),
        "an unchanged guard was reset"
    );
    daemon.cli(&["start", "pull"]).ok();
    daemon.wait_for(mark, "pull still held", |t| {
        t.is("pull", "waiting") && t.reason == "HELD_BY_GUARD"
    });

    // Changed (a higher threshold): afresh at ok, its hold let go, and the pull runs.
    b.d.unit(
        "watch",
        &support::watch_unit(&b.level, "hold = [\"pull\"]\n").replace("above = 5", "above = 50"),
    );
    let mark = daemon.mark();
    daemon.cli(&["reload"]).ok();
    daemon.wait_for(mark, "pull released", |t| t.is("pull", "stopped"));
    let g = guard(&daemon, "watch", "level");
    assert_eq!(g.trip, "50");
    assert!(!g.holding);
    assert_eq!(runs(&b.pull_runs), 2);
}

/// A failing command ends its action as failed, with why, in status and events; the rest of
/// the action (here its second command) does not run.
#[test]
fn a_failing_action_command_stays_visible_and_stops_the_rest_of_the_action() {
    let b = Bench::new(9);
    let on_trip = format!(
        r#"[guard.on-trip]
run = [["/bin/sh", "-c", "echo no room >&2; exit 3"], ["/bin/sh", "-c", {second}]]
"#,
        second = q(&format!("echo ran > {}", b.marker.display())),
    );
    b.d.unit("watch", &support::watch_unit(&b.level, &on_trip));
    let mut daemon = b.start();
    daemon.wait_for(0, "the action failed", |t| {
        t.unit == "watch" && t.reason == "GUARD_ACTION_FAILED"
    });
    let g = guard(&daemon, "watch", "level");
    let a = g.action.expect("an action");
    assert_eq!(a.progress, "failed");
    assert_eq!(a.reason.as_deref(), Some("GUARD_ACTION_FAILED"));
    let why = a.detail.unwrap();
    assert!(why.contains("exited 3") && why.contains("no room"), "{why}");
    assert!(!b.marker.exists(), "the command after the failed one ran");
    let later = wait_samples_past(&daemon, "watch", "level", g.samples + 2);
    assert_eq!(
        later.action.and_then(|a| a.reason).as_deref(),
        Some("GUARD_ACTION_FAILED")
    );
    let failed = guard_events(&daemon)
        .into_iter()
        .find(|e| e.reason == "GUARD_ACTION_FAILED")
        .unwrap();
    assert!(failed.facts.cause.unwrap().contains("exited 3"));
}

/// A sleeper unit `host` with one guard `name` of `signal`, sampled every second: it trips
/// after three samples above `above`, clears after three at or below `clear_below`, holds
/// `pull`, and each edge writes its word (`tripped`, `cleared`) to `marker` and verifies it.
fn pressure_unit(
    name: &str,
    signal: &str,
    above: &str,
    clear_below: &str,
    marker: &Path,
) -> String {
    let edge = |word: &str| {
        format!(
            r#"run = [["/bin/sh", "-c", {script}]]
verify = ["/bin/cat", {marker}]
verify-contains = "{word}"
complete-within = "60s"
"#,
            script = q(&format!(
                "echo {word} > {}; echo ran-{word}",
                marker.display()
            )),
            marker = q(marker.to_str().unwrap()),
        )
    };
    format!(
        r#"[exec]
command = ["/bin/sleep", "1000"]

[[guard]]
name = "{name}"
signal = "{signal}"
every = "1s"
above = "{above}"
samples = 3
clear-below = "{clear_below}"
clear-samples = 3
hold = ["pull"]

[guard.on-trip]
{trip}
[guard.on-clear]
{clear}"#,
        trip = edge("tripped"),
        clear = edge("cleared"),
    )
}

/// The action of `host/name`'s current edge is `done` (run and verified) for `edge`.
fn wait_action_done(d: &Daemon, name: &str, edge: &str) {
    wait_until(&format!("host/{name}'s {edge} action is confirmed"), || {
        guard(d, "host", name)
            .action
            .is_some_and(|a| a.edge == edge && a.progress == "done")
    });
}

/// One guard on a real kernel signal, end to end: the daemon samples it while nothing
/// presses on memory (ok, below `above`); a memory-limited cgroup swapping trips it (its
/// on-trip runs and is verified, the pull unit is held); once the hog is killed it clears
/// (on-clear runs and is verified, the pull runs). Read over the control socket: the guards
/// request, `guards --json`, `events --json` and `status --json`.
fn a_guard_on_real_pressure_trips_holds_and_clears(
    name: &str,
    signal: &str,
    (above, threshold): (&str, f64),
    (clear_below, clear_threshold): (&str, f64),
    unit: &str,
) {
    // Taken first: no other test of this binary presses on memory while this one runs.
    let mut bench = Swapping::prepare();
    let b = Bench::new(0);
    b.d.unit(
        "host",
        &pressure_unit(name, signal, above, clear_below, &b.marker),
    );
    let mut daemon = b.start();
    // The first sample has no rate yet (unknown); the second is one.
    let calm = wait_samples_past(&daemon, "host", name, 2);
    assert_eq!(calm.signal, signal);
    assert_eq!(calm.value_unit, unit);
    assert!(
        calm.state == "ok" && calm.value.is_some_and(|v| v < threshold),
        "the host is already under pressure before the test makes any: {calm:#?}"
    );

    // Pressure: trips after three samples above the threshold.
    let mark = daemon.mark();
    bench.press();
    let tripped = daemon.wait_for(mark, "the guard tripped", |t| {
        t.unit == "host" && t.to == "tripped" && t.reason == "GUARD_TRIPPED"
    });
    assert_eq!(tripped.from, "pending", "{tripped:#?}");
    wait_action_done(&daemon, name, "trip");
    assert_eq!(fs::read_to_string(&b.marker).unwrap(), "tripped\n");
    let events = guard_events(&daemon);
    let trip = events
        .iter()
        .find(|e| e.reason == "GUARD_TRIPPED")
        .unwrap_or_else(|| panic!("no GUARD_TRIPPED event: {events:#?}"));
    let facts = trip.guard.as_ref().unwrap();
    assert_eq!(facts.guard, name);
    assert!(
        facts.value.is_some_and(|v| v > threshold),
        "tripped at {:?}, threshold {threshold}: {trip:#?}",
        facts.value
    );
    assert_eq!(facts.value_unit.as_deref(), Some(unit));
    assert_eq!(facts.threshold.as_deref(), Some(above));
    eprintln!("{name} tripped at {:?} {unit}", facts.value);
    assert_eq!(facts.held_samples, Some(3));
    let ran = |d: &Daemon, edge: &str| {
        guard_events(d).into_iter().find(|e| {
            let g = e.guard.as_ref().unwrap();
            g.kind == "action-ran" && g.edge.as_deref() == Some(edge)
        })
    };
    let trip_ran = ran(&daemon, "trip").expect("an action-ran event for the trip");
    assert_eq!(
        trip_ran.guard.unwrap().output.as_deref(),
        Some("ran-tripped")
    );

    // `guards --json` shows it live, beside the runbook.
    let units = b.d.units();
    let book = daemon.cli(&["guards", "--json", "--units", units.to_str().unwrap()]);
    let book: serde_json::Value = serde_json::from_str(book.ok()).unwrap();
    let live = book["units"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["unit"] == "host"))
        .map(|u| &u["guards"][0]["live"])
        .unwrap_or_else(|| panic!("host in {book:#}"));
    assert!(
        matches!(live["state"].as_str(), Some("tripped" | "clearing")),
        "{book:#}"
    );

    // Held: a start waits, and is not a failure.
    let mark = daemon.mark();
    daemon.cli(&["start", "pull"]).ok();
    daemon.wait_for(mark, "pull held", |t| {
        t.is("pull", "waiting") && t.reason == "HELD_BY_GUARD"
    });
    let status = support::control::status_json(daemon.socket());
    let pull = support::control::unit(&status, "pull");
    assert_eq!(
        (pull.state.as_str(), pull.reason.as_str()),
        ("waiting", "HELD_BY_GUARD")
    );
    assert!(pull.detail.contains(&format!("host/{name}")), "{pull:#?}");
    assert_eq!(runs(&b.pull_runs), 1, "a held unit ran");
    assert!(guard(&daemon, "host", name).holding);

    // Relieved: clears after three calm samples, runs on-clear, and the pull runs.
    let mark = daemon.mark();
    let relieved = std::time::Instant::now();
    bench.relieve();
    let cleared = daemon.wait_for(mark, "the guard cleared", |t| {
        t.unit == "host" && t.to == "ok" && t.reason == "GUARD_CLEARED"
    });
    assert_eq!(cleared.from, "clearing", "{cleared:#?}");
    let events = guard_events(&daemon);
    let clear = events
        .iter()
        .find(|e| e.reason == "GUARD_CLEARED" && e.from == "clearing")
        .unwrap_or_else(|| panic!("no GUARD_CLEARED event from clearing: {events:#?}"));
    let facts = clear.guard.as_ref().unwrap();
    assert!(
        facts.value.is_some_and(|v| v <= clear_threshold),
        "cleared at {:?}, clear threshold {clear_threshold}: {clear:#?}",
        facts.value
    );
    assert_eq!(facts.threshold.as_deref(), Some(clear_below));
    eprintln!(
        "{name} cleared at {:?} {unit}, {:.1}s after the hog was killed",
        facts.value,
        relieved.elapsed().as_secs_f64()
    );
    daemon.wait_for(mark, "pull ran once released", |t| t.is("pull", "stopped"));
    assert_eq!(runs(&b.pull_runs), 2);
    wait_action_done(&daemon, name, "clear");
    assert_eq!(fs::read_to_string(&b.marker).unwrap(), "cleared\n");
    let clear_ran = ran(&daemon, "clear").expect("an action-ran event for the clear");
    assert_eq!(
        clear_ran.guard.unwrap().output.as_deref(),
        Some("ran-cleared")
    );
    let g = guard(&daemon, "host", name);
    assert!(!g.holding, "{g:#?}");
    assert_eq!(g.state, "ok");
    drop(daemon);
    drop(bench);
}

/// Rail B on the real kernel: a `swap-out-rate` guard trips while a memory-limited cgroup
/// swaps (measured here at 45–130 MiB/s, far above 4 MiB/s) and clears once it stops (0).
#[test]
#[ignore = "needs root"]
fn root_a_swap_out_rate_guard_trips_on_real_swapping_and_clears_when_it_stops() {
    support::needs_root("swapon and a memory cgroup");
    a_guard_on_real_pressure_trips_holds_and_clears(
        "swap",
        "swap-out-rate",
        ("4MiB/s", 4.0 * 1024.0 * 1024.0),
        ("1MiB/s", 1024.0 * 1024.0),
        "bytes/s",
    );
}

/// A `memory-pressure` guard on Linux PSI: trips while a memory-limited cgroup thrashes
/// (some task stalled 11–31% of each second here, against 5%) and clears once it stops (0%
/// of each second: the sample is the `total` delta, not the 10 s `avg10`, which would take
/// tens of seconds to fall under 2%).
#[test]
#[ignore = "needs root"]
fn root_a_memory_pressure_guard_trips_on_real_stalls_and_clears_when_they_stop() {
    support::needs_root("swapon and a memory cgroup");
    assert!(
        Path::new("/proc/pressure/memory").exists(),
        "this kernel has no PSI (/proc/pressure/memory): built without CONFIG_PSI or booted \
         with psi=0"
    );
    a_guard_on_real_pressure_trips_holds_and_clears(
        "memory",
        "memory-pressure",
        ("5%", 5.0),
        ("2%", 2.0),
        "percent",
    );
}

/// A guard's values are in its threshold's unit: a `memory-pressure` guard with a percent
/// (Linux PSI) reports percents, one with a level (macOS) reports levels, and on a host that
/// measures the other unit its samples are unknown, with why.
#[test]
fn a_memory_pressure_guard_reports_values_in_its_thresholds_unit() {
    let b = Bench::new(0);
    b.d.unit(
        "host",
        r#"[exec]
command = ["/bin/sleep", "1000"]

[[guard]]
name = "percent"
signal = "memory-pressure"
every = "1s"
above = "90%"

[[guard]]
name = "level"
signal = "memory-pressure"
every = "1s"
above = "warn"
"#,
    );
    let daemon = b.start();
    let percent = wait_samples_past(&daemon, "host", "percent", 0);
    assert_eq!(percent.value_unit, "percent", "{percent:#?}");
    let level = wait_samples_past(&daemon, "host", "level", 1);
    assert_eq!(level.value_unit, "pressure", "{level:#?}");
    if cfg!(target_os = "linux") {
        assert_eq!(level.state, "unknown", "{level:#?}");
        let cause = level.unknown_cause.as_deref().unwrap_or_default();
        assert!(cause.contains("cannot be compared"), "{level:#?}");
    }
}
