//! The `launchctl print` and `print-disabled` parsers against verbatim captures
//! (`tests/fixtures/launchctl`, from `print-disabled` output, DeterminateSystems/nix-installer#555; verbatim `launchctl print` captures: sglavoie/dev-helpers LaunchctlFixtures.swift, byliu-labs/egress-guard status_darwin_test.go, wazuh/wazuh-agent#569), against variants built to trip
//! depth-blind parsers, and against what the launchctl double prints for jobs in each state.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use launchgraph::launchd::{
    JobState, LastExit, Launchctl, PrintOutcome, ServiceInfo, parse_print, parse_print_disabled,
};
use proptest::prelude::*;
use support::DEADLINE;
use support::launchd::{DoubleLaunchd, JobPlist};

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/launchctl")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// Verbatim fixtures.

fn sample_a() -> ServiceInfo {
    ServiceInfo {
        label: Some("com.sglavoie.ddc-brightnessd".into()),
        state: JobState::Running,
        pid: Some(1076),
        runs: Some(1),
        last_exit: LastExit::Never,
        program: Some("/Users/sglavoie/.local/bin/ddc-brightnessd".into()),
        arguments: strings(&["/Users/sglavoie/.local/bin/ddc-brightnessd"]),
        path: Some(
            "/Users/sglavoie/scripts/launchagents/Library/LaunchAgents/com.sglavoie.ddc-brightnessd.plist"
                .into(),
        ),
        stdout_path: Some("/Users/sglavoie/Library/Logs/ddc-brightnessd.log".into()),
        stderr_path: Some("/Users/sglavoie/Library/Logs/ddc-brightnessd.log".into()),
        domain: Some("gui/501".into()),
        exit_timeout: Some(5),
        minimum_runtime: Some(10),
        job_state: Some("running".into()),
        last_exit_reason: None,
        properties: strings(&["keepalive", "runatload", "inferred program", "managed LWCR", "has LWCR"]),
    }
}

#[test]
fn sample_a_gui_agent_running() {
    let info = parse_print(&fixture("print-sample-a-gui-running.txt"));
    assert_eq!(info, sample_a());
    assert!(info.is_running() && info.keepalive() && info.runatload());
}

#[test]
fn sample_b_system_daemon_running_without_closing_brace() {
    let info = parse_print(&fixture("print-sample-b-system-running.txt"));
    assert_eq!(info.label.as_deref(), Some("com.byliu.egress-guard.daemon"));
    assert_eq!(info.state, JobState::Running);
    assert_eq!(info.pid, Some(893));
    assert_eq!(info.runs, Some(1));
    assert_eq!(info.program.as_deref(), Some("/usr/local/bin/egress-guard"));
    assert_eq!(
        info.arguments,
        strings(&[
            "/usr/local/bin/egress-guard",
            "start",
            "--port=8443",
            "--system"
        ])
    );
    assert_eq!(
        info.path,
        Some(PathBuf::from(
            "/Library/LaunchDaemons/com.byliu.egress-guard.daemon.plist"
        ))
    );
    assert_eq!(
        info.stderr_path,
        Some(PathBuf::from(
            "/var/db/egress-guard/.local/state/egress-guard/daemon.err"
        ))
    );
    assert_eq!(info.domain.as_deref(), Some("system"));
    // The capture ends before these lines.
    assert_eq!(info.last_exit, LastExit::Unknown);
    assert_eq!(info.job_state, None);
    assert!(info.properties.is_empty() && !info.keepalive());
    assert!(info.is_running());
}

#[test]
fn sample_c_system_daemon_exited() {
    let info = parse_print(&fixture("print-sample-c-system-exited.txt"));
    assert_eq!(info.label.as_deref(), Some("com.wazuh.agent"));
    assert_eq!(info.state, JobState::NotRunning);
    assert_eq!(info.pid, None);
    assert_eq!(info.runs, Some(1));
    assert_eq!(info.last_exit, LastExit::Code(0));
    let program = "/Library/Application Support/Wazuh agent.app/bin/wazuh-agent";
    assert_eq!(info.program.as_deref(), Some(program));
    assert_eq!(info.arguments, strings(&[program]));
    assert_eq!(
        info.path,
        Some(PathBuf::from(
            "/Library/LaunchDaemons/com.wazuh.agent.plist"
        ))
    );
    assert_eq!(
        info.stdout_path,
        Some(PathBuf::from("/var/log/wazuh-output.log"))
    );
    assert!(!info.is_running());
}

