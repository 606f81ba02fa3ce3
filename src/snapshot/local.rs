//! What a snapshot reads on this host: the unit files (and the check errors when they are
//! invalid), the runbook of their guards, the plists the units reference, each unit's
//! resolved environment, and the stored fingerprints. Every file is read with a bound
//! ([`MAX_FILE_BYTES`]).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Cursor};
use std::path::{Path, PathBuf};

use serde_json::json;

use super::collect::{Collected, Content, ResolvedUnit};
use super::redact::{redact_env, redact_toml};
use crate::compile::compile_dir;
use crate::guard::runbook::Runbook;
use crate::preflight::{self, PreflightContext};
use crate::process::{plan_credentials, unit_environment};
use crate::unit::{ExecSpec, LaunchdSpec, Runner, Unit};

/// Unit files, plists and env files larger than this are not what launchgraph reads; they are
/// left out with a warning rather than filling the archive.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Reads the units and the state directory: the entries and warnings, and the units that
/// could be resolved.
pub(super) fn collect(units_dir: &Path, state_dir: &Path) -> (Collected, Vec<ResolvedUnit>) {
    let mut c = Collected::default();
    unit_files(units_dir, &mut c);

    let (units, complete): (Vec<Unit>, bool) = match compile_dir(units_dir) {
        Ok(compiled) => (compiled.units, true),
        Err(diags) => {
            let mut text = format!(
                "launchgraph check: the units directory {} is invalid ({} problem{}):\n\n",
                units_dir.display(),
                diags.len(),
                if diags.len() == 1 { "" } else { "s" }
            );
            for d in &diags {
                text.push_str(&d.to_string());
                text.push('\n');
            }
            c.add("units/INVALID.txt", Content::Text(text));
            c.warn(format!(
                "the units directory is invalid ({} problems, in units/INVALID.txt); the \
                 plists and environments of the unit files that are valid on their own are \
                 included",
                diags.len()
            ));
            // The files that are valid on their own still say what runs.
            let units = crate::unit::load::read_dir(units_dir)
                .units
                .into_iter()
                .map(|p| p.unit)
                .collect();
            (units, false)
        }
    };
    runbook(units_dir, &units, complete, &mut c);

    let ctx = PreflightContext::host();
    let mut plists = Vec::new();
    let mut environments = Vec::new();
    let mut resolved = Vec::new();
    for unit in &units {
        let target = preflight::target(unit, &ctx);
        let env = match &unit.runner {
            Runner::Exec(spec) => Some(exec_environment(
                unit,
                spec,
                &target,
                &mut environments,
                &mut c,
            )),
            Runner::Launchd(spec) => launchd_environment(
                unit,
                spec,
                &target,
                &ctx,
                &mut plists,
                &mut environments,
                &mut c,
            ),
            // Nothing of it is launchgraph's to collect: it only watches the service.
            Runner::External(_) => None,
        };
        if let Some(env) = env {
            resolved.push(ResolvedUnit {
                unit: unit.clone(),
                env,
                target,
            });
        }
    }
    for (name, content) in plists.into_iter().chain(environments) {
        c.add(name, content);
    }
    fingerprints(state_dir, &mut c);
    (c, resolved)
}

/// The runbook of the units' guards and switches, as `launchgraph guards` and `guards --json`
/// print it: what would have run on a trip or a clear at the time of the snapshot.
fn runbook(units_dir: &Path, units: &[Unit], complete: bool, c: &mut Collected) {
    let book = Runbook::of_units(units, &units_dir.to_string_lossy());
    let mut text = book.render();
    if !complete {
        text.insert_str(
            0,
            "The units directory is invalid (units/INVALID.txt): this runbook covers only \
             the unit files valid on their own.\n\n",
        );
    }
    c.add("runbook.txt", Content::Text(text));
    match serde_json::to_value(&book) {
        Ok(v) => c.add("runbook.json", Content::Json(v)),
        Err(e) => c.warn(format!("runbook.json left out: {e}")),
    }
}

