//! The macOS packaging, checked on Linux: the daemon's own LaunchDaemon plist (its keys, and
//! launchgraph's preflight and `check` on it in a fake root), the `.pkg` scripts run against a
//! fake root with recording stand-ins for launchctl, chown, chmod and pkgutil,
//! `scripts/build-pkg.sh` with stand-ins for cargo, pkgbuild and productbuild, shellcheck on
//! every shell script, and the Homebrew formula loaded against a small stand-in for Homebrew's
//! DSL (`packaging/homebrew/check-formula.rb`), its test block run against the real binary.
//!
//! Needs `shellcheck` and `ruby` on PATH (`scripts/ci-deps.sh` installs them); installs nothing.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use launchgraph::preflight::{
    FindingCode, LAUNCHD_DEFAULT_PATH, PreflightContext, Severity, SystemAccounts, preflight,
    target,
};
use launchgraph::unit::{
    CANONICAL_PATH, Domain, Label, LaunchdSpec, PreflightSpec, RestartSpec, Runner, Unit, UnitName,
};
use plist::{Dictionary, Value};

const LABEL: &str = "com.launchgraph.daemon";
const PKG_ID: &str = "com.launchgraph.pkg";
/// The daemon's newsyslog entry, in the repository and as the payload installs it (under
/// private/etc, since /etc is a symlink to it on macOS).
const NEWSYSLOG: &str = "packaging/pkg/newsyslog.d/launchgraph.conf";
const NEWSYSLOG_IN_ROOT: &str = "private/etc/newsyslog.d/launchgraph.conf";
const PLIST: &str = "packaging/com.launchgraph.daemon.plist";
const FORMULA: &str = "packaging/homebrew/launchgraph.rb";
const LOG: &str = "/usr/local/var/log/launchgraph.log";
/// Where the .pkg installs the plist, relative to the root.
const PLIST_IN_ROOT: &str = "Library/LaunchDaemons/com.launchgraph.daemon.plist";

// ---------------------------------------------------------------------------------------
// Helpers

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_launchgraph"))
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The path of a tool the tests need, or a failure saying how to get it.
fn require_tool(name: &str) -> PathBuf {
    on_path(name).unwrap_or_else(|| {
        panic!("{name} is not on PATH; install {name}: scripts/ci-deps.sh installs it")
    })
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    chmod(path, mode);
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every regular file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && !p.is_symlink() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The shipped unit files' names (`units/*.toml`).
fn shipped_units() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo().join("units"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no shipped units in units/");
    names
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn daemon_plist() -> Dictionary {
    Value::from_file(repo().join(PLIST))
        .expect("the daemon plist parses")
        .into_dictionary()
        .expect("the daemon plist is a dictionary")
}

fn string<'d>(d: &'d Dictionary, key: &str) -> &'d str {
    d.get(key)
        .and_then(Value::as_string)
        .unwrap_or_else(|| panic!("{key} is not a string in {d:?}"))
}

fn program_arguments(d: &Dictionary) -> Vec<String> {
    d.get("ProgramArguments")
        .and_then(Value::as_array)
        .expect("ProgramArguments is an array")
        .iter()
        .map(|v| v.as_string().expect("a string argument").to_owned())
        .collect()
}

fn environment(d: &Dictionary) -> BTreeMap<String, String> {
    d.get("EnvironmentVariables")
        .and_then(Value::as_dictionary)
        .expect("EnvironmentVariables is a dictionary")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_string().expect("a string value").to_owned()))
        .collect()
}

/// A worst case for the ordered stop of the shipped units, one after another: an `exec`
/// unit's stop-timeout plus a second to reap; a `launchd` unit's ExitTimeOut (at most 30 s
/// for the jobs the shipped units drive: OpenClaw has used 15, 20 and 30, Homebrew's Ollama
/// sets none and launchgraph then takes `print`'s exit timeout, else 5 s) plus the 5 s launchgraph waits past it for the
/// bootout to drain; an `external` unit's, nothing.
fn worst_case_stop_of_shipped_units() -> Duration {
    let compiled = launchgraph::compile::compile_dir(&repo().join("units"))
        .unwrap_or_else(|d| panic!("the shipped units compile: {d:#?}"));
    compiled
        .units
        .iter()
        .map(|u| match &u.runner {
            Runner::Exec(e) => e.stop_timeout + Duration::from_secs(1),
            Runner::Launchd(_) => Duration::from_secs(30 + 5),
            // Ending a watch stops nothing.
            Runner::External(_) => Duration::ZERO,
        })
        .sum()
}

// ---------------------------------------------------------------------------------------
// Stand-ins: small sh scripts first on PATH, each appending its argv to one log, one line a
// call, so a test reads the exact sequence of what a script did.

const RECORD: &str = r#"{ printf '%s' "${0##*/}"; for a in "$@"; do printf ' %s' "$a"; done; printf '\n'; } >> "$STANDIN_LOG""#;

/// launchctl: exits as told by STANDIN_LAUNCHCTL_<SUBCOMMAND>, a list of exit codes, one a
/// call, the last one repeating; `print` defaults to 113 (not loaded), the rest to 0. stderr
/// as the real one words it (launchctl exit statuses as captured in DeterminateSystems/nix-installer#530, openclaw/openclaw#80384 and ProcursusTeam/launchctl xpc_private.h).
const LAUNCHCTL: &str = r#"
sub="$1"
target="${2:-}"
count_file="$STANDIN_STATE/launchctl-$sub"
n=$(( $(cat "$count_file" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$count_file"
codes=$(printenv "STANDIN_LAUNCHCTL_$(echo "$sub" | tr '[:lower:]' '[:upper:]')" || true)
default=0
if [ "$sub" = print ]; then default=113; fi
# shellcheck disable=SC2086
set -- $codes
if [ "$#" -eq 0 ]; then rc=$default
elif [ "$n" -le "$#" ]; then eval "rc=\${$n}"
else eval "rc=\${$#}"
fi
case "$sub:$rc" in
  bootout:3) echo "Boot-out failed: 3: No such process" >&2 ;;
  bootout:36) echo "Boot-out failed: 36: Operation now in progress" >&2 ;;
  bootstrap:5) echo "Bootstrap failed: 5: Input/output error" >&2 ;;
  print:113) echo "Bad request." >&2
             echo "Could not find service \"${target#system/}\" in domain for system" >&2 ;;
esac
exit "$rc"
"#;

struct Standins {
    dir: tempfile::TempDir,
}

