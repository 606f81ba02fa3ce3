//! The launchctl client ([`Launchctl`]) driving the launchctl double: real jobs (a loopback
//! TCP server, sleepers), real signals, and the sequences of Homebrew/brew Library/Homebrew/services/cli.rb; launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html (bootstrap,
//! kickstart, kill, KeepAlive relaunch, the bootout/bootstrap race, disabled services, missing
//! GUI domains, no relaunch when disabled or in the penalty box, one label in two domains). Also the client's timeout, and `gui/console` resolution.
//!
//! Tests wait for events (a port file, a log line, a state in `print`) with generous deadlines
//! and never assert speed.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use launchgraph::launchd::{
    ConsoleUser, Failure, JobState, LastExit, Launchctl, NoConsoleUser, PrintOutcome, ServiceInfo,
    domain_target, service_target,
};
use launchgraph::unit::Domain;
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use support::launchd::{DoubleLaunchd, JobPlist};
use support::{DEADLINE, is_root};

/// A loopback TCP server: writes its port to `argv[1]` (atomically) and a greeting with its
/// environment and working directory to stdout, then answers every connection with its pid.
const TCP_SERVER: &str = r#"
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
s.listen(16)
print("started GREETING=%s cwd=%s" % (os.environ.get("GREETING"), os.getcwd()), flush=True)
tmp = sys.argv[1] + ".tmp"
with open(tmp, "w") as f:
    f.write(str(s.getsockname()[1]))
os.rename(tmp, sys.argv[1])
while True:
    c, _ = s.accept()
    c.sendall(str(os.getpid()).encode())
    c.close()
"#;

async fn info(lc: &Launchctl, target: &str) -> ServiceInfo {
    match lc.print(target).await.unwrap_or_else(|e| panic!("{e}")) {
        PrintOutcome::Loaded(info) => *info,
        other => panic!("{target} is not loaded: {other:?}"),
    }
}

