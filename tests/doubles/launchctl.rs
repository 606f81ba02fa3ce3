//! `launchctl-double`: a stand-in for launchd and `launchctl`, for tests on hosts without
//! launchd. It follows the contract of docs/launchd.md (argv, exit codes and verbatim messages
//! of §1.4, the `print` format of §2, the start/stop behaviour of §4) and really runs each
//! job's program.
//!
//! launchctl is a short-lived CLI talking to a long-lived daemon, so the double has two modes:
//!
//! - `launchctl-double serve --state DIR [--drain-ms N] [--exit-on-stdin-eof]`: the fake
//!   launchd. One task owns all state: domains, loaded jobs, their processes, and the
//!   enable/disable overrides, which persist in `DIR/overrides.json` like launchd's own
//!   database. It listens on `DIR/launchd.sock`, prints `ready` once it does, records every
//!   launchctl call in `DIR/calls.log` (one JSON argv per line), and on SIGTERM, SIGINT or
//!   (with `--exit-on-stdin-eof`) the end of stdin stops every job before it exits.
//! - `launchctl-double <launchctl argv...>` with `LAUNCHCTL_DOUBLE_STATE=DIR`: the CLI. Sends
//!   its argv and euid to the daemon, prints what comes back, exits with its code.
//!
//! Test-only verbs, never logged as calls: `x-login <uid>` and `x-logout <uid>` (the
//! `gui/<uid>` domain exists only while its user is logged in), `x-kill <label|service-target>
//! <signal>` (a crash launchd did not ask for), `x-argv-log` (prints `calls.log`), and
//! `x-config <key> <value>` with keys `drain-ms`, `disabled-vocabulary` (`modern`|`legacy`:
//! `=> disabled` or `=> true`, `print-disabled` output, DeterminateSystems/nix-installer#555), `kickstart-running-code` (0 or 37,
//! docs/launchd.md), `missing-domain-code` (125, the default, or 112) and
//! `bootout-in-progress` (`on`|`off`), `x-quarantine <program>` (launchd refuses to
//! spawn that program from now on, as it refuses a quarantined or badly signed binary), and
//! `x-penalty <service-target> on|off` (launchd stops relaunching that KeepAlive job after it
//! exits, its penalty box after a crash burst; a kickstart still starts it).
//!
//! Where it fails as launchd fails, each with its public source (docs/launchd.md has the
//! table):
//!
//! - A job runs the definition read at bootstrap: editing or deleting the plist afterwards
//!   changes neither `print` nor what kickstart runs, until bootout and bootstrap
//!   (github.com/openclaw/openclaw/pull/34829; github.com/jackielii/skhd.zig/issues/30).
//! - A program it cannot spawn (missing, not executable, quarantined, a log directory it
//!   cannot create) gives `job state = spawn failed` and `last exit code = 78: EX_CONFIG`,
//!   and a KeepAlive job is tried again every ThrottleInterval with `state = spawn scheduled`
//!   (cli-pulse/cli-pulse-private HelperAgentHealthTests.swift, a capture with runs = 22138;
//!   github.com/codechimp-org/ha-menu/issues/51).
//! - A missing StandardOutPath/StandardErrorPath directory is created when the job's user may
//!   write to its nearest existing parent, and fails the spawn with 78 otherwise
//!   (github.com/LrGenius/LrGeniusAI/pull/298).
//! - `print`, `kickstart` and `kill` in a `gui/<uid>` domain that does not exist answer 125
//!   `Domain does not support specified action` on current macOS
//!   (github.com/lidge-jun/opencodex/issues/1770, macOS 26.5.2; github.com/duh17/oppi/issues/38),
//!   112 `Could not find domain for user gui: <uid>` with `missing-domain-code 112`.
//! - With `bootout-in-progress on`, a bootout of a job whose process still runs answers 36
//!   `Operation now in progress` although the job then stops
//!   (github.com/osquery/osquery/issues/5698).
//! - KeepAlive dictionaries: `SuccessfulExit` and `Crashed` decide whether an exit is
//!   relaunched; `SuccessfulExit = false` does not relaunch after exit 0 (launchd.plist(5)).
//! - A disabled KeepAlive job that exits is not relaunched, and `disable` does not stop a
//!   running one: OpenClaw disables its job and then stops it "so KeepAlive cannot spawn a
//!   replacement" (openclaw/openclaw src/daemon/launchd-stop.ts); launchctl(1) disable.
//! - One label may be loaded in several domains at once, each its own job, `user/<uid>`
//!   included, which exists whether or not its user is logged in: `brew services` loads into
//!   `gui/<uid>` from a GUI session and `user/<uid>` over SSH (Homebrew/brew
//!   Library/Homebrew/services/system.rb `domain_target`; Homebrew/homebrew-services#638).
//! - With `x-penalty on`, a KeepAlive job that exits is not relaunched until it is kickstarted
//!   (openclaw/openclaw docs/gateway/troubleshooting.md recommends a `kickstart -k` watchdog
//!   for this; nix-darwin/nix-darwin#1709).
//!
//! Choices where no public source attests anything: `enable`, `disable` and `print-disabled` work
//! on a `gui/<uid>` domain whether or not its user is logged in (the overrides are kept per
//! uid); kickstart and kill in a missing domain answer like print (112).
//!
//! Not emulated: plist ownership checks, KeepAlive keys other than SuccessfulExit and Crashed
//! (PathState, OtherJobEnabled: such a job counts as always relaunched), on-demand launch
//! sources, HOME rules, LimitLoadToSessionType, Background Task Management, privilege checks beyond the root/non-root bootstrap messages,
//! and `print <domain-target>`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use launchgraph::process::spawn_tracked;

const SOCKET: &str = "launchd.sock";
const OVERRIDES: &str = "overrides.json";
const CALLS: &str = "calls.log";
/// launchd's default job PATH (launchd.plist(5), https://keith.github.io/xcode-man-pages/launchd.plist.5.html) and `_PATH_STDPATH` for relative argv[0].
const DEFAULT_PATH: &str = "/usr/bin:/bin:/usr/sbin:/sbin";
/// Defaults of modern macOS (verbatim `launchctl print` captures: sglavoie/dev-helpers LaunchctlFixtures.swift, byliu-labs/egress-guard status_darwin_test.go, wazuh/wazuh-agent#569; launchd.plist(5) ThrottleInterval).
const DEFAULT_THROTTLE: u64 = 10;
const DEFAULT_EXIT_TIMEOUT: u64 = 5;
/// What launchd reports when it could not spawn the program (verbatim `launchctl print` captures: sglavoie/dev-helpers LaunchctlFixtures.swift, byliu-labs/egress-guard status_darwin_test.go, wazuh/wazuh-agent#569).
const EX_CONFIG: i32 = 78;

/// One launchctl invocation, client to daemon.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    argv: Vec<String>,
    euid: u32,
}