impl Standins {
    fn new() -> Standins {
        let dir = tempfile::tempdir().unwrap();
        let s = Standins { dir };
        std::fs::create_dir_all(s.bin()).unwrap();
        std::fs::create_dir_all(s.state()).unwrap();
        let recording = |name: &str, body: &str| {
            write(
                &s.bin().join(name),
                &format!("#!/bin/sh\n# Test stand-in for {name}.\n{RECORD}\n{body}\n"),
                0o755,
            );
        };
        recording("launchctl", LAUNCHCTL);
        recording("chown", "exit 0");
        recording("chmod", "exit 0");
        recording("pkgutil", r#"exit "${STANDIN_PKGUTIL_EXIT:-0}""#);
        // cargo build: leaves a program where the release binary goes.
        recording(
            "cargo",
            r#"if [ "$1" = build ]; then
  mkdir -p "$CARGO_TARGET_DIR/release"
  printf '#!/bin/sh\necho stand-in launchgraph\n' > "$CARGO_TARGET_DIR/release/launchgraph"
  /bin/chmod 755 "$CARGO_TARGET_DIR/release/launchgraph"
fi"#,
        );
        // pkgbuild and productbuild: write their output, the last argument.
        for tool in ["pkgbuild", "productbuild"] {
            recording(
                tool,
                r#"for last in "$@"; do :; done
echo "stand-in package" > "$last""#,
            );
        }
        // codesign and xcrun (notarytool, stapler): recorded, succeeding.
        recording("codesign", "exit 0");
        recording("xcrun", "exit 0");
        // id -u: who the script runs as, not recorded.
        write(
            &s.bin().join("id"),
            "#!/bin/sh\n# Test stand-in for id -u.\n[ \"$1\" = -u ] && echo \"${STANDIN_UID:-0}\"\n",
            0o755,
        );
        s
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("calls.log")
    }

    /// The calls recorded so far, one line each.
    fn calls(&self) -> Vec<String> {
        match std::fs::read_to_string(self.log()) {
            Ok(t) => t.lines().map(str::to_owned).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn clear(&self) {
        let _ = std::fs::remove_file(self.log());
        for e in std::fs::read_dir(self.state()).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
    }

    /// `program` with an empty environment but for the stand-ins first on PATH.
    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", format!("{}:/usr/bin:/bin", self.bin().display()))
            .env("STANDIN_LOG", self.log())
            .env("STANDIN_STATE", self.state())
            .stdin(Stdio::null());
        c
    }
}

// ---------------------------------------------------------------------------------------
// A fake root holding what the .pkg installs, staged by scripts/build-pkg.sh itself.

struct Installed {
    _tmp: tempfile::TempDir,
    standins: Standins,
    /// The stage build-pkg.sh handed to pkgbuild: `root/` (the payload) and `scripts/`.
    stage: PathBuf,
    /// The fake `/` the payload was copied into.
    root: PathBuf,
}

impl Installed {
    /// Runs build-pkg.sh with stand-ins, then copies its payload into a fake root, as the
    /// Installer would; the stand-ins' log is cleared.
    fn new() -> Installed {
        let tmp = tempfile::tempdir().unwrap();
        let standins = Standins::new();
        let out = tmp.path().join("out");
        let run = build_pkg(&standins, tmp.path(), &out, &[]);
        assert!(run.status.success(), "build-pkg.sh: {}", text(&run));
        let stage = out.join("stage");
        let root = tmp.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        chmod(&root, 0o755);
        let cp = Command::new("cp")
            .arg("-a")
            .arg(stage.join("root/."))
            .arg(&root)
            .output()
            .unwrap();
        assert!(cp.status.success(), "cp: {}", text(&cp));
        standins.clear();
        Installed {
            _tmp: tmp,
            standins,
            stage,
            root,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// Runs a package script as the Installer does: `$1` package, `$2` destination, `$3`
    /// target volume, `$4` system root; paths under the fake root.
    fn run_pkg_script(&self, name: &str, volume: &str, env: &[(&str, &str)]) -> Output {
        let mut c = self
            .standins
            .command(&self.stage.join("scripts").join(name));
        c.args(["/tmp/launchgraph.pkg", volume, volume, "/"])
            .env("LAUNCHGRAPH_ROOT", &self.root);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    /// Runs the uninstaller as installed by the package.
    fn uninstall(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self
            .standins
            .command(&self.path("usr/local/share/launchgraph/uninstall.sh"));
        c.args(args).env("LAUNCHGRAPH_ROOT", &self.root);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    /// The calls with the fake root written as `{root}`.
    fn calls(&self) -> Vec<String> {
        let root = self.root.display().to_string();
        self.standins
            .calls()
            .into_iter()
            .map(|l| l.replace(&root, "{root}"))
            .collect()
    }
}

/// Runs scripts/build-pkg.sh from `cwd` with the stand-ins for cargo, pkgbuild and
/// productbuild, cargo's target dir and the output dir in the temp dir.
fn build_pkg(standins: &Standins, cwd: &Path, out: &Path, env: &[(&str, &str)]) -> Output {
    build_pkg_with(standins, cwd, out, &[], env)
}

/// [`build_pkg`] with arguments.
fn build_pkg_with(
    standins: &Standins,
    cwd: &Path,
    out: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let mut c = standins.command(&repo().join("scripts/build-pkg.sh"));
    c.args(args)
        .current_dir(cwd)
        .env("CARGO", standins.bin().join("cargo"))
        .env("PKGBUILD", standins.bin().join("pkgbuild"))
        .env("PRODUCTBUILD", standins.bin().join("productbuild"))
        .env("CARGO_TARGET_DIR", cwd.join("target"))
        .env("PKG_OUT_DIR", out);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn lines(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

// ---------------------------------------------------------------------------------------
// The daemon's plist

#[test]
fn daemon_plist_has_the_keys_and_values_launchd_needs() {
    let raw = read(&repo().join(PLIST));
    assert!(raw.starts_with("<?xml"), "an XML plist");
    let d = daemon_plist();

    assert_eq!(string(&d, "Label"), LABEL);
    assert_eq!(
        program_arguments(&d),
        [
            "/usr/local/bin/launchgraph",
            "up",
            "--units",
            launchgraph::paths::PKG_UNITS_DIR,
            "--state-dir",
            launchgraph::fingerprint::PKG_STATE_DIR,
            "--log-file",
            LOG,
        ]
    );
    assert!(Path::new(&program_arguments(&d)[0]).is_absolute());
    assert!(
        d.get("Program").is_none(),
        "ProgramArguments[0] is the program"
    );
    assert_eq!(d.get("RunAtLoad"), Some(&Value::Boolean(true)));
    assert_eq!(d.get("KeepAlive"), Some(&Value::Boolean(true)));
    assert_eq!(string(&d, "ProcessType"), "Interactive");
    // launchgraph opens its log itself, so that it follows newsyslog's rotation: launchd
    // opens nothing but the file for what comes before (StandardErrorPath).
    assert!(d.get("StandardOutPath").is_none());
    assert_eq!(string(&d, "StandardErrorPath"), LOG);
    let env = environment(&d);
    assert_eq!(
        env,
        BTreeMap::from([
            ("PATH".to_owned(), CANONICAL_PATH.to_owned()),
            ("LAUNCHGRAPH_LOG".to_owned(), "info".to_owned()),
        ])
    );

    // launchd sends SIGTERM, then SIGKILL after ExitTimeOut: the ordered stop must fit.
    let exit_timeout = d
        .get("ExitTimeOut")
        .and_then(Value::as_signed_integer)
        .expect("ExitTimeOut is an integer");
    let needed = worst_case_stop_of_shipped_units();
    assert!(
        Duration::from_secs(exit_timeout as u64) >= needed,
        "ExitTimeOut {exit_timeout}s is shorter than the shipped units' ordered stop, {needed:?}"
    );
    assert!(
        read(&repo().join("docs/install.md")).contains(&format!("ExitTimeOut` is {exit_timeout}")),
        "docs/install.md explains the ExitTimeOut of {exit_timeout}"
    );
}

/// The plist written into `root` with its paths moved under it, as it would be at `/`.
fn rewritten_daemon_plist(root: &Path) -> (PathBuf, Dictionary) {
    let under = |p: &str| root.join(p.trim_start_matches('/')).display().to_string();
    let mut d = daemon_plist();
    let argv: Vec<Value> = program_arguments(&d)
        .iter()
        .map(|a| {
            if a.starts_with('/') {
                Value::String(under(a))
            } else {
                Value::String(a.clone())
            }
        })
        .collect();
    d.insert("ProgramArguments".into(), Value::Array(argv));
    let p = under(string(&d, "StandardErrorPath"));
    d.insert("StandardErrorPath".into(), Value::String(p));
    let path = root.join(PLIST_IN_ROOT);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    Value::Dictionary(d.clone()).to_file_xml(&path).unwrap();
    chmod(&path, 0o644);
    (path, d)
}

/// A fake root with the binary at usr/local/bin/launchgraph and the directories postinstall
/// creates.
fn fake_root() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    chmod(tmp.path(), 0o755);
    let bin = tmp.path().join("usr/local/bin/launchgraph");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(binary(), &bin).unwrap();
    for d in ["usr/local/var/log", "usr/local/var/launchgraph"] {
        std::fs::create_dir_all(tmp.path().join(d)).unwrap();
    }
    tmp
}

fn daemon_unit(plist: &Path) -> Unit {
    Unit {
        name: UnitName::parse("launchgraph").unwrap(),
        file: PathBuf::from("/usr/local/etc/launchgraph/units/launchgraph.toml"),
        description: None,
        requires: Vec::new(),
        runner: Runner::Launchd(LaunchdSpec {
            label: Label(LABEL.into()),
            plist: plist.to_path_buf(),
            domain: Domain::System,
        }),
        ready: None,
        alive: None,
        restart: RestartSpec::default(),
        preflight: PreflightSpec::default(),
        guards: Default::default(),
    }
}

/// Error-level findings, leaving out the ownership ones when the tests cannot own files as
/// root (the payload is root's on a Mac, and postinstall's chown fixes the plist).
fn errors_but_unavoidable_ownership(
    findings: &[launchgraph::preflight::Finding],
) -> Vec<&launchgraph::preflight::Finding> {
    findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .filter(|f| {
            is_root()
                || !matches!(
                    f.code,
                    FindingCode::PlistBadOwnership | FindingCode::WritableByNonRoot
                )
        })
        .collect()
}

#[test]
fn daemon_plist_passes_launchgraphs_own_preflight_in_a_fake_root() {
    let root = fake_root();
    let (plist, _) = rewritten_daemon_plist(root.path());
    let unit = daemon_unit(&plist);
    // launchd runs the daemon as root with launchd's default PATH around it.
    let ctx = PreflightContext {
        launchd_path: LAUNCHD_DEFAULT_PATH.to_owned(),
        euid: 0,
        accounts: Arc::new(SystemAccounts),
    };

    let findings = preflight(&unit, &ctx);
    assert!(
        errors_but_unavoidable_ownership(&findings).is_empty(),
        "{findings:#?}"
    );
    // No warning or note either.
    let others: Vec<_> = findings
        .iter()
        .filter(|f| f.severity != Severity::Error)
        .collect();
    assert!(others.is_empty(), "{others:#?}");
    // It really looked at the rewritten plist and its program.
    let t = target(&unit, &ctx);
    assert_eq!(
        t.program.as_deref(),
        Some(root.path().join("usr/local/bin/launchgraph").as_path())
    );
    assert_eq!(t.path_var, CANONICAL_PATH);

    // What postinstall prevents: a group-writable plist, and a missing log directory.
    chmod(&plist, 0o664);
    let findings = preflight(&unit, &ctx);
    assert!(
        findings
            .iter()
            .any(|f| f.code == FindingCode::PlistBadOwnership && f.fix.contains("chmod 644")),
        "{findings:#?}"
    );
    chmod(&plist, 0o644);
    // A missing log directory: launchd, as root for this daemon, creates it at start, so
    // it is a warning, not a blocked start (LrGenius/LrGeniusAI#298).
    std::fs::remove_dir(root.path().join("usr/local/var/log")).unwrap();
    let findings = preflight(&unit, &ctx);
    assert!(
        findings
            .iter()
            .any(|f| f.code == FindingCode::LogDirectoryMissing && f.severity == Severity::Warning),
        "{findings:#?}"
    );
}

#[test]
fn launchgraph_check_accepts_a_launchd_unit_for_the_daemon_plist() {
    let root = fake_root();
    let (plist, _) = rewritten_daemon_plist(root.path());
    let units = root.path().join("units");
    write(
        &units.join("launchgraph.toml"),
        &format!(
            "# The daemon itself, as a launchd unit.\n[launchd]\nlabel = \"{LABEL}\"\nplist = \"{}\"\ndomain = \"system\"\n",
            plist.display()
        ),
        0o644,
    );
    let out = Command::new(binary())
        .arg("check")
        .arg("--units")
        .arg(&units)
        .arg("--state-dir")
        .arg(root.path().join("usr/local/var/launchgraph"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ok: 1 units (0 exec, 1 launchd)"),
        "{}",
        text(&out)
    );
    if is_root() {
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(!stdout.contains(": error "), "{}", text(&out));
    } else {
        // Only owners, which this user cannot make root, block it: the plist's, and the
        // program's for a job that runs as root.
        assert_eq!(out.status.code(), Some(65), "{}", text(&out));
        let errors: Vec<&str> = stdout.lines().filter(|l| l.contains(": error ")).collect();
        assert_eq!(
            errors,
            [
                "launchgraph: error PLIST_BAD_OWNERSHIP",
                "launchgraph: error WRITABLE_BY_NON_ROOT"
            ],
            "{}",
            text(&out)
        );
    }
}

#[test]
fn the_daemon_argv_runs_up_and_sigterm_stops_it_with_exit_0() {
    let root = fake_root();
    let (_, d) = rewritten_daemon_plist(root.path());
    // One unit to supervise, in the units directory the plist names.
    let argv = program_arguments(&d);
    let units = PathBuf::from(&argv[3]);
    write(
        &units.join("sleeper.toml"),
        "# A unit to supervise.\n[exec]\ncommand = [\"/bin/sleep\", \"100\"]\n",
        0o644,
    );
    // Exactly the environment launchd would give it: the plist's variables.
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .envs(environment(&d))
        // The host's default control socket may be in use by another daemon.
        .env("LAUNCHGRAPH_SOCKET", root.path().join("launchgraph.sock"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It logs to the file the argv names (--log-file), not to the stderr launchd gives it.
    let log = PathBuf::from(&argv[argv.iter().position(|a| a == "--log-file").unwrap() + 1]);
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        let _ = tx.send(text);
    });
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    // Polled: nothing announces a line written to a file.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !logged().contains("sleeper: started -> ready") {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the unit never became ready: {}", logged());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // launchd stops a job with SIGTERM.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    // stderr ends when it exits (units never inherit it): await that, then reap it.
    let Ok(stderr) = rx.recv_timeout(Duration::from_secs(20)) else {
        let _ = child.kill();
        panic!("up did not stop after SIGTERM: {}", logged());
    };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", logged());
    assert!(logged().contains("all units stopped"), "{}", logged());
    assert_eq!(stderr, "", "every line went to the log file");
}

// ---------------------------------------------------------------------------------------
// scripts/build-pkg.sh

#[test]
fn build_pkg_stages_the_payload_and_calls_pkgbuild_and_productbuild() {
    let tmp = tempfile::tempdir().unwrap();
    let standins = Standins::new();
    let out = tmp.path().join("out");
    // From outside the repository: the script finds it by its own path.
    let run = build_pkg(&standins, tmp.path(), &out, &[]);
    assert!(run.status.success(), "{}", text(&run));

    let version = env!("CARGO_PKG_VERSION");
    let o = out.display();
    assert_eq!(
        standins.calls(),
        [
            "cargo build --release --locked --bin launchgraph".to_owned(),
            format!(
                "pkgbuild --root {o}/stage/root --identifier {PKG_ID} --version {version} \
                 --install-location / --scripts {o}/stage/scripts --ownership recommended \
                 {o}/launchgraph-component.pkg"
            ),
            format!(
                "productbuild --package {o}/launchgraph-component.pkg {o}/launchgraph-{version}.pkg"
            ),
        ]
    );
    assert!(out.join(format!("launchgraph-{version}.pkg")).is_file());

    // The payload: binary, daemon plist, units as examples only (never into etc, which an
    // upgrade would overwrite), and the uninstaller.
    let payload = out.join("stage/root");
    let mut expected = vec![
        (PLIST_IN_ROOT.to_owned(), 0o644),
        ("usr/local/bin/launchgraph".to_owned(), 0o755),
        ("usr/local/share/launchgraph/uninstall.sh".to_owned(), 0o755),
        (NEWSYSLOG_IN_ROOT.to_owned(), 0o644),
    ];
    for u in shipped_units() {
        expected.push((format!("usr/local/share/launchgraph/units/{u}"), 0o644));
    }
    expected.sort();
    let staged: Vec<(String, u32)> = files_under(&payload)
        .into_iter()
        .map(|f| {
            let m = mode(&payload.join(&f));
            (f, m)
        })
        .collect();
    assert_eq!(staged, expected);
    assert!(!payload.join("usr/local/etc").exists());
    assert_eq!(
        read(&payload.join(PLIST_IN_ROOT)),
        read(&repo().join(PLIST))
    );
    assert_eq!(
        read(&payload.join("usr/local/bin/launchgraph")),
        read(&tmp.path().join("target/release/launchgraph"))
    );
    assert_eq!(
        read(&payload.join("usr/local/share/launchgraph/uninstall.sh")),
        read(&repo().join("packaging/pkg/uninstall.sh"))
    );
    assert_eq!(
        read(&payload.join(NEWSYSLOG_IN_ROOT)),
        read(&repo().join(NEWSYSLOG))
    );
    for u in shipped_units() {
        assert_eq!(
            read(&payload.join("usr/local/share/launchgraph/units").join(&u)),
            read(&repo().join("units").join(&u))
        );
    }

    // The package scripts: exactly preinstall and postinstall, executable.
    let scripts = out.join("stage/scripts");
    assert_eq!(files_under(&scripts), ["postinstall", "preinstall"]);
    for s in ["preinstall", "postinstall"] {
        assert_eq!(mode(&scripts.join(s)), 0o755);
        assert_eq!(
            read(&scripts.join(s)),
            read(&repo().join("packaging/pkg/scripts").join(s))
        );
    }
}

#[test]
fn build_pkg_packages_a_given_binary_and_signs_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let standins = Standins::new();
    let out = tmp.path().join("out");
    let prebuilt = tmp.path().join("universal/launchgraph");
    write(&prebuilt, "#!/bin/sh\necho prebuilt\n", 0o755);
    let run = build_pkg(
        &standins,
        tmp.path(),
        &out,
        &[
            ("LAUNCHGRAPH_BINARY", prebuilt.to_str().unwrap()),
            ("PKG_SIGN_IDENTITY", "TESTIDENTITY"),
        ],
    );
    assert!(run.status.success(), "{}", text(&run));
    let calls = standins.calls();
    assert!(!calls.iter().any(|c| c.starts_with("cargo")), "{calls:#?}");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        calls.last().unwrap(),
        &format!(
            "productbuild --sign TESTIDENTITY --package {o}/launchgraph-component.pkg {o}/launchgraph-{version}.pkg",
            o = out.display()
        )
    );
    assert_eq!(
        read(&out.join("stage/root/usr/local/bin/launchgraph")),
        read(&prebuilt)
    );
}

const APP_ID: &str = "Developer ID Application: Example Org (ABCDE12345)";
const INSTALLER_ID: &str = "Developer ID Installer: Example Org (ABCDE12345)";

/// With both identities and a notary profile: the binary is signed with the hardened runtime
/// and a timestamp before pkgbuild, the product is signed, submitted, then stapled.
#[test]
fn build_pkg_signs_the_binary_then_the_product_then_notarizes_and_staples() {
    let tmp = tempfile::tempdir().unwrap();
    let standins = Standins::new();
    let out = tmp.path().join("out");
    let run = build_pkg_with(
        &standins,
        tmp.path(),
        &out,
        &[
            "--app-identity",
            APP_ID,
            "--installer-identity",
            INSTALLER_ID,
            "--notary-profile",
            "launchgraph-notary",
        ],
        &[],
    );
    assert!(run.status.success(), "{}", text(&run));
    let version = env!("CARGO_PKG_VERSION");
    let o = out.display();
    let product = format!("{o}/launchgraph-{version}.pkg");
    let calls = standins.calls();
    assert_eq!(calls.len(), 6, "{calls:#?}");
    assert_eq!(calls[0], "cargo build --release --locked --bin launchgraph");
    assert_eq!(
        calls[1],
        format!(
            "codesign --force --options runtime --timestamp --sign {APP_ID} \
             {o}/stage/root/usr/local/bin/launchgraph"
        )
    );
    assert!(calls[2].starts_with("pkgbuild "), "{calls:#?}");
    assert_eq!(
        calls[3],
        format!(
            "productbuild --sign {INSTALLER_ID} --package {o}/launchgraph-component.pkg {product}"
        )
    );
    assert_eq!(
        calls[4],
        format!("xcrun notarytool submit {product} --keychain-profile launchgraph-notary --wait")
    );
    assert_eq!(calls[5], format!("xcrun stapler staple {product}"));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("notarized and stapled"), "{stdout}");
    assert!(!stdout.contains("NOT SIGNED"), "{stdout}");

    // The same from the environment.
    standins.clear();
    let run = build_pkg(
        &standins,
        tmp.path(),
        &out,
        &[
            ("PKG_APP_IDENTITY", APP_ID),
            ("PKG_INSTALLER_IDENTITY", INSTALLER_ID),
            ("PKG_NOTARY_PROFILE", "launchgraph-notary"),
        ],
    );
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(standins.calls(), calls);
}

/// Without identities the package is unsigned, and the script says what that is good for.
#[test]
fn build_pkg_unsigned_says_it_is_for_local_testing_only() {
    let tmp = tempfile::tempdir().unwrap();
    let standins = Standins::new();
    let run = build_pkg(&standins, tmp.path(), &tmp.path().join("out"), &[]);
    assert!(run.status.success(), "{}", text(&run));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("NOT SIGNED: good for local testing only")
            && stdout.contains("Gatekeeper refuses")
            && stdout.contains("--notary-profile"),
        "{stdout}"
    );
    let calls = standins.calls();
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("codesign") || c.starts_with("xcrun")),
        "{calls:#?}"
    );
}

/// --dry-run prints every command, quoted for a shell, and runs none, stages nothing.
#[test]
fn build_pkg_dry_run_prints_the_commands_and_runs_none() {
    let tmp = tempfile::tempdir().unwrap();
    let standins = Standins::new();
    let out = tmp.path().join("out");
    let run = build_pkg_with(
        &standins,
        tmp.path(),
        &out,
        &[
            "--dry-run",
            "--app-identity",
            APP_ID,
            "--installer-identity",
            INSTALLER_ID,
            "--notary-profile",
            "p",
        ],
        &[("PKGBUILD", "/nonexistent/pkgbuild")],
    );
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(standins.calls(), Vec::<String>::new(), "nothing was run");
    assert!(!out.exists(), "nothing was staged");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let would: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("would run: "))
        .collect();
    assert_eq!(would.len(), 6, "{stdout}");
    let quoted_app = APP_ID
        .replace(' ', "\\ ")
        .replace('(', "\\(")
        .replace(')', "\\)");
    assert!(
        would[1].starts_with("codesign --force --options runtime --timestamp --sign ")
            && would[1].contains(&quoted_app),
        "{stdout}"
    );
    assert!(would[2].starts_with("/nonexistent/pkgbuild "), "{stdout}");
    assert!(would[3].contains("productbuild --sign "), "{stdout}");
    assert!(stdout.contains("dry run: nothing was built"), "{stdout}");
    assert!(!stdout.contains("ready to distribute"), "{stdout}");
    assert!(would[4].starts_with("xcrun notarytool submit "), "{stdout}");
    assert!(would[5].starts_with("xcrun stapler staple "), "{stdout}");
}

#[test]
fn build_pkg_refuses_bad_arguments_and_notarizing_unsigned_code() {
    let tmp = tempfile::tempdir().unwrap();
    let standins = Standins::new();
    let out = tmp.path().join("out");
    for args in [
        &["--bogus"][..],
        &["--app-identity"][..],
        &["--installer-identity", ""][..],
        &["--notary-profile", "p"][..],
        &["--notary-profile", "p", "--app-identity", APP_ID][..],
    ] {
        let run = build_pkg_with(&standins, tmp.path(), &out, args, &[]);
        assert_eq!(run.status.code(), Some(64), "{args:?}: {}", text(&run));
        assert!(
            String::from_utf8_lossy(&run.stderr).contains("usage:")
                || String::from_utf8_lossy(&run.stderr).contains("notarization rejects"),
            "{args:?}: {}",
            text(&run)
        );
    }
    assert_eq!(standins.calls(), Vec::<String>::new(), "nothing was run");
}

#[test]
fn build_pkg_says_what_is_missing_before_building() {
    let tmp = tempfile::tempdir().unwrap();
    let standins = Standins::new();
    let run = build_pkg(
        &standins,
        tmp.path(),
        &tmp.path().join("out"),
        &[("PKGBUILD", "/nonexistent/pkgbuild")],
    );
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("/nonexistent/pkgbuild not found") && stderr.contains("macOS"),
        "{}",
        text(&run)
    );
    assert_eq!(standins.calls(), Vec::<String>::new(), "nothing was run");
}