/// Polls until `done` holds, within the deadline.
async fn eventually<T: std::fmt::Debug>(
    what: &str,
    mut probe: impl AsyncFnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let value = probe().await;
        if done(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "never {what}: last seen {value:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn print_until(
    lc: &Launchctl,
    target: &str,
    what: &str,
    done: impl Fn(&ServiceInfo) -> bool,
) -> ServiceInfo {
    eventually(what, async || info(lc, target).await, done).await
}

async fn read_file_when_present(path: &Path) -> String {
    eventually(
        &format!("{} written", path.display()),
        async || std::fs::read_to_string(path).unwrap_or_default(),
        |s: &String| !s.is_empty(),
    )
    .await
}

/// The pid no longer names a live process of ours (reaped, or a zombie awaiting init).
fn is_gone(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = stat
        .rsplit(')')
        .next()
        .is_some_and(|rest| rest.trim_start().starts_with('Z'));
    zombie || kill(Pid::from_raw(pid as i32), None) == Err(Errno::ESRCH)
}

async fn await_gone(pid: u32) {
    eventually(&format!("pid {pid} gone"), async || is_gone(pid), |g| *g).await;
}

fn argv(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn a_tcp_server_job_listens_at_the_pid_kickstart_reports() {
    let double = DoubleLaunchd::start(200).await;
    let lc = double.launchctl();
    let dir = &double.state_dir;
    let port_file = dir.join("port");
    let mut server = JobPlist::new(
        "test.server",
        &[
            "/usr/bin/env",
            "python3",
            "-c",
            TCP_SERVER,
            &port_file.to_string_lossy(),
        ],
    );
    server.env = vec![("GREETING".into(), "hi there".into())];
    server.working_directory = Some(dir.clone());
    server.stdout = Some(dir.join("server.log"));
    server.stderr = Some(dir.join("server.log"));
    let target = "system/test.server";

    assert_eq!(lc.print(target).await.unwrap(), PrintOutcome::NotLoaded);
    lc.enable(target).await.unwrap();
    lc.bootstrap("system", &server.write(dir)).await.unwrap();
    // Neither RunAtLoad nor KeepAlive: loaded, idle (Homebrew/brew Library/Homebrew/services/cli.rb; launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html).
    let idle = info(&lc, target).await;
    assert_eq!(
        (idle.state, idle.runs, idle.last_exit),
        (JobState::NotRunning, Some(0), LastExit::Never)
    );

    let pid = lc
        .kickstart(target, false)
        .await
        .unwrap()
        .expect("kickstart -p prints the pid");
    let port: u16 = read_file_when_present(&port_file).await.parse().unwrap();
    let mut answer = String::new();
    TcpStream::connect(("127.0.0.1", port))
        .unwrap()
        .read_to_string(&mut answer)
        .unwrap();
    assert_eq!(
        answer,
        pid.to_string(),
        "the process at the port is the one kickstart named"
    );

    let log = read_file_when_present(&dir.join("server.log")).await;
    let canonical_dir = std::fs::canonicalize(dir).unwrap();
    assert!(
        log.contains(&format!(
            "started GREETING=hi there cwd={}",
            canonical_dir.display()
        )),
        "{log}"
    );
    let running = info(&lc, target).await;
    assert!(running.is_running());
    assert_eq!((running.pid, running.runs), (Some(pid), Some(1)));

    // Kickstart of a running job without -k changes nothing and names the same pid.
    assert_eq!(lc.kickstart(target, false).await.unwrap(), Some(pid));

    // SIGTERM without KeepAlive: it stays down.
    lc.kill("SIGTERM", target).await.unwrap();
    let stopped = print_until(&lc, target, "stopped", |i| !i.is_running()).await;
    assert_eq!(
        stopped.state,
        JobState::NotRunning,
        "no relaunch is scheduled"
    );
    assert_eq!(
        (stopped.runs, stopped.last_exit),
        (Some(1), LastExit::Signal(15))
    );
    await_gone(pid).await;
    let err = lc.kill("SIGTERM", target).await.unwrap_err();
    assert_eq!(
        (err.code, err.stderr.as_str()),
        (Some(3), "No process to signal.")
    );

    // Then polls of print and the last kill.
    assert_eq!(
        double.calls()[..8],
        [
            argv(&["print", target]),
            argv(&["enable", target]),
            argv(&[
                "bootstrap",
                "system",
                &dir.join("test.server.plist").to_string_lossy()
            ]),
            argv(&["print", target]),
            argv(&["kickstart", "-p", target]),
            argv(&["print", target]),
            argv(&["kickstart", "-p", target]),
            argv(&["kill", "SIGTERM", target]),
        ]
    );
}

#[tokio::test]
async fn kickstart_k_restarts_and_the_old_instance_shows_sigterm() {
    let double = DoubleLaunchd::start(200).await;
    let lc = double.launchctl();
    let mut job = JobPlist::new("test.restart", &["/bin/sleep", "600"]);
    job.run_at_load = true;
    lc.bootstrap("system", &job.write(&double.state_dir))
        .await
        .unwrap();
    let target = "system/test.restart";
    let first = print_until(&lc, target, "running", ServiceInfo::is_running)
        .await
        .pid
        .unwrap();

    let second = lc
        .kickstart(target, true)
        .await
        .unwrap()
        .expect("a new pid");
    assert_ne!(first, second);
    let now = info(&lc, target).await;
    assert_eq!((now.pid, now.runs), (Some(second), Some(2)));
    // Homebrew/brew Library/Homebrew/services/cli.rb; launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html: the old instance ended with SIGTERM.
    assert_eq!(now.last_exit, LastExit::Signal(15));
    await_gone(first).await;
}

#[tokio::test]
async fn a_keepalive_job_is_relaunched_after_a_crash() {
    let double = DoubleLaunchd::start(200).await;
    let lc = double.launchctl();
    let mut job = JobPlist::new("test.keepalive", &["/bin/sleep", "600"]);
    job.keep_alive = true;
    job.throttle_interval = Some(1);
    lc.bootstrap("system", &job.write(&double.state_dir))
        .await
        .unwrap();
    let target = "system/test.keepalive";
    // KeepAlive implies RunAtLoad (launchd.plist(5)).
    let first = print_until(&lc, target, "running", ServiceInfo::is_running).await;
    assert!(first.keepalive());
    let first_pid = first.pid.unwrap();

    double.crash("test.keepalive", "SIGKILL").await;
    let relaunched = print_until(&lc, target, "relaunched", |i| {
        i.is_running() && i.pid != Some(first_pid)
    })
    .await;
    assert_eq!(relaunched.runs, Some(2));
    assert_eq!(relaunched.last_exit, LastExit::Signal(9));
    await_gone(first_pid).await;

    // `launchctl kill` does not stop it either (Homebrew/brew Library/Homebrew/services/cli.rb; launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html); bootout does.
    let second_pid = relaunched.pid.unwrap();
    lc.kill("TERM", target).await.unwrap();
    let again = print_until(&lc, target, "relaunched again", |i| {
        i.is_running() && i.pid != Some(second_pid)
    })
    .await;
    assert_eq!(
        (again.runs, again.last_exit),
        (Some(3), LastExit::Signal(15))
    );
    lc.bootout(target).await.unwrap();
    let last = again.pid.unwrap();
    eventually(
        "unloaded",
        async || lc.print(target).await.unwrap(),
        |o| *o == PrintOutcome::NotLoaded,
    )
    .await;
    await_gone(last).await;
}

#[tokio::test]
async fn bootstrap_right_after_bootout_fails_until_the_job_is_gone() {
    // The job holds out after SIGTERM until the test releases it, so the label is still
    // loaded when the second bootstrap comes, however slow the machine.
    let double = DoubleLaunchd::start(200).await;
    let lc = double.launchctl();
    let dir = &double.state_dir;
    let release = dir.join("release");
    let script = "trap 'while [ ! -e \"$1\" ]; do sleep 0.05; done; exit 0' TERM; \
                  echo up > \"$2\"; while :; do sleep 1; done";
    let mut job = JobPlist::new(
        "test.draining",
        &[
            "/bin/sh",
            "-c",
            script,
            "sh",
            &release.to_string_lossy(),
            &dir.join("up").to_string_lossy(),
        ],
    );
    job.run_at_load = true;
    job.exit_timeout = Some(600);
    let plist = job.write(dir);
    let target = "system/test.draining";
    lc.bootstrap("system", &plist).await.unwrap();
    read_file_when_present(&dir.join("up")).await;
    let pid = info(&lc, target).await.pid.unwrap();

    lc.bootout(target).await.unwrap();
    let err = lc.bootstrap("system", &plist).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(err.code, Some(5));
    // As root the message has one line; other users also get a hint (launchctl exit statuses as captured in DeterminateSystems/nix-installer#530, openclaw/openclaw#80384 and ProcursusTeam/launchctl xpc_private.h).
    assert!(
        err.stderr
            .starts_with("Bootstrap failed: 5: Input/output error"),
        "{err}"
    );
    assert!(matches!(
        lc.print(target).await.unwrap(),
        PrintOutcome::Loaded(_)
    ));
    // A second bootout while it drains: EINPROGRESS, as Homebrew's loop expects; the client
    // counts it as under way.
    let again = double.run(&["bootout", target]).await;
    assert_eq!(
        (again.code, again.stderr.as_str()),
        (36, "Boot-out failed: 36: Operation now in progress\n")
    );
    lc.bootout(target).await.unwrap();

    std::fs::write(&release, "").unwrap();
    eventually(
        "unloaded",
        async || lc.print(target).await.unwrap(),
        |o| *o == PrintOutcome::NotLoaded,
    )
    .await;
    await_gone(pid).await;
    lc.bootstrap("system", &plist).await.unwrap();
    assert!(matches!(
        lc.print(target).await.unwrap(),
        PrintOutcome::Loaded(_)
    ));

    let calls = double.calls();
    let plist = plist.to_string_lossy();
    assert_eq!(
        calls[..5],
        [
            argv(&["bootstrap", "system", &plist]),
            argv(&["print", target]),
            argv(&["bootout", target]),
            argv(&["bootstrap", "system", &plist]),
            argv(&["print", target]),
        ]
    );
}

#[tokio::test]
async fn the_drain_window_outlasts_a_job_that_exits_at_once() {
    let drain = Duration::from_millis(1500);
    let double = DoubleLaunchd::start(drain.as_millis() as u64).await;
    let lc = double.launchctl();
    let mut job = JobPlist::new("test.quick", &["/bin/sleep", "600"]);
    job.run_at_load = true;
    let plist = job.write(&double.state_dir);
    let target = "system/test.quick";
    lc.bootstrap("system", &plist).await.unwrap();
    let pid = print_until(&lc, target, "running", ServiceInfo::is_running)
        .await
        .pid
        .unwrap();

    let booted_out = Instant::now();
    lc.bootout(target).await.unwrap();
    let retry = lc.bootstrap("system", &plist).await;
    // Only meaningful if the machine was quick enough to ask within the window.
    if booted_out.elapsed() < drain {
        let err = retry.expect_err("bootstrap inside the drain window fails");
        assert!(err.is_transient(), "{err}");
        await_gone(pid).await;
        eventually(
            "unloaded",
            async || lc.print(target).await.unwrap(),
            |o| *o == PrintOutcome::NotLoaded,
        )
        .await;
        lc.bootstrap("system", &plist).await.unwrap();
    }
    assert!(
        print_until(&lc, target, "running", ServiceInfo::is_running)
            .await
            .runs
            == Some(1)
    );
}

/// Bootout sends SIGTERM; a job that ignores it is sent SIGKILL once its ExitTimeOut has
/// passed, not before (Homebrew/brew Library/Homebrew/services/cli.rb; launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html; launchd.plist(5) ExitTimeOut).
#[tokio::test]
async fn a_job_that_ignores_sigterm_is_killed_after_its_exit_timeout() {
    // A drain window far beyond the exit timeout: the booted-out job can still be printed
    // after its process died, with how it ended.
    let double = DoubleLaunchd::start(60_000).await;
    let lc = double.launchctl();
    let dir = &double.state_dir;
    let up = dir.join("up");
    let termed = dir.join("termed");
    let mut job = JobPlist::new(
        "test.stubborn",
        &[
            "/bin/sh",
            "-c",
            "trap 'echo term > \"$2\"' TERM; echo up > \"$1\"; while :; do sleep 0.1; done",
            "sh",
            &up.to_string_lossy(),
            &termed.to_string_lossy(),
        ],
    );
    job.run_at_load = true;
    job.exit_timeout = Some(1);
    lc.bootstrap("system", &job.write(dir)).await.unwrap();
    read_file_when_present(&up).await;
    let target = "system/test.stubborn";
    let pid = info(&lc, target).await.pid.unwrap();

    let asked = Instant::now();
    lc.bootout(target).await.unwrap();
    let ended = print_until(&lc, target, "the process ended", |i| {
        i.pid.is_none() && i.last_exit != LastExit::Never
    })
    .await;
    let took = asked.elapsed();
    assert_eq!(
        read_file_when_present(&termed).await.trim(),
        "term",
        "SIGTERM came first"
    );
    assert!(
        took >= Duration::from_secs(1),
        "killed only once its exit timeout of 1 s had passed, not after {took:?}"
    );
    assert_eq!(
        ended.last_exit,
        LastExit::Signal(9),
        "it died of SIGKILL: {ended:?}"
    );
    await_gone(pid).await;
}

#[tokio::test]
async fn a_disabled_service_cannot_be_bootstrapped_until_enabled() {
    let mut double = DoubleLaunchd::start(200).await;
    let lc = double.launchctl();
    let mut job = JobPlist::new("test.disabled", &["/bin/sleep", "600"]);
    job.run_at_load = true;
    let plist = job.write(&double.state_dir);
    let target = "system/test.disabled";

    lc.disable(target).await.unwrap();
    let err = lc.bootstrap("system", &plist).await.unwrap_err();
    if is_root() {
        assert!(err.is_disabled(), "{err}");
        assert_eq!(
            err.stderr,
            format!(
                "{}: Service is disabled\nBootstrap failed: 119: Service is disabled",
                plist.display()
            )
        );
    } else {
        // Non-root sees only 5 (launchctl exit statuses as captured in DeterminateSystems/nix-installer#530, openclaw/openclaw#80384 and ProcursusTeam/launchctl xpc_private.h).
        assert_eq!(err.code, Some(5), "{err}");
    }
    let expected = BTreeMap::from([("test.disabled".to_string(), true)]);
    assert_eq!(lc.print_disabled("system").await.unwrap(), expected);
    let raw = double.run(&["print-disabled", "system"]).await.stdout;
    assert_eq!(
        raw,
        "disabled services = {\n\t\"test.disabled\" => disabled\n}\n"
    );

    // The override survives a restart of launchd.
    double.restart().await;
    assert!(lc.bootstrap("system", &plist).await.is_err());

    double
        .admin(&["x-config", "disabled-vocabulary", "legacy"])
        .await;
    assert_eq!(lc.print_disabled("system").await.unwrap(), expected);
    lc.enable(target).await.unwrap();
    let raw = double.run(&["print-disabled", "system"]).await.stdout;
    assert_eq!(
        raw,
        "disabled services = {\n\t\"test.disabled\" => false\n}\n"
    );
    let enabled = BTreeMap::from([("test.disabled".to_string(), false)]);
    assert_eq!(lc.print_disabled("system").await.unwrap(), enabled);
    double
        .admin(&["x-config", "disabled-vocabulary", "modern"])
        .await;
    assert_eq!(lc.print_disabled("system").await.unwrap(), enabled);

    lc.bootstrap("system", &plist).await.unwrap();
    print_until(&lc, target, "running", ServiceInfo::is_running).await;
}

#[tokio::test]
async fn a_gui_domain_exists_only_while_its_user_is_logged_in() {
    let double = DoubleLaunchd::start(100).await;
    let lc = double.launchctl();
    let mut job = JobPlist::new("test.agent", &["/bin/sleep", "600"]);
    job.run_at_load = true;
    let plist = job.write(&double.state_dir);
    let target = "gui/501/test.agent";

    // Current macOS answers 125 (lidge-jun/opencodex#1770); older captures show 112.
    match lc.print(target).await.unwrap() {
        PrintOutcome::NoDomain { code, stderr } => {
            assert_eq!(
                (code, stderr.as_str()),
                (125, "Domain does not support specified action")
            );
        }
        other => panic!("{other:?}"),
    }
    double
        .admin(&["x-config", "missing-domain-code", "112"])
        .await;
    match lc.print(target).await.unwrap() {
        PrintOutcome::NoDomain { code, stderr } => {
            assert_eq!(
                (code, stderr.as_str()),
                (112, "Could not find domain for user gui: 501")
            );
        }
        other => panic!("{other:?}"),
    }
    let err = lc.bootstrap("gui/501", &plist).await.unwrap_err();
    assert!(err.is_no_domain(), "{err}");
    assert_eq!(err.code, Some(125));
    assert_eq!(
        err.stderr,
        "Bootstrap failed: 125: Domain does not support specified action"
    );

    double.login(501).await;
    assert_eq!(lc.print(target).await.unwrap(), PrintOutcome::NotLoaded);
    let raw = double.run(&["print", target]).await;
    assert_eq!(
        (raw.code, raw.stderr.as_str()),
        (
            113,
            "Bad request.\nCould not find service \"test.agent\" in domain for user gui: 501\n"
        )
    );
    lc.bootstrap("gui/501", &plist).await.unwrap();
    let agent = print_until(&lc, target, "running", ServiceInfo::is_running).await;
    assert_eq!(agent.domain.as_deref(), Some("gui/501"));

    double.logout(501).await;
    assert!(matches!(
        lc.print(target).await.unwrap(),
        PrintOutcome::NoDomain { code: 112, .. }
    ));
    let err = lc.bootout(target).await.unwrap_err();
    assert!(err.is_no_domain() && err.code == Some(125), "{err}");
    await_gone(agent.pid.unwrap()).await;
}

#[tokio::test]
async fn not_loaded_services_and_bad_arguments() {
    let double = DoubleLaunchd::start(100).await;
    let lc = double.launchctl();

    // bootout of what is not loaded is done (Homebrew/brew Library/Homebrew/services/cli.rb; launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html), though launchctl says 3.
    lc.bootout("system/test.nothing").await.unwrap();
    let raw = double.run(&["bootout", "system/test.nothing"]).await;
    assert_eq!(
        (raw.code, raw.stderr.as_str()),
        (3, "Boot-out failed: 3: No such process\n")
    );

    let err = lc
        .kickstart("system/test.nothing", false)
        .await
        .unwrap_err();
    assert!(err.is_not_loaded(), "{err}");
    assert_eq!(
        err.stderr,
        "Could not find service \"test.nothing\" in domain for system"
    );
    assert!(
        err.to_string()
            .contains("kickstart -p system/test.nothing` exited with 113"),
        "{err}"
    );
    let err = lc.kill("SIGTERM", "system/test.nothing").await.unwrap_err();
    assert!(err.is_not_loaded(), "{err}");

    let raw = double
        .run(&["bootstrap", "system", "/nonexistent/x.plist"])
        .await;
    assert_eq!(
        (raw.code, raw.stderr.as_str()),
        (
            2,
            "/nonexistent/x.plist: No such file or directory\nBootstrap failed: 2: No such file or directory\n"
        )
    );
    let raw = double.run(&["unbootstrap", "system"]).await;
    assert_eq!(raw.code, 1);
    assert!(
        raw.stderr
            .starts_with("Unrecognized subcommand: unbootstrap\n"),
        "{}",
        raw.stderr
    );
    let raw = double.run(&["bootout", "nowhere/x"]).await;
    assert_eq!(raw.code, 64);
    assert!(
        raw.stderr
            .starts_with("Unrecognized target specifier.\nUsage: launchctl bootout"),
        "{}",
        raw.stderr
    );
    let err = lc.print("com.no.domain").await.unwrap_err();
    assert_eq!(err.code, Some(64), "{err}");
}

#[tokio::test]
async fn a_hung_launchctl_is_killed_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child.pid");
    let script = dir.path().join("launchctl");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nsleep 600 &\necho $! > '{}'\necho hanging >&2\nwait\n",
            pid_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let lc = Launchctl::new(&script).with_timeout(Duration::from_secs(1));
    let err = lc.print("system/test.any").await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(matches!(err.failure, Failure::TimedOut(d) if d == Duration::from_secs(1)));
    assert_eq!(err.code, None);
    assert_eq!(
        err.argv,
        vec![
            script.to_string_lossy().into_owned(),
            "print".into(),
            "system/test.any".into()
        ]
    );
    assert_eq!(err.stderr, "hanging");
    assert!(
        err.to_string()
            .contains("did not finish within 1s and was killed"),
        "{err}"
    );
    // Its whole process group went with it.
    let grandchild: u32 = read_file_when_present(&pid_file)
        .await
        .trim()
        .parse()
        .unwrap();
    await_gone(grandchild).await;
}

#[tokio::test]
async fn a_missing_launchctl_is_an_error_without_a_code() {
    let err = Launchctl::new("/nonexistent/launchctl")
        .print("system/x")
        .await
        .unwrap_err();
    assert!(
        matches!(err.failure, Failure::Io(_)) && err.code.is_none(),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("cannot run `/nonexistent/launchctl print system/x`"),
        "{err}"
    );
}

#[tokio::test]
async fn stopping_the_double_stops_its_jobs() {
    let mut double = DoubleLaunchd::start(100).await;
    let lc = double.launchctl();
    let mut job = JobPlist::new("test.left", &["/bin/sleep", "600"]);
    job.keep_alive = true;
    lc.bootstrap("system", &job.write(&double.state_dir))
        .await
        .unwrap();
    let pid = print_until(&lc, "system/test.left", "running", ServiceInfo::is_running)
        .await
        .pid
        .unwrap();
    double.stop();
    assert!(is_gone(pid), "the double reaps its jobs before it exits");
}

#[test]
fn gui_console_resolves_to_the_owner_of_the_console_device() {
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console");
    std::fs::write(&console, "").unwrap();
    let me = nix::unistd::geteuid().as_raw();
    let user = if is_root() {
        nix::unistd::chown(&console, Some(501.into()), Some(20.into())).unwrap();
        501
    } else {
        me
    };
    let resolved = domain_target(&Domain::GuiConsole, &ConsoleUser::new(&console)).unwrap();
    assert_eq!(resolved, format!("gui/{user}"));
    assert_eq!(
        service_target(&resolved, "ai.openclaw.gateway"),
        format!("gui/{user}/ai.openclaw.gateway")
    );

    // Root at the console is the login window: nobody to act for (launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html; chilcote/outset#108).
    let root_owned = if is_root() {
        nix::unistd::chown(&console, Some(0.into()), Some(0.into())).unwrap();
        console.clone()
    } else {
        "/".into()
    };
    let err = domain_target(&Domain::GuiConsole, &ConsoleUser::new(root_owned)).unwrap_err();
    assert!(
        matches!(err, NoConsoleUser::LoginWindow { uid: 0, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("nobody is logged in at the console"),
        "{err}"
    );
    assert_eq!(
        domain_target(&Domain::System, &ConsoleUser::default()).unwrap(),
        "system"
    );
}

// ---------------------------------------------------------------------------------------------
// Where the double fails as launchd fails (tests/doubles/launchctl.rs names the sources).

/// A job that appends `word` to `out` and exits 0.
fn writer(label: &str, out: &Path, word: &str) -> JobPlist {
    JobPlist::new(
        label,
        &[
            "/bin/sh",
            "-c",
            "echo \"$1\" >> \"$2\"",
            "sh",
            word,
            &out.to_string_lossy(),
        ],
    )
}

#[tokio::test]
async fn the_loaded_definition_stays_until_bootout_and_bootstrap() {
    let double = DoubleLaunchd::start(100).await;
    let lc = double.launchctl();
    let out = double.state_dir.join("out");
    let plist = writer("test.defn", &out, "old").write(&double.state_dir);
    let target = "system/test.defn";
    lc.bootstrap("system", &plist).await.unwrap();

    // The file now says something else; launchd still holds what it read at bootstrap.
    writer("test.defn", &out, "new").write(&double.state_dir);
    let loaded = info(&lc, target).await;
    assert_eq!(loaded.arguments[4], "old", "{loaded:?}");
    lc.kickstart(target, false).await.unwrap();
    let after = print_until(&lc, target, "exited", |i| i.last_exit == LastExit::Code(0)).await;
    assert_eq!(after.runs, Some(1));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "old\n");

    // Even with the plist gone, the definition stays loaded and runs.
    std::fs::remove_file(&plist).unwrap();
    lc.kickstart(target, false).await.unwrap();
    print_until(&lc, target, "ran twice", |i| {
        i.runs == Some(2) && i.last_exit == LastExit::Code(0)
    })
    .await;
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "old\nold\n");

    // bootout, wait until it is gone, bootstrap the new file: now it runs the new one.
    let plist = writer("test.defn", &out, "new").write(&double.state_dir);
    lc.bootout(target).await.unwrap();
    eventually(
        "unloaded",
        async || lc.print(target).await.unwrap(),
        |o| *o == PrintOutcome::NotLoaded,
    )
    .await;
    lc.bootstrap("system", &plist).await.unwrap();
    assert_eq!(info(&lc, target).await.arguments[4], "new");
    lc.kickstart(target, false).await.unwrap();
    print_until(&lc, target, "exited", |i| i.last_exit == LastExit::Code(0)).await;
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "old\nold\nnew\n");
}

