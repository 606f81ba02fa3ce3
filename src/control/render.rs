//! How the CLI shows what the daemon answers: the `status` table a person reads at a glance,
//! event lines, reload reports. Colour only on a terminal, and never with `NO_COLOR`.

use std::fmt::Write as _;

use super::protocol::{EventRecord, ReloadReport, UnitStatus};

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
pub fn fmt_age(secs: f64) -> String {
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

/// One event as a line a person reads.
pub fn event_line(e: &EventRecord) -> String {
    let mut s = format!("{} {}: {} -> {} {}", e.time, e.unit, e.from, e.to, e.reason);
    if let Some(on) = &e.on {
        let _ = write!(s, " on={on}");
    }
    if !e.detail.is_empty() {
        let _ = write!(s, " {}", e.detail);
    }
    s
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

#[cfg(test)]
mod tests {
    use super::*;

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
            state: "failed".into(),
            since_secs: 3.0,
            reason: "START_LIMIT_REACHED".into(),
            detail: "5 restarts within 5m after failures".into(),
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