#[test]
fn fragment_killed_by_signal() {
    let info = parse_print(&fixture("print-fragment-killed-by-signal.txt"));
    assert_eq!(info.label, None);
    assert_eq!(info.runs, Some(2));
    assert_eq!(info.pid, Some(16090));
    assert_eq!(info.last_exit, LastExit::Signal(15));
    // No depth-1 state line: a pid alone is not "running".
    assert_eq!(info.state, JobState::Other(String::new()));
    assert!(!info.is_running());
}

#[test]
fn fragment_spawn_failed_with_ex_config() {
    let info = parse_print(&fixture("print-fragment-ex-config.txt"));
    assert_eq!(info.last_exit, LastExit::Code(78));
    assert_eq!(info.job_state.as_deref(), Some("spawn failed"));
    assert!(info.spawn_failed());
}

#[test]
fn fragment_never_run() {
    let info = parse_print(&fixture("print-fragment-never-run.txt"));
    assert_eq!(info.runs, Some(0));
    assert_eq!(info.last_exit, LastExit::Never);
    assert_eq!(info.job_state.as_deref(), Some("uninitialized"));
}

#[test]
fn fragment_interval_job_exited() {
    let info = parse_print(&fixture("print-fragment-interval-exited.txt"));
    assert_eq!(info.state, JobState::NotRunning);
    assert_eq!(info.job_state.as_deref(), Some("exited"));
}

#[test]
fn fragment_jetsam_exit_reason_changes_nothing_else() {
    let info = parse_print(&fixture("print-fragment-jetsam-exit-reason.txt"));
    assert_eq!(
        info,
        ServiceInfo {
            last_exit_reason: Some("JETSAM_REASON_MEMORY_IDLE_EXIT".into()),
            ..ServiceInfo::default()
        }
    );
    assert!(!info.spawn_failed());
}

#[test]
fn sample_d_an_agent_launchd_cannot_spawn() {
    let info = parse_print(&fixture("print-sample-d-gui-spawn-failed.txt"));
    assert_eq!(info.label.as_deref(), Some("yyh.CLI-Pulse.helper.agent"));
    // The depth-1 state, not the coalitions' `state = active`.
    assert_eq!(info.state, JobState::SpawnScheduled);
    assert_eq!(info.pid, None);
    assert_eq!(info.runs, Some(22138));
    assert_eq!(info.last_exit, LastExit::Code(78));
    assert!(info.spawn_failed() && !info.is_running());
    assert_eq!(info.last_exit_reason, None);
    // An SMAppService job: no plist path, no `program`; what launchd runs is argv[0].
    assert_eq!(
        info.path.as_deref(),
        Some(Path::new("(submitted by smd.553)"))
    );
    assert_eq!(info.program, None);
    assert_eq!(info.program_path(), Some("cli_pulse_helper"));
    assert_eq!(
        info.arguments,
        strings(&["cli_pulse_helper", "daemon", "--interval", "120"])
    );
    assert_eq!(info.domain.as_deref(), Some("gui/501"));
    assert_eq!(
        (info.exit_timeout, info.minimum_runtime),
        (Some(5), Some(30))
    );
    assert!(info.properties.is_empty());
}

#[test]
fn fragment_spawn_refused_for_its_code_signature() {
    let info = parse_print(&fixture("print-fragment-spawn-failed-codesigning.txt"));
    assert!(info.spawn_failed());
    assert_eq!(info.state, JobState::SpawnScheduled);
    // No `last exit code` line at all: the reason is the only word on why.
    assert_eq!(info.last_exit, LastExit::Unknown);
    assert_eq!(
        info.last_exit_reason.as_deref(),
        Some("OS_REASON_CODESIGNING")
    );
    assert_eq!(info.runs, Some(6));
}

