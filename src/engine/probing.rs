//! The probe loops of one run: readiness polled until it passes, liveness polled for as long
//! as the run is ready, on a grid all units share (`alive_due`), timed by one clock for all
//! of them ([`super::grid_clock`]). Each attempt's outcome is reported as an
//! [`Event::ProbeReported`] carrying the run's generation; the loop ends when its token is
//! cancelled (the core's `StopProbes`). Probes are the same for every backend: they look at
//! the service, not at how it was started. What a probe does (TCP, HTTP, a command) is
//! [`crate::probe`]'s.
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
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::events::{
    Event, EventTx, Generation, ProbeKind, RunPid, TaskWatch, UnitId, WatchedTask,
};
use super::fine_timer::FineTimer;
use super::grid_clock::GridClock;
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
/// checked against `pid`. Liveness waits for its grid points on `clock`, the one every
/// liveness loop shares.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start(
    prober: Arc<Prober>,
    clock: GridClock,
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
        let mut first_alive = true;
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
                let due = alive_due(
                    alive_grid_origin(),
                    tokio::time::Instant::now(),
                    interval,
                    first_alive,
                );
                first_alive = false;
                tokio::select! {
                    () = token.cancelled() => return,
                    () = clock.sleep_until(due) => {}
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

/// Where every liveness grid starts: the first liveness probe loop's start, in this process.
fn alive_grid_origin() -> tokio::time::Instant {
    static ORIGIN: OnceLock<tokio::time::Instant> = OnceLock::new();
    *ORIGIN.get_or_init(tokio::time::Instant::now)
}

/// When the next liveness probe of a loop probing every `interval` is due, at `now`.
///
/// Liveness probes run on one grid per interval, counted from `origin` (the same for every
/// unit): the probes of all units with the same interval, or with intervals that are multiples
/// of one another, come due at the same instants, and an idle daemon wakes once for all of them
/// instead of once per unit, at random phases (as launchd and the kernel coalesce timers:
/// <https://developer.apple.com/library/archive/documentation/Performance/Conceptual/power_efficiency_guidelines_osx/Timers.html>).
/// A run's `first` probe is due on the first grid point at least half an interval after `now`
/// (so it comes `interval` after readiness on average, never sooner than half of it); the
/// next ones on the first grid point after `now`, which is one interval after the previous
/// probe, or, after a probe that overran its interval, the next point after its end: never a
/// burst of probes to catch up.
fn alive_due(
    origin: tokio::time::Instant,
    now: tokio::time::Instant,
    interval: Duration,
    first: bool,
) -> tokio::time::Instant {
    // Durations are validated positive; a zero one would divide by zero.
    let period = interval.as_nanos().max(1);
    let earliest = if first {
        now.checked_add(interval / 2).unwrap_or(now)
    } else {
        now
    };
    let since = earliest.saturating_duration_since(origin).as_nanos();
    // The first grid point at or after `earliest`, or strictly after `now` for the next ones.
    let mut points = since.div_ceil(period);
    if !first && points * period == since {
        points += 1;
    }
    let offset = points.saturating_mul(period);
    u64::try_from(offset)
        .ok()
        .and_then(|ns| origin.checked_add(Duration::from_nanos(ns)))
        .unwrap_or_else(|| earliest.checked_add(interval).unwrap_or(earliest))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(origin: tokio::time::Instant, ms: u64) -> tokio::time::Instant {
        origin + Duration::from_millis(ms)
    }

    #[test]
    fn liveness_probes_fall_on_one_grid_per_interval() {
        let origin = tokio::time::Instant::now();
        let s5 = Duration::from_secs(5);
        // (now, first, due), in ms from the origin, for a 5 s interval.
        let cases = [
            // A first probe: the first point at least half an interval away.
            (0, true, 5_000),
            (100, true, 5_000),
            (2_500, true, 5_000),
            (2_501, true, 10_000),
            (4_999, true, 10_000),
            (5_000, true, 10_000),
            // The next ones: the first point strictly after now.
            (5_000, false, 10_000),
            (5_003, false, 10_000),
            (9_999, false, 10_000),
            // A probe that overran past a point: the next point, no catching up.
            (12_000, false, 15_000),
            (24_000, false, 25_000),
        ];
        for (now, first, due) in cases {
            assert_eq!(
                alive_due(origin, at(origin, now), s5, first),
                at(origin, due),
                "now {now} ms, first {first}"
            );
        }
    }

    #[test]
    fn units_ready_at_different_times_probe_together() {
        let origin = tokio::time::Instant::now();
        let s5 = Duration::from_secs(5);
        let s10 = Duration::from_secs(10);
        // Ready at 1.2 s and 3.4 s: different first points, then one grid.
        let a = alive_due(origin, at(origin, 1_200), s5, true);
        let b = alive_due(origin, at(origin, 3_400), s5, true);
        assert_eq!((a, b), (at(origin, 5_000), at(origin, 10_000)));
        let a2 = alive_due(origin, a + Duration::from_millis(2), s5, false);
        assert_eq!(a2, b);
        // An interval that is a multiple of another falls on its points too.
        let c = alive_due(origin, at(origin, 7_000), s10, true);
        assert_eq!(c, at(origin, 20_000));
        assert_eq!(alive_due(origin, at(origin, 15_001), s5, false), c);
    }

    #[test]
    fn liveness_due_times_never_overflow() {
        let origin = tokio::time::Instant::now();
        let day = Duration::from_secs(24 * 3600);
        let due = alive_due(origin, at(origin, 1), day, true);
        assert_eq!(due, origin + day);
        let tiny = Duration::from_nanos(1);
        let now = at(origin, 7);
        assert!(alive_due(origin, now, tiny, false) > now);
    }
}
