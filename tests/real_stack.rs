//! `launchgraph up` against the real stack on Linux: the OpenClaw gateway (openclaw from npm, on
//! Node 24 from npm) and an Ollama-API server (ollama-proxy-plus from PyPI on 127.0.0.1:11434),
//! as two `exec` units. It checks that the gateway starts only once /api/version answers, that
//! a SIGKILL of the model server cycles the gateway in order, and that SIGTERM stops both in
//! reverse order and leaves no process behind. See docs/e2e.md.
//!
//! `scripts/e2e-real-stack.sh` installs the programs (scripts/e2e-install.sh) and runs this
//! test, passing their paths in `LAUNCHGRAPH_E2E_*` variables. Order is read from the daemon's
//! transitions (`events`), and proven again by the times the processes record themselves
//! (their exec) and by a poller of /api/version of our own.

mod support;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use support::control::{BIN, cmdline};
use support::real::*;
use support::{Daemon, process_gone};

// ---------------------------------------------------------------------------------------------
// The run

#[test]
#[ignore = "needs the real stack: run scripts/e2e-real-stack.sh"]
fn the_gateway_waits_for_the_model_server_restarts_with_it_and_stops_before_it() {
    let t0 = Instant::now();
    let s = Stack::from_env();
    let deadline = Deadline(
        Instant::now(),
        var("LAUNCHGRAPH_E2E_DEADLINE", "720")
            .parse()
            .expect("LAUNCHGRAPH_E2E_DEADLINE in seconds"),
    );
    let mut notes: Vec<(String, String)> = Vec::new();
    let mut note = |what: &str, value: String| notes.push((what.to_owned(), value));
    let node_version = Command::new(&s.node)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    say(
        t0,
        &format!(
            "node {node_version}, openclaw {}, ollama-proxy-plus at {}, launchgraph {BIN}",
            s.version,
            s.proxy.display()
        ),
    );

    // 2. The run directory: OpenClaw's own HOME, state and config; the units.
    port_free(OLLAMA_PORT);
    port_free(GATEWAY_PORT);
    let run = RunDir::new();
    say(t0, &format!("run directory: {}", run.path.display()));
    let gw_path = format!(
        "{}:/usr/local/bin:/usr/bin:/bin",
        s.node.parent().unwrap().display()
    );
    // OpenClaw keeps Node's compile cache in $TMPDIR/node-compile-cache (setting
    // NODE_COMPILE_CACHE instead makes openclaw.mjs respawn itself, so the gateway would no
    // longer be the pid we spawn). Keeping it in the install cache makes later runs start like
    // a host where the gateway ran before.
    let compile_cache = s.cache.join("node-compile-cache");
    fs::create_dir_all(&compile_cache).unwrap();
    std::os::unix::fs::symlink(&compile_cache, run.join("gateway/tmp/node-compile-cache")).unwrap();

    say(t0, "configuring OpenClaw in the run directory (offline)");
    let t = Instant::now();
    configure_gateway(&run, &s, &gw_path, &[]);
    note(
        "openclaw config set (6 keys, one call)",
        format!("{} ms", t.elapsed().as_millis()),
    );
    fs::write(run.join("gateway/exec-stamp.mjs"), EXEC_STAMP_MJS).unwrap();
    fs::write(run.join("units/ollama.toml"), ollama_unit(&run, &s, None)).unwrap();
    fs::write(
        run.join("units/openclaw-gateway.toml"),
        gateway_unit(&run, &s, &gw_path),
    )
    .unwrap();

    say(t0, "checking the units (launchgraph check)");
    check_units(&run);

    // 3. Up: the gateway starts only once /api/version answers.
    let poller = Poller::start(run.join("poll.ollama"));
    say(t0, "starting launchgraph up");
    let t_up = now_ns();
    let mut up = Up {
        daemon: Daemon::start(&run.join("units")),
        run: &run,
    };
    let d = &mut up.daemon;
    wait(d, deadline.cap(120), 0, "ollama to be ready", |t| {
        is(t, "ollama", "started", "ready", "READY")
    });
    wait(
        d,
        deadline.cap(s.gateway_start_timeout + 60),
        0,
        "the gateway to be ready",
        |t| is(t, "openclaw-gateway", "started", "ready", "READY"),
    );
    let t_gw_ready_seen = now_ns();

    let gw = "openclaw-gateway";
    let o_spawn1 = nth(d, 1, |t| is(t, "ollama", "starting", "started", "SPAWNED"));
    let o_ready1 = nth(d, 1, |t| is(t, "ollama", "started", "ready", "READY"));
    let g_wait1 = nth(d, 1, |t| {
        is(t, gw, "", "waiting", "WAITING_FOR_DEPENDENCY") && t.on.as_deref() == Some("ollama")
    });
    let g_start1 = nth(d, 1, |t| is(t, gw, "waiting", "starting", ""));
    let g_spawn1 = nth(d, 1, |t| is(t, gw, "starting", "started", "SPAWNED"));
    let g_ready1 = nth(d, 1, |t| is(t, gw, "started", "ready", "READY")).unwrap();
    let o_pid1 = o_spawn1.expect("ollama was spawned").pid();
    let g_pid1 = g_spawn1.expect("the gateway was spawned").pid();
    say(t0, &format!("ollama pid {o_pid1}, gateway pid {g_pid1}"));

    assert!(
        g_wait1.is_some(),
        "the gateway never waited for ollama (no WAITING_FOR_DEPENDENCY on=ollama)"
    );
    assert_before(
        t0,
        &o_ready1,
        &g_start1,
        "events: ollama ready before the gateway starts",
    );
    let starts = d
        .transitions()
        .iter()
        .filter(|t| is(t, gw, "", "starting", ""))
        .count();
    assert_eq!(
        starts, 1,
        "the gateway was started more than once before it became ready"
    );

    let o_exec1 = stamp(&run.join("events/ollama"), o_pid1)
        .unwrap_or_else(|| panic!("no exec time recorded for ollama pid {o_pid1}"));
    let g_exec1 = stamp(&run.join("events/gateway"), g_pid1)
        .unwrap_or_else(|| panic!("no exec time recorded for gateway pid {g_pid1}"));
    let (api_first1, api_miss1) = poller
        .up(1)
        .expect("our own /api/version poller never saw the API answer");
    let o_ready1_ns = o_ready1.unwrap().ns();
    assert!(
        g_exec1 > o_ready1_ns,
        "timestamps: the gateway process started at {g_exec1}, before launchgraph reported \
         ollama READY at {o_ready1_ns}"
    );
    assert!(
        g_exec1 > api_miss1,
        "timestamps: the gateway process started at {g_exec1}, when /api/version did not \
         answer yet (last miss at {api_miss1})"
    );
    say(
        t0,
        &format!(
            "ok: timestamps: gateway exec {} ms after ollama READY, {} ms after /api/version \
             last failed to answer",
            ms_between(o_ready1_ns, g_exec1),
            ms_between(api_miss1, g_exec1)
        ),
    );
    if g_exec1 < api_first1 {
        say(
            t0,
            &format!(
                "note: launchgraph's probe saw /api/version answer {} ms before our poller did",
                ms_between(g_exec1, api_first1)
            ),
        );
    }
    let ms = |a, b| format!("{} ms", ms_between(a, b));
    note(
        "ollama: exec -> /api/version answers (poller)",
        ms(o_exec1, api_first1),
    );
    note(
        "ollama: exec -> READY (launchgraph)",
        ms(o_exec1, o_ready1_ns),
    );
    note(
        "gate latency: ollama READY -> gateway exec",
        ms(o_ready1_ns, g_exec1),
    );
    note(
        "gate latency: /api/version answers -> gateway exec",
        ms(api_first1, g_exec1),
    );
    note(
        "gateway: exec -> READY (/startupz 200)",
        ms(g_exec1, g_ready1.ns()),
    );
    note("launchgraph up -> gateway READY", ms(t_up, g_ready1.ns()));

    wait_http(
        t0,
        GATEWAY_PORT,
        "/healthz",
        deadline.cap(30),
        "gateway /healthz",
        |b| json_has(b, "status", &"live".into()),
    );
    wait_http(
        t0,
        GATEWAY_PORT,
        "/readyz",
        deadline.cap(60),
        "gateway /readyz",
        |b| json_has(b, "ready", &true.into()),
    );
    note(
        "gateway READY -> /readyz 200 (as polled)",
        ms(t_gw_ready_seen, now_ns()),
    );

    // launchgraph fingerprints a unit once it is ready: what ran, with the package's version.
    let fp_path = run.join("state/fingerprints/openclaw-gateway.json");
    support::wait_until(&format!("a fingerprint at {}", fp_path.display()), || {
        fs::metadata(&fp_path).is_ok_and(|m| m.len() > 0)
    });
    let fp: serde_json::Value = serde_json::from_slice(&fs::read(&fp_path).unwrap()).unwrap();
    let role = |r: &str| {
        fp["files"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["role"] == r)
            .and_then(|f| f["path"].as_str())
            .map(PathBuf::from)
    };
    assert_eq!(
        fp["package"],
        serde_json::json!(["openclaw", s.version]),
        "the gateway's fingerprint names the package that ran: {fp}"
    );
    assert_eq!(role("node"), Some(s.node.clone()), "{fp}");
    assert_eq!(role("entry"), Some(s.entry.clone()), "{fp}");
    say(
        t0,
        &format!(
            "ok: fingerprint: openclaw {}, node {}, entry {}",
            s.version,
            fp["node_version"],
            s.entry.display()
        ),
    );
    let broker1 = brokers(&run).first().copied();
    if let Some(b) = broker1 {
        say(t0, &format!("gateway spawn-broker pid {b}"));
    }

    // 4. SIGKILL the model server: the gateway is stopped first, ollama restarts, then the
    // gateway.
    assert!(
        run_pids(&run.path).contains(&o_pid1),
        "pid {o_pid1} is not this run's ollama process"
    );
    say(t0, &format!("SIGKILL ollama (pid {o_pid1})"));
    let k = d.mark();
    let t_kill = now_ns();
    kill(Pid::from_raw(o_pid1), Signal::SIGKILL).unwrap();
    wait(
        d,
        deadline.cap(s.gateway_start_timeout + 90),
        k,
        "the gateway to be ready again",
        |t| is(t, gw, "started", "ready", "READY"),
    );

    let o_down = nth(d, 1, |t| {
        is(t, "ollama", "ready", "", "") && t.facts.pid == Some(o_pid1 as u32)
    });
    let g_stop = nth(d, 1, |t| {
        is(t, gw, "ready", "stopping", "DEPENDENCY_RESTARTING")
    });
    let g_stopped = nth(d, 1, |t| is(t, gw, "stopping", "", "DEPENDENCY_RESTARTING"));
    let o_start2 = nth(d, 2, |t| is(t, "ollama", "", "starting", ""));
    let o_spawn2 = nth(d, 2, |t| is(t, "ollama", "starting", "started", "SPAWNED"));
    let o_ready2 = nth(d, 2, |t| is(t, "ollama", "started", "ready", "READY"));
    let g_start2 = nth(d, 2, |t| is(t, gw, "waiting", "starting", ""));
    let g_spawn2 = nth(d, 2, |t| is(t, gw, "starting", "started", "SPAWNED"));
    let g_ready2 = nth(d, 2, |t| is(t, gw, "started", "ready", "READY")).unwrap();
    let o_pid2 = o_spawn2.expect("ollama was spawned again").pid();
    let g_pid2 = g_spawn2.expect("the gateway was spawned again").pid();

    assert!(
        o_down.is_some(),
        "no transition of ollama pid {o_pid1} leaving ready after the SIGKILL"
    );
    assert_before(
        t0,
        &o_down,
        &g_stop,
        "events: ollama died, then the gateway was stopped (DEPENDENCY_RESTARTING)",
    );
    assert_before(
        t0,
        &g_stopped,
        &o_start2,
        "events: the gateway was down before ollama was started again",
    );
    assert_before(
        t0,
        &o_ready2,
        &g_start2,
        "events: ollama ready again before the gateway starts again",
    );

    let o_exec2 = stamp(&run.join("events/ollama"), o_pid2)
        .unwrap_or_else(|| panic!("no exec time recorded for the new ollama pid {o_pid2}"));
    let g_exec2 = stamp(&run.join("events/gateway"), g_pid2)
        .unwrap_or_else(|| panic!("no exec time recorded for the new gateway pid {g_pid2}"));
    let g_stopped_ns = g_stopped.unwrap().ns();
    let o_ready2_ns = o_ready2.unwrap().ns();
    assert!(
        o_exec2 > g_stopped_ns,
        "timestamps: ollama was respawned at {o_exec2}, before the gateway was stopped at \
         {g_stopped_ns}"
    );
    assert!(
        process_gone(g_pid1),
        "the first gateway process {g_pid1} is still alive"
    );
    let (api_first2, api_miss2) = poller
        .up(2)
        .expect("our own /api/version poller never saw the API answer again");
    assert!(
        g_exec2 > o_ready2_ns,
        "timestamps: the new gateway started at {g_exec2}, before ollama READY at {o_ready2_ns}"
    );
    assert!(
        g_exec2 > api_miss2,
        "timestamps: the new gateway started at {g_exec2}, when /api/version did not answer \
         yet (last miss at {api_miss2})"
    );
    say(
        t0,
        &format!(
            "ok: timestamps: gateway stopped {} ms after the kill, ollama respawned {} ms after \
             that, gateway respawned {} ms after ollama READY",
            ms_between(t_kill, g_stopped_ns),
            ms_between(g_stopped_ns, o_exec2),
            ms_between(o_ready2_ns, g_exec2)
        ),
    );

    wait_http(
        t0,
        GATEWAY_PORT,
        "/healthz",
        deadline.cap(30),
        "gateway /healthz after the restart",
        |b| json_has(b, "status", &"live".into()),
    );
    let t_health2 = now_ns();
    // What `status` says agrees: both ready, with the new processes.
    for (unit, pid) in [("ollama", o_pid2), (gw, g_pid2)] {
        let st = d.wait_state(unit, "ready");
        assert_eq!(
            st.pid,
            Some(pid as u32),
            "{unit}'s status names its new process: {st:?}"
        );
    }

    // The first gateway's spawn-broker ran in its own session: a process-group stop does not
    // reach it. It must still go away with its gateway.
    if let Some(b) = broker1 {
        let until = Instant::now() + Duration::from_secs(10);
        while !process_gone(b) {
            assert!(
                Instant::now() < until,
                "the first gateway's spawn-broker (pid {b}) outlived its gateway (pid {g_pid1}) \
                 by more than 10 s: {:?}",
                cmdline(b)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        say(
            t0,
            &format!("ok: the first gateway's spawn-broker (pid {b}) is gone"),
        );
    }

    note(
        "restart: SIGKILL -> gateway stopped",
        ms(t_kill, g_stopped_ns),
    );
    note(
        "restart: SIGKILL -> ollama exec again",
        format!("{} (backoff 1s ±10%)", ms(t_kill, o_exec2)),
    );
    note(
        "restart: ollama exec -> /api/version answers",
        ms(o_exec2, api_first2),
    );
    note("restart: ollama exec -> READY", ms(o_exec2, o_ready2_ns));
    note(
        "restart: ollama READY -> gateway exec",
        ms(o_ready2_ns, g_exec2),
    );
    note("restart: gateway exec -> READY", ms(g_exec2, g_ready2.ns()));
    note(
        "restart cycle: SIGKILL -> gateway READY",
        ms(t_kill, g_ready2.ns()),
    );
    note(
        "restart cycle: SIGKILL -> /healthz 200 again",
        ms(t_kill, t_health2),
    );

    // 5. SIGTERM launchgraph: exit 0, the gateway stopped before ollama, nothing left behind.
    let broker2 = brokers(&run).get(1).copied();
    let unit_pids = d.unit_pids();
    let before = run_pids(&run.path);
    say(
        t0,
        &format!("processes of the run before the stop: {before:?}"),
    );
    say(t0, &format!("SIGTERM launchgraph (pid {})", d.pid()));
    let t_term = now_ns();
    let status = d.stop_within(Signal::SIGTERM, deadline.cap(90));
    let t_exit = now_ns();
    assert_eq!(
        status.code(),
        Some(0),
        "launchgraph exited {status} after SIGTERM, expected 0"
    );
    say(
        t0,
        &format!(
            "ok: launchgraph exited 0, {} ms after SIGTERM",
            ms_between(t_term, t_exit)
        ),
    );
    note(
        "shutdown: SIGTERM -> launchgraph exit 0",
        ms(t_term, t_exit),
    );

    let g_shut = nth(d, 1, |t| is(t, gw, "stopping", "stopped", "SHUTDOWN"));
    let o_shut0 = nth(d, 1, |t| is(t, "ollama", "ready", "stopping", "SHUTDOWN"));
    let o_shut = nth(d, 1, |t| is(t, "ollama", "stopping", "stopped", "SHUTDOWN"));
    assert!(
        o_shut.is_some(),
        "no 'ollama: stopping -> stopped SHUTDOWN'"
    );
    assert_before(
        t0,
        &g_shut,
        &o_shut0,
        "events: the gateway was stopped before ollama was asked to stop",
    );
    assert!(
        d.log().contains("all units stopped"),
        "launchgraph did not log 'all units stopped'"
    );

    // Nothing of the run may be left: the units' pids and process groups, the spawn-brokers
    // (own sessions), and anything else carrying the run's marker in its environment.
    let leftovers = || {
        let mut left: BTreeSet<i32> = unit_pids
            .iter()
            .chain(&before)
            .chain(broker1.iter())
            .chain(broker2.iter())
            .copied()
            .filter(|&p| !process_gone(p))
            .collect();
        left.extend(support::in_groups_or_sessions(&unit_pids));
        left.extend(run_pids(&run.path));
        left
    };
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let left = leftovers();
        if left.is_empty() {
            break;
        }
        if Instant::now() >= until {
            let mut msg =
                String::from("processes of the run outlived launchgraph by more than 10 s:");
            for p in &left {
                let _ = write!(msg, "\n  {p}: {:?}", cmdline(*p).unwrap_or_default());
                if Some(*p) == broker1 || Some(*p) == broker2 {
                    msg.push_str("  <- OpenClaw spawn-broker (own session, not in the gateway's process group)");
                }
            }
            panic!("{msg}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    say(
        t0,
        &format!(
            "ok: no process of the run is left (unit pids: {unit_pids:?}; brokers: {broker1:?} {broker2:?})"
        ),
    );
    drop(poller);

    print_summary(
        "launchgraph e2e against the real stack",
        &format!(
            "openclaw {} on node {node_version}, ollama-proxy-plus",
            s.version
        ),
        &notes,
        t0,
    );
}
