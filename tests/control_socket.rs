//! The control socket over real unix sockets in temporary directories: the server's framing
//! and limits, the socket file's mode, group and lifecycle, the peer-credential check (with
//! clients run as another uid in child processes), and the client's errors.
//!
//! The daemon's side is a small handler task answering from the test. Every wait has a
//! generous deadline; nothing asserts speed.

mod support;

use std::io::Write as _;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use launchgraph::control::client::{self, ClientError};
use launchgraph::control::protocol::{
    ErrorCode, EventRecord, MAX_REQUEST_BYTES, PROTOCOL_VERSION, ReloadReport, Request, Response,
    UnitStatus,
};
use launchgraph::control::server::{ControlError, ControlServer, Incoming, Peer, ServerConfig};
use launchgraph::paths;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Far beyond anything these exchanges need, so a slow shared machine never fails a test.
const DEADLINE: Duration = Duration::from_secs(30);

async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {DEADLINE:?}"))
}

/// A server in a temporary directory, its handler, and what the handler was asked.
struct Harness {
    dir: tempfile::TempDir,
    path: PathBuf,
    shutdown: CancellationToken,
    served: JoinHandle<()>,
    /// Every request the handler received, with its caller.
    seen: mpsc::UnboundedReceiver<(Peer, Request)>,
    /// The stream senders of `events --follow` requests, once three events are sent on each.
    followers: mpsc::UnboundedReceiver<mpsc::Sender<Response>>,
}

impl Harness {
    fn start() -> Harness {
        Harness::start_with(|_| {})
    }

    fn start_with(configure: impl FnOnce(&mut ServerConfig)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("launchgraph.sock");
        let mut cfg = ServerConfig::new(&path);
        configure(&mut cfg);
        let server = ControlServer::bind(&cfg).expect("bind");
        let (tx, rx) = mpsc::channel(16);
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let (followers_tx, followers) = mpsc::unbounded_channel();
        tokio::spawn(handler(rx, seen_tx, followers_tx));
        let shutdown = CancellationToken::new();
        let served = tokio::spawn(server.serve(tx, shutdown.clone()));
        Harness {
            dir,
            path,
            shutdown,
            served,
            seen,
            followers,
        }
    }

    async fn request(&self, request: Request) -> Response {
        within("request", client::request(&self.path, request))
            .await
            .expect("the daemon answers")
    }

    async fn next_seen(&mut self) -> (Peer, Request) {
        within("the handler's next request", self.seen.recv())
            .await
            .expect("the handler runs")
    }

    async fn stop(self) {
        self.shutdown.cancel();
        within("serve to return", self.served).await.unwrap();
    }
}

fn sample_unit() -> UnitStatus {
    UnitStatus {
        name: "web".into(),
        kind: "exec".into(),
        run_by: None,
        state: "ready".into(),
        since_secs: 12.5,
        reason: "PROBE_OK".into(),
        detail: "http 200 in 3 ms".into(),
        last_transition: None,
        waiting_on: None,
        pid: Some(4242),
        generation: 3,
        last_exit: Some("exit=1".into()),
        restarts: 2,
        backoff_remaining_secs: None,
        last_probe: None,
        preflight: vec![],
    }
}

fn sample_event(seq: u64) -> EventRecord {
    EventRecord {
        time: "2025-01-01T00:00:00Z".into(),
        seq,
        unit: "web".into(),
        from: "starting".into(),
        to: "ready".into(),
        reason: "PROBE_OK".into(),
        on: None,
        facts: Default::default(),
        guard: None,
    }
}

