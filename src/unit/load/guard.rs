//! Reading `[[guard]]` and `[[switch]]` tables into [`Guards`].
//!
//! The grammar is in docs/units.md ("Guards"). Like the rest of the loader, one pass reports
//! every mistake at its place; threshold values are parsed here, once, into typed
//! [`Quantity`]s and checked against what the guard's signal measures, and every unit a guard
//! holds or restarts is checked against the unit files of the directory.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{Cx, GuardTarget, MAX_PERIOD, MAX_TIMEOUT, Section, Table, TransposeOpt};
use crate::diag::closest;
use crate::unit::UnitName;
use crate::unit::guard::{
    Action, Direction, Guard, GuardName, Guards, JsonSelect, KeepAlive, LlmApi, Measure, Mode,
    Quantity, QueueSource, Signal, SignalKind, Stat, StatWindow, Switch, When, Window,
};

const GUARD: Section = Section {
    path: "guard",
    groups: &[
        &["name", "signal", "every", "timeout"],
        SIGNAL_PARAMS,
        &[
            "above",
            "below",
            "clear-below",
            "clear-above",
            "for",
            "samples",
            "clear-for",
            "clear-samples",
            "stat",
            "window",
        ],
        &["mode", "hold", "on-trip", "on-clear"],
    ],
};
/// The keys that configure one kind of signal; [`param_signals`] says which.
const SIGNAL_PARAMS: &[&str] = &[
    "url",
    "model",
    "api",
    "keep-alive",
    "idle-only",
    "command",
    "lane",
    "field",
    "json-pointer",
    "prometheus",
    "metric",
    "labels",
    "path",
];
const SWITCH: Section = Section {
    path: "switch",
    groups: &[&[
        "name", "guards", "when", "mode", "hold", "on-trip", "on-clear",
    ]],
};
const ACTION: Section = Section {
    path: "on-trip",
    groups: &[&[
        "run",
        "user",
        "restart",
        "verify",
        "verify-contains",
        "complete-within",
    ]],
};

/// The signals a parameter key applies to.
fn param_signals(key: &str) -> &'static [SignalKind] {
    match key {
        "url" | "model" | "api" | "keep-alive" | "idle-only" => &[SignalKind::Ttft],
        "command" => &[SignalKind::QueueDepth, SignalKind::Exec],
        "prometheus" | "metric" | "labels" | "lane" | "field" | "json-pointer" => {
            &[SignalKind::QueueDepth]
        }
        "path" => &[SignalKind::DiskFree],
        _ => &[],
    }
}

/// The most samples a statistic's window may hold at its guard's `every`: a bound on what a
/// guard keeps in memory (about 160 KiB).
pub(crate) const MAX_WINDOW_SAMPLES: u64 = 10_000;
/// The largest `samples` or `clear-samples`.
const MAX_SAMPLES: i64 = 10_000;
/// The Ollama API's default address, where a `ttft` guard without `url` probes.
const DEFAULT_TTFT_URL: &str = "http://127.0.0.1:11434";

/// What [`guard`] learned beyond the [`Guard`] itself: where its action keys are written, so
/// that a guard in a switch can be told its actions belong to the switch.
struct Parsed {
    guard: Option<Guard>,
    name: Option<GuardName>,
    name_span: Option<Range<usize>>,
    own_keys: Vec<(&'static str, Range<usize>)>,
}

/// The unit being read, the unit files of its directory, and the units its guards act on.
struct Scope<'a> {
    unit: &'a UnitName,
    known: &'a HashSet<UnitName>,
    targets: &'a mut Vec<GuardTarget>,
}

