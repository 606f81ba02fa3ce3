//! The process layer against real processes and real signals: environment, working directory,
//! session and group, identity, logs, exit reports, stopping, and reaping of grandchildren.
//!
//! Every test starts the orphan reaper, as the supervisor does, so this process is a child
//! subreaper on Linux. Children are only ever spawned through launchgraph (never
//! `std::process::Command`), since the reaper collects any other child. Tests wait for events
//! (exits, reaped orphans, a FIFO written by the unit) with generous deadlines and never
//! assert speed.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use launchgraph::process::{
    self, ReapedOrphan, SpawnCause, StopOutcome, UnitProcess, spawn_tracked, spawn_unit,
};
use launchgraph::unit::{CANONICAL_PATH, ExecSpec, Signal};
use nix::errno::Errno;
use nix::sys::signal::{self as nixsig, Signal as Sig};
use nix::unistd::Pid;
use tokio::sync::broadcast;
use tokio::time::timeout;

/// Far beyond anything these processes need, so a slow shared machine never fails a test.
const DEADLINE: Duration = Duration::from_secs(60);

fn setup() {
    process::start_reaper().expect("start the orphan reaper");
}

fn spec(command: &[&str]) -> ExecSpec {
    ExecSpec {
        command: command.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::new(),
        working_directory: "/".into(),
        user: None,
        group: None,
        stop_signal: Signal(Sig::SIGTERM),
        stop_timeout: Duration::from_secs(10),
        stdout: None,
        stderr: None,
        log_max_bytes: 10 << 20,
        log_keep: 3,
    }
}

fn sh(script: &str, args: &[&str]) -> ExecSpec {
    let mut argv = vec!["/bin/sh", "-c", script, "sh"];
    argv.extend_from_slice(args);
    spec(&argv)
}

async fn spawn(spec: &ExecSpec) -> UnitProcess {
    spawn_unit(spec, "test-unit")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn wait(p: &mut UnitProcess) -> process::ExitReport {
    timeout(DEADLINE, p.wait())
        .await
        .expect("the process exits in time")
}

async fn run_to_logs(spec: &ExecSpec) -> process::ExitReport {
    let mut p = spawn(spec).await;
    let exit = wait(&mut p).await;
    timeout(DEADLINE, p.logs_closed())
        .await
        .expect("the logs close");
    exit
}

/// A FIFO a unit writes one message into; reading it is the event "the unit got this far".
struct Fifo(PathBuf);

impl Fifo {
    fn new(dir: &Path) -> Self {
        let path = dir.join("fifo");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
        Fifo(path)
    }

    fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }

    /// The message, once the writer closed the FIFO. Blocking open and read, on a thread of
    /// its own so that a unit that never writes cannot hold up the runtime's shutdown.
    async fn read(&self) -> String {
        let path = self.0.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let _ = tx.send(fs::read_to_string(path));
        });
        timeout(DEADLINE, rx)
            .await
            .expect("the unit writes the FIFO")
            .unwrap()
            .unwrap()
    }
}

