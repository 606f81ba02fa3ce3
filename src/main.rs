//! The `launchgraph` binary: parses the command line, runs one subcommand, and maps the outcome
//! to a documented exit code. Everything else lives in the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use launchgraph::compile::compile_dir;
use launchgraph::control::protocol::Request;
use launchgraph::exit;
use launchgraph::paths::default_units_dir;
use launchgraph::plan::Plan;

mod cli;

/// launchgraph: start services in dependency order, each only once what it requires is ready;
/// restart them in order, with backoff.
#[derive(Parser)]
#[command(
    name = "launchgraph",
    version,
    about,
    after_help = "Exit codes: 0 success; 64 usage error; 65 a preflight check failed; 69 daemon \
                  unavailable; 70 internal error; 74 I/O error; 78 invalid configuration."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the units directory (every error with file, line and column), then run the
    /// preflight checks of what each unit would execute, and say what drifted since the last
    /// good run.
    Check {
        #[command(flatten)]
        units: UnitsDir,
        #[command(flatten)]
        state: StateDir,
        /// Only validate the unit files; skip the checks of this host's files (preflight and
        /// drift), e.g. to check units meant for another machine.
        #[arg(long)]
        config_only: bool,
    },
    /// Run the supervisor in the foreground: start every unit in dependency order, each once
    /// what it requires is ready; restart in order with backoff; on SIGTERM or SIGINT stop
    /// everything in reverse order and exit 0. Logs to stderr.
    Up {
        #[command(flatten)]
        units: UnitsDir,
        /// The launchctl program that drives `launchd` units.
        #[arg(
            long,
            value_name = "PATH",
            default_value = "/bin/launchctl",
            env = "LAUNCHGRAPH_LAUNCHCTL"
        )]
        launchctl: PathBuf,
        #[command(flatten)]
        state: StateDir,
        #[command(flatten)]
        socket: SocketArg,
        /// A group whose members may act through the control socket (start, stop, restart,
        /// reload); the socket is then mode 0660 with that group, else 0600 (root only).
        #[arg(long, value_name = "GROUP", env = "LAUNCHGRAPH_ADMIN_GROUP")]
        admin_group: Option<String>,
        /// Also serve GET /metrics (Prometheus text) on this loopback address, e.g.
        /// 127.0.0.1:9464. Non-loopback addresses are refused.
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<std::net::SocketAddr>,
        /// Log format on stderr: `text` (for people) or `json` (one object per line). On
        /// macOS the unified log (subsystem com.launchgraph.daemon) gets every line as well.
        #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
        log_format: String,
    },
    /// The daemon's view of every unit (or one): state and for how long, pid, last exit,
    /// restarts, backoff remaining, last probe, reason code, preflight findings.
    Status {
        unit: Option<String>,
        /// One JSON object (the protocol's `status` response).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Bring a unit up, its requirements first.
    Start {
        unit: String,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Take a unit down, its dependents first.
    Stop {
        unit: String,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Cycle a unit, and its dependents in order.
    Restart {
        unit: String,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Re-read the units directory and apply the difference: new units start, removed ones
    /// stop, changed ones restart with their dependents; unchanged units are not touched. An
    /// invalid directory changes nothing.
    Reload {
        /// Only say what would happen.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Recent transitions, then (with --follow) live ones.
    Events {
        #[arg(long, short)]
        follow: bool,
        /// JSON lines: time, seq, unit, from, to, reason, on, detail.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// The daemon's metrics, as Prometheus text.
    Metrics {
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Write the artifact for a change window: a tarball in the state directory with the unit
    /// files, the plists they use, their environments (secrets redacted), the last
    /// fingerprints, the live status, and Ollama's and OpenClaw's own reports when reachable.
    Snapshot {
        /// List the existing snapshots instead.
        #[arg(long)]
        list: bool,
        #[command(flatten)]
        units: UnitsDir,
        #[command(flatten)]
        state: StateDir,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Show the start waves with each unit's readiness gate, the stop order, and what a
    /// restart of each unit cascades to.
    Plan {
        #[command(flatten)]
        units: UnitsDir,
        /// Print the plan as JSON (schema launchgraph.plan/1, see docs/plan-schema.md).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct SocketArg {
    /// The daemon's control socket. Default: $LAUNCHGRAPH_SOCKET, else /var/run/launchgraph.sock
    /// on macOS, /run/launchgraph/launchgraph.sock on Linux (root's daemon), or
    /// $XDG_RUNTIME_DIR/launchgraph.sock for a daemon of one's own.
    #[arg(long, value_name = "PATH", env = "LAUNCHGRAPH_SOCKET")]
    socket: Option<PathBuf>,
}

#[derive(Args)]
struct StateDir {
    /// Where fingerprints (and other state) are kept. Default: $LAUNCHGRAPH_STATE_DIR, else
    /// /var/lib/launchgraph on Linux, /usr/local/var/launchgraph on macOS
    /// ($(brew --prefix)/var/launchgraph for a Homebrew install).
    #[arg(long, value_name = "DIR", env = "LAUNCHGRAPH_STATE_DIR")]
    state_dir: Option<PathBuf>,
}

impl SocketArg {
    /// Where the CLI looks for the daemon.
    fn client(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(launchgraph::paths::default_client_socket_path)
    }
}

impl StateDir {
    fn resolve(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(launchgraph::fingerprint::default_state_dir)
    }
}

#[derive(Args)]
struct UnitsDir {
    /// The units directory (one TOML file per unit). Default: $LAUNCHGRAPH_UNITS, else
    /// /etc/launchgraph/units on Linux, /usr/local/etc/launchgraph/units on macOS
    /// ($(brew --prefix)/etc/launchgraph/units for a Homebrew install).
    #[arg(long, value_name = "DIR", env = "LAUNCHGRAPH_UNITS")]
    units: Option<PathBuf>,
}

impl UnitsDir {
    fn resolve(&self) -> PathBuf {
        self.units.clone().unwrap_or_else(default_units_dir)
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    ExitCode::from(run(cli))
}

fn run(cli: Cli) -> u8 {
    match cli.command {
        Command::Check {
            units,
            state,
            config_only,
        } => check(&units.resolve(), (!config_only).then(|| state.resolve())),
        Command::Plan { units, json } => plan(&units.resolve(), json),
        Command::Up {
            units,
            launchctl,
            state,
            socket,
            admin_group,
            metrics_listen,
            log_format,
        } => {
            let mut config = launchgraph::daemon::UpConfig::default();
            config.supervisor.launchd.launchctl = launchgraph::launchd::Launchctl::new(launchctl);
            config.supervisor.state_dir = state.resolve();
            config.socket = socket
                .socket
                .unwrap_or_else(launchgraph::paths::default_socket_path);
            config.admin_group = admin_group;
            config.metrics_listen = metrics_listen;
            up(&units.resolve(), config, &log_format)
        }
        Command::Status { unit, json, socket } => {
            let sock = socket.client();
            cli::status(&sock, unit, json)
        }
        Command::Start { unit, socket } => cli::act(&socket.client(), Request::Start { unit }),
        Command::Stop { unit, socket } => cli::act(&socket.client(), Request::Stop { unit }),
        Command::Restart { unit, socket } => cli::act(&socket.client(), Request::Restart { unit }),
        Command::Reload { dry_run, socket } => cli::reload(&socket.client(), dry_run),
        Command::Events {
            follow,
            json,
            socket,
        } => cli::events(&socket.client(), follow, json),
        Command::Metrics { socket } => cli::metrics(&socket.client()),
        Command::Snapshot {
            list,
            units,
            state,
            socket,
        } => {
            let state_dir = state.resolve();
            if list {
                cli::snapshot_list(&state_dir)
            } else {
                let mut opts =
                    launchgraph::snapshot::SnapshotOptions::new(units.resolve(), state_dir);
                opts.socket = Some(socket.client());
                cli::snapshot(&opts)
            }
        }
    }
}

fn up(dir: &std::path::Path, config: launchgraph::daemon::UpConfig, log_format: &str) -> u8 {
    init_logging(log_format == "json");
    // One thread owns the supervisor; a few more do blocking lookups (users, log files) at
    // starts. Each extra thread costs memory for as long as the daemon lives.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("launchgraph: cannot start the runtime: {e}");
            return exit::SOFTWARE;
        }
    };
    runtime.block_on(launchgraph::daemon::up(dir.to_path_buf(), config))
}

/// Logs to stderr (text for people, or JSON lines), and on macOS to the unified log too.
fn init_logging(json: bool) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter =
        EnvFilter::try_from_env("LAUNCHGRAPH_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let (text, json) = if json {
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_target(false);
        (None, Some(layer))
    } else {
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_ansi(color);
        (Some(layer), None)
    };
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json);
    #[cfg(target_os = "macos")]
    let registry = registry.with(tracing_oslog::OsLogger::new(
        "com.launchgraph.daemon",
        "default",
    ));
    registry.init();
}

/// `check`: the configuration, then (unless `state_dir` is `None`) each unit's preflight
/// findings and drift since its last good run.
fn check(dir: &std::path::Path, state_dir: Option<PathBuf>) -> u8 {
    match compile_dir(dir) {
        Ok(c) => {
            let mut out = std::io::stdout().lock();
            for note in c.notes() {
                let _ = writeln!(out, "note: {note}");
            }
            let kinds = c.units.iter().fold((0, 0), |(e, l), u| match u.runner {
                launchgraph::unit::Runner::Exec(_) => (e + 1, l),
                launchgraph::unit::Runner::Launchd(_) => (e, l + 1),
            });
            let _ = writeln!(
                out,
                "ok: {} units ({} exec, {} launchd) in {}, {} start waves, no cycles",
                c.units.len(),
                kinds.0,
                kinds.1,
                dir.display(),
                c.graph.waves().len()
            );
            let mut blocking = 0;
            if let Some(state_dir) = &state_dir {
                let ctx = launchgraph::preflight::PreflightContext::host();
                for u in &c.units {
                    for f in launchgraph::preflight::preflight(u, &ctx) {
                        if f.blocks_start() {
                            blocking += 1;
                        }
                        let _ = writeln!(out, "{}: {} {}", u.name, f.severity, f.code);
                        if let Some(p) = &f.path {
                            let _ = writeln!(out, "  path: {}", p.display());
                        }
                        let _ = writeln!(out, "  {}", f.message);
                        if !f.fix.is_empty() {
                            let _ = writeln!(out, "  fix: {}", f.fix);
                        }
                    }
                    for line in drift_of(u, state_dir, &ctx) {
                        let _ = writeln!(out, "{}: drift since the last good run: {line}", u.name);
                    }
                }
            }
            if blocking > 0 {
                let _ = writeln!(
                    out,
                    "error: {blocking} preflight error{} block a start (see the fixes above)",
                    if blocking == 1 { "" } else { "s" }
                );
                return exit::PREFLIGHT;
            }
            exit::OK
        }
        Err(diags) => report(dir, &diags),
    }
}

/// What changed since the unit's last good run, if one was recorded.
fn drift_of(
    unit: &launchgraph::unit::Unit,
    state_dir: &std::path::Path,
    ctx: &launchgraph::preflight::PreflightContext,
) -> Vec<String> {
    let old = match launchgraph::fingerprint::load(state_dir, unit.name.as_str()) {
        Ok(Some(old)) => old,
        Ok(None) => return Vec::new(),
        Err(e) => {
            return vec![format!(
                "unknown: its last fingerprint in {} cannot be read ({e})",
                state_dir.display()
            )];
        }
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    let now = rt.block_on(launchgraph::fingerprint::take(unit, ctx));
    launchgraph::fingerprint::drift(&old, &now)
}

fn plan(dir: &std::path::Path, json: bool) -> u8 {
    match compile_dir(dir) {
        Ok(c) => {
            let plan = Plan::new(&c);
            // One write per buffer, not per line: a large plan is megabytes.
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let written = if json {
                serde_json::to_writer_pretty(&mut out, &plan)
                    .map_err(std::io::Error::from)
                    .and_then(|()| writeln!(out))
            } else {
                out.write_all(plan.render().as_bytes())
            };
            match written.and_then(|()| out.flush()) {
                Ok(()) => exit::OK,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
                Err(e) => {
                    eprintln!("launchgraph: cannot write the plan: {e}");
                    exit::IO
                }
            }
        }
        Err(diags) => report(dir, &diags),
    }
}

fn report(dir: &std::path::Path, diags: &[launchgraph::diag::Diagnostic]) -> u8 {
    let mut err = std::io::stderr().lock();
    for d in diags {
        let _ = writeln!(err, "{d}");
    }
    let files: std::collections::BTreeSet<_> = diags.iter().map(|d| &d.file).collect();
    let _ = writeln!(
        err,
        "error: {} problem{} in {} file{} under {}; nothing was started",
        diags.len(),
        if diags.len() == 1 { "" } else { "s" },
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        dir.display()
    );
    exit::CONFIG
}
