//! Probes: how launchgraph asks whether a unit is ready or alive.
//!
//! This module owns running one attempt of a [`Probe`] (a TCP connect, an HTTP GET, or a
//! command) within a timeout and describing what happened as a [`ProbeOutcome`]: a verdict, a
//! timestamp, a latency, a stable reason and one line a person reads. A failed probe is a value,
//! never an `Err`. It also owns the readiness polling schedule ([`ready_poll_delays`]).
//!
//! It does not decide what an outcome means for a unit (how many failures restart it, when a
//! start has taken too long): that is the supervisor's, which runs probes in their own tasks.
//!
//! When a connect to a loopback address fails, the probe also tries the other loopback family
//! on the same port, because "refused on 127.0.0.1 while the server listens on ::1 only" (or the
//! reverse) is a common cause of "it works from my shell": the outcome then says so plainly.

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitStatus;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal as NixSignal;
use tokio::net::TcpStream;

use crate::process::{BoundedCommand, BoundedError, Capture};
use crate::unit::{CANONICAL_PATH, Probe};

/// The most of an HTTP body read to look for `body_contains`; a health answer is small, and a
/// probe must not buffer whatever a confused server streams.
pub(crate) const BODY_LIMIT: usize = 64 * 1024;

/// The most of an unexpected answer's body read for the detail's excerpt.
const ERROR_BODY_LIMIT: usize = 1024;

/// The bound on the extra connect that checks the other loopback family. Loopback connects are
/// answered by the kernel at once, so this only matters when something drops packets.
const FAMILY_CHECK_TIMEOUT: Duration = Duration::from_millis(500);

/// How much of an exec probe's stderr is kept (its tail: errors come last).
const STDERR_KEEP: usize = 4 * 1024;

/// How much text an excerpt in a detail line shows.
const EXCERPT_CHARS: usize = 160;

/// Backstop for the HTTP client's connects; each attempt's own timeout is normally shorter.
const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a probe failed: a stable classification; [`ProbeOutcome::detail`] has the specifics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeFailure {
    /// The connection was refused.
    Refused,
    /// No answer within the probe's timeout (connect, response, or the command's exit).
    TimedOut,
    /// The HTTP status was not the expected one (this is the one received).
    WrongStatus(u16),
    /// The HTTP body did not contain the expected text.
    BodyMismatch,
    /// The command exited with this non-zero code.
    ExitStatus(i32),
    /// The command was killed by this signal.
    Signal(i32),
    /// The command could not be started.
    SpawnFailed,
    /// The declared loopback address refused (or did not answer) but the other loopback family
    /// accepts on the same port: the server listens on the other family only.
    OtherFamilyOnly,
    /// Any other I/O or protocol error (reset, unreachable, a malformed response, ...).
    Io,
}

impl ProbeFailure {}

/// The result of one probe attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeOutcome {
    pub ok: bool,
    /// Time spent on the attempt itself (not on the follow-up family check of a failure).
    pub latency: Duration,
    /// When the attempt started.
    pub started_at: SystemTime,
    /// One line a person reads: what was tried and what answered.
    pub detail: String,
    /// `None` when `ok`.
    pub reason: Option<ProbeFailure>,
}

/// What one probe kind found, before it is stamped into a [`ProbeOutcome`].
struct Verdict {
    latency: Duration,
    reason: Option<ProbeFailure>,
    detail: String,
}

impl Verdict {
    fn ok(latency: Duration, detail: String) -> Self {
        Self {
            latency,
            reason: None,
            detail,
        }
    }

    fn failed(latency: Duration, reason: ProbeFailure, detail: String) -> Self {
        Self {
            latency,
            reason: Some(reason),
            detail,
        }
    }
}

/// Runs probes. Holds one HTTP client for every HTTP probe, so a probe allocates no client;
/// it is built by the first HTTP probe, so a daemon without one never builds it. Cheap to
/// clone and share.
#[derive(Debug, Clone, Default)]
pub struct Prober {
    http: OnceLock<reqwest::Client>,
}

impl Prober {
    pub fn new() -> Self {
        Self::default()
    }

    /// The HTTP client every HTTP probe shares.
    fn client(&self) -> &reqwest::Client {
        self.http.get_or_init(http_client)
    }
}

