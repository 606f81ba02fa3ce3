//! `exec`: a command whose standard output is one number, optionally with a unit (`3`,
//! `2.5s`, `41%`, `12MiB/s`), run as a bounded helper (`BoundedCommand`): an exact
//! environment, an identity, a deadline, capped output, its process group killed at the end.
//!
//! Anything else is unknown, with the reason and the first 200 characters of what it
//! printed: a non-zero exit, a signal, the deadline, more output than the cap, several
//! lines, a word, a unit not in the table below.
//!
//! | printed | unit |
//! |---|---|
//! | `3`, `-1.5e3` | count |
//! | `41%` | ratio (0.41) |
//! | `2.5s`, `250ms`, `90us` | seconds |
//! | `512B`, `4KiB`, `1.5GiB`, `4kB`, `3MB`, `2GB` | bytes |
//! | any of the byte units followed by `/s` | bytes per second |

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::process::{BoundedCommand, BoundedError, Capture, Credentials};

use super::{Quantity, Sample, Signal, Unit, quote};

/// A helper command: argv, identity, environment and bounds. Shared by `exec` and by the
/// command form of `queue-depth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandParams {
    /// The program (an absolute path, or found on the `PATH` given in `env`) and its
    /// arguments.
    pub argv: Vec<String>,
    /// Another identity to run as (needs launchgraph to be root); `None` keeps launchgraph's.
    pub credentials: Option<Credentials>,
    /// The whole environment. Empty means only `PATH`, set to the canonical one units get.
    pub env: BTreeMap<String, String>,
    pub deadline: Duration,
    /// Bytes of standard output kept; a command that prints more is unknown, unless
    /// `cut_long_output`.
    pub output_cap: usize,
    /// Keep the first `output_cap` bytes of a longer output instead of refusing it (for
    /// commands whose output is shown, not read: a guard's actions).
    pub cut_long_output: bool,
}

impl CommandParams {
    pub fn new<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> Self {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            credentials: None,
            env: BTreeMap::new(),
            deadline: Duration::from_secs(10),
            output_cap: 64 * 1024,
            cut_long_output: false,
        }
    }

    /// Runs the command: its standard output when it exits 0, or why there is none.
    pub async fn run(&self) -> Result<Vec<u8>, String> {
        let Some((program, args)) = self.argv.split_first() else {
            return Err("empty command".into());
        };
        let mut cmd = BoundedCommand::new(PathBuf::from(program), self.deadline)
            .args(args)
            .credentials(self.credentials.clone())
            .current_dir("/")
            // One byte past the cap tells "exactly the cap" from "more".
            .stdout(Capture::Head(self.output_cap.saturating_add(1)))
            .stderr(Capture::Tail(1024));
        if self.env.is_empty() {
            cmd = cmd.env("PATH", crate::unit::CANONICAL_PATH);
        }
        for (k, v) in &self.env {
            cmd = cmd.env(k, v);
        }
        let out = match cmd.run().await {
            Ok(out) => out,
            Err(BoundedError::Spawn { source, .. }) => {
                return Err(format!("{program}: cannot start: {source}"));
            }
            Err(e) => return Err(e.to_string()),
        };
        if out.timed_out {
            return Err(format!(
                "{program}: no exit within {}; its process group was killed",
                humantime::format_duration(self.deadline)
            ));
        }
        if !out.status.success() {
            let how = match (out.code(), out.signal()) {
                (Some(code), _) => format!("exited {code}"),
                (None, Some(sig)) => format!("was killed by signal {sig}"),
                (None, None) => format!("ended with {}", out.status),
            };
            return Err(format!("{program} {how}; stderr: {}", quote(&out.stderr)));
        }
        if self.cut_long_output {
            let mut stdout = out.stdout;
            stdout.truncate(self.output_cap);
            return Ok(stdout);
        }
        if out.stdout_truncated || out.stdout.len() > self.output_cap {
            return Err(format!(
                "{program} printed more than {} bytes: {}",
                self.output_cap,
                quote(&out.stdout)
            ));
        }
        Ok(out.stdout)
    }
}

