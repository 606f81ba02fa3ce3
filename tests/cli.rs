//! The `launchgraph` binary as an admin runs it: `check` and `plan` on the shipped units and the
//! quickstart, on a broken directory, and with bad arguments; exit codes as documented.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn launchgraph(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_launchgraph"))
        .args(args)
        .env_remove("LAUNCHGRAPH_UNITS")
        .output()
        .expect("run launchgraph")
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The units directories shipped as examples, each checked as an admin would check it.
const MAC_EXAMPLES: [&str; 3] = [
    "examples/mac/brew-daemon",
    "examples/mac/brew-agent",
    "examples/mac/ollama-app",
];

/// The headless host's units directory: the gateway is an `exec` unit there, not OpenClaw's
/// LaunchAgent, so it is checked on its own.
const HEADLESS_EXAMPLE: &str = "examples/mac/headless";

#[test]
fn check_accepts_the_shipped_units_and_the_quickstart() {
    for dir in ["units", "examples/quickstart"]
        .into_iter()
        .chain(MAC_EXAMPLES)
        .chain([HEADLESS_EXAMPLE])
    {
        let out = launchgraph(&["check", "--config-only", "--units", &repo(dir)]);
        assert_eq!(out.status.code(), Some(0), "{dir}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(stdout.starts_with("ok: "), "{stdout}");
    }
    let out = launchgraph(&["check", "--units", &repo("examples/quickstart")]);
    assert!(text(&out.stdout).contains("3 units (3 exec, 0 launchd)"));
}

/// The headless example runs the gateway as its user, with no GUI domain: an `exec` unit
/// with `user`, told it is supervised externally, restarted after a clean exit (OpenClaw's
/// "restart me" in that mode), after the same Ollama LaunchDaemon as `units/`.
#[test]
fn the_headless_example_runs_the_gateway_as_an_exec_unit_restarted_after_exit_0() {
    use launchgraph::unit::{RestartPolicy, Runner};
    let read = |p: &str| std::fs::read_to_string(repo(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(
        read(&format!("{HEADLESS_EXAMPLE}/ollama.toml")),
        read("units/ollama.toml")
    );
    let compiled =
        launchgraph::compile::compile_dir(Path::new(&repo(HEADLESS_EXAMPLE))).expect("it compiles");
    let gateway = compiled
        .units
        .iter()
        .find(|u| u.name.as_str() == "openclaw-gateway")
        .expect("a gateway unit");
    let Runner::Exec(exec) = &gateway.runner else {
        panic!("the gateway is an exec unit: {:?}", gateway.runner);
    };
    assert!(exec.user.is_some(), "it runs as the gateway's user");
    assert!(exec.command[0].starts_with('/'), "{:?}", exec.command);
    assert_eq!(
        exec.env.get("OPENCLAW_SUPERVISOR_MODE").map(String::as_str),
        Some("external")
    );
    assert_eq!(gateway.restart.policy, RestartPolicy::Always);
    assert_eq!(gateway.restart.no_restart_exit_codes, vec![78]);
    let names: Vec<&str> = gateway.requires.iter().map(|n| n.as_str()).collect();
    assert_eq!(names, ["ollama"]);
    let head = read(&format!("{HEADLESS_EXAMPLE}/openclaw-gateway.toml"));
    for says in ["headless", "FileVault", "gui/<uid>"] {
        assert!(
            head.contains(says),
            "the header says when to use it: {says}"
        );
    }
}

/// Each Mac example is what its name says, and what it shares with `units/` is a copy that has
/// not drifted: the gateway everywhere, and both files of the default (Homebrew LaunchDaemon).
#[test]
fn the_mac_examples_match_their_install_style_and_the_shipped_units() {
    let read = |p: &str| std::fs::read_to_string(repo(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    for dir in MAC_EXAMPLES {
        assert_eq!(
            read(&format!("{dir}/openclaw-gateway.toml")),
            read("units/openclaw-gateway.toml"),
            "{dir}: the gateway unit differs from units/"
        );
    }
    for file in ["ollama.toml", "ollama-pull.toml"] {
        assert_eq!(
            read(&format!("examples/mac/brew-daemon/{file}")),
            read(&format!("units/{file}")),
            "{file}"
        );
    }
    // The other styles point to the guardrails of units/ollama.toml.
    for dir in ["examples/mac/brew-agent", "examples/mac/ollama-app"] {
        assert!(
            read(&format!("{dir}/ollama.toml")).contains("units/ollama.toml"),
            "{dir}"
        );
    }
    let plan = |dir: &str| {
        let out = launchgraph(&["plan", "--json", "--units", &repo(dir)]);
        assert_eq!(out.status.code(), Some(0), "{dir}: {}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
        let waves = v["start_waves"].as_array().unwrap();
        assert_eq!(waves.len(), 2, "{dir}: {waves:?}");
        assert_eq!(waves[0], serde_json::json!(["ollama"]), "{dir}");
        assert!(
            waves[1]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("openclaw-gateway")),
            "{dir}: the gateway is ordered after Ollama: {waves:?}"
        );
        v["units"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == "ollama")
            .expect("an ollama unit")
            .clone()
    };
    let daemon = plan("examples/mac/brew-daemon");
    assert_eq!(daemon["target"], "system/homebrew.mxcl.ollama");
    let agent = plan("examples/mac/brew-agent");
    assert_eq!(agent["kind"], "launchd");
    let target = agent["target"].as_str().unwrap();
    assert!(
        target.starts_with("user/") && target.ends_with("/homebrew.mxcl.ollama"),
        "{target}"
    );
    let app = plan("examples/mac/ollama-app");
    assert_eq!(app["kind"], "external");
    assert_eq!(
        app["target"],
        "run by Ollama.app (login item com.ollama.ollama)"
    );
    assert_eq!(app["ready"]["target"], "http://127.0.0.1:11434/api/version");
    assert_eq!(app["ready"]["start_timeout_ms"], serde_json::Value::Null);
    let out = launchgraph(&[
        "check",
        "--config-only",
        "--units",
        &repo("examples/mac/ollama-app"),
    ]);
    assert!(
        text(&out.stdout).contains("2 units (0 exec, 1 launchd, 1 external)"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn plan_of_the_quickstart_shows_waves_stop_order_and_cascades() {
    let out = launchgraph(&["plan", "--units", &repo("examples/quickstart")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let model = s.find("    model").expect("model in a wave");
    let gateway = s.find("    gateway").expect("gateway in a wave");
    let dashboard = s.find("    dashboard").expect("dashboard in a wave");
    assert!(model < gateway && gateway < dashboard, "{s}");
    assert!(
        s.contains("GET http://127.0.0.1:18434/api/version answers 200"),
        "{s}"
    );
    assert!(
        s.contains("Stop order (dependents first): dashboard, gateway, model"),
        "{s}"
    );
    assert!(s.contains("model      -> gateway, dashboard"), "{s}");
}

#[test]
fn plan_json_follows_the_schema() {
    let out = launchgraph(&["plan", "--json", "--units", &repo("units")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["schema"], "launchgraph.plan/1");
    assert_eq!(
        v["start_waves"],
        serde_json::json!([["ollama"], ["ollama-pull", "openclaw-gateway"]])
    );
    assert_eq!(
        v["stop_order"],
        serde_json::json!(["openclaw-gateway", "ollama-pull", "ollama"])
    );
    let units = v["units"].as_array().unwrap();
    let by_name = |name: &str| {
        units
            .iter()
            .find(|u| u["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {units:?}"))
    };
    let ollama = by_name("ollama");
    assert_eq!(ollama["name"], "ollama");
    assert_eq!(ollama["kind"], "launchd");
    assert_eq!(ollama["target"], "system/homebrew.mxcl.ollama");
    assert_eq!(ollama["wave"], 0);
    assert_eq!(
        ollama["required_by"],
        serde_json::json!(["ollama-pull", "openclaw-gateway"])
    );
    assert_eq!(
        ollama["restart_cascade"],
        serde_json::json!(["ollama-pull", "openclaw-gateway"])
    );
    assert_eq!(ollama["ready"]["probe"], "http");
    assert_eq!(
        ollama["ready"]["target"],
        "http://127.0.0.1:11434/api/version"
    );
    assert_eq!(ollama["ready"]["status"], 200);
    let pull = by_name("ollama-pull");
    assert_eq!(pull["kind"], "exec");
    assert_eq!(pull["requires"], serde_json::json!(["ollama"]));
    let gw = by_name("openclaw-gateway");
    assert_eq!(gw["target"], "gui/console/ai.openclaw.gateway");
    assert_eq!(gw["requires"], serde_json::json!(["ollama"]));
    assert_eq!(gw["ready"]["target"], "http://127.0.0.1:18789/startupz");
    assert_eq!(gw["ready"]["start_timeout_ms"], 120_000);
}

#[test]
fn check_on_a_broken_directory_lists_every_error_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.toml"),
        "requires = [\"nope\"]\n[exec]\ncommand = [\"sh\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.toml"),
        "[exec]\ncommand = [\"/bin/true\"]\nstop-timeout = \"soon\"\n",
    )
    .unwrap();
    let out = launchgraph(&["check", "--units", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    let err = text(&out.stderr);
    let a = dir.path().join("a.toml");
    let b = dir.path().join("b.toml");
    assert!(
        err.contains(&format!(
            "{}:1:13: unit \"a\" requires \"nope\", which does not exist",
            a.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}:3:12: `exec.command`: the program \"sh\" is not an absolute path",
            a.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}:3:16: `exec.stop-timeout`: \"soon\" is not a duration",
            b.display()
        )),
        "{err}"
    );
    assert!(err.contains("  hint: "), "{err}");
    assert!(err.contains("error: 3 problems in 2 files"), "{err}");
    // plan refuses the same directory the same way.
    let out = launchgraph(&["plan", "--units", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    assert!(out.stdout.is_empty());
}

#[test]
fn the_units_directory_comes_from_the_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_launchgraph"))
        .arg("check")
        .env("LAUNCHGRAPH_UNITS", repo("examples/quickstart"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("examples/quickstart"));
}

#[test]
fn a_missing_directory_is_a_configuration_error() {
    let missing: PathBuf = tempfile::tempdir().unwrap().path().join("absent");
    let out = launchgraph(&["check", "--units", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out.stderr).contains("cannot read the units directory"));
}

#[test]
fn usage_errors_exit_64_and_help_exits_0() {
    let out = launchgraph(&["chekc"]);
    assert_eq!(out.status.code(), Some(64));
    let out = launchgraph(&["plan", "--jsn"]);
    assert_eq!(out.status.code(), Some(64));
    let out = launchgraph(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(
        help.contains("check") && help.contains("plan") && help.contains("Exit codes"),
        "{help}"
    );
}

#[test]
fn help_lists_every_exit_code_of_the_table() {
    let out = launchgraph(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    // clap wraps long lines: compare with the whitespace folded.
    let help = text(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for (code, _, meaning) in launchgraph::exit::TABLE {
        assert!(
            help.contains(&format!("{code} {meaning}")),
            "--help does not list exit code {code} ({meaning}): {help}"
        );
    }
}

#[test]
fn check_runs_preflight_on_this_host_and_names_each_finding() {
    let state = tempfile::tempdir().unwrap();
    // The quickstart needs nothing but /usr/bin/env and python3: its preflight passes.
    let out = launchgraph(&[
        "check",
        "--state-dir",
        state.path().to_str().unwrap(),
        "--units",
        &repo("examples/quickstart"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // The shipped units point at macOS plists; where they are absent, check says so, with the
    // code, the path and the fix, and exits 65.
    let plist = "/Library/LaunchDaemons/homebrew.mxcl.ollama.plist";
    if !Path::new(plist).exists() {
        let out = launchgraph(&[
            "check",
            "--state-dir",
            state.path().to_str().unwrap(),
            "--units",
            &repo("units"),
        ]);
        assert_eq!(out.status.code(), Some(65), "{}", text(&out.stdout));
        let s = text(&out.stdout);
        assert!(s.contains("ollama: error PLIST_UNREADABLE"), "{s}");
        assert!(s.contains(&format!("  path: {plist}")), "{s}");
        assert!(s.contains("  fix: "), "{s}");
        assert!(s.contains("preflight errors block a start"), "{s}");
    }
}

/// Runs `launchgraph check --state-dir <tmp> --units dir` (preflight included) and returns its
/// exit code, stdout and stderr; the test fails, and the child is killed, if it has not
/// exited within 30 s: a file that is not what it should be must be an error, not a hang.
fn check_promptly(dir: &Path) -> (Option<i32>, String, String) {
    let state = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_launchgraph"));
    cmd.args(["check", "--state-dir"])
        .arg(state.path())
        .arg("--units")
        .arg(dir);
    within_30s(cmd, dir)
}

/// Runs `cmd` (a `check` of `dir`) to its end, as [`check_promptly`] describes.
fn within_30s(mut cmd: Command, dir: &Path) -> (Option<i32>, String, String) {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd
        .env_remove("LAUNCHGRAPH_UNITS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run launchgraph");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = r.read_to_end(&mut b);
            String::from_utf8_lossy(&b).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let deadline = std::time::Duration::from_secs(30);
    let status = match rx.recv_timeout(deadline) {
        Ok(s) => s.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!(
                "check on {} did not exit within {deadline:?}",
                dir.display()
            );
        }
    };
    (
        status.code(),
        stdout.join().unwrap(),
        stderr.join().unwrap(),
    )
}

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
}

fn launchd_unit(dir: &Path, plist: &Path) {
    std::fs::write(
        dir.join("job.toml"),
        format!(
            "[launchd]\nlabel = \"test.job\"\nplist = \"{}\"\ndomain = \"gui/{}\"\n",
            plist.display(),
            nix::unistd::geteuid()
        ),
    )
    .unwrap();
}

#[test]
fn check_answers_promptly_when_a_plist_is_a_fifo_a_device_or_huge() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("test.job.plist");
    mkfifo(&fifo);
    let huge = dir.path().join("huge.plist");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    for (plist, what) in [
        (
            fifo.as_path(),
            "is a FIFO, expected a regular file".to_string(),
        ),
        (
            Path::new("/dev/zero"),
            "is a character device, expected a regular file".to_string(),
        ),
        (
            huge.as_path(),
            "is 4 GiB, larger than the 1 MiB a plist may be".to_string(),
        ),
    ] {
        let units = tempfile::tempdir().unwrap();
        launchd_unit(units.path(), plist);
        let (code, out, err) = check_promptly(units.path());
        assert_eq!(code, Some(65), "{out}{err}");
        assert!(out.contains("job: error PLIST_UNREADABLE"), "{out}");
        assert!(
            out.contains(&format!("the plist {} {what}", plist.display())),
            "{out}"
        );
    }
}

#[test]
fn check_answers_promptly_when_an_env_file_is_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let wrapper = p.join("gateway-env-wrapper.sh");
    std::fs::write(&wrapper, "#!/bin/sh\n. \"$1\"\nshift\nexec \"$@\"\n").unwrap();
    let env_file = p.join("gateway.env");
    mkfifo(&env_file);
    let units = tempfile::tempdir().unwrap();
    std::fs::write(
        units.path().join("gateway.toml"),
        format!(
            "[exec]\ncommand = [\"/bin/sh\", \"{}\", \"{}\", \"/bin/cat\", \"{}\"]\n",
            wrapper.display(),
            env_file.display(),
            wrapper.display()
        ),
    )
    .unwrap();
    let (code, out, err) = check_promptly(units.path());
    assert_eq!(code, Some(65), "{out}{err}");
    assert!(out.contains("gateway: error ENTRY_NOT_READABLE"), "{out}");
    assert!(
        out.contains(&format!(
            "env file {} (command[2] in the unit file {}) is a FIFO, expected a regular file",
            env_file.display(),
            units.path().join("gateway.toml").display()
        )),
        "{out}"
    );
}

#[test]
fn check_answers_promptly_when_a_unit_file_is_a_fifo() {
    let units = tempfile::tempdir().unwrap();
    mkfifo(&units.path().join("pipe.toml"));
    let (code, _, err) = check_promptly(units.path());
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains(&format!(
            "{}:1:1: the unit file is a FIFO, expected a regular file",
            units.path().join("pipe.toml").display()
        )),
        "{err}"
    );
}

/// A file name or key with a newline or an escape character is shown escaped: each
/// diagnostic stays on its own line, and nothing in a unit directory can drive the terminal.
#[test]
fn control_characters_in_names_and_keys_are_escaped_in_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("a\nb.toml"), "").unwrap();
    std::fs::write(p.join("c\x1b[2Jd.toml"), "").unwrap();
    std::fs::write(
        p.join("ok.toml"),
        "\"x\\u001b[31m\\ny\" = 1\n[exec]\ncommand = [\"/bin/true\"]\n",
    )
    .unwrap();
    let out = launchgraph(&["check", "--units", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    let err = text(&out.stderr);
    assert!(!err.contains('\x1b'), "{err:?}");
    let lines: Vec<&str> = err.lines().collect();
    let dir = p.display();
    for (start, message) in [
        (format!("{dir}/a\\nb.toml:1:1: "), "bad unit name"),
        (format!("{dir}/c\\u{{1b}}[2Jd.toml:1:1: "), "bad unit name"),
        (
            format!("{dir}/ok.toml:1:1: "),
            "unknown key `x\\u{1b}[31m\\ny` at the top level",
        ),
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&start) && l.contains(message)),
            "no line starting {start:?} with {message:?} in {err}"
        );
    }
    // Every line is a diagnostic, a hint or the summary: none was split.
    for l in &lines {
        assert!(
            l.starts_with(&format!("{dir}/"))
                || l.starts_with("  hint: ")
                || l.starts_with("error: "),
            "a split line {l:?} in {err}"
        );
    }
}

/// The last of 20,000 unit files swapped for a FIFO 30 ms after `check` started, so that
/// it is most likely listed as a regular file and opened as a FIFO: `check` answers at
/// once, with the FIFO named if it saw it (if the swap came after the read, all is valid).
#[test]
fn check_answers_promptly_when_a_unit_file_becomes_a_fifo_while_it_runs() {
    let units = tempfile::tempdir().unwrap();
    for i in 0..20_000 {
        std::fs::write(
            units.path().join(format!("u{i:05}.toml")),
            "[exec]\ncommand = [\"/bin/true\"]\n",
        )
        .unwrap();
    }
    let last = units.path().join("u19999.toml");
    let swap = {
        let last = last.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(30));
            std::fs::remove_file(&last).unwrap();
            mkfifo(&last);
        })
    };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_launchgraph"));
    cmd.args(["check", "--config-only", "--units"])
        .arg(units.path());
    let (code, out, err) = within_30s(cmd, units.path());
    swap.join().unwrap();
    match code {
        Some(0) => assert!(out.contains("ok: 20000 units"), "{out}"),
        Some(78) => assert!(
            err.contains(&format!(
                "{}:1:1: the unit file is a FIFO, expected a regular file",
                last.display()
            )),
            "{err}"
        ),
        other => panic!("exit {other:?}: {out}{err}"),
    }
}

/// Run as root, as a LaunchDaemon runs: a units directory that others may write to is a
/// warning naming it, which does not change the exit code; made root's, it is gone.
#[test]
#[ignore = "needs root"]
fn root_check_warns_when_the_units_directory_is_writable_by_non_root() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let units = tmp.path().join("etc/units");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(
        units.join("a.toml"),
        "[exec]\ncommand = [\"/bin/sleep\", \"1\"]\n",
    )
    .unwrap();
    let etc = tmp.path().join("etc");
    let chmod =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    chmod(&etc, 0o777);
    let out = launchgraph(&["check", "--config-only", "--units", units.to_str().unwrap()]);
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert!(
        s.contains("units directory: warning WRITABLE_BY_NON_ROOT"),
        "{s}"
    );
    assert!(s.contains(&format!("  path: {}", etc.display())), "{s}");
    assert!(s.contains("mode 0777") && s.contains("chmod go-w"), "{s}");

    chmod(&etc, 0o755);
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid;
    nix::unistd::chown(&units, Some(nobody), None).unwrap();
    let s =
        text(&launchgraph(&["check", "--config-only", "--units", units.to_str().unwrap()]).stdout);
    assert!(s.contains(&format!("  path: {}", units.display())), "{s}");
    assert!(s.contains("(nobody)"), "{s}");

    nix::unistd::chown(&units, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    let s =
        text(&launchgraph(&["check", "--config-only", "--units", units.to_str().unwrap()]).stdout);
    assert!(!s.contains("WRITABLE_BY_NON_ROOT"), "{s}");
}

/// `guards` prints the runbook of the shipped units without a daemon: rail A's fallback and
/// the way back, exactly as an admin pastes them, each with its verify and time box; rail B
/// advised; rail C holding the model pull.
#[test]
fn guards_prints_the_runbook_of_the_shipped_units() {
    let out = launchgraph(&["guards", "--units", &repo("units")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    for line in [
        "ollama: switch cloud-fallback\n",
        "  trips     when all of ttft, queue are tripped\n",
        "  on trip, complete within 2m, as user openclaw:\n",
        "    1. sudo -u openclaw -H -- /opt/homebrew/bin/openclaw models set anthropic/claude-sonnet-4-6\n",
        "    verify: sudo -u openclaw -H -- /opt/homebrew/bin/openclaw config get agents.defaults.model.primary\n",
        "      must exit 0 and print \"anthropic/claude-sonnet-4-6\" (polled until it does, within the time box)\n",
        "  on clear (the way back), complete within 2m, as user openclaw:\n",
        "    1. sudo -u openclaw -H -- /opt/homebrew/bin/openclaw models set ollama/llama3.1:8b\n",
        "  trips     when the median of the samples of the last 5m is above 2.5s",
        "  trips     when a sample is above 3 continuously for 2m\n",
        "  trips     when a sample is above 8MiB/s continuously for 5m\n",
        "  trips     when a sample is below 12% continuously for 2m\n",
        "  holds     ollama-pull (not started while tripped; running ones are not stopped)\n",
        "  trips     when a sample is below 35% continuously for 10m\n",
    ] {
        assert!(s.contains(line), "{line:?} not in:\n{s}");
    }
    for dir in ["examples/mac/brew-daemon", HEADLESS_EXAMPLE] {
        let out = launchgraph(&["guards", "--units", &repo(dir)]);
        assert_eq!(out.status.code(), Some(0), "{dir}: {}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout).replace(&repo(dir), "D"),
            s.replace(&repo("units"), "D")
        );
    }
}

#[test]
fn guards_json_follows_the_schema() {
    let out = launchgraph(&["guards", "--json", "--units", &repo("units")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["schema"], "launchgraph.runbook/1");
    let ollama = &v["units"][0];
    assert_eq!(ollama["unit"], "ollama");
    let queue = ollama["guards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "queue")
        .expect("a queue guard");
    assert_eq!(queue["params"]["lane"], "main");
    assert_eq!(queue["params"]["field"], "queuedCount");
    let argv = queue["params"]["command"].as_array().unwrap();
    assert!(
        argv.ends_with(
            &serde_json::json!(["gateway", "call", "diagnostics.lanes", "--json"])
                .as_array()
                .unwrap()[..]
        ),
        "{argv:?}"
    );
    let sw = &ollama["switches"][0];
    assert_eq!(
        sw["on_trip"]["run"][0]["argv"],
        serde_json::json!([
            "/opt/homebrew/bin/openclaw",
            "models",
            "set",
            "anthropic/claude-sonnet-4-6"
        ])
    );
    assert_eq!(sw["on_trip"]["complete_within_ms"], 120_000);
    assert_eq!(sw["on_clear"]["verify_contains"], "ollama/llama3.1:8b");
}

#[test]
fn guards_on_a_broken_directory_exits_78_and_without_guards_says_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.toml"),
        "[exec]\ncommand = [\"/bin/true\"]\n",
    )
    .unwrap();
    let out = launchgraph(&["guards", "--units", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("No guards or switches in {}.\n", dir.path().display())
    );
    std::fs::write(
        dir.path().join("b.toml"),
        "[exec]\ncommand = [\"/bin/true\"]\n[[guard]]\nname = \"g\"\nsignal = \"disk-free\"\nbelow = \"5%\"\n",
    )
    .unwrap();
    let out = launchgraph(&["guards", "--json", "--units", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("b.toml:"),
        "{}",
        text(&out.stderr)
    );
}

/// The example in docs/runbook-schema.md is what `guards --json` prints for the shipped units:
/// the rows it shows are equal to the real ones.
#[test]
fn the_runbook_schema_example_is_the_shipped_units_output() {
    let doc = std::fs::read_to_string(repo("docs/runbook-schema.md")).unwrap();
    let block = doc
        .split("```json\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a JSON block");
    let example: serde_json::Value = serde_json::from_str(block).expect("the example is JSON");
    let out = Command::new(env!("CARGO_BIN_EXE_launchgraph"))
        .args(["guards", "--json", "--units", "units"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("LAUNCHGRAPH_UNITS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let real: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(example["schema"], real["schema"]);
    assert_eq!(example["units_dir"], real["units_dir"]);
    let (ex, re) = (&example["units"][0], &real["units"][0]);
    assert_eq!(ex["unit"], re["unit"]);
    for row in ex["guards"].as_array().unwrap() {
        let same = re["guards"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == row["name"])
            .expect("a guard of the example exists");
        assert_eq!(row, same);
    }
    assert_eq!(ex["switches"], re["switches"]);
}
