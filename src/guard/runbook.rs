//! The runbook: what every guard and switch of a units directory watches, when it trips and
//! clears, and exactly what runs then, as `launchgraph guards` prints it and every snapshot
//! keeps it.
//!
//! It is derived from the compiled units alone, so it is the configuration read back in
//! words, never a second copy to keep in step: the commands shown are the argv the daemon
//! runs, shell-quoted once here for copy and paste, with the user they run as. It owns the
//! stable JSON schema `launchgraph.runbook/1` (docs/runbook-schema.md). It reads no files and
//! asks no daemon: live state (a guard's state, last value, window) is a [`GuardLive`] a
//! caller may attach to each row; without one, the row is the configuration only.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::compile::Compiled;
use crate::unit::Unit;
use crate::unit::guard::{
    Action, Direction, Guard, JsonSelect, KeepAlive, LlmApi, Mode, Quantity, QueueSource, Signal,
    Switch, When, Window,
};

pub const SCHEMA: &str = "launchgraph.runbook/1";

/// Every guard and switch of a configuration, unit by unit in name order, each in file order.
#[derive(Debug, Clone, Serialize)]
pub struct Runbook {
    pub schema: &'static str,
    pub units_dir: String,
    /// Only the units that have guards or switches.
    pub units: Vec<RunbookUnit>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunbookUnit {
    pub unit: String,
    pub guards: Vec<GuardRow>,
    pub switches: Vec<SwitchRow>,
}

/// One `[[guard]]`.
#[derive(Debug, Clone, Serialize)]
pub struct GuardRow {
    pub name: String,
    /// The signal's kind, as written in `signal = "..."`.
    pub signal: &'static str,
    /// What is watched, in words, with the signal's parameters.
    pub watches: String,
    /// The signal's parameters, those it has.
    pub params: SignalParams,
    pub every_ms: u64,
    pub timeout_ms: u64,
    pub trip: Condition,
    pub clear: Condition,
    /// The switch that owns this guard's mode, holds and actions; `null` when it owns them.
    pub switch: Option<String>,
    /// `act` or `advise`; `null` for a guard in a switch (the switch's mode applies).
    pub mode: Option<Mode>,
    pub hold: Vec<String>,
    pub on_trip: Option<Step>,
    pub on_clear: Option<Step>,
    /// Live state from the daemon, when a caller had it; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<GuardLive>,
}

/// One `[[switch]]`.
#[derive(Debug, Clone, Serialize)]
pub struct SwitchRow {
    pub name: String,
    pub guards: Vec<String>,
    pub when: When,
    /// In words: when it trips.
    pub trips: String,
    /// In words: when it clears.
    pub clears: String,
    pub mode: Mode,
    pub hold: Vec<String>,
    pub on_trip: Option<Step>,
    pub on_clear: Option<Step>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<GuardLive>,
}

/// The seam for live state: what the daemon says of a guard or switch now. `guards` without
/// a daemon leaves it out; a caller that asked the daemon fills it in, and the text gains a
/// `now` line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardLive {
    /// `ok`, `pending`, `tripped`, `clearing` or `unknown`, as the daemon reports it.
    pub state: String,
    /// The last sample (or statistic), rendered with its unit; `None` before the first.
    pub last_value: Option<String>,
    /// Where the current window stands, in words ("2 of 3 samples", "3m of 5m").
    pub window: Option<String>,
}

/// A signal's parameters, as written in the unit (keys absent from the JSON when the signal
/// has no such parameter). Its own type, so that the schema does not follow the unit model's.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SignalParams {
    /// `ttft`: the server; `queue-depth` from Prometheus: the exposition's URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `ollama` or `openai`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<&'static str>,
    /// Milliseconds, or the string `forever`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_only: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lane: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_pointer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