/// What the invocation prints and its exit code, daemon to client.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Response {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Response {
    fn ok(stdout: impl Into<String>) -> Self {
        Self {
            code: 0,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    fn fail(code: i32, stderr: impl Into<String>) -> Self {
        Self {
            code,
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve_main(&args[1..]),
        _ => client_main(args),
    }
}

// ---------------------------------------------------------------------------------------------
// Client mode: the launchctl CLI.

fn client_main(argv: Vec<String>) -> ExitCode {
    let Some(dir) = std::env::var_os("LAUNCHCTL_DOUBLE_STATE") else {
        eprintln!("launchctl-double: LAUNCHCTL_DOUBLE_STATE is not set");
        return ExitCode::from(70);
    };
    match client_call(Path::new(&dir), argv) {
        Ok(resp) => {
            print!("{}", resp.stdout);
            eprint!("{}", resp.stderr);
            let _ = io::stdout().flush();
            ExitCode::from(u8::try_from(resp.code).unwrap_or(1))
        }
        Err(e) => {
            eprintln!("launchctl-double: cannot reach the daemon in {dir:?}: {e}");
            ExitCode::from(70)
        }
    }
}

fn client_call(dir: &Path, argv: Vec<String>) -> io::Result<Response> {
    let mut stream = std::os::unix::net::UnixStream::connect(dir.join(SOCKET))?;
    let euid = nix::unistd::geteuid().as_raw();
    let mut line = serde_json::to_string(&Request { argv, euid })?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(serde_json::from_str(reply.trim())?)
}

// ---------------------------------------------------------------------------------------------
// Serve mode: the daemon.

struct ServeArgs {
    state: PathBuf,
    drain: Duration,
    exit_on_stdin_eof: bool,
}

fn parse_serve_args(args: &[String]) -> Result<ServeArgs, String> {
    let mut state = None;
    let mut drain = Duration::from_millis(1000);
    let mut exit_on_stdin_eof = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--state" => state = it.next().map(PathBuf::from),
            "--drain-ms" => {
                let ms = it.next().and_then(|v| v.parse().ok());
                drain = Duration::from_millis(ms.ok_or("--drain-ms takes milliseconds")?);
            }
            "--exit-on-stdin-eof" => exit_on_stdin_eof = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(ServeArgs {
        state: state.ok_or("--state DIR is required")?,
        drain,
        exit_on_stdin_eof,
    })
}

fn serve_main(args: &[String]) -> ExitCode {
    let args = match parse_serve_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("launchctl-double serve: {e}");
            return ExitCode::from(64);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("launchctl-double serve: {e}");
            ExitCode::from(70)
        }
    }
}

/// Everything the state task reacts to.
enum Event {
    Request(Request, oneshot::Sender<Response>),
    Exited {
        key: Key,
        generation: u64,
        status: io::Result<ExitStatus>,
    },
    /// A KeepAlive relaunch whose ThrottleInterval has passed.
    Relaunch {
        key: Key,
        token: u64,
    },
    /// ExitTimeOut passed since SIGTERM.
    ForceKill {
        key: Key,
        generation: u64,
    },
    /// The drain window after a bootout is over.
    DrainOver {
        key: Key,
        token: u64,
    },
    Shutdown,
}

async fn serve(args: ServeArgs) -> io::Result<()> {
    fs::create_dir_all(&args.state)?;
    let socket = args.state.join(SOCKET);
    let _ = fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)?;
    let (tx, mut rx) = mpsc::unbounded_channel();

    let accept_tx = tx.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_connection(stream, accept_tx.clone()));
        }
    });
    for kind in [
        tokio::signal::unix::SignalKind::terminate(),
        tokio::signal::unix::SignalKind::interrupt(),
    ] {
        let mut signal = tokio::signal::unix::signal(kind)?;
        let tx = tx.clone();
        tokio::spawn(async move {
            signal.recv().await;
            let _ = tx.send(Event::Shutdown);
        });
    }
    if args.exit_on_stdin_eof {
        // The test that started us holds the other end: when it ends, for any reason, so do
        // we and every job, instead of outliving it.
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = io::stdin().lock().read_to_end(&mut sink);
            let _ = tx.send(Event::Shutdown);
        });
    }

    let mut launchd = Launchd::new(&args, tx)?;
    println!("ready");
    io::stdout().flush()?;
    while let Some(event) = rx.recv().await {
        launchd.handle(event);
        if launchd.shutting_down && launchd.jobs.values().all(|j| j.proc.is_none()) {
            break;
        }
    }
    let _ = fs::remove_file(&socket);
    Ok(())
}

async fn serve_connection(stream: UnixStream, tx: mpsc::UnboundedSender<Event>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read);
    if reader.read_line(&mut line).await.is_err() {
        return;
    }
    let response = match serde_json::from_str::<Request>(line.trim()) {
        Ok(request) => {
            let (reply, answer) = oneshot::channel();
            let _ = tx.send(Event::Request(request, reply));
            answer
                .await
                .unwrap_or_else(|_| Response::fail(5, "launchctl-double: shutting down\n"))
        }
        Err(e) => Response::fail(70, format!("launchctl-double: bad request: {e}\n")),
    };
    let mut out = serde_json::to_string(&response).unwrap_or_default();
    out.push('\n');
    let _ = write.write_all(out.as_bytes()).await;
    let _ = write.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Domains and targets.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum DomainId {
    System,
    Gui(u32),
    User(u32),
}

impl DomainId {
    fn parse(s: &str) -> Option<Self> {
        let s = s.strip_suffix('/').unwrap_or(s);
        if s == "system" {
            return Some(DomainId::System);
        }
        let (kind, uid) = s.split_once('/')?;
        let uid = uid.parse().ok()?;
        match kind {
            "gui" => Some(DomainId::Gui(uid)),
            "user" => Some(DomainId::User(uid)),
            _ => None,
        }
    }

    fn target(self) -> String {
        match self {
            DomainId::System => "system".into(),
            DomainId::Gui(uid) => format!("gui/{uid}"),
            DomainId::User(uid) => format!("user/{uid}"),
        }
    }

    /// How launchctl names the domain in messages: `system`, `user gui: 501`
    /// (launchctl exit statuses as captured in DeterminateSystems/nix-installer#530, openclaw/openclaw#80384 and ProcursusTeam/launchctl xpc_private.h). The `user/<uid>` form is not attested; this one is a guess.
    fn described(self) -> String {
        match self {
            DomainId::System => "system".into(),
            DomainId::Gui(uid) => format!("user gui: {uid}"),
            DomainId::User(uid) => format!("user: {uid}"),
        }
    }

    fn job_type(self) -> &'static str {
        match self {
            DomainId::System => "LaunchDaemon",
            _ => "LaunchAgent",
        }
    }
}

/// `system/L`, `gui/<uid>/L`, `user/<uid>/L`.
fn parse_service_target(s: &str) -> Option<(DomainId, String)> {
    let (domain, label) = match s.strip_prefix("system/") {
        Some(label) => (DomainId::System, label),
        None => {
            let (kind, rest) = s.split_once('/')?;
            let (uid, label) = rest.split_once('/')?;
            (DomainId::parse(&format!("{kind}/{uid}"))?, label)
        }
    };
    (!label.is_empty()).then(|| (domain, label.to_owned()))
}

type Key = (DomainId, String);

// ---------------------------------------------------------------------------------------------
// Jobs.

/// What the double reads from a plist (launchd.plist(5), https://keith.github.io/xcode-man-pages/launchd.plist.5.html).
#[derive(Debug, Clone)]
struct JobSpec {
    label: String,
    program: Option<String>,
    arguments: Vec<String>,
    env: Vec<(String, String)>,
    working_directory: Option<PathBuf>,
    stdout: Option<PathBuf>,
    stderr: Option<PathBuf>,
    run_at_load: bool,
    keep_alive: KeepAliveSpec,
    throttle: u64,
    exit_timeout: u64,
    disabled: bool,
    abandon_process_group: bool,
    user: Option<String>,
}

