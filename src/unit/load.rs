//! Reading unit files: TOML text to validated [`Unit`]s, or every problem found.
//!
//! This module owns the unit file grammar: which keys exist, their types, their defaults, and
//! the messages and hints for each mistake. It walks the spanned TOML tree by hand rather than
//! through serde so that one pass reports *every* error in a file (serde stops at the first)
//! and each error points at the exact line and column of the offending key or value.
//!
//! Files are read one at a time, but each `requires` entry is checked here against the names
//! of every unit file in the directory (broken ones included), so that a requirement on no
//! unit, or on the unit itself, is reported at its place along with the file's other errors.
//! The checks that need every unit read first, two units driving one launchd label and
//! dependency cycles, are in [`crate::compile`].

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

use super::{
    AliveSpec, Domain, ExecSpec, ExternalSpec, Label, LaunchdSpec, PreflightSpec, Probe, ReadySpec,
    RestartPolicy, RestartSpec, Runner, Signal, Unit, UnitName,
};
use crate::diag::{Diagnostic, SourceMap, closest};
use crate::fsutil::ReadError;

mod guard;

/// A unit read from one file, with the source positions later cross-file checks point at.
#[derive(Debug, Clone)]
pub(crate) struct ParsedUnit {
    pub unit: Unit,
    /// For each entry of `requires`, where it is written (line, column).
    pub requires_at: Vec<(usize, usize)>,
    /// Where `[launchd] label` is written, for duplicate-label errors.
    pub label_at: Option<(usize, usize)>,
    /// Every unit a guard or switch holds or restarts, for the checks that need that unit read.
    pub guard_targets: Vec<GuardTarget>,
}

/// A unit named in a guard's `hold` or an action's `restart`, and where.
#[derive(Debug, Clone)]
pub(crate) struct GuardTarget {
    pub unit: UnitName,
    pub at: (usize, usize),
    /// The dotted key, e.g. `guard.disk.hold`.
    pub key: String,
    /// `guard "disk"` or `switch "fallback"`.
    pub who: String,
    /// `holds`, or `on-trip restarts` / `on-clear restarts`.
    pub verb: String,
}

impl GuardTarget {
    pub fn is_restart(&self) -> bool {
        self.verb != "holds"
    }
}

/// The outcome of reading a directory: the units that parsed, the names of every unit file
/// (including broken ones, so that a unit requiring a broken unit is not also told its
/// requirement does not exist), and the diagnostics.
#[derive(Debug, Default)]
pub(crate) struct DirContents {
    pub units: Vec<ParsedUnit>,
    pub names: HashSet<UnitName>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads every `*.toml` file of `dir` (hidden files and other names are ignored), sorted by
/// name, collecting all diagnostics.
pub(crate) fn read_dir(dir: &Path) -> DirContents {
    let mut out = DirContents::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                "create it, or point launchgraph at the right one with --units DIR or LAUNCHGRAPH_UNITS"
            } else {
                "check the directory's permissions"
            };
            out.diagnostics.push(
                Diagnostic::whole_file(dir, format!("cannot read the units directory: {e}"))
                    .with_hint(hint),
            );
            return out;
        }
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                out.diagnostics.push(Diagnostic::whole_file(
                    dir,
                    format!("cannot list the units directory: {e}"),
                ));
                continue;
            }
        };
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".toml") {
            continue;
        }
        // Directories are skipped (following symlinks: a unit file may be a link into a
        // shared tree). Anything else is read, and reading says what it is when it is not a
        // regular file: checked on the opened file, since it may be swapped after listing.
        if entry.file_type().is_ok_and(|t| t.is_dir())
            || std::fs::metadata(&path).is_ok_and(|m| m.is_dir())
        {
            continue;
        }
        files.push(path);
    }
    files.sort();
    if files.is_empty() && out.diagnostics.is_empty() {
        out.diagnostics.push(
            Diagnostic::whole_file(dir, "the units directory has no unit files (*.toml)")
                .with_hint("add one file per unit, e.g. ollama.toml; see the unit reference in docs/units.md"),
        );
    }
    // Names first: a requirement is checked against every unit file, broken or not.
    let mut named = Vec::with_capacity(files.len());
    for path in files {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        match UnitName::parse(&stem) {
            Ok(n) => {
                out.names.insert(n.clone());
                named.push((path, n));
            }
            Err(e) => out.diagnostics.push(
                Diagnostic::whole_file(&path, format!("bad unit name {stem:?}: {e}"))
                    .with_hint("the file stem is the unit's name: rename the file, e.g. to \"my-service.toml\""),
            ),
        }
    }
    for (path, name) in named {
        let bytes = match read_unit_file(&path) {
            Ok(b) => b,
            Err(d) => {
                out.diagnostics.push(d);
                continue;
            }
        };
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                let prefix = std::str::from_utf8(&e.as_bytes()[..valid]).unwrap_or("");
                let (line, column) = SourceMap::new(prefix).position(valid);
                out.diagnostics.push(Diagnostic {
                    file: path.clone(),
                    line,
                    column,
                    key: None,
                    message: format!(
                        "the unit file is not valid UTF-8 (invalid byte at offset {valid})"
                    ),
                    hint: Some("save the file as UTF-8 text".into()),
                });
                continue;
            }
        };
        if let Some(parsed) = parse_unit(name, &path, &text, &out.names, &mut out.diagnostics) {
            out.units.push(parsed);
        }
    }
    out
}

/// The most a unit file may hold; real ones are a few hundred bytes.
pub(crate) const MAX_UNIT_FILE_BYTES: u64 = 1 << 20;

/// The bytes of one listed unit file, read without blocking and with a bound: it may have
/// been replaced by a FIFO or a device since the directory was listed.
fn read_unit_file(path: &Path) -> Result<Vec<u8>, Diagnostic> {
    crate::fsutil::read_regular(path, MAX_UNIT_FILE_BYTES).map_err(|e| {
        let hint = match e {
            ReadError::Io(_) => "check the file's permissions: launchgraph must be able to read it",
            _ => "a unit file must be a plain TOML file",
        };
        Diagnostic::whole_file(path, format!("the unit file {}", e.describe("a unit file")))
            .with_hint(hint)
    })
}

