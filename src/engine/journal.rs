//! What the supervisor tells about its transitions: the ring of recent events that
//! `launchgraph events` replays (and its live feed for `--follow`), and the log, one line per
//! transition, with a crash loop's repeated lines held back and summarized.
//!
//! Everything here starts from the core's typed [`Transition`]: it is kept as an [`Entry`]
//! (the transition, its time and its unit names), and rendered only when read: as an
//! [`EventRecord`] (durations in milliseconds, the time in RFC 3339) for `events` and its live
//! feed, and as the log line [`crate::control::render::transition_line`] makes of that record,
//! the same words `launchgraph events` prints. Nothing here decides anything or parses text
//! back.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::broadcast;

use super::core::{Note, StateName, Transition};
use crate::control::protocol::{
    EventRecord, ExitRecord, GuardEventFacts, NoteRecord, TransitionFacts,
};
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

/// One recorded transition: typed, with the names of its units as they were when it was made
/// (a reload may renumber units since). Rendered when read, not when recorded.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub time: SystemTime,
    pub seq: u64,
    pub unit: Arc<str>,
    /// The name of the requirement the transition is about.
    pub on: Option<Arc<str>>,
    pub transition: Transition,
}

impl Entry {
    /// The event, as `events` carries it.
    pub(crate) fn record(&self) -> EventRecord {
        self.record_at(humantime::format_rfc3339_micros(self.time).to_string())
    }

    /// The log line: the words `events` prints. The time is the log's own, so none is
    /// rendered for it.
    pub(crate) fn line(&self) -> String {
        transition_line(&self.record_at(String::new()))
    }

    fn record_at(&self, time: String) -> EventRecord {
        let t = &self.transition;
        EventRecord {
            time,
            seq: self.seq,
            unit: self.unit.to_string(),
            from: t.from.to_string(),
            to: t.to.to_string(),
            reason: t.reason.code().to_string(),
            on: self.on.as_ref().map(|n| n.to_string()),
            facts: facts(t),
            guard: None,
        }
    }
}

/// One recorded guard event: the guard's states, its reason code and its facts, already
/// typed as `events --json` carries them (they hold numbers, not text); the time is rendered
/// when read.
#[derive(Debug, Clone)]
pub(crate) struct GuardEntry {
    pub time: SystemTime,
    pub seq: u64,
    pub unit: Arc<str>,
    pub from: &'static str,
    pub to: &'static str,
    pub reason: Reason,
    /// Text from outside the supervisor: why a signal is unknown, what a command said.
    pub cause: Option<String>,
    pub facts: GuardEventFacts,
}

impl GuardEntry {
    fn record_at(&self, time: String) -> EventRecord {
        EventRecord {
            time,
            seq: self.seq,
            unit: self.unit.to_string(),
            from: self.from.to_owned(),
            to: self.to.to_owned(),
            reason: self.reason.code().to_owned(),
            on: None,
            facts: TransitionFacts {
                cause: self.cause.clone(),
                ..TransitionFacts::default()
            },
            guard: Some(self.facts.clone()),
        }
    }
}

/// What the ring holds: a unit's transition or a guard's event, in one sequence.
#[derive(Debug, Clone)]
pub(crate) enum Recorded {
    Unit(Entry),
    Guard(GuardEntry),
}

impl Recorded {
    /// The event, as `events` carries it.
    pub(crate) fn record(&self) -> EventRecord {
        match self {
            Recorded::Unit(e) => e.record(),
            Recorded::Guard(g) => g.record_at(humantime::format_rfc3339_micros(g.time).to_string()),
        }
    }
}

/// A configuration's units, and their names as entries share them.
type Names = (Arc<Vec<Unit>>, Vec<Arc<str>>);

/// How many events a `--follow` reader may fall behind before it misses some.
const LIVE_BACKLOG: usize = 1024;

/// The transitions `events` replays, and the live feed for `--follow`.
pub(crate) struct EventLog {
    ring: VecDeque<Recorded>,
    cap: usize,
    seq: u64,
    /// The unit names of the configuration the last transition was made in, shared by its
    /// entries; made again when the configuration changes.
    names: Option<Names>,
    /// The live feed, made when the first reader follows: a daemon nobody follows renders
    /// no record and keeps no backlog.
    live: Option<broadcast::Sender<Arc<EventRecord>>>,
}