fn read_plist(path: &Path) -> Result<JobSpec, String> {
    let value = plist::Value::from_file(path).map_err(|e| e.to_string())?;
    let dict = value.as_dictionary().ok_or("not a dictionary")?;
    let string = |k: &str| dict.get(k).and_then(|v| v.as_string()).map(str::to_owned);
    let boolean = |k: &str| dict.get(k).and_then(|v| v.as_boolean()).unwrap_or(false);
    let unsigned = |k: &str, d| {
        dict.get(k)
            .and_then(|v| v.as_unsigned_integer())
            .unwrap_or(d)
    };
    let label = string("Label").ok_or("no Label")?;
    let arguments: Vec<String> = dict
        .get("ProgramArguments")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_string().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let program = string("Program");
    if program.is_none() && arguments.is_empty() {
        return Err("neither Program nor ProgramArguments".into());
    }
    // "Values other than strings will be ignored" (launchd.plist(5) EnvironmentVariables).
    let env = dict
        .get("EnvironmentVariables")
        .and_then(|v| v.as_dictionary())
        .map(|d| {
            d.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_string()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let keep_alive = match dict.get("KeepAlive") {
        Some(plist::Value::Boolean(true)) => KeepAliveSpec::Always,
        Some(plist::Value::Dictionary(d)) => KeepAliveSpec::Conditions {
            successful_exit: d.get("SuccessfulExit").and_then(|v| v.as_boolean()),
            crashed: d.get("Crashed").and_then(|v| v.as_boolean()),
            other: d.keys().any(|k| k != "SuccessfulExit" && k != "Crashed"),
        },
        _ => KeepAliveSpec::No,
    };
    Ok(JobSpec {
        label,
        program,
        arguments,
        env,
        working_directory: string("WorkingDirectory").map(PathBuf::from),
        stdout: string("StandardOutPath").map(PathBuf::from),
        stderr: string("StandardErrorPath").map(PathBuf::from),
        run_at_load: boolean("RunAtLoad"),
        keep_alive,
        throttle: unsigned("ThrottleInterval", DEFAULT_THROTTLE),
        exit_timeout: unsigned("ExitTimeOut", DEFAULT_EXIT_TIMEOUT),
        disabled: boolean("Disabled"),
        abandon_process_group: boolean("AbandonProcessGroup"),
        user: string("UserName"),
    })
}

/// KeepAlive as launchd.plist(5) defines it: a boolean, or a dictionary whose conditions are
/// ORed. `SuccessfulExit = true` relaunches after exit 0 and `false` after any other end;
/// `Crashed = true` after a crash-type signal (SIGILL, SIGSEGV, ...) and `false` otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeepAliveSpec {
    No,
    Always,
    Conditions {
        successful_exit: Option<bool>,
        crashed: Option<bool>,
        /// Keys the double does not evaluate (PathState, OtherJobEnabled, ...): relaunch.
        other: bool,
    },
}

impl KeepAliveSpec {
    fn any(self) -> bool {
        self != KeepAliveSpec::No
    }

    /// Whether launchd relaunches the job after a run that ended with `last`. A spawn that
    /// failed is tried again whatever the conditions (cli-pulse/cli-pulse-private
    /// HelperAgentHealthTests.swift: a KeepAlive agent with 22138 failed spawns).
    fn relaunches_after(self, last: Last) -> bool {
        match self {
            KeepAliveSpec::No => false,
            KeepAliveSpec::Always => true,
            KeepAliveSpec::Conditions {
                successful_exit,
                crashed,
                other,
            } => {
                let clean = last == Last::Code(0);
                let crash = matches!(last, Last::Signal(s) if [
                    libc::SIGILL, libc::SIGABRT, libc::SIGFPE, libc::SIGBUS,
                    libc::SIGSEGV, libc::SIGSYS, libc::SIGTRAP,
                ].contains(&s));
                other
                    || (successful_exit.is_none() && crashed.is_none())
                    || successful_exit.is_some_and(|want| want == clean)
                    || crashed.is_some_and(|want| want == crash)
            }
        }
    }
}

/// How the last run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    Never,
    Code(i32),
    Signal(i32),
}

#[derive(Debug)]
struct Proc {
    pid: u32,
    started: Instant,
}

/// A `kickstart -k` waiting for the old instance to exit.
struct KickWaiter {
    print_pid: bool,
    reply: oneshot::Sender<Response>,
}

struct Job {
    domain: DomainId,
    plist: PathBuf,
    spec: JobSpec,
    runs: u64,
    last: Last,
    job_state: &'static str,
    proc: Option<Proc>,
    /// The run the current `proc` belongs to; stale exits and timers carry an older one.
    generation: u64,
    /// The token of a pending KeepAlive relaunch.
    relaunch: Option<u64>,
    /// Set by bootout: the token of its drain timer, and whether the window is over.
    draining: Option<(u64, bool)>,
    /// `x-penalty on`: launchd no longer relaunches it after it exits, as after a crash burst
    /// (openclaw/openclaw docs/gateway/troubleshooting.md, a `kickstart -k` watchdog;
    /// nix-darwin/nix-darwin#1709); a kickstart still starts it.
    penalty_box: bool,
    kick_waiters: Vec<KickWaiter>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vocabulary {
    Modern,
    Legacy,
}

struct Launchd {
    state_dir: PathBuf,
    drain: Duration,
    vocabulary: Vocabulary,
    kickstart_running_code: i32,
    /// What print, kickstart and kill answer in a missing GUI domain: 125 or 112.
    missing_domain_code: i32,
    /// Whether a bootout of a job whose process still runs answers 36.
    bootout_in_progress: bool,
    /// Programs launchd refuses to spawn (`x-quarantine`).
    quarantined: BTreeSet<PathBuf>,
    logged_in: BTreeSet<u32>,
    /// domain target → label → disabled.
    overrides: BTreeMap<String, BTreeMap<String, bool>>,
    jobs: BTreeMap<Key, Job>,
    events: mpsc::UnboundedSender<Event>,
    next_token: u64,
    shutting_down: bool,
}

impl Launchd {
    fn new(args: &ServeArgs, events: mpsc::UnboundedSender<Event>) -> io::Result<Self> {
        let overrides = match fs::read(args.state.join(OVERRIDES)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(io::Error::other)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok(Self {
            state_dir: args.state.clone(),
            drain: args.drain,
            vocabulary: Vocabulary::Modern,
            kickstart_running_code: 0,
            missing_domain_code: 125,
            bootout_in_progress: false,
            quarantined: BTreeSet::new(),
            logged_in: BTreeSet::new(),
            overrides,
            jobs: BTreeMap::new(),
            events,
            next_token: 0,
            shutting_down: false,
        })
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn domain_exists(&self, d: DomainId) -> bool {
        match d {
            DomainId::Gui(uid) => self.logged_in.contains(&uid),
            // "A user domain may exist independently of a logged-in user" (MAN-LC).
            DomainId::System | DomainId::User(_) => true,
        }
    }

    fn after(&self, delay: Duration, event: Event) {
        let tx = self.events.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(event);
        });
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Request(req, reply) => self.request(req, reply),
            Event::Exited {
                key,
                generation,
                status,
            } => self.exited(key, generation, status),
            Event::Relaunch { key, token } => {
                let due = self
                    .jobs
                    .get(&key)
                    .is_some_and(|j| j.relaunch == Some(token) && j.proc.is_none());
                if due && self.relaunchable(&key) {
                    self.spawn(&key);
                } else if let Some(job) = self
                    .jobs
                    .get_mut(&key)
                    .filter(|j| j.relaunch == Some(token))
                {
                    job.relaunch = None;
                }
            }
            Event::ForceKill { key, generation } => {
                if let Some(job) = self.jobs.get(&key).filter(|j| j.generation == generation) {
                    if let Some(p) = &job.proc {
                        let _ = kill(Pid::from_raw(p.pid as i32), Signal::SIGKILL);
                    }
                }
            }
            Event::DrainOver { key, token } => {
                if let Some(job) = self.jobs.get_mut(&key) {
                    if job.draining.is_some_and(|(t, _)| t == token) {
                        job.draining = Some((token, true));
                        if job.proc.is_none() {
                            self.jobs.remove(&key);
                        }
                    }
                }
            }
            Event::Shutdown => self.shutdown(),
        }
    }

