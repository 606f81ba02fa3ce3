//! The verbs that talk to a running daemon over its control socket: `status`, `start`, `stop`,
//! `restart`, `reload`, `events`, `metrics`. Each prints what it got; when no daemon runs, it
//! says so in one line (exit 69).

use std::path::Path;

use launchgraph::control::client::{self, ClientError};
use launchgraph::control::protocol::{ErrorCode, ForceTo, GuardStatus, Request, Response};
use launchgraph::control::render;

use super::{Failure, print, runtime};

/// One request, one response.
fn ask(socket: &Path, request: Request) -> Result<Response, Failure> {
    runtime()?
        .block_on(client::request(socket, request))
        .map_err(client_error)
}

fn client_error(e: ClientError) -> Failure {
    let message = e.to_string();
    match e {
        ClientError::NotRunning { .. } => Failure::Unavailable(message),
        ClientError::PermissionDenied { .. } => Failure::NoPermission(message),
        _ => Failure::Io(Some(message)),
    }
}

/// An error the daemon answered.
fn daemon_error(code: ErrorCode, message: String) -> Failure {
    match code {
        ErrorCode::PermissionDenied => Failure::NoPermission(message),
        ErrorCode::UnknownUnit | ErrorCode::UnknownGuard | ErrorCode::NotApplicable => {
            Failure::Usage(message)
        }
        ErrorCode::InvalidConfiguration => Failure::Config(Some(message)),
        ErrorCode::ShuttingDown | ErrorCode::Busy => Failure::Unavailable(message),
        _ => Failure::Software(message),
    }
}

fn unexpected(r: &Response) -> Failure {
    Failure::Software(format!("unexpected answer from the daemon: {r:?}"))
}

pub(crate) fn status(socket: &Path, unit: Option<String>, json: bool) -> Result<(), Failure> {
    match ask(socket, Request::Status { unit })? {
        Response::Status { units } => {
            if json {
                let v = serde_json::json!({ "units": units });
                print(&format!("{v:#}\n"))
            } else {
                print(&render::status_table(&units, render::use_color()))
            }
        }
        Response::Error { code, message } => Err(daemon_error(code, message)),
        other => Err(unexpected(&other)),
    }
}

pub(crate) fn act(socket: &Path, request: Request) -> Result<(), Failure> {
    match ask(socket, request)? {
        Response::Done { message } => print(&format!("{message}\n")),
        Response::Error { code, message } => Err(daemon_error(code, message)),
        other => Err(unexpected(&other)),
    }
}

pub(crate) fn reload(socket: &Path, dry_run: bool) -> Result<(), Failure> {
    match ask(socket, Request::Reload { dry_run })? {
        Response::Reload(report) => print(&render::reload_report(&report)),
        Response::Error { code, message } => Err(daemon_error(code, message)),
        other => Err(unexpected(&other)),
    }
}

pub(crate) fn metrics(socket: &Path) -> Result<(), Failure> {
    match ask(socket, Request::Metrics)? {
        Response::Metrics { text } => print(&text),
        Response::Error { code, message } => Err(daemon_error(code, message)),
        other => Err(unexpected(&other)),
    }
}

pub(crate) fn events(socket: &Path, follow: bool, json: bool) -> Result<(), Failure> {
    runtime()?.block_on(async {
        let mut rx = client::stream(socket, Request::Events { follow })
            .await
            .map_err(client_error)?;
        while let Some(item) = rx.recv().await {
            let line = match item.map_err(client_error)? {
                Response::Event(e) => {
                    if json {
                        serde_json::to_string(&e).unwrap_or_default()
                    } else {
                        render::event_line(&e)
                    }
                }
                Response::Error { code, message } => return Err(daemon_error(code, message)),
                other => return Err(unexpected(&other)),
            };
            print(&format!("{line}\n"))?;
        }
        Ok(())
    })
}

/// Each guard's and switch's state now, as the daemon on `socket` reports it, for the
/// runbook's live columns; `None`, with the reason, when no daemon answers there.
pub(crate) fn guard_states(socket: &Path) -> Result<Vec<GuardStatus>, String> {
    let Ok(rt) = runtime() else {
        return Err("cannot start the runtime".to_owned());
    };
    let answer = rt.block_on(client::request(socket, Request::Guards));
    match answer {
        Ok(Response::Guards { guards }) => Ok(guards),
        Ok(Response::Error { message, .. }) => Err(message),
        Ok(other) => Err(format!("unexpected answer: {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// `guard trip|clear UNIT/GUARD`.
pub(crate) fn guard(
    socket: &Path,
    action: crate::cli::GuardAction,
    target: &str,
) -> Result<(), Failure> {
    let Some((unit, guard)) = target.split_once('/') else {
        return Err(Failure::Usage(format!(
            "{target:?}: expected UNIT/GUARD, e.g. ollama/disk"
        )));
    };
    let to = match action {
        crate::cli::GuardAction::Trip => ForceTo::Trip,
        crate::cli::GuardAction::Clear => ForceTo::Clear,
    };
    act(
        socket,
        Request::GuardForce {
            unit: unit.to_owned(),
            guard: guard.to_owned(),
            to,
        },
    )
}
