//! What preflight reports: [`Finding`]s, their [`Severity`] and their stable [`FindingCode`]s.
//!
//! The codes are one table, documented in docs/preflight.md, where a test keeps the two in
//! step. A code never changes meaning; new ones may be added. This module only describes
//! findings; the checks that produce them live in the sibling modules.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// How much a finding matters. Only [`Severity::Error`] blocks a start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational: nothing is wrong yet.
    Info,
    /// The job would start, but is fragile or surprising: it will break at the next upgrade,
    /// or something else starts it.
    Warning,
    /// The start would fail (or run the wrong thing): the unit is not started.
    Error,
}

impl Severity {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! codes {
    ($($variant:ident => $code:literal, $severity:ident, $doc:literal;)*) => {
        /// What a finding is about. See docs/preflight.md.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(into = "&'static str")]
        pub enum FindingCode {
            $(#[doc = $doc] $variant,)*
        }

        impl FindingCode {
            #[cfg(test)]
            pub(crate) const ALL: &'static [FindingCode] = &[$(FindingCode::$variant,)*];

            /// The stable identifier, e.g. `PLIST_PATH_MISSING`.
            pub(crate) fn code(self) -> &'static str {
                match self { $(FindingCode::$variant => $code,)* }
            }

            /// The severity findings with this code have, unless the table in
            /// docs/preflight.md names an exception.
            pub(crate) fn severity(self) -> Severity {
                match self { $(FindingCode::$variant => Severity::$severity,)* }
            }

            /// One sentence saying what it means.
            #[cfg(test)]
            pub(crate) fn meaning(self) -> &'static str {
                match self { $(FindingCode::$variant => $doc,)* }
            }
        }
    };
}

codes! {
    PlistUnreadable => "PLIST_UNREADABLE", Error,
        "The unit's plist does not exist, cannot be read, is not a regular file (a FIFO, a device) or is larger than 1 MiB, or is not a plist (XML or binary) with a dictionary at its root.";
    PlistLabelMismatch => "PLIST_LABEL_MISMATCH", Error,
        "The plist's Label is missing or differs from the unit's label, so launchctl would drive another job.";
    PlistNoProgram => "PLIST_NO_PROGRAM", Error,
        "The plist has neither a Program string nor a non-empty ProgramArguments array of strings.";
    PlistBadOwnership => "PLIST_BAD_OWNERSHIP", Error,
        "The plist's owner or mode is one launchd refuses: group- or world-writable, or not owned by root (LaunchDaemons) or by root or the domain's user (LaunchAgents).";
    AgentDomainOtherUser => "AGENT_DOMAIN_OTHER_USER", Error,
        "The plist is one user's LaunchAgent (in their ~/Library/LaunchAgents, or owned by them) and the unit's domain (gui/<uid>, user/<uid>, or gui/console resolved at start) is another user's, where the job would run as that user.";
    PlistBadName => "PLIST_BAD_NAME", Warning,
        "The plist's file name does not end in .plist, which launchctl has been known to skip.";
    PlistPathMissing => "PLIST_PATH_MISSING", Error,
        "A path the plist runs (Program or ProgramArguments[0], the OpenClaw env wrapper or env file, node, the entry script) does not exist.";
    CommandPathMissing => "COMMAND_PATH_MISSING", Error,
        "A path an exec unit's command runs (the program, the OpenClaw env wrapper or env file, node, the entry script) does not exist.";
    ProgramNotAbsolute => "PROGRAM_NOT_ABSOLUTE", Error,
        "The program, node or entry script is not an absolute path, so what runs depends on the job's PATH or working directory.";
    ProgramNotExecutable => "PROGRAM_NOT_EXECUTABLE", Error,
        "The program or node exists but is not a regular file the job's user may execute.";
    EntryNotReadable => "ENTRY_NOT_READABLE", Error,
        "The script node runs, or OpenClaw's env wrapper, is not a regular file the job's user may read; or the env file the wrapper sources is not a regular file (a FIFO, a device).";
    ShebangInterpreterNotOnPath => "SHEBANG_INTERPRETER_NOT_ON_PATH", Error,
        "A script starts with #!/usr/bin/env NAME and NAME is not on the PATH the job really gets, so it dies with exit 127.";
    ShebangInterpreterMissing => "SHEBANG_INTERPRETER_MISSING", Error,
        "A script's #! interpreter is an absolute path that does not exist or is not executable.";
    CellarVersionedPath => "CELLAR_VERSIONED_PATH", Warning,
        "A path points inside a versioned Homebrew Cellar directory, which the next brew upgrade removes.";
    MixedInstallRoots => "MIXED_INSTALL_ROOTS", Error,
        "node and the script it runs come from different installs (Homebrew, nvm, fnm, volta, asdf, ~/.openclaw), so the job runs code the current install no longer updates.";
    EntryOutsideNpmPrefix => "ENTRY_OUTSIDE_NPM_PREFIX", Warning,
        "The script is an npm global install outside the npm global prefix of the node that runs it, so npm i -g with that node updates another copy.";
    VersionManagerPath => "VERSION_MANAGER_PATH", Warning,
        "The job runs node or a script from a Node version manager (nvm, fnm, volta, asdf), or has one on its PATH; a version switch or cleanup breaks it.";
    WorkingDirectoryMissing => "WORKING_DIRECTORY_MISSING", Error,
        "The job's working directory does not exist or is not a directory.";
    HomeMissing => "HOME_MISSING", Error,
        "The job's program needs HOME in its environment (ollama: Go's os.UserHomeDir reads only $HOME) and will not get one: a root LaunchDaemon without UserName, or an exec unit without user or HOME in env.";
    LogDirectoryMissing => "LOG_DIRECTORY_MISSING", Error,
        "The directory of a log file (StandardOutPath, StandardErrorPath, stdout, stderr) does not exist.";
    LoadedDefinitionStale => "LOADED_DEFINITION_STALE", Warning,
        "The job launchd has loaded (launchctl print) differs from the plist file: launchd read the file at bootstrap and runs what it read then, until bootout and bootstrap.";
    DisabledByOwner => "DISABLED_BY_OWNER", Warning,
        "The job is disabled in launchd (launchctl print-disabled, or Disabled in the plist); launchgraph never disables a job, so its owner did, and launchgraph will not start it until it is enabled again (reported by check with --launchctl, and as the unit's reason at start).";
    LoadedInOtherDomain => "LOADED_IN_OTHER_DOMAIN", Warning,
        "The job's label is loaded in another domain that can hold it (system, gui/UID or user/UID of the plist's owner) than the unit's, so a bootstrap into the unit's domain would run a second copy; launchgraph will not start it there (reported by check with --launchctl, and as the unit's reason at start).";
    TakeoverRunAtLoad => "TAKEOVER_RUNATLOAD", Warning,
        "A unit with requirements has RunAtLoad true: launchd starts it at load (boot, login) before its requirements are ready.";
    TakeoverKeepAlive => "TAKEOVER_KEEPALIVE", Warning,
        "A unit with requirements has KeepAlive: launchd starts it at load and relaunches it on its own, ignoring the order launchgraph keeps.";
    WritableByNonRoot => "WRITABLE_BY_NON_ROOT", Error,
        "The job runs as root, but a path it runs or reads (the program, node, the entry script, OpenClaw's env wrapper or env file), or a directory above it, is owned by another user or writable by a group or others, so a non-root user can make root run their code (reported as a warning by check for the units directory).";
    PortHeldByOther => "PORT_HELD_BY_OTHER", Warning,
        "The loopback port the unit's readiness probe dials is already held by a process that is not the unit's run, or is held on the other address family only (reported by check, not by the preflight before a start).";
}

