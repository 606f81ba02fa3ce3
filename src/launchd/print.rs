//! Parsing what `launchctl print <service-target>` and `launchctl print-disabled <domain>`
//! write on stdout.
//!
//! Apple states that this output "is NOT API in any sense at all" (launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html), so the
//! parsers are lenient: they never fail, skip what they do not know, and read only what has
//! been stable across macOS 10.14 to 27 (verbatim `launchctl print` captures: sglavoie/dev-helpers LaunchctlFixtures.swift, byliu-labs/egress-guard status_darwin_test.go, wazuh/wazuh-agent#569). Whether a service is loaded at all
//! is decided by launchctl's exit status, not here (see `launchctl`).
//!
//! The one strict rule is depth: only lines indented by exactly one TAB belong to the service.
//! Nested blocks (coalitions, endpoints, environments) repeat keys such as `state = active`
//! and `active count`, and `stdout path =` contains `path =`, which is how unanchored regexes
//! go wrong (verbatim `launchctl print` captures: sglavoie/dev-helpers LaunchctlFixtures.swift, byliu-labs/egress-guard status_darwin_test.go, wazuh/wazuh-agent#569).

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The `state` of a service (verbatim `launchctl print` captures: sglavoie/dev-helpers LaunchctlFixtures.swift, byliu-labs/egress-guard status_darwin_test.go, wazuh/wazuh-agent#569: unknown values are never "running").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Running,
    NotRunning,
    /// A relaunch is pending, e.g. while KeepAlive waits out the ThrottleInterval.
    SpawnScheduled,
    /// Being (re)launched through xpcproxy (verbatim `launchctl print` captures: sglavoie/dev-helpers LaunchctlFixtures.swift, byliu-labs/egress-guard status_darwin_test.go, wazuh/wazuh-agent#569).
    Xpcproxy,
    /// Any other value, verbatim; empty when the output had no depth-1 `state` line.
    Other(String),
}

impl JobState {
    fn parse(value: &str) -> Self {
        match value {
            "running" => JobState::Running,
            "not running" => JobState::NotRunning,
            "spawn scheduled" => JobState::SpawnScheduled,
            "xpcproxy" => JobState::Xpcproxy,
            other => JobState::Other(other.to_owned()),
        }
    }
}

/// How the last run of the service ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastExit {
    /// `last exit code = (never exited)`: loaded, not run yet, or still in its first run.
    Never,
    /// `last exit code = 0`, or the sysexits form `78: EX_CONFIG` (verbatim `launchctl print` captures: sglavoie/dev-helpers LaunchctlFixtures.swift, byliu-labs/egress-guard status_darwin_test.go, wazuh/wazuh-agent#569).
    Code(i32),
    /// `last terminating signal = Terminated: 15`, which replaces the exit code line.
    Signal(i32),
    /// Neither line, or a value this parser does not understand.
    Unknown,
}

/// What `launchctl print <service-target>` says about one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// From the header: `system/<label> = {`, `gui/501/<label> = {`, or Mojave's bare
    /// `<label> = {` (verbatim `launchctl print` captures: sglavoie/dev-helpers LaunchctlFixtures.swift, byliu-labs/egress-guard status_darwin_test.go, wazuh/wazuh-agent#569).
    pub label: Option<String>,
    pub state: JobState,
    /// Present only while the service runs.
    pub pid: Option<u32>,
    pub runs: Option<u64>,
    pub last_exit: LastExit,
    pub program: Option<String>,
    /// The depth-1 `arguments = { ... }` block, one argument per line.
    pub arguments: Vec<String>,
    /// The plist the service was loaded from.
    pub path: Option<PathBuf>,
    pub stdout_path: Option<PathBuf>,
    pub stderr_path: Option<PathBuf>,
    /// `domain = gui/501 [100020]` gives `gui/501`; Mojave prints
    /// `com.apple.xpc.launchd.domain.system`.
    pub domain: Option<String>,
    /// `exit timeout`: seconds between SIGTERM and SIGKILL when stopping.
    pub exit_timeout: Option<u64>,
    /// `minimum runtime`, which follows ThrottleInterval (verbatim `launchctl print` captures: sglavoie/dev-helpers LaunchctlFixtures.swift, byliu-labs/egress-guard status_darwin_test.go, wazuh/wazuh-agent#569).
    pub minimum_runtime: Option<u64>,
    /// `running`, `exited`, `spawn failed`, `uninitialized`, ...
    pub job_state: Option<String>,
    /// `last exit reason = OS_REASON_CODESIGNING`: why launchd itself ended or refused the
    /// last run, printed instead of (or next to) `last exit code` (verbatim captures in
    /// cli-pulse/cli-pulse-private `CLI Pulse Bar/CLIPulseCore/Tests/CLIPulseCoreTests/HelperAgentHealthTests.swift`,
    /// byliu-labs/egress-guard status_darwin_test.go).
    pub last_exit_reason: Option<String>,
    /// The `|`-separated tokens of `properties`: `keepalive`, `runatload`, ...
    pub properties: Vec<String>,
}