    fn shutdown(&mut self) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        let keys: Vec<Key> = self.jobs.keys().cloned().collect();
        for key in keys {
            self.stop(&key, true);
        }
    }

    /// SIGTERM now, SIGKILL after ExitTimeOut (Homebrew/brew Library/Homebrew/services/cli.rb; launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html; launchd.plist(5) ExitTimeOut, where 0
    /// means never, except when the double itself shuts down).
    fn stop(&mut self, key: &Key, shutting_down: bool) {
        let Some(job) = self.jobs.get_mut(key) else {
            return;
        };
        job.relaunch = None;
        let Some(p) = &job.proc else {
            return;
        };
        let _ = kill(Pid::from_raw(p.pid as i32), Signal::SIGTERM);
        let timeout = match job.spec.exit_timeout {
            0 if shutting_down => DEFAULT_EXIT_TIMEOUT,
            0 => return,
            t => t,
        };
        let generation = job.generation;
        self.after(
            Duration::from_secs(timeout),
            Event::ForceKill {
                key: key.clone(),
                generation,
            },
        );
    }

    fn spawn(&mut self, key: &Key) {
        let generation = self.token();
        let events = self.events.clone();
        let Some(job) = self.jobs.get_mut(key) else {
            return;
        };
        job.runs += 1;
        job.generation = generation;
        job.relaunch = None;
        match start_program(&job.spec, &self.quarantined) {
            Ok(mut child) => {
                job.proc = Some(Proc {
                    pid: child.pid(),
                    started: Instant::now(),
                });
                job.job_state = "running";
                let key = key.clone();
                tokio::spawn(async move {
                    let status = child.wait().await;
                    let _ = events.send(Event::Exited {
                        key,
                        generation,
                        status,
                    });
                });
            }
            Err(e) => {
                eprintln!("launchctl-double: {}: cannot spawn: {e}", job.spec.label);
                job.last = Last::Code(EX_CONFIG);
                job.job_state = "spawn failed";
                let delay = Duration::from_secs(job.spec.throttle);
                self.schedule_relaunch(key, delay);
            }
        }
    }

    /// Whether the job is disabled: an override, else its plist's `Disabled` key.
    fn is_disabled(&self, (domain, label): &Key) -> bool {
        let key_says = self
            .jobs
            .get(&(*domain, label.clone()))
            .is_some_and(|j| j.spec.disabled);
        self.overrides
            .get(&domain.target())
            .and_then(|o| o.get(label))
            .copied()
            .unwrap_or(key_says)
    }

    /// Whether launchd would relaunch the job by itself now: KeepAlive, not being booted out,
    /// not disabled (OpenClaw disables its job before it exits "so KeepAlive cannot spawn a
    /// replacement", openclaw/openclaw src/daemon/launchd-stop.ts), and not in the penalty box.
    fn relaunchable(&self, key: &Key) -> bool {
        self.jobs
            .get(key)
            .is_some_and(|j| j.spec.keep_alive.any() && j.draining.is_none() && !j.penalty_box)
            && !self.is_disabled(key)
            && !self.shutting_down
    }

    fn schedule_relaunch(&mut self, key: &Key, delay: Duration) {
        if !self.relaunchable(key) {
            return;
        }
        let token = self.token();
        if let Some(job) = self.jobs.get_mut(key) {
            job.relaunch = Some(token);
        }
        self.after(
            delay,
            Event::Relaunch {
                key: key.clone(),
                token,
            },
        );
    }

    fn exited(&mut self, key: Key, generation: u64, status: io::Result<ExitStatus>) {
        let Some(job) = self.jobs.get_mut(&key) else {
            return;
        };
        if job.generation != generation {
            return;
        }
        let Some(proc) = job.proc.take() else {
            return;
        };
        // "When a job dies, launchd kills any remaining processes with the same process group
        // ID as the job" (launchd.plist(5) AbandonProcessGroup).
        if !job.spec.abandon_process_group {
            let _ = killpg(Pid::from_raw(proc.pid as i32), Signal::SIGKILL);
        }
        job.last = match status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(code), _) => Last::Code(code),
                (None, Some(signal)) => Last::Signal(signal),
                (None, None) => Last::Code(-1),
            },
            Err(_) => Last::Code(-1),
        };
        job.job_state = "exited";

        if let Some((_, drain_over)) = job.draining {
            if drain_over {
                self.jobs.remove(&key);
            }
            return;
        }
        if !job.kick_waiters.is_empty() {
            let waiters = std::mem::take(&mut job.kick_waiters);
            self.spawn(&key);
            let pid = self
                .jobs
                .get(&key)
                .and_then(|j| j.proc.as_ref().map(|p| p.pid));
            for w in waiters {
                let _ = w.reply.send(kickstart_reply(w.print_pid, pid));
            }
            return;
        }
        if !job.spec.keep_alive.relaunches_after(job.last) {
            return;
        }
        // Not spawned more than once every ThrottleInterval (launchd.plist(5)).
        let throttle = Duration::from_secs(job.spec.throttle);
        let delay = throttle.saturating_sub(proc.started.elapsed());
        self.schedule_relaunch(&key, delay);
    }

    fn request(&mut self, req: Request, reply: oneshot::Sender<Response>) {
        if self.shutting_down {
            let _ = reply.send(Response::fail(5, "launchctl-double: shutting down\n"));
            return;
        }
        let argv: Vec<&str> = req.argv.iter().map(String::as_str).collect();
        let Some((&sub, args)) = argv.split_first() else {
            let _ = reply.send(Response::fail(64, main_usage()));
            return;
        };
        if !sub.starts_with("x-") {
            self.record(&req.argv);
        }
        let response = match sub {
            "bootstrap" => self.bootstrap(args, req.euid),
            "bootout" => self.bootout(args),
            "enable" => self.set_disabled(sub, args, false),
            "disable" => self.set_disabled(sub, args, true),
            "kickstart" => return self.kickstart(args, reply),
            "kill" => self.kill_cmd(sub, args),
            "print" => self.print(args),
            "print-disabled" => self.print_disabled(args),
            "x-login" | "x-logout" => self.login(sub == "x-login", args),
            "x-kill" => self.kill_cmd(sub, args),
            "x-argv-log" => {
                Response::ok(fs::read_to_string(self.state_dir.join(CALLS)).unwrap_or_default())
            }
            "x-config" => self.config(args),
            "x-penalty" => match args {
                [target, on @ ("on" | "off")] => match self.find_service("x-penalty", target) {
                    Ok(key) => {
                        let job = self.jobs.get_mut(&key).expect("found");
                        job.penalty_box = *on == "on";
                        Response::ok("")
                    }
                    Err(r) => r,
                },
                _ => Response::fail(64, "usage: x-penalty <service-target> on|off\n"),
            },
            "x-quarantine" => match args {
                [program] => {
                    self.quarantined.insert(PathBuf::from(program));
                    Response::ok("")
                }
                _ => Response::fail(64, "usage: x-quarantine <program>\n"),
            },
            other => Response::fail(
                1,
                format!("Unrecognized subcommand: {other}\n{}", main_usage()),
            ),
        };
        let _ = reply.send(response);
    }

    fn record(&self, argv: &[String]) {
        let line = serde_json::to_string(argv).unwrap_or_default();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state_dir.join(CALLS));
        if let Ok(mut f) = file {
            let _ = writeln!(f, "{line}");
        }
    }

    // --- subcommands ---------------------------------------------------------------------

    fn bootstrap(&mut self, args: &[&str], euid: u32) -> Response {
        let Some((&domain, paths)) = args.split_first().filter(|(_, p)| !p.is_empty()) else {
            return Response::fail(64, usage("bootstrap"));
        };
        let Some(domain) = DomainId::parse(domain) else {
            return bad_target("bootstrap");
        };
        // launchctl exit statuses as captured in DeterminateSystems/nix-installer#530, openclaw/openclaw#80384 and ProcursusTeam/launchctl xpc_private.h; launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html; chilcote/outset#108: no GUI login, no gui domain.
        if !self.domain_exists(domain) {
            return Response::fail(
                125,
                "Bootstrap failed: 125: Domain does not support specified action\n",
            );
        }
        let io_error = || {
            let mut text = "Bootstrap failed: 5: Input/output error\n".to_owned();
            if euid != 0 {
                text.push_str("Try re-running the command as root for richer errors.\n");
            }
            Response::fail(5, text)
        };
        for &path in paths {
            let path = Path::new(path);
            if !path.exists() {
                // By analogy with bootout's message (docs/launchd.md).
                return Response::fail(
                    2,
                    format!(
                        "{}: No such file or directory\nBootstrap failed: 2: No such file or directory\n",
                        path.display()
                    ),
                );
            }
            let spec = match read_plist(path) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("launchctl-double: {}: {e}", path.display());
                    return io_error();
                }
            };
            let disabled = self
                .overrides
                .get(&domain.target())
                .and_then(|o| o.get(&spec.label))
                .copied()
                .unwrap_or(spec.disabled);
            if disabled {
                // Root gets the real reason, others only 5 (nix-installer#530, openclaw#849).
                return match euid {
                    0 => Response::fail(
                        119,
                        format!(
                            "{}: Service is disabled\nBootstrap failed: 119: Service is disabled\n",
                            path.display()
                        ),
                    ),
                    _ => io_error(),
                };
            }
            let key = (domain, spec.label.clone());
            // Loaded, or still draining after a bootout (openclaw#136453).
            if self.jobs.contains_key(&key) {
                return io_error();
            }
            let start = spec.run_at_load || spec.keep_alive.any();
            self.jobs.insert(
                key.clone(),
                Job {
                    domain,
                    plist: fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()),
                    spec,
                    runs: 0,
                    last: Last::Never,
                    job_state: "uninitialized",
                    proc: None,
                    generation: 0,
                    relaunch: None,
                    draining: None,
                    penalty_box: false,
                    kick_waiters: Vec::new(),
                },
            );
            // "KeepAlive ... implicitly implies RunAtLoad" (launchd.plist(5)).
            if start {
                self.spawn(&key);
            }
        }
        Response::ok("")
    }

    fn bootout(&mut self, args: &[&str]) -> Response {
        let failed = |code: i32, what: &str| {
            Response::fail(code, format!("Boot-out failed: {code}: {what}\n"))
        };
        match args {
            [target] if parse_service_target(target).is_some() => {
                let key = parse_service_target(target).expect("checked");
                if !self.domain_exists(key.0) {
                    return failed(125, "Domain does not support specified action");
                }
                match self.jobs.get(&key) {
                    None => failed(3, "No such process"),
                    // Homebrew re-runs bootout while it answers EINPROGRESS (launchctl exit statuses as captured in DeterminateSystems/nix-installer#530, openclaw/openclaw#80384 and ProcursusTeam/launchctl xpc_private.h).
                    Some(j) if j.draining.is_some() => failed(36, "Operation now in progress"),
                    Some(j) => {
                        let running = j.proc.is_some();
                        self.begin_bootout(&key);
                        // The job still stops (osquery/osquery#5698).
                        match running && self.bootout_in_progress {
                            true => failed(36, "Operation now in progress"),
                            false => Response::ok(""),
                        }
                    }
                }
            }
            [domain, paths @ ..] => {
                let Some(domain) = DomainId::parse(domain) else {
                    return bad_target("bootout");
                };
                if !self.domain_exists(domain) {
                    return failed(125, "Domain does not support specified action");
                }
                if paths.is_empty() {
                    // Tears the whole domain down (launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html: never do this on a host).
                    let keys: Vec<Key> = self
                        .jobs
                        .keys()
                        .filter(|k| k.0 == domain)
                        .cloned()
                        .collect();
                    for key in keys {
                        self.begin_bootout(&key);
                    }
                    return Response::ok("");
                }
                for path in paths {
                    let Ok(spec) = read_plist(Path::new(path)) else {
                        return match Path::new(path).exists() {
                            false => Response::fail(
                                2,
                                format!(
                                    "{path}: No such file or directory\nBoot-out failed: 2: No such file or directory\n"
                                ),
                            ),
                            true => failed(5, "Input/output error"),
                        };
                    };
                    let key = (domain, spec.label);
                    match self.jobs.get(&key) {
                        Some(j) if j.draining.is_none() => self.begin_bootout(&key),
                        _ => return failed(5, "Input/output error"),
                    }
                }
                Response::ok("")
            }
            [] => Response::fail(64, usage("bootout")),
        }
    }

    fn begin_bootout(&mut self, key: &Key) {
        let token = self.token();
        let Some(job) = self.jobs.get_mut(key) else {
            return;
        };
        job.draining = Some((token, false));
        for w in job.kick_waiters.drain(..) {
            let _ = w
                .reply
                .send(kickstart_failed(&key.1, 5, "Input/output error"));
        }
        self.stop(key, false);
        self.after(
            self.drain,
            Event::DrainOver {
                key: key.clone(),
                token,
            },
        );
    }

    fn set_disabled(&mut self, sub: &str, args: &[&str], disabled: bool) -> Response {
        let [target] = args else {
            return Response::fail(64, usage(sub));
        };
        let Some((domain, label)) = parse_service_target(target) else {
            return bad_target(sub);
        };
        self.overrides
            .entry(domain.target())
            .or_default()
            .insert(label, disabled);
        match self.save_overrides() {
            Ok(()) => Response::ok(""),
            Err(e) => Response::fail(5, format!("launchctl-double: cannot save overrides: {e}\n")),
        }
    }

    /// Atomically, so a crash of the double never loses or tears the database.
    fn save_overrides(&self) -> io::Result<()> {
        let tmp = self.state_dir.join(format!("{OVERRIDES}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(&self.overrides).map_err(io::Error::other)?)?;
        f.sync_all()?;
        fs::rename(&tmp, self.state_dir.join(OVERRIDES))
    }

    fn kickstart(&mut self, args: &[&str], reply: oneshot::Sender<Response>) {
        let (mut kill_first, mut print_pid, mut target) = (false, false, None);
        for &arg in args {
            match arg.strip_prefix('-') {
                Some(flags) if !flags.is_empty() && flags.chars().all(|c| "kps".contains(c)) => {
                    kill_first |= flags.contains('k');
                    print_pid |= flags.contains('p');
                }
                Some(_) => {
                    let _ = reply.send(Response::fail(64, usage("kickstart")));
                    return;
                }
                None if target.is_none() => target = Some(arg),
                None => {
                    let _ = reply.send(Response::fail(64, usage("kickstart")));
                    return;
                }
            }
        }
        let Some(target) = target else {
            let _ = reply.send(Response::fail(64, usage("kickstart")));
            return;
        };
        let key = match self.find_service("kickstart", target) {
            Ok(key) => key,
            Err(resp) => {
                let _ = reply.send(resp);
                return;
            }
        };
        let job = self.jobs.get_mut(&key).expect("found");
        if job.draining.is_some() {
            // After an unload kickstart may return 5 (hermes-agent#37653).
            let _ = reply.send(kickstart_failed(&key.1, 5, "Input/output error"));
            return;
        }
        match (&job.proc, kill_first) {
            (Some(p), false) => {
                // Already running: docs/launchd.md picks 0 and makes it configurable.
                let code = self.kickstart_running_code;
                let stdout = match (print_pid, code) {
                    (true, 0) => format!("{}\n", p.pid),
                    _ => String::new(),
                };
                let _ = reply.send(Response {
                    code,
                    stdout,
                    stderr: String::new(),
                });
            }
            (Some(_), true) => {
                // Restarted once the old instance is gone (Homebrew/brew Library/Homebrew/services/cli.rb; launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html).
                job.kick_waiters.push(KickWaiter { print_pid, reply });
                self.stop(&key, false);
            }
            (None, _) => {
                self.spawn(&key);
                let pid = self
                    .jobs
                    .get(&key)
                    .and_then(|j| j.proc.as_ref().map(|p| p.pid));
                let _ = reply.send(kickstart_reply(print_pid, pid));
            }
        }
    }

    /// The key of a loaded service, or launchctl's answer when there is none.
    fn find_service(&self, sub: &str, target: &str) -> Result<Key, Response> {
        let key = parse_service_target(target).ok_or_else(|| bad_target(sub))?;
        if !self.domain_exists(key.0) {
            return Err(no_domain(key.0, self.missing_domain_code));
        }
        match self.jobs.contains_key(&key) {
            true => Ok(key),
            false => Err(Response::fail(113, not_found(&key))),
        }
    }

    /// `kill <sig> <service-target>`, and `x-kill <sig> <label|service-target>`.
    fn kill_cmd(&mut self, sub: &str, args: &[&str]) -> Response {
        let (signal, target) = match (sub, args) {
            ("kill", [signal, target]) => (*signal, *target),
            ("x-kill", [target, signal]) => (*signal, *target),
            _ => return Response::fail(64, usage(sub)),
        };
        let Some(signal) = parse_signal(signal) else {
            return Response::fail(64, usage(sub));
        };
        let key = if sub == "x-kill" && !target.contains('/') {
            match self.jobs.keys().find(|k| k.1 == target) {
                Some(k) => k.clone(),
                None => {
                    return Response::fail(113, format!("x-kill: no job labelled {target:?}\n"));
                }
            }
        } else {
            match self.find_service(sub, target) {
                Ok(k) => k,
                Err(r) => return r,
            }
        };
        match self.jobs.get(&key).and_then(|j| j.proc.as_ref()) {
            // ProcursusTeam/launchctl `kill.c` (launchctl exit statuses as captured in DeterminateSystems/nix-installer#530, openclaw/openclaw#80384 and ProcursusTeam/launchctl xpc_private.h).
            None => Response::fail(3, "No process to signal.\n"),
            Some(p) => match kill(Pid::from_raw(p.pid as i32), signal) {
                Ok(()) => Response::ok(""),
                Err(e) => Response::fail(e as i32, format!("Could not signal service: {e}\n")),
            },
        }
    }

    fn print(&self, args: &[&str]) -> Response {
        let [target] = args else {
            return Response::fail(64, usage("print"));
        };
        let Some(key) = parse_service_target(target) else {
            return match DomainId::parse(target) {
                Some(_) => Response::fail(
                    64,
                    "launchctl-double: print <domain-target> is not emulated\n",
                ),
                None => bad_target("print"),
            };
        };
        if !self.domain_exists(key.0) {
            return no_domain(key.0, self.missing_domain_code);
        }
        match self.jobs.get(&key) {
            // launchctl exit statuses as captured in DeterminateSystems/nix-installer#530, openclaw/openclaw#80384 and ProcursusTeam/launchctl xpc_private.h (sglavoie/dev-helpers notFoundStderr).
            None => Response::fail(113, format!("Bad request.\n{}", not_found(&key))),
            Some(job) => Response::ok(render_print(job)),
        }
    }

    fn print_disabled(&self, args: &[&str]) -> Response {
        let [domain] = args else {
            return Response::fail(64, usage("print-disabled"));
        };
        let Some(domain) = DomainId::parse(domain) else {
            return bad_target("print-disabled");
        };
        let (on, off) = match self.vocabulary {
            Vocabulary::Modern => ("disabled", "enabled"),
            Vocabulary::Legacy => ("true", "false"),
        };
        let mut out = String::from("disabled services = {\n");
        for (label, &disabled) in self.overrides.get(&domain.target()).into_iter().flatten() {
            out.push_str(&format!(
                "\t\"{label}\" => {}\n",
                if disabled { on } else { off }
            ));
        }
        out.push_str("}\n");
        if let DomainId::Gui(_) = domain {
            // Follows on recent macOS (`print-disabled` output, DeterminateSystems/nix-installer#555, ninehills/blog#85).
            out.push_str("\nlogin item associations = {\n}\n");
        }
        Response::ok(out)
    }

    fn login(&mut self, login: bool, args: &[&str]) -> Response {
        let Some(uid) = args.first().and_then(|u| u.parse::<u32>().ok()) else {
            return Response::fail(64, "usage: x-login|x-logout <uid>\n");
        };
        if login {
            self.logged_in.insert(uid);
        } else if self.logged_in.remove(&uid) {
            // Logging out takes the domain and its agents down.
            let keys: Vec<Key> = self
                .jobs
                .keys()
                .filter(|k| k.0 == DomainId::Gui(uid))
                .cloned()
                .collect();
            for key in keys {
                if self.jobs.get(&key).is_some_and(|j| j.draining.is_none()) {
                    self.begin_bootout(&key);
                }
            }
        }
        Response::ok("")
    }

    fn config(&mut self, args: &[&str]) -> Response {
        match args {
            ["drain-ms", ms] if ms.parse::<u64>().is_ok() => {
                self.drain = Duration::from_millis(ms.parse().expect("checked"));
            }
            ["disabled-vocabulary", "modern"] => self.vocabulary = Vocabulary::Modern,
            ["disabled-vocabulary", "legacy"] => self.vocabulary = Vocabulary::Legacy,
            ["kickstart-running-code", code @ ("0" | "37")] => {
                self.kickstart_running_code = code.parse().expect("checked");
            }
            ["missing-domain-code", code @ ("112" | "125")] => {
                self.missing_domain_code = code.parse().expect("checked");
            }
            ["bootout-in-progress", on @ ("on" | "off")] => {
                self.bootout_in_progress = *on == "on";
            }
            _ => {
                return Response::fail(
                    64,
                    "usage: x-config drain-ms <ms> | disabled-vocabulary modern|legacy \
                     | kickstart-running-code 0|37 | missing-domain-code 112|125 \
                     | bootout-in-progress on|off\n",
                );
            }
        }
        Response::ok("")
    }
}

/// Starts the job's program as launchd would: launchd's default PATH plus the plist's
/// environment, its working directory (default `/`), stdin from `/dev/null`, stdout and
/// stderr appended to their paths (created if missing, their directories too when the job's
/// user may), in a process group of its own. A quarantined program is refused.
fn start_program(
    spec: &JobSpec,
    quarantined: &BTreeSet<PathBuf>,
) -> io::Result<launchgraph::process::TrackedChild> {
    let argv0 = spec.arguments.first().cloned();
    let program = match (&spec.program, &argv0) {
        (Some(p), _) => PathBuf::from(p),
        // "may be either an absolute path, or a relative path which is resolved using
        // _PATH_STDPATH" (launchd.plist(5) ProgramArguments).
        (None, Some(a)) if !a.contains('/') => DEFAULT_PATH
            .split(':')
            .map(|dir| Path::new(dir).join(a))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{a} is not in {DEFAULT_PATH}"),
                )
            })?,
        (None, Some(a)) => PathBuf::from(a),
        (None, None) => return Err(io::Error::other("no program")),
    };
    if quarantined.contains(&program) {
        // "Could not find and/or execute program specified by service ... 78"
        // (github.com/codechimp-org/ha-menu/issues/51).
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is quarantined", program.display()),
        ));
    }
    let user = match &spec.user {
        Some(name) => Some(
            nix::unistd::User::from_name(name)
                .map_err(io::Error::other)?
                .ok_or_else(|| io::Error::other(format!("no user {name}")))?,
        ),
        None => None,
    };
    for log in [&spec.stdout, &spec.stderr].into_iter().flatten() {
        if let Some(dir) = log
            .parent()
            .filter(|d| !d.as_os_str().is_empty() && !d.is_dir())
        {
            create_log_dir(dir, user.as_ref())?;
        }
    }
    let mut cmd = tokio::process::Command::new(&program);
    if let Some(arg0) = &argv0 {
        cmd.arg0(arg0);
    }
    cmd.args(spec.arguments.iter().skip(1))
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .env("XPC_SERVICE_NAME", &spec.label)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(spec.working_directory.as_deref().unwrap_or(Path::new("/")))
        .stdin(Stdio::null())
        .process_group(0);
    let open = |p: &Path| OpenOptions::new().create(true).append(true).open(p);
    let stdout = spec.stdout.as_deref().map(open).transpose()?;
    let stderr = match (&spec.stderr, &spec.stdout, &stdout) {
        (Some(e), Some(o), Some(f)) if e == o => Some(f.try_clone()?),
        (Some(e), _, _) => Some(open(e)?),
        _ => None,
    };
    cmd.stdout(stdout.map_or_else(Stdio::null, Stdio::from));
    cmd.stderr(stderr.map_or_else(Stdio::null, Stdio::from));
    if let Some(user) = &user {
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    spawn_tracked(&mut cmd)
}