// ---------------------------------------------------------------------------------------
// The package scripts

#[test]
fn postinstall_on_the_boot_volume_fixes_the_plist_creates_dirs_enables_then_bootstraps() {
    let i = Installed::new();
    let run = i.run_pkg_script("postinstall", "/", &[]);
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(
        i.calls(),
        lines(&[
            &format!("chown root:wheel {{root}}/{PLIST_IN_ROOT}"),
            &format!("chmod 644 {{root}}/{PLIST_IN_ROOT}"),
            &format!("launchctl enable system/{LABEL}"),
            &format!("launchctl bootstrap system {{root}}/{PLIST_IN_ROOT}"),
        ])
    );
    assert!(i.path("usr/local/var/launchgraph").is_dir());
    assert!(i.path("usr/local/var/log").is_dir());
    // A first install: the examples became the live units.
    let units = i.path("usr/local/etc/launchgraph/units");
    assert_eq!(files_under(&units), shipped_units());
    for u in shipped_units() {
        assert_eq!(read(&units.join(&u)), read(&repo().join("units").join(&u)));
    }
}

#[test]
fn postinstall_keeps_an_admins_units() {
    let i = Installed::new();
    let units = i.path("usr/local/etc/launchgraph/units");
    let edited = "# edited by the admin\n[exec]\ncommand = [\"/bin/sleep\", \"1\"]\n";
    write(&units.join("mine.toml"), edited, 0o644);
    let run = i.run_pkg_script("postinstall", "/", &[]);
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(files_under(&units), ["mine.toml"]);
    assert_eq!(read(&units.join("mine.toml")), edited);
}