impl Default for ServiceInfo {
    fn default() -> Self {
        Self {
            label: None,
            state: JobState::Other(String::new()),
            pid: None,
            runs: None,
            last_exit: LastExit::Unknown,
            program: None,
            arguments: Vec::new(),
            path: None,
            stdout_path: None,
            stderr_path: None,
            domain: None,
            exit_timeout: None,
            minimum_runtime: None,
            job_state: None,
            last_exit_reason: None,
            properties: Vec::new(),
        }
    }
}

impl ServiceInfo {
    pub fn keepalive(&self) -> bool {
        self.has_property("keepalive")
    }

    pub fn runatload(&self) -> bool {
        self.has_property("runatload")
    }

    /// Running means both: a `running` state and a pid. Either alone is not trusted.
    pub fn is_running(&self) -> bool {
        self.state == JobState::Running && self.pid.is_some()
    }

    /// `job state = spawn failed`: launchd could not start the program. It then records
    /// `last exit code = 78: EX_CONFIG` or a `last exit reason` itself, which is not an exit
    /// of the program (verbatim captures in cli-pulse/cli-pulse-private
    /// `CLI Pulse Bar/CLIPulseCore/Tests/CLIPulseCoreTests/HelperAgentHealthTests.swift`;
    /// github.com/codechimp-org/ha-menu/issues/51, github.com/LrGenius/LrGeniusAI/pull/298).
    pub fn spawn_failed(&self) -> bool {
        self.job_state.as_deref() == Some("spawn failed")
    }

    /// The path launchd tries to run: `program`, else the first of `arguments`.
    pub fn program_path(&self) -> Option<&str> {
        self.program
            .as_deref()
            .or_else(|| self.arguments.first().map(String::as_str))
    }

    fn has_property(&self, token: &str) -> bool {
        self.properties.iter().any(|p| p == token)
    }
}

/// Counts the leading TABs of a line and returns the rest.
fn depth(line: &str) -> (usize, &str) {
    let rest = line.trim_start_matches('\t');
    (line.len() - rest.len(), rest)
}

/// The label in a header key: `system/L`, `gui/501/L`, `user/501/L`, `pid/1/L`, `login/1/L`,
/// or a bare `L`. Labels may themselves contain `/`, so only the domain prefix is removed.
fn label_of(header_key: &str) -> String {
    if let Some(label) = header_key.strip_prefix("system/") {
        return label.to_owned();
    }
    for kind in ["gui/", "user/", "pid/", "login/"] {
        let Some((id, label)) = header_key
            .strip_prefix(kind)
            .and_then(|rest| rest.split_once('/'))
        else {
            continue;
        };
        if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
            return label.to_owned();
        }
    }
    header_key.to_owned()
}

/// `0` or `78: EX_CONFIG` give the number; `(never exited)` gives [`LastExit::Never`].
fn parse_exit_code(value: &str) -> LastExit {
    if value == "(never exited)" {
        return LastExit::Never;
    }
    let number = value.split(':').next().unwrap_or_default().trim();
    number.parse().map_or(LastExit::Unknown, LastExit::Code)
}

