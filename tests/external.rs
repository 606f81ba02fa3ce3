//! `[external]` units end to end: the real binary watching a service it does not run, as it
//! watches Ollama.app's own `ollama serve` on a Mac.
//!
//! The test itself runs the "Ollama": a small loopback HTTP server answering
//! `GET /api/version`, started outside launchgraph, in its own process group, and recording
//! every catchable signal it receives. launchgraph declares it `[external]` with an http
//! readiness probe and gates two `exec` units on it (a gateway, and a dashboard that requires
//! the gateway). The test checks that the gateway starts only once the server answers, that
//! killing the server stops the dependents (dashboard first) without launchgraph ever
//! stopping or signalling the server's unit, that they start again when the test starts a new
//! server, and that neither `stop` of the external unit nor SIGTERM to the daemon touches the
//! server.

mod support;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use support::control::{unit, wait_status};
use support::{DEADLINE, Daemon, UnitDir, free_port, group_gone, http_get, process_gone, q};

/// The stand-in for Ollama: `python3 -c SERVER EVENTS PORT`. It records `ollama listen NS`
/// (taken just before `listen()`) and `ollama signal-N NS` for any catchable signal it gets,
/// in the format of the units' own records.
const SERVER: &str = r#"import time
import http.server, os, signal, sys

events, port = sys.argv[1], int(sys.argv[2])


def record(what, t=None):
    t = time.time_ns() if t is None else t
    fd = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"ollama {what} {t}\n".encode())
    finally:
        os.close(fd)


for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
    signal.signal(s, lambda n, _f: record(f"signal-{n}"))


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/api/version":
            return self.send_error(404)
        body = b'{"version":"0.0.0-test"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler, bind_and_activate=False)
server.server_bind()
t = time.time_ns()
server.server_activate()
record("listen", t)
server.serve_forever()
"#;

/// The test's own server, killed when dropped.
struct Ollama {
    child: Child,
}

impl Ollama {
    /// Starts it in a process group of its own: nothing sent to the test's group or to the
    /// daemon's reaches it.
    fn start(d: &UnitDir, port: u16) -> Ollama {
        let child = Command::new("/usr/bin/env")
            .args(["python3", "-u", "-c", SERVER])
            .arg(d.path("events"))
            .arg(port.to_string())
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .expect("start the stand-in Ollama");
        Ollama { child }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGKILL, as a crash (or quitting the app) would end it; waits for it to be reaped.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None)) && !process_gone(self.pid())
    }
}

impl Drop for Ollama {
    fn drop(&mut self) {
        self.kill();
    }
}

const RUN_BY: &str = "the test, outside launchgraph";

