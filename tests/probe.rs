//! Probes against real loopback sockets, a real (tiny) HTTP server and real processes.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use launchgraph::probe::{ProbeFailure, ProbeOutcome, Prober, ready_poll_delays};
use launchgraph::unit::{CANONICAL_PATH, Probe};
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A probe timeout that only a broken probe reaches.
const GENEROUS: Duration = Duration::from_secs(20);

fn v4(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn v6(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv6Addr::LOCALHOST, port))
}

/// Fails the test unless this host has an IPv6 loopback (`::1`): the address-family tests
/// need both families.
#[track_caller]
fn needs_ipv6_loopback() {
    if let Err(e) = std::net::TcpListener::bind(v6(0)) {
        panic!("this test needs an IPv6 loopback (::1), which this host lacks: {e}");
    }
}

/// A port that nothing listens on: bound, then closed.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind(v4(0)).await.unwrap();
    listener.local_addr().unwrap().port()
}

/// A listener on `bind`'s family only, on a port the other loopback family has free right now.
async fn listener_on_one_family(ipv6: bool) -> TcpListener {
    for _ in 0..50 {
        let listener = TcpListener::bind(if ipv6 { v6(0) } else { v4(0) })
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let other = if ipv6 { v4(port) } else { v6(port) };
        if std::net::TcpListener::bind(other).is_ok() {
            return listener;
        }
    }
    panic!("no port free on both loopback families");
}

fn assert_one_line(outcome: &ProbeOutcome) {
    assert!(!outcome.detail.is_empty(), "{outcome:?}");
    assert!(!outcome.detail.contains('\n'), "{outcome:?}");
}

fn assert_failed(outcome: &ProbeOutcome, reason: ProbeFailure) {
    assert_one_line(outcome);
    assert!(!outcome.ok, "expected a failure: {outcome:?}");
    assert_eq!(outcome.reason, Some(reason), "{outcome:?}");
}

fn assert_ok(outcome: &ProbeOutcome) {
    assert_one_line(outcome);
    assert!(outcome.ok, "expected success: {outcome:?}");
    assert_eq!(outcome.reason, None);
}

// ---------------------------------------------------------------------------------------------
// TCP

#[tokio::test]
async fn tcp_accepted() {
    let listener = TcpListener::bind(v4(0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let before = std::time::SystemTime::now();
    let outcome = Prober::new().run(&Probe::Tcp { addr }, GENEROUS).await;
    assert_ok(&outcome);
    assert!(outcome.started_at >= before);
    assert!(
        outcome.detail.contains(&addr.to_string()),
        "{}",
        outcome.detail
    );
}

#[tokio::test]
async fn tcp_refused_on_a_closed_port_names_both_families() {
    needs_ipv6_loopback();
    let port = closed_port().await;
    let outcome = Prober::new()
        .run(&Probe::Tcp { addr: v4(port) }, GENEROUS)
        .await;
    assert_failed(&outcome, ProbeFailure::Refused);
    let d = &outcome.detail;
    assert!(
        d.starts_with(&format!("connect 127.0.0.1:{port}: connection refused")),
        "{d}"
    );
    assert!(
        d.contains(&format!("[::1]:{port}: connection refused too")),
        "{d}"
    );
    assert!(
        d.contains(&format!("nothing listens on port {port}")),
        "{d}"
    );
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// A tiny HTTP/1 server: answers every request with `response` and reports each request's
/// head (lower-cased) on the returned channel.
async fn http_server(listener: TcpListener, response: String) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            let response = response.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&head).to_lowercase());
                let _ = conn.write_all(response.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    rx
}

fn response(status_line: &str, extra_headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status_line}\r\ncontent-length: {}\r\nconnection: close\r\n{extra_headers}\r\n{body}",
        body.len()
    )
}

