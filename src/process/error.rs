//! Why an `exec` unit could not be started: [`SpawnError`] names the unit and the program,
//! [`SpawnCause`] the cause. The engine reports one as a failed start (`SPAWN_FAILED`).
//!
//! The bottom of the process layer: it imports nothing from the modules that produce these
//! errors (`credentials`, `spawn`), so they can each depend on it.

use std::io;
use std::path::PathBuf;

use crate::unit::ExecSpec;

/// A unit could not be started. The engine reports it as a failed start (`SPAWN_FAILED`).
#[derive(Debug, thiserror::Error)]
#[error("unit {unit}: cannot start {}: {cause}", program.display())]
pub struct SpawnError {
    pub unit: String,
    /// `command[0]`.
    pub program: PathBuf,
    pub cause: SpawnCause,
}

impl SpawnError {
    pub(crate) fn new(unit: &str, spec: &ExecSpec, cause: SpawnCause) -> Self {
        Self {
            unit: unit.to_owned(),
            program: spec.command.first().map(PathBuf::from).unwrap_or_default(),
            cause,
        }
    }
}

/// Why a start failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnCause {
    #[error("the command is empty")]
    EmptyCommand,
    #[error("no such file")]
    ProgramNotFound,
    /// The program exists, yet exec reported a missing file: a `#!` interpreter that does not
    /// exist (e.g. `#!/usr/bin/env node` with no node on the unit's PATH) or a missing loader.
    #[error(
        "exec reported a missing file although the program exists: its #! interpreter (or, \
         for `#!/usr/bin/env`, the program it runs, looked up on the unit's PATH) was not found"
    )]
    InterpreterNotFound,
    #[error("not executable: {0}")]
    NotExecutable(&'static str),
    #[error("permission denied{}", as_user(.uid))]
    PermissionDenied { uid: Option<u32> },
    #[error("working directory {} does not exist", .0.display())]
    WorkingDirectoryMissing(PathBuf),
    #[error("working directory {} is not a directory", .0.display())]
    WorkingDirectoryNotADirectory(PathBuf),
    #[error(
        "`{key} = {value:?}` needs launchgraph to run as root to switch identity, and it runs \
         as uid {euid}"
    )]
    NeedsRoot {
        key: &'static str,
        value: String,
        euid: u32,
    },
    #[error("user {user:?} does not exist")]
    UnknownUser { user: String },
    #[error("group {group:?} does not exist")]
    UnknownGroup { group: String },
    #[error("uid {uid} has no user entry, so it has no primary group: set `group`")]
    NoPrimaryGroup { uid: u32 },
    #[error("cannot look up {what}: {error}")]
    Lookup { what: String, error: nix::Error },
    #[error("cannot open log file {}: {error}", path.display())]
    Log { path: PathBuf, error: io::Error },
    /// The process could not write its run record, so it never ran: launchgraph does not
    /// run what it could not find again after a crash.
    #[error(
        "cannot write its run record {}: {error}; it is not started untracked",
        path.display()
    )]
    RunRecord { path: PathBuf, error: io::Error },
    #[error("{0}")]
    Io(io::Error),
}

fn as_user(uid: &Option<u32>) -> String {
    uid.map(|u| format!(" (running as uid {u})"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::process::test_spec as spec;

    #[test]
    fn errors_name_unit_program_and_cause() {
        let e = SpawnError::new("gateway", &spec(&[]), SpawnCause::ProgramNotFound);
        assert_eq!(
            e.to_string(),
            "unit gateway: cannot start /bin/true: no such file"
        );
    }
}