/// Parses one unit file's text. Pushes every problem found to `diags`; returns the unit only
/// when the file had none.
///
/// `known` is the set of unit names in the directory; a requirement outside it is an error.
pub(crate) fn parse_unit(
    name: UnitName,
    file: &Path,
    text: &str,
    known: &HashSet<UnitName>,
    diags: &mut Vec<Diagnostic>,
) -> Option<ParsedUnit> {
    let map = SourceMap::new(text);
    let before = diags.len();
    let (root, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        for e in errors {
            let span = e.span().unwrap_or(0..0);
            diags.push(
                map.diagnostic(
                    file,
                    span,
                    None,
                    format!("TOML syntax error: {}", e.message().trim()),
                )
                .with_hint("see https://toml.io for the syntax"),
            );
        }
        return None;
    }
    let mut cx = Cx {
        file,
        map: &map,
        diags,
    };
    let root_span = root.span();
    let top = Table::new(&TOP, root.get_ref(), root_span);

    let description = top.string(&mut cx, "description");
    let (requires, requires_at) = match top.get("requires") {
        Some(v) => cx.unit_names(v, "requires"),
        None => (Vec::new(), Vec::new()),
    };
    for (dep, at) in requires.iter().zip(&requires_at) {
        let (message, hint) = if *dep == name {
            (
                format!("unit {:?} requires itself", name.as_str()),
                "remove it from `requires`".to_string(),
            )
        } else if !known.contains(dep) {
            let names: Vec<&str> = known.iter().map(UnitName::as_str).collect();
            let dir = file.parent().unwrap_or(Path::new("."));
            (
                format!(
                    "unit {:?} requires {:?}, which does not exist",
                    name.as_str(),
                    dep.as_str()
                ),
                match closest(dep.as_str(), &names) {
                    Some(c) => format!("did you mean {c:?}?"),
                    None => format!(
                        "add {dep}.toml to {}, or remove it from `requires`",
                        dir.display()
                    ),
                },
            )
        } else {
            continue;
        };
        cx.diags.push(Diagnostic {
            file: file.to_path_buf(),
            line: at.0,
            column: at.1,
            key: Some("requires".into()),
            message,
            hint: Some(hint),
        });
    }

    let launchd_v = top.get("launchd");
    let exec_v = top.get("exec");
    let external_v = top.get("external");
    let mut label_at = None;
    let given: Vec<(&str, &Spanned<DeValue<'_>>)> = [
        ("launchd", launchd_v),
        ("exec", exec_v),
        ("external", external_v),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let runner = match given.as_slice() {
        [] => {
            let d = cx
                .at(0, None, "a unit needs exactly one of [launchd], [exec] or [external]; it has none")
                .with_hint("add [exec] with `command = [\"/absolute/program\", ...]`, [launchd] with `label` and `plist`, or [external] for a service launchgraph only watches");
            cx.diags.push(d);
            None
        }
        [("launchd", l)] => cx.table(l, &LAUNCHD).and_then(|t| {
            let spec = launchd_spec(&mut cx, t);
            if spec.is_some() {
                label_at = t_label_at(&cx, l);
            }
            spec.map(Runner::Launchd)
        }),
        [("exec", e)] => cx
            .table(e, &EXEC)
            .and_then(|t| exec_spec(&mut cx, t).map(Runner::Exec)),
        [(_, x)] => cx
            .table(x, &EXTERNAL)
            .and_then(|t| external_spec(&mut cx, t).map(Runner::External)),
        several => {
            let names: Vec<String> = several.iter().map(|(k, _)| format!("[{k}]")).collect();
            let first = several
                .iter()
                .map(|(_, v)| v.span().start)
                .min()
                .unwrap_or(0);
            let listed = match names.as_slice() {
                [a, b] => format!("both {a} and {b}"),
                _ => format!(
                    "{} and {}",
                    names[..names.len() - 1].join(", "),
                    names[names.len() - 1]
                ),
            };
            let d = cx
                .at(first, None, format!("a unit has {listed}; it must have exactly one"))
                .with_hint("keep [launchd] to drive an existing launchd job, [exec] to have launchgraph spawn the process itself, or [external] to only watch a service something else runs");
            cx.diags.push(d);
            // Still check every table so every other mistake is reported too.
            for (k, v) in several {
                match *k {
                    "launchd" => {
                        let _ = cx.table(v, &LAUNCHD).map(|t| launchd_spec(&mut cx, t));
                    }
                    "exec" => {
                        let _ = cx.table(v, &EXEC).map(|t| exec_spec(&mut cx, t));
                    }
                    _ => {
                        let _ = cx.table(v, &EXTERNAL).map(|t| external_spec(&mut cx, t));
                    }
                }
            }
            None
        }
    };
    let external = matches!(given.as_slice(), [("external", _)]);

    let ready = top
        .get("ready")
        .and_then(|v| cx.table(v, &READY))
        .and_then(|t| ready_spec(&mut cx, t, external));
    let alive = top
        .get("alive")
        .and_then(|v| cx.table(v, &ALIVE))
        .and_then(|t| alive_spec(&mut cx, t));
    let restart = match top.get("restart") {
        Some(v) if external => {
            cx.err(
                v,
                "restart",
                "[restart] does not apply to an [external] unit: launchgraph never starts or restarts it".into(),
                Some("remove [restart]; its dependents are stopped while it is down and started again once it is ready"),
            );
            None
        }
        Some(v) => cx.table(v, &RESTART).and_then(|t| restart_spec(&mut cx, t)),
        None => Some(RestartSpec::default()),
    };
    if external && top.get("ready").is_none() && top.get("alive").is_none() {
        let at = external_v.map_or(0, |v| v.span().start);
        let d = cx
            .at(at, Some("external"), "an [external] unit needs a [ready] or an [alive] probe (or both): probes are the only way launchgraph knows it is up")
            .with_hint("add e.g. [ready] with http = \"http://127.0.0.1:11434/api/version\"");
        cx.diags.push(d);
    }
    // An [external] unit has both probes (see ExternalSpec).
    // One declaring only [alive]: that probe says when it is ready, too, so its
    // dependents never start before it answers.
    let ready = match (external, ready, &alive) {
        (true, None, Some(a)) if top.get("ready").is_none() => Some(ReadySpec {
            probe: a.probe.clone(),
            interval: a.interval,
            timeout: a.timeout,
            start_timeout: MAX_TIMEOUT.value,
        }),
        (_, ready, _) => ready,
    };
    // One declaring only [ready]: that probe keeps watching it once it is ready, with
    // [alive]'s defaults; nothing else could ever say it went away (it has no exit to see).
    let alive = match (external, alive, &ready) {
        (true, None, Some(r)) if top.get("alive").is_none() => Some(AliveSpec {
            probe: r.probe.clone(),
            interval: ALIVE_INTERVAL,
            timeout: r.timeout,
            failures: ALIVE_FAILURES,
        }),
        (_, alive, _) => alive,
    };
    if let Some(v) = top.get("preflight")
        && let Some(t) = cx.table(v, &PREFLIGHT)
    {
        t.finish(&mut cx);
    }
    let mut guard_targets = Vec::new();
    let guards = guard::guards(&mut cx, &top, &name, known, &mut guard_targets);
    top.finish(&mut cx);

    if cx.diags.len() != before {
        return None;
    }
    Some(ParsedUnit {
        unit: Unit {
            name,
            file: file.to_path_buf(),
            description,
            requires,
            runner: runner?,
            ready,
            alive,
            restart: restart?,
            preflight: PreflightSpec::default(),
            guards: guards?,
        },
        requires_at,
        label_at,
        guard_targets,
    })
}

// ---------------------------------------------------------------------------------------------
// The keys of each section: the one list that both the lookups and the unknown-key check use.

/// A table of a unit file and the keys it takes, in the order the "expected one of" hint
/// lists them.
struct Section {
    /// `""` for the top level, else the table's name (`exec`).
    path: &'static str,
    /// Groups of keys; probe keys are one group shared by `[ready]` and `[alive]`.
    groups: &'static [&'static [&'static str]],
}

impl Section {
    fn keys(&self) -> impl Iterator<Item = &'static str> {
        self.groups.iter().flat_map(|g| g.iter().copied())
    }
}

/// The probe kinds; a `[ready]` or `[alive]` table has exactly one of them.
const PROBE_KINDS: &[&str] = &["tcp", "http", "exec"];
/// The options of an `http` probe.
const HTTP_PROBE_OPTIONS: &[&str] = &["status", "body-contains"];

const TOP: Section = Section {
    path: "",
    groups: &[&[
        "description",
        "requires",
        "launchd",
        "exec",
        "external",
        "ready",
        "alive",
        "restart",
        "preflight",
        "guard",
        "switch",
    ]],
};
const LAUNCHD: Section = Section {
    path: "launchd",
    groups: &[&["label", "plist", "domain"]],
};
const EXEC: Section = Section {
    path: "exec",
    groups: &[&[
        "command",
        "env",
        "working-directory",
        "user",
        "group",
        "stop-signal",
        "stop-timeout",
        "stdout",
        "stderr",
        "log-max-size",
        "log-keep",
    ]],
};
const EXTERNAL: Section = Section {
    path: "external",
    groups: &[&["run-by"]],
};
const READY: Section = Section {
    path: "ready",
    groups: &[
        PROBE_KINDS,
        HTTP_PROBE_OPTIONS,
        &["interval", "timeout", "start-timeout"],
    ],
};
const ALIVE: Section = Section {
    path: "alive",
    groups: &[
        PROBE_KINDS,
        HTTP_PROBE_OPTIONS,
        &["interval", "timeout", "failures"],
    ],
};
const RESTART: Section = Section {
    path: "restart",
    groups: &[&[
        "policy",
        "initial",
        "max",
        "factor",
        "jitter",
        "reset-after",
        "start-limit-count",
        "start-limit-period",
        "no-restart-exit-codes",
    ]],
};
/// Reserved: it takes no keys yet.
const PREFLIGHT: Section = Section {
    path: "preflight",
    groups: &[],
};

fn t_label_at(cx: &Cx<'_>, launchd: &Spanned<DeValue<'_>>) -> Option<(usize, usize)> {
    let t = launchd.get_ref().as_table()?;
    let (k, _) = t.iter().find(|(k, _)| k.get_ref() == "label")?;
    Some(cx.map.position(k.span().start))
}

/// The longest a duration key may be, and how a person writes it.
#[derive(Clone, Copy)]
struct MaxDuration {
    value: Duration,
    text: &'static str,
}

/// The longest timeout or probe interval (`stop-timeout`, `[ready]` and `[alive]` durations):
/// a day is far past any sensible wait, and far from any overflow of the clock arithmetic.
const MAX_TIMEOUT: MaxDuration = MaxDuration {
    value: Duration::from_secs(24 * 60 * 60),
    text: "24h",
};
/// The longest restart delay or period (`[restart]` durations).
const MAX_PERIOD: MaxDuration = MaxDuration {
    value: Duration::from_secs(7 * 24 * 60 * 60),
    text: "7days",
};

// ---------------------------------------------------------------------------------------------
// Sections.

fn launchd_spec(cx: &mut Cx<'_>, t: Table<'_, '_>) -> Option<LaunchdSpec> {
    let label = t.required(
        cx,
        "label",
        "the launchd job's Label, e.g. \"homebrew.mxcl.ollama\"",
    );
    let label = label.and_then(|v| {
        let s = cx.string(v, &t.key("label"))?;
        let s = cx.without_nul(v, &t.key("label"), s)?;
        if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c == '/') {
            cx.err(
                v,
                &t.key("label"),
                format!(
                    "{s:?} is not a launchd label: expected a non-empty name without spaces or '/'"
                ),
                Some("use the plist's Label, e.g. \"ai.openclaw.gateway\""),
            );
            return None;
        }
        Some(Label(s))
    });
    let plist = t
        .required(cx, "plist", "the absolute path of the job's plist")
        .and_then(|v| cx.abs_path(v, &t.key("plist")));
    let domain = match t.get("domain") {
        Some(v) => cx.string(v, &t.key("domain")).and_then(|s| match Domain::parse(&s) {
            Ok(d) => Some(d),
            Err(e) => {
                cx.err(v, &t.key("domain"), e, Some("LaunchDaemons live in \"system\"; a user's LaunchAgents in \"gui/<uid>\" or \"gui/console\""));
                None
            }
        }),
        None => Some(Domain::System),
    };
    t.finish(cx);
    Some(LaunchdSpec {
        label: label?,
        plist: plist?,
        domain: domain?,
    })
}

