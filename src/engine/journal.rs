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
pub(crate) const EVENT_RING: usize = 1000;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The typed facts of `t`, as `events --json` and `status --json` carry them.
pub(crate) fn facts(t: &Transition) -> TransitionFacts {
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
pub(crate) fn record(units: &[Unit], t: &Transition, seq: u64) -> EventRecord {
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
pub(crate) struct EventLog {
    ring: VecDeque<EventRecord>,
    cap: usize,
    seq: u64,
    live: broadcast::Sender<EventRecord>,
}

impl EventLog {
    pub(crate) fn new(cap: usize) -> Self {
        let (live, _) = broadcast::channel(1024);
        Self {
            ring: VecDeque::with_capacity(cap),
            cap,
            seq: 0,
            live,
        }
    }

    /// Records `t` (made in the configuration of `units`); returns the record.
    pub(crate) fn push(&mut self, units: &[Unit], t: &Transition) -> &EventRecord {
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
    pub(crate) fn ring(&self) -> impl Iterator<Item = &EventRecord> {
        self.ring.iter()
    }

    /// A feed of the events recorded from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<EventRecord> {
        self.live.subscribe()
    }
}

/// A line of the log, with its level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Line {
    Info(String),
    Warn(String),
}

/// Writes `lines` to the log.
pub(crate) fn write(lines: Vec<Line>) {
    for l in lines {
        match l {
            Line::Info(s) => tracing::info!("{s}"),
            Line::Warn(s) => tracing::warn!("{s}"),
        }
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

/// Decides the log lines of transitions (one each, written by [`write()`]), and keeps a crash
/// loop from flooding the log: past
/// [`LogLimiter::BURST`] lines with the same unit, state and reason within
/// [`LogLimiter::WINDOW`], further ones are counted, not written, and a summary line says how
/// many were held back as soon as the window closes (the owner calls
/// [`LogLimiter::close_expired`] at [`LogLimiter::next_close`]). A line that reports a new,
/// longer backoff delay is always written: the summary never hides what changed.
#[derive(Default)]
pub(crate) struct LogLimiter {
    windows: HashMap<Key, Window>,
    /// Windows in the order they opened (so the order they close): the next to close is at
    /// the front, found without a scan. An entry whose window was closed and reopened since
    /// is skipped.
    closing: VecDeque<(Instant, Key)>,
}

impl LogLimiter {
    pub(crate) const BURST: u32 = 5;
    pub(crate) const WINDOW: Duration = Duration::from_secs(60);

    /// The lines to log for `t`, whose event is `r`: none when the limiter holds it back.
    pub(crate) fn transition(
        &mut self,
        t: &Transition,
        r: &EventRecord,
        now: Instant,
    ) -> Vec<Line> {
        let mut out = Vec::new();
        let key = (r.unit.clone(), t.to, t.reason);
        if let Some(w) = self.windows.get(&key)
            && now.saturating_duration_since(w.opened) >= Self::WINDOW
        {
            out.extend(self.close(&key));
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
            return out;
        }
        if let Some(d) = t.delay {
            w.shown_delay = Some(w.shown_delay.map_or(d, |s| s.max(d)));
        }
        let line = transition_line(r);
        // Trouble is a warning: a failure about to be retried or given up on.
        let warn = matches!(t.to, StateName::Backoff | StateName::Failed)
            || (t.to == StateName::Stopping
                && matches!(t.reason, Reason::ReadyTimeout | Reason::LivenessFailed));
        out.push(if warn {
            Line::Warn(line)
        } else {
            Line::Info(line)
        });
        if w.lines == Self::BURST {
            out.push(Line::Warn(format!(
                "{}: looping; more `{} {}` lines within {} are counted, not shown",
                r.unit,
                t.to,
                t.reason,
                humantime::format_duration(Self::WINDOW)
            )));
        }
        out
    }

    /// When the next window closes, if any is open.
    pub(crate) fn next_close(&self) -> Option<Instant> {
        let (opened, _) = self.closing.front()?;
        Some(opened.checked_add(Self::WINDOW).unwrap_or(*opened))
    }

    /// Closes the windows that are over; returns their summaries.
    pub(crate) fn close_expired(&mut self, now: Instant) -> Vec<Line> {
        let mut out = Vec::new();
        while let Some((opened, _)) = self.closing.front()
            && now.saturating_duration_since(*opened) >= Self::WINDOW
        {
            let (opened, key) = self.closing.pop_front().expect("just looked");
            if self.windows.get(&key).is_some_and(|w| w.opened == opened) {
                out.extend(self.close(&key));
            }
        }
        out
    }

    /// Closes every window (at exit); returns their summaries.
    pub(crate) fn flush_all(&mut self) -> Vec<Line> {
        self.closing.clear();
        let keys: Vec<Key> = self.windows.keys().cloned().collect();
        keys.iter().filter_map(|k| self.close(k)).collect()
    }

    fn close(&mut self, key: &Key) -> Option<Line> {
        let w = self.windows.remove(key)?;
        let (unit, to, reason) = key;
        (w.held > 0).then(|| {
            Line::Warn(format!(
                "{unit}: {} more `{to} {reason}` lines were not shown",
                w.held
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(delay_ms: u64) -> (Transition, EventRecord) {
        let mut t = Transition::new(0, StateName::Started, StateName::Backoff, Reason::Exited, 1);
        t.delay = Some(Duration::from_millis(delay_ms));
        let r = EventRecord {
            time: String::new(),
            seq: 0,
            unit: "crash".into(),
            from: t.from.to_string(),
            to: t.to.to_string(),
            reason: t.reason.code().into(),
            on: None,
            facts: facts(&t),
        };
        (t, r)
    }

    fn text(lines: &[Line]) -> Vec<&str> {
        lines
            .iter()
            .map(|l| match l {
                Line::Info(s) | Line::Warn(s) => s.as_str(),
            })
            .collect()
    }

    #[test]
    fn a_loop_is_held_back_after_a_burst_and_summarized_when_its_window_closes() {
        let mut l = LogLimiter::default();
        let t0 = Instant::now();
        let (t, r) = backoff(400);
        let mut shown = Vec::new();
        for i in 0..12 {
            shown.extend(l.transition(&t, &r, t0 + Duration::from_secs(i)));
        }
        let shown = text(&shown);
        assert_eq!(shown.len(), LogLimiter::BURST as usize + 1, "{shown:#?}");
        assert!(
            shown[LogLimiter::BURST as usize].contains("looping"),
            "{shown:#?}"
        );
        assert_eq!(l.next_close(), Some(t0 + LogLimiter::WINDOW));
        // Not yet over: nothing to say.
        assert!(l.close_expired(t0 + Duration::from_secs(59)).is_empty());
        // Over: the summary, at once, without waiting for another line.
        let summary = l.close_expired(t0 + LogLimiter::WINDOW);
        assert_eq!(
            text(&summary),
            ["crash: 7 more `backoff EXITED` lines were not shown"]
        );
        assert_eq!(l.next_close(), None);
    }

    #[test]
    fn a_new_longer_delay_is_always_shown() {
        let mut l = LogLimiter::default();
        let now = Instant::now();
        for _ in 0..LogLimiter::BURST {
            let (t, r) = backoff(100);
            assert!(!l.transition(&t, &r, now).is_empty());
        }
        let (t, r) = backoff(100);
        assert!(l.transition(&t, &r, now).is_empty(), "held back");
        let (t, r) = backoff(800);
        let shown = l.transition(&t, &r, now);
        assert!(
            text(&shown).iter().any(|s| s.contains("delay=800ms")),
            "{shown:?}"
        );
        // The same delay again is not news.
        assert!(l.transition(&t, &r, now).is_empty());
        assert_eq!(
            text(&l.flush_all()),
            ["crash: 2 more `backoff EXITED` lines were not shown"]
        );
    }
}