/// The client of HTTP probes.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        // A proxy from the environment would answer for the service: probe it directly.
        .no_proxy()
        // A redirect is an answer to report (the expected status says what is healthy).
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(HTTP_CONNECT_TIMEOUT)
        // No pooled connections: each probe opens its own, so a listener that went away
        // is noticed instead of being hidden behind a kept-alive connection.
        .pool_max_idle_per_host(0)
        .http1_only()
        .user_agent(concat!("launchgraph/", env!("CARGO_PKG_VERSION"), " probe"))
        .build()
        // Building fails only when a TLS backend or a DNS resolver's system configuration
        // cannot load; this client has neither.
        .expect("an HTTP client without TLS or a custom resolver always builds")
}

impl Prober {
    /// Runs one attempt of `probe`, bounded by `timeout`. When a loopback connect fails, a
    /// further check of the other family may take up to 500 ms more.
    pub async fn run(&self, probe: &Probe, timeout: Duration) -> ProbeOutcome {
        let started_at = SystemTime::now();
        let verdict = match probe {
            Probe::Tcp { addr } => tcp(*addr, timeout).await,
            Probe::Http {
                url,
                addr,
                status,
                body_contains,
            } => {
                self.http(url, *addr, *status, body_contains.as_deref(), timeout)
                    .await
            }
            Probe::Exec { argv } => exec(argv, timeout).await,
        };
        ProbeOutcome {
            ok: verdict.reason.is_none(),
            latency: verdict.latency,
            started_at,
            detail: verdict.detail,
            reason: verdict.reason,
        }
    }

    async fn http(
        &self,
        url: &str,
        addr: SocketAddr,
        expected: u16,
        body_contains: Option<&str>,
        timeout: Duration,
    ) -> Verdict {
        let target = match HttpTarget::new(url, addr) {
            Ok(t) => t,
            Err(e) => {
                return Verdict::failed(
                    Duration::ZERO,
                    ProbeFailure::Io,
                    format!("GET {url}: not a usable URL: {e}"),
                );
            }
        };
        let what = target.describe(url, addr);
        let needle = body_contains.map(str::as_bytes);

        let start = Instant::now();
        let attempt = async {
            let mut request = self.client().get(target.url.clone());
            if let Some(host) = &target.host {
                request = request.header(reqwest::header::HOST, host.as_str());
            }
            let mut response = request.send().await?;
            let status = response.status();
            let body = if status.as_u16() != expected {
                // What a failing server says is often the best hint ("model is loading"); a
                // failure to read it does not change the verdict.
                read_body_prefix(&mut response, None, ERROR_BODY_LIMIT)
                    .await
                    .ok()
            } else if let Some(needle) = needle {
                Some(read_body_prefix(&mut response, Some(needle), BODY_LIMIT).await?)
            } else {
                None
            };
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            Ok::<_, reqwest::Error>((status, body, location))
        };
        let result = tokio::time::timeout(timeout, attempt).await;
        let latency = start.elapsed();

        match result {
            Ok(Ok((status, body, location))) => {
                let got = status_text(status);
                if status.as_u16() != expected {
                    let mut detail = format!("{what}: got {got}, expected {expected}");
                    if let (true, Some(location)) = (status.is_redirection(), location) {
                        let _ = write!(
                            detail,
                            " (redirects to {}; probes do not follow redirects)",
                            excerpt(location.as_bytes())
                        );
                    } else if let Some(body) = body.filter(|b| !one_line(&b.bytes).is_empty()) {
                        let _ = write!(detail, " (body: {:?})", excerpt(&body.bytes));
                    }
                    return Verdict::failed(
                        latency,
                        ProbeFailure::WrongStatus(status.as_u16()),
                        detail,
                    );
                }
                match (body_contains, body) {
                    (Some(text), Some(body)) if !body.found => {
                        let scope = if body.truncated {
                            "the first 64 KiB of the body do"
                        } else {
                            "the body does"
                        };
                        Verdict::failed(
                            latency,
                            ProbeFailure::BodyMismatch,
                            format!(
                                "{what}: {got}, but {scope} not contain {text:?} (body: {:?})",
                                excerpt(&body.bytes)
                            ),
                        )
                    }
                    (Some(text), _) => Verdict::ok(
                        latency,
                        format!(
                            "{what}: {got} with {text:?} in the body in {}",
                            fmt_latency(latency)
                        ),
                    ),
                    (None, _) => Verdict::ok(
                        latency,
                        format!("{what}: {got} in {}", fmt_latency(latency)),
                    ),
                }
            }
            Ok(Err(e)) => match classify_http_error(&e) {
                HttpError::Connect(failure) => {
                    let (reason, text) = explain_connect_failure(addr, failure).await;
                    Verdict::failed(latency, reason, format!("{what}: {text}"))
                }
                HttpError::Other(text) => {
                    Verdict::failed(latency, ProbeFailure::Io, format!("{what}: {text}"))
                }
            },
            Err(_elapsed) => {
                let mut detail = format!("{what}: no response within {}", fmt_timeout(timeout));
                // The attempt may have been stuck connecting or waiting for an answer; a fresh
                // connect tells which, and only a connect failure calls for the family check.
                match connect(addr, FAMILY_CHECK_TIMEOUT).await {
                    Ok(()) => {
                        detail.push_str(" (the server accepts connections but did not answer)");
                        Verdict::failed(latency, ProbeFailure::TimedOut, detail)
                    }
                    Err(failure) => {
                        let (reason, text) = explain_connect_failure(addr, failure).await;
                        let reason = match reason {
                            ProbeFailure::OtherFamilyOnly => reason,
                            _ => ProbeFailure::TimedOut,
                        };
                        let _ = write!(detail, "; {text}");
                        Verdict::failed(latency, reason, detail)
                    }
                }
            }
        }
    }
}

