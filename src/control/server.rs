//! The daemon's end of the control socket: reading one bounded request per connection,
//! checking who may act, and writing the answer.
//!
//! What a request *does* is not decided here. A request that passed every check is handed to
//! the daemon as an [`Incoming`] on a channel, with a [`Replier`] for its answer: one response,
//! or for `events --follow` a stream of them that this module writes until the client goes
//! away. Nothing a client sends can panic the server or stop it from serving the others: each
//! connection is its own task, bounded in bytes, time and number.
//!
//! The number is bounded three ways, so that no client can lock out one that may act: peers
//! that may act by their credentials alone (root, or the admin group as their group) and other
//! peers each have their own budget of connections; `events --follow` streams, which hold their
//! connection for as long as the client likes, have a budget of their own and give back the
//! connection's slot once they stream; and a client that sends nothing is disconnected after
//! the request timeout.
//!
//! How the socket file is created safely, and removed, is the `socket_file` module's.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::unistd::{Gid, Group, Uid, User};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::protocol::{ErrorCode, MAX_REQUEST_BYTES, Request, Response, parse_request};
pub use super::socket_file::ControlError;
use super::socket_file::{SocketFile, Staged, place, prepare_directory};

/// How long a client may take to send its request line.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How many connections are served at once, for peers that may act and for the others each;
/// more are answered with an error and closed.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// How many `events --follow` streams are served at once, apart from the connection budgets.
pub(crate) const DEFAULT_MAX_FOLLOWERS: usize = 32;
/// How long one response line may take to be written, so that a client that stops reading
/// cannot hold its connection (and, on shutdown, the server) forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and for whom the control socket is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// The socket's path (see [`crate::paths::default_socket_path`]).
    pub path: PathBuf,
    /// The group whose members may act (start, stop, restart, reload), as a name or a numeric
    /// gid. With it the socket is `0660` and belongs to this group; without it the socket is
    /// `0600` and only root (or the user running the daemon) can use it.
    pub admin_group: Option<String>,
    /// How long a client may take to send its request line before it is disconnected.
    pub request_timeout: Duration,
    /// How many connections are served at once: this many for peers that may act by their
    /// credentials alone (root, or the admin group as their group), and as many for the others.
    pub max_connections: usize,
    /// How many `events --follow` streams are served at once (they do not count against
    /// `max_connections` once they stream).
    pub max_followers: usize,
}

impl ServerConfig {
    /// A configuration with no admin group and the default limits.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ServerConfig {
            path: path.into(),
            admin_group: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_followers: DEFAULT_MAX_FOLLOWERS,
        }
    }
}

/// Who is on the other end of a connection, from the kernel's peer credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    /// Not every platform reports it.
    pub pid: Option<i32>,
    /// Root, or a member of the admin group: may send acting requests.
    pub may_act: bool,
}

/// A request that passed every check, for the daemon to carry out.
#[derive(Debug)]
pub struct Incoming {
    pub peer: Peer,
    pub request: Request,
    /// Answers it; dropping it unanswered answers `shutting-down`.
    pub reply: Replier,
}

/// The way back to the client of one [`Incoming`].
#[derive(Debug)]
pub struct Replier {
    tx: oneshot::Sender<Reply>,
}

#[derive(Debug)]
enum Reply {
    Once(Response),
    Stream(mpsc::Receiver<Response>),
}

impl Replier {
    /// Answers with one response; the connection is closed once it is written. A client that
    /// has gone away meanwhile is not an error.
    pub fn send(self, response: Response) {
        // The only failure is a connection that no longer waits: nothing to do.
        let _ = self.tx.send(Reply::Once(response));
    }

    /// Answers with a stream of responses (`events --follow`): the server writes each one sent
    /// on the returned channel, until the sender is dropped or the client goes away. When the
    /// client has gone, `send` fails and [`mpsc::Sender::closed`] completes, which is how the
    /// daemon learns to stop. The channel holds `capacity` responses; a daemon that must never
    /// wait on a slow client uses `try_send` and counts what it drops.
    pub fn stream(self, capacity: usize) -> mpsc::Sender<Response> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        // If the connection no longer waits, `rx` is dropped here and `tx` is closed at once.
        let _ = self.tx.send(Reply::Stream(rx));
        tx
    }
}

