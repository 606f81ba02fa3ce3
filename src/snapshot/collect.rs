//! What a snapshot is made of while it is being collected: entries ([`Content`], redacted
//! once more when rendered), warnings and the secret values met ([`Collected`]); and
//! [`Collector`], the interface of every source beyond the local files (the daemon, the
//! services the units run), so that taking a snapshot names none of them.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use serde_json::Value as Json;

use crate::preflight;
use crate::unit::Unit;

use super::redact::{Secrets, redact_plist};

/// A unit as it would run: its environment, and preflight's view of what it runs.
pub(super) struct ResolvedUnit {
    pub unit: Unit,
    /// Unredacted.
    pub env: BTreeMap<String, String>,
    pub target: preflight::Target,
}

/// A source of entries beyond the local files. Every collector is asked at the same time,
/// each bounded by the snapshot's timeout.
pub(super) trait Collector: Send {
    /// What it collects, for the warning when the collector itself fails.
    fn name(&self) -> &'static str;

    /// Looks at the units and their resolved environments first, in a blocking context: a
    /// collector that runs a program the units run finds it here, and warns in `c`.
    fn prepare(&mut self, _units: &[ResolvedUnit], _c: &mut Collected) {}

    /// Collects within `timeout`. Never fails: what cannot be collected is a warning.
    fn collect(self: Box<Self>, timeout: Duration) -> CollectFuture;
}

/// What [`Collector::collect`] returns: owned, so that it runs as a task of its own.
pub(super) type CollectFuture = Pin<Box<dyn Future<Output = Collected> + Send + 'static>>;

/// One entry's content before the last redaction pass.
pub(super) enum Content {
    Text(String),
    Json(Json),
    /// A plist as read: stored byte for byte unless something in it must be redacted.
    Plist {
        original: Vec<u8>,
        value: plist::Value,
    },
}

/// Entries, warnings, and every secret value met so far.
#[derive(Default)]
pub(super) struct Collected {
    entries: Vec<(String, Content)>,
    warnings: Vec<String>,
    pub(super) secrets: Secrets,
}

impl Collected {
    pub(super) fn warning(w: String) -> Self {
        let mut c = Self::default();
        c.warn(w);
        c
    }

    pub(super) fn warn(&mut self, w: impl Into<String>) {
        self.warnings.push(w.into());
    }

    pub(super) fn add(&mut self, name: impl Into<String>, content: Content) {
        self.entries.push((name.into(), content));
    }

    pub(super) fn extend(&mut self, other: Collected) {
        self.entries.extend(other.entries);
        self.warnings.extend(other.warnings);
        self.secrets.extend(other.secrets);
    }

    /// The archive's entries, `manifest.json` first, with every known secret value replaced
    /// wherever it still appears; and the warnings, scrubbed the same way.
    pub(super) fn finish(self, mut manifest: Json) -> (Vec<(String, Vec<u8>)>, Vec<String>) {
        let secrets = self.secrets;
        let mut warnings: Vec<String> = self
            .warnings
            .iter()
            .map(|w| secrets.scrub(w).into_owned())
            .collect();
        let mut out = Vec::with_capacity(self.entries.len() + 1);
        for (name, content) in self.entries {
            match render(content, &secrets) {
                Ok(bytes) => out.push((name, bytes)),
                Err(e) => warnings.push(format!("{name} left out: {e}")),
            }
        }
        manifest["entries"] = Json::Array(
            std::iter::once("manifest.json".to_owned())
                .chain(out.iter().map(|(n, _)| n.clone()))
                .map(Json::String)
                .collect(),
        );
        manifest["warnings"] = Json::Array(warnings.iter().cloned().map(Json::String).collect());
        let mut manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        manifest_bytes.push(b'\n');
        out.insert(0, ("manifest.json".to_owned(), manifest_bytes));
        (out, warnings)
    }
}

fn render(content: Content, secrets: &Secrets) -> io::Result<Vec<u8>> {
    match content {
        Content::Text(t) => Ok(secrets.scrub(&t).into_owned().into_bytes()),
        Content::Json(mut v) => {
            secrets.scrub_json(&mut v);
            let mut bytes = serde_json::to_vec_pretty(&v).map_err(io::Error::other)?;
            bytes.push(b'\n');
            Ok(bytes)
        }
        Content::Plist { original, value } => {
            let mut redacted = value.clone();
            redact_plist(&mut redacted, secrets);
            if redacted == value {
                return Ok(original);
            }
            let mut bytes = Vec::new();
            redacted
                .to_writer_xml(&mut bytes)
                .map_err(io::Error::other)?;
            Ok(bytes)
        }
    }
}