/// How often readiness is tried in the first seconds of a start.
pub(crate) const READY_POLL_FAST: Duration = Duration::from_micros(500);
/// How often, in those seconds, when many units are starting at once (see
/// [`ready_poll_delays_every`]).
pub(crate) const READY_POLL_CROWDED: Duration = Duration::from_millis(5);
/// How long the fast polling lasts before backing off.
pub(crate) const READY_POLL_FAST_FOR: Duration = Duration::from_secs(3);

/// The delay before each successive readiness attempt while a unit is starting.
///
/// The first attempt runs at once (0); then one attempt every 0.5 ms for the first 3 s of the
/// wait (most services that start fast are ready by then, and each is noticed within half a
/// millisecond, so their dependents start within milliseconds); then the delays grow by half
/// each time (0.75, 1.125, ... ms) up to `interval`, which then repeats forever. A slow starter
/// (OpenClaw's gateway takes seconds) costs at most one attempt per `interval` once the fast
/// phase is over. An `interval` below 0.5 ms is used from the start. The iterator never ends:
/// the caller stops at its start timeout.
pub fn ready_poll_delays(interval: Duration) -> impl Iterator<Item = Duration> {
    ready_poll_delays_every(READY_POLL_FAST, interval)
}

/// [`ready_poll_delays`] with attempts every `fast` in the fast phase (its length is still
/// [`READY_POLL_FAST_FOR`]).
pub(crate) fn ready_poll_delays_every(
    fast: Duration,
    interval: Duration,
) -> impl Iterator<Item = Duration> {
    let fast = fast.min(interval);
    let fast_count = (READY_POLL_FAST_FOR.as_nanos() / fast.as_nanos().max(1)) as usize;
    let first_slow = fast.saturating_add(fast / 2).min(interval);
    std::iter::once(Duration::ZERO)
        .chain(std::iter::repeat_n(fast, fast_count))
        .chain(std::iter::successors(Some(first_slow), move |d| {
            Some(d.saturating_add(*d / 2).min(interval))
        }))
}

async fn tcp(addr: SocketAddr, timeout: Duration) -> Verdict {
    let start = Instant::now();
    let result = connect(addr, timeout).await;
    let latency = start.elapsed();
    match result {
        Ok(()) => Verdict::ok(
            latency,
            format!("connect {addr}: accepted in {}", fmt_latency(latency)),
        ),
        Err(failure) => {
            let (reason, text) = explain_connect_failure(addr, failure).await;
            Verdict::failed(latency, reason, text)
        }
    }
}

/// Why a connect failed.
#[derive(Debug)]
enum ConnectFailure {
    Refused,
    TimedOut(Option<Duration>),
    Other(String),
}

