//! What the supervisor tells about its transitions: the ring of recent events that
//! `launchgraph events` replays (and its live feed for `--follow`), and the log, one line per
//! transition, with a crash loop's repeated lines held back and summarized.
//!
//! Everything here starts from the core's typed [`Transition`]: it becomes one
//! [`EventRecord`] (names resolved, durations in milliseconds), and the log line is rendered
//! from that record by [`crate::control::render::transition_line`], the same words
//! `launchgraph events` prints. Nothing here decides anything or parses text back.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use super::core::{Note, StateName, Transition};
use crate::control::protocol::{EventRecord, ExitRecord, NoteRecord, TransitionFacts};
use crate::control::render::transition_line;
use crate::reason::Reason;
use crate::unit::Unit;

/// How many transitions `events` can replay.
pub const EVENT_RING: usize = 1000;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The typed facts of `t`, as `events --json` and `status --json` carry them.
pub fn facts(t: &Transition) -> TransitionFacts {
    TransitionFacts {
        generation: t.generation,
        pid: t.pid,
        exit: t.exit.map(|e| ExitRecord {
            code: e.code,
            signal: e.signal,
        }),
        ran_ms: t.ran.map(ms),
        failures: t.failures,
        delay_ms: t.delay.map(ms),
        latency_ms: t.latency.map(ms),
        time_to_ready_ms: t.time_to_ready.map(ms),
        note: t.note.map(|n| match n {
            Note::NoReadyProbe => NoteRecord::NoReadyProbe,
            Note::RelaunchedNoReadyProbe => NoteRecord::RelaunchedNoReadyProbe,
            Note::LaunchdRelaunches => NoteRecord::LaunchdRelaunches,
            Note::KilledAfterStopTimeout => NoteRecord::KilledAfterStopTimeout,
            Note::CleanExitNotRestarted => NoteRecord::CleanExitNotRestarted,
            Note::PolicyNever => NoteRecord::PolicyNever,
            Note::StartLimit { starts, period } => NoteRecord::StartLimit {
                starts,
                period_ms: ms(period),
            },
        }),
        cause: t.cause.clone(),
    }
}

/// `t` as one event: its unit names resolved against `units`, the configuration it was made in.
pub fn record(units: &[Unit], t: &Transition, seq: u64) -> EventRecord {
    EventRecord {
        time: humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
        seq,
        unit: units[t.unit].name.to_string(),
        from: t.from.to_string(),
        to: t.to.to_string(),
        reason: t.reason.code().to_string(),
        on: t.related.map(|r| units[r].name.to_string()),
        facts: facts(t),
    }
}

/// The transitions `events` replays, and the live feed for `--follow`.
pub struct EventLog {
    ring: VecDeque<EventRecord>,
    cap: usize,
    seq: u64,
    live: broadcast::Sender<EventRecord>,
}

impl EventLog {
    pub fn new(cap: usize) -> Self {
        let (live, _) = broadcast::channel(1024);
        Self {
            ring: VecDeque::with_capacity(cap),
            cap,
            seq: 0,
            live,
        }
    }

    /// Records `t` (made in the configuration of `units`); returns the record.
    pub fn push(&mut self, units: &[Unit], t: &Transition) -> &EventRecord {
        self.seq += 1;
        let r = record(units, t, self.seq);
        if self.ring.len() == self.cap {
            self.ring.pop_front();
        }
        // Nobody following is the usual case: the send fails, and that is fine.
        let _ = self.live.send(r.clone());
        self.ring.push_back(r);
        self.ring.back().expect("just pushed")
    }

    /// The events still in the ring, oldest first.
    pub fn ring(&self) -> impl Iterator<Item = &EventRecord> {
        self.ring.iter()
    }

    /// A feed of the events recorded from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<EventRecord> {
        self.live.subscribe()
    }
}

/// One unit, state and reason: the lines the limiter counts together.
type Key = (String, StateName, Reason);