#[tokio::test]
async fn a_program_launchd_cannot_spawn_shows_spawn_failed_and_78() {
    let double = DoubleLaunchd::start(100).await;
    let lc = double.launchctl();
    // Missing, with KeepAlive: launchd tries again every ThrottleInterval.
    let mut job = JobPlist::new("test.missing", &["/nonexistent/bin/node", "x.js"]);
    job.keep_alive = true;
    job.throttle_interval = Some(1);
    let plist = job.write(&double.state_dir);
    lc.bootstrap("system", &plist).await.unwrap();
    let target = "system/test.missing";
    let failed = print_until(&lc, target, "spawn failed twice", |i| {
        i.spawn_failed() && i.runs >= Some(2)
    })
    .await;
    assert_eq!(failed.last_exit, LastExit::Code(78));
    assert_eq!(failed.pid, None);
    assert_eq!(failed.state, JobState::SpawnScheduled);
    assert_eq!(failed.program_path(), Some("/nonexistent/bin/node"));
    let raw = double.run(&["print", target]).await;
    assert!(
        raw.stdout.contains("\tlast exit code = 78: EX_CONFIG\n")
            && raw.stdout.contains("\tjob state = spawn failed\n"),
        "{}",
        raw.stdout
    );

    // An existing program launchd refuses (quarantined): the same, and no relaunch without
    // KeepAlive.
    double.admin(&["x-quarantine", "/bin/sleep"]).await;
    let plist = JobPlist::new("test.quarantined", &["/bin/sleep", "600"]).write(&double.state_dir);
    lc.bootstrap("system", &plist).await.unwrap();
    let target = "system/test.quarantined";
    assert_eq!(lc.kickstart(target, false).await.unwrap(), None);
    let refused = info(&lc, target).await;
    assert!(refused.spawn_failed(), "{refused:?}");
    assert_eq!(refused.last_exit, LastExit::Code(78));
    assert_eq!(refused.state, JobState::NotRunning);
    assert_eq!(refused.runs, Some(1));
}

