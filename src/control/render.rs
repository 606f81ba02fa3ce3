//! How launchgraph shows what happened, as text for people: the `status` table a person reads
//! at a glance, event lines, reload reports, and the words of a transition's typed facts
//! (`pid=… exit=… ran=… delay=…`), which the daemon's log lines, `events` and `status` all
//! render here, from the same [`TransitionFacts`]. Colour only on a terminal, and never with
//! `NO_COLOR`.

use std::fmt::Write as _;

use super::protocol::{
    EventRecord, ExitRecord, NoteRecord, ReloadReport, TransitionFacts, UnitStatus,
};

/// Whether to colour output written to stdout.
pub fn use_color() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn paint(s: &str, state: &str, color: bool) -> String {
    if !color {
        return s.to_string();
    }
    let code = match state {
        "ready" => "32",
        "failed" => "1;31",
        "backoff" | "stopping" => "33",
        "waiting" | "starting" | "started" => "36",
        _ => "2",
    };
    format!("\x1b[{code}m{s}\x1b[0m")
}

/// `12s`, `3m04s`, `2h05m`, `3d04h`: short and exact enough to read at 3 a.m.
pub(crate) fn fmt_age(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// The `status` table: one row per unit, then what needs reading for the units that are not
/// simply ready (why they wait, what failed, preflight findings).
pub fn status_table(units: &[UnitStatus], color: bool) -> String {
    let headers = [
        "UNIT",
        "STATE",
        "FOR",
        "PID",
        "LAST EXIT",
        "RESTARTS",
        "BACKOFF",
        "PROBE",
        "REASON",
    ];
    let rows: Vec<[String; 9]> = units
        .iter()
        .map(|u| {
            [
                u.name.clone(),
                u.state.clone(),
                fmt_age(u.since_secs),
                u.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                u.last_exit.clone().unwrap_or_else(|| "-".into()),
                u.restarts.to_string(),
                u.backoff_remaining_secs
                    .map(|s| format!("{s:.1}s"))
                    .unwrap_or_else(|| "-".into()),
                u.last_probe
                    .as_ref()
                    .map(|p| {
                        format!(
                            "{} {} {:.1}ms",
                            p.kind,
                            if p.ok { "ok" } else { "FAIL" },
                            p.latency_ms
                        )
                    })
                    .unwrap_or_else(|| "-".into()),
                u.reason.clone(),
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: &[String], out: &mut String, state: Option<&str>| {
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            let padded = format!("{c:<w$}");
            let cell = match (i, state) {
                (1, Some(st)) => paint(&padded, st, color),
                _ => padded,
            };
            out.push_str(&cell);
            out.push_str(if i + 1 == cells.len() { "\n" } else { "  " });
        }
    };
    line(&headers.map(String::from), &mut out, None);
    for (u, r) in units.iter().zip(&rows) {
        line(r, &mut out, Some(&u.state));
    }
    let mut notes = String::new();
    for u in units {
        let mut lines = Vec::new();
        if let Some(by) = &u.run_by {
            lines.push(format!("run by {by}; launchgraph only watches it"));
        }
        if let Some(on) = &u.waiting_on {
            lines.push(format!("waiting on {on} ({})", u.reason));
        }
        if u.state != "ready" && !u.detail.is_empty() {
            lines.push(u.detail.clone());
        }
        if let Some(p) = u.last_probe.as_ref().filter(|p| !p.ok) {
            lines.push(format!(
                "last {} probe failed {} ago: {}",
                p.kind,
                fmt_age(p.age_secs),
                p.detail
            ));
        }
        for f in &u.preflight {
            lines.push(format!(
                "preflight {} {}: {}",
                f.severity, f.code, f.message
            ));
        }
        if !lines.is_empty() {
            let _ = writeln!(notes, "{}:", u.name);
            for l in lines {
                let _ = writeln!(notes, "  {l}");
            }
        }
    }
    if !notes.is_empty() {
        out.push('\n');
        out.push_str(&notes);
    }
    out
}

/// One event as a line a person reads: its time, then [`transition_line`].
pub fn event_line(e: &EventRecord) -> String {
    format!("{} {}", e.time, transition_line(e))
}

/// `unit: from -> to REASON [on=REQ] facts`: the daemon's log line of a transition; for a
/// guard's event, [`guard_line`].
pub fn transition_line(e: &EventRecord) -> String {
    if let Some(g) = &e.guard {
        return guard_line(e, g);
    }
    let mut s = format!("{}: {} -> {} {}", e.unit, e.from, e.to, e.reason);
    if let Some(on) = &e.on {
        let _ = write!(s, " on={on}");
    }
    let facts = facts_text(&e.to, &e.facts);
    if !facts.is_empty() {
        s.push(' ');
        s.push_str(&facts);
    }
    s
}

/// The words of a transition's facts into state `to`, in a fixed order:
/// `generation=… pid=… exit=… ran=… probe latency=… time-to-ready=… (note) failures=… delay=…
/// (cause)`. Each appears only when the transition has it.
pub(crate) fn facts_text(to: &str, f: &TransitionFacts) -> String {
    let mut words: Vec<String> = Vec::new();
    if to == "starting" {
        words.push(format!("generation={}", f.generation));
    }
    if let Some(pid) = f.pid {
        words.push(format!("pid={pid}"));
    }
    if let Some(e) = &f.exit {
        words.push(exit_text(e));
    }
    if let Some(ms) = f.ran_ms {
        words.push(format!("ran={}", fmt_ms(ms)));
    }
    if let Some(ms) = f.latency_ms {
        words.push(format!("probe latency={}", fmt_ms(ms)));
    }
    if let Some(ms) = f.time_to_ready_ms {
        words.push(format!("time-to-ready={}", fmt_ms(ms)));
    }
    if let Some(n) = &f.note {
        words.push(note_text(n));
    }
    if let Some(n) = f.failures {
        words.push(format!("failures={n}"));
    }
    if let Some(ms) = f.delay_ms {
        words.push(format!("delay={}", fmt_ms(ms)));
    }
    if let Some(c) = f.cause.as_deref().filter(|c| !c.is_empty()) {
        words.push(c.to_string());
    }
    words.join(" ")
}

fn note_text(n: &NoteRecord) -> String {
    match n {
        NoteRecord::NoReadyProbe => "no [ready] probe: ready when started".into(),
        NoteRecord::RelaunchedNoReadyProbe => {
            "relaunched by launchd; no [ready] probe: ready when started".into()
        }
        NoteRecord::LaunchdRelaunches => "launchd relaunches it (KeepAlive)".into(),
        NoteRecord::KilledAfterStopTimeout => "STOP_TIMEOUT: killed after its stop timeout".into(),
        NoteRecord::CleanExitNotRestarted => {
            "RESTART_POLICY: not restarted after a clean exit".into()
        }
        NoteRecord::PolicyNever => "RESTART_POLICY: policy \"never\"".into(),
        NoteRecord::StartLimit { starts, period_ms } => {
            let period = crate::clock::seconds(period_ms / 1000.0);
            format!(
                "{starts} restarts within {} after failures",
                humantime::format_duration(period)
            )
        }
    }
}

/// `exit=N`, `signal=N (NAME)` or `exit=unknown`.
pub(crate) fn exit_text(e: &ExitRecord) -> String {
    match (e.code, e.signal) {
        (_, Some(s)) => {
            let name = nix::sys::signal::Signal::try_from(s)
                .map(|s| s.as_str())
                .unwrap_or("?");
            format!("signal={s} ({name})")
        }
        (Some(c), None) => format!("exit={c}"),
        (None, None) => "exit=unknown".into(),
    }
}

/// Milliseconds with up to one decimal: `1.3ms`, `250ms`, `12034ms`.
pub(crate) fn fmt_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{}ms", ms.round() as u64)
    }
}

/// What a reload did or would do.
pub fn reload_report(r: &ReloadReport) -> String {
    let mut out = String::new();
    let verb = if r.dry_run { "would" } else { "will" };
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let rows = [
        (format!("added ({verb} start)"), &r.added),
        (format!("removed ({verb} stop)"), &r.removed),
        (format!("changed ({verb} restart)"), &r.changed),
        (
            format!("cycled ({verb} restart with a changed unit)"),
            &r.cycled,
        ),
        ("unchanged (not touched)".to_string(), &r.unchanged),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (key, units) in rows {
        let _ = writeln!(out, "{:<width$} {}", format!("{key}:"), list(units));
    }
    out
}

/// `unit: guard NAME from -> to REASON value=V threshold=T window=W held=N samples/T
/// [action=trip#1] [forced] [advise] (cause) output: ...`: a guard event's line.
pub fn guard_line(e: &EventRecord, g: &crate::control::protocol::GuardEventFacts) -> String {
    let mut s = format!("{}: guard {} ", e.unit, g.guard);
    match g.kind.as_str() {
        "transition" => {
            let _ = write!(s, "{} -> {} {}", e.from, e.to, e.reason);
        }
        kind => {
            let _ = write!(s, "{kind} {}", e.reason);
        }
    }
    if let Some(v) = g.value {
        let unit = g.value_unit.as_deref().unwrap_or("");
        let _ = write!(s, " value={}", crate::control::render::guard_value(v, unit));
    }
    if let Some(t) = &g.threshold {
        let _ = write!(s, " threshold={t}");
    }
    if let Some(w) = &g.window {
        let _ = write!(s, " window={w}");
    }
    if let (Some(n), Some(ms)) = (g.held_samples, g.held_ms) {
        let _ = write!(s, " held={n} samples/{}", fmt_ms(ms));
    }
    if let (Some(edge), Some(seq)) = (&g.edge, g.action_seq) {
        let _ = write!(s, " action={edge}#{seq}");
    }
    if g.forced {
        s.push_str(" forced");
    }
    if g.advise {
        s.push_str(" advise");
    }
    if let Some(c) = e.facts.cause.as_deref().filter(|c| !c.is_empty()) {
        let _ = write!(s, " ({c})");
    }
    if let Some(o) = g.output.as_deref().filter(|o| !o.is_empty()) {
        let _ = write!(s, " output: {o}");
    }
    s
}

/// A guard's value in its unit, as a person reads it: `2.5s`, `11.2%`, `3`, `1048576 B/s`.
pub fn guard_value(v: f64, unit: &str) -> String {
    match unit {
        "seconds" => format!("{v:.3}s"),
        "percent" => format!("{v:.1}%"),
        "bytes/s" => format!("{v:.0}B/s"),
        _ => {
            let t = format!("{v:.3}");
            t.trim_end_matches('0').trim_end_matches('.').to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_render_in_their_fixed_order() {
        let backoff = TransitionFacts {
            generation: 3,
            pid: Some(20470),
            exit: Some(ExitRecord {
                code: None,
                signal: Some(9),
            }),
            ran_ms: Some(2218.4),
            failures: Some(1),
            delay_ms: Some(496.0),
            ..TransitionFacts::default()
        };
        assert_eq!(
            facts_text("backoff", &backoff),
            "pid=20470 signal=9 (SIGKILL) ran=2218ms failures=1 delay=496ms"
        );
        let ready = TransitionFacts {
            generation: 1,
            pid: Some(7),
            latency_ms: Some(2.46),
            time_to_ready_ms: Some(1793.2),
            ..TransitionFacts::default()
        };
        assert_eq!(
            facts_text("ready", &ready),
            "pid=7 probe latency=2.5ms time-to-ready=1793ms"
        );
        let starting = TransitionFacts {
            generation: 4,
            ..TransitionFacts::default()
        };
        assert_eq!(facts_text("starting", &starting), "generation=4");
        let limit = TransitionFacts {
            generation: 6,
            note: Some(NoteRecord::StartLimit {
                starts: 5,
                period_ms: 300_000.0,
            }),
            ..TransitionFacts::default()
        };
        assert_eq!(
            facts_text("failed", &limit),
            "5 restarts within 5m after failures"
        );
        let spawn = TransitionFacts {
            failures: Some(1),
            delay_ms: Some(100.0),
            cause: Some("No such file or directory".into()),
            ..TransitionFacts::default()
        };
        assert_eq!(
            facts_text("backoff", &spawn),
            "failures=1 delay=100ms No such file or directory"
        );
    }

    #[test]
    fn ages_read_short() {
        assert_eq!(fmt_age(5.4), "5s");
        assert_eq!(fmt_age(184.0), "3m04s");
        assert_eq!(fmt_age(7500.0), "2h05m");
        assert_eq!(fmt_age(273600.0), "3d04h");
    }

    #[test]
    fn no_escape_codes_without_color() {
        let u = UnitStatus {
            name: "ollama".into(),
            kind: "exec".into(),
            run_by: None,
            state: "failed".into(),
            since_secs: 3.0,
            reason: "START_LIMIT_REACHED".into(),
            detail: "5 restarts within 5m after failures".into(),
            last_transition: None,
            waiting_on: None,
            pid: None,
            generation: 6,
            last_exit: Some("exit=1".into()),
            restarts: 5,
            backoff_remaining_secs: None,
            last_probe: None,
            preflight: vec![],
        };
        let plain = status_table(std::slice::from_ref(&u), false);
        assert!(!plain.contains('\x1b'));
        assert!(plain.contains("START_LIMIT_REACHED"));
        assert!(plain.contains("5 restarts within 5m"));
        assert!(status_table(&[u], true).contains("\x1b[1;31m"));
    }
}