/// Creates a missing log directory as launchd does: only when the job's user may write to
/// and search its nearest existing parent (github.com/LrGenius/LrGeniusAI/pull/298: created
/// for an agent whose parent it owns, EX_CONFIG under root-owned /Library/Logs), owned by
/// that user.
fn create_log_dir(dir: &Path, user: Option<&nix::unistd::User>) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if let Some(user) = user.filter(|u| !u.uid.is_root()) {
        let parent = dir
            .ancestors()
            .skip(1)
            .find(|a| a.exists())
            .ok_or_else(|| io::Error::other("no parent exists"))?;
        let meta = fs::metadata(parent)?;
        let mode = meta.permissions().mode();
        let bits = if meta.uid() == user.uid.as_raw() {
            0o300
        } else if meta.gid() == user.gid.as_raw() {
            0o030
        } else {
            0o003
        };
        if !meta.is_dir() || mode & bits != bits {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "cannot create {}: {} is not writable by uid {}",
                    dir.display(),
                    parent.display(),
                    user.uid
                ),
            ));
        }
        fs::create_dir_all(dir)?;
        let _ = nix::unistd::chown(dir, Some(user.uid), Some(user.gid));
        return Ok(());
    }
    fs::create_dir_all(dir)
}

// ---------------------------------------------------------------------------------------------
// Rendering and messages.