/// Waits until the reaper reports `pid`.
#[cfg(target_os = "linux")]
async fn reaped_pid(rx: &mut broadcast::Receiver<ReapedOrphan>, pid: u32) -> ReapedOrphan {
    timeout(DEADLINE, async {
        loop {
            match rx.recv().await {
                Ok(r) if r.pid == pid => return r,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("reaper channel: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("pid {pid} is reaped"))
}

fn group_exists(pgid: u32) -> bool {
    match nixsig::killpg(Pid::from_raw(pgid as i32), None) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(e) => panic!("killpg({pgid}, 0): {e}"),
    }
}

/// Waits until no process of the group remains. Killed members are reaped by the reaper, so
/// each reaped orphan is the event to look again; the short tick only guards against an
/// event missed to lag.
async fn group_gone(rx: &mut broadcast::Receiver<ReapedOrphan>, pgid: u32) {
    timeout(DEADLINE, async {
        while group_exists(pgid) {
            let _ = timeout(Duration::from_millis(50), rx.recv()).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("process group {pgid} disappears"));
}

/// `/proc/<pid>/stat`'s state and parent pid; `None` once the process is gone entirely.
#[cfg(target_os = "linux")]
fn proc_state(pid: u32) -> Option<(char, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = stat[stat.rfind(')')? + 1..].split_ascii_whitespace();
    let state = rest.next()?.chars().next()?;
    Some((state, rest.next()?.parse().ok()?))
}

fn env_lines(text: &str) -> BTreeSet<String> {
    text.lines().map(str::to_owned).collect()
}

// ----- environment and working directory --------------------------------------------------

#[tokio::test]
async fn the_environment_is_exactly_the_declared_one_plus_path() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env.out");
    let mut s = spec(&["/usr/bin/env"]);
    s.env.insert("GREETING".into(), "hello world".into());
    s.env.insert("EMPTY".into(), String::new());
    s.stdout = Some(out.clone());
    let exit = run_to_logs(&s).await;
    assert!(exit.success(), "{exit}");
    assert_eq!(
        env_lines(&fs::read_to_string(&out).unwrap()),
        env_lines(&format!(
            "EMPTY=\nGREETING=hello world\nPATH={CANONICAL_PATH}\n"
        )),
        "nothing of the test's own environment (HOME, CARGO_*, ...) may leak in"
    );

    // A PATH the unit declares wins.
    let out = dir.path().join("env2.out");
    s.env.insert("PATH".into(), "/bin".into());
    s.stdout = Some(out.clone());
    run_to_logs(&s).await;
    let text = fs::read_to_string(&out).unwrap();
    assert!(text.lines().any(|l| l == "PATH=/bin"), "{text}");
    assert!(!text.contains(CANONICAL_PATH), "{text}");
}

#[tokio::test]
async fn the_working_directory_is_honoured() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pwd.out");
    let mut s = spec(&["/bin/pwd"]);
    s.working_directory = dir.path().to_owned();
    s.stdout = Some(out.clone());
    run_to_logs(&s).await;
    assert_eq!(
        fs::read_to_string(&out).unwrap().trim_end(),
        dir.path().canonicalize().unwrap().to_str().unwrap()
    );
}

#[tokio::test]
async fn spawn_errors_name_the_unit_the_program_and_the_cause() {
    setup();
    let dir = tempfile::tempdir().unwrap();

    let mut s = spec(&["/bin/true"]);
    s.working_directory = dir.path().join("missing");
    let e = spawn_unit(&s, "web").await.unwrap_err();
    assert!(
        matches!(e.cause, SpawnCause::WorkingDirectoryMissing(_)),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("unit web") && msg.contains("/bin/true"),
        "{msg}"
    );
    assert!(
        msg.contains(dir.path().join("missing").to_str().unwrap()),
        "{msg}"
    );

    let missing = dir.path().join("no-such-program");
    let e = spawn_unit(&spec(&[missing.to_str().unwrap()]), "web")
        .await
        .unwrap_err();
    assert!(matches!(e.cause, SpawnCause::ProgramNotFound), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("unit web") && msg.contains(missing.to_str().unwrap()),
        "{msg}"
    );

    let plain = dir.path().join("plain.txt");
    fs::write(&plain, "echo hi\n").unwrap();
    let e = spawn_unit(&spec(&[plain.to_str().unwrap()]), "web")
        .await
        .unwrap_err();
    assert!(matches!(e.cause, SpawnCause::NotExecutable(_)), "{e:?}");

    // The script exists, its interpreter does not: the case behind many "flaps after upgrade".
    let script = dir.path().join("script");
    fs::write(&script, "#!/nonexistent/node\n").unwrap();
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let e = spawn_unit(&spec(&[script.to_str().unwrap()]), "web")
        .await
        .unwrap_err();
    assert!(matches!(e.cause, SpawnCause::InterpreterNotFound), "{e:?}");
    assert!(e.to_string().contains("interpreter"), "{e}");
}

// ----- session, group and identity ----------------------------------------------------------

#[tokio::test]
async fn the_process_leads_its_own_session_and_group() {
    setup();
    let mut p = spawn(&spec(&["/bin/sleep", "1000"])).await;
    let pid = Pid::from_raw(p.pid() as i32);
    assert_eq!(p.pgid(), p.pid());
    assert_eq!(nix::unistd::getpgid(Some(pid)).unwrap(), pid);
    assert_eq!(nix::unistd::getsid(Some(pid)).unwrap(), pid);
    p.stop(Sig::SIGTERM, DEADLINE).await;
}

#[tokio::test]
async fn refusing_user_and_group_when_not_root() {
    let mut s = spec(&["/bin/true"]);
    s.user = Some("nobody".into());
    let e = process::plan_credentials(&s, "gateway", false).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("unit gateway")
            && msg.contains("`user = \"nobody\"` needs launchgraph to run as root"),
        "{msg}"
    );
    let mut s = spec(&["/bin/true"]);
    s.group = Some("staff".into());
    let msg = process::plan_credentials(&s, "gateway", false)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("`group = \"staff\"` needs launchgraph to run as root"),
        "{msg}"
    );
}

/// `Uid:`/`Gid:`/`Groups:` of a running process.
#[cfg(target_os = "linux")]
fn proc_ids(pid: u32) -> BTreeMap<String, String> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| matches!(*k, "Uid" | "Gid" | "Groups"))
        .map(|(k, v)| {
            (
                k.to_owned(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect()
}

#[cfg(target_os = "linux")]
fn nobody() -> (u32, u32) {
    let u = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody");
    (u.uid.as_raw(), u.gid.as_raw())
}

#[cfg(target_os = "linux")]
#[tokio::test]
#[ignore = "needs root"]
async fn root_dropping_to_a_user_by_name_sets_every_id_and_the_login_variables() {
    support::needs_root("switching users");
    setup();
    let (uid, gid) = nobody();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("logs/id.out");
    let mut s = sh("id -u; id -g; id -G; echo \"$HOME $USER $LOGNAME\"", &[]);
    s.user = Some("nobody".into());
    s.stdout = Some(out.clone());
    let exit = run_to_logs(&s).await;
    assert!(exit.success(), "{exit}");
    let home = nix::unistd::User::from_name("nobody").unwrap().unwrap().dir;
    assert_eq!(
        fs::read_to_string(&out).unwrap(),
        format!("{uid}\n{gid}\n{gid}\n{} nobody nobody\n", home.display())
    );
    // The log file launchgraph created belongs to the unit's user.
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(&out).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (uid, gid));

    // Real, effective, saved and filesystem ids, read from the kernel.
    let mut s = spec(&["/bin/sleep", "1000"]);
    s.user = Some("nobody".into());
    let mut p = spawn(&s).await;
    let ids = proc_ids(p.pid());
    assert_eq!(ids["Uid"], format!("{uid} {uid} {uid} {uid}"));
    assert_eq!(ids["Gid"], format!("{gid} {gid} {gid} {gid}"));
    assert_eq!(
        ids["Groups"],
        gid.to_string(),
        "root's groups must be dropped"
    );
    p.stop(Sig::SIGTERM, DEADLINE).await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
#[ignore = "needs root"]
async fn root_dropping_to_a_numeric_user_with_another_group() {
    support::needs_root("switching users");
    setup();
    let (uid, primary) = nobody();
    let group = nix::unistd::Group::from_name("daemon")
        .unwrap()
        .or_else(|| nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(1)).unwrap())
        .expect("a group with gid 1");
    let gid = group.gid.as_raw();
    assert_ne!(gid, primary);

    let mut s = spec(&["/bin/sleep", "1000"]);
    s.user = Some(uid.to_string());
    s.group = Some(group.name.clone());
    let creds = process::plan_credentials(&s, "t", true).unwrap().unwrap();
    assert_eq!((creds.uid, creds.gid, creds.groups[0]), (uid, gid, gid));

    let mut p = spawn(&s).await;
    let ids = proc_ids(p.pid());
    assert_eq!(ids["Uid"], format!("{uid} {uid} {uid} {uid}"));
    assert_eq!(ids["Gid"], format!("{gid} {gid} {gid} {gid}"));
    let groups: BTreeSet<u32> = ids["Groups"]
        .split(' ')
        .map(|g| g.parse().unwrap())
        .collect();
    let expected: BTreeSet<u32> = creds.groups.iter().copied().collect();
    assert_eq!(groups, expected);
    assert!(groups.contains(&gid));
    p.stop(Sig::SIGTERM, DEADLINE).await;
}

#[tokio::test]
#[ignore = "needs root"]
async fn root_unknown_users_and_groups_are_named() {
    support::needs_root("switching users");
    let mut s = spec(&["/bin/true"]);
    s.user = Some("no-such-user-lg".into());
    let msg = spawn_unit(&s, "web").await.unwrap_err().to_string();
    assert!(
        msg.contains("unit web") && msg.contains("user \"no-such-user-lg\" does not exist"),
        "{msg}"
    );
    let mut s = spec(&["/bin/true"]);
    s.user = Some("nobody".into());
    s.group = Some("no-such-group-lg".into());
    let msg = spawn_unit(&s, "web").await.unwrap_err().to_string();
    assert!(
        msg.contains("group \"no-such-group-lg\" does not exist"),
        "{msg}"
    );
}

// ----- exit reports ---------------------------------------------------------------------------

#[tokio::test]
async fn exit_codes_and_signals_are_reported() {
    setup();
    let mut p = spawn(&sh("exit 3", &[])).await;
    let exit = wait(&mut p).await;
    assert_eq!((exit.code, exit.signal), (Some(3), None));
    assert!(!exit.success());
    assert_eq!(
        p.try_exit(),
        Some(exit),
        "later reads return the same report"
    );

    let mut p = spawn(&spec(&["/bin/sleep", "1000"])).await;
    let exited = p.exited();
    nixsig::kill(Pid::from_raw(p.pid() as i32), Sig::SIGKILL).unwrap();
    let exit = timeout(DEADLINE, exited).await.unwrap();
    assert_eq!((exit.code, exit.signal), (None, Some(9)));
    assert_eq!(exit.to_string(), "killed by SIGKILL (signal 9)");
    assert_eq!(wait(&mut p).await, exit);
}

// ----- stopping -------------------------------------------------------------------------------

#[tokio::test]
async fn a_well_behaved_process_exits_on_the_stop_signal() {
    setup();
    let mut reaped = process::subscribe_reaped();
    let mut p = spawn(&spec(&["/bin/sleep", "1000"])).await;
    let report = p.stop(Sig::SIGTERM, DEADLINE).await;
    assert_eq!(report.outcome, StopOutcome::Exited);
    assert_eq!(report.exit.signal, Some(Sig::SIGTERM as i32));
    group_gone(&mut reaped, p.pgid()).await;

    let again = p.stop(Sig::SIGTERM, DEADLINE).await;
    assert_eq!(again.outcome, StopOutcome::AlreadyExited);
    assert_eq!(again.exit, report.exit);
}

#[tokio::test]
async fn a_process_ignoring_the_stop_signal_is_killed_after_the_timeout() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let fifo = Fifo::new(dir.path());
    let mut reaped = process::subscribe_reaped();
    // The ignored TERM is inherited by its child, so the whole group ignores it.
    let mut p = spawn(&sh(
        "trap '' TERM; /bin/sleep 1000 & echo ready > \"$1\"; wait",
        &[fifo.arg()],
    ))
    .await;
    assert_eq!(fifo.read().await, "ready\n");
    let report = p.stop(Sig::SIGTERM, Duration::from_millis(500)).await;
    assert_eq!(report.outcome, StopOutcome::Killed);
    assert_eq!(report.exit.signal, Some(Sig::SIGKILL as i32));
    group_gone(&mut reaped, p.pgid()).await;
}

/// The signals a process ignores, from the `SigIgn` mask of /proc/PID/status (proc_pid_status(5)).
/// A unit's own fork also resets 32 and 33, which the C library keeps for itself.
fn ignored_signals(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .expect("a SigIgn line");
    u64::from_str_radix(mask.trim(), 16).unwrap()
}

/// Started from a process that ignores SIGHUP and SIGINT (as under `nohup`, or in a shell's
/// background), a unit still ignores nothing: it would otherwise survive its stop signal.
#[tokio::test]
async fn a_unit_ignores_no_signal_whatever_its_parent_ignores() {
    setup();
    let ignore = nixsig::SigAction::new(
        nixsig::SigHandler::SigIgn,
        nixsig::SaFlags::empty(),
        nixsig::SigSet::empty(),
    );
    // SAFETY: sets and restores dispositions of signals this test binary does not handle.
    let (hup, int) = unsafe {
        (
            nixsig::sigaction(Sig::SIGHUP, &ignore).unwrap(),
            nixsig::sigaction(Sig::SIGINT, &ignore).unwrap(),
        )
    };
    let mut p = spawn(&spec(&["/bin/sleep", "1000"])).await;
    let ignored = ignored_signals(p.pid());
    // SAFETY: as above.
    unsafe {
        nixsig::sigaction(Sig::SIGHUP, &hup).unwrap();
        nixsig::sigaction(Sig::SIGINT, &int).unwrap();
    }
    assert_eq!(ignored, 0, "the unit ignores signals (mask {ignored:#x})");
    let report = p.stop(Sig::SIGINT, DEADLINE).await;
    assert_eq!(report.exit.signal, Some(Sig::SIGINT as i32));
}

#[tokio::test]
async fn stop_as_declared_uses_the_units_signal() {
    setup();
    let mut s = spec(&["/bin/sleep", "1000"]);
    s.stop_signal = Signal(Sig::SIGINT);
    let mut p = spawn(&s).await;
    let report = p.stop_as_declared().await;
    assert_eq!(report.outcome, StopOutcome::Exited);
    assert_eq!(report.exit.signal, Some(Sig::SIGINT as i32));
}

// ----- grandchildren --------------------------------------------------------------------------

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_grandchild_is_killed_with_its_group_and_reaped() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let fifo = Fifo::new(dir.path());
    let mut reaped = process::subscribe_reaped();
    let mut p = spawn(&sh(
        "/bin/sleep 1000 & echo $! > \"$1\"; exit 0",
        &[fifo.arg()],
    ))
    .await;
    let grandchild: u32 = fifo.read().await.trim().parse().unwrap();
    let exit = wait(&mut p).await;
    assert!(exit.success(), "{exit}");

    let r = reaped_pid(&mut reaped, grandchild).await;
    assert_eq!(r.signal, Some(Sig::SIGKILL as i32), "killed with its group");
    assert_eq!(proc_state(grandchild), None, "gone, not a zombie");
    assert_eq!(
        nix::sys::wait::waitpid(
            Pid::from_raw(grandchild as i32),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG)
        ),
        Err(Errno::ECHILD),
        "no longer a child of this process"
    );
    assert!(!group_exists(p.pgid()));
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_grandchild_that_escaped_its_group_is_still_reaped_when_orphaned() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let fifo = Fifo::new(dir.path());
    let mut reaped = process::subscribe_reaped();
    // setsid(1) in a background job (not a group leader) calls setsid() without forking, and
    // the inner shell execs sleep, so the pid it reports is the escaped process.
    let mut p = spawn(&sh(
        "/usr/bin/setsid /bin/sh -c 'echo $$ > \"$1\"; exec /bin/sleep 1000' sh \"$1\" & exec /bin/sleep 1000",
        &[fifo.arg()],
    ))
    .await;
    let escaped: u32 = fifo.read().await.trim().parse().unwrap();
    let escaped_pid = Pid::from_raw(escaped as i32);
    assert_eq!(nix::unistd::getsid(Some(escaped_pid)).unwrap(), escaped_pid);

    // It dies first, and stays a zombie: its parent (sleep) never waits. Neither the group
    // kill nor the unit's cgroup (which holds live processes only) reaches it.
    nixsig::kill(escaped_pid, Sig::SIGKILL).unwrap();
    timeout(DEADLINE, async {
        while proc_state(escaped) != Some(('Z', p.pid())) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the escaped grandchild becomes a zombie of the unit's process");

    // Its parent dies, so it now belongs to this process, the subreaper, which reaps it.
    p.stop(Sig::SIGTERM, DEADLINE).await;
    let r = reaped_pid(&mut reaped, escaped).await;
    assert_eq!(r.signal, Some(Sig::SIGKILL as i32));
    // No event says "gone from /proc" beyond the reap itself; look with a short interval.
    timeout(DEADLINE, async {
        while proc_state(escaped).is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the escaped grandchild leaves no zombie");
}

/// The cgroup v2 path of a process, from `/proc/PID/cgroup` (its `0::` line).
#[cfg(target_os = "linux")]
fn cgroup_of(pid: u32) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
}

/// As root, a unit's process is created in a cgroup of its own, which what it starts stays in
/// after `setsid`; when the unit is stopped, what escaped its group gets the stop signal too.
#[cfg(target_os = "linux")]
#[tokio::test]
#[ignore = "needs root"]
async fn root_what_escaped_its_group_stays_in_the_units_cgroup_and_is_stopped_with_it() {
    support::needs_root("creating cgroups");
    setup();
    let dir = tempfile::tempdir().unwrap();
    let fifo = Fifo::new(dir.path());
    let mut reaped = process::subscribe_reaped();
    // A name of its own: another test's run of `test-unit` may hold that unit's cgroup.
    let mut p = spawn_unit(
        &sh(
            "/usr/bin/setsid /bin/sh -c 'echo $$ > \"$1\"; exec /bin/sleep 1000' sh \"$1\" & exec /bin/sleep 1000",
            &[fifo.arg()],
        ),
        "escaper",
    )
    .await
    .unwrap();
    let escaped: u32 = fifo.read().await.trim().parse().unwrap();
    let escaped_pid = Pid::from_raw(escaped as i32);
    assert_eq!(nix::unistd::getsid(Some(escaped_pid)).unwrap(), escaped_pid);
    let unit_cgroup = cgroup_of(p.pid()).expect("the unit's process is in a cgroup v2");
    assert!(
        unit_cgroup.ends_with(&format!("/launchgraph.{}/escaper", std::process::id())),
        "{unit_cgroup}"
    );
    assert_eq!(cgroup_of(escaped), Some(unit_cgroup));

    let stopped = p.stop(Sig::SIGTERM, DEADLINE).await;
    assert_eq!(stopped.outcome, StopOutcome::Exited);
    // Killed by the stop signal, not by SIGKILL: stopped the way the unit is.
    let r = reaped_pid(&mut reaped, escaped).await;
    assert_eq!(r.signal, Some(Sig::SIGTERM as i32));
}

// ----- logs -----------------------------------------------------------------------------------

#[tokio::test]
async fn output_lands_in_the_log_files() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out.log"), dir.path().join("err.log"));
    fs::write(&out, "from before\n").unwrap();
    let mut s = sh("echo to-stdout; echo to-stderr >&2", &[]);
    s.stdout = Some(out.clone());
    s.stderr = Some(err.clone());
    run_to_logs(&s).await;
    assert_eq!(
        fs::read_to_string(&out).unwrap(),
        "from before\nto-stdout\n"
    );
    assert_eq!(fs::read_to_string(&err).unwrap(), "to-stderr\n");

    // An unset stream goes nowhere, and the other one still works.
    let only_err = dir.path().join("only-err.log");
    s.stdout = None;
    s.stderr = Some(only_err.clone());
    run_to_logs(&s).await;
    assert_eq!(fs::read_to_string(&only_err).unwrap(), "to-stderr\n");
}

#[tokio::test]
async fn both_streams_into_one_file_keep_their_order() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("both.log");
    let mut s = sh(
        "for i in 1 2 3 4 5; do echo out-$i; echo err-$i >&2; done",
        &[],
    );
    s.stdout = Some(log.clone());
    s.stderr = Some(log.clone());
    run_to_logs(&s).await;
    let expected: String = (1..=5).map(|i| format!("out-{i}\nerr-{i}\n")).collect();
    assert_eq!(fs::read_to_string(&log).unwrap(), expected);
}

#[tokio::test]
async fn logs_rotate_past_the_limit_and_keep_n_files() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("var/log/unit.log");
    // 100 lines of 10 bytes: 10 files' worth at 100 bytes each.
    let mut s = sh(
        "i=0; while [ $i -lt 100 ]; do printf '%09d\\n' $i; i=$((i+1)); done",
        &[],
    );
    s.stdout = Some(log.clone());
    s.log_max_bytes = 100;
    s.log_keep = 3;
    run_to_logs(&s).await;

    let numbered = |n: u32| PathBuf::from(format!("{}.{n}", log.display()));
    assert!(
        !numbered(4).exists(),
        "only log_keep rotated files are kept"
    );
    let mut all = String::new();
    for path in [numbered(3), numbered(2), numbered(1), log.clone()] {
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.len() <= 100,
            "{} has {} bytes",
            path.display(),
            text.len()
        );
        assert!(text.ends_with('\n'), "{} ends mid-line", path.display());
        all.push_str(&text);
    }
    // The newest lines survive, contiguous and in order.
    let lines: Vec<u32> = all.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(*lines.last().unwrap(), 99);
    let first = lines[0];
    assert_eq!(lines, (first..100).collect::<Vec<_>>());
    assert!(
        lines.len() >= 31,
        "at least 3 full rotated files plus the current one"
    );

    // log_keep = 0 truncates instead of rotating.
    let log0 = dir.path().join("zero.log");
    s.stdout = Some(log0.clone());
    s.log_keep = 0;
    run_to_logs(&s).await;
    let text = fs::read_to_string(&log0).unwrap();
    assert!(
        text.len() <= 100 && text.ends_with("000000099\n"),
        "{text:?}"
    );
    assert!(!PathBuf::from(format!("{}.1", log0.display())).exists());
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn logs_close_only_once_the_last_writer_is_gone() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("out.log");
    let fifo = Fifo::new(dir.path());
    // A child keeps stdout open after the unit's main process let go of it.
    let mut s = sh(
        "echo parent; /bin/sh -c 'echo child; echo $$ > \"$1\"; exec /bin/sleep 1000' sh \"$1\" & exec /bin/sleep 1000 >/dev/null",
        &[fifo.arg()],
    );
    s.stdout = Some(log.clone());
    let mut p = spawn(&s).await;
    let child: u32 = fifo.read().await.trim().parse().unwrap();
    // The main process runs on, stdout closed: only the child still writes.
    assert!(
        timeout(Duration::from_millis(200), p.logs_closed())
            .await
            .is_err(),
        "a writer is still alive"
    );
    nixsig::kill(Pid::from_raw(child as i32), Sig::SIGKILL).unwrap();
    timeout(DEADLINE, p.logs_closed())
        .await
        .expect("the logs close");
    assert!(p.try_exit().is_none(), "closed while the unit still runs");
    p.stop(Sig::SIGTERM, DEADLINE).await;
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(text, "parent\nchild\n");
}