/// A window of lines with one key.
struct Window {
    opened: Instant,
    /// Lines in the window, shown or not.
    lines: u32,
    /// Lines held back.
    held: u32,
    /// The longest backoff delay shown in the window: a longer one is always shown.
    shown_delay: Option<Duration>,
}

/// Writes one line per transition, and keeps a crash loop from flooding the log: past
/// [`LogLimiter::BURST`] lines with the same unit, state and reason within
/// [`LogLimiter::WINDOW`], further ones are counted, not written, and a summary line says how
/// many were held back as soon as the window closes (the owner calls
/// [`LogLimiter::close_expired`] at [`LogLimiter::next_close`]). A line that reports a new,
/// longer backoff delay is always written: the summary never hides what changed.
#[derive(Default)]
pub struct LogLimiter {
    windows: HashMap<Key, Window>,
    /// Windows in the order they opened (so the order they close): the next to close is at
    /// the front, found without a scan. An entry whose window was closed and reopened since
    /// is skipped.
    closing: VecDeque<(Instant, Key)>,
}

impl LogLimiter {
    pub const BURST: u32 = 5;
    pub const WINDOW: Duration = Duration::from_secs(60);

    /// Logs `t`, whose event is `r`, unless the limiter holds it back.
    pub fn transition(&mut self, t: &Transition, r: &EventRecord, now: Instant) {
        let key = (r.unit.clone(), t.to, t.reason);
        if let Some(w) = self.windows.get(&key)
            && now.saturating_duration_since(w.opened) >= Self::WINDOW
        {
            self.close(&key);
        }
        let closing = &mut self.closing;
        let w = self.windows.entry(key).or_insert_with_key(|k| {
            closing.push_back((now, k.clone()));
            Window {
                opened: now,
                lines: 0,
                held: 0,
                shown_delay: None,
            }
        });
        w.lines += 1;
        let longer_delay = t.delay.is_some_and(|d| w.shown_delay.is_none_or(|s| d > s));
        if w.lines > Self::BURST && !longer_delay {
            w.held += 1;
            return;
        }
        if let Some(d) = t.delay {
            w.shown_delay = Some(w.shown_delay.map_or(d, |s| s.max(d)));
        }
        let line = transition_line(r);
        // Trouble is a warning: a failure about to be retried or given up on.
        let warn = matches!(t.to, StateName::Backoff | StateName::Failed)
            || (t.to == StateName::Stopping
                && matches!(t.reason, Reason::ReadyTimeout | Reason::LivenessFailed));
        if warn {
            tracing::warn!("{line}");
        } else {
            tracing::info!("{line}");
        }
        if w.lines == Self::BURST {
            tracing::warn!(
                "{}: looping; more `{} {}` lines within {} are counted, not shown",
                r.unit,
                t.to,
                t.reason,
                humantime::format_duration(Self::WINDOW)
            );
        }
    }

    /// When the next window closes, if any is open.
    pub fn next_close(&self) -> Option<Instant> {
        let (opened, _) = self.closing.front()?;
        Some(opened.checked_add(Self::WINDOW).unwrap_or(*opened))
    }

    /// Closes the windows that are over, writing their summaries.
    pub fn close_expired(&mut self, now: Instant) {
        while let Some((opened, _)) = self.closing.front()
            && now.saturating_duration_since(*opened) >= Self::WINDOW
        {
            let (opened, key) = self.closing.pop_front().expect("just looked");
            if self.windows.get(&key).is_some_and(|w| w.opened == opened) {
                self.close(&key);
            }
        }
    }

    /// Closes every window (at exit), writing their summaries.
    pub fn flush_all(&mut self) {
        self.closing.clear();
        let keys: Vec<Key> = self.windows.keys().cloned().collect();
        for k in keys {
            self.close(&k);
        }
    }

    fn close(&mut self, key: &Key) {
        if let Some(w) = self.windows.remove(key)
            && w.held > 0
        {
            let (unit, to, reason) = key;
            tracing::warn!(
                "{unit}: {} more `{to} {reason}` lines were not shown",
                w.held
            );
        }
    }
}
