//! Compiling a units directory: every file read and checked, then checked together, then the
//! dependency graph built. Only a [`Compiled`] configuration is ever run.
//!
//! This module owns the checks that need every unit read first: two units driving the same
//! launchd label, guards holding or restarting an `[external]` unit, and dependency cycles
//! (every one, as a path). The unit file grammar, and the
//! check that each requirement names another unit file of the directory, are in
//! [`crate::unit::load`]; graph algorithms are in [`crate::graph`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::diag::Diagnostic;
use crate::graph::Graph;
use crate::unit::load::{ParsedUnit, read_dir};
use crate::unit::{Runner, Unit, UnitName};

/// A valid configuration: units sorted by name, and their graph (indices match).
pub struct Compiled {
    pub dir: PathBuf,
    pub units: Vec<Unit>,
    pub graph: Graph,
    index: HashMap<UnitName, usize>,
}

impl Compiled {
    /// The configuration with no units: what the supervisor runs before it has loaded `dir`.
    pub(crate) fn empty(dir: PathBuf) -> Self {
        Self {
            dir,
            units: Vec::new(),
            graph: Graph::compile(Vec::new()).expect("no units, no cycle"),
            index: HashMap::new(),
        }
    }

    pub fn index_of(&self, name: &UnitName) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Remarks that are not errors but that an admin should know (shown by `check`).
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        for u in &self.units {
            if u.ready.is_none() && !self.graph.dependents(self.index[&u.name]).is_empty() {
                notes.push(format!(
                    "{}: no [ready] probe, so it counts as ready as soon as it has started; \
                     its dependents ({}) will not wait for it to really serve",
                    u.name,
                    self.graph
                        .dependents(self.index[&u.name])
                        .iter()
                        .map(|&d| self.units[d].name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        notes
    }
}

/// Reads, validates and compiles `dir`. On failure returns every problem found, sorted by file
/// and position.
pub fn compile_dir(dir: &Path) -> Result<Compiled, Vec<Diagnostic>> {
    let contents = read_dir(dir);
    let mut diags = contents.diagnostics;
    let parsed = contents.units;

    let mut index: HashMap<UnitName, usize> = HashMap::new();
    for (i, p) in parsed.iter().enumerate() {
        index.insert(p.unit.name.clone(), i);
    }

    // Unknown requirements were reported per file. A requirement on a unit whose own file is
    // broken has no index: it is left out here, and the configuration is invalid anyway.
    let requires: Vec<Vec<usize>> = parsed
        .iter()
        .map(|p| {
            p.unit
                .requires
                .iter()
                .filter_map(|d| index.get(d).copied())
                .collect()
        })
        .collect();

    duplicate_labels(&parsed, &mut diags);
    guard_targets(&parsed, &index, &mut diags);

    match Graph::compile(requires) {
        Ok(graph) if diags.is_empty() => {
            let units = parsed.into_iter().map(|p| p.unit).collect();
            return Ok(Compiled {
                dir: dir.to_path_buf(),
                units,
                graph,
                index,
            });
        }
        Ok(_) => {}
        Err(found) => {
            for cycle in &found.cycles {
                diags.push(cycle_diagnostic(&parsed, &cycle.0));
            }
            if found.truncated {
                let first = &parsed[found.cycles[0].0[0]];
                diags.push(
                    Diagnostic::whole_file(
                        first.unit.file.clone(),
                        format!(
                            "more dependency cycles exist; only the first {} are listed",
                            crate::graph::MAX_CYCLES_REPORTED
                        ),
                    )
                    .with_hint("break the cycles above, then run check again"),
                );
            }
        }
    }
    diags.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    diags.dedup();
    Err(diags)
}

/// One launchd job driven by two units would be started, stopped and counted twice.
fn duplicate_labels(parsed: &[ParsedUnit], diags: &mut Vec<Diagnostic>) {
    let mut first: HashMap<&str, &ParsedUnit> = HashMap::new();
    for p in parsed {
        let Runner::Launchd(l) = &p.unit.runner else {
            continue;
        };
        let (line, column) = p.label_at.unwrap_or((1, 1));
        match first.get(l.label.0.as_str()) {
            Some(other) => {
                let (ol, oc) = other.label_at.unwrap_or((1, 1));
                diags.push(Diagnostic {
                    file: p.unit.file.clone(),
                    line,
                    column,
                    key: Some("launchd.label".into()),
                    message: format!(
                        "launchd label {:?} is also driven by unit {:?} ({}:{ol}:{oc})",
                        l.label.0,
                        other.unit.name.as_str(),
                        other.unit.file.display()
                    ),
                    hint: Some(
                        "one launchd job must belong to exactly one unit: remove one of them"
                            .into(),
                    ),
                });
            }
            None => {
                first.insert(l.label.0.as_str(), p);
            }
        }
    }
}

/// A guard may hold or restart only what launchgraph starts: an `[external]` unit is never
/// started (holding it would do nothing) and a restart of it is refused.
fn guard_targets(
    parsed: &[ParsedUnit],
    index: &HashMap<UnitName, usize>,
    diags: &mut Vec<Diagnostic>,
) {
    for p in parsed {
        for t in &p.guard_targets {
            let Some(&i) = index.get(&t.unit) else {
                continue;
            };
            if !parsed[i].unit.runner.is_external() {
                continue;
            }
            let hint = if t.is_restart() {
                "launchgraph never restarts an [external] unit: restart it where it runs, or remove it from `restart`"
            } else {
                "launchgraph never starts an [external] unit, so holding it does nothing: hold the units that require it"
            };
            diags.push(Diagnostic {
                file: p.unit.file.clone(),
                line: t.at.0,
                column: t.at.1,
                key: Some(t.key.clone()),
                message: format!(
                    "`{}`: {} of unit {:?} {} {:?}, an [external] unit",
                    t.key,
                    t.who,
                    p.unit.name.as_str(),
                    t.verb,
                    t.unit.as_str()
                ),
                hint: Some(hint.into()),
            });
        }
    }
}

/// A cycle `[a, b, c]` (a requires b, b requires c, c requires a), reported at the place where
/// `a` requires `b`.
fn cycle_diagnostic(parsed: &[ParsedUnit], cycle: &[usize]) -> Diagnostic {
    let first = &parsed[cycle[0]];
    let next = &parsed[cycle[(1) % cycle.len()]].unit.name;
    let (line, column) = first
        .unit
        .requires
        .iter()
        .position(|r| r == next)
        .map_or((1, 1), |k| first.requires_at[k]);
    let mut path: Vec<&str> = cycle
        .iter()
        .map(|&i| parsed[i].unit.name.as_str())
        .collect();
    path.push(first.unit.name.as_str());
    Diagnostic {
        file: first.unit.file.clone(),
        line,
        column,
        key: Some("requires".into()),
        message: format!("dependency cycle: {}", path.join(" -> ")),
        hint: Some(
            "a unit starts only after everything it requires is ready, so units in a cycle can never start: remove one of these requirements"
                .into(),
        ),
    }
}