fn kickstart_reply(print_pid: bool, pid: Option<u32>) -> Response {
    // Without a TTY, `-p` prints the bare pid (PROC kickstart.c, launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html). A spawn
    // that failed prints nothing; print shows why.
    match (print_pid, pid) {
        (true, Some(pid)) => Response::ok(format!("{pid}\n")),
        _ => Response::ok(""),
    }
}

/// The wording of a failed kickstart is not attested; this follows launchctl's usual
/// `<what> failed: <code>: <strerror>` shape.
fn kickstart_failed(label: &str, code: i32, what: &str) -> Response {
    Response::fail(
        code,
        format!("Could not kickstart service \"{label}\": {code}: {what}\n"),
    )
}

fn not_found((domain, label): &Key) -> String {
    format!(
        "Could not find service \"{label}\" in domain for {}\n",
        domain.described()
    )
}

/// A `gui/<uid>` domain that does not exist: 125 on current macOS
/// (github.com/lidge-jun/opencodex/issues/1770, `print` on macOS 26.5.2; duh17/oppi#38), or
/// the older 112 form (Wamphyre/macOS_Silverback-Debloater#2, oppi#38).
fn no_domain(domain: DomainId, code: i32) -> Response {
    match code {
        112 => Response::fail(
            112,
            format!("Could not find domain for {}\n", domain.described()),
        ),
        code => Response::fail(code, "Domain does not support specified action\n"),
    }
}

