//! `ExitWatch`: the exit of a process launchgraph did not fork, seen from the kernel's
//! notification, with real processes. The tests take turns, each with a runtime of its own
//! made and dropped in its turn ([`in_turn`]), because one of them counts this process's open
//! descriptors.

// /proc, waitid(WNOWAIT) and pidfds: the behaviour on macOS (kqueue) is only type-checked.
#![cfg(target_os = "linux")]

use std::sync::Mutex;
use std::time::Duration;

use launchgraph::process::{ExitWatch, exited, start_ticks};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;

/// A deadline no exit should come near; reaching it fails the test.
const DEADLINE: Duration = Duration::from_secs(20);

/// Runs `test` on a runtime of its own once no other test of this file runs.
fn in_turn(test: impl Future<Output = ()>) {
    static TURN: Mutex<()> = Mutex::new(());
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(test);
}

/// A `sleep` that is not this process's child: `sh` starts it in the background, prints its
/// pid and exits, so it is reparented (to init, or the nearest subreaper) like a launchd
/// job's process or a previous daemon's leftover.
fn orphan() -> u32 {
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", "sleep 600 >/dev/null 2>&1 & echo $!"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn sigkill(pid: u32) {
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn the_exit_of_a_process_we_did_not_fork_is_seen() {
    in_turn(async {
        let pid = orphan();
        let start = start_ticks(pid);
        assert!(start.is_some());
        let watch = ExitWatch::new(pid, start);
        assert!(!watch.was_gone());
        // Still running: the watch does not end on its own.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), watch.exited())
                .await
                .is_err()
        );
        sigkill(pid);
        tokio::time::timeout(DEADLINE, watch.exited())
            .await
            .expect("the exit is announced");
    });
}

#[test]
fn a_pid_nobody_has_any_more_is_gone_at_once() {
    in_turn(async {
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let pid = child.id();
        let start = start_ticks(pid);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(ExitWatch::new(0, None).was_gone(), "pid 0 is never watched");
        // Reaped: no process has the pid (or, should it have been given out again already,
        // one with another start time).
        let watch = ExitWatch::new(pid, start);
        assert!(watch.was_gone(), "{watch:?}");
        tokio::time::timeout(DEADLINE, exited(pid, start))
            .await
            .expect("resolves at once");
    });
}

#[test]
fn a_zombie_has_exited() {
    in_turn(async {
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let pid = child.id();
        child.kill().unwrap();
        // Waits for the exit without collecting it: the process stays a zombie.
        waitid(
            Id::Pid(Pid::from_raw(pid as i32)),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
        )
        .unwrap();
        let watch = ExitWatch::new(pid, None);
        assert!(watch.was_gone(), "{watch:?}");
        child.wait().unwrap();
    });
}

#[test]
fn a_pid_with_another_start_time_is_not_the_process_meant() {
    in_turn(async {
        let pid = orphan();
        let start = start_ticks(pid).unwrap();
        let watch = ExitWatch::new(pid, Some(start.wrapping_add(1)));
        assert!(watch.was_gone(), "a reused pid is reported gone: {watch:?}");
        tokio::time::timeout(DEADLINE, watch.exited())
            .await
            .expect("resolves at once");
        // The process under the pid is untouched, and still runs.
        assert_eq!(start_ticks(pid), Some(start));
        sigkill(pid);
    });
}

#[test]
fn dropping_a_watch_closes_what_it_holds() {
    in_turn(async {
        let mut sleeper = std::process::Command::new("/bin/sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let pid = sleeper.id();
        let before = open_fds();
        let watches: Vec<_> = (0..8).map(|_| ExitWatch::new(pid, None)).collect();
        assert!(watches.iter().all(|w| !w.was_gone()));
        assert_eq!(open_fds(), before + 8, "one descriptor per watch");
        drop(watches);
        assert_eq!(open_fds(), before, "none left once dropped");

        // A watch that ended (the process exited) is given back too.
        let watch = ExitWatch::new(pid, None);
        assert_eq!(open_fds(), before + 1);
        sleeper.kill().unwrap();
        tokio::time::timeout(DEADLINE, watch.exited())
            .await
            .expect("the exit is announced");
        drop(watch);
        sleeper.wait().unwrap();
        assert_eq!(open_fds(), before);
    });
}