impl ConnectFailure {
    fn from_io(e: &io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => ConnectFailure::Refused,
            io::ErrorKind::TimedOut => ConnectFailure::TimedOut(None),
            _ => ConnectFailure::Other(describe_io(e)),
        }
    }

    fn reason(&self) -> ProbeFailure {
        match self {
            ConnectFailure::Refused => ProbeFailure::Refused,
            ConnectFailure::TimedOut(_) => ProbeFailure::TimedOut,
            ConnectFailure::Other(_) => ProbeFailure::Io,
        }
    }

    fn describe(&self) -> String {
        match self {
            ConnectFailure::Refused => "connection refused".into(),
            ConnectFailure::TimedOut(Some(t)) => format!("no answer within {}", fmt_timeout(*t)),
            ConnectFailure::TimedOut(None) => "timed out".into(),
            ConnectFailure::Other(text) => text.clone(),
        }
    }
}

/// Connects to `addr` within `timeout`, and closes the connection at once.
///
/// A loopback handshake is done by the time `connect(2)` returns (the kernel answers the SYN
/// within the call), so a zero-timeout `poll` mostly tells the outcome at once, without a timer
/// or a registration with the runtime (which cost three more system calls and a wake-up of
/// the runtime's driver per attempt: probes are most of what an idle daemon does). Only a
/// connect still in progress is waited for on the runtime, within `timeout`, and judged as
/// tokio's own connect judges it (writable, then the socket's pending error).
async fn connect(addr: SocketAddr, timeout: Duration) -> Result<(), ConnectFailure> {
    let pending = match start_connect(addr) {
        Ok(Connecting::Done) => return Ok(()),
        Ok(Connecting::InProgress(fd)) => fd,
        Err(e) => return Err(ConnectFailure::from_io(&e)),
    };
    let stream = match TcpStream::from_std(std::net::TcpStream::from(pending)) {
        Ok(stream) => stream,
        Err(e) => return Err(ConnectFailure::from_io(&e)),
    };
    match tokio::time::timeout(timeout, stream.writable()).await {
        Ok(Ok(())) => match stream.take_error() {
            Ok(None) => Ok(()),
            Ok(Some(e)) | Err(e) => Err(ConnectFailure::from_io(&e)),
        },
        Ok(Err(e)) => Err(ConnectFailure::from_io(&e)),
        Err(_) => Err(ConnectFailure::TimedOut(Some(timeout))),
    }
}

/// Where a non-blocking connect stands right after `connect(2)`.
enum Connecting {
    /// Connected (the socket is closed again).
    Done,
    /// Still in progress: the socket, to wait on.
    InProgress(std::os::fd::OwnedFd),
}

/// Starts a non-blocking connect to `addr` and looks once, without waiting, whether it is
/// done. A refused or failed connect is an `Err`, as from tokio's connect.
fn start_connect(addr: SocketAddr) -> io::Result<Connecting> {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    use rustix::net::{AddressFamily, SocketType};
    use std::os::fd::AsFd as _;
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    #[cfg(not(target_os = "macos"))]
    let fd = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        rustix::net::SocketFlags::NONBLOCK | rustix::net::SocketFlags::CLOEXEC,
        None,
    )?;
    // macOS has no SOCK_NONBLOCK or SOCK_CLOEXEC: both are set right after, as std and tokio
    // do there.
    #[cfg(target_os = "macos")]
    let fd = {
        let fd = rustix::net::socket(family, SocketType::STREAM, None)?;
        rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)?;
        rustix::io::ioctl_fionbio(&fd, true)?;
        fd
    };
    match rustix::net::connect(&fd, &addr) {
        Ok(()) => return Ok(Connecting::Done),
        Err(rustix::io::Errno::INPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
    let ready = nix::poll::poll(&mut fds, PollTimeout::ZERO).unwrap_or(0) == 1;
    let revents = fds[0].revents().unwrap_or(PollFlags::empty());
    if !ready {
        return Ok(Connecting::InProgress(fd));
    }
    // A TCP socket with an error pending polls POLLERR (tcp_poll in torvalds/linux:
    // net/ipv4/tcp.c): without it, POLLOUT means connected.
    if !revents.intersects(PollFlags::POLLERR | PollFlags::POLLHUP) {
        return Ok(Connecting::Done);
    }
    match rustix::net::sockopt::socket_error(&fd)? {
        Ok(()) => Ok(Connecting::Done),
        Err(e) => Err(e.into()),
    }
}

/// The other loopback family's address for `ip`, if `ip` is a loopback address.
fn other_loopback(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        IpAddr::V6(v6) if v6.is_loopback() => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) if v4.is_loopback() => Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            _ => None,
        },
        IpAddr::V4(_) => None,
    }
}