fn usage(sub: &str) -> String {
    let line = match sub {
        "bootstrap" => "bootstrap <domain-target> [service-path, service-path2, ...]",
        "bootout" => {
            "bootout <domain-target> [service-path1, service-path2, ...] | <service-target>"
        }
        "enable" => "enable <service-target>",
        "disable" => "disable <service-target>",
        "kickstart" => "kickstart [-kp] <service-target>",
        "kill" => "kill <signal-number|signal-name> <service-target>",
        "x-kill" => "x-kill <label|service-target> <signal-number|signal-name>",
        "print" => "print <domain-target> | <service-target>",
        "print-disabled" => "print-disabled <domain-target>",
        _ => "<subcommand> ...",
    };
    format!("Usage: launchctl {line}\n")
}

/// launchctl exit statuses as captured in DeterminateSystems/nix-installer#530, openclaw/openclaw#80384 and ProcursusTeam/launchctl xpc_private.h (t3code#11995): exit 64.
fn bad_target(sub: &str) -> Response {
    Response::fail(
        64,
        format!(
            "Unrecognized target specifier.\n{}\
             <service-target> takes a form of <domain-target>/<service-id>.\n\
             Please refer to `man launchctl` for explanation of the <domain-target> \
             specifiers.\n",
            usage(sub)
        ),
    )
}