/// The daemon's side, as the tests need it. `restart hang` is never answered and `restart
/// drop` is dropped unanswered; everything else is answered at once.
async fn handler(
    mut rx: mpsc::Receiver<Incoming>,
    seen: mpsc::UnboundedSender<(Peer, Request)>,
    followers: mpsc::UnboundedSender<mpsc::Sender<Response>>,
) {
    let mut never_answered = Vec::new();
    while let Some(Incoming {
        peer,
        request,
        reply,
    }) = rx.recv().await
    {
        let _ = seen.send((peer.clone(), request.clone()));
        match request {
            Request::Status { .. } => reply.send(Response::Status {
                units: vec![sample_unit()],
            }),
            Request::Restart { unit } if unit == "hang" => never_answered.push(reply),
            Request::Restart { unit } if unit == "drop" => drop(reply),
            Request::Start { unit } | Request::Stop { unit } | Request::Restart { unit } => reply
                .send(Response::Done {
                    message: format!("{unit} for uid {}", peer.uid),
                }),
            Request::Reload { dry_run } => reply.send(Response::Reload(ReloadReport {
                dry_run,
                changed: vec!["web".into()],
                ..ReloadReport::default()
            })),
            Request::Events { follow: false } => {
                reply.send(Response::Event(Box::new(sample_event(1))))
            }
            Request::Events { follow: true } => {
                let events = reply.stream(8);
                for seq in 1..=3 {
                    let _ = events
                        .send(Response::Event(Box::new(sample_event(seq))))
                        .await;
                }
                let _ = followers.send(events);
            }
            Request::Metrics => reply.send(Response::Metrics {
                text: "launchgraph_units 1\n".into(),
            }),
            Request::Guards => reply.send(Response::Guards { guards: Vec::new() }),
            Request::GuardForce { unit, guard, .. } => reply.send(Response::Done {
                message: format!("{unit}/{guard} for uid {}", peer.uid),
            }),
        }
    }
}