#[test]
fn postinstall_retries_a_bootstrap_that_races_the_old_jobs_drain() {
    let i = Installed::new();
    let run = i.run_pkg_script(
        "postinstall",
        "/",
        &[("STANDIN_LAUNCHCTL_BOOTSTRAP", "5 0")],
    );
    assert!(run.status.success(), "{}", text(&run));
    let bootstrap = format!("launchctl bootstrap system {{root}}/{PLIST_IN_ROOT}");
    assert_eq!(
        i.calls()[2..],
        lines(&[
            &format!("launchctl enable system/{LABEL}"),
            &bootstrap,
            &bootstrap
        ])
    );
}

#[test]
fn postinstall_fails_loudly_when_bootstrap_fails_for_good() {
    let i = Installed::new();
    let run = i.run_pkg_script(
        "postinstall",
        "/",
        &[("STANDIN_LAUNCHCTL_BOOTSTRAP", "119")],
    );
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("failed with exit 119"),
        "{}",
        text(&run)
    );
    assert_eq!(
        i.calls()
            .iter()
            .filter(|c| c.starts_with("launchctl bootstrap"))
            .count(),
        1
    );
}

#[test]
fn pkg_scripts_do_nothing_on_another_volume() {
    let i = Installed::new();
    let before = files_under(&i.root);
    for script in ["preinstall", "postinstall"] {
        let run = i.run_pkg_script(script, "/Volumes/Other", &[]);
        assert!(run.status.success(), "{script}: {}", text(&run));
        assert!(
            String::from_utf8_lossy(&run.stdout).contains("not the boot volume"),
            "{script}: {}",
            text(&run)
        );
    }
    assert_eq!(i.calls(), Vec::<String>::new());
    assert_eq!(files_under(&i.root), before);
    assert!(!i.path("usr/local/etc").exists());
    assert!(!i.path("usr/local/var").exists());
}