#[tokio::test]
async fn a_missing_log_directory_is_created_when_the_jobs_user_may() {
    let double = DoubleLaunchd::start(100).await;
    let lc = double.launchctl();
    let logs = double.state_dir.join("logs/deeper");
    let mut job = JobPlist::new("test.logs", &["/bin/sh", "-c", "echo hello"]);
    job.stdout = Some(logs.join("out.log"));
    job.stderr = Some(logs.join("out.log"));
    let plist = job.write(&double.state_dir);
    lc.bootstrap("system", &plist).await.unwrap();
    lc.kickstart("system/test.logs", false).await.unwrap();
    let done = print_until(&lc, "system/test.logs", "exited", |i| {
        i.last_exit != LastExit::Never
    })
    .await;
    assert_eq!(done.last_exit, LastExit::Code(0), "{done:?}");
    assert_eq!(
        read_file_when_present(&logs.join("out.log")).await,
        "hello\n"
    );

    // A job running as `nobody` under a parent it may not write to: spawn failed, 78.
    let locked = double.state_dir.join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut job = JobPlist::new("test.nolog", &["/bin/sh", "-c", "echo hello"]);
    job.stdout = Some(locked.join("sub/out.log"));
    job.user_name = Some("nobody".into());
    let plist = job.write(&double.state_dir);
    lc.bootstrap("system", &plist).await.unwrap();
    lc.kickstart("system/test.nolog", false).await.unwrap();
    let refused = info(&lc, "system/test.nolog").await;
    assert!(refused.spawn_failed(), "{refused:?}");
    assert_eq!(refused.last_exit, LastExit::Code(78));
    assert!(!locked.join("sub").exists());
}