fn exec_spec(cx: &mut Cx<'_>, t: Table<'_, '_>) -> Option<ExecSpec> {
    let command = t
        .required(
            cx,
            "command",
            "the argv to run, e.g. [\"/usr/bin/python3\", \"-m\", \"http.server\"]",
        )
        .and_then(|v| cx.argv(v, &t.key("command")));
    let env = match t.get("env") {
        Some(v) => cx.env(v, &t.key("env")),
        None => Some(BTreeMap::new()),
    };
    let working_directory = match t.get("working-directory") {
        Some(v) => cx.abs_path(v, &t.key("working-directory")),
        None => Some(PathBuf::from("/")),
    };
    let user = t.nonempty_string(cx, "user");
    let group = t.nonempty_string(cx, "group");
    let stop_signal = match t.get("stop-signal") {
        Some(v) => cx
            .string(v, &t.key("stop-signal"))
            .and_then(|s| match Signal::parse(&s) {
                Ok(sig) => Some(sig),
                Err(e) => {
                    cx.err(v, &t.key("stop-signal"), e, None);
                    None
                }
            }),
        None => Some(Signal(nix::sys::signal::Signal::SIGTERM)),
    };
    let stop_timeout = t.duration(cx, "stop-timeout", Duration::from_secs(10), MAX_TIMEOUT);
    let stdout = t.get("stdout").map(|v| cx.abs_path(v, &t.key("stdout")));
    let stderr = t.get("stderr").map(|v| cx.abs_path(v, &t.key("stderr")));
    let log_max_bytes = match t.get("log-max-size") {
        Some(v) => cx.byte_size(v, &t.key("log-max-size")),
        None => Some(10 * 1024 * 1024),
    };
    let log_keep = t.integer(cx, "log-keep", 3, 0, 100);
    t.finish(cx);
    Some(ExecSpec {
        command: command?,
        env: env?,
        working_directory: working_directory?,
        user: user.ok()?,
        group: group.ok()?,
        stop_signal: stop_signal?,
        stop_timeout: stop_timeout?,
        stdout: stdout.transpose_opt()?,
        stderr: stderr.transpose_opt()?,
        log_max_bytes: log_max_bytes?,
        log_keep: log_keep? as u32,
    })
}