/// The loaded definitions of verbatim captures against plist files that agree, then differ.
#[test]
fn loaded_definitions_of_captures_against_plist_files() {
    use launchgraph::launchd::{FileDefinition, drift};
    use plist::{Dictionary, Value};
    let b = parse_print(&fixture("print-sample-b-system-running.txt"));
    let plist = Path::new("/Library/LaunchDaemons/com.byliu.egress-guard.daemon.plist");
    let args =
        |items: &[&str]| Value::Array(items.iter().map(|a| Value::String(a.to_string())).collect());
    let mut file = Dictionary::new();
    file.insert(
        "ProgramArguments".into(),
        args(&[
            "/usr/local/bin/egress-guard",
            "start",
            "--port=8443",
            "--system",
        ]),
    );
    assert_eq!(drift(plist, &FileDefinition::from_dict(&file), &b), []);

    // The file now asks for another port and an exit timeout; sample B's capture stops before
    // `properties`, so KeepAlive is not compared.
    file.insert(
        "ProgramArguments".into(),
        args(&[
            "/usr/local/bin/egress-guard",
            "start",
            "--port=9443",
            "--system",
        ]),
    );
    file.insert("ExitTimeOut".into(), Value::Integer(30.into()));
    file.insert("KeepAlive".into(), Value::Boolean(true));
    let d = drift(plist, &FileDefinition::from_dict(&file), &b);
    let keys: Vec<&str> = d.iter().map(|d| d.key).collect();
    assert_eq!(keys, ["arguments", "exit timeout"], "{d:?}");
    assert_eq!(d[1].to_string(), "exit timeout: file 30, loaded 5");

    // Sample A shows `properties = keepalive | ...`: a file without KeepAlive differs, and a
    // plist at another path is another definition.
    let a = parse_print(&fixture("print-sample-a-gui-running.txt"));
    let mut file = Dictionary::new();
    file.insert(
        "ProgramArguments".into(),
        args(&["/Users/sglavoie/.local/bin/ddc-brightnessd"]),
    );
    let d = drift(
        Path::new("/Users/sglavoie/Library/LaunchAgents/com.sglavoie.ddc-brightnessd.plist"),
        &FileDefinition::from_dict(&file),
        &a,
    );
    let keys: Vec<&str> = d.iter().map(|d| d.key).collect();
    assert_eq!(keys, ["path", "KeepAlive"], "{d:?}");
    assert_eq!(
        (d[1].file.as_str(), d[1].loaded.as_str()),
        ("no KeepAlive", "KeepAlive")
    );
}

#[test]
fn fragment_mojave_bare_header() {
    let info = parse_print(&fixture("print-fragment-mojave-bare-header.txt"));
    assert_eq!(info.label.as_deref(), Some("com.wazuh.agent"));
    assert_eq!(
        info.domain.as_deref(),
        Some("com.apple.xpc.launchd.domain.system")
    );
}

#[test]
fn print_disabled_modern_vocabulary() {
    let disabled = parse_print_disabled(&fixture("print-disabled-modern.txt"));
    assert_eq!(
        disabled,
        BTreeMap::from([
            ("org.nixos.darwin-store".to_string(), true),
            ("org.nixos.nix-daemon".to_string(), true),
        ])
    );
}

// ---------------------------------------------------------------------------------------------
// Variants.

#[test]
fn crlf_line_ends_change_nothing() {
    let text = fixture("print-sample-a-gui-running.txt").replace('\n', "\r\n");
    assert_eq!(parse_print(&text), sample_a());
}

#[test]
fn junk_before_and_after_the_service_block_is_ignored() {
    let text = format!(
        "warning: something\n\tstate = not running\n{}\n\
         system/other = {{\n\tstate = not running\n\tpid = 1\n\tprogram = /x\n}}\n\
         trailing\n",
        fixture("print-sample-a-gui-running.txt")
    );
    assert_eq!(parse_print(&text), sample_a());
}

#[test]
fn a_nested_state_before_the_depth_one_state_does_not_leak() {
    let text = "system/com.x = {\n\
                \tresource coalition = {\n\
                \t\tstate = active\n\
                \t\tactive count = 1\n\
                \t\tpid = 5\n\
                \t\tpath = /nested\n\
                \t}\n\
                \tstate = not running\n\
                \tlast exit code = 1\n\
                }\n";
    let info = parse_print(text);
    assert_eq!(info.state, JobState::NotRunning);
    assert_eq!(info.pid, None);
    assert_eq!(info.path, None);
    assert_eq!(info.last_exit, LastExit::Code(1));
}

#[test]
fn only_nested_states_mean_no_state() {
    let text = "system/com.x = {\n\tendpoints = {\n\t\tstate = running\n\t}\n\tpid = 9\n}\n";
    let info = parse_print(text);
    assert_eq!(info.state, JobState::Other(String::new()));
    assert!(!info.is_running());
}

#[test]
fn stdout_path_before_path_is_not_the_path() {
    let text = "system/com.x = {\n\
                \tstdout path = /var/log/x.out\n\
                \tstderr path = /var/log/x.err\n\
                \tpath = /Library/LaunchDaemons/com.x.plist\n\
                }\n";
    let info = parse_print(text);
    assert_eq!(
        info.path,
        Some(PathBuf::from("/Library/LaunchDaemons/com.x.plist"))
    );
    assert_eq!(info.stdout_path, Some(PathBuf::from("/var/log/x.out")));
    assert_eq!(info.stderr_path, Some(PathBuf::from("/var/log/x.err")));

    let only_logs = "system/com.x = {\n\tstdout path = /var/log/x.out\n}\n";
    assert_eq!(parse_print(only_logs).path, None);
}

