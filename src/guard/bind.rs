//! Binding: which sampler each configured guard runs, with what parameters.
//!
//! The unit model says what a guard watches ([`crate::unit::guard::Signal`]); the samplers
//! ([`super::signal`]) have their own parameter structs. This module maps one to the other,
//! once per guard at load, and gives the runtime one type to sample whatever the signal:
//! [`Sampler::sample`] returns the number a threshold sees, with its unit, and for `ttft` the
//! phases of the probe (for the phase histogram).
//!
//! Two mappings are worth a word:
//! - `queue-depth` from a command: with `lane`/`json-pointer` the command prints JSON and the
//!   queue sampler picks the number; without, it prints a plain number, which is what the
//!   `exec` sampler reads.
//! - `ttft` without `model`: the sampler measures whatever the server has loaded
//!   ([`TtftParams::any_loaded`]), never loading one.

use std::time::Duration;

use super::signal::disk::{DiskFree, DiskFreeParams};
use super::signal::exec::{CommandParams, ExecParams, ExecSignal};
use super::signal::pressure::{MemoryPressure, MemoryPressureParams, MemoryPressureReading};
use super::signal::prometheus::Selector;
use super::signal::queue::{self, QueueDepth, QueueDepthParams};
use super::signal::swap::{SwapOutParams, SwapOutRate};
use super::signal::ttft::{Api, Idleness, Ttft, TtftParams, TtftReading};
use super::signal::{Quantity, Reading, Sample, Signal};
use crate::unit::guard::{Guard, JsonSelect, LlmApi, QueueSource, Signal as Spec};

/// One guard's sampler.
#[derive(Debug)]
pub enum Sampler {
    Exec(ExecSignal),
    Queue(QueueDepth),
    Ttft { ttft: Ttft, idle_only: bool },
    SwapOut(SwapOutRate),
    Pressure(MemoryPressure),
    Disk(DiskFree),
}

/// What one sample gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Taken {
    pub sample: Sample<Quantity>,
    /// A known `ttft` sample's phases (client side, and Ollama's own split).
    pub ttft: Option<TtftReading>,
    /// Detail some signals carry beside their number, for the host metrics.
    pub host: Option<HostFacts>,
    /// An `idle-only` ttft probe found the server busy: neither a sample nor unknown.
    pub discarded: bool,
}

/// Host figures a sample read on the way.
#[derive(Debug, Clone, PartialEq)]
pub enum HostFacts {
    /// Bytes written to swap since boot, as the kernel counts them.
    SwapOut { total_bytes: u64 },
    DiskFree {
        path: std::path::PathBuf,
        ratio: f64,
        available_bytes: u64,
    },
    /// The volume holding `path` could not be measured.
    DiskFreeUnknown { path: std::path::PathBuf },
    /// macOS's memory pressure level (1, 2, 4).
    PressureLevel(u8),
    /// Linux PSI: time stalled on memory since boot, of one line (`some`, `full`).
    MemoryStall { line: &'static str, total_us: u64 },
}

impl Sampler {
    /// The sampler `guard` runs; bounded by the guard's `timeout`.
    pub fn bind(guard: &Guard) -> Result<Self, String> {
        let deadline = guard.timeout;
        Ok(match &guard.signal {
            Spec::Exec { command } => Sampler::Exec(exec_signal(command, deadline)),
            Spec::QueueDepth(QueueSource::Command {
                command,
                select: None,
            }) => Sampler::Exec(exec_signal(command, deadline)),
            Spec::QueueDepth(QueueSource::Command {
                command,
                select: Some(select),
            }) => Sampler::Queue(QueueDepth::new(QueueDepthParams::Command {
                command: command_params(command, deadline),
                select: match select {
                    JsonSelect::Lane { lane, field } => queue::JsonSelect::Lane {
                        lane: lane.clone(),
                        field: field.clone(),
                    },
                    JsonSelect::Pointer(p) => queue::JsonSelect::Pointer(p.clone()),
                },
            })),
            Spec::QueueDepth(QueueSource::Prometheus {
                url,
                metric,
                labels,
                ..
            }) => {
                let url = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
                let selector = labels
                    .iter()
                    .fold(Selector::new(metric.clone()), |s, (k, v)| s.label(k, v));
                Sampler::Queue(QueueDepth::new(QueueDepthParams::Prometheus {
                    url,
                    selector,
                    deadline,
                    cap: 1024 * 1024,
                }))
            }
            Spec::Ttft {
                url,
                model,
                api,
                keep_alive,
                idle_only,
                ..
            } => {
                let base = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
                let api = match api {
                    LlmApi::Ollama => Api::Ollama,
                    LlmApi::Openai => Api::OpenAi,
                };
                let mut p = match model {
                    Some(m) => TtftParams::new(base, api, m.clone()),
                    None => TtftParams::any_loaded(base, api),
                };
                p.keep_alive = keep_alive.map(|k| k.to_ollama());
                p.deadline = deadline;
                Sampler::Ttft {
                    ttft: Ttft::new(p),
                    idle_only: *idle_only,
                }
            }
            Spec::SwapOutRate => Sampler::SwapOut(SwapOutRate::new(SwapOutParams::default())),
            Spec::MemoryPressure => {
                Sampler::Pressure(MemoryPressure::new(MemoryPressureParams::default()))
            }
            Spec::DiskFree { path } => {
                let mut p = DiskFreeParams::new(path.clone());
                p.deadline = deadline;
                Sampler::Disk(DiskFree::new(p))
            }
        })
    }

