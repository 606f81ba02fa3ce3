//! A reload, as a pure plan: what differs between the running configuration and the next one,
//! which running units must go down before the swap, and which carry over untouched. No I/O and
//! no state: the runtime carries the plan out (stops, swap, starts).
//!
//! The first configuration the daemon loads is planned the same way, against the empty one it
//! starts with: every unit is added.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::events::UnitId;
use crate::compile::Compiled;
use crate::control::protocol::ReloadReport;

/// What a reload changes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    /// Names of the added, removed, changed, cycled and unchanged units (`dry_run` false).
    pub report: ReloadReport,
    /// Old units that must be down before the swap: the removed, changed and cycled ones.
    pub going: Vec<UnitId>,
    /// For each unit of the next configuration, the old unit it carries over untouched (its
    /// state, process and counters), or `None` for a unit that starts afresh.
    pub carried: Vec<Option<UnitId>>,
}

impl Plan {
    /// The units of the next configuration that start afresh: added, changed and cycled.
    pub(crate) fn fresh(&self) -> Vec<UnitId> {
        self.carried
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_none())
            .map(|(i, _)| i)
            .collect()
    }
}

/// The plan from `old` to `next`. A unit is changed when anything of it differs (any key; not
/// comments or layout); an unchanged unit that transitively requires a changed one is cycled
/// with it, so it never runs against a requirement it was not started with.
pub(crate) fn plan(old: &Compiled, next: &Compiled) -> Plan {
    let old_index: HashMap<&str, UnitId> = old
        .units
        .iter()
        .enumerate()
        .map(|(i, u)| (u.name.as_str(), i))
        .collect();
    let next_names: HashSet<&str> = next.units.iter().map(|u| u.name.as_str()).collect();
    let mut added = Vec::new();
    let mut changed = Vec::new();
    for (i, u) in next.units.iter().enumerate() {
        match old_index.get(u.name.as_str()) {
            None => added.push(i),
            Some(&o) if old.units[o] != *u => changed.push(i),
            Some(_) => {}
        }
    }
    let mut fresh = vec![false; next.units.len()];
    for &i in added.iter().chain(&changed) {
        fresh[i] = true;
    }
    // Unchanged units that (transitively) require a changed unit cycle with it.
    let mut cycled = BTreeSet::new();
    for &i in &changed {
        for d in next.graph.transitive_dependents(i) {
            if !fresh[d] {
                cycled.insert(d);
            }
        }
    }
    for &d in &cycled {
        fresh[d] = true;
    }
    let carried: Vec<Option<UnitId>> = next
        .units
        .iter()
        .enumerate()
        .map(|(i, u)| {
            if fresh[i] {
                None
            } else {
                old_index.get(u.name.as_str()).copied()
            }
        })
        .collect();
    let mut kept = vec![false; old.units.len()];
    for o in carried.iter().flatten() {
        kept[*o] = true;
    }
    let going: Vec<UnitId> = (0..old.units.len()).filter(|&o| !kept[o]).collect();
    let names = |ids: &mut dyn Iterator<Item = UnitId>| -> Vec<String> {
        ids.map(|i| next.units[i].name.to_string()).collect()
    };
    let report = ReloadReport {
        dry_run: false,
        added: names(&mut added.iter().copied()),
        removed: old
            .units
            .iter()
            .filter(|u| !next_names.contains(u.name.as_str()))
            .map(|u| u.name.to_string())
            .collect(),
        changed: names(&mut changed.iter().copied()),
        cycled: names(&mut cycled.iter().copied()),
        unchanged: names(&mut (0..next.units.len()).filter(|&i| !fresh[i])),
    };
    Plan {
        report,
        going,
        carried,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Spec = (&'static str, &'static [&'static str], &'static str);

    /// Writes `units` (name, requirements, command word) into `dir`, replacing what was
    /// there, and compiles it (the empty configuration of `dir` for no units).
    fn compiled(dir: &std::path::Path, units: &[Spec]) -> Compiled {
        for e in std::fs::read_dir(dir).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
        if units.is_empty() {
            return Compiled::empty(dir.to_path_buf());
        }
        for (name, requires, word) in units {
            let requires: Vec<String> = requires.iter().map(|r| format!("{r:?}")).collect();
            let text = format!(
                "requires = [{}]\n[exec]\ncommand = [\"/bin/echo\", {word:?}]\n",
                requires.join(", ")
            );
            std::fs::write(dir.join(format!("{name}.toml")), text).unwrap();
        }
        crate::compile::compile_dir(dir).unwrap_or_else(|d| panic!("{d:?}"))
    }

    struct Case {
        name: &'static str,
        old: &'static [Spec],
        next: &'static [Spec],
        added: &'static [&'static str],
        removed: &'static [&'static str],
        changed: &'static [&'static str],
        cycled: &'static [&'static str],
        unchanged: &'static [&'static str],
    }

    /// Table-driven: each pair of configurations and what the plan says of it. The units that
    /// go down are the removed, changed and cycled ones; every unchanged one carries over.
    #[test]
    fn plans() {
        let cases = [
            Case {
                name: "first load: everything is added",
                old: &[],
                next: &[("a", &[], "x"), ("b", &["a"], "x")],
                added: &["a", "b"],
                removed: &[],
                changed: &[],
                cycled: &[],
                unchanged: &[],
            },
            Case {
                name: "nothing changed",
                old: &[("a", &[], "x"), ("b", &["a"], "x")],
                next: &[("a", &[], "x"), ("b", &["a"], "x")],
                added: &[],
                removed: &[],
                changed: &[],
                cycled: &[],
                unchanged: &["a", "b"],
            },
            Case {
                name: "a changed requirement cycles its dependents, transitively",
                old: &[
                    ("a", &[], "x"),
                    ("b", &["a"], "x"),
                    ("c", &["b"], "x"),
                    ("d", &[], "x"),
                ],
                next: &[
                    ("a", &[], "y"),
                    ("b", &["a"], "x"),
                    ("c", &["b"], "x"),
                    ("d", &[], "x"),
                ],
                added: &[],
                removed: &[],
                changed: &["a"],
                cycled: &["b", "c"],
                unchanged: &["d"],
            },
            Case {
                name: "added, removed and changed at once; a changed dependent is not cycled",
                old: &[("a", &[], "x"), ("b", &["a"], "x"), ("gone", &[], "x")],
                next: &[("a", &[], "y"), ("b", &["a"], "y"), ("new", &["a"], "x")],
                added: &["new"],
                removed: &["gone"],
                changed: &["a", "b"],
                cycled: &[],
                unchanged: &[],
            },
            Case {
                name: "a new requirement is a change",
                old: &[("a", &[], "x"), ("b", &[], "x")],
                next: &[("a", &[], "x"), ("b", &["a"], "x")],
                added: &[],
                removed: &[],
                changed: &["b"],
                cycled: &[],
                unchanged: &["a"],
            },
        ];
        for c in cases {
            // Both read from the same directory, as a reload does.
            let dir = tempfile::tempdir().unwrap();
            let old = compiled(dir.path(), c.old);
            let next = compiled(dir.path(), c.next);
            let p = plan(&old, &next);
            let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            let r = &p.report;
            assert_eq!(r.added, names(c.added), "{}: added", c.name);
            assert_eq!(r.removed, names(c.removed), "{}: removed", c.name);
            assert_eq!(r.changed, names(c.changed), "{}: changed", c.name);
            assert_eq!(r.cycled, names(c.cycled), "{}: cycled", c.name);
            assert_eq!(r.unchanged, names(c.unchanged), "{}: unchanged", c.name);
            assert!(!r.dry_run);
            // Going: the old units not kept, by name.
            let going: Vec<&str> = p
                .going
                .iter()
                .map(|&o| old.units[o].name.as_str())
                .collect();
            let expected_going: Vec<&str> = old
                .units
                .iter()
                .map(|u| u.name.as_str())
                .filter(|n| c.removed.contains(n) || c.changed.contains(n) || c.cycled.contains(n))
                .collect();
            assert_eq!(going, expected_going, "{}: going", c.name);
            // Carried: each unchanged unit maps to its old self; every other unit is fresh.
            for (new, o) in p.carried.iter().enumerate() {
                let n = next.units[new].name.as_str();
                match o {
                    Some(o) => {
                        assert!(c.unchanged.contains(&n), "{}: {n} carried", c.name);
                        assert_eq!(old.units[*o].name.as_str(), n, "{}", c.name);
                    }
                    None => assert!(!c.unchanged.contains(&n), "{}: {n} fresh", c.name),
                }
            }
            let fresh: Vec<&str> = p
                .fresh()
                .into_iter()
                .map(|i| next.units[i].name.as_str())
                .collect();
            assert_eq!(
                fresh.len(),
                c.added.len() + c.changed.len() + c.cycled.len(),
                "{}: fresh {fresh:?}",
                c.name
            );
        }
    }
}