/// The admin group, resolved once when the socket is bound.
#[derive(Debug, Clone)]
struct AdminGroup {
    gid: u32,
    /// For messages: the name, or the number when the gid has no entry.
    name: String,
}

/// What every connection task shares.
#[derive(Debug)]
struct Context {
    admin: Option<AdminGroup>,
    request_timeout: Duration,
    /// Slots for `events --follow` streams.
    followers: Arc<Semaphore>,
    max_followers: usize,
}

/// The bound control socket, ready to [`serve`](ControlServer::serve).
///
/// Dropping it, or the end of `serve`, removes the socket file.
#[derive(Debug)]
pub struct ControlServer {
    listener: std::os::unix::net::UnixListener,
    file: SocketFile,
    context: Context,
    max_connections: usize,
}

impl ControlServer {
    /// Creates the control socket at `cfg.path` (see the module documentation), creating its
    /// directory (`0755`) when missing.
    ///
    /// Needs no async runtime, so the daemon can fail early, before it starts anything.
    pub fn bind(cfg: &ServerConfig) -> Result<Self, ControlError> {
        let admin = cfg.admin_group.as_deref().map(resolve_group).transpose()?;
        // Absolute, so that removing the file at the end does not depend on the working
        // directory then.
        let path = std::path::absolute(&cfg.path).map_err(ControlError::io(
            "cannot resolve the socket path",
            &cfg.path,
        ))?;
        let path = path.as_path();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if path.file_name().is_none() {
            return Err(ControlError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        prepare_directory(dir)?;

        let mode = if admin.is_some() { 0o660 } else { 0o600 };
        let gid = admin.as_ref().map(|g| g.gid);
        let mut staged = Staged::create(dir, path, mode, gid)?;
        let file = place(&staged, path)?;
        let listener = staged.listener.take().expect("a staged socket is bound");
        // Removes the now empty private directory.
        drop(staged);

        Ok(ControlServer {
            listener,
            file,
            context: Context {
                admin,
                request_timeout: cfg.request_timeout,
                followers: Arc::new(Semaphore::new(cfg.max_followers.max(1))),
                max_followers: cfg.max_followers.max(1),
            },
            max_connections: cfg.max_connections.max(1),
        })
    }

    /// Serves connections until `shutdown` is cancelled, handing each valid request to `tx`.
    ///
    /// On shutdown it stops accepting, removes the socket file, answers requests still waiting
    /// for the daemon with `shutting-down`, ends `--follow` streams, and returns once every
    /// connection is closed.
    pub async fn serve(self, tx: mpsc::Sender<Incoming>, shutdown: CancellationToken) {
        let ControlServer {
            listener,
            file,
            context,
            max_connections,
        } = self;
        let listener = match tokio::net::UnixListener::from_std(listener) {
            Ok(l) => l,
            Err(error) => {
                warn!(path = %file.path.display(), %error, "control socket: cannot serve");
                return;
            }
        };
        let context = Arc::new(context);
        // Peers that may act have slots of their own, so that readers holding every other
        // slot never keep root from stopping a unit.
        let acting_slots = Arc::new(Semaphore::new(max_connections));
        let other_slots = Arc::new(Semaphore::new(max_connections));
        let tracker = TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, mostly: retrying at once would spin, so wait a
                    // little for connections to close.
                    warn!(%error, "control socket: accept failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    }
                }
            };
            // The credentials are the kernel's, known at accept; a member of the admin group
            // by its supplementary groups only is told apart later, off this loop, and counts
            // with the others until then.
            let acting = stream.peer_cred().is_ok_and(|cred| {
                may_act(cred.uid(), cred.gid(), context.admin.as_ref()) == Some(true)
            });
            let slots = if acting { &acting_slots } else { &other_slots };
            match Arc::clone(slots).try_acquire_owned() {
                Ok(permit) => {
                    let (context, tx, shutdown) =
                        (Arc::clone(&context), tx.clone(), shutdown.clone());
                    tracker.spawn(async move {
                        connection(stream, &context, &tx, &shutdown, permit).await;
                    });
                }
                Err(_) => reject_busy(&stream, max_connections),
            }
        }
        // New clients are told the daemon is not running rather than left waiting.
        drop(listener);
        drop(file);
        tracker.close();
        tracker.wait().await;
    }
}