/// Reads the probe keys shared by `[ready]` and `[alive]`.
fn probe(cx: &mut Cx<'_>, t: &Table<'_, '_>) -> Option<Probe> {
    let section = t.section.path;
    let given: Vec<&str> = PROBE_KINDS
        .iter()
        .copied()
        .filter(|k| t.table.iter().any(|(key, _)| key.get_ref() == k))
        .collect();
    let status_v = t.get("status");
    let body_v = t.get("body-contains");
    let probe = match given.as_slice() {
        [] => {
            let d = cx
                .at(t.span.start, Some(section), format!("[{section}] needs one probe: `tcp`, `http` or `exec`"))
                .with_hint("e.g. tcp = \"127.0.0.1:11434\", or http = \"http://127.0.0.1:11434/api/version\"");
            cx.diags.push(d);
            None
        }
        [one] => {
            let v = t.get(one).expect("key present");
            let key = format!("{section}.{one}");
            match *one {
                "tcp" => cx.string(v, &key).and_then(|s| match parse_socket_addr(&s) {
                    Ok(addr) => Some(Probe::Tcp { addr }),
                    Err(e) => {
                        cx.err(v, &key, e, Some("write an IP address and a port, e.g. \"127.0.0.1:11434\" or \"[::1]:11434\"; probes never resolve host names"));
                        None
                    }
                }),
                "http" => cx.string(v, &key).and_then(|s| match parse_http_url(&s) {
                    Ok((url, addr)) => Some((url, addr)),
                    Err((e, hint)) => {
                        cx.err(v, &key, e, Some(hint));
                        None
                    }
                }).map(|(url, addr)| Probe::Http {
                    url,
                    addr,
                    status: 200,
                    body_contains: None,
                }),
                _ => cx.argv(v, &key).map(|argv| Probe::Exec { argv }),
            }
        }
        _ => {
            let v = t.get(given[1]).expect("key present");
            cx.err(
                v,
                section,
                format!(
                    "[{section}] has {} probes ({}); it takes exactly one",
                    given.len(),
                    given.join(", ")
                ),
                Some("keep one of `tcp`, `http` or `exec`"),
            );
            None
        }
    };
    let is_http = given == ["http"];
    let status = status_v.and_then(|v| {
        if !is_http {
            cx.err(
                v,
                &format!("{section}.status"),
                "`status` applies only to an `http` probe".to_string(),
                None,
            );
            return None;
        }
        let n = cx.int(v, &format!("{section}.status"))?;
        if !(100..=599).contains(&n) {
            cx.err(
                v,
                &format!("{section}.status"),
                format!("{n} is not an HTTP status: expected 100 to 599"),
                None,
            );
            return None;
        }
        Some(n as u16)
    });
    let body = body_v.and_then(|v| {
        if !is_http {
            cx.err(
                v,
                &format!("{section}.body-contains"),
                "`body-contains` applies only to an `http` probe".to_string(),
                None,
            );
            return None;
        }
        cx.string(v, &format!("{section}.body-contains"))
    });
    match probe {
        Some(Probe::Http { url, addr, .. }) => Some(Probe::Http {
            url,
            addr,
            status: status.unwrap_or(200),
            body_contains: body,
        }),
        other => other,
    }
}