#[test]
fn preinstall_treats_not_loaded_as_fine() {
    let i = Installed::new();
    let run = i.run_pkg_script("preinstall", "/", &[("STANDIN_LAUNCHCTL_BOOTOUT", "3")]);
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(
        i.calls(),
        lines(&[&format!("launchctl bootout system/{LABEL}")])
    );
    assert!(String::from_utf8_lossy(&run.stdout).contains("was not loaded"));
}

#[test]
fn preinstall_boots_out_the_old_daemon_and_waits_until_it_is_gone() {
    let i = Installed::new();
    // An earlier bootout still in progress (36), then done; print finds it loaded once.
    let run = i.run_pkg_script(
        "preinstall",
        "/",
        &[
            ("STANDIN_LAUNCHCTL_BOOTOUT", "36 0"),
            ("STANDIN_LAUNCHCTL_PRINT", "0 113"),
        ],
    );
    assert!(run.status.success(), "{}", text(&run));
    let bootout = format!("launchctl bootout system/{LABEL}");
    let print = format!("launchctl print system/{LABEL}");
    assert_eq!(i.calls(), lines(&[&bootout, &bootout, &print, &print]));
}

#[test]
fn preinstall_fails_on_other_bootout_errors() {
    let i = Installed::new();
    let run = i.run_pkg_script("preinstall", "/", &[("STANDIN_LAUNCHCTL_BOOTOUT", "1")]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    assert_eq!(
        i.calls(),
        lines(&[&format!("launchctl bootout system/{LABEL}")])
    );
}

/// An install as postinstall leaves it, plus a fingerprint and a log line; the log cleared.
fn installed_and_running() -> Installed {
    let i = Installed::new();
    let run = i.run_pkg_script("postinstall", "/", &[]);
    assert!(run.status.success(), "{}", text(&run));
    write(
        &i.path("usr/local/var/launchgraph/fingerprints/ollama.json"),
        "{}",
        0o644,
    );
    write(&i.path(LOG), "a log line\n", 0o644);
    // The installed binary, recorded: the uninstaller runs `release --all` with it.
    write(
        &i.path("usr/local/bin/launchgraph"),
        &format!(
            "#!/bin/sh\n# Test stand-in for launchgraph.\n{RECORD}\nexit \"${{STANDIN_LAUNCHGRAPH_EXIT:-0}}\"\n"
        ),
        0o755,
    );
    i.standins.clear();
    i
}

/// The uninstaller's `launchgraph release --all`, with the fake root written as `{root}`.
fn release_all() -> String {
    "launchgraph release --all --state-dir {root}/usr/local/var/launchgraph".to_owned()
}

#[test]
fn uninstall_boots_out_removes_the_payload_keeps_config_and_forgets_the_receipt() {
    let i = installed_and_running();
    let run = i.uninstall(&[], &[("STANDIN_LAUNCHCTL_PRINT", "0 113")]);
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(
        i.calls(),
        lines(&[
            &format!("launchctl bootout system/{LABEL}"),
            &format!("launchctl print system/{LABEL}"),
            &format!("launchctl print system/{LABEL}"),
            &release_all(),
            &format!("pkgutil --forget {PKG_ID}"),
        ])
    );
    for gone in [
        "usr/local/bin/launchgraph",
        PLIST_IN_ROOT,
        NEWSYSLOG_IN_ROOT,
        "usr/local/share/launchgraph",
    ] {
        assert!(!i.path(gone).exists(), "{gone} removed");
    }
    // The admin's units, the state and the log stay for a reinstall.
    assert_eq!(
        files_under(&i.path("usr/local/etc/launchgraph/units")),
        shipped_units()
    );
    assert!(
        i.path("usr/local/var/launchgraph/fingerprints/ollama.json")
            .is_file()
    );
    assert!(i.path(LOG).is_file());
}

#[test]
fn uninstall_purge_removes_units_state_and_log_too() {
    let i = installed_and_running();
    let run = i.uninstall(
        &["--purge"],
        &[
            ("STANDIN_LAUNCHCTL_BOOTOUT", "3"),
            ("STANDIN_PKGUTIL_EXIT", "1"),
        ],
    );
    assert!(run.status.success(), "{}", text(&run));
    // Not loaded (3) needs no wait; no receipt is not an error.
    assert_eq!(
        i.calls(),
        lines(&[
            &format!("launchctl bootout system/{LABEL}"),
            &release_all(),
            &format!("pkgutil --forget {PKG_ID}"),
        ])
    );
    for gone in [
        "usr/local/bin/launchgraph",
        PLIST_IN_ROOT,
        "usr/local/share/launchgraph",
        "usr/local/etc/launchgraph",
        "usr/local/var/launchgraph",
        LOG,
    ] {
        assert!(!i.path(gone).exists(), "{gone} removed");
    }
    // The shared log directory is not launchgraph's to remove.
    assert!(i.path("usr/local/var/log").is_dir());
}

#[test]
fn uninstall_refuses_without_root_and_removes_nothing_when_bootout_fails() {
    let i = installed_and_running();
    let before = files_under(&i.root);

    let run = i.uninstall(&[], &[("STANDIN_UID", "501")]);
    assert_eq!(run.status.code(), Some(77), "{}", text(&run));
    assert_eq!(i.calls(), Vec::<String>::new());

    let run = i.uninstall(&["--bogus"], &[]);
    assert_eq!(run.status.code(), Some(64), "{}", text(&run));
    assert_eq!(i.calls(), Vec::<String>::new());

    let run = i.uninstall(&[], &[("STANDIN_LAUNCHCTL_BOOTOUT", "1")]);
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    assert_eq!(
        i.calls(),
        lines(&[&format!("launchctl bootout system/{LABEL}")])
    );
    assert_eq!(files_under(&i.root), before);
}

#[test]
fn uninstall_gives_adopted_jobs_back_and_removes_nothing_when_that_fails() {
    let i = installed_and_running();
    let before = files_under(&i.root);
    let run = i.uninstall(
        &["--purge"],
        &[
            ("STANDIN_LAUNCHCTL_BOOTOUT", "3"),
            ("STANDIN_LAUNCHGRAPH_EXIT", "64"),
        ],
    );
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    assert!(
        String::from_utf8_lossy(&run.stderr)
            .contains("launchgraph release --all failed with exit 64 (see above); nothing removed"),
        "{}",
        text(&run)
    );
    // After the daemon stopped, and before anything is removed: the backups stay.
    assert_eq!(
        i.calls(),
        lines(&[&format!("launchctl bootout system/{LABEL}"), &release_all()])
    );
    assert_eq!(files_under(&i.root), before);
}

#[test]
fn uninstall_waits_while_bootout_is_in_progress_and_asks_again() {
    let i = installed_and_running();
    // The ordered stop is still running (36); print finds the job once more, then not; the
    // second bootout finds nothing left to unload (3).
    let run = i.uninstall(
        &[],
        &[
            ("STANDIN_LAUNCHCTL_BOOTOUT", "36 3"),
            ("STANDIN_LAUNCHCTL_PRINT", "0 113"),
        ],
    );
    assert!(run.status.success(), "{}", text(&run));
    let bootout = format!("launchctl bootout system/{LABEL}");
    let print = format!("launchctl print system/{LABEL}");
    assert_eq!(
        i.calls(),
        lines(&[
            &bootout,
            &print,
            &print,
            &bootout,
            &release_all(),
            &format!("pkgutil --forget {PKG_ID}"),
        ])
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains(&format!("stopped system/{LABEL}")),
        "{stdout}"
    );
    assert!(!i.path("usr/local/bin/launchgraph").exists());
}

#[test]
fn uninstall_gives_up_when_bootout_stays_in_progress_and_removes_nothing() {
    let i = installed_and_running();
    let before = files_under(&i.root);
    let run = i.uninstall(
        &[],
        &[
            ("STANDIN_LAUNCHCTL_BOOTOUT", "36"),
            ("LAUNCHGRAPH_DRAIN_TIMEOUT", "2"),
        ],
    );
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("still in progress after 2s"),
        "{}",
        text(&run)
    );
    let calls = i.calls();
    assert!(
        calls.len() >= 2 && calls.iter().all(|c| c.starts_with("launchctl ")),
        "{calls:?}"
    );
    assert_eq!(files_under(&i.root), before);
}