fn error_code(response: &Response) -> ErrorCode {
    match response {
        Response::Error { code, .. } => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn error_message(response: &Response) -> &str {
    match response {
        Response::Error { message, .. } => message,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// What a raw client got back: the response lines, and whether the server closed.
struct Raw {
    responses: Vec<Response>,
    closed: bool,
}

/// Sends `bytes` as they are (optionally ending its side), then reads until the server closes.
async fn send_raw(path: &Path, bytes: &[u8], end_input: bool) -> Raw {
    let mut stream = UnixStream::connect(path).await.expect("connect");
    // The server may close before reading everything (a request too long): that is a result.
    let _ = stream.write_all(bytes).await;
    if end_input {
        let _ = stream.shutdown().await;
    }
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(DEADLINE, stream.read(&mut chunk)).await {
            Err(_) => break false,
            Ok(Ok(0)) => break true,
            Ok(Ok(n)) => received.extend_from_slice(&chunk[..n]),
            // Linux resets a connection closed with unread input, after what was sent.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Ok(Err(e)) => panic!("read: {e}"),
        }
    };
    let responses = received
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).expect("a response line"))
        .collect();
    Raw { responses, closed }
}

/// One error answered, then the connection closed.
async fn expect_refusal(path: &Path, bytes: &[u8], end_input: bool, code: ErrorCode) -> String {
    let raw = within("a refusal", send_raw(path, bytes, end_input)).await;
    assert!(raw.closed, "the server closes after refusing");
    assert_eq!(raw.responses.len(), 1, "one answer: {:?}", raw.responses);
    assert_eq!(
        error_code(&raw.responses[0]),
        code,
        "{:?}",
        raw.responses[0]
    );
    error_message(&raw.responses[0]).to_owned()
}

fn line(json: &str) -> Vec<u8> {
    format!("{json}\n").into_bytes()
}

#[tokio::test]
async fn a_request_round_trips() {
    let mut h = Harness::start();
    let response = h.request(Request::Status { unit: None }).await;
    assert_eq!(
        response,
        Response::Status {
            units: vec![sample_unit()]
        }
    );
    let (peer, request) = h.next_seen().await;
    assert_eq!(request, Request::Status { unit: None });
    assert_eq!(peer.uid, nix::unistd::geteuid().as_raw());
    assert_eq!(peer.gid, nix::unistd::getegid().as_raw());
    assert_eq!(peer.pid, Some(std::process::id() as i32));
    assert_eq!(peer.may_act, support::is_root());

    let response = h.request(Request::Metrics).await;
    assert_eq!(
        response,
        Response::Metrics {
            text: "launchgraph_units 1\n".into()
        }
    );
    h.stop().await;
}

#[tokio::test]
async fn bad_requests_are_refused_and_the_server_keeps_serving() {
    let h = Harness::start();
    let path = h.path.clone();
    let good = || async {
        assert!(matches!(
            h.request(Request::Status { unit: None }).await,
            Response::Status { .. }
        ));
    };

    let message = expect_refusal(&path, &line("{not json"), false, ErrorCode::Malformed).await;
    assert!(message.contains("not JSON"), "{message}");
    good().await;

    let message = expect_refusal(
        &path,
        &line(r#"{"version":2,"request":"explode"}"#),
        false,
        ErrorCode::Malformed,
    )
    .await;
    assert!(message.contains("explode"), "{message}");
    good().await;

    expect_refusal(
        &path,
        &line(r#"{"version":2,"request":"start","unit":5}"#),
        false,
        ErrorCode::Malformed,
    )
    .await;
    expect_refusal(
        &path,
        &line(r#"{"request":"metrics"}"#),
        false,
        ErrorCode::Malformed,
    )
    .await;
    // An unknown field is refused, not ignored.
    expect_refusal(
        &path,
        &line(r#"{"version":2,"request":"status","unit":null,"colour":"red"}"#),
        false,
        ErrorCode::Malformed,
    )
    .await;
    expect_refusal(&path, &line("[1,2]"), false, ErrorCode::Malformed).await;
    expect_refusal(&path, &line(""), false, ErrorCode::Malformed).await;
    good().await;

    // A request exactly as long as allowed is served: spaces pad the JSON to the limit.
    let mut exact = br#"{"version":2,"request":"metrics"}"#.to_vec();
    exact.resize(MAX_REQUEST_BYTES, b' ');
    exact.push(b'\n');
    let raw = within("the longest request", send_raw(&path, &exact, false)).await;
    assert!(matches!(raw.responses[..], [Response::Metrics { .. }]));

    // One byte more than allowed, with no newline at all.
    let too_long = vec![b'x'; MAX_REQUEST_BYTES + 1];
    expect_refusal(&path, &too_long, false, ErrorCode::TooLarge).await;
    good().await;
    // A whole line, longer than allowed.
    let mut long_line = br#"{"version":2,"request":"metrics"}"#.to_vec();
    long_line.resize(MAX_REQUEST_BYTES + 100, b' ');
    long_line.push(b'\n');
    expect_refusal(&path, &long_line, false, ErrorCode::TooLarge).await;
    good().await;

    let message = expect_refusal(
        &path,
        br#"{"version":2,"request":"metrics"}"#,
        true,
        ErrorCode::Truncated,
    )
    .await;
    assert!(message.contains("newline"), "{message}");
    good().await;

    let message = expect_refusal(
        &path,
        &line(r#"{"version":99,"request":"metrics"}"#),
        false,
        ErrorCode::Version,
    )
    .await;
    assert!(
        message.contains("99") && message.contains(&PROTOCOL_VERSION.to_string()),
        "{message}"
    );
    // The version is checked first: a newer client's unknown request is a version mismatch.
    expect_refusal(
        &path,
        &line(r#"{"version":3,"request":"something-new"}"#),
        false,
        ErrorCode::Version,
    )
    .await;
    good().await;

    // A connection closed without a byte is closed quietly.
    let raw = within("an empty connection", send_raw(&path, b"", true)).await;
    assert!(raw.closed && raw.responses.is_empty());
    good().await;
    h.stop().await;
}

#[tokio::test]
async fn a_silent_client_blocks_nobody_and_is_dropped_at_the_deadline() {
    let h = Harness::start_with(|cfg| cfg.request_timeout = Duration::from_millis(300));
    let mut silent = UnixStream::connect(&h.path).await.unwrap();
    let mut partial = UnixStream::connect(&h.path).await.unwrap();
    partial.write_all(br#"{"version":2"#).await.unwrap();
    assert!(matches!(
        h.request(Request::Status { unit: None }).await,
        Response::Status { .. }
    ));

    // The silent one is closed without a word, the partial one told its request is truncated.
    let mut received = Vec::new();
    within("the silent client's end", silent.read_to_end(&mut received))
        .await
        .unwrap();
    assert!(received.is_empty());
    let mut received = Vec::new();
    within(
        "the partial client's end",
        partial.read_to_end(&mut received),
    )
    .await
    .unwrap();
    let response: Response = serde_json::from_slice(received.trim_ascii_end()).unwrap();
    assert_eq!(error_code(&response), ErrorCode::Truncated);
    h.stop().await;
}

#[tokio::test]
async fn a_silent_client_under_the_default_deadline_blocks_nobody() {
    let h = Harness::start();
    let _silent: Vec<UnixStream> = {
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(UnixStream::connect(&h.path).await.unwrap());
        }
        held
    };
    assert!(matches!(
        h.request(Request::Metrics).await,
        Response::Metrics { .. }
    ));
    h.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_until_one_closes() {
    let h = Harness::start_with(|cfg| {
        cfg.max_connections = 1;
        cfg.request_timeout = Duration::from_secs(60);
    });
    let holder = UnixStream::connect(&h.path).await.unwrap();
    // Accepted in order: the holder has the only slot when this one is accepted.
    let refused = within("the refusal", client::request(&h.path, Request::Metrics))
        .await
        .unwrap();
    assert_eq!(error_code(&refused), ErrorCode::Busy);
    assert!(error_message(&refused).contains("busy"), "{refused:?}");

    drop(holder);
    // The slot is free once the server has seen the holder go.
    within("a served request", async {
        loop {
            match client::request(&h.path, Request::Metrics).await {
                Ok(Response::Metrics { .. }) => break,
                Ok(Response::Error {
                    code: ErrorCode::ShuttingDown,
                    ..
                }) => tokio::time::sleep(Duration::from_millis(20)).await,
                other => panic!("unexpected: {other:?}"),
            }
        }
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn events_follow_streams_until_the_client_goes() {
    let mut h = Harness::start();
    let mut events = within(
        "stream",
        client::stream(&h.path, Request::Events { follow: true }),
    )
    .await
    .unwrap();
    for seq in 1..=3 {
        let next = within("an event", events.recv()).await.unwrap().unwrap();
        assert_eq!(next, Response::Event(Box::new(sample_event(seq))));
    }
    let follower = within("the follower", h.followers.recv()).await.unwrap();
    follower
        .send(Response::Event(Box::new(sample_event(4))))
        .await
        .unwrap();
    assert_eq!(
        within("a live event", events.recv())
            .await
            .unwrap()
            .unwrap(),
        Response::Event(Box::new(sample_event(4)))
    );

    // The client goes away: the daemon's sender closes.
    drop(events);
    within("the server to notice", follower.closed()).await;
    assert!(
        follower
            .send(Response::Event(Box::new(sample_event(5))))
            .await
            .is_err()
    );
    h.stop().await;
}

#[tokio::test]
async fn shutdown_ends_streams_answers_waiting_requests_and_removes_the_socket() {
    let mut h = Harness::start();
    let mut events = client::stream(&h.path, Request::Events { follow: true })
        .await
        .unwrap();
    let _follower = within("the follower", h.followers.recv()).await.unwrap();
    let path = h.path.clone();
    let waiting = tokio::spawn(async move {
        client::request(
            &path,
            Request::Restart {
                unit: "hang".into(),
            },
        )
        .await
    });
    loop {
        let (_, request) = h.next_seen().await;
        if matches!(request, Request::Restart { .. }) {
            break;
        }
    }

    let path = h.path.clone();
    let dir = h.dir.path().to_path_buf();
    h.shutdown.cancel();
    within("serve to return", h.served).await.unwrap();
    assert!(!path.exists(), "the socket is removed");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing left");

    let answer = within("the waiting request", waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(error_code(&answer), ErrorCode::ShuttingDown);
    // The events already sent are delivered, then the stream ends.
    let mut rest = Vec::new();
    while let Some(item) = within("the stream's end", events.recv()).await {
        rest.push(item.unwrap());
    }
    assert!(rest.len() <= 3, "{rest:?}");

    let after = client::request(&path, Request::Metrics).await;
    assert!(
        matches!(after, Err(ClientError::NotRunning { .. })),
        "{after:?}"
    );
}

#[tokio::test]
async fn an_unanswered_request_is_told_the_daemon_is_shutting_down() {
    let h = Harness::start();
    let answer = h
        .request(Request::Restart {
            unit: "drop".into(),
        })
        .await;
    assert_eq!(error_code(&answer), ErrorCode::ShuttingDown);
    h.stop().await;

    // A daemon that no longer takes requests at all.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let server = ControlServer::bind(&ServerConfig::new(&path)).unwrap();
    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    let shutdown = CancellationToken::new();
    let served = tokio::spawn(server.serve(tx, shutdown.clone()));
    let answer = within("an answer", client::request(&path, Request::Metrics))
        .await
        .unwrap();
    assert_eq!(error_code(&answer), ErrorCode::ShuttingDown);
    shutdown.cancel();
    within("serve to return", served).await.unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

#[tokio::test]
async fn the_socket_is_0600_by_default_and_nothing_else_is_left() {
    let h = Harness::start();
    let meta = std::fs::symlink_metadata(&h.path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(mode(&h.path), 0o600);
    assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
    // The private directory it was bound in is gone.
    let names: Vec<_> = std::fs::read_dir(h.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["launchgraph.sock"]);
    h.stop().await;
}

#[tokio::test]
#[ignore = "needs root"]
async fn root_with_an_admin_group_the_socket_is_0660_and_the_groups() {
    support::needs_root("giving the socket to any group");
    let (name, gid) = support::control::group_nobody_is_not_in().expect("a group in /etc/group");
    for given in [name.clone(), gid.to_string()] {
        let h = Harness::start_with(|cfg| cfg.admin_group = Some(given));
        let meta = std::fs::symlink_metadata(&h.path).unwrap();
        assert_eq!(mode(&h.path), 0o660);
        assert_eq!(meta.gid(), gid);
        h.stop().await;
    }

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig::new(dir.path().join("s.sock"));
    cfg.admin_group = Some("no-such-group-here".into());
    let err = ControlServer::bind(&cfg).unwrap_err();
    assert!(matches!(err, ControlError::UnknownGroup { .. }), "{err}");
}

#[tokio::test]
async fn a_stale_socket_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("launchgraph.sock");
    // A socket left by a process that is gone: the file stays, nobody listens.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(matches!(
        client::request(&path, Request::Metrics).await,
        Err(ClientError::NotRunning { .. })
    ));

    let server = ControlServer::bind(&ServerConfig::new(&path)).expect("replaces the stale one");
    assert_eq!(mode(&path), 0o600);
    let (tx, mut rx) = mpsc::channel::<Incoming>(1);
    tokio::spawn(async move {
        while let Some(incoming) = rx.recv().await {
            incoming.reply.send(Response::Metrics { text: "ok".into() });
        }
    });
    let shutdown = CancellationToken::new();
    let served = tokio::spawn(server.serve(tx, shutdown.clone()));
    let answer = within("an answer", client::request(&path, Request::Metrics))
        .await
        .unwrap();
    assert_eq!(answer, Response::Metrics { text: "ok".into() });
    shutdown.cancel();
    within("serve to return", served).await.unwrap();
    assert!(!path.exists());
}

#[tokio::test]
async fn a_live_socket_is_not_taken_over() {
    let h = Harness::start();
    let err = ControlServer::bind(&ServerConfig::new(&h.path)).unwrap_err();
    assert!(matches!(err, ControlError::AlreadyRunning { .. }), "{err}");
    assert!(
        err.to_string().contains(&h.path.display().to_string()),
        "{err}"
    );
    // The first one is untouched and still serves.
    assert!(matches!(
        h.request(Request::Metrics).await,
        Response::Metrics { .. }
    ));
    let names = std::fs::read_dir(h.dir.path()).unwrap().count();
    assert_eq!(names, 1, "no private directory left behind");
    h.stop().await;
}

#[test]
fn what_is_not_a_socket_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("launchgraph.sock");
    std::fs::File::create(&file)
        .unwrap()
        .write_all(b"precious")
        .unwrap();
    let err = ControlServer::bind(&ServerConfig::new(&file)).unwrap_err();
    assert!(matches!(err, ControlError::NotASocket { .. }), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");

    // A symbolic link is not followed, even to nothing.
    let link = dir.path().join("link.sock");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
    let err = ControlServer::bind(&ServerConfig::new(&link)).unwrap_err();
    assert!(matches!(err, ControlError::NotASocket { .. }), "{err}");
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());

    let subdir = dir.path().join("a-directory");
    std::fs::create_dir(&subdir).unwrap();
    let err = ControlServer::bind(&ServerConfig::new(&subdir)).unwrap_err();
    assert!(matches!(err, ControlError::NotASocket { .. }), "{err}");
    assert!(subdir.is_dir());

    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a-directory", "launchgraph.sock", "link.sock"]);
}

#[test]
fn dropping_the_server_removes_its_socket_but_not_a_successors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("launchgraph.sock");
    let server = ControlServer::bind(&ServerConfig::new(&path)).unwrap();
    assert!(path.exists());
    drop(server);
    assert!(!path.exists());

    let server = ControlServer::bind(&ServerConfig::new(&path)).unwrap();
    // Someone else's socket now at the path (as after a successor replaced ours).
    std::fs::remove_file(&path).unwrap();
    let successor = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(server);
    assert!(path.exists(), "the successor's socket stays");
    drop(successor);
}

#[test]
fn the_directory_is_created_and_must_be_safe() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("run/launchgraph");
    let server = ControlServer::bind(&ServerConfig::new(nested.join("launchgraph.sock"))).unwrap();
    let meta = std::fs::metadata(&nested).unwrap();
    assert!(meta.is_dir());
    assert_eq!(
        meta.permissions().mode() & 0o022,
        0,
        "not writable by others"
    );
    assert_eq!(meta.permissions().mode() & 0o700, 0o700);
    drop(server);

    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = ControlServer::bind(&ServerConfig::new(open.join("s.sock"))).unwrap_err();
    assert!(matches!(err, ControlError::UnsafeDirectory { .. }), "{err}");
    // Sticky, as /tmp is: others cannot remove or rename what is ours.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    drop(ControlServer::bind(&ServerConfig::new(open.join("s.sock"))).unwrap());

    let long = dir.path().join("x".repeat(120));
    let err = ControlServer::bind(&ServerConfig::new(long)).unwrap_err();
    assert!(matches!(err, ControlError::PathTooLong { .. }), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "only run/ and open/: {left:?}");
}

#[tokio::test]
async fn the_client_says_when_the_daemon_is_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.sock");
    let err = client::request(&path, Request::Metrics).await.unwrap_err();
    assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "launchgraph is not running (no daemon at {})",
            path.display()
        )
    );
    let err = client::stream(&path, Request::Events { follow: true })
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");
}

#[tokio::test]
async fn the_client_refuses_a_response_that_is_not_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fake.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let fake = tokio::spawn(async move {
        for answer in [
            &b"{\"response\":\"nonsense\"}\n"[..],
            b"{\"response\":\"done\"",
        ] {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 1024];
            let _ = stream.read(&mut request).await.unwrap();
            stream.write_all(answer).await.unwrap();
        }
    });
    let err = client::request(&path, Request::Metrics).await.unwrap_err();
    assert!(matches!(err, ClientError::Protocol { .. }), "{err:?}");
    let err = client::request(&path, Request::Metrics).await.unwrap_err();
    assert!(
        err.to_string().contains("in the middle of a response"),
        "{err}"
    );
    fake.await.unwrap();
}

#[test]
fn default_socket_paths() {
    use std::ffi::OsStr;
    assert_eq!(
        paths::socket_path_for(true, 0, None),
        Path::new("/var/run/launchgraph.sock")
    );
    assert_eq!(
        paths::socket_path_for(true, 501, Some(OsStr::new("/run/user/501"))),
        Path::new("/var/run/launchgraph.sock")
    );
    assert_eq!(
        paths::socket_path_for(false, 0, Some(OsStr::new("/run/user/0"))),
        Path::new("/run/launchgraph/launchgraph.sock")
    );
    assert_eq!(
        paths::socket_path_for(false, 1000, Some(OsStr::new("/run/user/1000"))),
        Path::new("/run/user/1000/launchgraph.sock")
    );
    assert_eq!(
        paths::socket_path_for(false, 1000, None),
        Path::new("/tmp/launchgraph-1000/launchgraph.sock")
    );
    // A relative XDG_RUNTIME_DIR is invalid and ignored.
    assert_eq!(
        paths::socket_path_for(false, 1000, Some(OsStr::new("run"))),
        Path::new("/tmp/launchgraph-1000/launchgraph.sock")
    );
}

// The peer-credential tests run the client in a child process under another uid: this test
// binary again, running only `child_client`, told what to do by the environment.

const CHILD_SOCKET: &str = "LAUNCHGRAPH_TEST_CHILD_SOCKET";
const CHILD_REQUESTS: &str = "LAUNCHGRAPH_TEST_CHILD_REQUESTS";
const CHILD_MARK: &str = "child-outcome: ";

/// Not a test on its own: the client of the peer-credential tests, when run as their child.
#[test]
fn child_client() {
    let Some(path) = std::env::var_os(CHILD_SOCKET) else {
        return;
    };
    let requests: Vec<Request> =
        serde_json::from_str(&std::env::var(CHILD_REQUESTS).unwrap()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for request in requests {
        let outcome = runtime.block_on(client::request(Path::new(&path), request));
        let outcome = match outcome {
            Ok(response) => serde_json::to_string(&response).unwrap(),
            Err(ClientError::PermissionDenied { .. }) => "connect: permission denied".into(),
            Err(other) => format!("client error: {other}"),
        };
        println!("{CHILD_MARK}{outcome}");
    }
}

#[derive(Debug)]
enum Outcome {
    Answered(Response),
    Failed(String),
}

/// Runs `requests` from a child process with `uid` and `gid` (and no supplementary groups).
/// `None` when the child cannot be started as that user (this binary not reachable by it).
async fn as_user(path: &Path, uid: u32, gid: u32, requests: &[Request]) -> Option<Vec<Outcome>> {
    let output = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_client", "--nocapture", "--test-threads=1"])
        .env(CHILD_SOCKET, path)
        .env(CHILD_REQUESTS, serde_json::to_string(requests).unwrap())
        .uid(uid)
        .gid(gid)
        .output();
    let output = match within("the child client", output).await {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return None,
        Err(e) => panic!("cannot run the child client: {e}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child client failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let outcomes: Vec<Outcome> = stdout
        .lines()
        // libtest may have started the line with the test's name.
        .filter_map(|line| line.split_once(CHILD_MARK).map(|(_, outcome)| outcome))
        .map(|outcome| match serde_json::from_str(outcome) {
            Ok(response) => Outcome::Answered(response),
            Err(_) => Outcome::Failed(outcome.to_owned()),
        })
        .collect();
    assert_eq!(outcomes.len(), requests.len(), "{stdout}");
    Some(outcomes)
}

fn answered(outcome: &Outcome) -> &Response {
    match outcome {
        Outcome::Answered(response) => response,
        Outcome::Failed(why) => panic!("expected an answer, got {why}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn root_only_root_and_the_admin_group_may_act() {
    support::needs_root("running clients as other users");
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("this test runs clients as the user nobody, which this host lacks");
    let (uid, own_gid) = (nobody.uid.as_raw(), nobody.gid.as_raw());
    let (group, admin_gid) =
        support::control::group_nobody_is_not_in().expect("a group in /etc/group");
    let mut h = Harness::start_with(|cfg| cfg.admin_group = Some(group.clone()));
    // Let other users reach the socket's directory (the socket's own mode still decides).
    std::fs::set_permissions(h.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let status = Request::Status { unit: None };
    let start = Request::Start { unit: "web".into() };

    // Outside the group, the 0660 socket cannot even be opened.
    let outcomes = as_user(&h.path, uid, own_gid, std::slice::from_ref(&status))
        .await
        .expect("this test binary cannot be run as nobody: build it where every user may run it");
    assert!(
        matches!(&outcomes[..], [Outcome::Failed(why)] if why == "connect: permission denied"),
        "{outcomes:?}"
    );

    // A member of the admin group (here by its primary group) reads and acts.
    let outcomes = as_user(&h.path, uid, admin_gid, &[status.clone(), start.clone()])
        .await
        .unwrap();
    assert!(matches!(answered(&outcomes[0]), Response::Status { .. }));
    assert_eq!(
        answered(&outcomes[1]),
        &Response::Done {
            message: format!("web for uid {uid}")
        }
    );
    for expected in [&status, &start] {
        let (peer, request) = h.next_seen().await;
        assert_eq!(&request, expected);
        assert_eq!((peer.uid, peer.gid, peer.may_act), (uid, admin_gid, true));
        assert!(peer.pid.is_some_and(|pid| pid != std::process::id() as i32));
    }

    // Someone who can open the socket (here by its mode) but is neither root nor in the
    // group: may read, may not act.
    std::fs::set_permissions(&h.path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let requests = [
        status.clone(),
        start.clone(),
        Request::Reload { dry_run: true },
        Request::Reload { dry_run: false },
        Request::Events { follow: false },
        Request::Stop { unit: "web".into() },
    ];
    let outcomes = as_user(&h.path, uid, own_gid, &requests).await.unwrap();
    assert!(matches!(answered(&outcomes[0]), Response::Status { .. }));
    assert!(matches!(answered(&outcomes[2]), Response::Reload(r) if r.dry_run));
    assert!(matches!(answered(&outcomes[4]), Response::Event(_)));
    for refused in [&outcomes[1], &outcomes[3], &outcomes[5]] {
        let response = answered(refused);
        assert_eq!(error_code(response), ErrorCode::PermissionDenied);
        let message = error_message(response);
        assert!(message.contains(&format!("uid {uid}")), "{message}");
        assert!(message.contains(&group), "{message}");
    }
    // Only the reading requests reached the daemon.
    for expected in [&requests[0], &requests[2], &requests[4]] {
        let (peer, request) = h.next_seen().await;
        assert_eq!(&request, expected);
        assert_eq!((peer.uid, peer.gid, peer.may_act), (uid, own_gid, false));
    }
    assert!(
        h.seen.try_recv().is_err(),
        "nothing else reached the daemon"
    );
    h.stop().await;
}
