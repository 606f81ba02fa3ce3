//! The plan: what `launchgraph plan` shows of a compiled configuration, for people and as JSON.
//!
//! It owns the stable JSON schema (`launchgraph.plan/1`, documented in docs/plan-schema.md):
//! start waves with each unit's readiness gate, the stop order, and for each unit what a
//! restart of it cascades to. It computes nothing the graph does not already know.

use std::fmt::Write as _;

use serde::Serialize;

use crate::compile::Compiled;
use crate::unit::{Probe, Runner, Unit};

pub(crate) const SCHEMA: &str = "launchgraph.plan/1";

#[derive(Debug, Serialize)]
pub struct Plan<'a> {
    pub schema: &'static str,
    pub units_dir: String,
    /// Wave k holds the units whose requirements all sit in earlier waves.
    pub start_waves: Vec<Vec<&'a str>>,
    /// Dependents before their requirements.
    pub stop_order: Vec<&'a str>,
    pub units: Vec<PlanUnit<'a>>,
}

#[derive(Debug, Serialize)]
pub struct PlanUnit<'a> {
    pub name: &'a str,
    /// `exec` or `launchd`.
    pub kind: &'static str,
    /// What runs: the argv of an `exec` unit, or `domain/label` of a `launchd` unit.
    pub target: String,
    pub wave: usize,
    pub requires: Vec<&'a str>,
    pub required_by: Vec<&'a str>,
    /// `null`: ready as soon as it has started.
    pub ready: Option<Gate>,
    /// Everything a restart of this unit stops first and starts again after it, in start
    /// order (its transitive dependents).
    pub restart_cascade: Vec<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct Gate {
    /// `tcp`, `http` or `exec`.
    pub probe: &'static str,
    /// The address, URL or argv the probe uses.
    pub target: String,
    /// Expected HTTP status (http only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// None for an `external` unit: it is awaited for as long as it takes.
    pub start_timeout_ms: Option<u64>,
}

impl<'a> Plan<'a> {
    pub fn new(c: &'a Compiled) -> Self {
        let name = |i: usize| c.units[i].name.as_str();
        let g = &c.graph;
        let units = c
            .units
            .iter()
            .enumerate()
            .map(|(i, u)| PlanUnit {
                name: u.name.as_str(),
                kind: u.runner.kind(),
                target: target(u),
                wave: g.wave_of(i),
                requires: g.requires(i).iter().map(|&j| name(j)).collect(),
                required_by: g.dependents(i).iter().map(|&j| name(j)).collect(),
                ready: u.ready.as_ref().map(|r| {
                    let (probe, target, status, body_contains) = probe_parts(&r.probe);
                    Gate {
                        probe,
                        target,
                        status,
                        body_contains,
                        interval_ms: r.interval.as_millis() as u64,
                        timeout_ms: r.timeout.as_millis() as u64,
                        start_timeout_ms: (!u.runner.is_external())
                            .then_some(r.start_timeout.as_millis() as u64),
                    }
                }),
                restart_cascade: g.transitive_dependents(i).into_iter().map(name).collect(),
            })
            .collect();
        Plan {
            schema: SCHEMA,
            units_dir: c.dir.display().to_string(),
            start_waves: g
                .waves()
                .iter()
                .map(|w| w.iter().map(|&i| name(i)).collect())
                .collect(),
            stop_order: g.stop_order().into_iter().map(name).collect(),
            units,
        }
    }

    /// The human-readable form.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let width = self.units.iter().map(|u| u.name.len()).max().unwrap_or(0);
        let kind_width = self
            .units
            .iter()
            .map(|u| u.kind.len())
            .max()
            .unwrap_or(0)
            .max("launchd".len());
        let _ = writeln!(
            out,
            "{} units in {}, {} start waves\n",
            self.units.len(),
            self.units_dir,
            self.start_waves.len()
        );
        let _ = writeln!(
            out,
            "Start (a unit starts as soon as everything it requires is ready; one wave's units start in parallel):"
        );
        for (k, wave) in self.start_waves.iter().enumerate() {
            let _ = writeln!(out, "  wave {}", k + 1);
            for name in wave {
                let u = self.unit(name);
                let gate = match &u.ready {
                    Some(g) => {
                        let test = match g.probe {
                            "tcp" => format!("{} accepts a connection", g.target),
                            "http" => format!(
                                "GET {} answers {}{}",
                                g.target,
                                g.status.unwrap_or(200),
                                g.body_contains
                                    .as_ref()
                                    .map(|b| format!(" containing {b:?}"))
                                    .unwrap_or_default()
                            ),
                            _ => format!("`{}` exits 0", g.target),
                        };
                        match g.start_timeout_ms {
                            Some(ms) => format!(
                                "ready when {test} (within {})",
                                humantime::format_duration(std::time::Duration::from_millis(ms))
                            ),
                            None => format!("ready when {test} (watched, never started)"),
                        }
                    }
                    None => "ready when started (no [ready] probe)".to_string(),
                };
                let after = if u.requires.is_empty() {
                    String::new()
                } else {
                    format!("  after {}", u.requires.join(", "))
                };
                let _ = writeln!(
                    out,
                    "    {name:<width$}  {:<kind_width$}  {gate}{after}",
                    u.kind
                );
            }
        }
        let _ = writeln!(
            out,
            "\nStop order (dependents first): {}",
            self.stop_order.join(", ")
        );
        let _ = writeln!(
            out,
            "\nRestart cascades (stopped before, started again after, in order):"
        );
        for u in &self.units {
            let cascade = if u.restart_cascade.is_empty() {
                "nothing else".to_string()
            } else {
                u.restart_cascade.join(", ")
            };
            let _ = writeln!(out, "  {:<width$}  -> {cascade}", u.name);
        }
        out
    }

    fn unit(&self, name: &str) -> &PlanUnit<'a> {
        self.units
            .iter()
            .find(|u| u.name == name)
            .expect("every wave member is a unit")
    }
}

fn target(u: &Unit) -> String {
    match &u.runner {
        Runner::Exec(e) => e.command.join(" "),
        Runner::Launchd(l) => format!("{}/{}", l.domain, l.label),
        Runner::External(x) => format!("run by {}", x.run_by),
    }
}

fn probe_parts(p: &Probe) -> (&'static str, String, Option<u16>, Option<String>) {
    match p {
        Probe::Tcp { addr } => ("tcp", addr.to_string(), None, None),
        Probe::Http {
            url,
            status,
            body_contains,
            ..
        } => ("http", url.clone(), Some(*status), body_contains.clone()),
        Probe::Exec { argv } => ("exec", argv.join(" "), None, None),
    }
}