/// One number with an optional unit, alone on its line (surrounding space is ignored).
pub fn parse_number(output: &[u8]) -> Result<Quantity, String> {
    let bad = |why: &str| format!("{why}: {}", quote(output));
    let Ok(text) = std::str::from_utf8(output) else {
        return Err(bad("not UTF-8"));
    };
    let text = text.trim();
    if text.is_empty() {
        return Err("printed nothing".into());
    }
    if text.contains('\n') {
        return Err(bad("more than one line"));
    }
    // The longest prefix made of number characters that parses: "2.5e3s" is 2.5e3 and "s".
    let numeric_len = text
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')))
        .unwrap_or(text.len());
    let (value, rest) = (1..=numeric_len)
        .rev()
        .find_map(|n| {
            text[..n]
                .parse::<f64>()
                .ok()
                .map(|v| (v, text[n..].trim_start()))
        })
        .ok_or_else(|| bad("not a number"))?;
    if !value.is_finite() {
        return Err(bad("not a finite number"));
    }
    let (factor, unit) = unit_of(rest).ok_or_else(|| bad("not a number with a known unit"))?;
    Ok(Quantity::new(value * factor, unit))
}

/// The factor to the base unit, and the unit.
fn unit_of(suffix: &str) -> Option<(f64, Unit)> {
    if let Some(bytes) = suffix.strip_suffix("/s") {
        return byte_factor(bytes).map(|f| (f, Unit::BytesPerSecond));
    }
    Some(match suffix {
        "" => (1.0, Unit::Count),
        "%" => (0.01, Unit::Ratio),
        "s" => (1.0, Unit::Seconds),
        "ms" => (1e-3, Unit::Seconds),
        "us" | "µs" => (1e-6, Unit::Seconds),
        other => return byte_factor(other).map(|f| (f, Unit::Bytes)),
    })
}

fn byte_factor(unit: &str) -> Option<f64> {
    Some(match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        _ => return None,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecParams {
    pub command: CommandParams,
}

/// The `exec` sampler.
#[derive(Debug)]
pub struct ExecSignal {
    params: ExecParams,
}

impl ExecSignal {
    pub fn new(params: ExecParams) -> Self {
        Self { params }
    }
}

impl Signal for ExecSignal {
    type Reading = Quantity;

    async fn sample(&mut self) -> Sample<Quantity> {
        match self
            .params
            .command
            .run()
            .await
            .and_then(|out| parse_number(&out))
        {
            Ok(q) => Sample::Known(q),
            Err(reason) => Sample::unknown(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_with_and_without_units() {
        let table: &[(&str, f64, Unit)] = &[
            ("3\n", 3.0, Unit::Count),
            ("  -1.5e3 ", -1500.0, Unit::Count),
            ("41%", 0.41, Unit::Ratio),
            ("2.5s", 2.5, Unit::Seconds),
            ("250 ms", 0.25, Unit::Seconds),
            ("90us", 90e-6, Unit::Seconds),
            ("2.5e3s", 2500.0, Unit::Seconds),
            ("512B", 512.0, Unit::Bytes),
            ("1.5GiB", 1.5 * 1024.0 * 1024.0 * 1024.0, Unit::Bytes),
            ("3MB", 3e6, Unit::Bytes),
            ("12MiB/s", 12.0 * 1024.0 * 1024.0, Unit::BytesPerSecond),
            ("7 B/s", 7.0, Unit::BytesPerSecond),
        ];
        for &(text, value, unit) in table {
            let q = parse_number(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(q.unit, unit, "{text}");
            assert!(
                (q.value - value).abs() <= value.abs() * 1e-12,
                "{text}: {}",
                q.value
            );
        }
    }

    #[test]
    fn anything_else_is_refused_with_a_quote() {
        let table: &[(&[u8], &str)] = &[
            (b"", "printed nothing"),
            (b"   \n", "printed nothing"),
            (b"3\n4\n", "more than one line"),
            (b"three", "not a number"),
            (b"inf", "not a number"),
            (b"NaN", "not a number"),
            (b"1e999", "not a finite number"),
            (b"3 apples", "known unit"),
            (b"5 MiB/h", "known unit"),
            (b"\xff1", "not UTF-8"),
        ];
        for &(out, why) in table {
            let e = parse_number(out).unwrap_err();
            assert!(e.contains(why), "{out:?}: {e}");
        }
        let long = format!("x{}", "y".repeat(500));
        let e = parse_number(long.as_bytes()).unwrap_err();
        assert!(e.len() < 260 && e.ends_with("...\""), "{e}");
    }
}