fn params(signal: &Signal) -> SignalParams {
    let mut p = SignalParams::default();
    match signal {
        Signal::Ttft {
            url,
            model,
            api,
            keep_alive,
            idle_only,
            ..
        } => {
            p.url = Some(url.clone());
            p.model = model.clone();
            p.api = Some(match api {
                LlmApi::Ollama => "ollama",
                LlmApi::Openai => "openai",
            });
            p.keep_alive = keep_alive.map(|k| match k {
                KeepAlive::For(d) => serde_json::Value::from(ms(d)),
                KeepAlive::Forever => serde_json::Value::from("forever"),
            });
            p.idle_only = Some(*idle_only);
        }
        Signal::QueueDepth(QueueSource::Command { command, select }) => {
            p.command = Some(command.clone());
            match select {
                Some(JsonSelect::Lane { lane, field }) => {
                    p.lane = Some(lane.clone());
                    p.field = Some(field.clone());
                }
                Some(JsonSelect::Pointer(ptr)) => p.json_pointer = Some(ptr.clone()),
                None => {}
            }
        }
        Signal::QueueDepth(QueueSource::Prometheus {
            url,
            metric,
            labels,
            ..
        }) => {
            p.url = Some(url.clone());
            p.metric = Some(metric.clone());
            p.labels = Some(labels.clone());
        }
        Signal::SwapOutRate | Signal::MemoryPressure => {}
        Signal::DiskFree { path } => p.path = Some(path.display().to_string()),
        Signal::Exec { command } => p.command = Some(command.clone()),
    }
    p
}

/// A trip or clear condition.
#[derive(Debug, Clone, Serialize)]
pub struct Condition {
    /// `above`, `below`, `at-or-below` or `at-or-above`.
    pub op: &'static str,
    /// The threshold as written (`"2.5s"`, `"12%"`, `3`).
    pub threshold: String,
    /// The threshold in the sample's unit (seconds, bytes/s, percent, the number, the level's
    /// kernel value), as samples are compared with it.
    pub value: f64,
    /// Whether the threshold is the default (a clear threshold equal to the trip one).
    pub default: bool,
    pub window: WindowRow,
    /// The whole condition in words.
    pub words: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct WindowRow {
    /// `samples` (consecutive samples) or `for` (held continuously this long).
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub for_ms: Option<u64>,
}

/// What runs on one edge, and how it is confirmed in time.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// The commands, in order; the first that fails ends the step.
    pub run: Vec<CommandLine>,
    /// The user the commands and `verify` run as; `null`: launchgraph's own (root when it
    /// runs as the LaunchDaemon).
    pub user: Option<String>,
    /// Units restarted, in dependency order, after the commands succeeded.
    pub restart: Vec<String>,
    pub verify: Option<CommandLine>,
    /// Text `verify` must print, besides exiting 0.
    pub verify_contains: Option<String>,
    /// The time box, from the edge.
    pub complete_within_ms: u64,
}

/// A command as the daemon runs it, and as an admin types it.
#[derive(Debug, Clone, Serialize)]
pub struct CommandLine {
    pub argv: Vec<String>,
    /// The argv shell-quoted: what runs, as one line.
    pub shell: String,
    /// What to type in an admin's shell to run it as the daemon would: `sudo -u USER -H --`
    /// before it when the step has a user, else the line itself.
    pub paste: String,
}

impl Runbook {
    pub fn new(c: &Compiled, units_dir: &str) -> Self {
        Self::of_units(&c.units, units_dir)
    }

    /// The runbook of some units: those of a valid directory, or, for a snapshot of an
    /// invalid one, the unit files valid on their own.
    pub fn of_units(units: &[Unit], units_dir: &str) -> Self {
        let mut units: Vec<RunbookUnit> = units
            .iter()
            .filter(|u| !u.guards.is_empty())
            .map(|u| {
                let owner = |g: &Guard| {
                    u.guards
                        .switches
                        .iter()
                        .find(|s| s.guards.contains(&g.name))
                        .map(|s| s.name.to_string())
                };
                RunbookUnit {
                    unit: u.name.to_string(),
                    guards: u
                        .guards
                        .guards
                        .iter()
                        .map(|g| guard_row(g, owner(g)))
                        .collect(),
                    switches: u.guards.switches.iter().map(switch_row).collect(),
                }
            })
            .collect();
        units.sort_by(|a, b| a.unit.cmp(&b.unit));
        Runbook {
            schema: SCHEMA,
            units_dir: units_dir.to_owned(),
            units,
        }
    }

    /// Fills in each row's live state from `live(unit, name)` (a guard's or a switch's name):
    /// the one place a caller that asked the daemon joins its answer to the configuration.
    /// Rows it has nothing for keep `None`.
    pub fn attach_live(&mut self, mut live: impl FnMut(&str, &str) -> Option<GuardLive>) {
        for u in &mut self.units {
            for g in &mut u.guards {
                g.live = live(&u.unit, &g.name);
            }
            for w in &mut u.switches {
                w.live = live(&u.unit, &w.name);
            }
        }
    }