/// Answers a connection over the limit without a task: the line fits in the empty send buffer
/// of a new socket, so a non-blocking write either succeeds or the client is gone.
fn reject_busy(stream: &UnixStream, max: usize) {
    warn!(max, "control socket: too many connections, refusing one");
    let line = response_line(&fault(
        ErrorCode::Busy,
        format!("launchgraph is busy: {max} control connections are open; try again"),
    ));
    if let Ok(line) = line {
        let _ = stream.try_write(&line);
    }
}

fn fault(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::Error {
        code,
        message: message.into(),
    }
}

fn response_line(response: &Response) -> serde_json::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(response)?;
    line.push(b'\n');
    Ok(line)
}

async fn write_response(
    stream: &mut (impl AsyncWriteExt + Unpin),
    response: &Response,
) -> io::Result<()> {
    let line = response_line(response).map_err(io::Error::other)?;
    match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&line)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client did not read its response",
        )),
    }
}

/// One connection, start to end, holding `slot`: a connection slot, traded for a follower's
/// slot when the request is `events --follow`, so that streams never fill the connection
/// budget. Errors are the client's business; they are only logged.
async fn connection(
    mut stream: UnixStream,
    context: &Context,
    tx: &mpsc::Sender<Incoming>,
    shutdown: &CancellationToken,
    mut slot: OwnedSemaphorePermit,
) {
    let answer = match admit(&mut stream, context, shutdown).await {
        Admitted::Close => return,
        Admitted::Refuse(response) => Some(response),
        Admitted::Request(peer, request) => {
            let following = matches!(request, Request::Events { follow: true });
            match following.then(|| Arc::clone(&context.followers).try_acquire_owned()) {
                Some(Err(_)) => Some(busy_following(context.max_followers)),
                taken => {
                    if let Some(Ok(follower_slot)) = taken {
                        slot = follower_slot;
                    }
                    dispatch(&mut stream, peer, request, tx, shutdown).await
                }
            }
        }
    };
    if let Some(response) = answer
        && let Err(error) = write_response(&mut stream, &response).await
    {
        debug!(%error, "control socket: could not answer");
    }
    drop(slot);
}

fn busy_following(max: usize) -> Response {
    warn!(max, "control socket: too many followers, refusing one");
    fault(
        ErrorCode::Busy,
        format!("launchgraph is busy: {max} clients follow its events already; try again"),
    )
}

enum Admitted {
    /// Closed without an answer: the client sent nothing, or the server is shutting down.
    Close,
    /// Answered with this error.
    Refuse(Response),
    Request(Peer, Request),
}