/// Every `*.toml` of the units directory (hidden files aside, as the loader does), secrets
/// redacted.
fn unit_files(units_dir: &Path, c: &mut Collected) {
    let entries = match fs::read_dir(units_dir) {
        Ok(e) => e,
        Err(e) => {
            c.warn(format!(
                "cannot read the units directory {}: {e}",
                units_dir.display()
            ));
            return;
        }
    };
    let mut files: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (!name.starts_with('.') && name.ends_with(".toml") && !name.contains('/'))
                .then(|| (name, e.path()))
        })
        .collect();
    files.sort();
    for (name, path) in files {
        match read_small(&path) {
            Ok(Some(bytes)) => {
                let text = String::from_utf8_lossy(&bytes);
                let (redacted, found) = redact_toml(&text);
                for s in found {
                    c.secrets.add(&s);
                }
                c.add(format!("units/{name}"), Content::Text(redacted));
            }
            // A directory or a FIFO named *.toml: the loader reports it, nothing to copy.
            Ok(None) => {}
            Err(e) => c.warn(format!("unit file {} not copied: {e}", path.display())),
        }
    }
}

/// A regular file's bytes, at most [`MAX_FILE_BYTES`]; `None` for anything but a regular file.
/// Opened without blocking and checked on the open file, so a FIFO never stalls a snapshot.
fn read_small(path: &Path) -> io::Result<Option<Vec<u8>>> {
    use crate::fsutil::{ReadError, read_regular};
    match read_regular(path, MAX_FILE_BYTES) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(ReadError::NotRegular { .. }) => Ok(None),
        Err(ReadError::Io(e)) => Err(e),
        Err(e @ ReadError::TooLarge { .. }) => {
            Err(io::Error::other(e.describe("a file a snapshot copies")))
        }
    }
}

/// An exec unit's environment: its `env` plus the PATH it gets, and, when it runs as another
/// user, HOME, USER and LOGNAME from that account, as the daemon (root) would start it.
fn exec_environment(
    unit: &Unit,
    spec: &ExecSpec,
    target: &preflight::Target,
    environments: &mut Vec<(String, Content)>,
    c: &mut Collected,
) -> BTreeMap<String, String> {
    let creds = plan_credentials(spec, unit.name.as_str(), true)
        .ok()
        .flatten();
    let env = unit_environment(spec, creds.as_ref());
    c.secrets.add_env(&env);
    let doc = json!({
        "unit": unit.name.as_str(),
        "kind": "exec",
        "user": spec.user,
        "path_origin": if spec.env.contains_key("PATH") {
            "the unit's env"
        } else {
            "the PATH exec units get when their env sets none"
        },
        "environment": redact_env(&env),
    });
    environments.push((
        format!("environment/{}.json", unit.name),
        Content::Json(doc),
    ));
    // The doctor runs with what the job would have; the job's own HOME when it has none.
    let mut job_env = env;
    if let Some(home) = &target.home {
        job_env
            .entry("HOME".into())
            .or_insert_with(|| home.to_string_lossy().into_owned());
    }
    job_env
}