impl EventLog {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            ring: VecDeque::with_capacity(cap),
            cap,
            seq: 0,
            names: None,
            live: None,
        }
    }

    /// Records `t`, made in the configuration of `units`; returns its entry.
    pub(crate) fn push(&mut self, units: &Arc<Vec<Unit>>, t: Transition) -> &Entry {
        self.seq += 1;
        let names = match &self.names {
            Some((of, names)) if Arc::ptr_eq(of, units) => names,
            _ => {
                let names = units.iter().map(|u| Arc::from(u.name.as_str())).collect();
                &self.names.insert((Arc::clone(units), names)).1
            }
        };
        let entry = Entry {
            time: SystemTime::now(),
            seq: self.seq,
            unit: Arc::clone(&names[t.unit]),
            on: t.related.map(|r| Arc::clone(&names[r])),
            transition: t,
        };
        match self.record(Recorded::Unit(entry)) {
            Recorded::Unit(e) => e,
            Recorded::Guard(_) => unreachable!("just pushed a unit's entry"),
        }
    }

    /// Records a guard's event; returns its log line.
    pub(crate) fn push_guard(&mut self, mut g: GuardEntry) -> String {
        self.seq += 1;
        g.seq = self.seq;
        let line = transition_line(&g.record_at(String::new()));
        self.record(Recorded::Guard(g));
        line
    }

    fn record(&mut self, r: Recorded) -> &Recorded {
        if self.ring.len() == self.cap {
            self.ring.pop_front();
        }
        if let Some(live) = &self.live
            && live.receiver_count() > 0
        {
            // A reader that left since is fine: the send fails.
            let _ = live.send(Arc::new(r.record()));
        }
        self.ring.push_back(r);
        self.ring.back().expect("just pushed")
    }

    /// The events still in the ring, oldest first.
    pub(crate) fn ring(&self) -> impl Iterator<Item = &Recorded> {
        self.ring.iter()
    }

    /// A feed of the events recorded from now on.
    pub(crate) fn subscribe(&mut self) -> broadcast::Receiver<Arc<EventRecord>> {
        self.live
            .get_or_insert_with(|| broadcast::channel(LIVE_BACKLOG).0)
            .subscribe()
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
type Key = (Arc<str>, StateName, Reason);

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

    /// The lines to log for the transition of `e`: none when the limiter holds it back.
    pub(crate) fn transition(&mut self, e: &Entry, now: Instant) -> Vec<Line> {
        let t = &e.transition;
        let mut out = Vec::new();
        let key = (Arc::clone(&e.unit), t.to, t.reason);
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
        let line = e.line();
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
                e.unit,
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
        Some(crate::clock::later(*opened, Self::WINDOW))
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

    fn backoff(delay_ms: u64) -> Entry {
        let mut t = Transition::new(0, StateName::Started, StateName::Backoff, Reason::Exited, 1);
        t.delay = Some(Duration::from_millis(delay_ms));
        Entry {
            time: SystemTime::UNIX_EPOCH,
            seq: 0,
            unit: "crash".into(),
            on: None,
            transition: t,
        }
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
        let e = backoff(400);
        let mut shown = Vec::new();
        for i in 0..12 {
            shown.extend(l.transition(&e, t0 + Duration::from_secs(i)));
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
            let e = backoff(100);
            assert!(!l.transition(&e, now).is_empty());
        }
        let e = backoff(100);
        assert!(l.transition(&e, now).is_empty(), "held back");
        let e = backoff(800);
        let shown = l.transition(&e, now);
        assert!(
            text(&shown).iter().any(|s| s.contains("delay=800ms")),
            "{shown:?}"
        );
        // The same delay again is not news.
        assert!(l.transition(&e, now).is_empty());
        assert_eq!(
            text(&l.flush_all()),
            ["crash: 2 more `backoff EXITED` lines were not shown"]
        );
    }
}
