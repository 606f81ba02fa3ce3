//! The supervisor: the pure decision [`core`], the [`runtime`] that carries out its effects,
//! and [`up`], what `launchgraph up` runs.

pub mod core;
pub mod journal;
pub mod launchd_run;
pub mod metrics_http;
pub mod runtime;
pub mod upkeep;

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::sync::mpsc;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::compile::compile_dir;
use crate::control::protocol::{ErrorCode, Request, Response};
use crate::control::server::{ControlServer, Incoming, ServerConfig};
use crate::exit;

/// What `launchgraph up` needs besides the units directory.
pub struct UpConfig {
    pub supervisor: runtime::SupervisorConfig,
    /// The control socket (see [`crate::paths::default_socket_path`]).
    pub socket: PathBuf,
    /// The group whose members may act through the socket.
    pub admin_group: Option<String>,
    /// Serve `GET /metrics` on this loopback address.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for UpConfig {
    fn default() -> Self {
        Self {
            supervisor: runtime::SupervisorConfig::default(),
            socket: crate::paths::default_socket_path(),
            admin_group: None,
            metrics_listen: None,
        }
    }
}

/// Compiles `dir` and supervises it until SIGTERM or SIGINT, then stops everything in reverse
/// order. Returns the process exit code.
///
/// The control socket is bound first, so a second daemon refuses to start before it touches
/// any unit. An invalid units directory does not make the daemon exit (under launchd that would
/// be a relaunch every ten seconds, each logging the same errors): every error is logged and
/// given to whoever asks over the socket, and the directory is read again on SIGHUP or
/// `launchgraph reload`. SIGTERM or SIGINT then exits with 78.
pub async fn up(dir: PathBuf, config: UpConfig) -> u8 {
    let (mut term, mut int, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        _ => {
            tracing::error!("cannot install signal handlers");
            return exit::SOFTWARE;
        }
    };
    if let Some(addr) = config.metrics_listen
        && !addr.ip().is_loopback()
    {
        tracing::error!(
            "--metrics-listen {addr}: only a loopback address is allowed (127.0.0.1 or [::1])"
        );
        return exit::USAGE;
    }
    let mut server_config = ServerConfig::new(&config.socket);
    server_config.admin_group = config.admin_group.clone();
    let server = match ControlServer::bind(&server_config) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return exit::CANTCREAT;
        }
    };
    tracing::info!(socket = %config.socket.display(), "control socket ready");
    let server_stop = CancellationToken::new();
    let (incoming_tx, mut incoming) = mpsc::channel::<Incoming>(64);
    let server_task = tokio::spawn(server.serve(incoming_tx, server_stop.clone()));

    // A non-dry `reload` sent while the directory is invalid is answered once it was read.
    let mut answer_after: Option<crate::control::server::Replier> = None;
    let compiled = 'compile: loop {
        match compile_dir(&dir) {
            Ok(c) => {
                if let Some(r) = answer_after.take() {
                    r.send(Response::Reload(all_added(&c, false)));
                }
                break Some(c);
            }
            Err(diags) => {
                let text = diagnostics_text(&diags);
                for d in &diags {
                    tracing::error!("{d}");
                }
                tracing::error!(
                    "{} problem{} in {}; nothing started. Fix them, then send SIGHUP or run `launchgraph reload`",
                    diags.len(),
                    if diags.len() == 1 { "" } else { "s" },
                    dir.display()
                );
                if let Some(r) = answer_after.take() {
                    r.send(Response::Error {
                        code: ErrorCode::InvalidConfiguration,
                        message: text.clone(),
                    });
                }
                loop {
                    tokio::select! {
                        _ = hup.recv() => continue 'compile,
                        _ = term.recv() => break 'compile None,
                        _ = int.recv() => break 'compile None,
                        Some(inc) = incoming.recv() => match inc.request {
                            Request::Reload { dry_run: false } => {
                                answer_after = Some(inc.reply);
                                continue 'compile;
                            }
                            // A dry run reads the directory as it is now, and changes nothing.
                            Request::Reload { dry_run: true } => match compile_dir(&dir) {
                                Ok(c) => inc.reply.send(Response::Reload(all_added(&c, true))),
                                Err(d) => inc.reply.send(Response::Error {
                                    code: ErrorCode::InvalidConfiguration,
                                    message: diagnostics_text(&d),
                                }),
                            },
                            _ => inc.reply.send(Response::Error {
                                code: ErrorCode::InvalidConfiguration,
                                message: format!(
                                    "nothing is running: the units directory is invalid\n{text}"
                                ),
                            }),
                        }
                    }
                }
            }
        }
    };
    let Some(compiled) = compiled else {
        server_stop.cancel();
        let _ = server_task.await;
        return exit::CONFIG;
    };
    let shutdown = CancellationToken::new();
    let (control_tx, control_rx) = mpsc::channel(64);
    tokio::spawn(bridge(incoming, control_tx.clone()));
    if let Some(addr) = config.metrics_listen {
        match metrics_http::serve(addr, control_tx.clone(), shutdown.clone()).await {
            Ok(bound) => tracing::info!("metrics on http://{bound}/metrics"),
            Err(e) => tracing::error!("--metrics-listen {addr}: {e}"),
        }
    }
    let supervisor = runtime::supervise(compiled, config.supervisor, control_rx, shutdown.clone());
    tokio::pin!(supervisor);
    loop {
        tokio::select! {
            () = &mut supervisor => break,
            _ = term.recv() => {
                tracing::info!(signal = "SIGTERM", "shutdown requested");
                shutdown.cancel();
            }
            _ = int.recv() => {
                tracing::info!(signal = "SIGINT", "shutdown requested");
                shutdown.cancel();
            }
            _ = hup.recv() => {
                tracing::info!(signal = "SIGHUP", "re-reading the units directory");
                reload_on_hup(&control_tx);
            }
        }
    }
    shutdown.cancel();
    server_stop.cancel();
    let _ = server_task.await;
    exit::OK
}

