//! Who holds a TCP port: the listening sockets on a port, the processes that hold them, and
//! whether such a process belongs to a unit's run.
//!
//! A readiness probe that connects to a loopback port cannot tell who answered. When another
//! process holds the port (Ollama.app's `ollama serve` on 127.0.0.1:11434 while the Homebrew
//! job crash-loops on "address already in use"), the probe passes for a unit that never
//! listened. This module finds the holder so the supervisor can refuse that readiness
//! ([`crate::reason::Reason::PortHeldByOther`]) and `check` can say who holds the port.
//!
//! - Linux: a `sock_diag` netlink dump of the TCP sockets in state LISTEN (as `ss -lt` does;
//!   `/proc/net/tcp` and `/proc/net/tcp6`, proc_net_tcp(5), when netlink is not available)
//!   gives the listening sockets and their inodes; `/proc/PID/fd/*` links (`socket:[INODE]`)
//!   give the processes that hold them; `/proc/PID/comm` their command. The dump walks only
//!   the kernel's listening hash: about 50 µs, where reading `/proc/net/tcp` walks every
//!   bucket of the established hash too and took 8 ms per file on a test VM.
//! - macOS: `lsof -nP -iTCP:PORT -sTCP:LISTEN -F pctn`, run as a bounded child.
//!
//! Every parser is a pure function over text, so both are tested on Linux with fixtures. What
//! cannot be seen is said, not guessed: a process of another user is invisible without root
//! (its fds on Linux, its files to lsof), and a socket in another network namespace is not in
//! this namespace's `/proc/net/tcp` at all. A lookup that finds nothing certain is
//! [`Ownership::Unknown`], and callers then behave as if it had not been made.
//!
//! It decides nothing about units' states, and is never run per liveness poll: only when a
//! readiness probe passes, before an `exec` unit's start, and by `check`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::preflight::{Finding, FindingCode, Severity};
use crate::unit::{Runner, Unit};

/// A process that holds a listening socket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Holder {
    pub pid: u32,
    /// Its command name (`comm` on Linux, lsof's `c` field on macOS).
    pub command: String,
    /// Linux: the process is in another network namespace than launchgraph (it holds a
    /// socket of this namespace all the same, e.g. after `setns`). `None` when unknown.
    pub other_netns: Option<bool>,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} ({})", self.pid, self.command)?;
        if self.other_netns == Some(true) {
            f.write_str(" in another network namespace")?;
        }
        Ok(())
    }
}

/// A listening TCP socket and who holds it. `holders` is empty when they cannot be seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
    pub holders: Vec<Holder>,
}

/// How a listener relates to the address a probe dials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// A connect to the probe's address reaches it (same address, or a wildcard of a family
    /// that takes the connect).
    Serves,
    /// It listens on the same port, but on the other loopback family only.
    OtherFamily,
    /// Neither (another address of the same family, e.g. a LAN address).
    Elsewhere,
}

/// What a lookup found for one probe address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortView {
    /// Listeners a connect to the address reaches.
    pub serving: Vec<Listener>,
    /// Listeners on the same port, on the other loopback family only.
    pub other_family: Vec<Listener>,
}

/// Why no lookup could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("{0}")]
    Unavailable(String),
}

