//! The supervising task's answers to control requests: status, start, stop, restart, events
//! (replayed from the journal, then followed live) and metrics. A reload is answered in
//! [`reloading`](super::reloading).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{broadcast, mpsc};

use super::{ControlRequest, Supervisor};
use crate::control::protocol::{ErrorCode, ForceTo, Request, Response, UnitStatus};
use crate::engine::core::{Command, Event};
use crate::engine::events::UnitId;
use crate::guard::machine::Forced;

impl Supervisor {
    /// Answers a control request; returns the event it turns into, if any.
    pub(super) fn control(&mut self, req: ControlRequest) -> Option<Event> {
        let reply = |r: Response| {
            let _ = req.reply.try_send(r);
        };
        if self.core.is_shutting_down() && req.request.is_acting() {
            reply(Response::Error {
                code: ErrorCode::ShuttingDown,
                message: "launchgraph is shutting down".into(),
            });
            return None;
        }
        if let Some(text) = &self.invalid
            && !matches!(req.request, Request::Reload { .. })
        {
            reply(Response::Error {
                code: ErrorCode::InvalidConfiguration,
                message: format!("nothing is running: the units directory is invalid\n{text}"),
            });
            return None;
        }
        let unknown = |name: &str| Response::Error {
            code: ErrorCode::UnknownUnit,
            message: format!("no unit named {name:?}"),
        };
        match req.request {
            Request::Status { unit } => {
                let all = self.status();
                match unit {
                    None => reply(Response::Status { units: all }),
                    Some(name) => match all.into_iter().find(|s| s.name == name) {
                        Some(s) => reply(Response::Status { units: vec![s] }),
                        None => reply(unknown(&name)),
                    },
                }
                None
            }
            Request::Start { .. } | Request::Stop { .. } | Request::Restart { .. }
                if self.pending.is_some() =>
            {
                reply(Response::Error {
                    code: ErrorCode::Busy,
                    message: "a reload is being applied; try again in a moment".into(),
                });
                None
            }
            Request::Start { unit } => {
                self.unit_command(&unit, Command::Start, "starting", &req.reply)
            }
            Request::Stop { unit } => {
                self.unit_command(&unit, Command::Stop, "stopping", &req.reply)
            }
            Request::Restart { unit } => {
                if let Some(by) = self.run_by(&unit) {
                    reply(Response::Error {
                        code: ErrorCode::NotApplicable,
                        message: format!(
                            "{unit} is run by {by}, not by launchgraph, which only watches it: restart it there \
                             (its dependents stop while it is down and start again once it is ready), \
                             or restart its dependents with `launchgraph restart UNIT`"
                        ),
                    });
                    return None;
                }
                self.unit_command(&unit, Command::Restart, "restarting", &req.reply)
            }
            Request::Reload { dry_run } => {
                let answer = self.reload(dry_run);
                reply(answer);
                None
            }
            Request::Events { follow } => {
                for e in self.events.ring() {
                    if req
                        .reply
                        .try_send(Response::Event(Box::new(e.record())))
                        .is_err()
                    {
                        return None;
                    }
                }
                if follow {
                    let mut live = self.events.subscribe();
                    let out = req.reply;
                    tokio::spawn(async move {
                        loop {
                            match live.recv().await {
                                Ok(r) => {
                                    let r = Box::new(Arc::unwrap_or_clone(r));
                                    if out.send(Response::Event(r)).await.is_err() {
                                        return;
                                    }
                                }
                                // Too slow a reader: the sequence numbers show the gap.
                                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                                Err(broadcast::error::RecvError::Closed) => return,
                            }
                        }
                    });
                }
                None
            }
            Request::Metrics => {
                reply(Response::Metrics {
                    text: self.metrics.render(),
                });
                None
            }
            Request::Guards => {
                reply(Response::Guards {
                    guards: self.guards.status(Instant::now()),
                });
                None
            }
            Request::GuardForce { unit, guard, to } => {
                let Some(i) = self.guards.index(&unit, &guard) else {
                    reply(Response::Error {
                        code: if self.unit_index(&unit).is_some() {
                            ErrorCode::UnknownGuard
                        } else {
                            ErrorCode::UnknownUnit
                        },
                        message: format!("no guard {unit}/{guard}"),
                    });
                    return None;
                };
                let (forced, verb) = match to {
                    ForceTo::Trip => (Forced::Trip, "tripping"),
                    ForceTo::Clear => (Forced::Clear, "clearing"),
                };
                tracing::info!("{unit}: guard {guard}: {verb} by hand");
                let follow = self.guards.force(i, forced);
                reply(Response::Done {
                    message: format!("{verb} guard {unit}/{guard}"),
                });
                let mut events = self.guard_follow(Some(i), follow).into_iter();
                let first = events.next();
                // More than one (several held units released): the rest go through the
                // channel, as any report does.
                for e in events {
                    let _ = self.shell.tx.send(e);
                }
                first
            }
        }
    }

    fn unit_command(
        &mut self,
        name: &str,
        command: fn(UnitId) -> Command,
        verb: &str,
        reply: &mpsc::Sender<Response>,
    ) -> Option<Event> {
        match self.unit_index(name) {
            Some(u) => {
                let message = match (self.run_by(name), verb) {
                    (Some(by), "stopping") => format!(
                        "stopping its dependents and no longer watching {name}; {by} runs it, and it keeps running"
                    ),
                    (Some(by), _) => format!("watching {name} (run by {by})"),
                    (None, _) => format!("{verb} {name}"),
                };
                let _ = reply.try_send(Response::Done { message });
                Some(Event::Command(command(u)))
            }
            None => {
                let _ = reply.try_send(Response::Error {
                    code: ErrorCode::UnknownUnit,
                    message: format!("no unit named {name:?}"),
                });
                None
            }
        }
    }

    /// Who runs `name`, when it is an `external` unit.
    pub(super) fn run_by(&self, name: &str) -> Option<&str> {
        let u = &self.compiled.units[self.unit_index(name)?];
        match &u.runner {
            crate::unit::Runner::External(x) => Some(&x.run_by),
            _ => None,
        }
    }

    pub(super) fn status(&self) -> Vec<UnitStatus> {
        crate::engine::status::of(&self.compiled, &self.core, &self.findings, Instant::now())
    }
}