/// Reads and checks the request: size, framing, version, shape, and the caller's right to it.
async fn admit(
    stream: &mut UnixStream,
    context: &Context,
    shutdown: &CancellationToken,
) -> Admitted {
    let cred = match stream.peer_cred() {
        Ok(cred) => cred,
        Err(error) => {
            return Admitted::Refuse(fault(
                ErrorCode::PermissionDenied,
                format!("cannot read the caller's credentials: {error}"),
            ));
        }
    };
    let line = tokio::select! {
        _ = shutdown.cancelled() => return Admitted::Close,
        read = read_request(stream, context.request_timeout) => read,
    };
    let line = match line {
        Ok(line) => line,
        Err(ReadError::Nothing) => return Admitted::Close,
        Err(ReadError::Refused(response)) => return Admitted::Refuse(response),
    };
    let request = match parse_request(&line) {
        Ok(request) => request,
        Err((code, message)) => return Admitted::Refuse(fault(code, message)),
    };

    let (uid, gid) = (cred.uid(), cred.gid());
    let may_act = match may_act(uid, gid, context.admin.as_ref()) {
        Some(known) => known,
        None => {
            // The group database may be a network service: look it up off the runtime.
            let admin = context.admin.clone();
            tokio::task::spawn_blocking(move || is_member(uid, admin.as_ref()))
                .await
                .unwrap_or(false)
        }
    };
    if request.is_acting() && !may_act {
        let needed = match &context.admin {
            Some(group) => format!(
                "root or a member of the group {} (gid {})",
                group.name, group.gid
            ),
            None => "root (no admin group is configured)".to_owned(),
        };
        return Admitted::Refuse(fault(
            ErrorCode::PermissionDenied,
            format!(
                "uid {uid} may read but not act: {} needs {needed}",
                request_name(&request)
            ),
        ));
    }
    let peer = Peer {
        uid,
        gid,
        pid: cred.pid(),
        may_act,
    };
    Admitted::Request(peer, request)
}

fn request_name(request: &Request) -> &'static str {
    match request {
        Request::Status { .. } => "status",
        Request::Start { .. } => "start",
        Request::Stop { .. } => "stop",
        Request::Restart { .. } => "restart",
        Request::Reload { dry_run: true } => "reload --dry-run",
        Request::Reload { dry_run: false } => "reload",
        Request::Events { .. } => "events",
        Request::Metrics => "metrics",
        Request::Guards => "guards",
        Request::GuardForce {
            to: crate::control::protocol::ForceTo::Trip,
            ..
        } => "guard trip",
        Request::GuardForce {
            to: crate::control::protocol::ForceTo::Clear,
            ..
        } => "guard clear",
    }
}

/// Hands the request to the daemon. Returns the one answer to write, or `None` once a stream
/// of answers has been written.
async fn dispatch(
    stream: &mut UnixStream,
    peer: Peer,
    request: Request,
    tx: &mpsc::Sender<Incoming>,
    shutdown: &CancellationToken,
) -> Option<Response> {
    let shutting_down = || fault(ErrorCode::ShuttingDown, "launchgraph is shutting down");
    let (reply_tx, reply_rx) = oneshot::channel();
    let incoming = Incoming {
        peer,
        request,
        reply: Replier { tx: reply_tx },
    };
    // The daemon's queue may be full: wait for room, but not past shutdown.
    let sent = tokio::select! {
        _ = shutdown.cancelled() => return Some(shutting_down()),
        sent = tx.send(incoming) => sent,
    };
    if sent.is_err() {
        return Some(shutting_down());
    }
    let reply = tokio::select! {
        _ = shutdown.cancelled() => return Some(shutting_down()),
        reply = reply_rx => reply,
    };
    match reply {
        Ok(Reply::Once(response)) => Some(response),
        Ok(Reply::Stream(rx)) => {
            follow(stream, rx, shutdown).await;
            None
        }
        // The daemon dropped the request unanswered, which it does only on its way out.
        Err(_) => Some(shutting_down()),
    }
}