    /// The runbook for people: one section per guard and per switch.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if self.units.is_empty() {
            let _ = writeln!(s, "No guards or switches in {}.", self.units_dir);
            return s;
        }
        let (g, w) = self.units.iter().fold((0, 0), |(g, w), u| {
            (g + u.guards.len(), w + u.switches.len())
        });
        let _ = writeln!(
            s,
            "Runbook of {}: {} ({} and {})",
            self.units_dir,
            plural(self.units.len(), "unit with guards", "units with guards"),
            plural(g, "guard", "guards"),
            plural(w, "switch", "switches"),
        );
        for u in &self.units {
            for g in &u.guards {
                s.push('\n');
                render_guard(&mut s, &u.unit, g);
            }
            for w in &u.switches {
                s.push('\n');
                render_switch(&mut s, &u.unit, w);
            }
        }
        s
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn guard_row(g: &Guard, switch: Option<String>) -> GuardRow {
    let in_switch = switch.is_some();
    GuardRow {
        name: g.name.to_string(),
        signal: g.signal.kind().as_str(),
        watches: watches(&g.signal),
        params: params(&g.signal),
        every_ms: ms(g.every),
        timeout_ms: ms(g.timeout),
        trip: condition(g, true),
        clear: condition(g, false),
        switch,
        mode: (!in_switch).then_some(g.mode),
        hold: g.hold.iter().map(ToString::to_string).collect(),
        on_trip: g.on_trip.as_ref().map(step),
        on_clear: g.on_clear.as_ref().map(step),
        live: None,
    }
}