#[test]
fn an_unknown_state_is_kept_and_never_running() {
    let text = "gui/501/com.x = {\n\tstate = waiting for godot\n\tpid = 44\n}\n";
    let info = parse_print(text);
    assert_eq!(info.state, JobState::Other("waiting for godot".into()));
    assert_eq!(info.pid, Some(44));
    assert!(!info.is_running());
}

#[test]
fn transitional_states() {
    let parse = |s: &str| parse_print(&format!("system/com.x = {{\n\tstate = {s}\n}}\n")).state;
    assert_eq!(parse("spawn scheduled"), JobState::SpawnScheduled);
    assert_eq!(parse("xpcproxy"), JobState::Xpcproxy);
}

#[test]
fn arguments_that_look_like_keys_stay_arguments() {
    let text = "system/com.x = {\n\
                \tstate = not running\n\
                \targuments = {\n\
                \t\t/bin/sh\n\
                \t\tstate = running\n\
                \t\t  spaced  \n\
                \t}\n\
                \tprogram = /bin/sh\n\
                }\n";
    let info = parse_print(text);
    assert_eq!(
        info.arguments,
        strings(&["/bin/sh", "state = running", "  spaced  "])
    );
    assert_eq!(info.state, JobState::NotRunning);
    assert_eq!(info.program.as_deref(), Some("/bin/sh"));
}

#[test]
fn killed_and_sysexits_forms_inside_a_full_block() {
    let text = "system/com.x = {\n\tstate = running\n\tpid = 7\n\truns = 3\n\
                \tlast terminating signal = Killed: 9\n}\n";
    let info = parse_print(text);
    assert_eq!(info.last_exit, LastExit::Signal(9));
    assert!(info.is_running());
    let text = "system/com.x = {\n\tstate = not running\n\
                \tlast exit code = 78: EX_CONFIG\n\tjob state = spawn failed\n}\n";
    assert_eq!(parse_print(text).last_exit, LastExit::Code(78));
}

#[test]
fn print_disabled_legacy_vocabulary_and_a_following_block() {
    let text = "disabled services = {\n\
                \t\"com.a\" => true\n\
                \t\"com.b\" => false\n\
                \t\"com.c\" => disabled\n\
                \t\"com.d\" => enabled\n\
                \t\"com.e\" => perhaps\n\
                }\n\
                \n\
                login item associations = {\n\
                \t\"com.login\" => true\n\
                \t\"com.other\" => disabled\n\
                }\n";
    assert_eq!(
        parse_print_disabled(text),
        BTreeMap::from([
            ("com.a".to_string(), true),
            ("com.b".to_string(), false),
            ("com.c".to_string(), true),
            ("com.d".to_string(), false),
        ])
    );
}

proptest! {
    #[test]
    fn parsers_never_panic(text in "[\t\n\r a-z=>{}:0-9()|/\"]{0,400}") {
        let info = parse_print(&text);
        prop_assert!(!info.is_running() || info.pid.is_some());
        parse_print_disabled(&text);
    }

    #[test]
    fn lines_deeper_than_one_tab_never_count(
        key in "(state|pid|path|runs|program|last exit code)",
        value in "[a-z0-9 ]{1,12}",
        depth in 2usize..5,
    ) {
        let text = format!("system/com.x = {{\n{}{key} = {value}\n}}\n", "\t".repeat(depth));
        let info = parse_print(&text);
        let expected = ServiceInfo { label: Some("com.x".into()), ..ServiceInfo::default() };
        prop_assert_eq!(info, expected);
    }
}

// ---------------------------------------------------------------------------------------------
// The double's print output, parsed back.

async fn loaded(lc: &Launchctl, target: &str) -> ServiceInfo {
    match lc.print(target).await.unwrap_or_else(|e| panic!("{e}")) {
        PrintOutcome::Loaded(info) => *info,
        other => panic!("{target} is not loaded: {other:?}"),
    }
}

