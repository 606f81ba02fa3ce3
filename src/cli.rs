//! The CLI verbs that talk to a running daemon over its control socket: `status`, `start`,
//! `stop`, `restart`, `reload`, `events`, `metrics`. Each prints what it got and returns a
//! documented exit code; when no daemon runs, each says so in one line (exit 69).

use std::io::Write;
use std::path::Path;

use launchgraph::control::client::{self, ClientError};
use launchgraph::control::protocol::{ErrorCode, Request, Response};
use launchgraph::control::render;
use launchgraph::exit;

fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()
}

/// One request, one response.
fn ask(socket: &Path, request: Request) -> Result<Response, u8> {
    let Some(rt) = runtime() else {
        eprintln!("launchgraph: cannot start the runtime");
        return Err(exit::SOFTWARE);
    };
    rt.block_on(client::request(socket, request))
        .map_err(|e| client_error(&e))
}

fn client_error(e: &ClientError) -> u8 {
    eprintln!("launchgraph: {e}");
    match e {
        ClientError::NotRunning { .. } => exit::UNAVAILABLE,
        ClientError::PermissionDenied { .. } => exit::NOPERM,
        _ => exit::IO,
    }
}

/// An error the daemon answered: printed, mapped to an exit code.
fn daemon_error(code: ErrorCode, message: &str) -> u8 {
    eprintln!("launchgraph: {message}");
    match code {
        ErrorCode::PermissionDenied => exit::NOPERM,
        ErrorCode::UnknownUnit => exit::USAGE,
        ErrorCode::InvalidConfiguration => exit::CONFIG,
        ErrorCode::ShuttingDown | ErrorCode::Busy => exit::UNAVAILABLE,
        _ => exit::SOFTWARE,
    }
}

fn unexpected(r: &Response) -> u8 {
    eprintln!("launchgraph: unexpected answer from the daemon: {r:?}");
    exit::SOFTWARE
}

fn print(text: &str) -> u8 {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()) {
        Ok(()) => exit::OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
        Err(_) => exit::IO,
    }
}

pub fn status(socket: &Path, unit: Option<String>, json: bool) -> u8 {
    match ask(socket, Request::Status { unit }) {
        Ok(Response::Status { units }) => {
            if json {
                let v = serde_json::json!({ "units": units });
                print(&format!("{v:#}\n"))
            } else {
                print(&render::status_table(&units, render::use_color()))
            }
        }
        Ok(Response::Error { code, message }) => daemon_error(code, &message),
        Ok(other) => unexpected(&other),
        Err(code) => code,
    }
}

pub fn act(socket: &Path, request: Request) -> u8 {
    match ask(socket, request) {
        Ok(Response::Done { message }) => print(&format!("{message}\n")),
        Ok(Response::Error { code, message }) => daemon_error(code, &message),
        Ok(other) => unexpected(&other),
        Err(code) => code,
    }
}

pub fn reload(socket: &Path, dry_run: bool) -> u8 {
    match ask(socket, Request::Reload { dry_run }) {
        Ok(Response::Reload(report)) => print(&render::reload_report(&report)),
        Ok(Response::Error { code, message }) => daemon_error(code, &message),
        Ok(other) => unexpected(&other),
        Err(code) => code,
    }
}

pub fn metrics(socket: &Path) -> u8 {
    match ask(socket, Request::Metrics) {
        Ok(Response::Metrics { text }) => print(&text),
        Ok(Response::Error { code, message }) => daemon_error(code, &message),
        Ok(other) => unexpected(&other),
        Err(code) => code,
    }
}

pub fn events(socket: &Path, follow: bool, json: bool) -> u8 {
    let Some(rt) = runtime() else {
        return exit::SOFTWARE;
    };
    rt.block_on(async {
        let mut rx = match client::stream(socket, Request::Events { follow }).await {
            Ok(rx) => rx,
            Err(e) => return client_error(&e),
        };
        while let Some(item) = rx.recv().await {
            let line = match item {
                Ok(Response::Event(e)) => {
                    if json {
                        serde_json::to_string(&e).unwrap_or_default()
                    } else {
                        render::event_line(&e)
                    }
                }
                Ok(Response::Error { code, message }) => return daemon_error(code, &message),
                Ok(other) => return unexpected(&other),
                Err(e) => return client_error(&e),
            };
            if print(&format!("{line}\n")) != exit::OK {
                return exit::IO;
            }
        }
        exit::OK
    })
}

pub fn snapshot(opts: &launchgraph::snapshot::SnapshotOptions) -> u8 {
    let Some(rt) = runtime() else {
        return exit::SOFTWARE;
    };
    match rt.block_on(launchgraph::snapshot::take(opts)) {
        Ok(snap) => {
            for w in &snap.warnings {
                eprintln!("launchgraph: snapshot: {w}");
            }
            print(&format!(
                "{} ({} entries)\n",
                snap.path.display(),
                snap.entries.len()
            ))
        }
        Err(e) => {
            eprintln!("launchgraph: snapshot: {e}");
            exit::IO
        }
    }
}

pub fn snapshot_list(state_dir: &Path) -> u8 {
    match launchgraph::snapshot::list(state_dir) {
        Ok(all) => {
            let mut out = String::new();
            for (path, size, _) in all {
                out.push_str(&format!("{}  {size} bytes\n", path.display()));
            }
            print(&out)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => exit::OK,
        Err(e) => {
            eprintln!(
                "launchgraph: cannot list snapshots in {}: {e}",
                state_dir.display()
            );
            exit::IO
        }
    }
}