/// `Terminated: 15` (strsignal, then the number) or a bare `15`.
fn parse_signal(value: &str) -> LastExit {
    let number = value.rsplit(':').next().unwrap_or_default().trim();
    number.parse().map_or(LastExit::Unknown, LastExit::Signal)
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

/// Parses `launchctl print <service-target>` output. Never panics; whatever it cannot read is
/// left at its default (`None`, empty, [`LastExit::Unknown`], `JobState::Other("")`).
///
/// Reads from the first header line (`... = {` with no indentation) to its closing `}` at
/// column 0, ignoring anything around it; output with no header (a fragment) is read whole.
pub fn parse_print(text: &str) -> ServiceInfo {
    let mut info = ServiceInfo::default();
    let has_header = text.lines().any(|l| is_header(l.trim_end_matches('\r')));
    let mut inside = !has_header;
    let mut in_arguments = false;
    // A signal line replaces the exit code line (verbatim `launchctl print` captures: sglavoie/dev-helpers LaunchctlFixtures.swift, byliu-labs/egress-guard status_darwin_test.go, wazuh/wazuh-agent#569); if both ever appear, the
    // signal is the more specific fact.
    let mut exit_code = LastExit::Unknown;
    let mut signal = LastExit::Unknown;

    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        let (tabs, rest) = depth(line);
        if tabs == 0 {
            if !inside && is_header(line) {
                let key = line.trim_end().trim_end_matches('{').trim_end();
                let key = key.strip_suffix('=').unwrap_or(key).trim();
                info.label = non_empty(&label_of(key));
                inside = true;
            } else if inside && has_header && line.trim() == "}" {
                break;
            }
            continue;
        }
        if !inside {
            continue;
        }
        if tabs == 2 && in_arguments {
            info.arguments.push(rest.to_owned());
            continue;
        }
        if tabs != 1 {
            continue;
        }
        in_arguments = false;
        let Some((key, value)) = rest.split_once(" = ") else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if value == "{" {
            in_arguments = key == "arguments";
            continue;
        }
        match key {
            "state" => info.state = JobState::parse(value),
            "pid" => info.pid = value.parse().ok(),
            "runs" => info.runs = value.parse().ok(),
            "last exit code" => exit_code = parse_exit_code(value),
            "last terminating signal" => signal = parse_signal(value),
            "program" => info.program = non_empty(value),
            "path" => info.path = non_empty(value).map(PathBuf::from),
            "stdout path" => info.stdout_path = non_empty(value).map(PathBuf::from),
            "stderr path" => info.stderr_path = non_empty(value).map(PathBuf::from),
            // `gui/501 [100020]`: the bracket is the audit session id.
            "domain" => {
                let domain = value.split(" [").next().unwrap_or(value);
                info.domain = non_empty(domain.trim());
            }
            "exit timeout" => info.exit_timeout = value.parse().ok(),
            "minimum runtime" => info.minimum_runtime = value.parse().ok(),
            "job state" => info.job_state = non_empty(value),
            "last exit reason" => info.last_exit_reason = non_empty(value),
            "properties" => {
                info.properties = value
                    .split('|')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            _ => {}
        }
    }
    info.last_exit = match signal {
        LastExit::Unknown => exit_code,
        signal => signal,
    };
    info
}

/// `system/L = {`, `gui/501/L = {` or a bare `L = {` at column 0.
fn is_header(line: &str) -> bool {
    !line.starts_with(['\t', ' ']) && line.trim_end().ends_with("= {")
}

/// Parses `launchctl print-disabled <domain>`: label → `true` when disabled.
///
/// Accepts both vocabularies: `=> disabled` / `=> enabled` (macOS 13 and later) and
/// `=> true` / `=> false` (macOS 12 and earlier), `print-disabled` output, DeterminateSystems/nix-installer#555. Only the
/// `disabled services = { ... }` block is read, so a `login item associations` block after it
/// contributes nothing. Lines it does not understand are skipped.
pub fn parse_print_disabled(text: &str) -> BTreeMap<String, bool> {
    let mut out = BTreeMap::new();
    let has_block = text
        .lines()
        .any(|l| l.trim_start().starts_with("disabled services"));
    // Without the block header (a fragment), every entry line counts.
    let mut inside = !has_block;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        let (tabs, rest) = depth(line);
        if tabs == 0 {
            let trimmed = line.trim();
            if trimmed.ends_with('{') {
                inside = trimmed.starts_with("disabled services");
            } else if trimmed == "}" && has_block {
                inside = false;
            }
            continue;
        }
        if !inside || tabs != 1 {
            continue;
        }
        let Some((label, value)) = rest.split_once("=>") else {
            continue;
        };
        let label = label.trim().trim_matches('"');
        let disabled = match value.trim() {
            "disabled" | "true" => true,
            "enabled" | "false" => false,
            _ => continue,
        };
        if !label.is_empty() {
            out.insert(label.to_owned(), disabled);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_lose_only_the_domain_prefix() {
        assert_eq!(label_of("system/com.a"), "com.a");
        assert_eq!(label_of("gui/501/com.a"), "com.a");
        assert_eq!(label_of("user/0/a/b"), "a/b");
        assert_eq!(label_of("com.wazuh.agent"), "com.wazuh.agent");
        assert_eq!(label_of("gui/x/com.a"), "gui/x/com.a");
    }

    #[test]
    fn exit_code_forms() {
        assert_eq!(parse_exit_code("0"), LastExit::Code(0));
        assert_eq!(parse_exit_code("78: EX_CONFIG"), LastExit::Code(78));
        assert_eq!(parse_exit_code("-1"), LastExit::Code(-1));
        assert_eq!(parse_exit_code("(never exited)"), LastExit::Never);
        assert_eq!(parse_exit_code("soon"), LastExit::Unknown);
        assert_eq!(parse_signal("Terminated: 15"), LastExit::Signal(15));
        assert_eq!(parse_signal("Killed: 9"), LastExit::Signal(9));
        assert_eq!(parse_signal("9"), LastExit::Signal(9));
        assert_eq!(parse_signal("Killed"), LastExit::Unknown);
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "",
            "\t",
            "= {",
            "\t = \n}",
            "\t\t\t",
            "x = {\n\tstate = \n\tpid = -3\n",
        ] {
            let info = parse_print(text);
            assert!(!info.is_running());
        }
        assert!(parse_print_disabled("\t=>\n\"\" => true\n").is_empty());
    }
}