fn external_spec(cx: &mut Cx<'_>, t: Table<'_, '_>) -> Option<ExternalSpec> {
    let run_by = t.nonempty_string(cx, "run-by");
    t.finish(cx);
    Some(ExternalSpec {
        run_by: run_by
            .ok()?
            .unwrap_or_else(|| ExternalSpec::DEFAULT_RUN_BY.to_owned()),
    })
}

/// `external`: the unit is only watched, so nothing times its start out.
fn ready_spec(cx: &mut Cx<'_>, t: Table<'_, '_>, external: bool) -> Option<ReadySpec> {
    let probe = probe(cx, &t);
    let interval = t.positive_duration(cx, "interval", Duration::from_secs(1), MAX_TIMEOUT);
    let timeout = t.positive_duration(cx, "timeout", Duration::from_secs(1), MAX_TIMEOUT);
    let start_timeout = match t.get("start-timeout") {
        Some(v) if external => {
            cx.err(
                v,
                &t.key("start-timeout"),
                "an [external] unit has no start to time out: launchgraph waits for it to be ready for as long as it takes".into(),
                Some("remove `start-timeout`; `status` shows the unit as started (watched) with its last probe until it answers"),
            );
            None
        }
        _ if external => Some(MAX_TIMEOUT.value),
        _ => t.positive_duration(cx, "start-timeout", Duration::from_secs(60), MAX_TIMEOUT),
    };
    t.finish(cx);
    Some(ReadySpec {
        probe: probe?,
        interval: interval?,
        timeout: timeout?,
        start_timeout: start_timeout?,
    })
}

/// `[alive] interval`'s default.
const ALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// `[alive] failures`' default.
const ALIVE_FAILURES: u32 = 3;

fn alive_spec(cx: &mut Cx<'_>, t: Table<'_, '_>) -> Option<AliveSpec> {
    let probe = probe(cx, &t);
    let interval = t.positive_duration(cx, "interval", ALIVE_INTERVAL, MAX_TIMEOUT);
    let timeout = t.positive_duration(cx, "timeout", Duration::from_secs(2), MAX_TIMEOUT);
    let failures = t.integer(cx, "failures", i64::from(ALIVE_FAILURES), 1, 1000);
    t.finish(cx);
    Some(AliveSpec {
        probe: probe?,
        interval: interval?,
        timeout: timeout?,
        failures: failures? as u32,
    })
}

fn restart_spec(cx: &mut Cx<'_>, t: Table<'_, '_>) -> Option<RestartSpec> {
    let d = RestartSpec::default();
    let policy = match t.get("policy") {
        Some(v) => cx.string(v, &t.key("policy")).and_then(|s| match s.as_str() {
            "on-failure" => Some(RestartPolicy::OnFailure),
            "always" => Some(RestartPolicy::Always),
            "never" => Some(RestartPolicy::Never),
            other => {
                cx.err(v, &t.key("policy"), format!("{other:?} is not a restart policy: expected \"on-failure\", \"always\" or \"never\""), None);
                None
            }
        }),
        None => Some(d.policy),
    };
    let initial = t.duration(cx, "initial", d.initial, MAX_PERIOD);
    let max_v = t.get("max");
    let max = t.duration(cx, "max", d.max, MAX_PERIOD);
    let factor = t.float(cx, "factor", d.factor, 1.0, 100.0);
    let jitter = t.float(cx, "jitter", d.jitter, 0.0, 1.0);
    let reset_after = t.positive_duration(cx, "reset-after", d.reset_after, MAX_PERIOD);
    let count = t.integer(
        cx,
        "start-limit-count",
        d.start_limit_count as i64,
        1,
        1_000_000,
    );
    let period = t.positive_duration(cx, "start-limit-period", d.start_limit_period, MAX_PERIOD);
    let codes = match t.get("no-restart-exit-codes") {
        Some(v) => cx.exit_codes(v, &t.key("no-restart-exit-codes")),
        None => Some(Vec::new()),
    };
    if let (Some(i), Some(m), Some(v)) = (initial, max, max_v)
        && m < i
    {
        cx.err(
            v,
            &t.key("max"),
            format!(
                "`max` ({}) is less than `initial` ({})",
                humantime::format_duration(m),
                humantime::format_duration(i)
            ),
            Some("the cap must be at least the first delay"),
        );
    }
    t.finish(cx);
    Some(RestartSpec {
        policy: policy?,
        initial: initial?,
        max: max?,
        factor: factor?,
        jitter: jitter?,
        reset_after: reset_after?,
        start_limit_count: count? as u32,
        start_limit_period: period?,
        no_restart_exit_codes: codes?,
    })
}

// ---------------------------------------------------------------------------------------------
// Value grammar shared by probes and the CLI.

/// `IP:port` (`[v6]:port` for IPv6), port 1..=65535.
pub(crate) fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    match s.parse::<SocketAddr>() {
        Ok(a) if a.port() == 0 => Err(format!("{s:?}: port 0 is not a port a server listens on")),
        Ok(a) => Ok(a),
        Err(_) => {
            let host = s.rsplit_once(':').map_or(s, |(h, _)| h);
            if host.parse::<IpAddr>().is_err() && !host.is_empty() && !s.contains('[') {
                Err(format!(
                    "{s:?} is not IP:port: {host:?} is a host name, not an IP address (\"localhost\" may resolve to ::1 or 127.0.0.1)"
                ))
            } else {
                Err(format!("{s:?} is not IP:port"))
            }
        }
    }
}

