//! `launchgraph adopt` and `release` against the launchctl test double: the plist's bytes,
//! mode and owner before and after, the backup, and the launchctl argv the double recorded.
//! Acting needs root (the binary refuses otherwise), so those tests are `root_*`; dry runs and
//! the errors that name a unit or a path run as anyone.

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use support::launchd::{DoubleLaunchd, JobPlist};
use support::{DEADLINE, needs_root};

/// A units directory, a state directory and a double, with one `[launchd]` unit per job.
struct Host {
    dir: tempfile::TempDir,
    double: DoubleLaunchd,
}

impl Host {
    async fn new() -> Self {
        Self::with_drain(0).await
    }

    /// A host whose bootouts drain for `drain_ms` before the label can be bootstrapped again.
    async fn with_drain(drain_ms: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Readable by a non-root caller, for the test that runs the binary as one.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(dir.path().join("units")).unwrap();
        fs::create_dir(dir.path().join("plists")).unwrap();
        Host {
            dir,
            double: DoubleLaunchd::start(drain_ms).await,
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn backup(&self, label: &str) -> PathBuf {
        self.state().join("adopted").join(format!("{label}.plist"))
    }

    /// Writes the job's plist and a `[launchd]` unit `name` for it; returns the plist path.
    fn job(&self, name: &str, job: &JobPlist) -> PathBuf {
        self.job_in(name, job, "system")
    }

    /// [`Host::job`] in another domain.
    fn job_in(&self, name: &str, job: &JobPlist, domain: &str) -> PathBuf {
        let plist = job.write(&self.dir.path().join("plists"));
        fs::write(
            self.dir.path().join("units").join(format!("{name}.toml")),
            format!(
                "[launchd]\nlabel = {:?}\nplist = {:?}\ndomain = {domain:?}\n",
                job.label,
                plist.display().to_string()
            ),
        )
        .unwrap();
        plist
    }

    fn exec_unit(&self, name: &str) {
        fs::write(
            self.dir.path().join("units").join(format!("{name}.toml")),
            "[exec]\ncommand = [\"/bin/sleep\", \"1000\"]\n",
        )
        .unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_launchgraph"));
        c.args(args)
            .arg("--units")
            .arg(self.dir.path().join("units"))
            .arg("--state-dir")
            .arg(self.state())
            .env("LAUNCHGRAPH_LAUNCHCTL", &self.double.wrapper_path)
            .env_remove("LAUNCHGRAPH_UNITS")
            .env_remove("LAUNCHGRAPH_STATE_DIR");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Bootstraps the plist in `system`, as launchd does at boot.
    async fn load(&self, plist: &Path) {
        let out = self
            .double
            .run(&["bootstrap", "system", plist.to_str().unwrap()])
            .await;
        assert_eq!(out.code, 0, "bootstrap: {}", out.stderr);
    }

    /// What `print system/LABEL` says, until `done` holds it (the job's process starting or
    /// ending is the double's to report).
    async fn print_until(&self, label: &str, done: impl Fn(&str) -> bool) -> String {
        let target = format!("system/{label}");
        let until = Instant::now() + DEADLINE;
        loop {
            let out = self.double.run(&["print", &target]).await;
            if done(&out.stdout) {
                return out.stdout;
            }
            assert!(Instant::now() < until, "print {target}: {}", out.stdout);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The recorded calls whose verb changes something (not `print`, `print-disabled`).
    fn acting_calls(&self) -> Vec<Vec<String>> {
        self.double
            .calls()
            .into_iter()
            .filter(|c| {
                !matches!(
                    c.first().map(String::as_str),
                    Some("print" | "print-disabled")
                )
            })
            .collect()
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn dict_of(path: &Path) -> plist::Dictionary {
    plist::Value::from_file(path)
        .unwrap()
        .into_dictionary()
        .unwrap()
}

/// A Homebrew-like service: RunAtLoad and KeepAlive, a long-running program.
fn service(label: &str) -> JobPlist {
    JobPlist {
        run_at_load: true,
        keep_alive: true,
        working_directory: Some("/".into()),
        ..JobPlist::new(label, &["/bin/sleep", "1000"])
    }
}

/// RunAtLoad and a KeepAlive that does not relaunch after exit 1: loaded, not running.
fn idle_service(label: &str) -> JobPlist {
    JobPlist {
        run_at_load: true,
        keep_alive_successful_exit: Some(true),
        ..JobPlist::new(label, &["/bin/sh", "-c", "exit 1"])
    }
}

fn argv(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn is_idle(print: &str) -> bool {
    print.contains("state = not running") && print.contains("last exit code = 1")
}

#[tokio::test]
#[ignore = "needs root"]
async fn root_adopt_of_a_loaded_idle_job_rewrites_backs_up_and_reloads() {
    needs_root("adopt");
    let h = Host::new().await;
    let plist = h.job("gateway", &idle_service("test.gateway"));
    // Another owner and mode than root's 0644, both kept.
    std::os::unix::fs::chown(&plist, Some(501), Some(20)).unwrap();
    fs::set_permissions(&plist, fs::Permissions::from_mode(0o640)).unwrap();
    let original = fs::read(&plist).unwrap();
    h.load(&plist).await;
    h.print_until("test.gateway", is_idle).await;
    let before = h.acting_calls().len();

    let out = h.run(&["adopt", "gateway"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    let p = plist.display();
    let b = h.backup("test.gateway");
    for line in [
        "gateway: adopted system/test.gateway\n".to_owned(),
        format!(
            "  backed up {p} to {} (mode 0640, owner 501:20)\n",
            b.display()
        ),
        format!(
            "  rewrote {p} (XML, same owner and mode): RunAtLoad: true -> false; KeepAlive: \
             {{SuccessfulExit = true}} -> (removed)\n"
        ),
        "  ran: launchctl bootout system/test.gateway\n".to_owned(),
        format!("  ran: launchctl bootstrap system {p}\n"),
        "  system/test.gateway is loaded and not running: launchd no longer starts it by \
         itself; launchgraph starts it once its requirements are ready\n"
            .to_owned(),
    ] {
        assert!(said.contains(&line), "missing {line:?} in\n{said}");
    }

    // The backup: the original bytes, mode and owner.
    assert_eq!(fs::read(&b).unwrap(), original);
    let bm = fs::metadata(&b).unwrap();
    assert_eq!((bm.mode() & 0o7777, bm.uid(), bm.gid()), (0o640, 501, 20));
    assert_eq!(
        fs::metadata(b.parent().unwrap()).unwrap().mode() & 0o777,
        0o700
    );
    // The plist: RunAtLoad false, no KeepAlive, every other key kept in order.
    let d = dict_of(&plist);
    let keys: Vec<&str> = d.keys().map(String::as_str).collect();
    assert_eq!(keys, ["Label", "ProgramArguments", "RunAtLoad"]);
    assert_eq!(d.get("RunAtLoad"), Some(&plist::Value::Boolean(false)));
    let m = fs::metadata(&plist).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 501, 20));
    // launchd reloaded it: bootout, then bootstrap of the rewritten file.
    assert_eq!(
        h.acting_calls()[before..],
        [
            argv(&["bootout", "system/test.gateway"]),
            argv(&["bootstrap", "system", &p.to_string()]),
        ]
    );
    let now = h.print_until("test.gateway", |_| true).await;
    assert!(
        !now.contains("keepalive") && !now.contains("runatload"),
        "{now}"
    );
    assert!(now.contains("state = not running"), "{now}");
}

#[tokio::test]
#[ignore = "needs root"]
async fn root_a_running_job_is_left_running_unless_restart_is_asked() {
    needs_root("adopt");
    let h = Host::new().await;
    let plist = h.job("ollama", &service("test.ollama"));
    h.load(&plist).await;
    let running = h
        .print_until("test.ollama", |p| p.contains("state = running"))
        .await;
    let pid_line = running
        .lines()
        .find(|l| l.trim().starts_with("pid = "))
        .unwrap()
        .trim()
        .to_owned();
    let before = h.acting_calls().len();

    let out = h.run(&["adopt", "ollama"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains(&format!(
            "system/test.ollama is running (pid {}) and was not stopped",
            pid_line.trim_start_matches("pid = ")
        )),
        "{}",
        text(&out)
    );
    assert!(stdout(&out).contains("`launchgraph adopt ollama --restart`"));
    assert_eq!(h.acting_calls().len(), before, "{:?}", h.acting_calls());
    assert!(!dict_of(&plist).contains_key("KeepAlive"));
    let still = h.print_until("test.ollama", |_| true).await;
    assert!(
        still.contains(&pid_line) && still.contains("keepalive"),
        "{still}"
    );

    // Again, with --restart: the file is adopted already, the loaded job is not.
    let out = h.run(&["adopt", "ollama", "--restart"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("ran: launchctl bootout system/test.ollama"));
    assert_eq!(
        h.acting_calls()[before..],
        [
            argv(&["bootout", "system/test.ollama"]),
            argv(&["bootstrap", "system", &plist.display().to_string()]),
        ]
    );
    let now = h.print_until("test.ollama", |_| true).await;
    assert!(
        now.contains("state = not running") && !now.contains("keepalive"),
        "{now}"
    );
}

#[tokio::test]
async fn a_dry_run_shows_the_plan_and_changes_nothing() {
    let h = Host::new().await;
    let plist = h.job("gateway", &idle_service("ai.openclaw.gateway"));
    h.load(&plist).await;
    h.print_until("ai.openclaw.gateway", is_idle).await;
    let original = fs::read(&plist).unwrap();
    let before = h.acting_calls();

    let out = h.run(&["adopt", "gateway", "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    let p = plist.display();
    for line in [
        "gateway: adopt system/ai.openclaw.gateway, dry run: nothing was changed\n".to_owned(),
        format!("  would back up {p} to "),
        format!(
            "  would rewrite {p} (XML, same owner and mode): RunAtLoad: true -> false; \
             KeepAlive: {{SuccessfulExit = true}} -> (removed)\n"
        ),
        "  would run: launchctl bootout system/ai.openclaw.gateway\n".to_owned(),
        format!("  would run: launchctl bootstrap system {p}\n"),
    ] {
        assert!(said.contains(&line), "missing {line:?} in\n{said}");
    }
    assert!(
        said.contains(
            "  note: `openclaw gateway install` and `openclaw doctor` write this plist again"
        ) && said.contains("OPENCLAW_SUPERVISOR_MODE=external")
            && said.contains("`launchgraph adopt gateway` re-applies"),
        "{said}"
    );
    assert_eq!(fs::read(&plist).unwrap(), original);
    assert!(
        !h.state().exists(),
        "nothing written under the state directory"
    );
    assert_eq!(h.acting_calls(), before);
}

#[tokio::test]
#[ignore = "needs root"]
async fn root_release_restores_the_bytes_mode_and_owner_and_reloads() {
    needs_root("release");
    let h = Host::new().await;
    let plist = h.job("ollama", &service("test.ollama"));
    std::os::unix::fs::chown(&plist, Some(0), Some(20)).unwrap();
    fs::set_permissions(&plist, fs::Permissions::from_mode(0o600)).unwrap();
    let original = fs::read(&plist).unwrap();
    h.load(&plist).await;
    h.print_until("test.ollama", |p| p.contains("state = running"))
        .await;
    let out = h.run(&["adopt", "ollama", "--restart"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_ne!(fs::read(&plist).unwrap(), original);
    let before = h.acting_calls().len();

    let dry = h.run(&["release", "ollama", "--dry-run"]);
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(stdout(&dry).contains("would restore"), "{}", text(&dry));
    assert_eq!(h.acting_calls().len(), before);
    assert!(h.backup("test.ollama").exists());

    let out = h.run(&["release", "ollama"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    assert!(
        said.contains("ollama: released system/test.ollama\n"),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "  restored {} from {} (its bytes, mode 0600, owner 0:20)\n",
            plist.display(),
            h.backup("test.ollama").display()
        )),
        "{said}"
    );
    assert_eq!(fs::read(&plist).unwrap(), original);
    let m = fs::metadata(&plist).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o600, 0, 20));
    assert!(!h.backup("test.ollama").exists());
    assert!(!h.state().join("adopted/test.ollama.json").exists());
    assert_eq!(
        h.acting_calls()[before..],
        [
            argv(&["bootout", "system/test.ollama"]),
            argv(&["bootstrap", "system", &plist.display().to_string()]),
        ]
    );
    // launchd runs it as before: RunAtLoad started it, KeepAlive is loaded again.
    let now = h
        .print_until("test.ollama", |p| p.contains("state = running"))
        .await;
    assert!(now.contains("keepalive"), "{now}");

    // Released already: nothing to do.
    let again = h.run(&["release", "ollama"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        stdout(&again).contains("is not adopted"),
        "{}",
        text(&again)
    );
}

#[tokio::test]
#[ignore = "needs root"]
async fn root_release_all_gives_every_adopted_job_back() {
    needs_root("release --all");
    let h = Host::new().await;
    let a = h.job("ollama", &service("test.ollama"));
    let b = h.job("gateway", &idle_service("test.gateway"));
    let (oa, ob) = (fs::read(&a).unwrap(), fs::read(&b).unwrap());
    // One loaded, one not loaded at all.
    h.load(&b).await;
    h.print_until("test.gateway", is_idle).await;
    for unit in ["ollama", "gateway"] {
        let out = h.run(&["adopt", unit]);
        assert!(out.status.success(), "{}", text(&out));
    }
    assert!(stdout(&h.run(&["adopt", "ollama", "--dry-run"])).contains("adopted already"));
    let before = h.acting_calls().len();

    let out = h.run(&["release", "--all"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fs::read(&a).unwrap(), oa);
    assert_eq!(fs::read(&b).unwrap(), ob);
    assert_eq!(fs::read_dir(h.state().join("adopted")).unwrap().count(), 0);
    // In label order: the loaded one reloaded, the other bootstrapped as launchd would at boot.
    assert_eq!(
        h.acting_calls()[before..],
        [
            argv(&["bootout", "system/test.gateway"]),
            argv(&["bootstrap", "system", &b.display().to_string()]),
            argv(&["bootstrap", "system", &a.display().to_string()]),
        ]
    );
    h.print_until("test.ollama", |p| p.contains("state = running"))
        .await;
    let out = h.run(&["release", "--all"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("nothing to release"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
#[ignore = "needs root"]
async fn root_adopt_twice_is_a_no_op_and_a_rewritten_plist_is_adopted_again() {
    needs_root("adopt");
    let h = Host::new().await;
    let plist = h.job("gateway", &idle_service("test.gateway"));
    let original = fs::read(&plist).unwrap();
    h.load(&plist).await;
    h.print_until("test.gateway", is_idle).await;
    let out = h.run(&["adopt", "gateway"]);
    assert!(out.status.success(), "{}", text(&out));
    let adopted = fs::read(&plist).unwrap();
    let calls = h.acting_calls().len();

    let out = h.run(&["adopt", "gateway"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out)
            .starts_with("gateway: system/test.gateway is adopted already: nothing to do\n"),
        "{}",
        text(&out)
    );
    assert_eq!(fs::read(&plist).unwrap(), adopted);
    assert_eq!(h.acting_calls().len(), calls);

    // The service's installer writes its plist again, RunAtLoad and KeepAlive included.
    let installer = {
        let mut j = idle_service("test.gateway");
        j.env = vec![("OPENCLAW_GATEWAY_PORT".into(), "18789".into())];
        j
    };
    installer.write(&h.dir.path().join("plists"));
    let rewritten_by_installer = fs::read(&plist).unwrap();
    let refused = h.run(&["release", "gateway"]);
    assert_eq!(refused.status.code(), Some(64), "{}", text(&refused));
    let why = stderr(&refused);
    assert!(
        why.contains(
            "was changed since adopt wrote it, and has launchd start the job by itself again"
        ) && why.contains("`launchgraph release gateway --force`")
            && why.contains("nothing was done"),
        "{why}"
    );
    assert_eq!(fs::read(&plist).unwrap(), rewritten_by_installer);

    let out = h.run(&["adopt", "gateway"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("  kept the backup "),
        "{}",
        text(&out)
    );
    // The first backup is never replaced.
    assert_eq!(fs::read(h.backup("test.gateway")).unwrap(), original);
    let d = dict_of(&plist);
    assert!(d.contains_key("EnvironmentVariables") && !d.contains_key("KeepAlive"));
    // What adopt wrote last is what release accepts.
    let out = h.run(&["release", "gateway"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fs::read(&plist).unwrap(), original);
}

#[tokio::test]
#[ignore = "needs root"]
async fn root_release_force_restores_over_a_changed_plist() {
    needs_root("release --force");
    let h = Host::new().await;
    let plist = h.job("gateway", &idle_service("test.gateway"));
    let original = fs::read(&plist).unwrap();
    let out = h.run(&["adopt", "gateway"]);
    assert!(out.status.success(), "{}", text(&out));
    fs::write(&plist, b"edited by hand").unwrap();
    assert_eq!(h.run(&["release", "gateway"]).status.code(), Some(64));
    let out = h.run(&["release", "gateway", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fs::read(&plist).unwrap(), original);
}

#[tokio::test]
#[ignore = "needs root"]
async fn root_a_binary_plist_stays_binary() {
    needs_root("adopt");
    let h = Host::new().await;
    let plist = h.job("ollama", &service("test.ollama"));
    let value = plist::Value::from_file(&plist).unwrap();
    value.to_file_binary(&plist).unwrap();
    let original = fs::read(&plist).unwrap();
    assert!(original.starts_with(b"bplist00"));

    let out = h.run(&["adopt", "ollama"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("(binary, same owner and mode)"),
        "{}",
        text(&out)
    );
    let now = fs::read(&plist).unwrap();
    assert!(now.starts_with(b"bplist00"), "still binary");
    let d = dict_of(&plist);
    assert_eq!(d.get("RunAtLoad"), Some(&plist::Value::Boolean(false)));
    assert!(!d.contains_key("KeepAlive"));
    assert_eq!(
        d.get("WorkingDirectory").and_then(|v| v.as_string()),
        Some("/")
    );
    assert_eq!(fs::read(h.backup("test.ollama")).unwrap(), original);
    let out = h.run(&["release", "ollama"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fs::read(&plist).unwrap(), original);
}

#[tokio::test]
async fn errors_name_the_unit_or_the_path_and_say_what_was_expected() {
    let h = Host::new().await;
    h.job("ollama", &service("test.ollama"));
    h.exec_unit("worker");

    let out = h.run(&["adopt", "Bad/Name", "--dry-run"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        stderr(&out).contains("`Bad/Name` is not a unit name")
            && stderr(&out).contains("adopt takes the name of a [launchd] unit"),
        "{}",
        text(&out)
    );

    let out = h.run(&["adopt", "nope", "--dry-run"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        stderr(&out).contains("no unit named `nope` in ")
            && stderr(&out).contains("adopt takes the name of a [launchd] unit (there: ollama)"),
        "{}",
        text(&out)
    );

    let out = h.run(&["adopt", "worker", "--dry-run"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        stderr(&out).contains("unit `worker` (")
            && stderr(&out).contains("is an [exec] unit; adopt takes a [launchd] unit"),
        "{}",
        text(&out)
    );
    let out = h.run(&["release", "worker"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        stderr(&out).contains("is an [exec] unit; release takes a [launchd] unit"),
        "{}",
        text(&out)
    );

    let plist = h.dir.path().join("plists/test.ollama.plist");
    fs::remove_file(&plist).unwrap();
    let out = h.run(&["adopt", "ollama", "--dry-run"]);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
    assert!(
        stderr(&out).contains(&format!("the plist {} does not exist", plist.display())),
        "{}",
        text(&out)
    );
    assert!(h.double.calls().is_empty(), "{:?}", h.double.calls());
}

#[tokio::test]
#[ignore = "needs root"]
async fn root_a_caller_other_than_root_is_refused_before_anything_changes() {
    use std::os::unix::process::CommandExt;
    needs_root("running the binary as another user");
    let h = Host::new().await;
    let plist = h.job("ollama", &service("test.ollama"));
    let original = fs::read(&plist).unwrap();
    let out = h
        .command(&["adopt", "ollama"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(77), "{}", text(&out));
    assert!(
        stderr(&out).contains("run it as root (sudo launchgraph adopt ollama)"),
        "{}",
        text(&out)
    );
    assert_eq!(fs::read(&plist).unwrap(), original);
    assert!(h.double.calls().is_empty(), "{:?}", h.double.calls());
}

#[tokio::test]
#[ignore = "needs root"]
async fn root_with_nobody_at_the_console_the_file_is_adopted_and_released_without_launchctl() {
    needs_root("adopt");
    let h = Host::new().await;
    let plist = h.job_in("gateway", &service("ai.openclaw.gateway"), "gui/console");
    let original = fs::read(&plist).unwrap();
    // Owned by root: the login window, so no gui/<uid> domain exists (a headless host).
    let console = h.dir.path().join("console");
    fs::write(&console, b"").unwrap();

    let out = h
        .command(&["adopt", "gateway"])
        .env("LAUNCHGRAPH_CONSOLE_DEVICE", &console)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains(
            "gui/console/ai.openclaw.gateway: its domain does not exist now (nobody is logged \
             in): launchd reads the plist at the next login"
        ),
        "{}",
        text(&out)
    );
    assert!(!dict_of(&plist).contains_key("KeepAlive"));
    let out = h
        .command(&["release", "--all"])
        .env("LAUNCHGRAPH_CONSOLE_DEVICE", &console)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(fs::read(&plist).unwrap(), original);
    assert!(h.double.calls().is_empty(), "{:?}", h.double.calls());
}

#[tokio::test]
async fn a_plist_whose_label_is_not_the_units_is_refused() {
    let h = Host::new().await;
    let plist = h.job("ollama", &service("test.ollama"));
    let mut d = dict_of(&plist);
    d.insert("Label".into(), plist::Value::String("test.other".into()));
    plist::Value::Dictionary(d).to_file_xml(&plist).unwrap();
    let out = h.run(&["adopt", "ollama", "--dry-run"]);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
    assert!(
        stderr(&out).contains(&format!(
            "the plist {} has Label \"test.other\", but unit ollama drives \"test.ollama\"",
            plist.display()
        )),
        "{}",
        text(&out)
    );
}

#[tokio::test]
#[ignore = "needs root"]
async fn root_a_bootout_in_progress_and_its_drain_are_waited_out() {
    needs_root("adopt");
    let h = Host::with_drain(1500).await;
    // A bootout of a running job answers 36 although the job stops (osquery/osquery#5698).
    h.double
        .admin(&["x-config", "bootout-in-progress", "on"])
        .await;
    let plist = h.job("ollama", &service("test.ollama"));
    h.load(&plist).await;
    h.print_until("test.ollama", |p| p.contains("state = running"))
        .await;
    let before = h.acting_calls().len();

    let out = h.run(&["adopt", "ollama", "--restart"]);
    assert!(out.status.success(), "{}", text(&out));
    // One bootout (36 counts as under way), one bootstrap once the drain is over.
    assert_eq!(
        h.acting_calls()[before..],
        [
            argv(&["bootout", "system/test.ollama"]),
            argv(&["bootstrap", "system", &plist.display().to_string()]),
        ]
    );
    let now = h.print_until("test.ollama", |_| true).await;
    assert!(
        now.contains("state = not running") && !now.contains("keepalive"),
        "{now}"
    );
}