    /// Takes one sample.
    pub async fn sample(&mut self) -> Taken {
        let plain = |sample: Sample<Quantity>| Taken {
            sample,
            ttft: None,
            host: None,
            discarded: false,
        };
        match self {
            Sampler::Exec(s) => plain(s.sample().await),
            Sampler::Queue(s) => plain(s.sample().await),
            Sampler::Ttft { ttft, idle_only } => {
                let r = ttft.sample().await;
                Taken {
                    ttft: r.known().copied(),
                    discarded: *idle_only && r.known().is_some_and(|r| r.idle == Idleness::Busy),
                    sample: map(r),
                    host: None,
                }
            }
            Sampler::SwapOut(s) => {
                let r = s.sample().await;
                Taken {
                    host: r.known().map(|r| HostFacts::SwapOut {
                        total_bytes: r.total_pages.saturating_mul(r.page_size),
                    }),
                    sample: map(r),
                    ttft: None,
                    discarded: false,
                }
            }
            Sampler::Pressure(s) => {
                let r = s.sample().await;
                Taken {
                    host: match r.known() {
                        Some(MemoryPressureReading::Level(l)) => {
                            Some(HostFacts::PressureLevel(*l as u8))
                        }
                        Some(MemoryPressureReading::Stall { total_us, line, .. }) => {
                            Some(HostFacts::MemoryStall {
                                line: line.as_str(),
                                total_us: *total_us,
                            })
                        }
                        None => None,
                    },
                    sample: map(r),
                    ttft: None,
                    discarded: false,
                }
            }
            Sampler::Disk(s) => {
                let path = s.path().to_path_buf();
                let r = s.sample().await;
                Taken {
                    host: Some(match r.known() {
                        Some(r) => HostFacts::DiskFree {
                            path,
                            ratio: r.ratio,
                            available_bytes: r.available_bytes,
                        },
                        None => HostFacts::DiskFreeUnknown { path },
                    }),
                    sample: map(r),
                    ttft: None,
                    discarded: false,
                }
            }
        }
    }
}

fn map<R: Reading>(s: Sample<R>) -> Sample<Quantity> {
    match s {
        Sample::Known(r) => Sample::Known(r.quantity()),
        Sample::Unknown { reason } => Sample::Unknown { reason },
    }
}

fn command_params(argv: &[String], deadline: Duration) -> CommandParams {
    let mut c = CommandParams::new(argv.iter().cloned());
    c.deadline = deadline;
    c
}

fn exec_signal(argv: &[String], deadline: Duration) -> ExecSignal {
    ExecSignal::new(ExecParams {
        command: command_params(argv, deadline),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::guard::{Direction, Mode, Quantity as Q, Window};

    fn guard(signal: Spec) -> Guard {
        Guard {
            name: crate::unit::guard::GuardName::parse("g").unwrap(),
            signal,
            every: Duration::from_secs(10),
            timeout: Duration::from_secs(7),
            direction: Direction::Above,
            trip: Q::Number(3.0),
            clear: Q::Number(3.0),
            clear_is_default: true,
            trip_window: Window::Samples(1),
            clear_window: Window::Samples(1),
            stat: None,
            mode: Mode::Act,
            hold: Vec::new(),
            on_trip: None,
            on_clear: None,
        }
    }

    #[test]
    fn a_plain_number_command_is_the_exec_sampler_and_json_the_queue_sampler() {
        let cmd = vec!["/bin/echo".to_owned(), "3".to_owned()];
        let plain = Sampler::bind(&guard(Spec::QueueDepth(QueueSource::Command {
            command: cmd.clone(),
            select: None,
        })))
        .unwrap();
        assert!(matches!(plain, Sampler::Exec(_)), "{plain:?}");
        let lanes = Sampler::bind(&guard(Spec::QueueDepth(QueueSource::Command {
            command: cmd,
            select: Some(JsonSelect::Lane {
                lane: "main".into(),
                field: "queuedCount".into(),
            }),
        })))
        .unwrap();
        assert!(matches!(lanes, Sampler::Queue(_)), "{lanes:?}");
    }

    #[tokio::test]
    async fn an_exec_guard_samples_its_commands_number() {
        let mut s = Sampler::bind(&guard(Spec::Exec {
            command: vec!["/bin/echo".into(), "42".into()],
        }))
        .unwrap();
        let t = s.sample().await;
        assert_eq!(t.sample.quantity().map(|q| q.value), Some(42.0));
    }
}