/// One line of newsyslog.conf(5): `logfile [owner:group] mode count size when [flags
/// [pid_file [signal]]]`; None when a field is not what the format allows.
fn newsyslog_line(line: &str) -> Option<(String, Option<String>)> {
    let mut f: Vec<&str> = line.split_whitespace().collect();
    let file = f.remove(0).to_owned();
    let owner = match f.first() {
        Some(o) if o.contains(':') => Some(f.remove(0).to_owned()),
        _ => None,
    };
    let [mode, count, size, when, rest @ ..] = f.as_slice() else {
        return None;
    };
    let octal = |s: &str| !s.is_empty() && s.chars().all(|c| ('0'..='7').contains(&c));
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    let when_ok = *when == "*"
        || when.starts_with('@')
        || when.starts_with('$')
        || digits(when.split(['@', '$']).next().unwrap_or(""));
    let flags_ok = rest
        .first()
        .is_none_or(|fl| *fl == "-" || fl.chars().all(|c| "BCDGJNUWXZbcdgjnuwxz".contains(c)));
    let ok = file.starts_with('/')
        && octal(mode)
        && digits(count)
        && (*size == "*" || digits(size))
        && when_ok
        && flags_ok
        && rest.len() <= 3
        && rest.get(1).is_none_or(|p| p.starts_with('/'));
    ok.then_some((file, owner))
}

