//! Carrying out a reload (the first load too): read and compile the units directory, stop
//! what the pure [`plan`](crate::engine::reload::plan) says goes, then swap the new
//! configuration in once those units are down and start what is new, in order.

use std::sync::Arc;
use std::time::Instant;

use super::{PendingReload, Supervisor};
use crate::compile::compile_dir;
use crate::control::protocol::{ErrorCode, FindingStatus, Response};
use crate::diag::Diagnostic;
use crate::engine::core::{Command, Core, Event, State};
use crate::engine::reload;
use crate::engine::runs::stop_leftovers;
use crate::engine::watch::FileWatch;

impl Supervisor {
    /// Reads the units directory and plans the difference from the running configuration
    /// (the first time, from the empty one: every unit is added). Invalid: nothing changes,
    /// every error is logged and returned. Valid: unless `dry_run`, the removed and changed
    /// units (and what depends on them) start stopping in order here; [`finish_reload`] then
    /// swaps the new configuration in, keeping every unchanged unit exactly as it is, and
    /// starts the new and changed units in order.
    ///
    /// [`finish_reload`]: Supervisor::finish_reload
    pub(super) fn reload(&mut self, dry_run: bool) -> Response {
        if self.pending.is_some() {
            return Response::Error {
                code: ErrorCode::Busy,
                message: "a reload is already being applied".into(),
            };
        }
        let next = match compile_dir(&self.compiled.dir) {
            Ok(c) => c,
            Err(diags) => return self.refuse(&diags, dry_run),
        };
        let mut plan = reload::plan(&self.compiled, &next);
        plan.report.dry_run = dry_run;
        if dry_run {
            return Response::Reload(plan.report);
        }
        self.invalid = None;
        if self.loaded {
            let r = &plan.report;
            tracing::info!(
                added = ?r.added, removed = ?r.removed, changed = ?r.changed, cycled = ?r.cycled,
                "reloading {}", self.compiled.dir.display()
            );
        }
        let now = Instant::now();
        let mut fx = Vec::new();
        for &u in &plan.going {
            fx.extend(self.core.handle(Event::Command(Command::Unload(u)), now));
        }
        let report = plan.report.clone();
        self.pending = Some(PendingReload { next, plan });
        // The stops start now; the swap waits for them in `finish_reload`.
        let _ = self.apply(fx);
        Response::Reload(report)
    }

    /// An invalid units directory: every error logged (unless only a dry run asked), and
    /// returned.
    fn refuse(&mut self, diags: &[Diagnostic], dry_run: bool) -> Response {
        let message = diags
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        let n = diags.len();
        let problems = if n == 1 { "problem" } else { "problems" };
        if self.loaded {
            tracing::error!("reload refused: {n} {problems}; nothing was changed\n{message}");
        } else if !dry_run {
            for d in diags {
                tracing::error!("{d}");
            }
            tracing::error!(
                "{n} {problems} in {}; nothing started. Fix them, then send SIGHUP or run `launchgraph reload`",
                self.compiled.dir.display()
            );
            self.invalid = Some(message.clone());
        }
        Response::Error {
            code: ErrorCode::InvalidConfiguration,
            message,
        }
    }

    /// Swaps in a pending configuration once the units it replaces are down, and starts its
    /// new units. True if the supervisor is done (a shutdown finished meanwhile).
    pub(super) async fn finish_reload(&mut self) -> bool {
        let Some(p) = &self.pending else { return false };
        if p.plan
            .going
            .iter()
            .any(|&u| self.core.slot(u).state.is_running())
        {
            return false;
        }
        let PendingReload { next, plan } = self.pending.take().expect("checked");
        if !self.loaded {
            // What a previous daemon left running goes first, so that it starts again in order
            // and once.
            stop_leftovers(&next, &self.shell.config.state_dir).await;
        }
        let now = Instant::now();
        let core = Core::reloaded(&next, &self.core, &plan.carried, now, fastrand::u64(..));
        // old index -> new index, for events still in flight from the old epoch.
        let mut back = vec![None; self.compiled.units.len()];
        for (new, old) in plan.carried.iter().enumerate() {
            if let Some(o) = old {
                back[*o] = Some(new);
            }
        }
        for map in self.remaps.values_mut() {
            for m in map.iter_mut() {
                *m = m.and_then(|o| back[o]);
            }
        }
        let epoch = self.shell.tx_epoch();
        self.remaps.insert(epoch, back);
        let epoch = epoch + 1;
        let mut findings = vec![Vec::new(); next.units.len()];
        for (new, old) in plan.carried.iter().enumerate() {
            if let Some(o) = old {
                findings[new] = std::mem::take(&mut self.findings[*o]);
            }
        }
        self.findings = findings;
        self.shell
            .swap(Arc::new(next.units.clone()), &plan.carried, epoch);
        self._watch = Some(FileWatch::start(
            &self.shell.units,
            &self.shell.config.preflight,
            self.changed_tx.for_epoch(epoch),
        ));
        self.metrics
            .set_units(next.units.iter().map(|u| u.name.as_str()));
        let fresh = plan.fresh();
        for &new in &fresh {
            let u = &next.units[new];
            let found = crate::preflight::preflight(u, &self.shell.config.preflight);
            self.metrics.set_preflight(u.name.as_str(), &found);
            self.findings[new] = finding_statuses(found);
        }
        if self.loaded {
            tracing::info!("reload applied: {} unit(s) to start", fresh.len());
        } else {
            tracing::info!(
                units = next.units.len(),
                dir = %next.dir.display(),
                "starting {} units in dependency order",
                next.units.len()
            );
        }
        self.loaded = true;
        self.compiled = next;
        self.core = core;
        // Guards before the starts, so that a kept hold holds.
        self.guards.load(&self.compiled.units);
        self.metrics
            .set_guards(super::guarding::guard_infos(&self.compiled.units));
        self.shell.held = self.guards.held();
        let mut fx = self.core.want_up(&fresh, now);
        // A reload looks again at once at every deferred start (the owner may have enabled
        // its job, or booted out another copy).
        for u in 0..self.compiled.units.len() {
            if matches!(self.core.slot(u).state, State::Deferred { .. }) {
                fx.extend(self.core.handle(Event::Retry { unit: u }, now));
            }
        }
        self.apply(fx)
    }
}

/// Preflight findings as status shows them.
pub(super) fn finding_statuses(found: Vec<crate::preflight::Finding>) -> Vec<FindingStatus> {
    found
        .into_iter()
        .map(|f| FindingStatus {
            code: f.code.to_string(),
            severity: f.severity.to_string(),
            message: f.message,
        })
        .collect()
}
