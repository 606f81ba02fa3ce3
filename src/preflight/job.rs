//! What a start will execute, read from where it is declared (a launchd job's plist, or an
//! `exec` unit's command) into one shape, [`Job`], that the checks work on: the argv, the
//! environment and PATH the process really gets, its working directory and log files, and
//! the user it runs as.
//!
//! This module reads and interprets; it reports nothing. Reading the plist file itself (and
//! what can go wrong doing so) is `plist`'s business.

use std::collections::BTreeMap;
use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use plist::{Dictionary, Value};

use super::context::{PreflightContext, UserEntry};
use crate::unit::{Domain, ExecSpec};

/// Where the job is declared, which decides how findings name its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A plist; `program_key`: the `Program` key is set, so argv[0] is `Program` and the
    /// other arguments come from `ProgramArguments[1..]`.
    Plist { path: PathBuf, program_key: bool },
    /// An `exec` unit's `command`, in the unit file.
    Command { unit_file: PathBuf },
}

/// The user a job runs as, as far as it is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunAs {
    pub uid: u32,
    pub gid: Option<u32>,
    pub home: Option<PathBuf>,
}

impl RunAs {
    fn from_entry(u: UserEntry) -> Self {
        Self {
            uid: u.uid,
            gid: Some(u.gid),
            home: Some(u.home),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    /// For a directory: create entries in it.
    Write,
    Execute,
}

/// Whether `who` may read or execute the file `meta` describes, from its mode bits. Root
/// reads anything and executes what has any execute bit. Unknown users, and users who would
/// need a supplementary group we do not know about, get the benefit of the doubt: a false
/// "cannot execute" would block a start that works.
pub(crate) fn permits(meta: &Metadata, who: Option<&RunAs>, access: Access) -> bool {
    let mode = meta.permissions().mode();
    let (owner, group, other) = match access {
        Access::Read => (0o400, 0o040, 0o004),
        Access::Write => (0o200, 0o020, 0o002),
        Access::Execute => (0o100, 0o010, 0o001),
    };
    let any = owner | group | other;
    match who {
        Some(w) if w.uid == 0 => access != Access::Execute || mode & any != 0,
        Some(w) if w.uid == meta.uid() => mode & owner != 0,
        Some(w) if w.gid == Some(meta.gid()) => mode & group != 0,
        Some(_) => mode & (group | other) != 0,
        None => mode & any != 0,
    }
}

/// What a start will execute.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub source: Source,
    /// What execvp gets: the program, then its arguments.
    pub argv: Vec<String>,
    /// The process's environment as far as it is declared (plist `EnvironmentVariables`, or
    /// the unit's `env`), with `PATH` and `HOME` filled in as the job will have them.
    pub env: BTreeMap<String, String>,
    /// Where PATH comes from, for messages.
    pub path_origin: &'static str,
    /// `WorkingDirectory` / `working-directory`, with the key that sets it.
    pub working_dir: Option<(&'static str, PathBuf)>,
    /// Log files, with the keys that set them.
    pub logs: Vec<(&'static str, PathBuf)>,
    pub run_as: Option<RunAs>,
    /// Whether the process really gets HOME in its environment. `env` may hold one only for
    /// resolving npm's files, which node finds through the user database when HOME is unset.
    pub home_in_env: bool,
}

impl Job {
    /// The PATH the process gets.
    pub(crate) fn path_var(&self) -> &str {
        self.env.get("PATH").map(String::as_str).unwrap_or("")
    }

    pub(crate) fn home(&self) -> Option<&Path> {
        self.env.get("HOME").map(Path::new)
    }

    /// How findings name argv[i]: `ProgramArguments[3]`, `Program`, `command[3]`.
    pub(crate) fn arg_key(&self, i: usize) -> String {
        match &self.source {
            Source::Plist {
                program_key: true, ..
            } if i == 0 => "Program".to_owned(),
            Source::Plist { .. } => format!("ProgramArguments[{i}]"),
            Source::Command { .. } => format!("command[{i}]"),
        }
    }

    /// Where the job is declared, for messages: `the plist /p` or `the unit file /u`.
    pub(crate) fn declared_in(&self) -> String {
        match &self.source {
            Source::Plist { path, .. } => format!("the plist {}", path.display()),
            Source::Command { unit_file } => format!("the unit file {}", unit_file.display()),
        }
    }

    pub(crate) fn is_plist(&self) -> bool {
        matches!(self.source, Source::Plist { .. })
    }
}

/// The user a launchd job runs as: `UserName` in the system domain (the key only applies
/// there, launchd.plist(5), https://keith.github.io/xcode-man-pages/launchd.plist.5.html), else root; the domain's user for `gui/<uid>` and `user/<uid>`; for
/// `gui/console`, whoever is at the console at start, taken to be the plist's owner when that
/// is not root.
fn launchd_run_as(
    dict: &Dictionary,
    domain: &Domain,
    plist_owner: Option<u32>,
    ctx: &PreflightContext,
) -> Option<RunAs> {
    let by_uid = |uid: u32| {
        Some(ctx.accounts.by_uid(uid).map_or(
            RunAs {
                uid,
                gid: None,
                home: None,
            },
            RunAs::from_entry,
        ))
    };
    match domain {
        Domain::System => match dict.get("UserName").and_then(Value::as_string) {
            Some(name) => ctx.user(name).map(RunAs::from_entry),
            None => by_uid(0),
        },
        Domain::Gui(uid) | Domain::User(uid) => by_uid(*uid),
        Domain::GuiConsole => plist_owner.filter(|u| *u != 0).and_then(by_uid),
    }
}

/// The job a plist describes, or `None` when it names no program.
pub(crate) fn from_plist(
    path: &Path,
    dict: &Dictionary,
    domain: &Domain,
    plist_owner: Option<u32>,
    ctx: &PreflightContext,
) -> Option<Job> {
    let program = dict.get("Program").and_then(Value::as_string);
    let args: Option<Vec<String>> = dict
        .get("ProgramArguments")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|v| v.as_string().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        })
        .unwrap_or(None);
    // With `Program`, ProgramArguments[0] is only argv[0]'s name; Program is what runs.
    let argv = match (program, args) {
        (Some(p), Some(a)) => std::iter::once(p.to_owned())
            .chain(a.into_iter().skip(1))
            .collect(),
        (Some(p), None) => vec![p.to_owned()],
        (None, Some(a)) if !a.is_empty() => a,
        _ => return None,
    };

    // "Values other than strings will be ignored" (launchd.plist(5), https://keith.github.io/xcode-man-pages/launchd.plist.5.html).
    let mut env: BTreeMap<String, String> = dict
        .get("EnvironmentVariables")
        .and_then(Value::as_dictionary)
        .map(|d| {
            d.iter()
                .filter_map(|(k, v)| v.as_string().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let path_origin = if env.contains_key("PATH") {
        "the plist's EnvironmentVariables"
    } else {
        env.insert("PATH".into(), ctx.launchd_path.clone());
        "launchd's default, since the plist's EnvironmentVariables set no PATH"
    };
    let run_as = launchd_run_as(dict, domain, plist_owner, ctx);
    // launchd sets HOME for a job it runs as a user (UserName, or an agent's domain), and for
    // a root daemon without UserName sets none (launchd.plist(5) UserName; Homebrew's root
    // services run without one).
    let home_in_env = env.contains_key("HOME")
        || !matches!(domain, Domain::System)
        || dict.get("UserName").is_some();
    if let Some(home) = run_as.as_ref().and_then(|r| r.home.as_ref()) {
        env.entry("HOME".into())
            .or_insert_with(|| home.to_string_lossy().into_owned());
    }

    let string = |k: &str| dict.get(k).and_then(Value::as_string).map(PathBuf::from);
    let logs = [
        ("StandardOutPath", "StandardOutPath"),
        ("StandardErrorPath", "StandardErrorPath"),
    ]
    .into_iter()
    .filter_map(|(key, name)| string(key).map(|p| (name, p)))
    .collect();

    Some(Job {
        source: Source::Plist {
            path: path.to_path_buf(),
            program_key: program.is_some(),
        },
        argv,
        env,
        path_origin,
        working_dir: string("WorkingDirectory").map(|p| ("WorkingDirectory", p)),
        logs,
        run_as,
        home_in_env,
    })
}

/// The job an `exec` unit runs: its command, the environment the process layer gives it
/// (`env` plus the canonical PATH, and HOME from `user`'s entry), as `user` or as launchgraph.
pub(crate) fn from_exec(unit_file: &Path, spec: &ExecSpec, ctx: &PreflightContext) -> Job {
    let path_origin = if spec.env.contains_key("PATH") {
        "the unit's env"
    } else {
        "the PATH exec units get when their env sets none"
    };
    let mut env = crate::process::unit_environment(spec, None);
    // The process layer adds HOME only from `user`'s entry.
    let home_in_env = env.contains_key("HOME") || spec.user.is_some();
    let run_as = match &spec.user {
        Some(user) => ctx.user(user).map(RunAs::from_entry),
        None => Some(ctx.accounts.by_uid(ctx.euid).map_or(
            RunAs {
                uid: ctx.euid,
                gid: None,
                home: None,
            },
            RunAs::from_entry,
        )),
    };
    // Without `user` the process layer adds no HOME; npm then asks the user database for the
    // uid's home, which is what `run_as` holds.
    if let Some(home) = run_as.as_ref().and_then(|r| r.home.as_ref()) {
        env.entry("HOME".into())
            .or_insert_with(|| home.to_string_lossy().into_owned());
    }
    let logs = [("stdout", &spec.stdout), ("stderr", &spec.stderr)]
        .into_iter()
        .filter_map(|(k, p)| p.clone().map(|p| (k, p)))
        .collect();
    Job {
        source: Source::Command {
            unit_file: unit_file.to_path_buf(),
        },
        argv: spec.command.clone(),
        env,
        path_origin,
        working_dir: Some(("working-directory", spec.working_directory.clone())),
        logs,
        run_as,
        home_in_env,
    }
}