impl fmt::Display for FindingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl From<FindingCode> for &'static str {
    fn from(c: FindingCode) -> &'static str {
        c.code()
    }
}

/// One problem (or fact) preflight found, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub code: FindingCode,
    pub severity: Severity,
    /// The file or directory involved, when there is one.
    pub path: Option<PathBuf>,
    /// What is wrong, in plain words, naming the paths and keys involved.
    pub message: String,
    /// What a person can do to clear it.
    pub fix: String,
}

impl Finding {
    /// A finding with the code's usual severity.
    pub fn new(
        code: FindingCode,
        path: Option<PathBuf>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            code,
            severity: code.severity(),
            path,
            message: message.into(),
            fix: fix.into(),
        }
    }

    pub(crate) fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// Whether this finding keeps the unit from starting.
    pub fn blocks_start(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Messages quote paths from unit files and plists: escaped, so they stay on one line.
        let escape = crate::diag::escape;
        write!(
            f,
            "{} {}: {}",
            self.severity,
            self.code,
            escape(&self.message)
        )?;
        if !self.fix.is_empty() {
            write!(f, " Fix: {}", escape(&self.fix))?;
        }
        Ok(())
    }
}

/// Whether any of `findings` blocks the start.
pub fn blocks_start(findings: &[Finding]) -> bool {
    findings.iter().any(Finding::blocks_start)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/preflight.md lists every code once, with the same severity and meaning.
    #[test]
    fn docs_table_matches_the_codes() {
        let doc = include_str!("../../docs/preflight.md");
        let section = doc
            .split("\n## ")
            .find(|s| s.starts_with("Finding codes"))
            .expect("a \"Finding codes\" section");
        let mut documented = Vec::new();
        for line in section.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if cells.len() >= 5 && cells[1].starts_with('`') && cells[1].ends_with('`') {
                let severity = cells[2].split(&[' ', ';', ','][..]).next().unwrap_or("");
                documented.push((
                    cells[1].trim_matches('`').to_string(),
                    severity.to_ascii_lowercase(),
                    cells[3].to_string(),
                ));
            }
        }
        let ours: Vec<(String, String, String)> = FindingCode::ALL
            .iter()
            .map(|c| {
                (
                    c.code().to_string(),
                    c.severity().as_str().to_string(),
                    c.meaning().to_string(),
                )
            })
            .collect();
        assert_eq!(
            documented, ours,
            "docs/preflight.md and src/preflight/finding.rs disagree"
        );
    }
}