// ----- the spawn_tracked contract and the reaper ----------------------------------------------

#[tokio::test]
async fn tracked_children_keep_their_exit_status_while_the_reaper_runs() {
    setup();
    assert_eq!(
        process::start_reaper().unwrap(),
        process::start_reaper().unwrap()
    );
    // Many short-lived children spawned while orphans are being reaped: every waiter must get
    // its own status, never ECHILD.
    let mut children = Vec::new();
    for i in 0..40 {
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.args(["-c", &format!("/bin/true & exit {}", i % 7)]);
        cmd.stdout(std::process::Stdio::null());
        let child = spawn_tracked(&mut cmd).unwrap();
        assert!(process::is_tracked(child.pid()));
        children.push((i % 7, child));
    }
    for (code, mut child) in children {
        let pid = child.pid();
        let status = timeout(DEADLINE, child.wait()).await.unwrap().unwrap();
        assert_eq!(status.code(), Some(code));
        assert!(!process::is_tracked(pid));
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_dropped_tracked_child_with_kill_on_drop_is_killed_and_reaped() {
    setup();
    let mut cmd = tokio::process::Command::new("/bin/sleep");
    cmd.arg("1000").kill_on_drop(true);
    let pid = spawn_tracked(&mut cmd).unwrap().pid();
    // tokio kills and reaps it in the background; there is no event to await but /proc.
    timeout(DEADLINE, async {
        while proc_state(pid).is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the dropped child is killed and reaped");
}

// ----- bounded helpers ------------------------------------------------------------------------

use launchgraph::process::{BoundedCommand, BoundedError, Capture};

fn bounded_sh(script: &str, deadline: Duration) -> BoundedCommand {
    BoundedCommand::new("/bin/sh", deadline)
        .args(["-c", script, "sh"])
        .env("PATH", CANONICAL_PATH)
}

#[tokio::test]
async fn a_bounded_helper_reports_exit_code_and_output() {
    setup();
    let out = bounded_sh("echo out; echo err >&2; exit 4", DEADLINE)
        .stdout(Capture::Head(1024))
        .stderr(Capture::Head(1024))
        .run()
        .await
        .unwrap();
    assert_eq!(
        (out.code(), out.signal(), out.timed_out),
        (Some(4), None, false)
    );
    assert_eq!(
        (&out.stdout[..], &out.stderr[..]),
        (&b"out\n"[..], &b"err\n"[..])
    );
    assert!(!out.stdout_truncated && !out.stderr_truncated && !out.output_cut_short);
}

#[tokio::test]
async fn a_bounded_helper_gets_exactly_the_given_environment() {
    setup();
    assert!(
        std::env::vars_os().any(|(k, _)| k != "A"),
        "this test process has variables of its own that must not be inherited"
    );
    let out = BoundedCommand::new("/usr/bin/env", DEADLINE)
        .env("A", "1")
        .env("PATH", "/nowhere")
        .current_dir("/")
        .stdout(Capture::Head(64 * 1024))
        .run()
        .await
        .unwrap();
    assert_eq!(out.code(), Some(0));
    assert_eq!(
        env_lines(&String::from_utf8_lossy(&out.stdout)),
        BTreeSet::from(["A=1".to_owned(), "PATH=/nowhere".to_owned()])
    );
}

#[tokio::test]
async fn bounded_output_is_capped_without_blocking_the_helper() {
    setup();
    // 4 MiB on each stream: far more than a pipe buffer, so the helper only exits (with 0)
    // if both pipes are read to the end while it runs.
    let out = bounded_sh(
        "/usr/bin/head -c 4194304 /dev/zero; /usr/bin/head -c 4194304 /dev/zero >&2; printf end >&2",
        DEADLINE,
    )
    .stdout(Capture::Head(1000))
    .stderr(Capture::Tail(10))
    .run()
    .await
    .unwrap();
    assert_eq!(out.code(), Some(0));
    assert_eq!(out.stdout, vec![0u8; 1000]);
    assert!(out.stdout_truncated);
    assert_eq!(&out.stderr[..], b"\0\0\0\0\0\0\0end");
    assert!(out.stderr_truncated);
}

#[tokio::test]
async fn a_deadline_kills_the_whole_group_grandchildren_too() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let fifo = Fifo::new(dir.path());
    let mut reaped = process::subscribe_reaped();
    let helper = bounded_sh(
        "/bin/sleep 1000 & echo $$ $! > \"$1\"; echo partial >&2; wait",
        Duration::from_secs(2),
    )
    .arg(fifo.arg())
    .stderr(Capture::Head(1024));
    let (out, ids) = tokio::join!(timeout(DEADLINE, helper.run()), fifo.read());
    let out = out.expect("the deadline ends the run").unwrap();
    assert!(out.timed_out);
    assert_eq!(out.signal(), Some(Sig::SIGKILL as i32));
    assert_eq!(&out.stderr[..], b"partial\n");
    let (pgid, grandchild) = ids.trim().split_once(' ').unwrap();
    let grandchild: u32 = grandchild.parse().unwrap();
    #[cfg(target_os = "linux")]
    assert_eq!(
        reaped_pid(&mut reaped, grandchild).await.signal,
        Some(Sig::SIGKILL as i32)
    );
    #[cfg(not(target_os = "linux"))]
    let _ = grandchild;
    group_gone(&mut reaped, pgid.parse().unwrap()).await;
}

#[tokio::test]
async fn what_a_helper_leaves_behind_is_killed_when_it_exits() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let fifo = Fifo::new(dir.path());
    let mut reaped = process::subscribe_reaped();
    let helper = bounded_sh(
        "/bin/sleep 1000 >/dev/null 2>&1 & echo $$ > \"$1\"; exit 0",
        DEADLINE,
    )
    .arg(fifo.arg());
    let (out, pgid) = tokio::join!(helper.run(), fifo.read());
    let out = out.unwrap();
    assert_eq!((out.code(), out.timed_out), (Some(0), false));
    group_gone(&mut reaped, pgid.trim().parse().unwrap()).await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn output_held_open_outside_the_group_is_cut_short_after_the_grace() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("escaped.pid");
    let mut reaped = process::subscribe_reaped();
    // setsid(1) in a background job calls setsid() without forking: the sleep leaves the
    // group (the kill at the exit misses it) and keeps stdout open. The helper exits only
    // once it has left, so the kill cannot catch it before.
    let helper = bounded_sh(
        "/usr/bin/setsid /bin/sh -c 'echo $$ > \"$1.tmp\"; mv \"$1.tmp\" \"$1\"; exec /bin/sleep 1000' sh \"$1\" &
         while [ ! -s \"$1\" ]; do /bin/sleep 0.01; done; echo done",
        DEADLINE,
    )
    .arg(&pid_file)
    .stdout(Capture::Head(1024))
    .output_grace(Duration::from_millis(500));
    let out = timeout(DEADLINE, helper.run())
        .await
        .expect("the grace bounds the wait for output")
        .unwrap();
    let escaped: u32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nixsig::kill(Pid::from_raw(escaped as i32), Sig::SIGKILL).unwrap();
    assert_eq!((out.code(), out.timed_out), (Some(0), false));
    assert_eq!(&out.stdout[..], b"done\n");
    assert!(out.output_cut_short && !out.stdout_truncated);
    reaped_pid(&mut reaped, escaped).await;
}

#[tokio::test]
async fn dropping_a_bounded_run_kills_its_group() {
    setup();
    let dir = tempfile::tempdir().unwrap();
    let fifo = Fifo::new(dir.path());
    let mut reaped = process::subscribe_reaped();
    let helper = bounded_sh("/bin/sleep 1000 & echo $$ > \"$1\"; wait", DEADLINE).arg(fifo.arg());
    let pgid: u32 = tokio::select! {
        _ = helper.run() => panic!("the helper runs until the run is dropped"),
        pgid = fifo.read() => pgid.trim().parse().unwrap(),
    };
    // The run's future is dropped here, half way.
    group_gone(&mut reaped, pgid).await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn waiting_for_a_helper_that_survives_the_kill_is_bounded() {
    setup();
    // The helper moves itself into this test's process group, so the kill of its own group
    // at the deadline misses it, as it misses a process stuck in uninterruptible sleep.
    let helper = BoundedCommand::new("/usr/bin/perl", Duration::from_secs(1))
        .args(["-e", "setpgrp(0, getpgrp(getppid())) or die $!; sleep 1000"])
        .reap_bound(Duration::from_secs(1));
    let err = timeout(DEADLINE, helper.run())
        .await
        .expect("the wait after the kill is bounded")
        .unwrap_err();
    let BoundedError::NotReaped { pid, waited, .. } = err else {
        panic!("{err}");
    };
    assert_eq!(waited, Duration::from_secs(1));
    // Given up on, the helper itself is still killed (tokio's kill on drop) and reaped.
    timeout(DEADLINE, async {
        while proc_state(pid).is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the helper given up on is killed and reaped");
}

#[cfg(target_os = "linux")]
#[tokio::test]
#[ignore = "needs root"]
async fn root_a_bounded_helper_runs_as_the_given_user() {
    setup();
    support::needs_root("switching users");
    let (uid, gid) = nobody();
    let creds = process::job_credentials(uid, Some(gid)).unwrap();
    let out = bounded_sh("/usr/bin/id -u; /usr/bin/id -g", DEADLINE)
        .credentials(Some(creds))
        .stdout(Capture::Head(1024))
        .run()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{uid}\n{gid}\n")
    );
}

#[tokio::test]
async fn a_helper_that_cannot_start_is_an_error_naming_the_program() {
    setup();
    let err = BoundedCommand::new("/nonexistent/helper", DEADLINE)
        .run()
        .await
        .unwrap_err();
    assert!(matches!(err, BoundedError::Spawn { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("cannot start /nonexistent/helper"),
        "{err}"
    );
}

/// A descriptor launchgraph inherited without close-on-exec (from the shell that started it,
/// say, holding a file only root may read) never reaches a unit or a helper: they see 0, 1
/// and 2 and nothing else, whoever they run as.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn units_and_helpers_inherit_no_descriptor_beyond_the_standard_three() {
    use std::os::fd::AsRawFd;
    setup();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    fs::write(&secret, "root only").unwrap();
    let file = fs::File::open(&secret).unwrap();
    // dup2's copy has no close-on-exec, like a descriptor inherited across an exec.
    const LEAKED: i32 = 93;
    // SAFETY: dup2 onto a number this test alone uses; closed below.
    assert_eq!(unsafe { libc::dup2(file.as_raw_fd(), LEAKED) }, LEAKED);

    // The shell's own descriptors (`$$`, listed by a forked `ls`).
    let script = "ls /proc/$$/fd; :";
    let out = dir.path().join("fds");
    let mut unit = sh(script, &[]);
    unit.stdout = Some(out.clone());
    // A unit is protected in its own child: the descriptor is still inheritable here.
    let exit = run_to_logs(&unit).await;
    // A helper is protected by what the daemon does once at start, for what it inherited.
    process::mark_inherited_close_on_exec();
    let helper = process::BoundedCommand::new("/bin/sh", DEADLINE)
        .args(["-c", script])
        .stdout(process::Capture::Head(4096))
        .run()
        .await;
    // SAFETY: the descriptor dup2 made above.
    unsafe { libc::close(LEAKED) };

    assert_eq!(exit.code, Some(0), "{exit:?}");
    let seen = fs::read_to_string(&out).unwrap();
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        ["0", "1", "2"],
        "the unit's"
    );
    let helper = helper.unwrap();
    assert!(helper.status.success(), "{helper:?}");
    let seen = String::from_utf8(helper.stdout).unwrap();
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        ["0", "1", "2"],
        "the helper's"
    );
}