/// Polls `print` until `done` holds, within the deadline.
async fn print_until(
    lc: &Launchctl,
    target: &str,
    what: &str,
    done: impl Fn(&ServiceInfo) -> bool,
) -> ServiceInfo {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let info = loaded(lc, target).await;
        if done(&info) {
            return info;
        }
        assert!(
            Instant::now() < deadline,
            "{target} never became {what}: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_doubles_print_output_parses_back_in_every_state() {
    let double = DoubleLaunchd::start(200).await;
    let lc = double.launchctl();
    let dir = &double.state_dir;

    // Loaded, never run.
    let mut idle = JobPlist::new("test.idle", &["/bin/sh", "-c", "exit \"$1\"", "sh", "0"]);
    idle.exit_timeout = Some(2);
    lc.bootstrap("system", &idle.write(dir)).await.unwrap();
    let info = loaded(&lc, "system/test.idle").await;
    assert_eq!(info.label.as_deref(), Some("test.idle"));
    assert_eq!(info.state, JobState::NotRunning);
    assert_eq!(
        (info.runs, info.pid, info.last_exit),
        (Some(0), None, LastExit::Never)
    );
    assert_eq!(info.job_state.as_deref(), Some("uninitialized"));
    assert_eq!(
        info.arguments,
        strings(&["/bin/sh", "-c", "exit \"$1\"", "sh", "0"])
    );
    assert_eq!(info.program.as_deref(), Some("/bin/sh"));
    assert_eq!(info.exit_timeout, Some(2));
    assert_eq!(info.domain.as_deref(), Some("system"));
    assert_eq!(info.properties, strings(&["inferred program"]));

    // Exited with 0, and with 78 (rendered `78: EX_CONFIG`).
    lc.kickstart("system/test.idle", false).await.unwrap();
    let info = print_until(&lc, "system/test.idle", "exited", |i| {
        i.last_exit == LastExit::Code(0)
    })
    .await;
    assert_eq!((info.state, info.runs), (JobState::NotRunning, Some(1)));
    let mut config = JobPlist::new("test.config", &["/bin/sh", "-c", "exit 78"]);
    config.run_at_load = true;
    lc.bootstrap("system", &config.write(dir)).await.unwrap();
    let info = print_until(&lc, "system/test.config", "exited", |i| {
        i.last_exit == LastExit::Code(78)
    })
    .await;
    assert!(info.runatload() && !info.keepalive());
    let raw = double.run(&["print", "system/test.config"]).await.stdout;
    assert!(
        raw.contains("\n\tlast exit code = 78: EX_CONFIG\n"),
        "{raw}"
    );

    // Running, under a raw output that has nested `state = active` blocks.
    let mut sleeper = JobPlist::new("test.sleeper", &["/bin/sleep", "600"]);
    sleeper.keep_alive = true;
    sleeper.throttle_interval = Some(1);
    sleeper.stdout = Some(dir.join("sleeper.out"));
    sleeper.env = vec![("GREETING".into(), "hello".into())];
    lc.bootstrap("system", &sleeper.write(dir)).await.unwrap();
    let info = print_until(
        &lc,
        "system/test.sleeper",
        "running",
        ServiceInfo::is_running,
    )
    .await;
    let pid = info.pid.unwrap();
    assert!(info.keepalive() && info.runs == Some(1) && info.last_exit == LastExit::Never);
    assert_eq!(info.stdout_path, Some(dir.join("sleeper.out")));
    assert_eq!(
        info.path,
        Some(std::fs::canonicalize(dir.join("test.sleeper.plist")).unwrap())
    );
    assert_eq!(info.minimum_runtime, Some(1));
    let raw = double.run(&["print", "system/test.sleeper"]).await.stdout;
    assert!(
        raw.contains("\n\t\tstate = active\n") && raw.contains("\n\t\tGREETING => hello\n"),
        "{raw}"
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).expect("the pid is real");

    // Killed by a signal: `last terminating signal` replaces the exit code.
    let mut victim = JobPlist::new("test.victim", &["/bin/sleep", "600"]);
    victim.run_at_load = true;
    lc.bootstrap("system", &victim.write(dir)).await.unwrap();
    print_until(
        &lc,
        "system/test.victim",
        "running",
        ServiceInfo::is_running,
    )
    .await;
    lc.kill("SIGKILL", "system/test.victim").await.unwrap();
    let info = print_until(&lc, "system/test.victim", "killed", |i| !i.is_running()).await;
    assert_eq!(info.last_exit, LastExit::Signal(9));
    let raw = double.run(&["print", "system/test.victim"]).await.stdout;
    assert!(
        raw.contains("\tlast terminating signal = Killed: 9\n") && !raw.contains("last exit code"),
        "{raw}"
    );

    // A program that cannot be spawned.
    let mut missing = JobPlist::new("test.missing", &["/nonexistent/program"]);
    missing.run_at_load = true;
    lc.bootstrap("system", &missing.write(dir)).await.unwrap();
    let info = loaded(&lc, "system/test.missing").await;
    assert!(info.spawn_failed(), "{info:?}");
    assert_eq!((info.last_exit, info.runs), (LastExit::Code(78), Some(1)));
}
