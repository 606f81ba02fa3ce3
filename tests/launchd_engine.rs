//! `launchgraph up` driving launchd jobs through the launchctl test double: two real servers
//! on loopback, started in order; a KeepAlive requirement relaunched by "launchd" with its
//! dependent cycled in order; a start racing a draining bootout; a missing GUI domain; a job
//! its owner disabled left disabled until the owner enables it (also mid-run, a maintenance
//! park); a label loaded in another domain not bootstrapped twice; a KeepAlive job launchd
//! stops relaunching kickstarted after its ThrottleInterval; another user's agent kept out of
//! the console user's domain.

mod support;

use std::path::{Path, PathBuf};

use support::launchd::{DoubleLaunchd, JobPlist};
use support::{Daemon, Transition, free_port};

/// A python server on `port` answering GET /health 200; `delay` seconds before it listens.
fn server_argv(port: u16, delay: f64, name: &str) -> Vec<String> {
    let code = format!(
        "import http.server, time\n\
         time.sleep({delay})\n\
         class H(http.server.BaseHTTPRequestHandler):\n    \
             def do_GET(self):\n        \
                 self.send_response(200); self.send_header('Content-Length', '2'); self.end_headers(); self.wfile.write(b'ok')\n    \
             def log_message(self, *a):\n        pass\n\
         print('{name} listening', flush=True)\n\
         http.server.ThreadingHTTPServer(('127.0.0.1', {port}), H).serve_forever()\n"
    );
    vec!["/usr/bin/env".into(), "python3".into(), "-c".into(), code]
}

/// `launchgraph up` on `units`, driving launchd through the double's wrapper, with the shared
/// harness (its own state directory and control socket, cleaned up on drop).
struct Up(Daemon);

impl Up {
    fn start(units: &Path, launchctl: &Path) -> Self {
        Up(Daemon::start_with_env(
            units,
            &[("LAUNCHGRAPH_LAUNCHCTL", launchctl.to_str().unwrap())],
        ))
    }

    /// Waits for the first transition at position `from` or later of `unit` from `from_state`
    /// to `to` for `reason` (`""` matches any); returns its position.
    fn wait_move(
        &mut self,
        from: usize,
        unit: &str,
        from_state: &str,
        to: &str,
        reason: &str,
    ) -> usize {
        let what = format!("{unit}: {from_state} -> {to} {reason}");
        self.0
            .wait_for(from, &what, |t| matches(t, unit, from_state, to, reason))
            .index
    }

    /// Such a transition, among those received so far.
    fn find_move(&mut self, unit: &str, from_state: &str, to: &str, reason: &str) -> Option<usize> {
        self.0
            .transitions()
            .into_iter()
            .find(|t| matches(t, unit, from_state, to, reason))
            .map(|t| t.index)
    }

    fn log(&self) -> String {
        self.0.log()
    }

    /// SIGTERM, then the exit code once the log has ended.
    fn stop(&mut self) -> Option<i32> {
        self.0.terminate().code()
    }
}

/// `t` is `unit`'s move from `from` to `to` for `reason`; `""` matches anything.
fn matches(t: &Transition, unit: &str, from: &str, to: &str, reason: &str) -> bool {
    let field = |want: &str, got: &str| want.is_empty() || want == got;
    field(unit, &t.unit) && field(from, &t.from) && field(to, &t.to) && field(reason, &t.reason)
}

fn write_unit(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(format!("{name}.toml")), text).unwrap();
}