/// Hands each request from the socket to the supervisor, and its answer back.
async fn bridge(
    mut incoming: mpsc::Receiver<Incoming>,
    control: mpsc::Sender<runtime::ControlRequest>,
) {
    while let Some(inc) = incoming.recv().await {
        let request = inc.request;
        if let Request::Events { .. } = request {
            // The ring is replayed first, so the stream holds at least all of it.
            let reply = inc.reply.stream(runtime::EVENT_RING + 64);
            if control
                .send(runtime::ControlRequest { request, reply })
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        let (reply, mut answer) = mpsc::channel(1);
        if control
            .send(runtime::ControlRequest { request, reply })
            .await
            .is_err()
        {
            return;
        }
        let replier = inc.reply;
        tokio::spawn(async move {
            if let Some(r) = answer.recv().await {
                replier.send(r);
            }
        });
    }
}

/// SIGHUP is `launchgraph reload`: the answer is logged rather than sent anywhere.
fn reload_on_hup(control: &tokio::sync::mpsc::Sender<runtime::ControlRequest>) {
    use crate::control::protocol::{Request, Response};
    let (reply, mut answer) = tokio::sync::mpsc::channel(1);
    let request = runtime::ControlRequest {
        request: Request::Reload { dry_run: false },
        reply,
    };
    if control.try_send(request).is_err() {
        tracing::warn!("cannot reload now: the supervisor is busy");
        return;
    }
    tokio::spawn(async move {
        // A refusal was logged, with every error, where it was decided.
        if let Some(Response::Reload(r)) = answer.recv().await {
            tracing::info!(
                "reload: added {:?}, removed {:?}, changed {:?}, cycled {:?}",
                r.added,
                r.removed,
                r.changed,
                r.cycled
            );
        }
    });
}

fn diagnostics_text(diags: &[crate::diag::Diagnostic]) -> String {
    diags
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The reload report of a first valid configuration: every unit is new.
fn all_added(
    c: &crate::compile::Compiled,
    dry_run: bool,
) -> crate::control::protocol::ReloadReport {
    crate::control::protocol::ReloadReport {
        dry_run,
        added: c.units.iter().map(|u| u.name.to_string()).collect(),
        ..Default::default()
    }
}