/// The names taken so far in a unit (with what took them), and each switch's guards.
#[derive(Default)]
struct Seen {
    names: Vec<(GuardName, &'static str)>,
    /// (guard, switch)
    members: Vec<(GuardName, GuardName)>,
}

/// Reads the unit's `guard` and `switch` arrays. `None` when any of them had an error.
pub(super) fn guards(
    cx: &mut Cx<'_>,
    top: &Table<'_, '_>,
    unit: &UnitName,
    known: &HashSet<UnitName>,
    targets: &mut Vec<GuardTarget>,
) -> Option<Guards> {
    let before = cx.diags.len();
    let mut scope = Scope {
        unit,
        known,
        targets,
    };
    let mut out = Guards::default();
    let mut parsed = Vec::new();
    if let Some(v) = top.get("guard") {
        for (i, (item, span)) in tables_of(cx, v, "guard").into_iter().enumerate() {
            parsed.push(guard(cx, item, span, i, &mut scope));
        }
    }
    let mut seen = Seen::default();
    for p in &parsed {
        if let (Some(n), Some(span)) = (&p.name, &p.name_span) {
            unique(cx, &mut seen.names, n, "guard", span.clone());
        }
    }
    let guard_names: Vec<&str> = parsed
        .iter()
        .filter_map(|p| p.name.as_ref().map(GuardName::as_str))
        .collect();
    if let Some(v) = top.get("switch") {
        for (i, (item, span)) in tables_of(cx, v, "switch").into_iter().enumerate() {
            let t = Table::new(&SWITCH, item, span.clone());
            let sw = switch(cx, t, i, &mut scope, &guard_names, &mut seen);
            out.switches.extend(sw);
        }
    }
    for p in &parsed {
        let Some(n) = &p.name else { continue };
        let Some((_, sw)) = seen.members.iter().find(|(g, _)| g == n) else {
            continue;
        };
        for (key, span) in &p.own_keys {
            let full = format!("guard.{n}.{key}");
            let d = cx
                .map
                .diagnostic(
                    cx.file,
                    span.clone(),
                    Some(&full),
                    format!(
                        "`{full}`: guard {:?} is in switch {:?}, which owns `{key}` for its guards",
                        n.as_str(),
                        sw.as_str()
                    ),
                )
                .with_hint(format!(
                    "move `{key}` to the [[switch]] named {:?}",
                    sw.as_str()
                ));
            cx.diags.push(d);
        }
    }
    out.guards = parsed.into_iter().filter_map(|p| p.guard).collect();
    (cx.diags.len() == before).then_some(out)
}

/// Reports a name used twice among a unit's guards and switches.
fn unique(
    cx: &mut Cx<'_>,
    names: &mut Vec<(GuardName, &'static str)>,
    n: &GuardName,
    kind: &'static str,
    span: Range<usize>,
) {
    if let Some((_, first)) = names.iter().find(|(m, _)| m == n) {
        let full = format!("{kind}.{n}.name");
        let d = cx
            .map
            .diagnostic(
                cx.file,
                span,
                Some(&full),
                format!(
                    "`{full}`: the name {:?} is already used by a {first} of this unit",
                    n.as_str()
                ),
            )
            .with_hint(
                "guards and switches of a unit need distinct names: logs, status and metrics tell them apart by name",
            );
        cx.diags.push(d);
    } else {
        names.push((n.clone(), kind));
    }
}

/// The tables of `guard = [...]` / `[[guard]]`.
fn tables_of<'t, 'i>(
    cx: &mut Cx<'_>,
    v: &'t Spanned<DeValue<'i>>,
    key: &str,
) -> Vec<(&'t DeTable<'i>, Range<usize>)> {
    let expected = format!("an array of tables: write each one as [[{key}]]");
    let Some(arr) = cx.array(v, key, &expected) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in arr.iter() {
        match item.get_ref() {
            DeValue::Table(t) => out.push((t, item.span())),
            _ => cx.wrong_type(item, key, &expected),
        }
    }
    out
}

/// The name of the i-th table of a kind, and the prefix its keys are named with.
fn name_of(
    cx: &mut Cx<'_>,
    t: &Table<'_, '_>,
    kind: &str,
    i: usize,
) -> (Option<GuardName>, Option<Range<usize>>, String) {
    let fallback = format!("{kind}[{i}]");
    let Some(v) = t.get("name") else {
        let d = cx
            .at(
                t.span.start,
                Some(&format!("{fallback}.name")),
                format!("[[{kind}]] number {} is missing `name`", i + 1),
            )
            .with_hint(format!(
                "add `name = \"...\"`, unique in the unit, e.g. name = \"ttft\": logs, status and metrics name the {kind} by it"
            ));
        cx.diags.push(d);
        return (None, None, fallback);
    };
    let key = format!("{fallback}.name");
    let Some(s) = cx.string(v, &key) else {
        return (None, None, fallback);
    };
    match GuardName::parse(&s) {
        Ok(n) => {
            let prefix = format!("{kind}.{n}");
            (Some(n), Some(v.span()), prefix)
        }
        Err(e) => {
            cx.err(v, &key, format!("{s:?} is not a {kind} name: {e}"), None);
            (None, None, fallback)
        }
    }
}

fn guard(
    cx: &mut Cx<'_>,
    item: &DeTable<'_>,
    span: Range<usize>,
    i: usize,
    scope: &mut Scope<'_>,
) -> Parsed {
    let before = cx.diags.len();
    let t = Table::new(&GUARD, item, span.clone());
    let (name, name_span, prefix) = name_of(cx, &t, "guard", i);
    let place = match &name {
        Some(n) => format!("[[guard]] {:?}", n.as_str()),
        None => format!("[[guard]] number {}", i + 1),
    };
    let t = t.named(prefix, place);
    let who = name.as_ref().map_or_else(
        || format!("guard number {}", i + 1),
        |n| format!("guard {:?}", n.as_str()),
    );

    // The signal, then its parameters.
    let kind = t
        .required(
            cx,
            "signal",
            "one of ttft, queue-depth, swap-out-rate, memory-pressure, disk-free, exec",
        )
        .and_then(|v| {
            let s = cx.string(v, &t.key("signal"))?;
            match SignalKind::parse(&s) {
                Some(k) => Some(k),
                None => {
                    let all: Vec<&str> = SignalKind::ALL.iter().map(|k| k.as_str()).collect();
                    let hint = match closest(&s, &all) {
                        Some(c) => format!("did you mean {c:?}?"),
                        None => format!("expected one of: {}", all.join(", ")),
                    };
                    cx.err(
                        v,
                        &t.key("signal"),
                        format!("{s:?} is not a signal"),
                        Some(&hint),
                    );
                    None
                }
            }
        });
    if let Some(kind) = kind {
        for key in SIGNAL_PARAMS {
            let owners = param_signals(key);
            if let Some(v) = t.get(key)
                && !owners.contains(&kind)
            {
                let names: Vec<&str> = owners.iter().map(|k| k.as_str()).collect();
                cx.err(
                    v,
                    &t.key(key),
                    format!(
                        "`{key}` applies only to a {} signal; this guard's signal is {:?}",
                        names.join(" or "),
                        kind.as_str()
                    ),
                    Some("remove it, or change `signal`"),
                );
            }
        }
    }
    let signal = kind.and_then(|k| signal(cx, &t, k));

    let every = kind.and_then(|k| {
        let every = t.positive_duration(cx, "every", k.default_every(), MAX_TIMEOUT)?;
        if every < k.min_every() {
            let v = t
                .get("every")
                .expect("only a written value is below the minimum");
            cx.err(
                v,
                &t.key("every"),
                format!(
                    "{} is shorter than the minimum of {} for a {k} signal",
                    humantime::format_duration(every),
                    humantime::format_duration(k.min_every())
                ),
                Some(&format!(
                    "write at least \"{}\"",
                    humantime::format_duration(k.min_every())
                )),
            );
            return None;
        }
        Some(every)
    });
    let timeout =
        kind.and_then(|k| t.positive_duration(cx, "timeout", k.default_timeout(), MAX_TIMEOUT));

    // Thresholds.
    let measure = kind.map(SignalKind::measure);
    let trip = threshold_pair(cx, &t, measure);
    if let (Some((dir, q, v)), Some(k), Some(to)) = (&trip, kind, timeout)
        && k == SignalKind::Ttft
        && *dir == Direction::Above
        && to.as_secs_f64() <= q.canonical()
    {
        cx.err(
            v,
            &t.key("above"),
            format!(
                "{q} is not below the probe's `timeout` ({}): a probe cut at its timeout counts as a sample equal to it, so the guard could never trip",
                humantime::format_duration(to)
            ),
            Some("raise `timeout` above the threshold, or lower the threshold"),
        );
    }
    let clear = trip
        .as_ref()
        .map(|(dir, q, _)| clear_threshold(cx, &t, *dir, q));

    // Windows.
    let stat = stat_window(cx, &t, every);
    let default_window = Window::Samples(if t.get("stat").is_some() { 1 } else { 3 });
    let trip_window = window(cx, &t, "for", "samples", default_window);
    let clear_window = match trip_window {
        Some(w) => window(cx, &t, "clear-for", "clear-samples", w),
        None => {
            let _ = window(cx, &t, "clear-for", "clear-samples", default_window);
            None
        }
    };

    let Acting {
        mode,
        hold,
        on_trip,
        on_clear,
    } = acting(cx, &t, &who, scope);
    let own_keys = ["mode", "hold", "on-trip", "on-clear"]
        .into_iter()
        .filter_map(|k| {
            t.table
                .iter()
                .find(|(key, _)| key.get_ref() == k)
                .map(|(key, _)| (k, key.span()))
        })
        .collect();
    t.finish(cx);

    let guard = (|| {
        if cx.diags.len() != before {
            return None;
        }
        let (direction, trip, _) = trip?;
        let (clear, clear_is_default) = clear??;
        Some(Guard {
            name: name.clone()?,
            signal: signal?,
            every: every?,
            timeout: timeout?,
            direction,
            trip,
            clear,
            clear_is_default,
            trip_window: trip_window?,
            clear_window: clear_window?,
            stat: stat?,
            mode: mode?,
            hold: hold?.unwrap_or_default(),
            on_trip: on_trip?,
            on_clear: on_clear?,
        })
    })();
    Parsed {
        guard,
        name,
        name_span,
        own_keys,
    }
}

fn signal(cx: &mut Cx<'_>, t: &Table<'_, '_>, kind: SignalKind) -> Option<Signal> {
    match kind {
        SignalKind::Ttft => {
            let (url, addr) = match t.get("url") {
                Some(v) => http_url(cx, v, &t.key("url"))?,
                None => super::parse_http_url(DEFAULT_TTFT_URL).expect("a valid default"),
            };
            let model = t.nonempty_string(cx, "model");
            let api = match t.get("api") {
                Some(v) => cx.string(v, &t.key("api")).and_then(|s| match s.as_str() {
                    "ollama" => Some(LlmApi::Ollama),
                    "openai" => Some(LlmApi::Openai),
                    _ => {
                        cx.err(
                            v,
                            &t.key("api"),
                            format!("{s:?} is not an API: expected \"ollama\" or \"openai\""),
                            Some("\"ollama\" for Ollama's /api; \"openai\" for an OpenAI-compatible /v1 server such as llama.cpp's"),
                        );
                        None
                    }
                }),
                None => Some(LlmApi::Ollama),
            };
            let keep_alive = t
                .get("keep-alive")
                .map(|v| {
                    let key = t.key("keep-alive");
                    match v.get_ref() {
                        DeValue::String(s) if s.as_ref() == "forever" => Some(KeepAlive::Forever),
                        DeValue::Integer(_) if cx.int(v, &key) == Some(-1) => {
                            Some(KeepAlive::Forever)
                        }
                        DeValue::Integer(_) => {
                            cx.err(
                                v,
                                &key,
                                "expected a duration string or \"forever\"".into(),
                                Some("e.g. keep-alive = \"15m\", as the gateway sends it; -1 and \"forever\" keep the model loaded"),
                            );
                            None
                        }
                        _ => cx.duration(v, &key, MAX_PERIOD).map(KeepAlive::For),
                    }
                })
                .transpose_opt();
            let idle_only = boolean(cx, t, "idle-only", true);
            Some(Signal::Ttft {
                url,
                addr,
                model: model.ok()?,
                api: api?,
                keep_alive: keep_alive?,
                idle_only: idle_only?,
            })
        }
        SignalKind::QueueDepth => {
            let command = t.get("command");
            let prom = t.get("prometheus");
            match (command, prom) {
                (Some(c), None) => {
                    let select = json_select(cx, t);
                    for key in ["metric", "labels"] {
                        if let Some(v) = t.get(key) {
                            cx.err(
                                v,
                                &t.key(key),
                                format!("`{key}` applies only with `prometheus`"),
                                Some("remove it: the command prints the depth itself"),
                            );
                        }
                    }
                    let command = cx.argv(c, &t.key("command"))?;
                    Some(Signal::QueueDepth(QueueSource::Command {
                        command,
                        select: select?,
                    }))
                }
                (None, Some(p)) => {
                    for key in ["lane", "field", "json-pointer"] {
                        if let Some(v) = t.get(key) {
                            cx.err(
                                v,
                                &t.key(key),
                                format!("`{key}` applies only with `command`: it picks a number from the command's JSON"),
                                Some("remove it; `metric` and `labels` pick the series"),
                            );
                        }
                    }
                    let url = http_url(cx, p, &t.key("prometheus"));
                    let metric = t
                        .required(
                            cx,
                            "metric",
                            "the metric's name, e.g. \"llamacpp:requests_deferred\"",
                        )
                        .and_then(|v| {
                            let s = cx.string(v, &t.key("metric"))?;
                            if metric_name(&s) {
                                Some(s)
                            } else {
                                cx.err(
                                    v,
                                    &t.key("metric"),
                                    format!("{s:?} is not a Prometheus metric name"),
                                    Some("a name matches [a-zA-Z_:][a-zA-Z0-9_:]*, e.g. \"llamacpp:requests_deferred\""),
                                );
                                None
                            }
                        });
                    let labels = match t.get("labels") {
                        Some(v) => labels(cx, v, &t.key("labels")),
                        None => Some(BTreeMap::new()),
                    };
                    let (url, addr) = url?;
                    Some(Signal::QueueDepth(QueueSource::Prometheus {
                        url,
                        addr,
                        metric: metric?,
                        labels: labels?,
                    }))
                }
                (Some(_), Some(p)) => {
                    cx.err(
                        p,
                        &t.key("prometheus"),
                        "a queue-depth guard reads `command` or `prometheus`, not both".into(),
                        Some("keep one"),
                    );
                    None
                }
                (None, None) => {
                    let d = cx
                        .at(
                            t.span.start,
                            Some(&t.key("command")),
                            format!("{} has signal \"queue-depth\" and needs `command` or `prometheus`", t.place()),
                        )
                        .with_hint("e.g. command = [\"/usr/local/libexec/lanes-queued\", \"main\"] (prints a number), or prometheus = \"http://127.0.0.1:8080/metrics\" with metric = \"llamacpp:requests_deferred\"");
                    cx.diags.push(d);
                    None
                }
            }
        }
        SignalKind::SwapOutRate => Some(Signal::SwapOutRate),
        SignalKind::MemoryPressure => Some(Signal::MemoryPressure),
        SignalKind::DiskFree => {
            let path = t
                .required(
                    cx,
                    "path",
                    "a path on the volume to watch, e.g. the Ollama models directory",
                )
                .and_then(|v| cx.abs_path(v, &t.key("path")))?;
            Some(Signal::DiskFree { path })
        }
        SignalKind::Exec => {
            let command = t
                .required(
                    cx,
                    "command",
                    "the argv of a command that prints one number, e.g. [\"/usr/local/bin/depth\"]",
                )
                .and_then(|v| cx.argv(v, &t.key("command")))?;
            Some(Signal::Exec { command })
        }
    }
}

fn http_url(
    cx: &mut Cx<'_>,
    v: &Spanned<DeValue<'_>>,
    key: &str,
) -> Option<(String, std::net::SocketAddr)> {
    let s = cx.string(v, key)?;
    match super::parse_http_url(&s) {
        Ok((_, addr)) if !addr.ip().is_loopback() => {
            cx.err(
                v,
                key,
                format!("{s:?}: {} is not a loopback address", addr.ip()),
                Some("guards read services on this host only: write http://127.0.0.1:PORT/... or http://[::1]:PORT/..."),
            );
            None
        }
        Ok(x) => Some(x),
        Err((e, hint)) => {
            cx.err(v, key, e, Some(hint));
            None
        }
    }
}

/// `lane` (with `field`, default `queuedCount`) or `json-pointer`, for a queue-depth command.
/// Outer `None`: invalid.
fn json_select(cx: &mut Cx<'_>, t: &Table<'_, '_>) -> Option<Option<JsonSelect>> {
    let lane = t.nonempty_string(cx, "lane");
    let field = t.nonempty_string(cx, "field");
    let pointer = t.get("json-pointer").map(|v| {
        let key = t.key("json-pointer");
        let s = cx.string(v, &key)?;
        if !s.is_empty() && !s.starts_with('/') {
            cx.err(
                v,
                &key,
                format!("{s:?} is not a JSON pointer: it starts with '/'"),
                Some("e.g. \"/lanes/0/queuedCount\" (RFC 6901)"),
            );
            return None;
        }
        Some(s)
    });
    if let (Some(_), Some(v)) = (t.get("lane"), t.get("json-pointer")) {
        cx.err(
            v,
            &t.key("json-pointer"),
            "pick the number with `lane` or with `json-pointer`, not both".into(),
            Some("keep one"),
        );
        return None;
    }
    if let (None, Some(v)) = (t.get("lane"), t.get("field")) {
        cx.err(
            v,
            &t.key("field"),
            "`field` is the field of a `lane`, and there is no `lane`".into(),
            Some("add lane = \"main\", or use json-pointer"),
        );
        return None;
    }
    let (lane, field) = (lane.ok()?, field.ok()?);
    match (lane, pointer) {
        (Some(lane), _) => Some(Some(JsonSelect::Lane {
            lane,
            field: field.unwrap_or_else(|| "queuedCount".into()),
        })),
        (None, Some(p)) => Some(Some(JsonSelect::Pointer(p?))),
        (None, None) => Some(None),
    }
}

fn metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn labels(
    cx: &mut Cx<'_>,
    v: &Spanned<DeValue<'_>>,
    key: &str,
) -> Option<BTreeMap<String, String>> {
    let DeValue::Table(t) = v.get_ref() else {
        cx.wrong_type(v, key, "a table of strings, e.g. { lane = \"main\" }");
        return None;
    };
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, val) in t.iter() {
        let name = k.get_ref().to_string();
        let item_key = format!("{key}.{name}");
        let valid = {
            let mut c = name.chars();
            c.next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if !valid {
            let d = cx
                .map
                .diagnostic(
                    cx.file,
                    k.span(),
                    Some(&item_key),
                    format!("`{item_key}`: {name:?} is not a Prometheus label name"),
                )
                .with_hint("a label name matches [a-zA-Z_][a-zA-Z0-9_]*");
            cx.diags.push(d);
            ok = false;
            continue;
        }
        match cx.string(val, &item_key) {
            Some(s) => {
                out.insert(name, s);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn boolean(cx: &mut Cx<'_>, t: &Table<'_, '_>, key: &str, default: bool) -> Option<bool> {
    match t.get(key) {
        None => Some(default),
        Some(v) => match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                cx.wrong_type(v, &t.key(key), "true or false");
                None
            }
        },
    }
}

/// A threshold value: a TOML number is a plain number; a string is parsed by
/// [`Quantity::parse`]. Checked against what the signal measures, when it is known.
fn quantity(
    cx: &mut Cx<'_>,
    v: &Spanned<DeValue<'_>>,
    key: &str,
    measure: Option<Measure>,
    kind_name: Option<&str>,
) -> Option<Quantity> {
    let q = match v.get_ref() {
        DeValue::Integer(_) => {
            let n = cx.int(v, key)?;
            if n < 0 {
                cx.err(v, key, format!("{n} is negative"), None);
                return None;
            }
            Quantity::Number(n as f64)
        }
        DeValue::Float(f) => match f.as_str().parse::<f64>() {
            Ok(x) if x.is_finite() && (0.0..=crate::unit::guard::MAX_NUMBER).contains(&x) => {
                Quantity::Number(x)
            }
            _ => {
                cx.err(
                    v,
                    key,
                    format!("{} is not a usable threshold", f.as_str()),
                    Some("write a finite number from 0 to 1e15"),
                );
                return None;
            }
        },
        DeValue::String(s) => match Quantity::parse(s) {
            Ok(q) => q,
            Err(e) => {
                let hint = measure.map(|m| format!("expected {}", m.expected()));
                cx.err(v, key, e, hint.as_deref());
                return None;
            }
        },
        _ => {
            let expected = measure.map_or("a threshold", Measure::expected);
            cx.wrong_type(v, key, expected);
            return None;
        }
    };
    if let (Some(m), Some(k)) = (measure, kind_name)
        && !q.fits(m)
    {
        let written = match v.get_ref() {
            DeValue::String(s) => format!("{s:?}"),
            _ => q.to_string(),
        };
        cx.err(
            v,
            key,
            format!(
                "{written} is {}, but a {k} signal is {}",
                q.noun(),
                m.noun()
            ),
            Some(&format!("expected {}", m.expected())),
        );
        return None;
    }
    Some(q)
}

/// `above` or `below`: exactly one.
fn threshold_pair<'t, 'i>(
    cx: &mut Cx<'_>,
    t: &Table<'t, 'i>,
    measure: Option<Measure>,
) -> Option<(Direction, Quantity, &'t Spanned<DeValue<'i>>)> {
    let kind = t
        .get("signal")
        .and_then(|v| v.get_ref().as_str())
        .and_then(SignalKind::parse);
    let kind_name = kind.map(SignalKind::as_str);
    match (t.get("above"), t.get("below")) {
        (Some(v), None) => {
            quantity(cx, v, &t.key("above"), measure, kind_name).map(|q| (Direction::Above, q, v))
        }
        (None, Some(v)) => {
            quantity(cx, v, &t.key("below"), measure, kind_name).map(|q| (Direction::Below, q, v))
        }
        (Some(_), Some(b)) => {
            cx.err(
                b,
                &t.key("below"),
                "a guard trips `above` or `below` a threshold, not both".into(),
                Some("keep one; for a band, write two guards"),
            );
            None
        }
        (None, None) => {
            let example = match measure {
                Some(Measure::Latency) => "above = \"2.5s\"",
                Some(Measure::Rate) => "above = \"8MiB/s\"",
                Some(Measure::Percent) => "below = \"12%\"",
                Some(Measure::Pressure) => "above = \"10%\"",
                _ => "above = 3",
            };
            let d = cx
                .at(
                    t.span.start,
                    Some(&t.key("above")),
                    format!("{} needs a threshold: `above` or `below`", t.place()),
                )
                .with_hint(format!("e.g. {example}"));
            cx.diags.push(d);
            None
        }
    }
}

/// `clear-below` (for `above`) or `clear-above` (for `below`): the clear threshold and whether
/// it is the default (the trip threshold). Outer `None`: invalid.
fn clear_threshold(
    cx: &mut Cx<'_>,
    t: &Table<'_, '_>,
    dir: Direction,
    trip: &Quantity,
) -> Option<(Quantity, bool)> {
    let (key, wrong) = match dir {
        Direction::Above => ("clear-below", "clear-above"),
        Direction::Below => ("clear-above", "clear-below"),
    };
    if let Some(v) = t.get(wrong) {
        cx.err(
            v,
            &t.key(wrong),
            format!(
                "this guard trips `{}` its threshold, so it clears with `{key}`",
                dir.as_str()
            ),
            Some(&format!("write `{key}`")),
        );
        return None;
    }
    let Some(v) = t.get(key) else {
        return Some((*trip, true));
    };
    let kind_name = t
        .get("signal")
        .and_then(|v| v.get_ref().as_str())
        .and_then(SignalKind::parse);
    let q = quantity(
        cx,
        v,
        &t.key(key),
        kind_name.map(SignalKind::measure),
        kind_name.map(SignalKind::as_str),
    )?;
    if !q.same_kind(trip) {
        cx.err(
            v,
            &t.key(key),
            format!(
                "{q} is {}, but the trip threshold {trip} is {}",
                q.noun(),
                trip.noun()
            ),
            Some("write both thresholds in the same kind of unit"),
        );
        return None;
    }
    let inverted = match dir {
        Direction::Above => q.canonical() > trip.canonical(),
        Direction::Below => q.canonical() < trip.canonical(),
    };
    if inverted {
        let side = match dir {
            Direction::Above => "above",
            Direction::Below => "below",
        };
        cx.err(
            v,
            &t.key(key),
            format!(
                "{q} is {side} the trip threshold {trip}: the guard would count as clear while it still trips"
            ),
            Some(&format!(
                "`{key}` is the far side of a band: at most `above` for an `above` guard, at least `below` for a `below` guard; leave it out to clear at the trip threshold"
            )),
        );
        return None;
    }
    Some((q, false))
}

/// `for`/`samples` (or `clear-for`/`clear-samples`): at most one; `default` when neither.
fn window(
    cx: &mut Cx<'_>,
    t: &Table<'_, '_>,
    lasting: &str,
    samples: &str,
    default: Window,
) -> Option<Window> {
    match (t.get(lasting), t.get(samples)) {
        (Some(_), Some(v)) => {
            cx.err(
                v,
                &t.key(samples),
                format!("write `{lasting}` (a duration) or `{samples}` (a count), not both"),
                Some("keep one"),
            );
            None
        }
        (Some(_), None) => t
            .positive_duration(cx, lasting, Duration::ZERO, MAX_PERIOD)
            .map(Window::Lasting),
        (None, Some(_)) => t
            .integer(cx, samples, 1, 1, MAX_SAMPLES)
            .map(|n| Window::Samples(n as u32)),
        (None, None) => Some(default),
    }
}

/// `stat` and `window`: both or neither. Outer `None`: invalid.
fn stat_window(
    cx: &mut Cx<'_>,
    t: &Table<'_, '_>,
    every: Option<Duration>,
) -> Option<Option<StatWindow>> {
    match (t.get("stat"), t.get("window")) {
        (None, None) => Some(None),
        (Some(_), None) => {
            let d = cx
                .at(
                    t.span.start,
                    Some(&t.key("window")),
                    format!("{} has `stat` but no `window`", t.place()),
                )
                .with_hint("add the window the statistic is taken over, e.g. window = \"2m\"");
            cx.diags.push(d);
            None
        }
        (None, Some(w)) => {
            cx.err(
                w,
                &t.key("window"),
                "`window` is the span of a statistic and needs `stat`".into(),
                Some("add stat = \"p50\" (or \"median\", \"p90\", \"max\", \"mean\"), or write `for` for how long the condition must hold"),
            );
            None
        }
        (Some(s), Some(w)) => {
            let stat = cx
                .string(s, &t.key("stat"))
                .and_then(|name| match Stat::parse(&name) {
                    Some(st) => Some(st),
                    None => {
                        let all = ["p50", "median", "p90", "max", "mean"];
                        let hint = match closest(&name, &all) {
                            Some(c) => format!("did you mean {c:?}?"),
                            None => format!("expected one of: {}", all.join(", ")),
                        };
                        cx.err(
                            s,
                            &t.key("stat"),
                            format!("{name:?} is not a statistic"),
                            Some(&hint),
                        );
                        None
                    }
                });
            let window = t.positive_duration(cx, "window", Duration::ZERO, MAX_TIMEOUT)?;
            if let Some(every) = every {
                if window < every {
                    cx.err(
                        w,
                        &t.key("window"),
                        format!(
                            "{} is shorter than `every` ({}): the window would hold one sample",
                            humantime::format_duration(window),
                            humantime::format_duration(every)
                        ),
                        Some("make the window several times `every`"),
                    );
                    return None;
                }
                let n = window.as_millis() / every.as_millis().max(1);
                if n > u128::from(MAX_WINDOW_SAMPLES) {
                    cx.err(
                        w,
                        &t.key("window"),
                        format!(
                            "{} at `every` = {} holds {n} samples, more than the {MAX_WINDOW_SAMPLES} a window may hold",
                            humantime::format_duration(window),
                            humantime::format_duration(every)
                        ),
                        Some("shorten the window or sample less often"),
                    );
                    return None;
                }
            }
            Some(Some(StatWindow {
                stat: stat?,
                window,
            }))
        }
    }
}

/// What a guard and a switch both say about acting: `mode`, `hold`, `on-trip`, `on-clear`.
/// Each field is `None` when invalid (said in `cx`), else whether it was given.
struct Acting {
    mode: Option<Mode>,
    hold: Option<Option<Vec<UnitName>>>,
    on_trip: Option<Option<Action>>,
    on_clear: Option<Option<Action>>,
}

fn acting(cx: &mut Cx<'_>, t: &Table<'_, '_>, who: &str, scope: &mut Scope<'_>) -> Acting {
    let mode = mode(cx, t);
    let hold = t
        .get("hold")
        .map(|v| units(cx, v, &t.key("hold"), who, "holds", scope))
        .transpose_opt();
    let on_trip = t
        .get("on-trip")
        .map(|v| action(cx, v, &t.key("on-trip"), who, scope))
        .transpose_opt();
    let on_clear = t
        .get("on-clear")
        .map(|v| action(cx, v, &t.key("on-clear"), who, scope))
        .transpose_opt();
    Acting {
        mode,
        hold,
        on_trip,
        on_clear,
    }
}

fn mode(cx: &mut Cx<'_>, t: &Table<'_, '_>) -> Option<Mode> {
    match t.get("mode") {
        None => Some(Mode::Act),
        Some(v) => cx.string(v, &t.key("mode")).and_then(|s| match s.as_str() {
            "act" => Some(Mode::Act),
            "advise" => Some(Mode::Advise),
            _ => {
                cx.err(
                    v,
                    &t.key("mode"),
                    format!("{s:?} is not a mode: expected \"act\" or \"advise\""),
                    Some("\"advise\" logs and exports what would be done and does nothing"),
                );
                None
            }
        }),
    }
}

/// Unit names a guard or switch acts on, each of which must be a unit file of the directory.
fn units(
    cx: &mut Cx<'_>,
    v: &Spanned<DeValue<'_>>,
    key: &str,
    who: &str,
    verb: &str,
    scope: &mut Scope<'_>,
) -> Option<Vec<UnitName>> {
    let before = cx.diags.len();
    let (names, at) = cx.unit_names(v, key);
    let all: Vec<&str> = scope.known.iter().map(UnitName::as_str).collect();
    for (n, (line, column)) in names.iter().zip(&at) {
        if scope.known.contains(n) {
            scope.targets.push(GuardTarget {
                unit: n.clone(),
                at: (*line, *column),
                key: key.to_string(),
                who: who.to_string(),
                verb: verb.to_string(),
            });
            continue;
        }
        let hint = match closest(n.as_str(), &all) {
            Some(c) => format!("did you mean {c:?}?"),
            None => format!("name a unit file of the directory (without .toml); {n} is not one"),
        };
        cx.diags.push(crate::diag::Diagnostic {
            file: cx.file.to_path_buf(),
            line: *line,
            column: *column,
            key: Some(key.to_string()),
            message: format!(
                "`{key}`: {who} of unit {:?} {verb} {:?}, which is not a unit",
                scope.unit.as_str(),
                n.as_str()
            ),
            hint: Some(hint),
        });
    }
    (cx.diags.len() == before).then_some(names)
}

fn action(
    cx: &mut Cx<'_>,
    v: &Spanned<DeValue<'_>>,
    key: &str,
    who: &str,
    scope: &mut Scope<'_>,
) -> Option<Action> {
    let DeValue::Table(table) = v.get_ref() else {
        cx.wrong_type(
            v,
            key,
            "a table, e.g. { run = [\"/opt/homebrew/bin/openclaw\", \"models\", \"set\", \"...\"] }",
        );
        return None;
    };
    let edge = key.rsplit('.').next().unwrap_or(key);
    let t = Table::new(&ACTION, table, v.span()).named(key.to_string(), format!("`{key}`"));
    let run = match t.get("run") {
        None => Some(Vec::new()),
        Some(r) => run_list(cx, r, &t.key("run")),
    };
    let user = t.nonempty_string(cx, "user");
    let restart = t
        .get("restart")
        .map(|r| {
            units(
                cx,
                r,
                &t.key("restart"),
                who,
                &format!("{edge} restarts"),
                scope,
            )
        })
        .transpose_opt();
    let verify = t
        .get("verify")
        .map(|r| cx.argv(r, &t.key("verify")))
        .transpose_opt();
    let contains = t.nonempty_string(cx, "verify-contains");
    if let (Some(c), None) = (t.get("verify-contains"), t.get("verify")) {
        cx.err(
            c,
            &t.key("verify-contains"),
            "`verify-contains` is what `verify` must print, and there is no `verify`".into(),
            Some("add verify = [\"/absolute/program\", ...]"),
        );
    }
    let within = t.positive_duration(
        cx,
        "complete-within",
        Action::DEFAULT_COMPLETE_WITHIN,
        MAX_TIMEOUT,
    );
    let empty = table.is_empty();
    t.finish(cx);
    if empty {
        cx.err(
            v,
            key,
            "the action is empty".into(),
            Some("give it `run`, `restart` or `verify`, or remove it"),
        );
        return None;
    }
    Some(Action {
        run: run?,
        user: user.ok()?,
        restart: restart?.unwrap_or_default(),
        verify: verify?,
        verify_contains: contains.ok()?,
        complete_within: within?,
    })
}

/// `run = ["/bin/x", "a"]` (one command) or `run = [["/bin/x"], ["/bin/y"]]` (several).
fn run_list(cx: &mut Cx<'_>, v: &Spanned<DeValue<'_>>, key: &str) -> Option<Vec<Vec<String>>> {
    let expected = "a command as an array of strings, or an array of such commands";
    let arr = cx.array(v, key, expected)?;
    match arr.iter().next().map(|x| x.get_ref()) {
        Some(DeValue::Array(_)) => {
            let mut out = Vec::new();
            let mut ok = true;
            for item in arr.iter() {
                match cx.argv(item, key) {
                    Some(a) => out.push(a),
                    None => ok = false,
                }
            }
            ok.then_some(out)
        }
        _ => cx.argv(v, key).map(|a| vec![a]),
    }
}

fn switch(
    cx: &mut Cx<'_>,
    t: Table<'_, '_>,
    i: usize,
    scope: &mut Scope<'_>,
    guard_names: &[&str],
    seen: &mut Seen,
) -> Option<Switch> {
    let before = cx.diags.len();
    let (name, name_span, prefix) = name_of(cx, &t, "switch", i);
    if let (Some(n), Some(span)) = (&name, name_span) {
        unique(cx, &mut seen.names, n, "switch", span);
    }
    let place = match &name {
        Some(n) => format!("[[switch]] {:?}", n.as_str()),
        None => format!("[[switch]] number {}", i + 1),
    };
    let t = t.named(prefix, place);
    let who = name.as_ref().map_or_else(
        || format!("switch number {}", i + 1),
        |n| format!("switch {:?}", n.as_str()),
    );
    let guards = t
        .required(
            cx,
            "guards",
            "the names of the unit's guards it combines, e.g. [\"ttft\", \"queue\"]",
        )
        .and_then(|v| {
            let key = t.key("guards");
            let arr = cx.array(
                v,
                &key,
                "an array of guard names, e.g. [\"ttft\", \"queue\"]",
            )?;
            let mut out: Vec<GuardName> = Vec::new();
            let mut ok = true;
            for item in arr.iter() {
                let Some(s) = cx.string(item, &key) else {
                    ok = false;
                    continue;
                };
                if !guard_names.contains(&s.as_str()) {
                    let hint = match closest(&s, guard_names) {
                        Some(c) => format!("did you mean {c:?}?"),
                        None if guard_names.is_empty() => "this unit has no [[guard]]".to_string(),
                        None => format!("this unit's guards: {}", guard_names.join(", ")),
                    };
                    cx.err(
                        item,
                        &key,
                        format!("{who} names {s:?}, which is not a guard of this unit"),
                        Some(&hint),
                    );
                    ok = false;
                    continue;
                }
                let n = GuardName::parse(&s).expect("a guard's name is valid");
                if out.contains(&n) {
                    cx.err(
                        item,
                        &key,
                        format!("{s:?} is listed twice"),
                        Some("remove the duplicate"),
                    );
                    ok = false;
                    continue;
                }
                if let Some(sw) = &name {
                    seen.members.push((n.clone(), sw.clone()));
                }
                out.push(n);
            }
            if ok && out.is_empty() {
                cx.err(v, &key, "a switch needs at least one guard".into(), None);
                ok = false;
            }
            ok.then_some(out)
        });
    let when = match t.get("when") {
        None => Some(When::All),
        Some(v) => cx.string(v, &t.key("when")).and_then(|s| match s.as_str() {
            "all" => Some(When::All),
            "any" => Some(When::Any),
            _ => {
                cx.err(
                    v,
                    &t.key("when"),
                    format!("{s:?} is not a combination: expected \"all\" or \"any\""),
                    None,
                );
                None
            }
        }),
    };
    let Acting {
        mode,
        hold,
        on_trip,
        on_clear,
    } = acting(cx, &t, &who, scope);
    t.finish(cx);
    if cx.diags.len() != before {
        return None;
    }
    Some(Switch {
        name: name?,
        guards: guards?,
        when: when?,
        mode: mode?,
        hold: hold?.unwrap_or_default(),
        on_trip: on_trip?,
        on_clear: on_clear?,
    })
}
