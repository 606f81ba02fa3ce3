//! The probe loops of one run: readiness polled until it passes, liveness polled for as long
//! as the run is ready. Each attempt's outcome is reported as an [`Event::ProbeReported`]
//! carrying the run's generation; the loop ends when its token is cancelled (the core's
//! `StopProbes`). Probes are the same for every backend: they look at the service, not at
//! how it was started. What a probe does (TCP, HTTP, a command) is [`crate::probe`]'s.
//!
//! A readiness probe of a loopback port that passes is not taken at its word: the listener it
//! reached may be another process's (Ollama.app holding 127.0.0.1:11434 while the unit's own
//! server fails on "address already in use"). Before the pass is reported, the loop looks up
//! who holds the port ([`crate::listener`]) and reports a failure naming them
//! (`PORT_HELD_BY_OTHER`) when none of them belongs to the run. The lookup runs here, off the
//! supervisor's task, only on a passing attempt, and at most once per `interval` while the
//! stranger stays; a lookup that cannot tell leaves the pass as it was.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::events::{
    Event, EventTx, Generation, ProbeKind, RunPid, TaskWatch, UnitId, WatchedTask,
};
use super::fine_timer::FineTimer;
use crate::control::render::fmt_ms;
use crate::listener::{self, Ownership};
use crate::probe::{
    Prober, READY_POLL_CROWDED, READY_POLL_FAST, READY_POLL_FAST_FOR, ready_poll_delays_every,
};
use crate::reason::Reason;
use crate::unit::Unit;

/// Failures while a unit starts are expected and frequent (every millisecond at first): the
/// supervisor hears of one at most this often, for status; of a pass at once.
const READY_FAILURE_REPORT_EVERY: Duration = Duration::from_millis(250);

/// How many units may poll readiness every [`READY_POLL_FAST`] at once. A refused attempt
/// costs tens of microseconds of CPU, more when the other loopback family is tried too: a
/// few units at 0.5 ms are cheap (four of them make as many attempts as eight did at 1 ms), a
/// whole graph starting at once would take the machine. The others poll every
/// [`READY_POLL_CROWDED`].
const FAST_POLLERS: usize = 4;

/// Units polling every [`READY_POLL_FAST`] now.
static FAST_POLLING: AtomicUsize = AtomicUsize::new(0);

/// One of the [`FAST_POLLERS`] places, given back when dropped.
struct FastPoll;

impl FastPoll {
    fn take() -> Option<Self> {
        FAST_POLLING
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < FAST_POLLERS).then_some(n + 1)
            })
            .ok()
            .map(|_| FastPoll)
    }
}