/// A launchd unit's plist (queued for the archive) and environment: the plist's
/// EnvironmentVariables, PATH and HOME as the job gets them, then the env file its wrapper
/// sources when
/// the ProgramArguments use its wrapper layout. Returns the unredacted environment, `None`
/// when the plist cannot be read.
fn launchd_environment(
    unit: &Unit,
    spec: &LaunchdSpec,
    target: &preflight::Target,
    ctx: &PreflightContext,
    plists: &mut Vec<(String, Content)>,
    environments: &mut Vec<(String, Content)>,
    c: &mut Collected,
) -> Option<BTreeMap<String, String>> {
    let path = &spec.plist;
    let original = match read_small(path) {
        Ok(Some(b)) => b,
        Ok(None) => {
            c.warn(format!(
                "unit {}: the plist {} is not a regular file; not copied",
                unit.name,
                path.display()
            ));
            return None;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            c.warn(format!(
                "unit {}: the plist {} does not exist",
                unit.name,
                path.display()
            ));
            return None;
        }
        Err(e) => {
            c.warn(format!(
                "unit {}: the plist {} cannot be read: {e}",
                unit.name,
                path.display()
            ));
            return None;
        }
    };
    let value = match plist::Value::from_reader(Cursor::new(&original)) {
        Ok(v) => v,
        Err(e) => {
            // Its secrets cannot be found, so it is not copied at all.
            c.warn(format!(
                "unit {}: the plist {} is not a valid plist ({e}); not copied, since its \
                 secrets could not be redacted",
                unit.name,
                path.display()
            ));
            return None;
        }
    };

    // "Values other than strings will be ignored" by launchd; they are not the environment.
    let plist_env: BTreeMap<String, String> = value
        .as_dictionary()
        .and_then(|d| d.get("EnvironmentVariables"))
        .and_then(plist::Value::as_dictionary)
        .map(|d| {
            d.iter()
                .filter_map(|(k, v)| v.as_string().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    c.secrets.add_env(&plist_env);
    // Two units of an invalid directory may name one label: each keeps its own copy.
    let mut name = format!("plists/{}.plist", safe_component(&spec.label.0));
    if plists.iter().any(|(n, _)| *n == name) {
        name = format!(
            "plists/{}.{}.plist",
            safe_component(&spec.label.0),
            unit.name
        );
    }
    plists.push((name, Content::Plist { original, value }));

    let mut env = plist_env.clone();
    let path_origin = if env.contains_key("PATH") {
        "the plist's EnvironmentVariables"
    } else {
        env.insert("PATH".into(), ctx.launchd_path.clone());
        "launchd's default, since the plist's EnvironmentVariables set no PATH"
    };
    if let Some(home) = &target.home {
        env.entry("HOME".into())
            .or_insert_with(|| home.to_string_lossy().into_owned());
    }
    let env_file = target.env_file.as_ref().map(|file| {
        let vars = match read_small(file) {
            Ok(Some(bytes)) => crate::preflight::parse_env_file(&String::from_utf8_lossy(&bytes)),
            Ok(None) => {
                c.warn(format!(
                    "unit {}: the env file {} its wrapper sources is not a regular file",
                    unit.name,
                    file.display()
                ));
                BTreeMap::new()
            }
            Err(e) => {
                c.warn(format!(
                    "unit {}: the env file {} its wrapper sources cannot be read: {e}",
                    unit.name,
                    file.display()
                ));
                BTreeMap::new()
            }
        };
        c.secrets.add_env(&vars);
        // The wrapper sources the file and then execs the command: its values win.
        env.extend(vars.clone());
        json!({ "path": file, "variables": redact_env(&vars) })
    });
    let doc = json!({
        "unit": unit.name.as_str(),
        "kind": "launchd",
        "label": spec.label.0,
        "plist": path,
        "plist_environment": redact_env(&plist_env),
        "path_origin": path_origin,
        "env_file": env_file,
        "environment": redact_env(&env),
    });
    environments.push((
        format!("environment/{}.json", unit.name),
        Content::Json(doc),
    ));
    Some(env)
}

/// The stored fingerprints, `<state>/fingerprints/*.json`, of current and former units alike.
fn fingerprints(state_dir: &Path, c: &mut Collected) {
    let dir = state_dir.join("fingerprints");
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            c.warn(format!(
                "cannot read the fingerprints in {}: {e}",
                dir.display()
            ));
            return;
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let unit = name.strip_suffix(".json")?;
            (!unit.is_empty() && !unit.starts_with('.')).then(|| unit.to_owned())
        })
        .collect();
    names.sort();
    for unit in names {
        match crate::fingerprint::load(state_dir, &unit) {
            Ok(Some(fp)) => match serde_json::to_value(&fp) {
                Ok(v) => c.add(format!("fingerprints/{unit}.json"), Content::Json(v)),
                Err(e) => c.warn(format!("fingerprint of {unit}: {e}")),
            },
            Ok(None) => {}
            Err(e) => c.warn(format!("fingerprint of {unit} not included: {e}")),
        }
    }
}

/// A label as one file name: launchd labels are reverse-DNS names, but nothing stops a `/`.
fn safe_component(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|ch| if ch == '/' || ch == '\0' { '_' } else { ch })
        .collect();
    if cleaned.is_empty() || cleaned.starts_with('.') {
        format!("_{cleaned}")
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn env_files_parse_as_preflight_reads_them() {
        let env = crate::preflight::parse_env_file(
            "# comment\nexport OPENCLAW_STATE_DIR=\"/s\"\nOPENAI_API_KEY='sk-1'\nbad key=1\nPLAIN=x=y\n",
        );
        assert_eq!(env["OPENCLAW_STATE_DIR"], "/s");
        assert_eq!(env["OPENAI_API_KEY"], "sk-1");
        assert_eq!(env["PLAIN"], "x=y");
        assert_eq!(env.len(), 3);
    }
}
