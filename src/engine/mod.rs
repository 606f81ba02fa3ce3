//! The supervisor: the pure decision [`core`], the [`runtime`] that carries out its effects,
//! and [`up`], what `launchgraph up` runs.

pub mod core;
pub mod launchd_run;
pub mod runtime;
pub mod upkeep;

use std::path::PathBuf;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::compile::compile_dir;
use crate::exit;

/// Compiles `dir` and supervises it until SIGTERM or SIGINT, then stops everything in reverse
/// order. Returns the process exit code.
///
/// An invalid units directory does not make the daemon exit (under launchd that would be a
/// relaunch every ten seconds, each logging the same errors): every error is logged, and the
/// directory is read again on SIGHUP. SIGTERM or SIGINT then exits with 78.
pub async fn up(dir: PathBuf, config: runtime::SupervisorConfig) -> u8 {
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
    let compiled = loop {
        match compile_dir(&dir) {
            Ok(c) => break c,
            Err(diags) => {
                for d in &diags {
                    tracing::error!(reason = "CONFIG_INVALID", "{d}");
                }
                tracing::error!(
                    "{} problem{} in {}; nothing started. Fix them, then send SIGHUP to read the directory again",
                    diags.len(),
                    if diags.len() == 1 { "" } else { "s" },
                    dir.display()
                );
                tokio::select! {
                    _ = hup.recv() => continue,
                    _ = term.recv() => return exit::CONFIG,
                    _ = int.recv() => return exit::CONFIG,
                }
            }
        }
    };
    let shutdown = CancellationToken::new();
    let (control_tx, control_rx) = tokio::sync::mpsc::channel(64);
    let supervisor = runtime::supervise(compiled, config, control_rx, shutdown.clone());
    tokio::pin!(supervisor);
    loop {
        tokio::select! {
            () = &mut supervisor => return exit::OK,
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