fn launchd_unit(label: &str, plist: &Path, domain: &str, requires: &[&str], port: u16) -> String {
    let requires = requires
        .iter()
        .map(|r| format!("{r:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "requires = [{requires}]\n\
         [launchd]\nlabel = {label:?}\nplist = {:?}\ndomain = {domain:?}\n\
         [ready]\nhttp = \"http://127.0.0.1:{port}/health\"\ninterval = \"200ms\"\nstart-timeout = \"30s\"\n\
         [restart]\ninitial = \"100ms\"\njitter = 0.0\n",
        plist.display().to_string()
    )
}

/// Calls whose first word is `verb` and that name `label`.
fn calls_for(double: &DoubleLaunchd, verb: &str, label: &str) -> usize {
    double
        .calls()
        .iter()
        .filter(|c| c.first().is_some_and(|v| v == verb) && c.iter().any(|a| a.contains(label)))
        .count()
}

struct Stack {
    _dir: tempfile::TempDir,
    units: PathBuf,
    model_plist: PathBuf,
    model_port: u16,
    gateway_port: u16,
}

/// An Ollama-like KeepAlive job and a gateway-like job that requires it.
fn stack(domain: &str) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let units = dir.path().join("units");
    let plists = dir.path().join("plists");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::create_dir_all(&plists).unwrap();
    let (model_port, gateway_port) = (free_port(), free_port());
    let model_argv = server_argv(model_port, 0.5, "model");
    let mut model = JobPlist::new(
        "test.model",
        &model_argv.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    model.keep_alive = true;
    model.run_at_load = true;
    model.throttle_interval = Some(1);
    let model_plist = model.write(&plists);
    let gateway_argv = server_argv(gateway_port, 0.0, "gateway");
    let gateway = JobPlist::new(
        "test.gateway",
        &gateway_argv.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let gateway_plist = gateway.write(&plists);
    write_unit(
        &units,
        "model",
        &launchd_unit("test.model", &model_plist, domain, &[], model_port),
    );
    write_unit(
        &units,
        "gateway",
        &launchd_unit(
            "test.gateway",
            &gateway_plist,
            domain,
            &["model"],
            gateway_port,
        ),
    );
    Stack {
        _dir: dir,
        units,
        model_plist,
        model_port,
        gateway_port,
    }
}

/// Whether the server on `port` answers GET /health with 200.
fn get(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    support::http_get(addr, "/health", support::DEADLINE).is_some_and(|a| a.code == 200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launchd_jobs_start_in_order_and_a_relaunch_cycles_the_dependent() {
    let double = DoubleLaunchd::start(300).await;
    let s = stack("system");
    let mut d = Up::start(&s.units, &double.wrapper_path);

    let model_ready = d.wait_move(0, "model", "started", "ready", "READY");
    let gateway_start = d.wait_move(0, "gateway", "waiting", "starting", "");
    let gateway_ready = d.wait_move(0, "gateway", "started", "ready", "READY");
    assert!(
        model_ready < gateway_start && gateway_start < gateway_ready,
        "{}",
        d.log()
    );
    assert!(
        get(s.model_port) && get(s.gateway_port),
        "both servers answer"
    );

    // launchd's sequence: the owner's disable asked about before bootstrap, never overridden
    // (no enable); the KeepAlive job is not kickstarted on top of launchd's own start; the
    // idle gateway is.
    let calls = double.calls();
    let asked = calls
        .iter()
        .position(|c| c[0] == "print-disabled" && c[1] == "system")
        .unwrap();
    let bootstrap = calls
        .iter()
        .position(|c| c[0] == "bootstrap" && c[2].ends_with("test.model.plist"))
        .unwrap();
    assert!(asked < bootstrap, "{calls:?}");
    assert!(!calls.iter().any(|c| c[0] == "enable"), "{calls:?}");
    assert_eq!(
        calls_for(&double, "kickstart", "test.model"),
        0,
        "{calls:?}"
    );
    assert_eq!(
        calls_for(&double, "kickstart", "test.gateway"),
        1,
        "{calls:?}"
    );

    // The model crashes; launchd relaunches it after its ThrottleInterval.
    double.crash("test.model", "SIGKILL").await;
    let relaunch = d.wait_move(0, "model", "ready", "started", "RELAUNCHED_BY_LAUNCHD");
    let gw_stop = d.wait_move(
        relaunch,
        "gateway",
        "ready",
        "stopping",
        "DEPENDENCY_RESTARTING",
    );
    let model_again = d.wait_move(relaunch, "model", "started", "ready", "READY");
    let gw_again = d.wait_move(relaunch, "gateway", "waiting", "starting", "");
    let gw_ready_again = d.wait_move(gw_again, "gateway", "started", "ready", "READY");
    assert!(
        gw_stop < model_again,
        "the dependent went down first: {}",
        d.log()
    );
    assert!(
        model_again < gw_again && gw_again < gw_ready_again,
        "{}",
        d.log()
    );
    assert_eq!(
        calls_for(&double, "kickstart", "test.model"),
        0,
        "launchd's relaunch is not fought"
    );
    assert!(get(s.model_port) && get(s.gateway_port));

    // Shutdown: the gateway first, then the KeepAlive model is booted out (not killed, which
    // launchd would undo).
    assert_eq!(d.stop(), Some(0), "{}", d.log());
    let gw_stopped = d
        .find_move("gateway", "stopping", "stopped", "SHUTDOWN")
        .expect("gateway stopped");
    let model_stopping = d
        .find_move("model", "ready", "stopping", "SHUTDOWN")
        .expect("model stopped");
    assert!(gw_stopped < model_stopping, "{}", d.log());
    assert_eq!(calls_for(&double, "bootout", "test.model"), 1);
    let out = double.run(&["print", "system/test.model"]).await;
    assert_eq!(out.code, 113, "the model is unloaded: {}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_during_a_draining_bootout_is_retried_and_succeeds() {
    let double = DoubleLaunchd::start(1500).await;
    let s = stack("system");
    // Someone loaded and just unloaded the model: launchd is still draining it.
    let out = double
        .run(&["bootstrap", "system", s.model_plist.to_str().unwrap()])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = double.run(&["bootout", "system/test.model"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);

    let mut d = Up::start(&s.units, &double.wrapper_path);
    d.wait_move(0, "gateway", "started", "ready", "READY");
    assert!(get(s.model_port));
    let bootstraps: Vec<i32> = double
        .calls()
        .iter()
        .filter(|c| c[0] == "bootstrap")
        .map(|_| 0)
        .collect();
    assert!(
        bootstraps.len() >= 2,
        "the first bootstrap of the drain was refused and retried: {:?}",
        double.calls()
    );
    assert!(
        d.find_move("model", "", "backoff", "").is_none(),
        "retried inside the start, not as a failure: {}",
        d.log()
    );
    assert_eq!(d.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_gui_domain_waits_instead_of_crash_looping() {
    let double = DoubleLaunchd::start(300).await;
    let s = stack("gui/501");
    let mut d = Up::start(&s.units, &double.wrapper_path);
    d.wait_move(0, "model", "starting", "waiting", "NO_GUI_SESSION");
    let waits = d.wait_move(0, "gateway", "", "waiting", "");
    assert_eq!(
        d.0.transitions()[waits].on.as_deref(),
        Some("model"),
        "{}",
        d.log()
    );
    assert_eq!(calls_for(&double, "bootstrap", "test.model"), 0);
    // `status` tells the same: waiting for a session, not failing.
    let model = d.0.wait_state("model", "waiting");
    assert_eq!(model.reason, "NO_GUI_SESSION", "{model:?}");
    assert!(d.find_move("", "", "backoff", "").is_none(), "{}", d.log());
    assert_eq!(d.stop(), Some(0), "{}", d.log());
}

/// `gui/console` is alice's (uid 501, logged in, so her domain exists), and the plist is
/// another user's (uid 502 owns it): the agent is not bootstrapped into alice's domain, where
/// it would run as her; the unit waits, naming both users and the domain to set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn root_another_user_s_agent_is_not_bootstrapped_into_the_console_user_s_domain() {
    support::needs_root("chown");
    let double = DoubleLaunchd::start(300).await;
    double.login(501).await;
    let dir = tempfile::tempdir().unwrap();
    let units = dir.path().join("units");
    std::fs::create_dir_all(&units).unwrap();
    let console = dir.path().join("console");
    std::fs::write(&console, "").unwrap();
    std::os::unix::fs::chown(&console, Some(501), Some(20)).unwrap();
    let port = free_port();
    let argv = server_argv(port, 0.0, "gateway");
    let plist = JobPlist::new(
        "test.gateway",
        &argv.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .write(dir.path());
    std::os::unix::fs::chown(&plist, Some(502), Some(20)).unwrap();
    write_unit(
        &units,
        "gateway",
        &launchd_unit("test.gateway", &plist, "gui/console", &[], port),
    );
    let mut d = Up(Daemon::start_with_env(
        &units,
        &[
            (
                "LAUNCHGRAPH_LAUNCHCTL",
                double.wrapper_path.to_str().unwrap(),
            ),
            ("LAUNCHGRAPH_CONSOLE_DEVICE", console.to_str().unwrap()),
        ],
    ));
    d.wait_move(
        0,
        "gateway",
        "starting",
        "waiting",
        "AGENT_DOMAIN_OTHER_USER",
    );
    let status = d.0.wait_state("gateway", "waiting");
    assert_eq!(status.reason, "AGENT_DOMAIN_OTHER_USER", "{status:?}");
    assert!(
        status.detail.contains("LaunchAgent of uid 502")
            && status.detail.contains("now gui/501")
            && status.detail.contains("set `domain = \"gui/502\"`"),
        "{status:?}"
    );
    for verb in ["enable", "bootstrap", "kickstart"] {
        assert_eq!(
            calls_for(&double, verb, "test.gateway"),
            0,
            "{verb}: {}",
            d.log()
        );
    }
    assert!(!get(port), "nothing runs the gateway");
    assert!(d.find_move("", "", "backoff", "").is_none(), "{}", d.log());
    assert_eq!(d.stop(), Some(0), "{}", d.log());
}

/// `openclaw gateway stop --disable` (or an admin) left the gateway disabled: launchgraph
/// neither enables nor bootstraps it; the unit waits with its reason, not as a failure, and
/// `check` warns; once the owner enables it, it starts by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_its_owner_disabled_waits_and_starts_once_the_owner_enables_it() {
    let double = DoubleLaunchd::start(300).await;
    let s = stack("system");
    let out = double.run(&["disable", "system/test.gateway"]).await;
    assert_eq!(out.code, 0);
    let state = s.units.parent().unwrap().join("state");
    let out = check(&s.units, &state, &double.wrapper_path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "a warning, not a block: {stdout}");
    assert!(
        stdout.contains("gateway: warning DISABLED_BY_OWNER"),
        "{stdout}"
    );
    assert!(
        stdout.contains("fix: `launchctl enable system/test.gateway`"),
        "{stdout}"
    );

    let mut d = Up::start(&s.units, &double.wrapper_path);
    d.wait_move(0, "model", "started", "ready", "READY");
    let held = d.wait_move(0, "gateway", "starting", "waiting", "DISABLED_BY_OWNER");
    let status = d.0.wait_state("gateway", "waiting");
    assert_eq!(status.reason, "DISABLED_BY_OWNER", "{status:?}");
    assert!(
        status.detail.contains(
            "system/test.gateway is disabled (`launchctl print-disabled system` shows it disabled)"
        ) && status
            .detail
            .contains("Fix: `launchctl enable system/test.gateway`"),
        "{status:?}"
    );
    // Re-checked, not given up on: a second look finds it still disabled.
    let again = d.wait_move(
        held + 1,
        "gateway",
        "starting",
        "waiting",
        "DISABLED_BY_OWNER",
    );
    assert!(again > held);
    for verb in ["enable", "bootstrap", "kickstart"] {
        assert_eq!(
            calls_for(&double, verb, "test.gateway"),
            0,
            "{verb}: {:?}",
            double.calls()
        );
    }
    assert!(!get(s.gateway_port), "nothing runs the gateway");
    assert!(
        d.find_move("gateway", "", "backoff", "").is_none(),
        "{}",
        d.log()
    );

    // The owner enables it: it starts on its own.
    let out = double.run(&["enable", "system/test.gateway"]).await;
    assert_eq!(out.code, 0);
    d.wait_move(again, "gateway", "started", "ready", "READY");
    assert!(get(s.gateway_port));
    assert_eq!(
        calls_for(&double, "enable", "test.gateway"),
        1,
        "only the owner's"
    );
    assert_eq!(d.stop(), Some(0), "{}", d.log());
}

/// OpenClaw's self-update parks its running KeepAlive job: it disables the job, then the job
/// exits, and launchd does not relaunch it while npm replaces its files. launchgraph does not
/// kickstart it either (its relaunch wait would otherwise end in a kickstart): the unit waits
/// with DISABLED_BY_OWNER, and when the update enables the job again, it is started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keepalive_job_parked_by_its_owner_is_not_relaunched_behind_its_back() {
    let double = DoubleLaunchd::start(300).await;
    let s = stack("system");
    let mut d = Up::start(&s.units, &double.wrapper_path);
    d.wait_move(0, "gateway", "started", "ready", "READY");
    let from = double.calls().len();

    let out = double.run(&["disable", "system/test.model"]).await;
    assert_eq!(out.code, 0);
    double.crash("test.model", "SIGTERM").await;
    let parked = d.wait_move(0, "model", "started", "waiting", "DISABLED_BY_OWNER");
    d.wait_move(0, "gateway", "ready", "stopping", "DEPENDENCY_RESTARTING");
    let status = d.0.wait_state("model", "waiting");
    assert_eq!(status.reason, "DISABLED_BY_OWNER", "{status:?}");
    // Longer than its ThrottleInterval (1 s) plus the grace: still not started by anyone.
    let again = d.wait_move(
        parked + 1,
        "model",
        "starting",
        "waiting",
        "DISABLED_BY_OWNER",
    );
    let calls = double.calls();
    for verb in ["enable", "kickstart", "bootstrap"] {
        assert!(
            call_at(&calls, from, verb, "test.model").is_none(),
            "{verb}: {calls:?}"
        );
    }
    assert!(!get(s.model_port), "parked: nothing serves");
    assert!(
        d.find_move("model", "", "backoff", "").is_none(),
        "{}",
        d.log()
    );

    // The update is done and enables the job: launchgraph starts it, then its dependent.
    let out = double.run(&["enable", "system/test.model"]).await;
    assert_eq!(out.code, 0);
    d.wait_move(again, "model", "started", "ready", "READY");
    d.wait_move(again, "gateway", "started", "ready", "READY");
    assert!(get(s.model_port) && get(s.gateway_port));
    assert_eq!(d.stop(), Some(0), "{}", d.log());
}

/// `brew services start ollama` over SSH loaded the label into user/501; the unit says
/// gui/501. launchgraph does not bootstrap a second copy into gui/501: the unit waits, naming
/// user/501, and `check` warns; once that copy is booted out, the unit's own starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_loaded_in_another_domain_is_not_bootstrapped_a_second_time() {
    let double = DoubleLaunchd::start(300).await;
    double.login(501).await;
    let s = stack("gui/501");
    let out = double
        .run(&["bootstrap", "user/501", s.model_plist.to_str().unwrap()])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = double.run(&["print", "user/501/test.model"]).await;
    assert_eq!(
        out.code, 0,
        "the double answers print in user/501: {}",
        out.stderr
    );
    assert!(
        out.stdout.starts_with("user/501/test.model = {"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("\tdomain = user/501\n"),
        "{}",
        out.stdout
    );

    let state = s.units.parent().unwrap().join("state");
    let out = check(&s.units, &state, &double.wrapper_path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "a warning, not a block: {stdout}");
    assert!(
        stdout.contains("model: warning LOADED_IN_OTHER_DOMAIN"),
        "{stdout}"
    );
    assert!(
        stdout.contains("test.model is already loaded in user/501 (running as pid"),
        "{stdout}"
    );

    let mut d = Up::start(&s.units, &double.wrapper_path);
    d.wait_move(0, "model", "starting", "waiting", "LOADED_IN_OTHER_DOMAIN");
    let status = d.0.wait_state("model", "waiting");
    assert_eq!(status.reason, "LOADED_IN_OTHER_DOMAIN", "{status:?}");
    assert!(
        status.detail.contains("already loaded in user/501")
            && status.detail.contains("the unit's domain is gui/501")
            && status
                .detail
                .contains("Fix: `launchctl bootout user/501/test.model`"),
        "{status:?}"
    );
    let into_gui = |calls: &[Vec<String>]| {
        calls
            .iter()
            .filter(|c| c[0] == "bootstrap" && c[1] == "gui/501")
            .count()
    };
    assert_eq!(into_gui(&double.calls()), 0, "{:?}", double.calls());
    assert!(
        d.find_move("model", "", "backoff", "").is_none(),
        "{}",
        d.log()
    );

    // The other copy goes: the unit's own is bootstrapped into gui/501, once.
    let out = double.run(&["bootout", "user/501/test.model"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    d.wait_move(0, "model", "started", "ready", "READY");
    d.wait_move(0, "gateway", "started", "ready", "READY");
    assert_eq!(
        into_gui(&double.calls()),
        2,
        "model and gateway: {:?}",
        double.calls()
    );
    assert_eq!(double.run(&["print", "gui/501/test.model"]).await.code, 0);
    assert_eq!(
        double.run(&["print", "user/501/test.model"]).await.code,
        113
    );
    assert_eq!(d.stop(), Some(0), "{}", d.log());
}

/// launchd stops relaunching a KeepAlive job (its penalty box after a crash burst): after the
/// job's ThrottleInterval (1 s) plus a grace, launchgraph kickstarts it itself and says so,
/// instead of waiting out the start timeout (30 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keepalive_job_launchd_stops_relaunching_is_kickstarted_after_its_throttle_interval() {
    let double = DoubleLaunchd::start(300).await;
    let s = stack("system");
    let mut d = Up::start(&s.units, &double.wrapper_path);
    d.wait_move(0, "gateway", "started", "ready", "READY");
    double
        .admin(&["x-penalty", "system/test.model", "on"])
        .await;
    double.crash("test.model", "SIGKILL").await;
    let relaunching = d.wait_move(0, "model", "ready", "started", "RELAUNCHED_BY_LAUNCHD");
    let missed = d.wait_move(
        relaunching,
        "model",
        "started",
        "started",
        "LAUNCHD_NOT_RELAUNCHED",
    );
    let ready = d.wait_move(missed, "model", "started", "ready", "READY");
    d.wait_move(ready, "gateway", "started", "ready", "READY");
    let t = &d.0.transitions()[missed];
    let cause = t.facts.cause.clone().unwrap_or_default();
    assert!(
        cause.contains(
            "launchd did not relaunch system/test.model within its ThrottleInterval (1s) plus \
             3s: a throttled respawn that never came"
        ) && cause.contains("`launchctl kickstart system/test.model`"),
        "{t:?}"
    );
    assert_eq!(
        calls_for(&double, "kickstart", "test.model"),
        1,
        "{:?}",
        double.calls()
    );
    assert!(
        d.find_move("model", "", "backoff", "").is_none(),
        "the run went on, not a failure: {}",
        d.log()
    );
    assert!(
        d.find_move("model", "", "", "READY_TIMEOUT").is_none(),
        "{}",
        d.log()
    );
    assert!(
        d.log().contains("LAUNCHD_NOT_RELAUNCHED"),
        "logged with its reason code: {}",
        d.log()
    );
    assert!(get(s.model_port));
    assert_eq!(d.stop(), Some(0), "{}", d.log());
}

/// Ollama.app's `ollama serve` holds the port while the Homebrew job crash-loops on "address
/// already in use", relaunched by launchd (KeepAlive): the probe is answered by the stranger
/// through every relaunch, so the job is never ready, and the stop and the log (once for the
/// run, however many relaunches) name the stranger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_job_is_not_ready_on_a_strangers_port() {
    let double = DoubleLaunchd::start(300).await;
    let dir = tempfile::tempdir().unwrap();
    let units = dir.path().join("units");
    std::fs::create_dir_all(&units).unwrap();
    let port = free_port();
    let stranger = support::Stranger::listen(([127, 0, 0, 1], port).into());
    let code = format!(
        "import socket, sys\n\
         s = socket.socket()\n\
         try:\n    s.bind(('127.0.0.1', {port}))\n\
         except OSError as e:\n    print('Error: listen tcp 127.0.0.1:{port}:', e, flush=True)\n    sys.exit(1)\n"
    );
    let mut job = JobPlist::new("test.ollama", &["/usr/bin/env", "python3", "-c", &code]);
    job.keep_alive = true;
    job.run_at_load = true;
    job.throttle_interval = Some(1);
    let plist = job.write(dir.path());
    write_unit(
        &units,
        "ollama",
        &format!(
            "[launchd]\nlabel = \"test.ollama\"\nplist = {:?}\ndomain = \"system\"\n\
             [ready]\nhttp = \"http://127.0.0.1:{port}/api/version\"\ninterval = \"200ms\"\n\
             start-timeout = \"4s\"\n\
             [restart]\ninitial = \"30s\"\njitter = 0.0\n",
            plist.display().to_string()
        ),
    );
    let mut d = Up::start(&units, &double.wrapper_path);
    let relaunched = d.wait_move(0, "ollama", "started", "started", "RELAUNCHED_BY_LAUNCHD");
    let stop = d.wait_move(relaunched, "ollama", "started", "stopping", "READY_TIMEOUT");
    let stopping =
        d.0.transitions()
            .into_iter()
            .find(|t| t.index == stop)
            .unwrap();
    let named = format!("pid {} ({})", stranger.pid(), stranger.command());
    let cause = stopping.facts.cause.clone().unwrap_or_default();
    assert!(
        cause.contains("PORT_HELD_BY_OTHER") && cause.contains(&named),
        "the stop names the stranger: {}",
        stopping.line
    );
    assert!(
        d.find_move("ollama", "started", "ready", "").is_none(),
        "never ready; the log:\n{}",
        d.log()
    );
    d.wait_move(stop, "ollama", "stopping", "backoff", "READY_TIMEOUT");
    let warnings: Vec<String> = d
        .0
        .lines()
        .into_iter()
        .filter(|l| l.contains("ollama: readiness probe of") && l.contains("PORT_HELD_BY_OTHER"))
        .collect();
    assert_eq!(warnings.len(), 1, "once for the run; the log:\n{}", d.log());
    assert!(warnings[0].contains(&named), "{}", warnings[0]);
    assert_eq!(d.stop(), Some(0), "{}", d.log());
}

/// `launchgraph check` on `units`, asking the double what launchd has loaded.
fn check(units: &Path, state: &Path, launchctl: &Path) -> std::process::Output {
    std::process::Command::new(support::control::BIN)
        .arg("check")
        .arg("--units")
        .arg(units)
        .arg("--state-dir")
        .arg(state)
        .arg("--launchctl")
        .arg(launchctl)
        .env_remove("LAUNCHGRAPH_LAUNCHCTL")
        .output()
        .expect("run launchgraph check")
}

/// The position of the first call after `from` whose verb is `verb` and that names `label`.
fn call_at(calls: &[Vec<String>], from: usize, verb: &str, label: &str) -> Option<usize> {
    calls
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, c)| c[0] == verb && c.iter().any(|a| a.contains(label)))
        .map(|(i, _)| i)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_plist_not_reloaded_is_stale_in_check_and_bootstrapped_again_before_start() {
    let double = DoubleLaunchd::start(300).await;
    let dir = tempfile::tempdir().unwrap();
    let (units, plists, state) = (
        dir.path().join("units"),
        dir.path().join("plists"),
        dir.path().join("state"),
    );
    std::fs::create_dir_all(&units).unwrap();
    std::fs::create_dir_all(&plists).unwrap();
    let port = free_port();
    // What an older install wrote and launchd loaded: a program that does not serve.
    let old = JobPlist::new("test.gateway", &["/bin/sh", "-c", "exit 1"]);
    let plist = old.write(&plists);
    let out = double
        .run(&["bootstrap", "system", plist.to_str().unwrap()])
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    // An upgrade rewrote the plist; nobody ran bootout and bootstrap.
    let argv = server_argv(port, 0.0, "gateway v2");
    let new = JobPlist::new(
        "test.gateway",
        &argv.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(new.write(&plists), plist);
    write_unit(
        &units,
        "gateway",
        &launchd_unit("test.gateway", &plist, "system", &[], port),
    );

    // `check` names what differs, file against loaded, and the fix; a warning, not a block.
    let out = check(&units, &state, &double.wrapper_path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("gateway: warning LOADED_DEFINITION_STALE"),
        "{stdout}"
    );
    assert!(
        stdout.contains("program: file /usr/bin/env, loaded /bin/sh"),
        "{stdout}"
    );
    // (The arguments are not compared here: the server's script spans lines, which print
    // cannot show one per line; src/launchd/definition.rs tests that comparison.)
    assert!(
        stdout.contains(&format!(
            "`launchctl bootout system/test.gateway`, then `launchctl bootstrap system {}`",
            plist.display()
        )),
        "{stdout}"
    );

    // Before it starts the job, launchgraph replaces the stale definition: bootout, wait
    // until it is gone, bootstrap, then kickstart; the new program is what runs.
    let from = double.calls().len();
    let mut d = Up::start(&units, &double.wrapper_path);
    d.wait_move(0, "gateway", "started", "ready", "READY");
    assert!(get(port), "the new program serves");
    let calls = double.calls();
    let bootout = call_at(&calls, from, "bootout", "test.gateway").expect("a bootout");
    let bootstrap = call_at(&calls, from, "bootstrap", "test.gateway").expect("a bootstrap");
    let kickstart = call_at(&calls, from, "kickstart", "test.gateway").expect("a kickstart");
    assert!(bootout < bootstrap && bootstrap < kickstart, "{calls:?}");
    let gone = calls[bootout..bootstrap]
        .iter()
        .any(|c| c[0] == "print" && c[1] == "system/test.gateway");
    assert!(gone, "it waited for the job to be gone: {calls:?}");
    assert!(
        d.log().contains("LOADED_DEFINITION_STALE"),
        "logged with its reason code: {}",
        d.log()
    );
    let loaded = match double
        .launchctl()
        .print("system/test.gateway")
        .await
        .unwrap()
    {
        launchgraph::launchd::PrintOutcome::Loaded(i) => i,
        other => panic!("{other:?}"),
    };
    assert_eq!(loaded.program.as_deref(), Some("/usr/bin/env"));
    assert_eq!(loaded.arguments[..3], argv[..3]);
    assert_eq!(d.stop(), Some(0), "{}", d.log());

    // Loaded and file agree now: `check` says nothing more about it.
    let out = check(&units, &state, &double.wrapper_path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("LOADED_DEFINITION_STALE"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_launchd_cannot_spawn_is_launchd_spawn_failed_not_a_program_exit() {
    let double = DoubleLaunchd::start(300).await;
    let dir = tempfile::tempdir().unwrap();
    let (units, plists) = (dir.path().join("units"), dir.path().join("plists"));
    std::fs::create_dir_all(&units).unwrap();
    std::fs::create_dir_all(&plists).unwrap();
    let port = free_port();
    let argv = server_argv(port, 0.0, "gateway");
    let plist = JobPlist::new(
        "test.gateway",
        &argv.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .write(&plists);
    // The program exists (preflight passes) but launchd refuses to run it, as it refuses a
    // quarantined binary: launchd records 78 itself. OpenClaw's own 78 would fail the unit.
    double.admin(&["x-quarantine", "/usr/bin/env"]).await;
    let unit = launchd_unit("test.gateway", &plist, "system", &[], port)
        + "no-restart-exit-codes = [78]\n";
    write_unit(&units, "gateway", &unit);

    let mut d = Up::start(&units, &double.wrapper_path);
    let first = d.wait_move(0, "gateway", "starting", "backoff", "LAUNCHD_SPAWN_FAILED");
    let t = &d.0.transitions()[first];
    let cause = t.facts.cause.clone().unwrap_or_default();
    assert!(
        cause.contains("launchd could not spawn /usr/bin/env")
            && cause.contains("78: EX_CONFIG")
            && cause.contains("not an exit of the program"),
        "{cause}"
    );
    // Retried with backoff, never failed for the program's no-restart exit code.
    d.wait_move(
        first + 1,
        "gateway",
        "starting",
        "backoff",
        "LAUNCHD_SPAWN_FAILED",
    );
    assert!(
        d.find_move("gateway", "", "failed", "NO_RESTART_EXIT_CODE")
            .is_none(),
        "{}",
        d.log()
    );
    assert!(
        d.find_move("gateway", "", "", "EXITED").is_none(),
        "not the program-exit path: {}",
        d.log()
    );
    assert_eq!(d.stop(), Some(0), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keepalive_job_launchd_cannot_relaunch_is_booted_out_and_retried_not_failed_for_78() {
    let double = DoubleLaunchd::start(300).await;
    let s = stack("system");
    // The model's unit says 78 means "do not restart", as OpenClaw's does.
    let unit = std::fs::read_to_string(s.units.join("model.toml")).unwrap()
        + "no-restart-exit-codes = [78]\n";
    write_unit(&s.units, "model", &unit);
    let mut d = Up::start(&s.units, &double.wrapper_path);
    d.wait_move(0, "gateway", "started", "ready", "READY");

    // Its program goes away behind launchd's back (refused from now on), then it crashes:
    // launchd's relaunch cannot spawn it and records 78 itself.
    double.admin(&["x-quarantine", "/usr/bin/env"]).await;
    let from = double.calls().len();
    double.crash("test.model", "SIGKILL").await;
    let retried = d.wait_move(0, "model", "starting", "backoff", "LAUNCHD_SPAWN_FAILED");
    let cause = d.0.transitions()[retried]
        .facts
        .cause
        .clone()
        .unwrap_or_default();
    assert!(
        cause.contains("launchd could not spawn /usr/bin/env"),
        "{cause}"
    );
    assert!(
        d.log().contains("LAUNCHD_SPAWN_FAILED"),
        "the failed relaunch is logged with its code: {}",
        d.log()
    );
    assert!(
        d.find_move("model", "", "failed", "NO_RESTART_EXIT_CODE")
            .is_none(),
        "launchd's 78 is not the program's: {}",
        d.log()
    );
    assert!(
        call_at(&double.calls(), from, "bootout", "test.model").is_some(),
        "booted out, so launchd stops retrying it: {:?}",
        double.calls()
    );
    assert_eq!(d.stop(), Some(0), "{}", d.log());
}