/// The newsyslog entry names exactly the daemon plist's log files (its `--log-file` and
/// StandardErrorPath), in lines newsyslog parses.
#[test]
fn newsyslog_entry_rotates_exactly_the_daemon_plists_logs() {
    let text = read(&repo().join(NEWSYSLOG));
    let mut rotated = std::collections::BTreeSet::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap().trim();
        if line.is_empty() {
            continue;
        }
        let (file, owner) =
            newsyslog_line(line).unwrap_or_else(|| panic!("not a newsyslog.conf line: {line:?}"));
        assert_eq!(owner.as_deref(), Some("root:wheel"), "{line}");
        // N: nothing is signalled (SIGHUP reloads launchgraph's units); no compression flag.
        let flags = line.split_whitespace().nth(6).unwrap_or("");
        assert!(
            flags.contains('N') && !flags.contains(['J', 'Z', 'X']),
            "{line}"
        );
        assert!(rotated.insert(file), "{line} named twice");
    }
    let plist = daemon_plist();
    let argv = program_arguments(&plist);
    let log_file = argv
        .iter()
        .position(|a| a == "--log-file")
        .and_then(|i| argv.get(i + 1))
        .cloned();
    let logs: std::collections::BTreeSet<String> = ["StandardOutPath", "StandardErrorPath"]
        .iter()
        .filter_map(|k| plist.get(k).and_then(Value::as_string).map(str::to_owned))
        .chain(log_file)
        .collect();
    assert!(!logs.is_empty());
    assert_eq!(rotated, logs);
    assert!(newsyslog_line("/var/log/x.log 644 5 * @T00 J").is_some());
    assert!(newsyslog_line("/var/log/x.log root:wheel 64x 5 100 * N").is_none());
    assert!(newsyslog_line("x.log 644 5 100 *").is_none());
}

// ---------------------------------------------------------------------------------------
// Static checks: shellcheck, shebangs, header comments, bash 3.2

/// Every shell script under packaging/ and scripts/.
fn shell_scripts() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if std::fs::read(&p)
                .map(|b| {
                    b.starts_with(b"#!")
                        && b.split(|c| *c == b'\n')
                            .next()
                            .is_some_and(|l| l.ends_with(b"sh"))
                })
                .unwrap_or(false)
            {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo().join("packaging"), &mut out);
    walk(&repo().join("scripts"), &mut out);
    out.sort();
    out
}