fn main_usage() -> String {
    "Usage: launchctl <subcommand> ... | help [subcommand]\n\
     Many subcommands take a target specifier that refers to a domain or service\n\
     within that domain. The available specifier forms are:\n\
     \n\
     system/[service-name]\n\
     user/<uid>/[service-name]\n\
     gui/<uid>/[service-name]\n"
        .into()
}

fn parse_signal(s: &str) -> Option<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = s.to_ascii_uppercase();
    let name = match upper.starts_with("SIG") {
        true => upper,
        false => format!("SIG{upper}"),
    };
    Signal::from_str(&name).ok()
}

/// macOS's strsignal(3) wording, which print uses (`Terminated: 15`, verbatim `launchctl print` captures: sglavoie/dev-helpers LaunchctlFixtures.swift, byliu-labs/egress-guard status_darwin_test.go, wazuh/wazuh-agent#569).
fn signal_description(n: i32) -> &'static str {
    match Signal::try_from(n) {
        Ok(Signal::SIGHUP) => "Hangup",
        Ok(Signal::SIGINT) => "Interrupt",
        Ok(Signal::SIGQUIT) => "Quit",
        Ok(Signal::SIGILL) => "Illegal instruction",
        Ok(Signal::SIGTRAP) => "Trace/BPT trap",
        Ok(Signal::SIGABRT) => "Abort trap",
        Ok(Signal::SIGFPE) => "Floating point exception",
        Ok(Signal::SIGKILL) => "Killed",
        Ok(Signal::SIGBUS) => "Bus error",
        Ok(Signal::SIGSEGV) => "Segmentation fault",
        Ok(Signal::SIGSYS) => "Bad system call",
        Ok(Signal::SIGPIPE) => "Broken pipe",
        Ok(Signal::SIGALRM) => "Alarm clock",
        Ok(Signal::SIGTERM) => "Terminated",
        Ok(Signal::SIGUSR1) => "User defined signal 1",
        Ok(Signal::SIGUSR2) => "User defined signal 2",
        _ => "Unknown signal",
    }
}

/// `78: EX_CONFIG` style for the sysexits range (verbatim `launchctl print` captures: sglavoie/dev-helpers LaunchctlFixtures.swift, byliu-labs/egress-guard status_darwin_test.go, wazuh/wazuh-agent#569), a bare number otherwise.
fn exit_code_text(code: i32) -> String {
    const SYSEXITS: [&str; 15] = [
        "EX_USAGE",
        "EX_DATAERR",
        "EX_NOINPUT",
        "EX_NOUSER",
        "EX_NOHOST",
        "EX_UNAVAILABLE",
        "EX_SOFTWARE",
        "EX_OSERR",
        "EX_OSFILE",
        "EX_CANTCREAT",
        "EX_IOERR",
        "EX_TEMPFAIL",
        "EX_PROTOCOL",
        "EX_NOPERM",
        "EX_CONFIG",
    ];
    match usize::try_from(code - 64)
        .ok()
        .and_then(|i| SYSEXITS.get(i))
    {
        Some(name) => format!("{code}: {name}"),
        None => code.to_string(),
    }
}

/// `print <service-target>` in the key order of Samples A/B (verbatim `launchctl print` captures: sglavoie/dev-helpers LaunchctlFixtures.swift, byliu-labs/egress-guard status_darwin_test.go, wazuh/wazuh-agent#569; docs/launchd.md), one
/// TAB per level, with nested blocks (environment, a coalition with its own `state = active`
/// and `active count`) where launchd has them, so parsers that ignore depth fail.
fn render_print(job: &Job) -> String {
    let spec = &job.spec;
    let running = job.proc.is_some();
    let state = match (&job.proc, job.relaunch) {
        (Some(_), _) => "running",
        (None, Some(_)) => "spawn scheduled",
        (None, None) => "not running",
    };
    let program = spec
        .program
        .clone()
        .or_else(|| spec.arguments.first().cloned())
        .unwrap_or_default();
    let mut o = String::new();
    let mut line = |depth: usize, text: &str| {
        o.extend(std::iter::repeat_n('\t', depth));
        o.push_str(text);
        o.push('\n');
    };
    line(0, &format!("{}/{} = {{", job.domain.target(), spec.label));
    line(1, &format!("active count = {}", u8::from(running)));
    line(1, &format!("path = {}", job.plist.display()));
    line(1, &format!("type = {}", job.domain.job_type()));
    line(1, &format!("state = {state}"));
    line(0, "");
    line(1, &format!("program = {program}"));
    line(1, "arguments = {");
    for arg in &spec.arguments {
        line(2, arg);
    }
    line(1, "}");
    line(0, "");
    if let Some(dir) = &spec.working_directory {
        line(1, &format!("working directory = {}", dir.display()));
        line(0, "");
    }
    if let Some(p) = &spec.stdout {
        line(1, &format!("stdout path = {}", p.display()));
    }
    if let Some(p) = &spec.stderr {
        line(1, &format!("stderr path = {}", p.display()));
    }
    line(1, "default environment = {");
    line(2, &format!("PATH => {DEFAULT_PATH}"));
    line(1, "}");
    line(0, "");
    line(1, "environment = {");
    for (k, v) in &spec.env {
        line(2, &format!("{k} => {v}"));
    }
    line(2, &format!("XPC_SERVICE_NAME => {}", spec.label));
    line(1, "}");
    line(0, "");
    match job.domain {
        DomainId::Gui(uid) => {
            let asid = 100_000 + uid;
            line(1, &format!("domain = gui/{uid} [{asid}]"));
            line(1, &format!("asid = {asid}"));
        }
        other => line(1, &format!("domain = {}", other.target())),
    }
    line(1, &format!("minimum runtime = {}", spec.throttle));
    line(1, &format!("exit timeout = {}", spec.exit_timeout));
    line(1, &format!("runs = {}", job.runs));
    if let Some(p) = &job.proc {
        line(1, &format!("pid = {}", p.pid));
        line(1, "immediate reason = speculative");
    }
    match job.last {
        Last::Never => line(1, "last exit code = (never exited)"),
        Last::Code(code) => line(1, &format!("last exit code = {}", exit_code_text(code))),
        // Replaces the exit code line (verbatim `launchctl print` captures: sglavoie/dev-helpers LaunchctlFixtures.swift, byliu-labs/egress-guard status_darwin_test.go, wazuh/wazuh-agent#569).
        Last::Signal(s) => line(
            1,
            &format!("last terminating signal = {}: {s}", signal_description(s)),
        ),
    }
    line(0, "");
    line(1, "resource coalition = {");
    line(2, &format!("ID = {}", 1000 + job.generation));
    line(2, "type = resource");
    line(2, "state = active");
    line(2, "active count = 1");
    line(2, &format!("name = {}", spec.label));
    line(1, "}");
    line(0, "");
    let spawn_type = match job.domain {
        DomainId::System => "daemon (3)",
        _ => "interactive (4)",
    };
    line(1, &format!("spawn type = {spawn_type}"));
    line(1, "jetsam priority = 40");
    line(1, &format!("job state = {}", job.job_state));
    let mut properties = Vec::new();
    if spec.keep_alive.any() {
        properties.push("keepalive");
    }
    if spec.run_at_load {
        properties.push("runatload");
    }
    if spec.program.is_none() {
        properties.push("inferred program");
    }
    if !properties.is_empty() {
        line(0, "");
        line(1, &format!("properties = {}", properties.join(" | ")));
    }
    line(0, "}");
    o
}