fn switch_row(w: &Switch) -> SwitchRow {
    let names: Vec<String> = w.guards.iter().map(ToString::to_string).collect();
    let list = names.join(", ");
    let trips = match (w.when, names.len()) {
        (_, 1) => format!("when {list} is tripped"),
        (When::All, _) => format!("when all of {list} are tripped"),
        (When::Any, _) => format!("when any of {list} is tripped"),
    };
    let clears = if names.len() == 1 {
        format!("when {list} is no longer tripped")
    } else {
        format!("when none of {list} is tripped")
    };
    SwitchRow {
        name: w.name.to_string(),
        guards: names,
        when: w.when,
        trips,
        clears,
        mode: w.mode,
        hold: w.hold.iter().map(ToString::to_string).collect(),
        on_trip: w.on_trip.as_ref().map(step),
        on_clear: w.on_clear.as_ref().map(step),
        live: None,
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// What a signal watches, in words, with its parameters.
fn watches(signal: &Signal) -> String {
    match signal {
        Signal::Ttft {
            url,
            model,
            api,
            keep_alive,
            idle_only,
            ..
        } => {
            let mut s = format!(
                "time to first token of {} at {url} ({} API)",
                model
                    .as_deref()
                    .map_or("whatever model is loaded".to_owned(), |m| format!(
                        "model {m}"
                    )),
                match api {
                    LlmApi::Ollama => "Ollama",
                    LlmApi::Openai => "OpenAI-compatible",
                }
            );
            if *idle_only {
                s.push_str(", only samples taken while the server was otherwise idle");
            }
            match keep_alive {
                Some(KeepAlive::For(d)) => {
                    let _ = write!(s, ", keep-alive {}", human(*d));
                }
                Some(KeepAlive::Forever) => s.push_str(", keep-alive forever"),
                None => {}
            }
            s.push_str("; never loads a model (not loaded: unknown)");
            s
        }
        Signal::QueueDepth(QueueSource::Command { command, select }) => {
            let what = match select {
                None => "the number it prints".to_owned(),
                Some(JsonSelect::Lane { lane, field }) => {
                    format!("`{field}` of lane `{lane}` in its JSON")
                }
                Some(JsonSelect::Pointer(p)) => format!("JSON pointer `{p}` of its output"),
            };
            format!(
                "queue depth: {what}, from `{}`",
                shell_line(command.iter().map(String::as_str))
            )
        }
        Signal::QueueDepth(QueueSource::Prometheus {
            url,
            metric,
            labels,
            ..
        }) => {
            let labels = if labels.is_empty() {
                String::new()
            } else {
                let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                format!("{{{}}}", l.join(","))
            };
            format!("queue depth: the sum of {metric}{labels} at {url}")
        }
        Signal::SwapOutRate => "bytes written to swap per second".to_owned(),
        Signal::MemoryPressure => {
            "memory pressure (Linux: PSI some, percent of time stalled; macOS: the kernel's level)"
                .to_owned()
        }
        Signal::DiskFree { path } => format!(
            "free space an unprivileged writer can use (f_bavail / f_blocks) on the volume holding {}",
            path.display()
        ),
        Signal::Exec { command } => format!(
            "the number printed by `{}`",
            shell_line(command.iter().map(String::as_str))
        ),
    }
}

fn condition(g: &Guard, trip: bool) -> Condition {
    let (op, q, window) = match (g.direction, trip) {
        (Direction::Above, true) => ("above", g.trip, g.trip_window),
        (Direction::Below, true) => ("below", g.trip, g.trip_window),
        (Direction::Above, false) => ("at-or-below", g.clear, g.clear_window),
        (Direction::Below, false) => ("at-or-above", g.clear, g.clear_window),
    };
    let subject = match &g.stat {
        Some(sw) => format!(
            "the {} of the samples of the last {}",
            match sw.stat {
                crate::unit::guard::Stat::P50 => "median".to_owned(),
                other => other.as_str().to_owned(),
            },
            human(sw.window)
        ),
        None => "a sample".to_owned(),
    };
    let verb = op.replace('-', " ");
    let held = match window {
        Window::Samples(1) if g.stat.is_some() => {
            " (at any sample, once a whole window has been sampled)".to_owned()
        }
        Window::Samples(1) => " (a single sample is enough)".to_owned(),
        Window::Samples(n) => format!(
            " for {n} samples in a row (about {} at every {})",
            human(g.every.saturating_mul(n)),
            human(g.every)
        ),
        Window::Lasting(d) => format!(" continuously for {}", human(d)),
    };
    let words = format!("{subject} is {verb} {}{held}", threshold(&q));
    Condition {
        op,
        threshold: threshold(&q),
        value: q.canonical(),
        default: !trip && g.clear_is_default,
        window: match window {
            Window::Samples(n) => WindowRow {
                kind: "samples",
                samples: Some(n),
                for_ms: None,
            },
            Window::Lasting(d) => WindowRow {
                kind: "for",
                samples: None,
                for_ms: Some(ms(d)),
            },
        },
        words,
    }
}

fn threshold(q: &Quantity) -> String {
    q.to_string()
}

fn step(a: &Action) -> Step {
    let line = |argv: &Vec<String>| CommandLine {
        argv: argv.clone(),
        shell: shell_line(argv.iter().map(String::as_str)),
        paste: paste_line(argv, a.user.as_deref()),
    };
    Step {
        run: a.run.iter().map(line).collect(),
        user: a.user.clone(),
        restart: a.restart.iter().map(ToString::to_string).collect(),
        verify: a.verify.as_ref().map(line),
        verify_contains: a.verify_contains.clone(),
        complete_within_ms: ms(a.complete_within),
    }
}

/// What an admin types to run `argv` as `user` would: `sudo -u USER -H -- …` (`-H`: the
/// user's HOME, where OpenClaw keeps its configuration).
fn paste_line(argv: &[String], user: Option<&str>) -> String {
    let cmd = shell_line(argv.iter().map(String::as_str));
    match user {
        Some(u) => format!("sudo -u {} -H -- {cmd}", shell_quote(u)),
        None => cmd,
    }
}

/// Words quoted for a POSIX shell and joined by spaces.
pub fn shell_line<'a>(words: impl IntoIterator<Item = &'a str>) -> String {
    words
        .into_iter()
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One word for a POSIX shell: as is when it has only characters no shell treats specially,
/// else in single quotes (a single quote inside becomes `'\''`). A word with a control
/// character is written `$'…'` (bash, zsh), so that the line stays one line.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c));
    if plain {
        return word.to_owned();
    }
    if word.chars().any(char::is_control) {
        let mut s = String::from("$'");
        for c in word.chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '\'' => s.push_str("\\'"),
                '\n' => s.push_str("\\n"),
                '\t' => s.push_str("\\t"),
                c if c.is_control() => {
                    let _ = write!(s, "\\x{:02x}", u32::from(c));
                }
                c => s.push(c),
            }
        }
        s.push('\'');
        return s;
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn mode_words(mode: Mode) -> &'static str {
    match mode {
        Mode::Act => "act: runs its actions and holds its units",
        Mode::Advise => "advise: logs and exports what it would do; runs nothing and holds nothing",
    }
}