/// How a listener relates to `probe`, the address a probe dials.
pub fn reach(listener: SocketAddr, probe: SocketAddr) -> Reach {
    if listener.port() != probe.port() {
        return Reach::Elsewhere;
    }
    let (l, p) = (canonical(listener.ip()), canonical(probe.ip()));
    let serves = match (l, p) {
        (IpAddr::V4(l), IpAddr::V4(p)) => l == p || l.is_unspecified(),
        (IpAddr::V6(l), IpAddr::V6(p)) => l == p || l.is_unspecified(),
        // A `[::]` socket takes IPv4 connects too unless it is IPV6_V6ONLY, which
        // /proc/net/tcp6 and lsof do not show: counted as serving (Linux's default,
        // net.ipv6.bindv6only = 0; macOS's too).
        (IpAddr::V6(l), IpAddr::V4(_)) => l.is_unspecified(),
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    };
    if serves {
        return Reach::Serves;
    }
    let loopback_or_any = |ip: IpAddr| ip.is_loopback() || ip.is_unspecified();
    if loopback_or_any(l) && p.is_loopback() && l.is_ipv4() != p.is_ipv4() {
        Reach::OtherFamily
    } else {
        Reach::Elsewhere
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`; any other address as is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Sorts `listeners` by how they relate to `probe`.
pub fn view(listeners: Vec<Listener>, probe: SocketAddr) -> PortView {
    let mut out = PortView::default();
    for l in listeners {
        match reach(l.addr, probe) {
            Reach::Serves => out.serving.push(l),
            Reach::OtherFamily => out.other_family.push(l),
            Reach::Elsewhere => {}
        }
    }
    out
}

/// The listeners on TCP port `port`, both families, with their holders. Runs off the caller's
/// task: a blocking job on Linux, a bounded `lsof` on macOS.
pub async fn listeners(port: u16) -> Result<Vec<Listener>, LookupError> {
    #[cfg(not(target_os = "macos"))]
    {
        tokio::task::spawn_blocking(move || linux::listeners(port, Path::new("/proc")))
            .await
            .map_err(|e| LookupError::Unavailable(format!("the lookup task failed: {e}")))?
    }
    #[cfg(target_os = "macos")]
    {
        lsof_listeners(port).await
    }
}

/// What attributes a process to a run: its parent, process group and session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcFacts {
    pub ppid: u32,
    pub pgid: u32,
    pub sid: u32,
}

/// How far up a parent chain is followed: deeper trees than this are not a unit's.
const MAX_ANCESTRY: usize = 64;

/// Whether process `pid` belongs to the run whose main process is `main`: it is `main`, is in
/// its process group or session (`exec` units are started with `setsid`, so both are the main
/// pid), or descends from it. `None` when `pid`'s facts cannot be read (gone, or hidden).
pub fn belongs_to(pid: u32, main: u32, facts: impl Fn(u32) -> Option<ProcFacts>) -> Option<bool> {
    if pid == main {
        return Some(true);
    }
    let first = facts(pid)?;
    if first.pgid == main || first.sid == main {
        return Some(true);
    }
    let mut seen = BTreeSet::from([pid]);
    let mut parent = first.ppid;
    for _ in 0..MAX_ANCESTRY {
        if parent == main {
            return Some(true);
        }
        if parent <= 1 || !seen.insert(parent) {
            return Some(false);
        }
        match facts(parent) {
            Some(f) => parent = f.ppid,
            // An ancestor that cannot be read ends the chain: not shown to be the unit's.
            None => return Some(false),
        }
    }
    Some(false)
}

/// The parent, process group and session of a live process, as the system says now.
pub fn proc_facts(pid: u32) -> Option<ProcFacts> {
    #[cfg(not(target_os = "macos"))]
    {
        let stat =
            crate::fsutil::read_regular(Path::new(&format!("/proc/{pid}/stat")), 4096).ok()?;
        parse_stat_ids(&stat)
    }
    #[cfg(target_os = "macos")]
    {
        let info = crate::process::bsd_info(i32::try_from(pid).ok()?)?;
        let sid = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(pid as i32))).ok()?;
        Some(ProcFacts {
            ppid: info.pbi_ppid,
            pgid: info.pbi_pgid,
            sid: u32::try_from(sid.as_raw()).ok()?,
        })
    }
}

/// Whether process `pid` is in another network namespace than launchgraph (Linux:
/// `/proc/PID/ns/net` against `/proc/self/ns/net`). Its sockets are then not in this
/// namespace's `/proc/net/tcp`, and a probe of loopback reaches this namespace's loopback,
/// not its own. `None` when it cannot be read, and on macOS, which has no such namespaces.
pub fn other_netns(pid: u32) -> Option<bool> {
    #[cfg(not(target_os = "macos"))]
    {
        let ours = std::fs::read_link("/proc/self/ns/net").ok()?;
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
        Some(ours != theirs)
    }
    #[cfg(target_os = "macos")]
    {
        let _ = pid;
        None
    }
}

/// Fields 4, 5 and 6 of `/proc/PID/stat` (ppid, pgrp, session; proc_pid_stat(5),
/// https://man7.org/linux/man-pages/man5/proc_pid_stat.5.html), counted from the last `)`
/// because the command name may hold spaces and parentheses.
pub fn parse_stat_ids(stat: &[u8]) -> Option<ProcFacts> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let text = std::str::from_utf8(&stat[close + 1..]).ok()?;
    let mut fields = text.split_ascii_whitespace();
    let _state = fields.next()?;
    let mut next = || fields.next()?.parse::<u32>().ok();
    Some(ProcFacts {
        ppid: next()?,
        pgid: next()?,
        sid: next()?,
    })
}

/// What a lookup says of the listener a probe of a unit's run reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// A holder belongs to the run.
    Unit,
    /// Every holder of the listeners that serve the address is outside the run.
    Other(Vec<Holder>),
    /// It cannot be told, and why.
    Unknown(String),
}

/// The processes holding the listeners that a connect to `addr` reaches; `Err` says why they
/// cannot be told (the lookup failed, no such listener is visible, or its holders are not).
pub async fn serving_holders(addr: SocketAddr) -> Result<Vec<Holder>, String> {
    let found = view(
        listeners(addr.port()).await.map_err(|e| e.to_string())?,
        addr,
    );
    if found.serving.is_empty() {
        return Err(format!(
            "no listener that takes a connect to {addr} is visible here"
        ));
    }
    let holders: Vec<Holder> = found
        .serving
        .iter()
        .flat_map(|l| l.holders.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if holders.is_empty() {
        return Err(format!(
            "the process holding {addr} cannot be seen (another user's, without root?)"
        ));
    }
    Ok(holders)
}

/// Who holds the listener that a connect to `addr` reaches, and whether that belongs to the
/// run whose main process is `main`. A lookup that fails, a listener whose holders cannot be
/// seen, or a holder whose ancestry cannot be read makes it [`Ownership::Unknown`].
pub async fn ownership(addr: SocketAddr, main: u32) -> Ownership {
    // The usual answer first, cheaply: the run's main process holds the socket itself. Only
    // when it does not are all processes' fds looked through, to name the holder.
    #[cfg(not(target_os = "macos"))]
    {
        let quick =
            tokio::task::spawn_blocking(move || linux::main_holds(addr, main, Path::new("/proc")))
                .await;
        if matches!(quick, Ok(true)) {
            return Ownership::Unit;
        }
    }
    let holders = match serving_holders(addr).await {
        Ok(h) => h,
        Err(why) => return Ownership::Unknown(why),
    };
    let judged = tokio::task::spawn_blocking(move || {
        let mut unknown = false;
        for h in &holders {
            match belongs_to(h.pid, main, proc_facts) {
                Some(true) => return Ownership::Unit,
                Some(false) => {}
                None => unknown = true,
            }
        }
        if unknown {
            Ownership::Unknown(format!(
                "{} holds {addr}, and whether it is the unit's cannot be read",
                list(&holders)
            ))
        } else {
            Ownership::Other(holders)
        }
    })
    .await;
    judged.unwrap_or_else(|e| Ownership::Unknown(format!("the lookup task failed: {e}")))
}

/// `pid 12 (ollama)`, `pid 12 (ollama) and pid 13 (ollama)`.
pub fn list(holders: &[Holder]) -> String {
    let parts: Vec<String> = holders.iter().map(ToString::to_string).collect();
    match parts.len() {
        0 => "nobody visible".to_owned(),
        1 => parts[0].clone(),
        _ => {
            let (last, rest) = parts.split_last().expect("two or more");
            format!("{} and {last}", rest.join(", "))
        }
    }
}

/// The holders of `listeners`, with the addresses they hold: `pid 12 (ollama) on [::1]:11434`.
pub fn describe(listeners: &[Listener]) -> String {
    let mut out = String::new();
    for (i, l) in listeners.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        let _ = write!(out, "{} on {}", list(&l.holders), l.addr);
    }
    out
}

/// The loopback address a probe dials, when it dials one.
pub fn loopback_target(probe: &crate::unit::Probe) -> Option<SocketAddr> {
    use crate::unit::Probe;
    let addr = match probe {
        Probe::Tcp { addr } | Probe::Http { addr, .. } => *addr,
        Probe::Exec { .. } => return None,
    };
    canonical(addr.ip()).is_loopback().then_some(addr)
}

/// `listeners` with only the holders `keep` accepts; listeners left without one are dropped.
fn keep_holders(listeners: &[Listener], keep: impl Fn(&Holder) -> bool) -> Vec<Listener> {
    listeners
        .iter()
        .filter_map(|l| {
            let holders: Vec<Holder> = l.holders.iter().filter(|h| keep(h)).cloned().collect();
            (!holders.is_empty()).then_some(Listener {
                addr: l.addr,
                holders,
            })
        })
        .collect()
}

/// The listeners in `view` (serving, then other-family) with only their holders that are
/// neither process `me` (launchgraph) nor its descendants (its `exec` units, their children):
/// the strangers on the port. Blocks (reads each holder's ancestry).
pub fn strangers(view: &PortView, me: u32) -> (Vec<Listener>, Vec<Listener>) {
    let stranger = |h: &Holder| belongs_to(h.pid, me, proc_facts) == Some(false);
    (
        keep_holders(&view.serving, stranger),
        keep_holders(&view.other_family, stranger),
    )
}

/// What `check` says of the port `unit`'s readiness probe dials, when it is held by another
/// process than the unit's run (`PORT_HELD_BY_OTHER`), or held on the other loopback family
/// only. The run of an `exec` unit is the one its run record in `state_dir` names; `check`
/// does not ask launchd for a job's pid, so for a `launchd` unit a holder is reported as
/// information, to be compared with the job's pid. `None` when nothing is held, or the lookup
/// cannot tell.
pub async fn check_finding(unit: &Unit, state_dir: &Path) -> Option<Finding> {
    let addr = loopback_target(&unit.ready.as_ref()?.probe)?;
    let found = view(listeners(addr.port()).await.ok()?, addr);
    let is_exec = matches!(unit.runner, Runner::Exec(_));
    let run = is_exec
        .then(|| crate::engine::runs::recorded_pid(state_dir, unit.name.as_str()))
        .flatten();
    let outside = |h: &Holder| run.is_none_or(|r| belongs_to(h.pid, r, proc_facts) != Some(true));
    let serving = keep_holders(&found.serving, outside);
    let other = keep_holders(&found.other_family, outside);
    // The unit's own run holds it: nothing to say.
    if run.is_some() && serving.is_empty() && !found.serving.is_empty() {
        return None;
    }
    let port = addr.port();
    let finding = if !serving.is_empty() {
        let whose = if is_exec {
            "while the unit is not running, so its start will fail with \"address already in \
             use\" and its readiness is refused while the port is held"
                .to_owned()
        } else {
            "(check does not ask launchd for the job's pid: if that is not the job's process, \
             the job cannot listen there and its readiness is refused while the port is held)"
                .to_owned()
        };
        Finding::new(
            FindingCode::PortHeldByOther,
            None,
            format!(
                "{addr}, which the readiness probe dials, is held by {} {whose}",
                describe(&serving)
            ),
            format!(
                "stop pid {} or its login item or service (Ollama.app holds 127.0.0.1:11434), \
                 or move one of them to another port",
                serving[0].holders[0].pid
            ),
        )
    } else if !other.is_empty() {
        Finding::new(
            FindingCode::PortHeldByOther,
            None,
            format!(
                "nothing listens on {addr}, which the readiness probe dials, but port {port} is \
                 held on the other address family: {}",
                describe(&other)
            ),
            format!(
                "bind the server to {} too, or make the probe dial the address it listens on",
                addr.ip()
            ),
        )
    } else {
        return None;
    };
    Some(if is_exec {
        finding
    } else {
        finding.with_severity(Severity::Info)
    })
}

// ---------------------------------------------------------------------------------------------
// Linux: /proc

/// One row of `/proc/net/tcp` or `/proc/net/tcp6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSocket {
    pub local: SocketAddr,
    /// The `st` column: `0A` is LISTEN (include/net/tcp_states.h).
    pub state: u8,
    pub inode: u64,
}

/// The TCP state LISTEN in `/proc/net/tcp` (`TCP_LISTEN` = 10, include/net/tcp_states.h).
pub const TCP_LISTEN: u8 = 0x0A;

/// Parses `/proc/net/tcp` (`v6` false) or `/proc/net/tcp6` text (proc_net_tcp(5),
/// https://man7.org/linux/man-pages/man5/proc_net_tcp.5.html). A row is `sl local rem st
/// tx:rx tr:when retrnsmt uid timeout inode ...`. The local address is hex: each 32-bit word
/// of the address as the kernel prints a `__be32` with `%08X`, i.e. in the host's byte order
/// (`0100007F` is 127.0.0.1 on a little-endian host), and the port is plain hex. Rows that do
/// not parse are skipped.
pub fn parse_proc_net_tcp(text: &str, v6: bool) -> Vec<ProcSocket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            if f.len() < 10 {
                return None;
            }
            let (addr, port) = f[1].split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let ip = parse_hex_ip(addr, v6)?;
            Some(ProcSocket {
                local: SocketAddr::new(ip, port),
                state: u8::from_str_radix(f[3], 16).ok()?,
                inode: f[9].parse().ok()?,
            })
        })
        .collect()
}

