//! The runtime: the imperative shell around the decision core.
//!
//! One task owns the [`Core`] and all state. It turns the core's effects into work (spawning a
//! unit, stopping it, running its probes, arming timers) done in tasks of their own, which
//! report back as [`Event`]s carrying the run's generation number. It also owns the log of
//! transitions, one line each, with repeated lines of a crash loop summarized.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::core::{
    Command, Core, Effect, Event, ExitInfo, Generation, ProbeKind, StateName, Transition, UnitId,
    fmt_ms,
};
use super::launchd_run::{LaunchdContext, run_launchd};
use super::upkeep::{FileWatch, PREFLIGHT_RETRY, gate, record_fingerprint};
use crate::compile::Compiled;
use crate::launchd::{ConsoleUser, Launchctl};
use crate::preflight::PreflightContext;
use crate::probe::{Prober, ready_poll_delays};
use crate::process::{StopOutcome, spawn_unit};
use crate::reason::Reason;
use crate::unit::{Runner, Unit};
use std::path::PathBuf;

/// What `supervise` was asked to stop for.
pub enum Control {
    Command(Command),
}

/// A unit's current run: how to ask it to stop.
struct Run {
    generation: Generation,
    stop: Option<oneshot::Sender<Reason>>,
}

/// How the supervisor reaches the outside world.
#[derive(Clone)]
pub struct SupervisorConfig {
    pub launchd: LaunchdContext,
    /// How preflight sees this host.
    pub preflight: PreflightContext,
    /// Where fingerprints are kept.
    pub state_dir: PathBuf,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            launchd: LaunchdContext {
                launchctl: Launchctl::new("/bin/launchctl"),
                console: ConsoleUser::default(),
            },
            preflight: PreflightContext::host(),
            state_dir: crate::fingerprint::default_state_dir(),
        }
    }
}

/// Runs the supervisor until everything is down after a [`Command::Shutdown`] (sent through
/// `control`, or when `shutdown` is cancelled). Returns when every unit has stopped.
pub async fn supervise(
    compiled: Compiled,
    config: SupervisorConfig,
    mut control: mpsc::UnboundedReceiver<Control>,
    shutdown: CancellationToken,
) {
    if let Err(e) = crate::process::start_reaper() {
        tracing::warn!(error = %e, "cannot reap orphaned grandchildren; they will be reaped by init instead");
    }
    let units = Arc::new(compiled.units.clone());
    let (changed_tx, mut changed_rx) = mpsc::unbounded_channel::<UnitId>();
    let _watch = FileWatch::start(&units, &config.preflight, changed_tx);
    let mut core = Core::new(&compiled, Instant::now(), fastrand::u64(..));
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let prober = Arc::new(Prober::new());
    let mut shell = Shell {
        units: units.clone(),
        config,
        tx,
        prober,
        runs: (0..units.len()).map(|_| None).collect(),
        probes: (0..units.len()).map(|_| None).collect(),
        log: LogLimiter::default(),
    };
    tracing::info!(
        units = units.len(),
        dir = %compiled.dir.display(),
        "starting {} units in dependency order",
        units.len()
    );
    let fx = core.start_all(Instant::now());
    if shell.apply(fx) {
        return;
    }
    let mut shutting_down = false;
    loop {
        let event = tokio::select! {
            biased;
            Some(e) = rx.recv() => e,
            Some(unit) = changed_rx.recv() => {
                // A file the unit depends on changed: say now what a start would meet, and let
                // a unit blocked by preflight try again.
                let u = &units[unit];
                if let Some(blocking) = gate(u, &shell.config.preflight)
                    && core.slot(unit).state.is_running()
                {
                    tracing::warn!("{}: its files changed; its next start would be refused: {blocking}", u.name);
                }
                Event::Retry { unit }
            }
            Some(Control::Command(c)) = control.recv() => Event::Command(c),
            () = shutdown.cancelled(), if !shutting_down => {
                shutting_down = true;
                tracing::info!("stopping every unit in reverse dependency order");
                Event::Command(Command::Shutdown)
            }
        };
        if let Event::Command(Command::Shutdown) = event {
            shutting_down = true;
        }
        let fx = core.handle(event, Instant::now());
        if shell.apply(fx) {
            break;
        }
    }
    shell.log.flush_all();
    tracing::info!("all units stopped");
}