#[test]
fn every_shell_script_passes_shellcheck() {
    let shellcheck = require_tool("shellcheck");
    let scripts = shell_scripts();
    for known in [
        "packaging/pkg/scripts/preinstall",
        "packaging/pkg/scripts/postinstall",
        "packaging/pkg/uninstall.sh",
        "scripts/build-pkg.sh",
        "scripts/ci-deps.sh",
    ] {
        assert!(scripts.contains(&repo().join(known)), "{known} is checked");
    }
    let out = Command::new(shellcheck)
        .arg("--external-sources")
        .args(&scripts)
        .output()
        .unwrap();
    assert!(out.status.success(), "shellcheck: {}", text(&out));
}

#[test]
fn shell_scripts_are_executable_strict_and_say_what_they_are() {
    for script in shell_scripts() {
        let name = script.strip_prefix(repo()).unwrap().display().to_string();
        let body = read(&script);
        let mut lines = body.lines();
        let shebang = lines.next().unwrap();
        assert!(
            shebang == "#!/bin/bash" || shebang == "#!/bin/sh",
            "{name}: {shebang}"
        );
        assert!(
            lines.next().is_some_and(|l| l.starts_with("# ")),
            "{name} opens with a comment saying what it is"
        );
        if shebang == "#!/bin/bash" {
            assert!(
                body.contains("\nset -euo pipefail\n") || body.contains("\nset -Eeuo pipefail\n"),
                "{name}"
            );
        }
        assert_eq!(mode(&script) & 0o111, 0o111, "{name} is executable");
        // Scripts that run on a Mac meet /bin/bash 3.2: no bash 4 features, and no arrays
        // (an empty "${a[@]}" is an unbound variable there under set -u).
        // The CI and end-to-end scripts run only on Linux (bash 5).
        let linux_only = ["scripts/ci-deps.sh", "scripts/test.sh"].contains(&name.as_str())
            || name.starts_with("scripts/e2e-");
        if !linux_only {
            for bash4 in [
                "mapfile",
                "readarray",
                "declare -A",
                "local -n",
                ",,}",
                "^^}",
                "|&",
                "&>>",
                "[@]",
            ] {
                assert!(!body.contains(bash4), "{name} uses {bash4:?}");
            }
        }
    }
}

#[test]
fn packaging_files_open_with_a_comment() {
    let plist = read(&repo().join(PLIST));
    let after_prolog: Vec<&str> = plist.lines().skip(2).take(1).collect();
    assert_eq!(after_prolog, ["<!--"], "{PLIST}");
    for rb in [FORMULA, "packaging/homebrew/check-formula.rb"] {
        assert!(read(&repo().join(rb)).starts_with("# "), "{rb}");
    }
    assert!(read(&repo().join("docs/install.md")).starts_with("# "));
}

// ---------------------------------------------------------------------------------------
// The Homebrew formula

#[test]
fn formula_is_valid_ruby() {
    let ruby = require_tool("ruby");
    for rb in [FORMULA, "packaging/homebrew/check-formula.rb"] {
        let out = Command::new(&ruby)
            .arg("-c")
            .arg(repo().join(rb))
            .output()
            .unwrap();
        assert!(out.status.success(), "{rb}: {}", text(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("Syntax OK"));
    }
}

#[test]
fn formula_installs_tests_and_describes_the_same_daemon() {
    let ruby = require_tool("ruby");
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(ruby)
        .arg(repo().join("packaging/homebrew/check-formula.rb"))
        .arg(repo().join(FORMULA))
        .arg(repo())
        .arg(work.path())
        .env("CHECK_BIN", binary())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let prefix = seen["homebrew_prefix"].as_str().unwrap();
    let keg = seen["keg"].as_str().unwrap();

    // The tarball's version is the crate's.
    assert_eq!(seen["version"], env!("CARGO_PKG_VERSION"));
    let dsl = seen["dsl"].as_array().unwrap();
    assert!(
        dsl.iter().any(
            |c| c[0] == "depends_on" && (c[2]["rust"] == "build" || c[1][0]["rust"] == "build")
        ),
        "depends_on \"rust\" => :build: {dsl:#?}"
    );
    // cargo install with std_cargo_args, hence --locked and the committed Cargo.lock.
    assert_eq!(
        seen["system"],
        serde_json::json!([[
            "cargo",
            "install",
            "--jobs",
            "2",
            "--locked",
            format!("--root={keg}"),
            "--path=."
        ]])
    );
    assert!(repo().join("Cargo.lock").is_file());

    // Units: live ones under etc, reference copies under the keg's share.
    let installed: Vec<&str> = seen["installed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let keg_rel = Path::new(keg)
        .strip_prefix(work.path())
        .unwrap()
        .display()
        .to_string();
    for u in shipped_units() {
        for place in [
            format!("prefix/etc/launchgraph/units/{u}"),
            format!("{keg_rel}/share/launchgraph/units/{u}"),
        ] {
            assert!(
                installed.contains(&place.as_str()),
                "{place}: {installed:#?}"
            );
        }
    }
    for dir in ["prefix/var/log", "prefix/var/launchgraph"] {
        assert!(work.path().join(dir).is_dir(), "post_install creates {dir}");
    }

    // The service is the .pkg's daemon with Homebrew's paths.
    let d = daemon_plist();
    let service = &seen["service"];
    let homebrew = |p: &str| p.replacen("/usr/local", prefix, 1);
    let mut argv = program_arguments(&d);
    argv[0] = format!("{prefix}/opt/launchgraph/bin/launchgraph");
    argv[3] = homebrew(&argv[3]);
    argv[5] = homebrew(&argv[5]);
    argv[7] = homebrew(&argv[7]);
    assert_eq!(service["run"], serde_json::json!(argv));
    assert_eq!(service["require_root"], true);
    assert_eq!(service["keep_alive"], true);
    assert!(
        service.get("run_at_load").is_none() || service["run_at_load"] == true,
        "RunAtLoad, Homebrew's default"
    );
    assert_eq!(
        service["stop_timeout"].as_i64(),
        d.get("ExitTimeOut").and_then(Value::as_signed_integer)
    );
    let process_type = service["process_type"].as_str().unwrap();
    let mut capitalized = process_type.to_owned();
    capitalized[..1].make_ascii_uppercase();
    assert_eq!(capitalized, string(&d, "ProcessType"));
    assert!(
        service.get("log_path").is_none(),
        "launchgraph opens its log itself"
    );
    assert_eq!(
        service["error_log_path"],
        homebrew(string(&d, "StandardErrorPath"))
    );
    assert_eq!(
        service["environment_variables"],
        serde_json::json!({
            "PATH": format!("{prefix}/bin:{prefix}/sbin:/usr/bin:/bin:/usr/sbin:/sbin"),
            "LAUNCHGRAPH_LOG": environment(&d)["LAUNCHGRAPH_LOG"],
        })
    );
}