fn parse_hex_ip(hex: &str, v6: bool) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    match (v6, hex.len()) {
        (false, 8) => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        (true, 32) => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// The inode of a `socket:[INODE]` fd link.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// What a `sock_diag` dump of one TCP listening socket says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiagSocket {
    pub local: SocketAddr,
    pub state: u8,
    pub inode: u64,
}

/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h): the message type of requests and answers.
pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLMSG_ERROR`, `NLMSG_DONE` (linux/netlink.h).
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// The size of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;
/// The size of `struct inet_diag_msg` (linux/inet_diag.h): family, state, timer, retrans,
/// the 48-byte `inet_diag_sockid` (sport, dport big-endian; src, dst 16 bytes each; if;
/// cookie), then expires, rqueue, wqueue, uid and inode (offset 68), 4 bytes each.
const INET_DIAG_MSG_LEN: usize = 72;

/// The request for every TCP socket of `family` (`AF_INET` or `AF_INET6`) in state LISTEN:
/// a `nlmsghdr` (`NLM_F_REQUEST | NLM_F_DUMP`) and an `inet_diag_req_v2` (linux/inet_diag.h,
/// sock_diag(7), https://man7.org/linux/man-pages/man7/sock_diag.7.html) whose `idiag_states`
/// is the bit of TCP_LISTEN, so the kernel walks only its listening hash (unlike
/// `/proc/net/tcp`, which walks every bucket of the established hash too: milliseconds on a
/// host with a large one).
pub fn diag_request(family: u8) -> [u8; 72] {
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_DUMP: u16 = 0x300;
    let mut req = [0u8; 72];
    req[0..4].copy_from_slice(&72u32.to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    // inet_diag_req_v2: family, protocol (IPPROTO_TCP = 6), ext, pad, states; the id stays 0.
    req[16] = family;
    req[17] = 6;
    req[20..24].copy_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    req
}

/// Parses one datagram of a `sock_diag` dump into `out`; `Ok(true)` once the dump's
/// `NLMSG_DONE` is in it. An `NLMSG_ERROR` is the kernel's refusal (its errno).
pub fn parse_diag(buf: &[u8], out: &mut Vec<DiagSocket>) -> Result<bool, String> {
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let u32_at = |i: usize| u32::from_ne_bytes(buf[i..i + 4].try_into().expect("4 bytes"));
        let len = u32_at(off) as usize;
        let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            return Err(format!(
                "a netlink message of {len} bytes at {off} is cut short"
            ));
        }
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = buf
                    .get(off + NLMSG_HDRLEN..off + NLMSG_HDRLEN + 4)
                    .map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("4 bytes")));
                return Err(format!(
                    "the kernel refused the dump: {}",
                    std::io::Error::from_raw_os_error(-errno)
                ));
            }
            SOCK_DIAG_BY_FAMILY if len >= NLMSG_HDRLEN + INET_DIAG_MSG_LEN => {
                let m = &buf[off + NLMSG_HDRLEN..off + len];
                let port = u16::from_be_bytes([m[4], m[5]]);
                let ip = match m[0] {
                    2 => Some(IpAddr::V4(Ipv4Addr::new(m[8], m[9], m[10], m[11]))),
                    10 => {
                        let b: [u8; 16] = m[8..24].try_into().expect("16 bytes");
                        Some(IpAddr::V6(Ipv6Addr::from(b)))
                    }
                    _ => None,
                };
                if let Some(ip) = ip {
                    out.push(DiagSocket {
                        local: SocketAddr::new(ip, port),
                        state: m[1],
                        inode: u64::from(u32::from_ne_bytes(
                            m[68..72].try_into().expect("4 bytes"),
                        )),
                    });
                }
            }
            _ => {}
        }
        // Messages are 4-byte aligned (NLMSG_ALIGN).
        off += (len + 3) & !3;
    }
    Ok(false)
}

#[cfg(not(target_os = "macos"))]
mod linux {
    use super::*;
    use crate::fsutil::read_regular;

    /// `/proc/net/tcp` of a busy host: about 150 bytes a socket; past this, give up.
    const NET_TCP_CAP: u64 = 32 * 1024 * 1024;
    /// The most processes and fds looked at while mapping inodes to pids.
    const MAX_PIDS: usize = 1 << 17;
    const MAX_FDS_PER_PID: usize = 1 << 16;

    /// The listening sockets of this network namespace, from `sock_diag`; `Err` when netlink
    /// is not available here (then `/proc/net/tcp` is read instead).
    fn diag_listening() -> Result<Vec<DiagSocket>, String> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        /// `NETLINK_SOCK_DIAG` (linux/netlink.h).
        const NETLINK_SOCK_DIAG: libc::c_int = 4;
        /// The most a dump may bring: listeners are few.
        const MAX_DUMP: usize = 4 * 1024 * 1024;
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(format!("netlink: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // The kernel answers a dump at once; the timeout only bounds the unexpected.
        let timeout = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: a timeval of the size passed, for SO_RCVTIMEO.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
            let req = diag_request(family);
            // SAFETY: sends `req.len()` bytes of `req`; a netlink socket needs no address.
            let sent = unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
            if sent != req.len() as isize {
                return Err(format!("netlink send: {}", std::io::Error::last_os_error()));
            }
            let mut total = 0;
            loop {
                // SAFETY: receives at most `buf.len()` bytes into `buf`.
                let n =
                    unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n <= 0 {
                    return Err(format!("netlink recv: {}", std::io::Error::last_os_error()));
                }
                let n = n as usize;
                total += n;
                if total > MAX_DUMP {
                    return Err(format!("the netlink dump passed {MAX_DUMP} bytes"));
                }
                if parse_diag(&buf[..n], &mut out)? {
                    break;
                }
            }
        }
        Ok(out)
    }

    pub(super) fn listeners(port: u16, proc: &Path) -> Result<Vec<Listener>, LookupError> {
        let sockets: Vec<ProcSocket> = match diag_listening() {
            Ok(found) => found
                .into_iter()
                .filter(|s| s.state == TCP_LISTEN && s.local.port() == port)
                .map(|s| ProcSocket {
                    local: s.local,
                    state: s.state,
                    inode: s.inode,
                })
                .collect(),
            Err(why) => {
                tracing::debug!(
                    "sock_diag unavailable ({why}): reading {}/net/tcp",
                    proc.display()
                );
                proc_net_listeners(port, proc)?
            }
        };
        if sockets.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: BTreeSet<u64> = sockets.iter().map(|s| s.inode).collect();
        let holders = holders_of(proc, &wanted);
        Ok(sockets
            .into_iter()
            .map(|s| Listener {
                addr: s.local,
                holders: holders.get(&s.inode).cloned().unwrap_or_default(),
            })
            .collect())
    }

    /// Whether process `pid` itself holds a listener that takes a connect to `addr`.
    pub(super) fn main_holds(addr: SocketAddr, pid: u32, proc: &Path) -> bool {
        let Ok(found) = diag_listening() else {
            return false;
        };
        let wanted: BTreeSet<u64> = found
            .iter()
            .filter(|s| s.state == TCP_LISTEN && reach(s.local, addr) == Reach::Serves)
            .map(|s| s.inode)
            .collect();
        if wanted.is_empty() {
            return false;
        }
        let Ok(fds) = std::fs::read_dir(proc.join(pid.to_string()).join("fd")) else {
            return false;
        };
        fds.flatten().take(MAX_FDS_PER_PID).any(|fd| {
            std::fs::read_link(fd.path())
                .ok()
                .and_then(|l| l.to_str().and_then(socket_inode))
                .is_some_and(|i| wanted.contains(&i))
        })
    }

    /// The listening sockets on `port` from `/proc/net/tcp` and `/proc/net/tcp6`.
    pub(super) fn proc_net_listeners(
        port: u16,
        proc: &Path,
    ) -> Result<Vec<ProcSocket>, LookupError> {
        let mut sockets = Vec::new();
        for (file, v6) in [("net/tcp", false), ("net/tcp6", true)] {
            // /proc/net is this process's network namespace: sockets of other namespaces
            // are not listed, whoever holds them.
            match read_regular(&proc.join(file), NET_TCP_CAP) {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    sockets.extend(
                        parse_proc_net_tcp(&text, v6)
                            .into_iter()
                            .filter(|s| s.state == TCP_LISTEN && s.local.port() == port),
                    );
                }
                // No IPv6 in this kernel: tcp6 is absent.
                Err(_) if v6 => {}
                Err(e) => {
                    return Err(LookupError::Unavailable(format!(
                        "{}: {}",
                        proc.join(file).display(),
                        e.describe("it")
                    )));
                }
            }
        }
        Ok(sockets)
    }

    /// The processes whose fds link to the sockets `wanted`. A process whose fds cannot be
    /// read (another user's, without root) is passed over.
    fn holders_of(proc: &Path, wanted: &BTreeSet<u64>) -> BTreeMap<u64, Vec<Holder>> {
        let mut out: BTreeMap<u64, Vec<Holder>> = BTreeMap::new();
        let Ok(dir) = std::fs::read_dir(proc) else {
            return out;
        };
        let own_netns = std::fs::read_link(proc.join("self/ns/net")).ok();
        for entry in dir.flatten().take(MAX_PIDS) {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
                continue;
            };
            let mut held = BTreeSet::new();
            for fd in fds.flatten().take(MAX_FDS_PER_PID) {
                if let Some(inode) = std::fs::read_link(fd.path())
                    .ok()
                    .and_then(|l| l.to_str().and_then(socket_inode))
                    .filter(|i| wanted.contains(i))
                {
                    held.insert(inode);
                }
            }
            if held.is_empty() {
                continue;
            }
            let command = command_of(&entry.path());
            let netns = std::fs::read_link(entry.path().join("ns/net")).ok();
            let other_netns = match (&own_netns, &netns) {
                (Some(a), Some(b)) => Some(a != b),
                _ => None,
            };
            for inode in held {
                out.entry(inode).or_default().push(Holder {
                    pid,
                    command: command.clone(),
                    other_netns,
                });
            }
        }
        out
    }

    /// `comm`, or the first word of `cmdline` when `comm` is empty.
    fn command_of(dir: &Path) -> String {
        let comm = read_regular(&dir.join("comm"), 256)
            .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
            .unwrap_or_default();
        if !comm.is_empty() {
            return comm;
        }
        read_regular(&dir.join("cmdline"), 4096)
            .ok()
            .and_then(|b| {
                b.split(|&c| c == 0)
                    .next()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "?".to_owned())
    }
}

// ---------------------------------------------------------------------------------------------
// macOS: lsof

/// The bound on one `lsof` run.
pub const LSOF_DEADLINE: Duration = Duration::from_secs(5);
/// The most of `lsof`'s output read: a port has a handful of listeners.
pub const LSOF_OUTPUT_CAP: usize = 256 * 1024;

/// The argv of the lookup on macOS. `-n -P`: numbers, no DNS or service names; `-sTCP:LISTEN`:
/// listening sockets only; `-F pctn`: field output (lsof(8), "OUTPUT FOR OTHER PROGRAMS",
/// lsof-org/lsof:Lsof.8): `p` the pid (starts a process set), `c` its command, `t` the file's
/// type (`IPv4`/`IPv6`, which tells the family of a `*:PORT` wildcard) and `n` its name
/// (`127.0.0.1:11434`, `[::1]:11434`, `*:11434`). lsof adds an `f` (fd) line per file on
/// some systems; it is ignored.
pub fn lsof_args(port: u16) -> Vec<String> {
    vec![
        "-nP".into(),
        format!("-iTCP:{port}"),
        "-sTCP:LISTEN".into(),
        "-F".into(),
        "pctn".into(),
    ]
}

/// Parses `lsof -F pctn` output into listeners with their holders. A socket held by several
/// processes (a forked server) is one listener with several holders.
pub fn parse_lsof(text: &str) -> Vec<Listener> {
    let mut by_addr: BTreeMap<SocketAddr, BTreeSet<Holder>> = BTreeMap::new();
    let mut order: Vec<SocketAddr> = Vec::new();
    let mut pid: Option<u32> = None;
    let mut command = String::new();
    let mut v6: Option<bool> = None;
    for line in text.lines() {
        let Some(field) = line.chars().next() else {
            continue;
        };
        let value = &line[field.len_utf8()..];
        match field {
            'p' => {
                pid = value.parse().ok();
                command.clear();
                v6 = None;
            }
            'c' => command = value.to_owned(),
            'f' => v6 = None,
            't' => {
                v6 = match value {
                    "IPv4" => Some(false),
                    "IPv6" => Some(true),
                    _ => None,
                }
            }
            'n' => {
                let (Some(pid), Some(addr)) = (pid, parse_lsof_name(value, v6)) else {
                    continue;
                };
                if !by_addr.contains_key(&addr) {
                    order.push(addr);
                }
                by_addr.entry(addr).or_default().insert(Holder {
                    pid,
                    command: if command.is_empty() {
                        "?".into()
                    } else {
                        command.clone()
                    },
                    other_netns: None,
                });
            }
            _ => {}
        }
    }
    order
        .into_iter()
        .map(|addr| Listener {
            addr,
            holders: by_addr
                .remove(&addr)
                .unwrap_or_default()
                .into_iter()
                .collect(),
        })
        .collect()
}

/// An lsof name: `127.0.0.1:80`, `[::1]:80`, `*:80` (the family from the `t` field; IPv4
/// when it is not known). A connected socket's `a->b` is not a listener and is skipped.
fn parse_lsof_name(name: &str, v6: Option<bool>) -> Option<SocketAddr> {
    if name.contains("->") {
        return None;
    }
    let (host, port) = name.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let ip = match host {
        "*" if v6 == Some(true) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        h => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split('%')
            .next()?
            .parse()
            .ok()?,
    };
    Some(SocketAddr::new(ip, port))
}

/// Runs `lsof` for `port`. Exit 1 with no output is lsof's "nothing found" (which is also
/// what a non-root caller sees of other users' sockets). `/usr/sbin/lsof` ships with macOS.
#[cfg(target_os = "macos")]
async fn lsof_listeners(port: u16) -> Result<Vec<Listener>, LookupError> {
    use crate::process::{BoundedCommand, Capture};
    let out = BoundedCommand::new("/usr/sbin/lsof", LSOF_DEADLINE)
        .args(lsof_args(port))
        .current_dir("/")
        .stdout(Capture::Head(LSOF_OUTPUT_CAP))
        .stderr(Capture::Tail(1024))
        .run()
        .await
        .map_err(|e| LookupError::Unavailable(format!("lsof: {e}")))?;
    if out.timed_out {
        return Err(LookupError::Unavailable(format!(
            "lsof did not finish within {LSOF_DEADLINE:?}"
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // lsof may exit 1 after listing what it found when it also met a file it could not
    // read: what it listed stands.
    if !text.trim().is_empty() {
        return Ok(parse_lsof(&text));
    }
    match out.code() {
        Some(0 | 1) => Ok(Vec::new()),
        _ => Err(LookupError::Unavailable(format!(
            "lsof ended with {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Rows captured on a little-endian Linux host (x86_64, 6.x) with python3 -m http.server
    /// bound to 127.0.0.1:47311, [::1]:47312 and [::]:47313, plus an established connection.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 51 1 000000003437b622 100 0 0 10 0
   1: 0100007F:B8CF 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 615795 1 00000000733e53f7 100 0 0 10 0
   2: 0100007F:B8CF 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 615901 1 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:B8D1 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 615789 1 00000000024411cb 100 0 0 10 0
   1: 00000000000000000000000001000000:B8D0 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 615788 1 000000008d94b0f3 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:2CAA 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   501        0 777 1 000000008d94b0f3 100 0 0 10 0
";

    #[cfg(target_endian = "little")]
    #[test]
    fn proc_net_tcp_rows_give_address_state_and_inode() {
        let v4 = parse_proc_net_tcp(TCP, false);
        assert_eq!(v4.len(), 3);
        assert_eq!(v4[0].local, sa("0.0.0.0:2024"));
        assert_eq!(
            v4[1],
            ProcSocket {
                local: sa("127.0.0.1:47311"),
                state: TCP_LISTEN,
                inode: 615795
            }
        );
        assert_eq!(v4[2].state, 0x01, "ESTABLISHED");
        let v6 = parse_proc_net_tcp(TCP6, true);
        assert_eq!(v6[0].local, sa("[::]:47313"));
        assert_eq!(v6[1].local, sa("[::1]:47312"));
        assert_eq!(v6[1].inode, 615788);
        assert_eq!(v6[2].local, sa("[::ffff:127.0.0.1]:11434"));
    }

    #[test]
    fn proc_net_tcp_skips_what_does_not_parse() {
        let text = "header\n   0: zz:0050 00000000:0000 0A a b c d 1\n   1: short\n\n";
        assert!(parse_proc_net_tcp(text, false).is_empty());
        // A v4-sized address in tcp6 is not an address.
        let row = "h\n 0: 0100007F:0050 00000000:0000 0A 0:0 0:0 0 0 0 9 1\n";
        assert!(parse_proc_net_tcp(row, true).is_empty());
        assert_eq!(parse_proc_net_tcp(row, false).len(), 1);
    }

    fn unhex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Datagrams of a real dump (x86_64, Linux 6.18) with listeners on 0.0.0.0:2024,
    /// 127.0.0.1:47411 and [::1]:47412: two answers with their attributes, then NLMSG_DONE.
    const DIAG_V4: &str = "7c0000001400020001000000e2760000020a000007e8000000000000000000000000000000000000000000000000000000000000000000000000000001000000000000000000000000000000800000000000000033000000050008000000000008000f00000000000c001500010000000000000006001600520000007c0000001400020001000000e2760000020a0000b93300007f0000010000000000000000000000000000000000000000000000000000000000000000011000000000000000000000000000008000000000000000ccc61f00050008000000000008000f00000000000c00150001000000000000000600160052000000";
    const DIAG_V6: &str = "840000001400020001000000e27600000a0a0000b9340000000000000000000000000000000000010000000000000000000000000000000000000000021000000000000000000000000000008000000000000000cdc61f00050008000000000005000b000100000008000f00000000000c00150001000000000000000600160012000000";
    const DIAG_DONE: &str = "140000000300020001000000e276000000000000";

    #[cfg(target_endian = "little")]
    #[test]
    fn sock_diag_answers_give_address_state_and_inode() {
        let mut out = Vec::new();
        assert_eq!(parse_diag(&unhex(DIAG_V4), &mut out), Ok(false));
        assert_eq!(parse_diag(&unhex(DIAG_V6), &mut out), Ok(false));
        assert_eq!(parse_diag(&unhex(DIAG_DONE), &mut out), Ok(true));
        let got: Vec<(SocketAddr, u8, u64)> =
            out.iter().map(|d| (d.local, d.state, d.inode)).collect();
        assert_eq!(
            got,
            [
                (sa("0.0.0.0:2024"), TCP_LISTEN, 51),
                (sa("127.0.0.1:47411"), TCP_LISTEN, 0x1fc6cc),
                (sa("[::1]:47412"), TCP_LISTEN, 0x1fc6cd),
            ]
        );
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn sock_diag_errors_and_cut_messages_are_errors() {
        // NLMSG_ERROR with -EPERM (1).
        let mut err = unhex("240000000200000001000000e2760000");
        err.extend_from_slice(&(-1i32).to_ne_bytes());
        err.extend_from_slice(&[0u8; 16]);
        let e = parse_diag(&err, &mut Vec::new()).unwrap_err();
        assert!(e.contains("not permitted"), "{e}");
        let cut = unhex(&DIAG_V4[..100]);
        assert!(parse_diag(&cut, &mut Vec::new()).is_err());
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn sock_diag_request_asks_for_tcp_listeners_of_a_family() {
        let req = diag_request(10);
        assert_eq!(
            &req[..24],
            &unhex("48000000140001030100000000000000")
                .into_iter()
                .chain([10, 6, 0, 0, 0, 4, 0, 0])
                .collect::<Vec<u8>>()[..]
        );
        assert!(
            req[24..].iter().all(|&b| b == 0),
            "no socket id: all of them"
        );
    }

    #[test]
    fn fd_links_name_socket_inodes() {
        assert_eq!(socket_inode("socket:[615795]"), Some(615795));
        assert_eq!(socket_inode("pipe:[615795]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
        assert_eq!(socket_inode("socket:[x]"), None);
    }

    /// Captured with `lsof -nP -iTCP -sTCP:LISTEN -F pctn` (lsof 4.95, Linux), the same
    /// field format lsof prints on macOS; the second process set carries `f` lines as macOS's
    /// lsof prints them.
    const LSOF: &str = "p8004
cpython3
tIPv4
n127.0.0.1:47311
p8009
cpython3
tIPv6
n[::1]:47312
p8011
cpython3
tIPv6
n*:47313
p912
collama
f3
tIPv4
n127.0.0.1:11434
f4
tIPv6
n*:11434
p913
collama
f3
tIPv4
n127.0.0.1:11434
";

    #[test]
    fn lsof_field_output_gives_listeners_and_holders() {
        let ls = parse_lsof(LSOF);
        let addrs: Vec<SocketAddr> = ls.iter().map(|l| l.addr).collect();
        assert_eq!(
            addrs,
            [
                sa("127.0.0.1:47311"),
                sa("[::1]:47312"),
                sa("[::]:47313"),
                sa("127.0.0.1:11434"),
                sa("[::]:11434"),
            ]
        );
        assert_eq!(
            ls[0].holders,
            [Holder {
                pid: 8004,
                command: "python3".into(),
                other_netns: None
            }]
        );
        let pids: Vec<u32> = ls[3].holders.iter().map(|h| h.pid).collect();
        assert_eq!(pids, [912, 913], "a socket shared by a forked server");
        assert_eq!(ls[4].holders.len(), 1);
    }

    #[test]
    fn lsof_names_without_a_type_and_connected_sockets() {
        let ls = parse_lsof("p1\ncx\nn*:80\nn127.0.0.1:80->127.0.0.1:5000\nnjunk\n");
        assert_eq!(ls.len(), 1);
        assert_eq!(ls[0].addr, sa("0.0.0.0:80"));
        assert!(parse_lsof("n127.0.0.1:80\n").is_empty(), "no pid yet");
        assert_eq!(
            lsof_args(11434),
            ["-nP", "-iTCP:11434", "-sTCP:LISTEN", "-F", "pctn"]
        );
    }

    #[test]
    fn reach_of_listeners_from_a_probe_address() {
        let v4 = sa("127.0.0.1:11434");
        let v6 = sa("[::1]:11434");
        assert_eq!(reach(sa("127.0.0.1:11434"), v4), Reach::Serves);
        assert_eq!(reach(sa("0.0.0.0:11434"), v4), Reach::Serves);
        assert_eq!(reach(sa("[::]:11434"), v4), Reach::Serves);
        assert_eq!(reach(sa("[::ffff:127.0.0.1]:11434"), v4), Reach::Serves);
        assert_eq!(reach(sa("[::1]:11434"), v4), Reach::OtherFamily);
        assert_eq!(reach(sa("127.0.0.1:11434"), v6), Reach::OtherFamily);
        assert_eq!(reach(sa("0.0.0.0:11434"), v6), Reach::OtherFamily);
        assert_eq!(reach(sa("[::1]:11434"), v6), Reach::Serves);
        assert_eq!(reach(sa("127.0.0.1:11435"), v4), Reach::Elsewhere);
        assert_eq!(reach(sa("192.168.1.4:11434"), v4), Reach::Elsewhere);
        assert_eq!(reach(sa("127.0.0.2:11434"), v4), Reach::Elsewhere);
    }

    #[test]
    fn stat_ids_are_counted_from_the_last_parenthesis() {
        let stat = b"4242 (a (weird) name) S 100 4242 4242 0 -1 4194560 107 0 0 0";
        assert_eq!(
            parse_stat_ids(stat),
            Some(ProcFacts {
                ppid: 100,
                pgid: 4242,
                sid: 4242
            })
        );
        assert_eq!(parse_stat_ids(b"12 (x) S"), None);
    }

    #[test]
    fn belonging_to_a_run() {
        // 10 is the unit's main process (its own group and session); 11 its child in the
        // same group; 20 a grandchild that made its own session; 30 a stranger under init.
        let table = BTreeMap::from([
            (10, (1, 10, 10)),
            (11, (10, 10, 10)),
            (15, (11, 15, 15)),
            (20, (15, 20, 20)),
            (30, (1, 30, 30)),
            (40, (41, 40, 40)),
            (41, (40, 41, 41)),
        ]);
        let facts = |pid: u32| {
            table
                .get(&pid)
                .map(|&(ppid, pgid, sid)| ProcFacts { ppid, pgid, sid })
        };
        assert_eq!(belongs_to(10, 10, facts), Some(true));
        assert_eq!(belongs_to(11, 10, facts), Some(true));
        assert_eq!(belongs_to(20, 10, facts), Some(true), "by its ancestry");
        assert_eq!(belongs_to(30, 10, facts), Some(false));
        assert_eq!(belongs_to(40, 10, facts), Some(false), "a cycle ends");
        assert_eq!(belongs_to(99, 10, facts), None, "unreadable");
    }

    #[test]
    fn holders_read_well() {
        let h = |pid, c: &str| Holder {
            pid,
            command: c.into(),
            other_netns: None,
        };
        assert_eq!(list(&[h(1, "a")]), "pid 1 (a)");
        assert_eq!(
            list(&[h(1, "a"), h(2, "b"), h(3, "c")]),
            "pid 1 (a), pid 2 (b) and pid 3 (c)"
        );
        let mut n = h(5, "x");
        n.other_netns = Some(true);
        assert_eq!(n.to_string(), "pid 5 (x) in another network namespace");
        let l = Listener {
            addr: sa("[::1]:80"),
            holders: vec![h(7, "srv")],
        };
        assert_eq!(describe(&[l]), "pid 7 (srv) on [::1]:80");
    }

    /// This process's own listener is found with this process as its holder.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_listener_of_this_process_is_found() {
        let sock = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let found = view(listeners(addr.port()).await.unwrap(), addr);
        assert_eq!(found.serving.len(), 1, "{found:?}");
        assert_eq!(found.serving[0].addr, addr);
        let me = std::process::id();
        assert!(found.serving[0].holders.iter().any(|h| h.pid == me));
        assert_eq!(ownership(addr, me).await, Ownership::Unit);
        assert!(linux::main_holds(addr, me, Path::new("/proc")));
        assert!(!linux::main_holds(addr, u32::MAX - 1, Path::new("/proc")));
        // The fallback, /proc/net/tcp, finds the same socket.
        let from_proc = linux::proc_net_listeners(addr.port(), Path::new("/proc")).unwrap();
        assert_eq!(from_proc.len(), 1);
        assert_eq!(from_proc[0].local, addr);
        // A run that is not this process (and no ancestor of it): a stranger holds the port.
        let other = ownership(addr, u32::MAX - 1).await;
        assert!(
            matches!(&other, Ownership::Other(h) if h.iter().any(|h| h.pid == me)),
            "{other:?}"
        );
    }
}
