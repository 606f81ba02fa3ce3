//! What each subcommand does, one file per group: the units directory ([`config`]: `check`,
//! `plan`, `guards`), the daemon itself ([`daemon`]: `up`), the verbs that talk to it over its control
//! socket ([`control`]), [`snapshot`], and handing launchd jobs to launchgraph and back
//! ([`adopt`]: `adopt`, `release`).
//!
//! A command returns `Ok` or a [`Failure`] saying what kind of failure it was; `main` alone
//! turns that into an exit code. Nothing here exits the process.

mod adopt;
mod config;
mod control;
mod daemon;
mod snapshot;

use std::io::Write;

use launchgraph::control::protocol::Request;

use crate::cli::Command;

/// Why a command failed. The message, when there is one, is printed by `main` as
/// `launchgraph: <message>`; `Config` and `Preflight` have printed their report already.
#[derive(Debug)]
pub enum Failure {
    /// The command line names something that does not exist (an unknown unit).
    Usage(String),
    /// A preflight check found an error in what a unit would execute.
    Preflight,
    /// A file the command reads is missing or invalid (a plist, a backup), as a sentence
    /// naming it.
    Data(String),
    /// No daemon answers, or it is shutting down or busy.
    Unavailable(String),
    /// Something that should not happen (a runtime that cannot start, an unexpected answer).
    Software(String),
    /// An output could not be written; `None` when there is nothing more to say.
    Io(Option<String>),
    /// The caller may not do this.
    NoPermission(String),
    /// The units directory is invalid.
    Config(Option<String>),
    /// The daemon ended with this exit code; it has logged why.
    Daemon(u8),
}

/// Runs one subcommand.
pub(crate) fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Check {
            units,
            state,
            config_only,
            launchctl,
        } => config::check(
            &units.resolve(),
            (!config_only).then(|| state.resolve()),
            &launchgraph::launchd::Launchctl::new(launchctl),
        ),
        Command::Plan { units, json } => config::plan(&units.resolve(), json),
        Command::Guards {
            units,
            json,
            socket,
        } => config::guards(&units.resolve(), json, &socket.client()),
        Command::Adopt {
            unit,
            dry_run,
            restart,
            units,
            state,
            launchd,
        } => adopt::adopt(
            &unit,
            &units.resolve(),
            &state.resolve(),
            &launchd,
            restart,
            dry_run,
        ),
        Command::Release {
            unit,
            all,
            dry_run,
            force,
            units,
            state,
            launchd,
        } => adopt::release(
            unit.as_deref().filter(|_| !all),
            &units.resolve(),
            &state.resolve(),
            &launchd,
            force,
            dry_run,
        ),
        Command::Up {
            units,
            launchctl,
            console_device,
            state,
            socket,
            admin_group,
            metrics_listen,
            log_file,
            log_format,
        } => {
            let mut config = launchgraph::daemon::UpConfig::default();
            config.supervisor.launchd.launchctl = launchgraph::launchd::Launchctl::new(launchctl);
            config.supervisor.launchd.console =
                launchgraph::launchd::ConsoleUser::new(console_device);
            config.supervisor.state_dir = state.resolve();
            config.socket = socket
                .socket
                .unwrap_or_else(launchgraph::paths::default_socket_path);
            config.admin_group = admin_group;
            config.metrics_listen = metrics_listen;
            daemon::up(&units.resolve(), config, log_file.as_deref(), &log_format)
        }
        Command::Status { unit, json, socket } => control::status(&socket.client(), unit, json),
        Command::Start { unit, socket } => control::act(&socket.client(), Request::Start { unit }),
        Command::Stop { unit, socket } => control::act(&socket.client(), Request::Stop { unit }),
        Command::Restart { unit, socket } => {
            control::act(&socket.client(), Request::Restart { unit })
        }
        Command::Reload { dry_run, socket } => control::reload(&socket.client(), dry_run),
        Command::Events {
            follow,
            json,
            socket,
        } => control::events(&socket.client(), follow, json),
        Command::Metrics { socket } => control::metrics(&socket.client()),
        Command::Guard {
            action,
            target,
            socket,
        } => control::guard(&socket.client(), action, &target),
        Command::Snapshot {
            list,
            units,
            state,
            socket,
        } => {
            let state_dir = state.resolve();
            if list {
                snapshot::list(&state_dir)
            } else {
                let mut opts =
                    launchgraph::snapshot::SnapshotOptions::new(units.resolve(), state_dir);
                opts.socket = Some(socket.client());
                snapshot::take(&opts)
            }
        }
    }
}

/// A current-thread runtime for a command that talks to sockets or runs probes.
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Software(format!("cannot start the runtime: {e}")))
}

/// Writes `text` to stdout. A reader that went away (`| head`) is not a failure.
fn print(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(_) => Err(Failure::Io(None)),
    }
}
