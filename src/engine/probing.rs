//! The probe loops of one run: readiness polled until it passes, liveness polled for as long
//! as the run is ready. Each attempt's outcome is reported as an [`Event::ProbeReported`]
//! carrying the run's generation; the loop ends when its token is cancelled (the core's
//! `StopProbes`). Probes are the same for every backend: they look at the service, not at
//! how it was started. What a probe does (TCP, HTTP, a command) is [`crate::probe`]'s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::events::{Event, EventTx, Generation, ProbeKind, UnitId};
use crate::control::render::fmt_ms;
use crate::probe::{Prober, ready_poll_delays};
use crate::unit::Unit;

/// Failures while a unit starts are expected and frequent (every 5 ms at first): the
/// supervisor hears of one at most this often, for status; of a pass at once.
const READY_FAILURE_REPORT_EVERY: Duration = Duration::from_millis(250);

/// Starts the `kind` probe loop of run `generation` of `unit` (index `id`), until `token` is
/// cancelled or, for readiness, the probe passes.
pub(crate) fn start(
    prober: Arc<Prober>,
    unit: Arc<Unit>,
    id: UnitId,
    generation: Generation,
    kind: ProbeKind,
    token: CancellationToken,
    tx: EventTx,
) {
    tokio::spawn(async move {
        let (probe, interval, timeout) = match kind {
            ProbeKind::Ready => match &unit.ready {
                Some(r) => (&r.probe, r.interval, r.timeout),
                None => return,
            },
            ProbeKind::Alive => match &unit.alive {
                Some(a) => (&a.probe, a.interval, a.timeout),
                None => return,
            },
        };
        let report = |ok: bool, latency: Duration, detail: String| {
            let _ = tx.send(Event::ProbeReported {
                unit: id,
                generation,
                kind,
                ok,
                latency,
                detail,
            });
        };
        match kind {
            // Fast at first, so that dependents start within milliseconds of readiness; then
            // backing off to `interval`.
            ProbeKind::Ready => {
                let mut last_failure_report: Option<Instant> = None;
                for delay in ready_poll_delays(interval) {
                    tokio::select! {
                        () = token.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    let outcome = tokio::select! {
                        () = token.cancelled() => return,
                        o = prober.run(probe, timeout) => o,
                    };
                    if outcome.ok {
                        report(true, outcome.latency, outcome.detail);
                        return;
                    }
                    if last_failure_report.is_none_or(|t| t.elapsed() >= READY_FAILURE_REPORT_EVERY)
                    {
                        last_failure_report = Some(Instant::now());
                        report(false, outcome.latency, outcome.detail);
                    }
                }
            }
            ProbeKind::Alive => loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(interval) => {}
                }
                let outcome = tokio::select! {
                    () = token.cancelled() => return,
                    o = prober.run(probe, timeout) => o,
                };
                if !outcome.ok {
                    tracing::warn!(
                        "{}: liveness probe failed in {}: {}",
                        unit.name,
                        fmt_ms(outcome.latency.as_secs_f64() * 1000.0),
                        outcome.detail
                    );
                }
                report(outcome.ok, outcome.latency, outcome.detail);
            },
        }
    });
}