/// An `http://IP[:port]/path` URL; returns the URL and its socket address.
pub(crate) fn parse_http_url(s: &str) -> Result<(String, SocketAddr), (String, &'static str)> {
    let hint = "write e.g. \"http://127.0.0.1:11434/api/version\"; probes speak plain HTTP to an IP address";
    let rest = match s.split_once("://") {
        Some(("http", rest)) => rest,
        Some((scheme, _)) => {
            return Err((
                format!("{s:?} is not an http URL: the scheme is {scheme:?}, expected \"http\""),
                hint,
            ));
        }
        None => {
            return Err((
                format!("{s:?} is not an http URL: expected \"http://IP:port/path\""),
                hint,
            ));
        }
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err((
            format!("{s:?}: credentials in the URL are not supported"),
            hint,
        ));
    }
    let with_port = if authority.starts_with('[') {
        if authority.contains("]:") {
            authority.to_string()
        } else {
            format!("{authority}:80")
        }
    } else if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = parse_socket_addr(&with_port)
        .map_err(|e| (format!("{s:?} is not a probe URL: {e}"), hint))?;
    // The checks above give the precise messages; the HTTP client's own parser has the last
    // word, so that a URL it would refuse at every probe is refused here, at its line.
    url::Url::parse(s).map_err(|e| (format!("{s:?} is not a probe URL: {e}"), hint))?;
    Ok((s.to_string(), addr))
}

// ---------------------------------------------------------------------------------------------
// The spanned-tree reader.

struct Cx<'a> {
    file: &'a Path,
    map: &'a SourceMap<'a>,
    diags: &'a mut Vec<Diagnostic>,
}

