//! What is checked around a start: preflight before every start, who already holds the port
//! an `exec` unit's readiness probe dials, and the fingerprint of what ran once a unit is
//! ready.
//!
//! A failed preflight is not a crash: the start is deferred with `PREFLIGHT_FAILED` and tried
//! again when a file the unit depends on changes (see [`super::watch`]) or after
//! [`PREFLIGHT_RETRY`] in case a change was missed. Shortly after a unit becomes ready (once
//! the starts its readiness released are made), its fingerprint is taken, compared with the
//! last good one (each difference logged, e.g.
//! `openclaw 2026.9.6 -> 2026.10.1`), and stored atomically.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::fingerprint::{self, Fingerprint};
use crate::listener;
use crate::preflight::{self, Finding, PreflightContext};
use crate::reason::Reason;
use crate::unit::Unit;

/// How long after a unit became ready its fingerprint is taken: long after the starts of its
/// dependents, which take a millisecond or two each, and soon enough for an operator.
const FINGERPRINT_AFTER_READY: Duration = Duration::from_millis(100);

/// How long a unit blocked by preflight waits before it is checked again without a file event.
pub(crate) const PREFLIGHT_RETRY: Duration = Duration::from_secs(60);

/// The findings that block a start, as one line for the log and status; `None` when the
/// start may go ahead. Warnings are logged here, once per start.
pub(crate) fn gate(unit: &Unit, ctx: &PreflightContext) -> Option<String> {
    let findings = preflight::preflight(unit, ctx);
    for f in findings.iter().filter(|f| !f.blocks_start()) {
        tracing::warn!("{}: preflight {}", unit.name, one_line(f));
    }
    let blocking: Vec<String> = findings
        .iter()
        .filter(|f| f.blocks_start())
        .map(one_line)
        .collect();
    (!blocking.is_empty()).then(|| blocking.join("; "))
}

fn one_line(f: &Finding) -> String {
    let mut s = format!("{} {}", f.code, f.message);
    if !f.fix.is_empty() {
        s.push_str(&format!(" (fix: {})", f.fix));
    }
    s
}

/// Warns (`PORT_HELD_BY_OTHER`) when the loopback port `addr` that `unit`'s readiness probe
/// dials is already held by a process that is not launchgraph's nor one of its descendants
/// (its `exec` units and their children), or is held on the other loopback family only. The
/// start goes on whatever this finds: the unit then fails with "address already in use" and
/// says so itself. Run beside the start, off the owner's task; a lookup failure is a debug
/// line.
pub(crate) async fn warn_if_port_held(unit: String, addr: SocketAddr) {
    let found = match listener::listeners(addr.port()).await {
        Ok(found) => listener::view(found, addr),
        Err(e) => {
            tracing::debug!("{unit}: who holds {addr} before its start is unknown: {e}");
            return;
        }
    };
    let me = std::process::id();
    let Ok((serving, other_family)) =
        tokio::task::spawn_blocking(move || listener::strangers(&found, me)).await
    else {
        return;
    };
    if !serving.is_empty() {
        tracing::warn!(
            reason = %Reason::PortHeldByOther,
            "{unit}: before its start, {addr} is already held by {}, outside launchgraph's \
             units: the unit cannot listen there, and its readiness is refused while it is \
             held",
            listener::describe(&serving)
        );
    } else if !other_family.is_empty() {
        tracing::warn!(
            reason = %Reason::PortHeldByOther,
            "{unit}: before its start, port {} is held on the other address family only, {}; \
             its readiness probe dials {addr}",
            addr.port(),
            listener::describe(&other_family)
        );
    }
}

/// Takes the fingerprint of a unit that just became ready, logs what drifted since the last
/// good run, and stores it, off the owner's thread: reading, hashing and the synced write
/// are one job on the blocking pool (two, with `<node> --version` between them, for a unit
/// that runs node). A fingerprint the same as the stored one but for its time is not written
/// again: the stored one keeps the time that content was first seen ready.
pub(crate) async fn record_fingerprint(unit: Arc<Unit>, ctx: PreflightContext, state_dir: PathBuf) {
    // The starts this readiness released go first: the fingerprint is bookkeeping, and run at
    // once it took a CPU for milliseconds just as the dependents were being spawned (on a
    // 2-CPU machine the kernel put a new dependent behind it, up to 3 ms later).
    tokio::time::sleep(FINGERPRINT_AFTER_READY).await;
    let job = {
        let (unit, ctx, state_dir) = (Arc::clone(&unit), ctx.clone(), state_dir.clone());
        tokio::task::spawn_blocking(move || {
            let (fp, target) = fingerprint::take_files(&unit, &ctx);
            if fingerprint::asks_node(&target) {
                return Some((fp, target));
            }
            compare_and_store(&unit, &state_dir, &fp);
            None
        })
    };
    let Ok(Some((mut fp, target))) = job.await else {
        return;
    };
    fp.node_version = fingerprint::take_node_version(&target, &ctx).await;
    let _ = tokio::task::spawn_blocking(move || compare_and_store(&unit, &state_dir, &fp)).await;
}

/// Logs the drift from the stored fingerprint to `now`, and stores `now` unless it says the
/// same. Blocks.
fn compare_and_store(unit: &Unit, state_dir: &Path, now: &Fingerprint) {
    match fingerprint::load(state_dir, unit.name.as_str()) {
        Ok(Some(old)) => {
            for line in fingerprint::drift(&old, now) {
                tracing::info!("{}: changed since the last good run: {line}", unit.name);
            }
            if fingerprint::same_apart_from_time(&old, now) {
                return;
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("{}: cannot read its last fingerprint: {e}", unit.name),
    }
    if let Err(e) = fingerprint::store(state_dir, now) {
        tracing::warn!(
            "{}: cannot store its fingerprint in {}: {e}",
            unit.name,
            state_dir.display()
        );
    }
}