fn render_guard(s: &mut String, unit: &str, g: &GuardRow) {
    let _ = writeln!(s, "{unit}: guard {} ({})", g.name, g.signal);
    let _ = writeln!(s, "  watches   {}", g.watches);
    let _ = writeln!(
        s,
        "  sampled   every {}, each within {}",
        human(Duration::from_millis(g.every_ms)),
        human(Duration::from_millis(g.timeout_ms))
    );
    let _ = writeln!(s, "  trips     when {}", g.trip.words);
    let _ = writeln!(s, "  clears    when {}", g.clear.words);
    render_live(s, g.live.as_ref());
    match (&g.switch, g.mode) {
        (Some(w), _) => {
            let _ = writeln!(
                s,
                "  acts      through switch {w} (its mode, holds and actions)"
            );
        }
        (None, Some(mode)) => render_effects(s, mode, &g.hold, &g.on_trip, &g.on_clear),
        (None, None) => {}
    }
}

fn render_switch(s: &mut String, unit: &str, w: &SwitchRow) {
    let _ = writeln!(s, "{unit}: switch {}", w.name);
    let _ = writeln!(s, "  guards    {}", w.guards.join(", "));
    let _ = writeln!(s, "  trips     {}", w.trips);
    let _ = writeln!(s, "  clears    {}", w.clears);
    render_live(s, w.live.as_ref());
    render_effects(s, w.mode, &w.hold, &w.on_trip, &w.on_clear);
}

fn render_live(s: &mut String, live: Option<&GuardLive>) {
    if let Some(l) = live {
        let _ = write!(s, "  now       {}", l.state);
        if let Some(v) = &l.last_value {
            let _ = write!(s, ", last {v}");
        }
        if let Some(w) = &l.window {
            let _ = write!(s, ", window {w}");
        }
        s.push('\n');
    }
}

fn render_effects(
    s: &mut String,
    mode: Mode,
    hold: &[String],
    on_trip: &Option<Step>,
    on_clear: &Option<Step>,
) {
    let _ = writeln!(s, "  mode      {}", mode_words(mode));
    if !hold.is_empty() {
        let _ = writeln!(
            s,
            "  holds     {} (not started while tripped; running ones are not stopped)",
            hold.join(", ")
        );
    }
    let advise = mode == Mode::Advise;
    for (title, st) in [("on trip", on_trip), ("on clear (the way back)", on_clear)] {
        match st {
            Some(st) => render_step(s, title, st, advise),
            None => {
                let _ = writeln!(s, "  {title}: nothing runs");
            }
        }
    }
}

fn render_step(s: &mut String, title: &str, st: &Step, advise: bool) {
    let _ = writeln!(
        s,
        "  {title}{}, complete within {}, as {}:",
        if advise {
            ", advised only (not run)"
        } else {
            ""
        },
        human(Duration::from_millis(st.complete_within_ms)),
        st.user.as_deref().map_or(
            "launchgraph's own user (root for the LaunchDaemon)".to_owned(),
            |u| { format!("user {u}") }
        )
    );
    for (i, c) in st.run.iter().enumerate() {
        let _ = writeln!(s, "    {}. {}", i + 1, c.paste);
    }
    if !st.restart.is_empty() {
        let _ = writeln!(
            s,
            "    then restart, in dependency order: {}",
            st.restart.join(", ")
        );
    }
    match &st.verify {
        Some(v) => {
            let _ = writeln!(s, "    verify: {}", v.paste);
            let _ = match &st.verify_contains {
                Some(t) => writeln!(
                    s,
                    "      must exit 0 and print {t:?} (polled until it does, within the time box)"
                ),
                None => writeln!(
                    s,
                    "      must exit 0 (polled until it does, within the time box)"
                ),
            };
        }
        None => {
            let _ = writeln!(s, "    verify: none (done when the commands succeed)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_a_shell_would_misread_them() {
        assert_eq!(
            shell_quote("/opt/homebrew/bin/openclaw"),
            "/opt/homebrew/bin/openclaw"
        );
        assert_eq!(
            shell_quote("anthropic/claude-sonnet-4-6"),
            "anthropic/claude-sonnet-4-6"
        );
        assert_eq!(shell_quote("ollama/llama3.1:8b"), "ollama/llama3.1:8b");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
        assert_eq!(shell_quote("*"), "'*'");
        assert_eq!(shell_quote("a\nb'c"), r"$'a\nb\'c'");
        assert_eq!(
            paste_line(&["/bin/echo".into(), "x y".into()], Some("openclaw")),
            "sudo -u openclaw -H -- /bin/echo 'x y'"
        );
    }
}