struct Shell {
    units: Arc<Vec<Unit>>,
    config: SupervisorConfig,
    tx: mpsc::UnboundedSender<Event>,
    prober: Arc<Prober>,
    runs: Vec<Option<Run>>,
    probes: Vec<Option<CancellationToken>>,
    log: LogLimiter,
}

impl Shell {
    /// Carries out effects in order; true once the core says everything is down.
    fn apply(&mut self, fx: Vec<Effect>) -> bool {
        let mut exit = false;
        for e in fx {
            match e {
                Effect::Spawn { unit, generation } => self.spawn(unit, generation),
                Effect::Stop {
                    unit,
                    generation,
                    reason,
                } => {
                    if let Some(run) = &mut self.runs[unit]
                        && run.generation == generation
                        && let Some(stop) = run.stop.take()
                    {
                        let _ = stop.send(reason);
                    }
                }
                Effect::StartProbe {
                    unit,
                    generation,
                    kind,
                } => self.start_probe(unit, generation, kind),
                Effect::StopProbes { unit } => {
                    if let Some(token) = self.probes[unit].take() {
                        token.cancel();
                    }
                }
                Effect::SetTimer {
                    unit,
                    generation,
                    timer,
                    at,
                } => {
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep_until(at.into()).await;
                        let _ = tx.send(Event::TimerFired {
                            unit,
                            generation,
                            timer,
                        });
                    });
                }
                Effect::Transition(t) => {
                    self.log.transition(&self.units, &t);
                    if t.to == StateName::Ready {
                        let unit = Arc::new(self.units[t.unit].clone());
                        let ctx = self.config.preflight.clone();
                        let dir = self.config.state_dir.clone();
                        tokio::spawn(record_fingerprint(unit, ctx, dir));
                    }
                }
                Effect::Exit => exit = true,
            }
        }
        exit
    }

    fn spawn(&mut self, unit: UnitId, generation: Generation) {
        let (stop_tx, stop_rx) = oneshot::channel();
        self.runs[unit] = Some(Run {
            generation,
            stop: Some(stop_tx),
        });
        let tx = self.tx.clone();
        let units = self.units.clone();
        let launchd = self.config.launchd.clone();
        let preflight = self.config.preflight.clone();
        tokio::spawn(async move {
            let u = &units[unit];
            // Never start what preflight says is broken: wait, with the reason, instead.
            if let Some(blocking) = gate(u, &preflight) {
                let _ = tx.send(Event::StartDeferred {
                    unit,
                    generation,
                    reason: Reason::PreflightFailed,
                    detail: blocking,
                    retry_after: Some(PREFLIGHT_RETRY),
                });
                return;
            }
            match &u.runner {
                Runner::Exec(spec) => {
                    run_exec(u.name.as_str(), spec, unit, generation, stop_rx, tx).await;
                }
                Runner::Launchd(spec) => {
                    run_launchd(launchd, spec.clone(), unit, generation, stop_rx, tx).await;
                }
            }
        });
    }

    fn start_probe(&mut self, unit: UnitId, generation: Generation, kind: ProbeKind) {
        let token = self.probes[unit]
            .get_or_insert_with(CancellationToken::new)
            .clone();
        let tx = self.tx.clone();
        let prober = self.prober.clone();
        let units = self.units.clone();
        tokio::spawn(async move {
            let u = &units[unit];
            let (probe, interval, timeout) = match kind {
                ProbeKind::Ready => match &u.ready {
                    Some(r) => (&r.probe, r.interval, r.timeout),
                    None => return,
                },
                ProbeKind::Alive => match &u.alive {
                    Some(a) => (&a.probe, a.interval, a.timeout),
                    None => return,
                },
            };
            let report = |ok: bool, latency: Duration, detail: String| {
                let _ = tx.send(Event::ProbeReported {
                    unit,
                    generation,
                    kind,
                    ok,
                    latency,
                    detail,
                });
            };
            match kind {
                // Fast at first, so that dependents start within milliseconds of readiness;
                // then backing off to `interval`.
                ProbeKind::Ready => {
                    for delay in ready_poll_delays(interval) {
                        tokio::select! {
                            () = token.cancelled() => return,
                            () = tokio::time::sleep(delay) => {}
                        }
                        let outcome = tokio::select! {
                            () = token.cancelled() => return,
                            o = prober.run(probe, timeout) => o,
                        };
                        let ok = outcome.ok;
                        report(ok, outcome.latency, outcome.detail);
                        if ok {
                            return;
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
                            u.name,
                            fmt_ms(outcome.latency),
                            outcome.detail
                        );
                    }
                    report(outcome.ok, outcome.latency, outcome.detail);
                },
            }
        });
    }
}