#[tokio::test]
async fn keepalive_successful_exit_false_relaunches_failures_only() {
    let double = DoubleLaunchd::start(100).await;
    let lc = double.launchctl();
    let job = |label: &str, code: u8| {
        let mut j = JobPlist::new(label, &["/bin/sh", "-c", &format!("exit {code}")]);
        j.keep_alive_successful_exit = Some(false);
        j.throttle_interval = Some(1);
        j.write(&double.state_dir)
    };
    let (clean, failing) = (job("test.clean", 0), job("test.failing", 3));
    lc.bootstrap("system", &clean).await.unwrap();
    lc.bootstrap("system", &failing).await.unwrap();
    // Both started at load (KeepAlive implies RunAtLoad). Once the failing one has been
    // relaunched twice, the clean one, with the same throttle, would have been too.
    print_until(&lc, "system/test.failing", "relaunched", |i| {
        i.runs >= Some(3)
    })
    .await;
    let clean = info(&lc, "system/test.clean").await;
    assert_eq!(
        (clean.runs, clean.last_exit, clean.state.clone()),
        (Some(1), LastExit::Code(0), JobState::NotRunning),
        "{clean:?}"
    );
    assert!(
        clean.keepalive(),
        "a KeepAlive dictionary still shows as keepalive"
    );
}