impl Drop for FastPoll {
    fn drop(&mut self) {
        FAST_POLLING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Starts the `kind` probe loop of run `generation` of `unit` (index `id`), until `token` is
/// cancelled or, for readiness, the probe passes. A passing readiness probe's listener is
/// checked against `pid`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start(
    prober: Arc<Prober>,
    unit: Arc<Unit>,
    id: UnitId,
    generation: Generation,
    kind: ProbeKind,
    pid: RunPid,
    token: CancellationToken,
    tx: EventTx,
) {
    tokio::spawn(async move {
        let _watch = TaskWatch::new(
            &tx,
            id,
            unit.name.as_str(),
            generation,
            WatchedTask::Probe(kind),
        );
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
                let mut holder = HolderCheck::default();
                let started = Instant::now();
                let mut fast = FastPoll::take();
                let every = match fast {
                    Some(_) => READY_POLL_FAST,
                    None => READY_POLL_CROWDED,
                };
                // Attempts keep their cadence: each is due `delay` after the previous one was
                // due, not after it ended, so a 0.5 ms poll tries twice a millisecond (a sleep
                // after each attempt would add the attempt and the timer's rounding, nearly
                // doubling the time to notice readiness). An attempt
                // that overran starts the next one at once, never a burst.
                // tokio's timer counts whole milliseconds: the fast phase's half millisecond
                // needs a finer one.
                let mut timer = FineTimer::new();
                let mut due = tokio::time::Instant::now();
                for delay in ready_poll_delays_every(every, interval) {
                    // The place is for the fast phase only.
                    if fast.is_some() && started.elapsed() >= READY_POLL_FAST_FOR {
                        fast = None;
                    }
                    due = due
                        .checked_add(delay)
                        .unwrap_or(due)
                        .max(tokio::time::Instant::now());
                    tokio::select! {
                        () = token.cancelled() => return,
                        () = timer.sleep_until(due) => {}
                    }
                    let outcome = tokio::select! {
                        () = token.cancelled() => return,
                        o = prober.run(probe, timeout) => o,
                    };
                    let mut detail = outcome.detail;
                    let mut ok = outcome.ok;
                    if ok
                        && let Some(addr) = listener::loopback_target(probe)
                        && let Some(held) =
                            holder.check(&unit, generation, addr, pid, interval).await
                    {
                        ok = false;
                        detail = format!("{detail}, but {held}");
                    }
                    if ok {
                        report(true, outcome.latency, detail);
                        return;
                    }
                    if last_failure_report.is_none_or(|t| t.elapsed() >= READY_FAILURE_REPORT_EVERY)
                    {
                        last_failure_report = Some(Instant::now());
                        report(false, outcome.latency, detail);
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

/// The runs whose `PORT_HELD_BY_OTHER` warning was logged, by unit name: a launchd job's
/// readiness probe starts again with each relaunch, within one run, and the warning is once
/// per run.
static WARNED: Mutex<BTreeMap<String, Generation>> = Mutex::new(BTreeMap::new());

/// Whether this is the first warning of run `generation` of `unit`.
fn first_warning(unit: &str, generation: Generation) -> bool {
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    match warned.get_mut(unit) {
        Some(g) if *g == generation => false,
        Some(g) => {
            *g = generation;
            true
        }
        None => {
            warned.insert(unit.to_owned(), generation);
            true
        }
    }
}

/// The check of who holds the port a passing readiness probe reached, over one probe loop.
#[derive(Default)]
struct HolderCheck {
    /// The last lookup's time and what it found held by others (`None`: nothing against).
    last: Option<(Instant, Option<String>)>,
    /// The fallback was logged.
    said_unknown: bool,
}

impl HolderCheck {
    /// `Some(why)` when the listener at `addr` is held by processes outside the run of main
    /// process `pid`: the probe must count as failed. Looked up at most once per `every`;
    /// in between, the last verdict stands.
    async fn check(
        &mut self,
        unit: &Unit,
        generation: Generation,
        addr: std::net::SocketAddr,
        pid: RunPid,
        every: Duration,
    ) -> Option<String> {
        if let Some((at, verdict)) = &self.last
            && at.elapsed() < every
        {
            return verdict.clone();
        }
        let (found, whose) = match pid {
            RunPid::Known(pid) => {
                let mut whose =
                    format!("the unit's process (pid {pid}), its group or its descendants");
                let found = listener::ownership(addr, pid).await;
                if matches!(found, Ownership::Other(_)) && listener::other_netns(pid) == Some(true)
                {
                    whose.push_str(
                        " (the unit's process is in another network namespace: its listeners \
                         are not visible here, and the probe reaches this namespace's loopback)",
                    );
                }
                (found, whose)
            }
            // launchd is relaunching the job: it has no process, so whoever answers is
            // someone else.
            RunPid::Relaunching => (
                match listener::serving_holders(addr).await {
                    Ok(holders) => Ownership::Other(holders),
                    Err(why) => Ownership::Unknown(why),
                },
                "the job, which has no process while launchd relaunches it".to_owned(),
            ),
            RunPid::Unknown => (
                Ownership::Unknown("the run's pid is not known".to_owned()),
                String::new(),
            ),
        };
        let verdict = match found {
            Ownership::Unit => None,
            Ownership::Other(holders) => {
                let held = listener::list(&holders);
                if first_warning(unit.name.as_str(), generation) {
                    tracing::warn!(
                        reason = %Reason::PortHeldByOther,
                        "{}: readiness probe of {addr} answered by {held}, not by {whose}; not \
                         marked ready while it holds the port",
                        unit.name,
                    );
                }
                Some(format!(
                    "{}: {addr} is held by {held}, not by {whose}",
                    Reason::PortHeldByOther
                ))
            }
            Ownership::Unknown(why) => {
                if !std::mem::replace(&mut self.said_unknown, true) {
                    tracing::debug!(
                        "{}: {addr} answered; who holds it cannot be told ({why}): taken as \
                         the unit's",
                        unit.name
                    );
                }
                None
            }
        };
        self.last = Some((Instant::now(), verdict.clone()));
        verdict
    }
}