fn family_name(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IPv4",
        IpAddr::V6(_) => "IPv6",
    }
}

/// Describes a failed connect to `addr` and classifies it. A refused or unanswered connect to a
/// loopback address is followed by a connect to the other loopback family on the same port,
/// and the text says what that one answered.
async fn explain_connect_failure(
    addr: SocketAddr,
    failure: ConnectFailure,
) -> (ProbeFailure, String) {
    let mut text = format!("connect {addr}: {}", failure.describe());
    let reason = failure.reason();
    let other_ip = match (&failure, other_loopback(addr.ip())) {
        (ConnectFailure::Refused | ConnectFailure::TimedOut(_), Some(ip)) => ip,
        _ => return (reason, text),
    };
    let other = SocketAddr::new(other_ip, addr.port());
    let port = addr.port();
    match connect(other, FAMILY_CHECK_TIMEOUT).await {
        Ok(()) => {
            let _ = write!(
                text,
                "; {other} accepts: the server listens on {} loopback only (probe {other}, \
                 or bind the server to {})",
                family_name(other_ip),
                addr.ip()
            );
            return (ProbeFailure::OtherFamilyOnly, text);
        }
        Err(ConnectFailure::Refused) => {
            let nothing = if addr.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST)
                || addr.ip() == IpAddr::V6(Ipv6Addr::LOCALHOST)
            {
                format!("nothing listens on port {port}")
            } else {
                format!("nothing listens on {addr} or {other}")
            };
            let _ = write!(text, "; {other}: connection refused too: {nothing}");
        }
        Err(ConnectFailure::TimedOut(_)) => {
            let _ = write!(
                text,
                "; {other}: no answer within {} either",
                fmt_timeout(FAMILY_CHECK_TIMEOUT)
            );
        }
        Err(ConnectFailure::Other(e)) => {
            let _ = write!(text, "; {other}: {e}");
        }
    }
    (reason, text)
}

/// Where an HTTP probe really connects, and the `Host` it sends.
struct HttpTarget {
    /// The URL with its host replaced by the resolved address (unchanged when it already was).
    url: reqwest::Url,
    /// The URL's own authority, sent as `Host` when the host was replaced.
    host: Option<String>,
}

impl HttpTarget {
    /// Probes never use DNS: the request goes to `addr` while `Host` keeps the URL's authority,
    /// so virtual hosts answer as they would for the URL.
    fn new(url: &str, addr: SocketAddr) -> Result<Self, String> {
        let mut parsed = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
        if parsed.scheme() != "http" {
            return Err(format!(
                "scheme {:?}: probes speak plain HTTP only",
                parsed.scheme()
            ));
        }
        let authority = match (parsed.host_str(), parsed.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => return Err("no host".into()),
        };
        let url_ip = parsed
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
            .and_then(|h| h.parse::<IpAddr>().ok());
        let already =
            url_ip == Some(addr.ip()) && parsed.port_or_known_default() == Some(addr.port());
        if already {
            return Ok(Self {
                url: parsed,
                host: None,
            });
        }
        parsed
            .set_ip_host(addr.ip())
            .map_err(|()| "cannot carry an address".to_owned())?;
        parsed
            .set_port(Some(addr.port()))
            .map_err(|()| "cannot carry a port".to_owned())?;
        Ok(Self {
            url: parsed,
            host: Some(authority),
        })
    }

    /// `GET <url>`, plus the address it went to when the URL does not name it.
    fn describe(&self, url: &str, addr: SocketAddr) -> String {
        match self.host {
            None => format!("GET {url}"),
            Some(_) => format!("GET {url} via {addr}"),
        }
    }
}

/// What was read of a body while looking for the expected text.
struct BodyPrefix {
    bytes: Vec<u8>,
    found: bool,
    /// The body went on past [`BODY_LIMIT`].
    truncated: bool,
}