#[tokio::test]
async fn a_bootout_of_a_running_job_can_answer_36_and_still_stop_it() {
    let double = DoubleLaunchd::start(100).await;
    let lc = double.launchctl();
    double
        .admin(&["x-config", "bootout-in-progress", "on"])
        .await;
    let mut job = JobPlist::new("test.slow", &["/bin/sleep", "600"]);
    job.run_at_load = true;
    let plist = job.write(&double.state_dir);
    lc.bootstrap("system", &plist).await.unwrap();
    let target = "system/test.slow";
    let pid = print_until(&lc, target, "running", ServiceInfo::is_running)
        .await
        .pid
        .unwrap();
    let out = double.run(&["bootout", target]).await;
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (36, "Boot-out failed: 36: Operation now in progress\n")
    );
    eventually(
        "unloaded",
        async || lc.print(target).await.unwrap(),
        |o| *o == PrintOutcome::NotLoaded,
    )
    .await;
    await_gone(pid).await;
}

/// What launchd does not relaunch: a KeepAlive job its owner disabled (OpenClaw disables its
/// job before it exits so that KeepAlive cannot respawn it), and one in its penalty box
/// (`x-penalty`), which a kickstart still starts. Against the baseline: an exit of an enabled
/// job leaves a relaunch pending (`spawn scheduled`) for its long ThrottleInterval.
#[tokio::test]
async fn a_disabled_or_penalized_keepalive_job_is_not_relaunched_but_kickstart_starts_it() {
    let double = DoubleLaunchd::start(200).await;
    let lc = double.launchctl();
    let mut job = JobPlist::new("test.parked", &["/bin/sleep", "600"]);
    job.keep_alive = true;
    job.throttle_interval = Some(600);
    lc.bootstrap("system", &job.write(&double.state_dir))
        .await
        .unwrap();
    let target = "system/test.parked";
    let down = |what: &'static str| {
        let lc = lc.clone();
        async move { print_until(&lc, target, what, |i| i.pid.is_none()).await }
    };

    print_until(&lc, target, "running", ServiceInfo::is_running).await;
    double.crash("test.parked", "SIGKILL").await;
    assert_eq!(down("exited").await.state, JobState::SpawnScheduled);
    lc.kickstart(target, false).await.unwrap();
    print_until(&lc, target, "running", ServiceInfo::is_running).await;

    // `disable` does not stop it; after its exit, nothing is scheduled.
    lc.disable(target).await.unwrap();
    let running = info(&lc, target).await;
    assert!(running.is_running(), "{running:?}");
    double.crash("test.parked", "SIGTERM").await;
    assert_eq!(down("parked").await.state, JobState::NotRunning);
    lc.enable(target).await.unwrap();
    lc.kickstart(target, false).await.unwrap();
    print_until(&lc, target, "running", ServiceInfo::is_running).await;

    double.admin(&["x-penalty", target, "on"]).await;
    double.crash("test.parked", "SIGKILL").await;
    let boxed = down("in the penalty box").await;
    assert_eq!(boxed.state, JobState::NotRunning);
    let runs = boxed.runs;
    let pid = lc.kickstart(target, false).await.unwrap();
    let again = print_until(&lc, target, "kickstarted", ServiceInfo::is_running).await;
    assert_eq!(again.pid, pid);
    assert_eq!(again.runs, runs.map(|r| r + 1));
    lc.bootout(target).await.unwrap();
}