#[test]
fn an_external_unit_gates_and_cycles_its_dependents_and_is_never_touched() {
    let d = UnitDir::new();
    let (port, gateway_port, dashboard_port) = (free_port(), free_port(), free_port());
    d.unit(
        "ollama",
        &format!(
            "description = \"Ollama, run by the test\"\n\
             [external]\nrun-by = {}\n\
             [ready]\nhttp = \"http://127.0.0.1:{port}/api/version\"\nbody-contains = \"version\"\n\
             interval = \"100ms\"\n\
             [alive]\nhttp = \"http://127.0.0.1:{port}/api/version\"\ninterval = \"100ms\"\n\
             timeout = \"500ms\"\nfailures = 2\n",
            q(RUN_BY)
        ),
    );
    d.unit(
        "gateway",
        &format!(
            "requires = [\"ollama\"]\n[exec]\ncommand = {}\nstop-timeout = \"5s\"\n\
             [ready]\ntcp = \"127.0.0.1:{gateway_port}\"\ninterval = \"50ms\"\n\
             [restart]\ninitial = \"50ms\"\njitter = 0\n",
            d.serve("gateway", "tcp", &[&gateway_port.to_string(), "0"])
        ),
    );
    d.unit(
        "dashboard",
        &format!(
            "requires = [\"gateway\"]\n[exec]\ncommand = {}\nstop-timeout = \"5s\"\n\
             [ready]\ntcp = \"127.0.0.1:{dashboard_port}\"\ninterval = \"50ms\"\n",
            d.serve("dashboard", "tcp", &[&dashboard_port.to_string(), "0"])
        ),
    );

    // The daemon comes up first: nothing answers on the port yet.
    let mut daemon = Daemon::start(&d.units());
    let watching = daemon.wait_for(0, "ollama watched", |t| t.is("ollama", "started"));
    assert_eq!(watching.reason, "WATCHING", "{}", watching.line);
    assert_eq!(
        watching.facts.pid, None,
        "nothing was spawned: {}",
        watching.line
    );
    let gateway_waits = daemon.wait_for(0, "gateway waiting", |t| t.is("gateway", "waiting"));
    assert_eq!(gateway_waits.on.as_deref(), Some("ollama"));
    // Watched, and not ready, for as long as nothing answers: status says who runs it.
    // Its failing readiness probe is shown once its first attempt has been reported.
    let units = wait_status(daemon.socket(), "ollama's failing probe shown", |units| {
        let u = unit(units, "ollama");
        u.state == "started" && u.last_probe.as_ref().is_some_and(|p| !p.ok)
    });
    let ollama = unit(&units, "ollama");
    assert_eq!(ollama.kind, "external");
    assert_eq!(ollama.run_by.as_deref(), Some(RUN_BY));
    assert_eq!(ollama.pid, None);
    assert_eq!(ollama.reason, "WATCHING");
    let text = daemon.cli(&["status"]);
    assert!(
        text.ok()
            .contains(&format!("run by {RUN_BY}; launchgraph only watches it")),
        "{}",
        text.stdout
    );
    assert_eq!(
        daemon
            .wait_state("gateway", "waiting")
            .waiting_on
            .as_deref(),
        Some("ollama")
    );
    assert!(
        d.events().times("gateway", "exec").is_empty(),
        "the gateway never ran"
    );

    // The test starts "Ollama": launchgraph sees it ready, then starts the chain in order.
    let mut server = Ollama::start(&d, port);
    let ready = daemon.wait_for(0, "ollama ready", |t| t.is("ollama", "ready"));
    let gateway_ready = daemon.wait_for(0, "gateway ready", |t| t.is("gateway", "ready"));
    let dashboard_ready = daemon.wait_for(0, "dashboard ready", |t| t.is("dashboard", "ready"));
    let gateway_start = daemon.find(0, "gateway starting", |t| t.is("gateway", "starting"));
    assert!(ready.index < gateway_start.index, "{}", daemon.log());
    assert!(gateway_ready.index < dashboard_ready.index);
    let events = d.events();
    assert!(
        events.first("gateway", "exec") > events.first("ollama", "listen"),
        "the gateway was exec'd after the server listened, by their own clocks: {events:?}"
    );

    // `restart` does not apply to what launchgraph does not run: refused, nothing moves.
    let mark = daemon.mark();
    let refused = daemon.cli(&["restart", "ollama"]);
    refused.expect(64);
    assert!(
        refused
            .stderr
            .contains(&format!("ollama is run by {RUN_BY}")),
        "{refused:#?}"
    );

    // The server dies (a crash, or someone quits the app): its dependents are stopped,
    // dashboard first, and it is awaited again, never stopped.
    let first_gateway = gateway_ready.pid();
    server.kill();
    let lost = daemon.wait_for(mark, "ollama out of ready", |t| {
        t.moved("ollama", "ready", "started")
    });
    assert_eq!(lost.reason, "LIVENESS_FAILED", "{}", lost.line);
    let dashboard_stop = daemon.wait_for(mark, "dashboard stopping", |t| {
        t.is("dashboard", "stopping")
    });
    let gateway_stop = daemon.wait_for(mark, "gateway stopping", |t| t.is("gateway", "stopping"));
    assert!(
        dashboard_stop.index < gateway_stop.index,
        "dependents first"
    );
    assert_eq!(gateway_stop.reason, "DEPENDENCY_RESTARTING");
    assert_eq!(gateway_stop.on.as_deref(), Some("ollama"));
    daemon.wait_for(mark, "gateway waiting again", |t| {
        t.is("gateway", "waiting") && t.index > gateway_stop.index
    });
    support::wait_until("the first gateway's process group is gone", || {
        group_gone(first_gateway)
    });

    // A new server: ready again, and the chain starts again in order.
    let mark2 = daemon.mark();
    let mut server = Ollama::start(&d, port);
    let again = daemon.wait_for(mark2, "ollama ready again", |t| t.is("ollama", "ready"));
    let gateway_again = daemon.wait_for(mark2, "gateway ready again", |t| t.is("gateway", "ready"));
    daemon.wait_for(mark2, "dashboard ready again", |t| {
        t.is("dashboard", "ready")
    });
    let restarted = daemon.find(mark2, "gateway starting again", |t| {
        t.is("gateway", "starting")
    });
    assert!(again.index < restarted.index);
    assert_ne!(gateway_again.pid(), first_gateway);
    let watch = daemon.transitions();
    assert!(
        !watch[mark..]
            .iter()
            .any(|t| t.unit == "ollama"
                && ["stopping", "backoff", "starting"].contains(&t.to.as_str())),
        "the external unit was never stopped nor restarted:\n{}",
        daemon.log()
    );
    assert_eq!(daemon.wait_state("ollama", "ready").restarts, 0);

    // `stop ollama`: its dependents stop first, then the watch ends; the server runs on.
    let mark3 = daemon.mark();
    let stop = daemon.cli(&["stop", "ollama"]);
    assert!(stop.ok().contains("it keeps running"), "{stop:#?}");
    let gateway_stopped = daemon.wait_for(mark3, "gateway stopped", |t| t.is("gateway", "stopped"));
    let unwatched = daemon.wait_for(mark3, "ollama stopped", |t| t.is("ollama", "stopped"));
    assert!(gateway_stopped.index < unwatched.index);
    assert_eq!(unwatched.reason, "STOP_REQUESTED");
    assert_eq!(
        unwatched.facts.exit, None,
        "nothing exited: {}",
        unwatched.line
    );
    assert!(server.alive(), "stop never touches what it names");
    assert_eq!(
        http_get(([127, 0, 0, 1], port).into(), "/api/version", DEADLINE).map(|a| a.code),
        Some(200)
    );
    // `start dashboard` watches it again and brings the chain back.
    daemon.cli(&["start", "dashboard"]).ok();
    daemon.wait_for(mark3, "dashboard ready after start", |t| {
        t.is("dashboard", "ready")
    });

    // SIGTERM to the daemon: everything it runs stops, in order; the server runs on.
    let status = daemon.terminate();
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
    let all = daemon.transitions();
    let last_gateway_stop = all
        .iter()
        .rposition(|t| t.is("gateway", "stopped"))
        .expect("the gateway stopped");
    let last_ollama_stop = all
        .iter()
        .rposition(|t| t.is("ollama", "stopped"))
        .expect("the watch ended");
    assert!(last_gateway_stop < last_ollama_stop);
    assert_eq!(all[last_ollama_stop].reason, "SHUTDOWN");
    assert!(
        server.alive(),
        "the daemon's SIGTERM left the external server running"
    );
    assert_eq!(
        http_get(([127, 0, 0, 1], port).into(), "/api/version", DEADLINE).map(|a| a.code),
        Some(200),
        "and it still answers"
    );
    let events = d.events();
    let signalled: Vec<_> = events
        .0
        .iter()
        .filter(|e| e.name == "ollama" && e.what.starts_with("signal-"))
        .collect();
    assert!(
        signalled.is_empty(),
        "launchgraph signalled it: {signalled:?}"
    );
}