/// Reads at most `limit` bytes of the body, stopping early once `needle` is found.
async fn read_body_prefix(
    response: &mut reqwest::Response,
    needle: Option<&[u8]>,
    limit: usize,
) -> Result<BodyPrefix, reqwest::Error> {
    let mut bytes = Vec::new();
    // Where the next search starts: a match may straddle chunks, but not begin before this.
    let mut searched = 0;
    loop {
        if let Some(needle) = needle {
            if contains(&bytes[searched..], needle) {
                return Ok(BodyPrefix {
                    bytes,
                    found: true,
                    truncated: false,
                });
            }
            searched = (bytes.len() + 1).saturating_sub(needle.len().max(1));
        }
        if bytes.len() >= limit {
            return Ok(BodyPrefix {
                bytes,
                found: false,
                truncated: true,
            });
        }
        match response.chunk().await? {
            Some(chunk) => {
                let room = limit - bytes.len();
                bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            None => {
                return Ok(BodyPrefix {
                    bytes,
                    found: false,
                    truncated: false,
                });
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

enum HttpError {
    Connect(ConnectFailure),
    Other(String),
}

fn classify_http_error(e: &reqwest::Error) -> HttpError {
    if e.is_connect() {
        if e.is_timeout() {
            return HttpError::Connect(ConnectFailure::TimedOut(None));
        }
        if let Some(io) = find_io_error(e) {
            return HttpError::Connect(ConnectFailure::from_io(io));
        }
        return HttpError::Connect(ConnectFailure::Other(source_chain(e)));
    }
    HttpError::Other(source_chain(e))
}

fn find_io_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a io::Error> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cur = err.source();
    }
    None
}

/// The causes of a reqwest error, without reqwest's own outer line (which repeats the URL the
/// detail already names), joined with ": ".
fn source_chain(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = e.source();
    while let Some(err) = cur {
        let text = match err.downcast_ref::<io::Error>() {
            Some(io) => describe_io(io),
            None => err.to_string(),
        };
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

/// An I/O error in the words of a detail line: the common cases spelled out, the rest as the
/// OS says it.
fn describe_io(e: &io::Error) -> String {
    use io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset".into(),
        ConnectionAborted => "connection aborted".into(),
        AddrNotAvailable => "address not available here".into(),
        HostUnreachable => "host unreachable".into(),
        NetworkUnreachable => "network unreachable".into(),
        TimedOut => "timed out".into(),
        _ => e.to_string(),
    }
}

fn status_text(status: reqwest::StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

async fn exec(argv: &[String], timeout: Duration) -> Verdict {
    let what = format!("exec {}", shell_words(argv));
    let Some((program, args)) = argv.split_first() else {
        return Verdict::failed(
            Duration::ZERO,
            ProbeFailure::SpawnFailed,
            "exec: empty command".into(),
        );
    };

    let ran = BoundedCommand::new(program, timeout)
        .args(args)
        // Exactly the environment a unit gets by default, whoever runs launchgraph, so a probe
        // passes or fails the same from a shell and from launchd.
        .env("PATH", CANONICAL_PATH)
        .current_dir("/")
        .stderr(Capture::Tail(STDERR_KEEP))
        .run()
        .await;
    match ran {
        Ok(out) if out.timed_out => {
            let mut detail = format!(
                "{what}: no exit within {}; killed its process group",
                fmt_timeout(timeout)
            );
            push_stderr(&mut detail, &out.stderr);
            Verdict::failed(out.elapsed, ProbeFailure::TimedOut, detail)
        }
        Ok(out) => exit_verdict(&what, out.status, out.elapsed, &out.stderr),
        Err(BoundedError::Spawn { source, .. }) => Verdict::failed(
            Duration::ZERO,
            ProbeFailure::SpawnFailed,
            format!("{what}: cannot start: {}", describe_io(&source)),
        ),
        Err(BoundedError::NotReaped { waited, .. }) => Verdict::failed(
            timeout,
            ProbeFailure::TimedOut,
            format!(
                "{what}: no exit within {}; killed its process group, but it was not gone {} \
                 later",
                fmt_timeout(timeout),
                fmt_timeout(waited)
            ),
        ),
        Err(BoundedError::Wait { source, .. }) => Verdict::failed(
            Duration::ZERO,
            ProbeFailure::Io,
            format!("{what}: cannot wait for it: {}", describe_io(&source)),
        ),
    }
}

fn exit_verdict(what: &str, status: ExitStatus, latency: Duration, stderr: &[u8]) -> Verdict {
    use std::os::unix::process::ExitStatusExt;
    if status.success() {
        return Verdict::ok(
            latency,
            format!("{what}: exit 0 in {}", fmt_latency(latency)),
        );
    }
    let (reason, mut detail) = match (status.code(), status.signal()) {
        (Some(code), _) => (
            ProbeFailure::ExitStatus(code),
            format!("{what}: exit {code}"),
        ),
        (None, Some(sig)) => {
            let name = NixSignal::try_from(sig).map_or("unknown", |s| s.as_str());
            (
                ProbeFailure::Signal(sig),
                format!("{what}: killed by signal {sig} ({name})"),
            )
        }
        (None, None) => (ProbeFailure::Io, format!("{what}: ended with {status}")),
    };
    push_stderr(&mut detail, stderr);
    Verdict::failed(latency, reason, detail)
}

fn push_stderr(detail: &mut String, stderr: &[u8]) {
    let text = one_line(stderr);
    if text.is_empty() {
        return;
    }
    let chars = text.chars().count();
    let shown: String = if chars > EXCERPT_CHARS {
        let skip = chars - EXCERPT_CHARS;
        format!("…{}", text.chars().skip(skip).collect::<String>())
    } else {
        text
    };
    let _ = write!(detail, "; stderr: {shown}");
}

/// `bytes` as one line of text: invalid UTF-8 replaced, runs of whitespace (newlines included)
/// made one space.
fn one_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The start of `bytes` as one short line.
fn excerpt(bytes: &[u8]) -> String {
    let text = one_line(bytes);
    if text.chars().count() > EXCERPT_CHARS {
        let mut short: String = text.chars().take(EXCERPT_CHARS).collect();
        short.push('…');
        short
    } else {
        text
    }
}

/// argv as a person would type it, on one line: words with shell-special characters
/// single-quoted, and words with control characters (a multi-line script) in `$'...'` form.
fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|w| {
            let plain = !w.is_empty()
                && w.chars().all(|c| {
                    c.is_ascii_alphanumeric()
                        || matches!(c, '/' | '.' | '-' | '_' | ':' | '=' | ',' | '+' | '@')
                });
            if plain {
                w.clone()
            } else if w.chars().any(char::is_control) {
                let mut quoted = String::from("$'");
                for c in w.chars() {
                    match c {
                        '\\' => quoted.push_str("\\\\"),
                        '\'' => quoted.push_str("\\'"),
                        '\n' => quoted.push_str("\\n"),
                        '\t' => quoted.push_str("\\t"),
                        c if c.is_control() => {
                            let _ = write!(quoted, "\\x{:02x}", u32::from(c));
                        }
                        c => quoted.push(c),
                    }
                }
                quoted.push('\'');
                quoted
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A measured duration, readable at probe scales: `0.4ms`, `12.3ms`, `1.25s`.
fn fmt_latency(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.1}ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}

/// A configured bound, as written in unit files: `200ms`, `1s`.
fn fmt_timeout(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_delays_start_at_once_stay_fast_then_grow_and_cap() {
        let delays: Vec<_> = ready_poll_delays(Duration::from_secs(1))
            .take(6100)
            .collect();
        assert_eq!(delays[0], Duration::ZERO);
        assert!(delays[1..=6000].iter().all(|d| *d == READY_POLL_FAST));
        assert_eq!(delays[6001], Duration::from_micros(750));
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(1)));
        assert_eq!(*delays.last().unwrap(), Duration::from_secs(1));
    }

    /// The numbers the documentation gives for the default interval.
    #[test]
    fn poll_delays_are_fast_for_three_seconds_as_documented() {
        let interval = Duration::from_secs(1);
        let delays: Vec<_> = ready_poll_delays(interval).take(6100).collect();
        let fast_phase: Duration = delays[..=6000].iter().sum();
        assert_eq!(fast_phase, READY_POLL_FAST_FOR);
        let first_capped = delays.iter().position(|d| *d == interval).unwrap();
        assert_eq!(
            first_capped,
            6001 + 18,
            "0.75 ms x 1.5^17 < 1 s <= x 1.5^18"
        );
    }

    /// When many units start at once, the fast phase polls every 5 ms, as long.
    #[test]
    fn poll_delays_when_crowded() {
        let interval = Duration::from_secs(1);
        let delays: Vec<_> = ready_poll_delays_every(READY_POLL_CROWDED, interval)
            .take(700)
            .collect();
        assert!(delays[1..=600].iter().all(|d| *d == READY_POLL_CROWDED));
        let fast_phase: Duration = delays[..=600].iter().sum();
        assert_eq!(fast_phase, READY_POLL_FAST_FOR);
        assert_eq!(delays[601], Duration::from_micros(7500));
        let first_capped = delays.iter().position(|d| *d == interval).unwrap();
        assert_eq!(first_capped, 601 + 13, "7.5 ms x 1.5^12 < 1 s <= x 1.5^13");
    }

    #[test]
    fn poll_delays_with_a_tiny_interval() {
        let delays: Vec<_> = ready_poll_delays(Duration::from_micros(200))
            .take(5)
            .collect();
        assert_eq!(
            delays,
            [0, 200, 200, 200, 200].map(Duration::from_micros).to_vec()
        );
    }

    #[test]
    fn poll_delays_never_overflow() {
        let last = ready_poll_delays(Duration::MAX).nth(8000).unwrap();
        assert_eq!(last, Duration::MAX);
    }

    #[test]
    fn other_loopback_family() {
        let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(other_loopback(v4), Some(v6));
        assert_eq!(other_loopback(v6), Some(v4));
        assert_eq!(other_loopback("127.0.0.53".parse().unwrap()), Some(v6));
        assert_eq!(
            other_loopback("::ffff:127.0.0.1".parse().unwrap()),
            Some(v6)
        );
        assert_eq!(other_loopback("10.0.0.1".parse().unwrap()), None);
        assert_eq!(other_loopback("fe80::1".parse().unwrap()), None);
    }

    #[test]
    fn http_target_keeps_an_ip_url_as_is() {
        let t = HttpTarget::new(
            "http://127.0.0.1:11434/api/tags",
            "127.0.0.1:11434".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(t.url.as_str(), "http://127.0.0.1:11434/api/tags");
        assert_eq!(t.host, None);
    }

    #[test]
    fn http_target_connects_to_the_address_and_sends_the_url_host() {
        let t = HttpTarget::new(
            "http://localhost:18789/health?x=1",
            "[::1]:18789".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(t.url.as_str(), "http://[::1]:18789/health?x=1");
        assert_eq!(t.host.as_deref(), Some("localhost:18789"));

        let t =
            HttpTarget::new("http://models.internal/", "127.0.0.1:80".parse().unwrap()).unwrap();
        assert_eq!(t.url.as_str(), "http://127.0.0.1/");
        assert_eq!(t.host.as_deref(), Some("models.internal"));
    }

    #[test]
    fn http_target_rejects_what_a_probe_cannot_speak() {
        let addr = "127.0.0.1:443".parse().unwrap();
        assert!(HttpTarget::new("https://localhost/", addr).is_err());
        assert!(HttpTarget::new("not a url", addr).is_err());
    }

    #[test]
    fn body_search() {
        assert!(contains(b"{\"models\":[]}", b"models"));
        assert!(!contains(b"{}", b"models"));
        assert!(contains(b"", b""));
        assert!(!contains(b"mod", b"models"));
    }

    #[test]
    fn excerpts_are_one_short_line() {
        assert_eq!(one_line(b"  a\nb\r\n\tc  "), "a b c");
        let long = "x".repeat(500);
        let e = excerpt(long.as_bytes());
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
    }

    #[test]
    fn stderr_shows_its_last_words() {
        let mut stderr = vec![b'a'; STDERR_KEEP];
        stderr.extend_from_slice(b"last words");
        let mut detail = String::from("exec x: exit 1");
        push_stderr(&mut detail, &stderr);
        assert!(detail.starts_with("exec x: exit 1; stderr: …"));
        assert!(detail.ends_with("last words"));
    }

    #[test]
    fn argv_is_shown_as_typed() {
        let argv: Vec<String> = ["/bin/sh", "-c", "exit 3", "it's"]
            .map(String::from)
            .to_vec();
        assert_eq!(shell_words(&argv), r"/bin/sh -c 'exit 3' 'it'\''s'");
        let script: Vec<String> = vec!["/bin/sh".into(), "-c".into(), "a\n\tb 'c'".into()];
        assert_eq!(shell_words(&script), r"/bin/sh -c $'a\n\tb \'c\''");
    }

    #[test]
    fn latencies_read_well() {
        assert_eq!(fmt_latency(Duration::from_micros(400)), "0.4ms");
        assert_eq!(fmt_latency(Duration::from_micros(12_340)), "12.3ms");
        assert_eq!(fmt_latency(Duration::from_millis(1250)), "1.25s");
        assert_eq!(fmt_timeout(Duration::from_millis(200)), "200ms");
    }
}