/// One label loaded in gui/501 and in user/501 at once, two jobs (`brew services` from the
/// screen and over SSH); user/501 exists without a GUI login.
#[tokio::test]
async fn one_label_can_be_loaded_in_a_gui_and_a_user_domain_at_once() {
    let double = DoubleLaunchd::start(200).await;
    let lc = double.launchctl();
    let mut plist = JobPlist::new("test.twice", &["/bin/sleep", "600"]);
    plist.run_at_load = true;
    let path = plist.write(&double.state_dir);
    lc.bootstrap("user/501", &path).await.unwrap();
    let in_user = print_until(
        &lc,
        "user/501/test.twice",
        "running",
        ServiceInfo::is_running,
    )
    .await;
    assert_eq!(in_user.domain.as_deref(), Some("user/501"));
    assert_eq!(in_user.label.as_deref(), Some("test.twice"));
    double.login(501).await;
    lc.bootstrap("gui/501", &path).await.unwrap();
    let in_gui = print_until(
        &lc,
        "gui/501/test.twice",
        "running",
        ServiceInfo::is_running,
    )
    .await;
    assert_eq!(in_gui.domain.as_deref(), Some("gui/501"));
    assert_ne!(in_gui.pid, in_user.pid, "two copies");
    lc.bootout("user/501/test.twice").await.unwrap();
    lc.bootout("gui/501/test.twice").await.unwrap();
}