async fn run_exec(
    name: &str,
    spec: &crate::unit::ExecSpec,
    unit: UnitId,
    generation: Generation,
    stop_rx: oneshot::Receiver<Reason>,
    tx: mpsc::UnboundedSender<Event>,
) {
    let mut process = match spawn_unit(spec, name).await {
        Ok(p) => p,
        Err(e) => {
            let _ = tx.send(Event::SpawnFailed {
                unit,
                generation,
                error: e.to_string(),
            });
            return;
        }
    };
    let _ = tx.send(Event::Spawned {
        unit,
        generation,
        pid: Some(process.pid()),
    });
    let exited = process.exited();
    let (report, killed) = tokio::select! {
        report = exited => (report, false),
        Ok(_) = stop_rx => {
            let r = process.stop_as_declared().await;
            (r.exit, r.outcome == StopOutcome::Killed)
        }
    };
    let _ = tx.send(Event::Exited {
        unit,
        generation,
        exit: ExitInfo {
            code: report.code,
            signal: report.signal,
        },
        killed_after_timeout: killed,
    });
}

/// Writes one line per transition, and keeps a crash loop from flooding the log: past
/// [`LogLimiter::BURST`] lines with the same unit, state and reason within
/// [`LogLimiter::WINDOW`], further ones are counted, not written, and a summary line says how
/// many were left out when the window closes.
#[derive(Default)]
struct LogLimiter {
    windows: HashMap<(String, &'static str, Reason), (Instant, u32, u32)>,
}

impl LogLimiter {
    const BURST: u32 = 5;
    const WINDOW: Duration = Duration::from_secs(60);

    fn transition(&mut self, units: &[Unit], t: &Transition) {
        let unit = &units[t.unit];
        let key = (unit.name.as_str().to_owned(), t.to.as_str(), t.reason);
        let now = Instant::now();
        let entry = self.windows.entry(key).or_insert((now, 0, 0));
        if now.duration_since(entry.0) >= Self::WINDOW {
            if entry.2 > 0 {
                summarize(unit.name.as_str(), t.to.as_str(), t.reason, entry.2);
            }
            *entry = (now, 0, 0);
        }
        entry.1 += 1;
        if entry.1 > Self::BURST {
            entry.2 += 1;
            return;
        }
        let mut line = format!("{}: {} -> {} {}", unit.name, t.from, t.to, t.reason);
        if let Some(r) = t.related {
            line.push_str(&format!(" on={}", units[r].name));
        }
        if !t.detail.is_empty() {
            line.push(' ');
            line.push_str(&t.detail);
        }
        // Trouble is a warning: a failure about to be retried or given up on.
        let warn = matches!(
            t.to,
            super::core::StateName::Backoff | super::core::StateName::Failed
        ) || (t.to == super::core::StateName::Stopping
            && matches!(t.reason, Reason::ReadyTimeout | Reason::LivenessFailed));
        if warn {
            tracing::warn!("{line}");
        } else {
            tracing::info!("{line}");
        }
        if entry.1 == Self::BURST {
            tracing::warn!(
                "{}: looping; more `{} {}` lines within {} are counted, not shown",
                unit.name,
                t.to,
                t.reason,
                humantime::format_duration(Self::WINDOW)
            );
        }
    }

    fn flush_all(&mut self) {
        for ((unit, to, reason), (_, _, suppressed)) in self.windows.drain() {
            if suppressed > 0 {
                summarize(&unit, to, reason, suppressed);
            }
        }
    }
}

fn summarize(unit: &str, to: &str, reason: Reason, n: u32) {
    tracing::warn!("{unit}: {n} more `{to} {reason}` lines were not shown");
}