async fn serve(status_line: &str, body: &str) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind(v4(0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rx = http_server(listener, response(status_line, "", body)).await;
    (addr, rx)
}

fn http(addr: SocketAddr, path: &str, status: u16, body_contains: Option<&str>) -> Probe {
    Probe::Http {
        url: format!("http://{addr}{path}"),
        addr,
        status,
        body_contains: body_contains.map(String::from),
    }
}

#[tokio::test]
async fn http_expected_status() {
    let (addr, mut requests) = serve("200 OK", "{\"models\":[]}").await;
    let outcome = Prober::new()
        .run(&http(addr, "/api/tags", 200, None), GENEROUS)
        .await;
    assert_ok(&outcome);
    assert!(outcome.detail.contains("200 OK"), "{}", outcome.detail);
    let head = requests.recv().await.unwrap();
    assert!(head.starts_with("get /api/tags http/1.1\r\n"), "{head}");
}

#[tokio::test]
async fn http_wrong_status_names_got_and_expected() {
    let (addr, _requests) = serve("503 Service Unavailable", "loading model").await;
    let outcome = Prober::new()
        .run(&http(addr, "/health", 200, None), GENEROUS)
        .await;
    assert_failed(&outcome, ProbeFailure::WrongStatus(503));
    assert!(outcome.detail.contains("503"), "{}", outcome.detail);
    assert!(
        outcome.detail.contains("expected 200"),
        "{}",
        outcome.detail
    );
    assert!(
        outcome.detail.contains("(body: \"loading model\")"),
        "{}",
        outcome.detail
    );
}

#[tokio::test]
async fn http_body_contains() {
    let (addr, _requests) = serve("200 OK", "{\"models\":[{\"name\":\"llama3.1:8b\"}]}").await;
    let outcome = Prober::new()
        .run(&http(addr, "/api/tags", 200, Some("llama3.1")), GENEROUS)
        .await;
    assert_ok(&outcome);
}

#[tokio::test]
async fn http_body_mismatch_shows_an_excerpt() {
    let (addr, _requests) = serve("200 OK", "{\"models\":[]}\n").await;
    let outcome = Prober::new()
        .run(&http(addr, "/api/tags", 200, Some("llama3.1")), GENEROUS)
        .await;
    assert_failed(&outcome, ProbeFailure::BodyMismatch);
    let d = &outcome.detail;
    assert!(d.contains("does not contain \"llama3.1\""), "{d}");
    assert!(d.contains("models"), "{d}");
    assert!(!d.contains('\n'), "{d}");
}

/// The expected text split across two chunks of a chunked body is still found.
#[tokio::test]
async fn http_body_match_across_chunks() {
    let listener = TcpListener::bind(v4(0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = "c\r\n{\"name\":\"lla\r\n7\r\nma3.1\"}\r\n0\r\n\r\n";
    let _requests = http_server(
        listener,
        format!("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{body}"),
    )
    .await;
    let outcome = Prober::new()
        .run(&http(addr, "/api/tags", 200, Some("llama3.1")), GENEROUS)
        .await;
    assert_ok(&outcome);
}

#[tokio::test]
async fn http_body_beyond_the_limit_is_not_read() {
    let big = "x".repeat(200 * 1024) + "needle";
    let (addr, _requests) = serve("200 OK", &big).await;
    let outcome = Prober::new()
        .run(&http(addr, "/", 200, Some("needle")), GENEROUS)
        .await;
    assert_failed(&outcome, ProbeFailure::BodyMismatch);
    assert!(
        outcome.detail.contains("first 64 KiB"),
        "{}",
        outcome.detail
    );
}

#[tokio::test]
async fn http_redirects_are_not_followed() {
    let listener = TcpListener::bind(v4(0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut requests =
        http_server(listener, response("302 Found", "location: /login\r\n", "")).await;
    let outcome = Prober::new()
        .run(&http(addr, "/", 200, None), GENEROUS)
        .await;
    assert_failed(&outcome, ProbeFailure::WrongStatus(302));
    assert!(outcome.detail.contains("/login"), "{}", outcome.detail);
    requests.recv().await.unwrap();
    assert!(requests.try_recv().is_err(), "the redirect was followed");
}

/// The URL's host is sent as `Host` but never resolved: the connection goes to `addr`.
#[tokio::test]
async fn http_connects_to_addr_without_dns() {
    let (addr, mut requests) = serve("200 OK", "ok").await;
    let probe = Probe::Http {
        url: format!("http://gateway.invalid:{}/health", addr.port()),
        addr,
        status: 200,
        body_contains: None,
    };
    let outcome = Prober::new().run(&probe, GENEROUS).await;
    assert_ok(&outcome);
    assert!(
        outcome.detail.contains(&format!("via {addr}")),
        "{}",
        outcome.detail
    );
    let head = requests.recv().await.unwrap();
    assert!(
        head.contains(&format!("\r\nhost: gateway.invalid:{}\r\n", addr.port())),
        "{head}"
    );
}

/// Each probe opens its own connection, so a server that restarted is really asked again.
#[tokio::test]
async fn http_probes_reconnect_every_time() {
    let listener = TcpListener::bind(v4(0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut requests = http_server(
        listener,
        // Keep-alive offered: the prober must still not reuse the connection.
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_owned(),
    )
    .await;
    let prober = Prober::new();
    for _ in 0..3 {
        assert_ok(&prober.run(&http(addr, "/", 200, None), GENEROUS).await);
        requests.recv().await.unwrap();
    }
}

#[tokio::test]
async fn http_refused() {
    let port = closed_port().await;
    let outcome = Prober::new()
        .run(&http(v4(port), "/", 200, None), GENEROUS)
        .await;
    assert_failed(&outcome, ProbeFailure::Refused);
    assert!(
        outcome
            .detail
            .contains(&format!("connect 127.0.0.1:{port}: connection refused")),
        "{}",
        outcome.detail
    );
}

/// A server that accepts and never answers: the probe times out and says it was accepted.
#[tokio::test]
async fn http_no_answer_times_out() {
    let listener = TcpListener::bind(v4(0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (held_tx, mut held) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            // Keep the connections open and silent.
            let _ = held_tx.send(conn);
        }
    });
    let outcome = Prober::new()
        .run(&http(addr, "/", 200, None), Duration::from_millis(300))
        .await;
    assert_failed(&outcome, ProbeFailure::TimedOut);
    assert!(
        outcome.detail.contains("no response within 300ms"),
        "{}",
        outcome.detail
    );
    assert!(
        outcome
            .detail
            .contains("accepts connections but did not answer"),
        "{}",
        outcome.detail
    );
    held.recv().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Address family diagnosis

#[tokio::test]
async fn server_on_ipv6_only_probed_on_ipv4() {
    needs_ipv6_loopback();
    let listener = listener_on_one_family(true).await;
    let port = listener.local_addr().unwrap().port();
    let outcome = Prober::new()
        .run(&Probe::Tcp { addr: v4(port) }, GENEROUS)
        .await;
    assert_failed(&outcome, ProbeFailure::OtherFamilyOnly);
    let d = &outcome.detail;
    assert!(
        d.contains(&format!("connect 127.0.0.1:{port}: connection refused")),
        "{d}"
    );
    assert!(d.contains(&format!("[::1]:{port} accepts")), "{d}");
    assert!(d.contains("IPv6 loopback only"), "{d}");
}

#[tokio::test]
async fn server_on_ipv4_only_probed_on_ipv6() {
    needs_ipv6_loopback();
    let listener = listener_on_one_family(false).await;
    let port = listener.local_addr().unwrap().port();
    let outcome = Prober::new()
        .run(&Probe::Tcp { addr: v6(port) }, GENEROUS)
        .await;
    assert_failed(&outcome, ProbeFailure::OtherFamilyOnly);
    let d = &outcome.detail;
    assert!(
        d.contains(&format!("connect [::1]:{port}: connection refused")),
        "{d}"
    );
    assert!(d.contains(&format!("127.0.0.1:{port} accepts")), "{d}");
    assert!(d.contains("IPv4 loopback only"), "{d}");
}

#[tokio::test]
async fn http_server_on_ipv6_only_probed_on_ipv4() {
    needs_ipv6_loopback();
    let listener = listener_on_one_family(true).await;
    let port = listener.local_addr().unwrap().port();
    let _requests = http_server(listener, response("200 OK", "", "ok")).await;
    let outcome = Prober::new()
        .run(&http(v4(port), "/api/tags", 200, None), GENEROUS)
        .await;
    assert_failed(&outcome, ProbeFailure::OtherFamilyOnly);
    let d = &outcome.detail;
    assert!(
        d.starts_with(&format!("GET http://127.0.0.1:{port}/api/tags: ")),
        "{d}"
    );
    assert!(d.contains(&format!("[::1]:{port} accepts")), "{d}");
}

// ---------------------------------------------------------------------------------------------
// Exec

fn exec(script: &str) -> Probe {
    Probe::Exec {
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
    }
}

#[tokio::test]
async fn exec_exit_zero() {
    assert_ok(&Prober::new().run(&exec("exit 0"), GENEROUS).await);
}

#[tokio::test]
async fn exec_exit_code_and_stderr_in_detail() {
    let outcome = Prober::new()
        .run(&exec("echo 'model not loaded' >&2; exit 3"), GENEROUS)
        .await;
    assert_failed(&outcome, ProbeFailure::ExitStatus(3));
    assert!(outcome.detail.contains("exit 3"), "{}", outcome.detail);
    assert!(
        outcome.detail.contains("stderr: model not loaded"),
        "{}",
        outcome.detail
    );
}

#[tokio::test]
async fn exec_killed_by_a_signal() {
    let outcome = Prober::new().run(&exec("kill -TERM $$"), GENEROUS).await;
    assert_failed(&outcome, ProbeFailure::Signal(libc::SIGTERM));
    assert!(outcome.detail.contains("SIGTERM"), "{}", outcome.detail);
}

#[tokio::test]
async fn exec_cannot_start() {
    let probe = Probe::Exec {
        argv: vec!["/nonexistent/launchgraph-probe".into()],
    };
    let outcome = Prober::new().run(&probe, GENEROUS).await;
    assert_failed(&outcome, ProbeFailure::SpawnFailed);
    assert!(
        outcome.detail.contains("/nonexistent/launchgraph-probe"),
        "{}",
        outcome.detail
    );
}

/// The command sees PATH = CANONICAL_PATH and nothing else (the shell adds its own PWD), and
/// runs in `/`.
#[tokio::test]
async fn exec_environment_is_exact() {
    assert!(
        std::env::var_os("HOME").is_some(),
        "this test needs HOME set in the test's own environment"
    );
    let script = format!(
        r#"[ -z "${{HOME+x}}" ] || {{ echo "HOME is set" >&2; exit 1; }}
[ "$PATH" = "{CANONICAL_PATH}" ] || {{ echo "PATH is $PATH" >&2; exit 1; }}
[ "$(pwd)" = / ] || {{ echo "cwd is $(pwd)" >&2; exit 1; }}
extra=$(/usr/bin/env | grep -v -e '^PATH=' -e '^PWD=')
[ -z "$extra" ] || {{ echo "extra env: $extra" >&2; exit 1; }}"#
    );
    assert_ok(&Prober::new().run(&exec(&script), GENEROUS).await);
}

/// Whether any live process is left in process group `pgid`. Zombies do not count: an
/// orphan is reparented to an init that, in some containers, never reaps it.
fn group_alive(pgid: i32) -> bool {
    match kill(Pid::from_raw(-pgid), None) {
        Err(Errno::ESRCH) => return false,
        Err(e) => panic!("kill(-{pgid}, 0): {e}"),
        Ok(()) => {}
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // Fields after the command name: state ppid pgrp ...
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.len() > 2 && fields[2] == pgid.to_string() && !matches!(fields[0], "Z" | "X")
    })
}

async fn await_group_gone(pgid: i32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while group_alive(pgid) {
        assert!(
            Instant::now() < deadline,
            "process group {pgid} still has live processes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[tokio::test]
async fn exec_timeout_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    // The shell writes its pid (= the group id) once its background child exists.
    let script = format!("sleep 1000 & echo $$ > {}; sleep 1000", pidfile.display());
    // 200 ms is tight on a loaded machine; if the shell got nowhere, try again with more room.
    let mut pgid = None;
    for timeout in [200, 2000, 10_000].map(Duration::from_millis) {
        let outcome = Prober::new().run(&exec(&script), timeout).await;
        assert_failed(&outcome, ProbeFailure::TimedOut);
        assert!(
            outcome.detail.contains(&format!(
                "no exit within {}",
                humantime::format_duration(timeout)
            )),
            "{}",
            outcome.detail
        );
        if let Some(pid) = read_pid(&pidfile) {
            pgid = Some(pid);
            break;
        }
        eprintln!("note: the shell did not start within {timeout:?}; retrying");
    }
    await_group_gone(pgid.expect("the probe's shell never started")).await;
}

/// A command that exits and leaves a background process behind: the probe kills it.
#[tokio::test]
async fn exec_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let script = format!("sleep 1000 & echo $$ > {}; exit 0", pidfile.display());
    assert_ok(&Prober::new().run(&exec(&script), GENEROUS).await);
    await_group_gone(read_pid(&pidfile).unwrap()).await;
}

/// A probe whose future is dropped (its task cancelled) kills its group too.
#[tokio::test]
async fn exec_cancelled_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let script = format!("sleep 1000 & echo $$ > {}; sleep 1000", pidfile.display());
    let probe = exec(&script);
    let task = tokio::spawn(async move { Prober::new().run(&probe, GENEROUS).await });
    let deadline = Instant::now() + Duration::from_secs(20);
    let pgid = loop {
        if let Some(pid) = read_pid(&pidfile) {
            break pid;
        }
        assert!(Instant::now() < deadline, "the probe's shell never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    await_group_gone(pgid).await;
}

// ---------------------------------------------------------------------------------------------
// Readiness polling schedule

#[test]
fn ready_poll_delays_start_at_once_and_cap() {
    let interval = Duration::from_secs(1);
    let delays: Vec<_> = ready_poll_delays(interval).take(7000).collect();
    assert_eq!(delays[0], Duration::ZERO);
    assert!(delays[1] > Duration::ZERO && delays[1] <= Duration::from_millis(5));
    assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
    assert_eq!(delays[6999], interval);
}

proptest! {
    #[test]
    fn ready_poll_delays_are_non_decreasing_and_capped(ms in 1u64..600_000, n in 1usize..200) {
        let interval = Duration::from_millis(ms);
        let delays: Vec<_> = ready_poll_delays(interval).take(n).collect();
        prop_assert_eq!(delays[0], Duration::ZERO);
        prop_assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        prop_assert!(delays.iter().all(|d| *d <= interval));
    }
}
