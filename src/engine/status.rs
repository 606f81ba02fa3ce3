//! `status`: each unit as the core sees it now, with the facts of its last transition, as the
//! control protocol carries it ([`UnitStatus`]). Read-only.

use std::time::Instant;

use super::core::{Core, ProbeKind, State};
use super::journal;
use crate::compile::Compiled;
use crate::control::protocol::{ExitRecord, FindingStatus, ProbeStatus, UnitStatus};
use crate::control::render;

/// Every unit's status at `now`; `findings` are the latest preflight findings of each unit.
pub(crate) fn of(
    compiled: &Compiled,
    core: &Core,
    findings: &[Vec<FindingStatus>],
    now: Instant,
) -> Vec<UnitStatus> {
    compiled
        .units
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let slot = core.slot(i);
            let last = slot.last_transition.as_ref();
            let facts = last.map(journal::facts);
            UnitStatus {
                name: u.name.to_string(),
                kind: u.runner.kind().to_string(),
                run_by: match &u.runner {
                    crate::unit::Runner::External(x) => Some(x.run_by.clone()),
                    _ => None,
                },
                state: slot.state.name().to_string(),
                since_secs: now.saturating_duration_since(slot.since).as_secs_f64(),
                reason: last
                    .map(|t| t.reason.code().to_string())
                    .unwrap_or_default(),
                detail: last
                    .zip(facts.as_ref())
                    .map(|(t, f)| render::facts_text(t.to.as_str(), f))
                    .unwrap_or_default(),
                last_transition: facts,
                waiting_on: match &slot.state {
                    State::Waiting { on: Some(r), .. } => Some(compiled.units[*r].name.to_string()),
                    _ => None,
                },
                pid: slot.state.pid(),
                generation: slot.generation,
                last_exit: slot.last_exit.map(|e| {
                    render::exit_text(&ExitRecord {
                        code: e.code,
                        signal: e.signal,
                    })
                }),
                restarts: slot.restarts,
                backoff_remaining_secs: match slot.state {
                    State::Backoff { until, .. } => {
                        Some(until.saturating_duration_since(now).as_secs_f64())
                    }
                    _ => None,
                },
                last_probe: slot.last_probe.as_ref().map(|p| ProbeStatus {
                    kind: match p.kind {
                        ProbeKind::Ready => "ready".into(),
                        ProbeKind::Alive => "alive".into(),
                    },
                    ok: p.ok,
                    latency_ms: p.latency.as_secs_f64() * 1000.0,
                    age_secs: now.saturating_duration_since(p.at).as_secs_f64(),
                    detail: p.detail.clone(),
                }),
                preflight: findings[i].clone(),
            }
        })
        .collect()
}
