//! The command line: clap's types, and the defaults each option falls back to. What a
//! command does is in [`crate::cmd`]; nothing here acts.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use launchgraph::exit;
use launchgraph::paths::default_units_dir;

/// launchgraph: start services in dependency order, each only once what it requires is ready;
/// restart them in order, with backoff.
#[derive(Parser)]
#[command(
    name = "launchgraph",
    version,
    about,
    after_help = exit::help()
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
        /// The launchctl program asked what launchd has loaded for each `launchd` unit
        /// (`launchctl print`, read-only); skipped when it does not exist.
        #[arg(
            long,
            value_name = "PATH",
            default_value = "/bin/launchctl",
            env = "LAUNCHGRAPH_LAUNCHCTL"
        )]
        launchctl: PathBuf,
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
        /// The device whose owner is the console user, whose `gui/<uid>` domain `gui/console`
        /// names (tests point it at a file they own).
        #[arg(
            long,
            value_name = "PATH",
            default_value = "/dev/console",
            env = "LAUNCHGRAPH_CONSOLE_DEVICE",
            hide = true
        )]
        console_device: PathBuf,
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
        /// Write the log to this file (appending, created mode 0644), and follow it when it is
        /// rotated: renamed or removed, it is opened again before the next line. Without it,
        /// the log goes to stderr.
        #[arg(long, value_name = "PATH", env = "LAUNCHGRAPH_LOG_FILE")]
        log_file: Option<PathBuf>,
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
    /// Bring a unit up, its requirements first. For an `[external]` unit: watch it again
    /// (its probes); launchgraph never starts what it names.
    Start {
        unit: String,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Take a unit down, its dependents first. For an `[external]` unit: stop its dependents
    /// and stop watching it; what it names keeps running.
    Stop {
        unit: String,
        #[command(flatten)]
        socket: SocketArg,
    },
    /// Cycle a unit, and its dependents in order. Refused for an `[external]` unit (exit
    /// 64): restart it where it runs, or restart its dependents.
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
        /// JSON lines, one per transition: docs/events-schema.md.
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
    /// Trip or clear a guard by hand (the same rights as `restart`). A trip runs its on-trip
    /// action again and holds until cleared by hand; a clear puts it back to ok, its samples
    /// driving it again.
    Guard {
        #[arg(value_enum)]
        action: GuardAction,
        /// UNIT/GUARD.
        target: String,
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
    /// Hand the start of a `[launchd]` unit's job to launchgraph: back its plist up once (in
    /// <state-dir>/adopted/), rewrite it with RunAtLoad false and without KeepAlive, and
    /// reload the job (bootout, bootstrap) when launchd has it loaded and it is not running.
    /// A running job is left running unless --restart. Needs root, but for --dry-run.
    Adopt {
        unit: String,
        /// Only say what would change (each key, from and to) and the launchctl commands.
        #[arg(long)]
        dry_run: bool,
        /// Also reload a running job now: the bootout stops it, and launchd no longer starts
        /// it by itself (launchgraph does, in order). Without it a running job keeps the
        /// definition launchd loaded until its next stop, boot or login.
        #[arg(long)]
        restart: bool,
        #[command(flatten)]
        units: UnitsDir,
        #[command(flatten)]
        state: StateDir,
        #[command(flatten)]
        launchd: LaunchdArgs,
    },
    /// Give an adopted job back to launchd: restore its plist from the backup (bytes, mode,
    /// owner), reload it (bootout, bootstrap) so launchd runs it as before, and remove the
    /// backup. Refuses a plist changed since adopt unless --force. Also loads again a job
    /// launchgraph booted out to stop it (a KeepAlive job, recorded in
    /// <state-dir>/booted-out/) that is still not loaded. Needs root, but for --dry-run.
    Release {
        /// The unit (or the job's label); see --all.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        unit: Option<String>,
        /// Release every adopted job and load again every job launchgraph left booted out
        /// (the uninstaller runs this).
        #[arg(long)]
        all: bool,
        /// Only say what would be restored and loaded, and the launchctl commands.
        #[arg(long)]
        dry_run: bool,
        /// Restore the backup even over a plist changed since adopt wrote it.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        units: UnitsDir,
        #[command(flatten)]
        state: StateDir,
        #[command(flatten)]
        launchd: LaunchdArgs,
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
    /// The runbook of the units' guards and switches: what each watches, when it trips and
    /// clears, and the exact commands run on each edge (as which user), with their verify
    /// command and time box; with each one's state now (value, window) when the daemon
    /// answers on its socket. Without a daemon, the runbook alone.
    Guards {
        #[command(flatten)]
        units: UnitsDir,
        /// Print the runbook as JSON (schema launchgraph.runbook/1, see
        /// docs/runbook-schema.md), each row's `live` filled in when the daemon answers.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        socket: SocketArg,
    },
}

/// How `adopt` and `release` reach launchd.
#[derive(Args)]
pub(crate) struct LaunchdArgs {
    /// The launchctl program.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/bin/launchctl",
        env = "LAUNCHGRAPH_LAUNCHCTL"
    )]
    pub launchctl: PathBuf,
    /// The device whose owner is the console user, for `gui/console` (tests point it at a
    /// file they own).
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/dev/console",
        env = "LAUNCHGRAPH_CONSOLE_DEVICE",
        hide = true
    )]
    pub console_device: PathBuf,
}

#[derive(Args)]
pub(crate) struct SocketArg {
    /// The daemon's control socket. Default: $LAUNCHGRAPH_SOCKET, else /var/run/launchgraph.sock
    /// on macOS, /run/launchgraph/launchgraph.sock on Linux (root's daemon), or
    /// $XDG_RUNTIME_DIR/launchgraph.sock for a daemon of one's own.
    #[arg(long, value_name = "PATH", env = "LAUNCHGRAPH_SOCKET")]
    pub socket: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct StateDir {
    /// Where fingerprints (and other state) are kept. Default: $LAUNCHGRAPH_STATE_DIR, else
    /// /var/lib/launchgraph on Linux, /usr/local/var/launchgraph on macOS
    /// ($(brew --prefix)/var/launchgraph for a Homebrew install).
    #[arg(long, value_name = "DIR", env = "LAUNCHGRAPH_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

impl SocketArg {
    /// Where the CLI looks for the daemon.
    pub(crate) fn client(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(launchgraph::paths::default_client_socket_path)
    }
}

impl StateDir {
    /// The state directory, absolute: a unit's process writes its own run record there
    /// after it has changed to its working directory, where a relative path would name
    /// another place.
    pub(crate) fn resolve(&self) -> PathBuf {
        let dir = self
            .state_dir
            .clone()
            .unwrap_or_else(launchgraph::fingerprint::default_state_dir);
        std::path::absolute(&dir).unwrap_or(dir)
    }
}

#[derive(Args)]
pub(crate) struct UnitsDir {
    /// The units directory (one TOML file per unit). Default: $LAUNCHGRAPH_UNITS, else
    /// /etc/launchgraph/units on Linux, /usr/local/etc/launchgraph/units on macOS
    /// ($(brew --prefix)/etc/launchgraph/units for a Homebrew install).
    #[arg(long, value_name = "DIR", env = "LAUNCHGRAPH_UNITS")]
    pub units: Option<PathBuf>,
}

impl UnitsDir {
    pub(crate) fn resolve(&self) -> PathBuf {
        self.units.clone().unwrap_or_else(default_units_dir)
    }
}

/// What `launchgraph guard` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GuardAction {
    Trip,
    Clear,
}