/// Writes a stream of responses until it ends, the client goes away, or the server shuts
/// down. A client sends nothing after its request, so anything it sends is ignored and the end
/// of its input means it has gone.
async fn follow(
    stream: &mut UnixStream,
    mut rx: mpsc::Receiver<Response>,
    shutdown: &CancellationToken,
) {
    let (mut reader, mut writer) = stream.split();
    let mut scratch = [0u8; 512];
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                // The daemon is on its way out: write what it already published (the last
                // transitions of its shutdown), until the stream ends, within a bound.
                let bound = tokio::time::sleep(Duration::from_secs(2));
                tokio::pin!(bound);
                loop {
                    tokio::select! {
                        () = &mut bound => return,
                        next = rx.recv() => {
                            let Some(response) = next else { return };
                            if write_response(&mut writer, &response).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
            read = reader.read(&mut scratch) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            next = rx.recv() => {
                let Some(response) = next else { return };
                if let Err(error) = write_response(&mut writer, &response).await {
                    debug!(%error, "control socket: follower gone");
                    return;
                }
            }
        }
    }
}

enum ReadError {
    /// The client closed or timed out without sending a byte: close quietly.
    Nothing,
    Refused(Response),
}

/// Reads the request line: at most [`MAX_REQUEST_BYTES`] before its newline, within `timeout`.
async fn read_request(stream: &mut UnixStream, timeout: Duration) -> Result<Vec<u8>, ReadError> {
    let mut line = Vec::with_capacity(1024);
    // One byte more than a request may have: enough to tell a request that is too long.
    let mut reader = BufReader::new(stream).take(MAX_REQUEST_BYTES as u64 + 1);
    let read = tokio::time::timeout(timeout, reader.read_until(b'\n', &mut line)).await;
    match read {
        // What was read before the deadline is in `line`.
        Err(_) if line.is_empty() => Err(ReadError::Nothing),
        Err(_) => Err(ReadError::Refused(fault(
            ErrorCode::Truncated,
            format!(
                "the request line did not end within {} s ({} bytes received)",
                timeout.as_secs_f64(),
                line.len()
            ),
        ))),
        Ok(Err(error)) if line.is_empty() => {
            debug!(%error, "control socket: read failed");
            Err(ReadError::Nothing)
        }
        Ok(Err(error)) => Err(ReadError::Refused(fault(
            ErrorCode::Truncated,
            format!("the connection failed after {} bytes: {error}", line.len()),
        ))),
        Ok(Ok(_)) if line.last() == Some(&b'\n') => {
            line.pop();
            Ok(line)
        }
        Ok(Ok(_)) if line.len() > MAX_REQUEST_BYTES => Err(ReadError::Refused(fault(
            ErrorCode::TooLarge,
            format!("the request is longer than {MAX_REQUEST_BYTES} bytes"),
        ))),
        Ok(Ok(_)) if line.is_empty() => Err(ReadError::Nothing),
        Ok(Ok(_)) => Err(ReadError::Refused(fault(
            ErrorCode::Truncated,
            format!(
                "the connection ended after {} bytes, before the request's newline",
                line.len()
            ),
        ))),
    }
}

/// Whether the caller may act, when it can be told without the group database.
fn may_act(uid: u32, gid: u32, admin: Option<&AdminGroup>) -> Option<bool> {
    if uid == 0 {
        return Some(true);
    }
    match admin {
        None => Some(false),
        Some(group) if group.gid == gid => Some(true),
        Some(_) => None,
    }
}

/// Whether `uid`'s user belongs to the admin group by the group database (its supplementary
/// groups, the way `initgroups` would set them at login).
fn is_member(uid: u32, admin: Option<&AdminGroup>) -> bool {
    let Some(admin) = admin else { return false };
    let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid)) else {
        return false;
    };
    if user.gid.as_raw() == admin.gid {
        return true;
    }
    let Ok(name) = CString::new(user.name) else {
        return false;
    };
    crate::process::group_list(&name, user.gid).is_ok_and(|groups| groups.contains(&admin.gid))
}

/// A group name, or a numeric gid (which needs no entry in the group database).
fn resolve_group(group: &str) -> Result<AdminGroup, ControlError> {
    if let Ok(gid) = group.parse::<u32>() {
        let name = match Group::from_gid(Gid::from_raw(gid)) {
            Ok(Some(entry)) => entry.name,
            _ => gid.to_string(),
        };
        return Ok(AdminGroup { gid, name });
    }
    match Group::from_name(group) {
        Ok(Some(entry)) => Ok(AdminGroup {
            gid: entry.gid.as_raw(),
            name: entry.name,
        }),
        Ok(None) => Err(ControlError::UnknownGroup {
            group: group.to_owned(),
        }),
        Err(errno) => Err(ControlError::Io {
            what: "cannot look up the admin group for",
            path: PathBuf::from(group),
            source: errno.into(),
        }),
    }
}
