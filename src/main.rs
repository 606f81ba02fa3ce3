//! The `launchgraph` binary: parses the command line, runs one subcommand, and maps the outcome
//! to a documented exit code. Everything else lives in the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use launchgraph::compile::compile_dir;
use launchgraph::exit;
use launchgraph::paths::default_units_dir;
use launchgraph::plan::Plan;

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
struct StateDir {
    /// Where fingerprints (and other state) are kept. Default: $LAUNCHGRAPH_STATE_DIR, else
    /// /var/lib/launchgraph on Linux, /usr/local/var/launchgraph on macOS
    /// ($(brew --prefix)/var/launchgraph for a Homebrew install).
    #[arg(long, value_name = "DIR", env = "LAUNCHGRAPH_STATE_DIR")]
    state_dir: Option<PathBuf>,
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
        } => up(&units.resolve(), launchctl, state.resolve()),
    }
}

fn up(dir: &std::path::Path, launchctl: PathBuf, state_dir: PathBuf) -> u8 {
    init_logging();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("launchgraph: cannot start the runtime: {e}");
            return exit::SOFTWARE;
        }
    };
    let mut config = launchgraph::engine::runtime::SupervisorConfig::default();
    config.launchd.launchctl = launchgraph::launchd::Launchctl::new(launchctl);
    config.state_dir = state_dir;
    runtime.block_on(launchgraph::engine::up(dir.to_path_buf(), config))
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("LAUNCHGRAPH_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(color)
        .init();
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
            let mut out = std::io::stdout().lock();
            let written = if json {
                serde_json::to_writer_pretty(&mut out, &plan)
                    .map_err(std::io::Error::from)
                    .and_then(|()| writeln!(out))
            } else {
                out.write_all(plan.render().as_bytes())
            };
            match written {
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