impl Cx<'_> {
    fn at(&self, offset: usize, key: Option<&str>, message: impl Into<String>) -> Diagnostic {
        self.map.diagnostic(self.file, offset..offset, key, message)
    }

    fn err(&mut self, v: &Spanned<DeValue<'_>>, key: &str, message: String, hint: Option<&str>) {
        let mut d = self.map.diagnostic(
            self.file,
            v.span(),
            Some(key),
            format!("`{key}`: {message}"),
        );
        d.hint = hint.map(str::to_owned);
        self.diags.push(d);
    }

    /// `s`, the string value `v`, unless it has a NUL byte: no argv element, path, environment
    /// entry or account name can carry one to the system, so it is an error here, at its place.
    fn without_nul(&mut self, v: &Spanned<DeValue<'_>>, key: &str, s: String) -> Option<String> {
        if s.contains('\0') {
            self.err(
                v,
                key,
                format!("{s:?} contains a NUL byte"),
                Some("remove the \\u0000: the system cannot pass it on"),
            );
            return None;
        }
        Some(s)
    }

    fn wrong_type(&mut self, v: &Spanned<DeValue<'_>>, key: &str, expected: &str) {
        let got = v.get_ref().type_str();
        self.err(v, key, format!("expected {expected}, found {got}"), None);
    }

    fn table<'t, 'i>(
        &mut self,
        v: &'t Spanned<DeValue<'i>>,
        section: &'static Section,
    ) -> Option<Table<'t, 'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(Table::new(section, t, v.span())),
            _ => {
                let key = section.path;
                self.wrong_type(v, key, &format!("a table [{key}]"));
                None
            }
        }
    }

    fn string(&mut self, v: &Spanned<DeValue<'_>>, key: &str) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.wrong_type(v, key, "a string");
                None
            }
        }
    }

    fn int(&mut self, v: &Spanned<DeValue<'_>>, key: &str) -> Option<i64> {
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.err(v, key, "the integer is out of range".into(), None);
                    None
                }
            },
            _ => {
                self.wrong_type(v, key, "an integer");
                None
            }
        }
    }

    fn array<'t, 'i>(
        &mut self,
        v: &'t Spanned<DeValue<'i>>,
        key: &str,
        expected: &str,
    ) -> Option<&'t DeArray<'i>> {
        match v.get_ref() {
            DeValue::Array(a) => Some(a),
            _ => {
                self.wrong_type(v, key, expected);
                None
            }
        }
    }

    fn duration(
        &mut self,
        v: &Spanned<DeValue<'_>>,
        key: &str,
        max: MaxDuration,
    ) -> Option<Duration> {
        let hint = Some("write a duration as a string with a unit, e.g. \"250ms\", \"5s\", \"5m\"");
        match v.get_ref() {
            DeValue::String(s) => match humantime::parse_duration(s.trim()) {
                Ok(d) if d > max.value => {
                    self.err(
                        v,
                        key,
                        format!("{s:?} is longer than the maximum of {}", max.text),
                        Some(&format!("write at most \"{}\"", max.text)),
                    );
                    None
                }
                Ok(d) => Some(d),
                Err(e) => {
                    self.err(v, key, format!("{s:?} is not a duration: {e}"), hint);
                    None
                }
            },
            _ => {
                let got = v.get_ref().type_str();
                self.err(
                    v,
                    key,
                    format!("expected a duration string, found {got}"),
                    hint,
                );
                None
            }
        }
    }

    fn abs_path(&mut self, v: &Spanned<DeValue<'_>>, key: &str) -> Option<PathBuf> {
        let s = self.string(v, key)?;
        let s = self.without_nul(v, key, s)?;
        if !s.starts_with('/') {
            self.err(
                v,
                key,
                format!("{s:?} is not an absolute path"),
                Some("write the full path, starting with '/'"),
            );
            return None;
        }
        Some(PathBuf::from(s))
    }

    /// A non-empty array of strings whose first element is an absolute path.
    fn argv(&mut self, v: &Spanned<DeValue<'_>>, key: &str) -> Option<Vec<String>> {
        let arr = self.array(
            v,
            key,
            "an array of strings, e.g. [\"/bin/sh\", \"-c\", \"...\"]",
        )?;
        let mut out = Vec::new();
        let mut ok = true;
        for item in arr.iter() {
            match item.get_ref() {
                DeValue::String(s) => match self.without_nul(item, key, s.to_string()) {
                    Some(s) => out.push(s),
                    None => ok = false,
                },
                _ => {
                    self.wrong_type(item, key, "a string");
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        match out.first() {
            None => {
                self.err(
                    v,
                    key,
                    "the command is empty".into(),
                    Some("name at least the program, as an absolute path"),
                );
                None
            }
            Some(p) if !p.starts_with('/') => {
                let hint = if p.contains('/') {
                    "write the program's full path, starting with '/'".to_string()
                } else {
                    format!(
                        "write the program's full path (e.g. `command -v {p}` shows it); units never search PATH for the program"
                    )
                };
                let item = arr.iter().next().expect("non-empty");
                self.err(
                    item,
                    key,
                    format!("the program {p:?} is not an absolute path"),
                    Some(&hint),
                );
                None
            }
            Some(_) => Some(out),
        }
    }

    fn env(&mut self, v: &Spanned<DeValue<'_>>, key: &str) -> Option<BTreeMap<String, String>> {
        let DeValue::Table(t) = v.get_ref() else {
            self.wrong_type(
                v,
                key,
                "a table of strings, e.g. { OLLAMA_HOST = \"127.0.0.1:11434\" }",
            );
            return None;
        };
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (k, val) in t.iter() {
            let name = k.get_ref().to_string();
            let item_key = format!("{key}.{name}");
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                let d = self
                    .map
                    .diagnostic(
                        self.file,
                        k.span(),
                        Some(&item_key),
                        format!("`{item_key}`: {name:?} is not an environment variable name"),
                    )
                    .with_hint("a name cannot be empty or contain '=' or NUL");
                self.diags.push(d);
                ok = false;
                continue;
            }
            match val.get_ref() {
                DeValue::String(s) => match self.without_nul(val, &item_key, s.to_string()) {
                    Some(s) => {
                        out.insert(name, s);
                    }
                    None => ok = false,
                },
                _ => {
                    self.wrong_type(val, &item_key, "a string (quote numbers: \"1\")");
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// `"10MiB"`, `"512KiB"`, `"1GB"` or an integer number of bytes.
    fn byte_size(&mut self, v: &Spanned<DeValue<'_>>, key: &str) -> Option<u64> {
        let hint = Some("write a size such as \"10MiB\", \"512KiB\" or a number of bytes");
        match v.get_ref() {
            DeValue::Integer(_) => {
                let n = self.int(v, key)?;
                if n < 1 {
                    self.err(v, key, format!("{n} is not a positive size"), hint);
                    return None;
                }
                Some(n as u64)
            }
            DeValue::String(s) => match parse_byte_size(s) {
                Some(n) if n > 0 => Some(n),
                _ => {
                    self.err(v, key, format!("{s:?} is not a size"), hint);
                    None
                }
            },
            _ => {
                self.wrong_type(v, key, "a size string or an integer");
                None
            }
        }
    }

    fn exit_codes(&mut self, v: &Spanned<DeValue<'_>>, key: &str) -> Option<Vec<i32>> {
        let arr = self.array(v, key, "an array of exit codes, e.g. [78]")?;
        let mut out = Vec::new();
        let mut ok = true;
        for item in arr.iter() {
            match self.int(item, key) {
                Some(n) if (0..=255).contains(&n) => out.push(n as i32),
                Some(n) => {
                    self.err(
                        item,
                        key,
                        format!("{n} is not an exit code: expected 0 to 255"),
                        None,
                    );
                    ok = false;
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// An array of unit names with where each is written.
    fn unit_names(
        &mut self,
        v: &Spanned<DeValue<'_>>,
        key: &str,
    ) -> (Vec<UnitName>, Vec<(usize, usize)>) {
        let mut names = Vec::new();
        let mut at = Vec::new();
        let Some(arr) = self.array(v, key, "an array of unit names, e.g. [\"ollama\"]") else {
            return (names, at);
        };
        for item in arr.iter() {
            let Some(s) = self.string(item, key) else {
                continue;
            };
            match UnitName::parse(&s) {
                Ok(n) if names.contains(&n) => {
                    self.err(
                        item,
                        key,
                        format!("{s:?} is listed twice"),
                        Some("remove the duplicate"),
                    );
                }
                Ok(n) => {
                    names.push(n);
                    at.push(self.map.position(item.span().start));
                }
                Err(e) => self.err(
                    item,
                    key,
                    format!("{s:?} is not a unit name: {e}"),
                    Some(
                        "a requirement is named by its file stem, e.g. \"ollama\" for ollama.toml",
                    ),
                ),
            }
        }
        (names, at)
    }
}

fn parse_byte_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1_000,
        "KiB" | "K" | "k" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" | "M" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" | "G" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// One table of a unit file being read, with the section that says which keys it takes.
struct Table<'t, 'i> {
    section: &'static Section,
    table: &'t DeTable<'i>,
    span: Range<usize>,
    /// For one of several tables of a kind (`[[guard]]`): the prefix of its dotted keys
    /// (`guard.ttft`) and how messages name it (`[[guard]] "ttft"`).
    named: Option<(String, String)>,
}

impl<'t, 'i> Table<'t, 'i> {
    fn new(section: &'static Section, table: &'t DeTable<'i>, span: Range<usize>) -> Self {
        Self {
            section,
            table,
            span,
            named: None,
        }
    }

    /// Names this table in keys and messages, for one of an array of tables.
    fn named(mut self, prefix: String, place: String) -> Self {
        self.named = Some((prefix, place));
        self
    }

    /// How messages name the table: `[exec]`, or `[[guard]] "ttft"`.
    fn place(&self) -> String {
        match &self.named {
            Some((_, place)) => place.clone(),
            None => format!("[{}]", self.section.path),
        }
    }

    /// Whether `key` is declared in the section: every lookup must be.
    fn declares(&self, key: &str) -> bool {
        self.section.keys().any(|k| k == key)
    }

    /// The value of `key`, which must be one of the section's declared keys.
    fn get(&self, key: &str) -> Option<&'t Spanned<DeValue<'i>>> {
        debug_assert!(
            self.declares(key),
            "`{key}` is not declared in the [{}] section table",
            self.section.path
        );
        self.table
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(_, v)| v)
    }

    /// The dotted key diagnostics name, e.g. `exec.stop-signal`, of a declared key.
    fn key(&self, key: &str) -> String {
        debug_assert!(
            self.declares(key),
            "`{key}` is not declared in the [{}] section table",
            self.section.path
        );
        self.dotted(key)
    }

    /// The dotted name of any key written in the table, declared or not.
    fn dotted(&self, key: &str) -> String {
        if let Some((prefix, _)) = &self.named {
            format!("{prefix}.{key}")
        } else if self.section.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.section.path)
        }
    }

    fn required(&self, cx: &mut Cx<'_>, key: &str, what: &str) -> Option<&'t Spanned<DeValue<'i>>> {
        let v = self.get(key);
        if v.is_none() {
            let full = self.key(key);
            let d = cx
                .at(
                    self.span.start,
                    Some(&full),
                    format!("{} is missing `{key}`", self.place()),
                )
                .with_hint(format!("add `{key} = ...`: {what}"));
            cx.diags.push(d);
        }
        v
    }

    fn string(&self, cx: &mut Cx<'_>, key: &str) -> Option<String> {
        self.get(key).and_then(|v| cx.string(v, &self.key(key)))
    }

    /// Ok(None) when absent, Ok(Some) when valid, Err when invalid.
    fn nonempty_string(&self, cx: &mut Cx<'_>, key: &str) -> Result<Option<String>, ()> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let full = self.key(key);
        match cx.string(v, &full) {
            Some(s) if s.is_empty() => {
                cx.err(v, &full, "must not be empty".into(), None);
                Err(())
            }
            Some(s) => cx.without_nul(v, &full, s).map(Some).ok_or(()),
            None => Err(()),
        }
    }

    fn duration(
        &self,
        cx: &mut Cx<'_>,
        key: &str,
        default: Duration,
        max: MaxDuration,
    ) -> Option<Duration> {
        match self.get(key) {
            Some(v) => cx.duration(v, &self.key(key), max),
            None => Some(default),
        }
    }

    fn positive_duration(
        &self,
        cx: &mut Cx<'_>,
        key: &str,
        default: Duration,
        max: MaxDuration,
    ) -> Option<Duration> {
        let Some(v) = self.get(key) else {
            return Some(default);
        };
        let full = self.key(key);
        let d = cx.duration(v, &full, max)?;
        if d.is_zero() {
            cx.err(
                v,
                &full,
                "must be greater than zero".into(),
                Some("e.g. \"1s\""),
            );
            return None;
        }
        Some(d)
    }

    fn integer(&self, cx: &mut Cx<'_>, key: &str, default: i64, min: i64, max: i64) -> Option<i64> {
        let Some(v) = self.get(key) else {
            return Some(default);
        };
        let full = self.key(key);
        let n = cx.int(v, &full)?;
        if !(min..=max).contains(&n) {
            cx.err(
                v,
                &full,
                format!("{n} is out of range: expected {min} to {max}"),
                None,
            );
            return None;
        }
        Some(n)
    }

    fn float(&self, cx: &mut Cx<'_>, key: &str, default: f64, min: f64, max: f64) -> Option<f64> {
        let Some(v) = self.get(key) else {
            return Some(default);
        };
        let full = self.key(key);
        let f = match v.get_ref() {
            DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
            DeValue::Integer(_) => cx.int(v, &full).map(|n| n as f64),
            _ => {
                cx.wrong_type(v, &full, "a number");
                return None;
            }
        };
        match f {
            Some(f) if f.is_finite() && (min..=max).contains(&f) => Some(f),
            _ => {
                cx.err(
                    v,
                    &full,
                    format!("expected a number from {min} to {max}"),
                    None,
                );
                None
            }
        }
    }

    /// Reports every key the section does not declare, with a "did you mean" hint for near
    /// misses.
    fn finish(self, cx: &mut Cx<'_>) {
        let known: Vec<&str> = self.section.keys().collect();
        for (k, _) in self.table.iter() {
            let name = k.get_ref();
            if known.contains(&name.as_ref()) {
                continue;
            }
            let full = self.dotted(name);
            let place = if self.section.path.is_empty() {
                "at the top level of a unit".to_string()
            } else {
                format!("in {}", self.place())
            };
            let mut d = cx.map.diagnostic(
                cx.file,
                k.span(),
                Some(&full),
                format!("unknown key `{name}` {place}"),
            );
            d.hint = Some(match closest(name, &known) {
                Some(c) => format!("did you mean `{c}`?"),
                None if known.is_empty() => format!("[{}] takes no keys", self.section.path),
                None => format!("expected one of: {}", known.join(", ")),
            });
            cx.diags.push(d);
        }
    }
}

/// `Option<Option<T>>` from an optional-and-fallible field: outer None = invalid.
trait TransposeOpt<T> {
    fn transpose_opt(self) -> Option<Option<T>>;
}

impl<T> TransposeOpt<T> for Option<Option<T>> {
    fn transpose_opt(self) -> Option<Option<T>> {
        match self {
            None => Some(None),
            Some(None) => None,
            Some(Some(v)) => Some(Some(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unit file listed as a regular file and replaced by a FIFO before it is read (the
    /// race of a directory being rewritten while it is checked): reading it is an error at
    /// once, not a wait for a writer that never comes.
    #[test]
    fn a_unit_file_swapped_for_a_fifo_after_listing_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("late.toml");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            let _ = tx.send(read_unit_file(&p));
        });
        let d = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("reading a FIFO must not block")
            .unwrap_err();
        assert_eq!(d.file, path);
        assert_eq!(
            d.message,
            "the unit file is a FIFO, expected a regular file"
        );
    }

    #[test]
    fn an_oversized_unit_file_is_an_error_naming_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.toml");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(MAX_UNIT_FILE_BYTES + 1)
            .unwrap();
        let d = read_unit_file(&path).unwrap_err();
        assert_eq!(
            d.message,
            "the unit file is 1.0 MiB, larger than the 1 MiB a unit file may be"
        );
    }
}
