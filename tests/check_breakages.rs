//! `launchgraph check` run the way an admin runs it (`check --units DIR --state-dir STATE`),
//! on a fixture host built in a temporary directory: a Homebrew prefix (node in its Cellar,
//! OpenClaw under `lib/node_modules`, Ollama and llama.cpp kegs), users with an nvm tree and
//! OpenClaw's generated service files, LaunchAgent and LaunchDaemon plists written as XML and
//! binary, and exec units.
//!
//! Each upgrade breakage of the OpenClaw reference (openclaw/openclaw src/daemon/launchd-plist.ts, docs/platforms/mac/bundled-gateway.md; openclaw/openclaw#58111, #107074; npm/cli workspaces/config/lib/index.js; Homebrew/homebrew-core Formula/n/node.rb) and each
//! plist rule of launchd.plist(5), https://keith.github.io/xcode-man-pages/launchd.plist.5.html is one unit. For each, `check` must print
//! `<unit>: <severity> <CODE>`, a `path:` line naming the file involved and a `fix:` line; exit
//! 65 when an error is among its findings and 0 when there are only warnings; and print nothing
//! for the unit once the fix it gives has been applied to the fixture. The breakages also run
//! side by side in one units directory. The drift test stores fingerprints with the library,
//! as the daemon does when a unit becomes ready, "upgrades" the fixture and reads the drift
//! lines `check` prints.
//!
//! The binary sees this machine through `PreflightContext::host()`: launchd's default PATH
//! `/usr/bin:/bin:/usr/sbin:/sbin` on this machine's disk, and its user database. The
//! fixtures keep this machine out of the results: every job that runs node sets HOME (so no
//! real `~/.npmrc` is read), and the `#!/usr/bin/env` cases name an interpreter that no host
//! has. Only the test of `#!/usr/bin/env node` itself depends on this machine: it asks whether
//! a node is on that PATH and asserts what follows either way.
//!
//! The LaunchDaemon cases need root (a LaunchDaemon plist must be root's, and chown needs
//! root): they are the ignored `root_*` tests, which `scripts/test.sh` runs as root, and
//! without root the one-host test leaves them out and Homebrew's Ollama is its LaunchAgent. The last section holds an
//! ignored test showing a wrong explanation in a finding's message.

use std::cell::Cell;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use launchgraph::fingerprint::{self, Fingerprint, Role};
use launchgraph::preflight::{LAUNCHD_DEFAULT_PATH, PreflightContext};
use plist::{Dictionary, Value};
use sha2::{Digest, Sha256};

mod support;
use support::host::{FakeHost, chmod, relink, write};

/// `check`'s exit code when a preflight error blocks a start.
const EXIT_PREFLIGHT: i32 = launchgraph::exit::PREFLIGHT as i32;

/// The node keg before and after `brew upgrade node`.
const OLD_NODE: &str = support::host::NODE;
const NEW_NODE: &str = "26.0.0";

/// The interpreter the `#!/usr/bin/env` fixtures name. OpenClaw's `openclaw.mjs` says
/// `#!/usr/bin/env node`, but this machine (like many Linux hosts) may have `/usr/bin/node`,
/// which is on launchd's default PATH as the binary sees it, and then the breakage would not
/// show. No host has this name, so the script fails here exactly as `openclaw.mjs` fails under
/// launchd on a Mac whose node lives in Homebrew or nvm.
const FIXTURE_INTERPRETER: &str = "node-fixture-xyz";

// ---------------------------------------------------------------------------------------
// Files

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The user whose LaunchAgents the fixtures are: `nobody` (65534) when the tests run as root,
/// so the agent's files are really someone else's; else whoever runs the tests.
fn agent_uid() -> u32 {
    if is_root() {
        65534
    } else {
        nix::unistd::geteuid().as_raw()
    }
}

fn agent_domain() -> String {
    format!("gui/{}", agent_uid())
}

fn d(p: &Path) -> String {
    p.display().to_string()
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() && !path.is_symlink() {
        for e in std::fs::read_dir(path).unwrap() {
            chown_tree(&e.unwrap().path(), uid, gid);
        }
    }
}

fn s(v: impl AsRef<str>) -> Value {
    Value::String(v.as_ref().to_owned())
}

fn sp(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn argv_value(argv: &[String]) -> Value {
    Value::Array(argv.iter().map(s).collect())
}

#[derive(Clone, Copy)]
enum Fmt {
    Xml,
    Binary,
}

/// Writes a plist as launchd reads it, mode 0644 (OpenClaw's and `brew services`' mode).
fn write_plist(path: &Path, dict: &Dictionary, fmt: Fmt) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let v = Value::Dictionary(dict.clone());
    match fmt {
        Fmt::Xml => v.to_file_xml(path).unwrap(),
        Fmt::Binary => v.to_file_binary(path).unwrap(),
    }
    chmod(path, 0o644);
}

fn read_plist(path: &Path) -> Dictionary {
    Value::from_file(path).unwrap().into_dictionary().unwrap()
}

/// Sets (or with `None` removes) one key of the plist's EnvironmentVariables.
fn set_env(dict: &mut Dictionary, key: &str, value: Option<&str>) {
    let mut env = dict
        .get("EnvironmentVariables")
        .and_then(Value::as_dictionary)
        .cloned()
        .unwrap_or_default();
    match value {
        Some(v) => {
            env.insert(key.into(), s(v));
        }
        None => {
            env.remove(key);
        }
    }
    dict.insert("EnvironmentVariables".into(), Value::Dictionary(env));
}

fn sha256_hex(path: &Path) -> String {
    format!("{:x}", Sha256::digest(std::fs::read(path).unwrap()))
}

/// How drift shows a hash: its first 8 hex digits.
fn short(sha: &str) -> String {
    format!("{}…", &sha[..8])
}

// ---------------------------------------------------------------------------------------
// Unit files

fn q(v: &str) -> String {
    format!("{v:?}")
}

fn launchd_toml(label: &str, plist: &Path, domain: &str, requires: &[&str]) -> String {
    let mut t = String::new();
    if !requires.is_empty() {
        let r: Vec<String> = requires.iter().map(|r| q(r)).collect();
        t.push_str(&format!("requires = [{}]\n", r.join(", ")));
    }
    t.push_str(&format!(
        "[launchd]\nlabel = {}\nplist = {}\ndomain = {}\n",
        q(label),
        q(&sp(plist)),
        q(domain)
    ));
    t
}

fn exec_toml(command: &[String], env: &[(&str, String)]) -> String {
    let cmd: Vec<String> = command.iter().map(|c| q(c)).collect();
    let env: Vec<String> = env.iter().map(|(k, v)| format!("{k} = {}", q(v))).collect();
    format!(
        "[exec]\ncommand = [{}]\nenv = {{ {} }}\n",
        cmd.join(", "),
        env.join(", ")
    )
}

fn write_units(dir: &Path, files: &[(&str, String)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(format!("{name}.toml")), text).unwrap();
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|i| (*i).to_owned()).collect()
}

// ---------------------------------------------------------------------------------------
// The host

/// A Mac as the breakages leave it, under one temporary directory: Homebrew at `opt/homebrew`,
/// the OpenClaw user at `Users/oc`, LaunchDaemons at `Library/LaunchDaemons`.
struct Host {
    fake: FakeHost,
    root: PathBuf,
    brew: PathBuf,
    home: PathBuf,
    /// The version of the node keg `opt/node` points at.
    node: Cell<&'static str>,
}

impl Host {
    fn new() -> Host {
        // The fake host: Homebrew's node, npm's npmrc, OpenClaw by Homebrew's npm, Ollama, and
        // the user's old nvm install with its own OpenClaw (openclaw#58111).
        let fake = FakeHost::new("Users/oc");
        let (root, brew, home) = (fake.root.clone(), fake.brew.clone(), fake.home.clone());
        // The interpreter of the `#!/usr/bin/env` fixtures, where npm would link it.
        write(
            &brew.join("bin").join(FIXTURE_INTERPRETER),
            "#!/bin/sh\nexit 0\n",
            0o755,
        );
        // A llama.cpp keg.
        write(
            &brew.join("Cellar/llama.cpp/6500/bin/llama-server"),
            "#!/bin/sh\nexit 0\n",
            0o755,
        );
        relink("../Cellar/llama.cpp/6500", &brew.join("opt/llama.cpp"));
        // HOME of the LaunchDaemons: set in their plists (launchd.plist(5), https://keith.github.io/xcode-man-pages/launchd.plist.5.html, openclaw/openclaw#74944), and so this machine's /root is never read.
        std::fs::create_dir_all(root.join("var/root")).unwrap();

        Host {
            fake,
            root,
            brew,
            home,
            node: Cell::new(OLD_NODE),
        }
    }

    fn keg_node(&self) -> PathBuf {
        self.brew
            .join(format!("Cellar/node/{}/bin/node", self.node.get()))
    }
    fn old_keg_node(&self) -> PathBuf {
        self.brew.join(format!("Cellar/node/{OLD_NODE}/bin/node"))
    }
    fn opt_node(&self) -> PathBuf {
        self.brew.join("opt/node/bin/node")
    }
    fn bin_node(&self) -> PathBuf {
        self.brew.join("bin/node")
    }
    fn node_modules(&self) -> PathBuf {
        self.brew.join("lib/node_modules")
    }
    fn entry(&self) -> PathBuf {
        self.node_modules().join("openclaw/dist/index.js")
    }
    fn package_json(&self) -> PathBuf {
        self.node_modules().join("openclaw/package.json")
    }
    fn nvm(&self) -> PathBuf {
        self.home.join(".nvm/versions/node/v22.22.0")
    }
    fn nvm_node(&self) -> PathBuf {
        self.nvm().join("bin/node")
    }
    fn nvm_entry(&self) -> PathBuf {
        self.nvm().join("lib/node_modules/openclaw/dist/index.js")
    }
    fn interpreter(&self) -> PathBuf {
        self.brew.join("bin").join(FIXTURE_INTERPRETER)
    }
    fn state_dir(&self) -> PathBuf {
        self.root.join("var/launchgraph")
    }
    fn units_dir(&self, name: &str) -> PathBuf {
        self.root.join("etc/launchgraph").join(name)
    }
    fn agent_plist(&self, home: &Path, label: &str) -> PathBuf {
        home.join(format!("Library/LaunchAgents/{label}.plist"))
    }
    fn daemon_plist(&self, label: &str) -> PathBuf {
        self.root
            .join(format!("Library/LaunchDaemons/{label}.plist"))
    }

    /// OpenClaw's canonical service PATH (openclaw/openclaw src/daemon/launchd-plist.ts, docs/platforms/mac/bundled-gateway.md), with this host's Homebrew.
    fn path_var(&self) -> String {
        format!(
            "{0}/bin:{0}/sbin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            self.brew.display()
        )
    }

    /// A second user, whose npm prefix is their own (openclaw#149382).
    fn dev_home(&self) -> PathBuf {
        let home = self.root.join("Users/dev");
        std::fs::create_dir_all(home.join("Library/LaunchAgents")).unwrap();
        std::fs::create_dir_all(home.join("Library/Logs/openclaw")).unwrap();
        home
    }

    /// OpenClaw's generated env wrapper (0700) and env file (0600) for `label`, which set HOME
    /// and the gateway's variables (openclaw/openclaw src/daemon/launchd-plist.ts, docs/platforms/mac/bundled-gateway.md).
    fn service_env(&self, home: &Path, label: &str) -> (PathBuf, PathBuf) {
        let dir = home.join(".openclaw/service-env");
        let wrapper = dir.join(format!("{label}-env-wrapper.sh"));
        let env = dir.join(format!("{label}.env"));
        write(
            &wrapper,
            "#!/bin/sh\nset -a\n. \"$1\"\nset +a\nshift\nexec \"$@\"\n",
            0o700,
        );
        write(
            &env,
            &format!(
                "export HOME='{}'\nOPENCLAW_GATEWAY_PORT=18789\nOPENCLAW_LAUNCHD_LABEL={label}\n",
                home.display()
            ),
            0o600,
        );
        (wrapper, env)
    }

    /// The current layout: `/bin/sh <wrapper> <env-file> <node> <entry> gateway --port N`.
    fn sh_argv(&self, home: &Path, label: &str, node: &Path, entry: &Path) -> Vec<String> {
        let (wrapper, env) = self.service_env(home, label);
        let mut argv = vec![
            "/bin/sh".to_owned(),
            sp(&wrapper),
            sp(&env),
            sp(node),
            sp(entry),
        ];
        argv.extend(strings(&["gateway", "--port", "18789"]));
        argv
    }

    /// The older layout: `<wrapper> <env-file> <node> <entry> gateway --port N`.
    fn wrapper_first_argv(&self, label: &str, node: &Path, entry: &Path) -> Vec<String> {
        self.sh_argv(&self.home, label, node, entry)[1..].to_vec()
    }

    /// The plain layout: `<node> <entry> gateway --port N`.
    fn plain_argv(&self, node: &str, entry: &Path) -> Vec<String> {
        let mut argv = vec![node.to_owned(), sp(entry)];
        argv.extend(strings(&["gateway", "--port", "18789"]));
        argv
    }

    /// An OpenClaw LaunchAgent plist with the keys `openclaw gateway install` writes
    /// (openclaw/openclaw src/daemon/launchd-plist.ts, docs/platforms/mac/bundled-gateway.md): RunAtLoad, KeepAlive, throttle, logs, HOME and the
    /// canonical PATH.
    fn openclaw_plist(&self, home: &Path, label: &str, argv: &[String]) -> Dictionary {
        let profile = label.trim_start_matches("ai.openclaw.");
        let log = home.join(format!("Library/Logs/openclaw/gateway-{profile}.log"));
        Dictionary::from_iter([
            ("Label", s(label)),
            ("ProgramArguments", argv_value(argv)),
            ("RunAtLoad", Value::Boolean(true)),
            ("KeepAlive", Value::Boolean(true)),
            ("ThrottleInterval", Value::Integer(10.into())),
            ("ExitTimeOut", Value::Integer(20.into())),
            ("ProcessType", s("Interactive")),
            ("Umask", Value::Integer(63.into())),
            ("StandardInPath", s("/dev/null")),
            ("StandardOutPath", s(sp(&log))),
            ("StandardErrorPath", s(sp(&log))),
            (
                "EnvironmentVariables",
                Value::Dictionary(Dictionary::from_iter([
                    ("HOME", s(sp(home))),
                    ("PATH", s(self.path_var())),
                    ("OPENCLAW_LAUNCHD_LABEL", s(label)),
                    ("OPENCLAW_SERVICE_MARKER", s("openclaw")),
                    ("OPENCLAW_SERVICE_KIND", s("gateway")),
                    ("OPENCLAW_SERVICE_VERSION", s("2026.9.6")),
                ])),
            ),
        ])
    }

    /// Writes an OpenClaw LaunchAgent of the main user and returns its path.
    fn openclaw_agent(&self, label: &str, argv: &[String], fmt: Fmt) -> PathBuf {
        let plist = self.agent_plist(&self.home, label);
        write_plist(&plist, &self.openclaw_plist(&self.home, label, argv), fmt);
        plist
    }

    /// Homebrew's rendering of the Ollama formula's `service do` block, as `sudo brew
    /// services start ollama` installs it: LimitLoadToSessionType and all (launchd.plist(5), https://keith.github.io/xcode-man-pages/launchd.plist.5.html),
    /// with HOME added to its environment, as an admin fixes `HOME_MISSING` (launchd gives a
    /// root daemon without UserName no HOME, and `ollama serve` needs one).
    fn ollama_plist(&self) -> Dictionary {
        let log = self.brew.join("var/log/ollama.log");
        Dictionary::from_iter([
            ("Label", s("homebrew.mxcl.ollama")),
            (
                "LimitLoadToSessionType",
                Value::Array(
                    ["Aqua", "Background", "LoginWindow", "StandardIO", "System"]
                        .into_iter()
                        .map(s)
                        .collect(),
                ),
            ),
            (
                "ProgramArguments",
                argv_value(&[sp(&self.brew.join("opt/ollama/bin/ollama")), "serve".into()]),
            ),
            ("RunAtLoad", Value::Boolean(true)),
            ("KeepAlive", Value::Boolean(true)),
            ("WorkingDirectory", s(sp(&self.brew.join("var")))),
            ("StandardOutPath", s(sp(&log))),
            ("StandardErrorPath", s(sp(&log))),
            (
                "EnvironmentVariables",
                Value::Dictionary(Dictionary::from_iter([
                    ("HOME", s(sp(&self.home))),
                    ("OLLAMA_FLASH_ATTENTION", s("1")),
                    ("OLLAMA_KV_CACHE_TYPE", s("q8_0")),
                ])),
            ),
        ])
    }

    /// Writes Homebrew's Ollama plist and returns the `ollama` unit file: the LaunchDaemon
    /// of `sudo brew services` when the tests run as root, else the LaunchAgent `brew
    /// services` writes without sudo (a LaunchDaemon must be root's).
    fn ollama_unit(&self) -> String {
        let plist = if is_root() {
            self.daemon_plist("homebrew.mxcl.ollama")
        } else {
            self.agent_plist(&self.home, "homebrew.mxcl.ollama")
        };
        write_plist(&plist, &self.ollama_plist(), Fmt::Xml);
        let domain = if is_root() {
            "system".to_owned()
        } else {
            agent_domain()
        };
        launchd_toml("homebrew.mxcl.ollama", &plist, &domain, &[])
    }

    /// A LaunchDaemon an admin wrote for llama.cpp's server, with HOME set.
    fn llama_daemon(&self, label: &str, port: &str, fmt: Fmt) -> PathBuf {
        let plist = self.daemon_plist(label);
        let dict = Dictionary::from_iter([
            ("Label", s(label)),
            (
                "ProgramArguments",
                argv_value(&[
                    sp(&self.brew.join("opt/llama.cpp/bin/llama-server")),
                    "--host".into(),
                    "127.0.0.1".into(),
                    "--port".into(),
                    port.into(),
                ]),
            ),
            ("RunAtLoad", Value::Boolean(true)),
            ("KeepAlive", Value::Boolean(true)),
            (
                "EnvironmentVariables",
                Value::Dictionary(Dictionary::from_iter([(
                    "HOME",
                    s(sp(&self.root.join("var/root"))),
                )])),
            ),
        ]);
        write_plist(&plist, &dict, fmt);
        plist
    }

    /// `openclaw.mjs` with the fixture interpreter on its `#!/usr/bin/env` line (see
    /// [`FIXTURE_INTERPRETER`]); returns the `openclaw` bin link npm made for it.
    fn env_script(&self) -> PathBuf {
        write(
            &self.node_modules().join("openclaw/openclaw.mjs"),
            &format!("#!/usr/bin/env {FIXTURE_INTERPRETER}\nimport './dist/entry.js';\n"),
            0o755,
        );
        self.brew.join("bin/openclaw")
    }

    /// `brew upgrade node`: node 26.0.0 in a new keg, the links moved, the 25.5.0 keg removed
    /// (openclaw#20583).
    fn brew_upgrade_node(&self) {
        if self.node.get() == NEW_NODE {
            return;
        }
        self.fake.upgrade_node(NEW_NODE);
        self.fake.cleanup_node(OLD_NODE);
        self.node.set(NEW_NODE);
    }

    /// `npm i -g openclaw@2026.10.1` with Homebrew's npm.
    fn npm_upgrade_openclaw(&self) {
        write(
            &self.package_json(),
            r#"{"name":"openclaw","version":"2026.10.1","bin":{"openclaw":"openclaw.mjs"}}"#,
            0o644,
        );
        write(&self.entry(), "// openclaw 2026.10.1\n", 0o644);
    }

    /// `launchgraph check --units DIR --state-dir STATE`, with the users' files owned by
    /// their user first. Every run is checked for what holds of any run: the exit code is 65
    /// exactly when an error-level finding was printed, and the closing line counts them.
    fn check(&self, units: &Path) -> Report {
        if is_root() {
            chown_tree(&self.root.join("Users"), agent_uid(), agent_uid());
        }
        let out = Command::new(env!("CARGO_BIN_EXE_launchgraph"))
            .arg("check")
            .arg("--units")
            .arg(units)
            .arg("--state-dir")
            .arg(self.state_dir())
            .env_remove("LAUNCHGRAPH_UNITS")
            .env_remove("LAUNCHGRAPH_STATE_DIR")
            .output()
            .expect("run launchgraph");
        let r = Report {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert!(
            r.stdout.lines().any(|l| l.starts_with("ok: ")),
            "the units compile:\n{r}"
        );
        let errors = r.blocks().iter().filter(|b| b.severity == "error").count();
        let summary = format!(
            "error: {errors} preflight {} a start (see the fixes above)",
            if errors == 1 {
                "error blocks"
            } else {
                "errors block"
            }
        );
        if errors > 0 {
            assert_eq!(r.code, Some(EXIT_PREFLIGHT), "{r}");
            assert!(r.stdout.lines().any(|l| l == summary), "{summary:?}:\n{r}");
        } else {
            assert_eq!(r.code, Some(0), "{r}");
            assert!(!r.stdout.contains("error: "), "{r}");
        }
        r
    }
}

// ---------------------------------------------------------------------------------------
// What `check` printed

/// One finding as `check` prints it:
///
/// ```text
/// <unit>: <severity> <CODE>
///   path: <path>          (when the finding has one)
///   <message>
///   fix: <fix>
/// ```
#[derive(Debug, Clone)]
struct Block {
    unit: String,
    severity: String,
    code: String,
    path: Option<String>,
    message: String,
    fix: Option<String>,
}

struct Report {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn header(line: &str) -> Option<(String, String, String)> {
    if line.starts_with(' ') {
        return None;
    }
    let (unit, rest) = line.split_once(": ")?;
    let mut words = rest.split(' ');
    let severity = words.next()?;
    let code = words.next()?;
    let finding = ["info", "warning", "error"].contains(&severity)
        && !code.is_empty()
        && code.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        && words.next().is_none();
    finding.then(|| (unit.to_owned(), severity.to_owned(), code.to_owned()))
}

impl Report {
    fn blocks(&self) -> Vec<Block> {
        let mut out: Vec<Block> = Vec::new();
        let mut open = false;
        for line in self.stdout.lines() {
            if let Some((unit, severity, code)) = header(line) {
                out.push(Block {
                    unit,
                    severity,
                    code,
                    path: None,
                    message: String::new(),
                    fix: None,
                });
                open = true;
                continue;
            }
            let Some(body) = line.strip_prefix("  ").filter(|_| open) else {
                open = false;
                continue;
            };
            let b = out.last_mut().unwrap();
            if let Some(p) = body.strip_prefix("path: ") {
                b.path = Some(p.to_owned());
            } else if let Some(fix) = body.strip_prefix("fix: ") {
                b.fix = Some(fix.to_owned());
            } else {
                b.message = body.to_owned();
            }
        }
        out
    }

    fn of(&self, unit: &str) -> Vec<Block> {
        self.blocks()
            .into_iter()
            .filter(|b| b.unit == unit)
            .collect()
    }

    fn drift(&self, unit: &str) -> Vec<String> {
        let prefix = format!("{unit}: drift since the last good run: ");
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    }

    /// The unit's findings are exactly `expect` (in any order), each printed with its header,
    /// its `path:` line (none when the finding has no path), its message and a `fix:` line.
    fn assert_findings(&self, unit: &str, expect: &[Expect]) {
        let got = self.of(unit);
        let key = |sev: &str, code: &str, path: Option<&str>| {
            format!("{sev} {code} {}", path.unwrap_or("(no path)"))
        };
        let mut got_keys: Vec<String> = got
            .iter()
            .map(|b| key(&b.severity, &b.code, b.path.as_deref()))
            .collect();
        let mut want_keys: Vec<String> = expect
            .iter()
            .map(|e| key(e.severity, e.code, e.path.as_deref()))
            .collect();
        got_keys.sort();
        want_keys.sort();
        assert_eq!(got_keys, want_keys, "findings of {unit}:\n{self}");
        for e in expect {
            let line = format!("{unit}: {} {}", e.severity, e.code);
            assert!(self.stdout.lines().any(|l| l == line), "{line:?}:\n{self}");
            let b = got
                .iter()
                .find(|b| b.severity == e.severity && b.code == e.code && b.path == e.path)
                .unwrap();
            assert!(
                !b.message.is_empty(),
                "{unit} {}: a message\n{self}",
                e.code
            );
            let fix = b.fix.as_deref().unwrap_or("");
            assert!(!fix.is_empty(), "{unit} {}: a fix: line\n{self}", e.code);
            for m in &e.message {
                assert!(
                    b.message.contains(m.as_str()),
                    "{unit} {}: the message names {m:?}: {:?}",
                    e.code,
                    b.message
                );
            }
            for f in &e.fix {
                assert!(
                    fix.contains(f.as_str()),
                    "{unit} {}: the fix names {f:?}: {fix:?}",
                    e.code
                );
            }
        }
    }

    /// No finding line for `unit`.
    fn assert_clean(&self, unit: &str) {
        let got = self.of(unit);
        assert!(got.is_empty(), "no findings for {unit}:\n{self}");
    }
}

/// A finding `check` must print.
struct Expect {
    severity: &'static str,
    code: &'static str,
    path: Option<String>,
    message: Vec<String>,
    fix: Vec<String>,
}

fn expect(severity: &'static str, code: &'static str, path: Option<&Path>) -> Expect {
    Expect {
        severity,
        code,
        path: path.map(d),
        message: Vec::new(),
        fix: Vec::new(),
    }
}

fn error(code: &'static str, path: Option<&Path>) -> Expect {
    expect("error", code, path)
}

fn warning(code: &'static str, path: Option<&Path>) -> Expect {
    expect("warning", code, path)
}

impl Expect {
    /// The message contains `text`.
    fn says(mut self, text: impl Into<String>) -> Self {
        self.message.push(text.into());
        self
    }

    /// The fix contains `text`.
    fn fixes(mut self, text: impl Into<String>) -> Self {
        self.fix.push(text.into());
        self
    }
}

// ---------------------------------------------------------------------------------------
// The breakages

/// One breakage: the unit that shows it (with the units it requires), what `check` must say
/// about it, and the fix an admin applies, as the finding's `fix:` line gives it.
struct Breakage {
    unit: &'static str,
    files: Vec<(&'static str, String)>,
    expect: Vec<Expect>,
    fix: Box<dyn Fn(&Host)>,
}

impl Breakage {
    fn has_error(&self) -> bool {
        self.expect.iter().any(|e| e.severity == "error")
    }
}

type Make = fn(&Host, &Path) -> Breakage;

/// openclaw#20583: `process.execPath` is the realpath, so the plist runs node from inside the
/// versioned Cellar keg. It works until the next `brew upgrade node`.
fn cellar_pinned(h: &Host, _: &Path) -> Breakage {
    let label = "ai.openclaw.pinned";
    let node = h.keg_node();
    let plist = h.openclaw_agent(
        label,
        &h.sh_argv(&h.home, label, &node, &h.entry()),
        Fmt::Xml,
    );
    Breakage {
        unit: "cellar-pinned",
        files: vec![(
            "cellar-pinned",
            launchd_toml(label, &plist, &agent_domain(), &[]),
        )],
        expect: vec![
            warning("CELLAR_VERSIONED_PATH", Some(&node))
                .says("ProgramArguments[3]")
                .says("versioned Homebrew Cellar")
                .says("openclaw#20583")
                .fixes(d(&h.opt_node()))
                .fixes("openclaw gateway install --force"),
        ],
        // Repoint the plist at the stable opt/node link.
        fix: Box::new(move |h| {
            let argv = h.sh_argv(&h.home, label, &h.opt_node(), &h.entry());
            h.openclaw_agent(label, &argv, Fmt::Xml);
        }),
    }
}

/// openclaw#20583 after `brew upgrade node`: the keg the plist names is gone, and launchd
/// would respawn the job forever. The plist is binary, as `plutil -convert binary1` leaves it.
fn cellar_removed(h: &Host, _: &Path) -> Breakage {
    let label = "ai.openclaw.removed";
    let node = h.old_keg_node();
    let plist = h.openclaw_agent(label, &h.plain_argv(&sp(&node), &h.entry()), Fmt::Binary);
    h.brew_upgrade_node();
    Breakage {
        unit: "cellar-removed",
        files: vec![(
            "cellar-removed",
            launchd_toml(label, &plist, &agent_domain(), &[]),
        )],
        expect: vec![
            error("PLIST_PATH_MISSING", Some(&node))
                .says("ProgramArguments[0]")
                .says("does not exist")
                .says("`brew upgrade node`")
                .fixes(format!("the stable {}", d(&h.opt_node()))),
            warning("CELLAR_VERSIONED_PATH", Some(&node)).fixes(d(&h.opt_node())),
        ],
        fix: Box::new(move |h| {
            h.openclaw_agent(
                label,
                &h.plain_argv(&sp(&h.opt_node()), &h.entry()),
                Fmt::Binary,
            );
        }),
    }
}

/// openclaw#58111: node from Homebrew, the entry still in the nvm tree.
fn mixed_roots(h: &Host, _: &Path) -> Breakage {
    let label = "ai.openclaw.mixed";
    let entry = h.nvm_entry();
    let plist = h.openclaw_agent(label, &h.plain_argv(&sp(&h.bin_node()), &entry), Fmt::Xml);
    Breakage {
        unit: "mixed-roots",
        files: vec![(
            "mixed-roots",
            launchd_toml(label, &plist, &agent_domain(), &[]),
        )],
        expect: vec![
            error("MIXED_INSTALL_ROOTS", Some(&entry))
                .says(format!("node {} (ProgramArguments[0])", d(&h.bin_node())))
                .says("the Homebrew prefix")
                .says(format!("nvm {}", d(&h.nvm())))
                .says("openclaw#58111")
                .fixes(format!(
                    "point ProgramArguments[1] at its copy under {}",
                    d(&h.node_modules())
                )),
            warning("VERSION_MANAGER_PATH", Some(&entry)).says("nvm"),
        ],
        // Point the entry at the copy Homebrew's npm installed.
        fix: Box::new(move |h| {
            h.openclaw_agent(
                label,
                &h.plain_argv(&sp(&h.bin_node()), &h.entry()),
                Fmt::Xml,
            );
        }),
    }
}

/// openclaw#107074: the updater installed OpenClaw into the versioned node keg, outside npm's
/// global prefix (Homebrew's), and rewrote the LaunchAgent to run it from there.
fn keg_install(h: &Host, _: &Path) -> Breakage {
    let label = "ai.openclaw.keg";
    let pkg = h
        .keg_node()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("lib/node_modules/openclaw");
    write(
        &pkg.join("package.json"),
        r#"{"name":"openclaw","version":"2026.7.1"}"#,
        0o644,
    );
    write(&pkg.join("dist/index.js"), "// openclaw 2026.7.1\n", 0o644);
    let entry = pkg.join("dist/index.js");
    let plist = h.openclaw_agent(label, &h.plain_argv(&sp(&h.opt_node()), &entry), Fmt::Xml);
    Breakage {
        unit: "keg-install",
        files: vec![(
            "keg-install",
            launchd_toml(label, &plist, &agent_domain(), &[]),
        )],
        expect: vec![
            warning("CELLAR_VERSIONED_PATH", Some(&entry))
                .says("ProgramArguments[1]")
                .says("#107074")
                .fixes(format!(
                    "{} install -g openclaw",
                    d(&h.brew.join("bin/npm"))
                ))
                .fixes(format!("point ProgramArguments[1] at {}", d(&h.entry()))),
            warning("ENTRY_OUTSIDE_NPM_PREFIX", Some(&entry))
                .says(format!("outside {}", d(&h.node_modules())))
                .says("npm's builtin npmrc")
                .says("#149382")
                .fixes("install -g openclaw"),
        ],
        fix: Box::new(move |h| {
            h.openclaw_agent(
                label,
                &h.plain_argv(&sp(&h.opt_node()), &h.entry()),
                Fmt::Xml,
            );
        }),
    }
}

/// openclaw#149382: a custom npm prefix (`npm prefix -g` not under the node install), set in
/// the user's `~/.npmrc`. HOME comes from OpenClaw's env file only, which preflight reads.
fn custom_prefix(h: &Host, _: &Path) -> Breakage {
    let label = "ai.openclaw.custom";
    let home = h.dev_home();
    let npmrc = home.join(".npmrc");
    write(&npmrc, "fund=false\nprefix=~/.npm-global\n", 0o644);
    let argv = h.sh_argv(&home, label, &h.opt_node(), &h.entry());
    let mut dict = h.openclaw_plist(&home, label, &argv);
    set_env(&mut dict, "HOME", None);
    let plist = h.agent_plist(&home, label);
    write_plist(&plist, &dict, Fmt::Xml);
    Breakage {
        unit: "custom-prefix",
        files: vec![(
            "custom-prefix",
            launchd_toml(label, &plist, &agent_domain(), &[]),
        )],
        expect: vec![
            warning("ENTRY_OUTSIDE_NPM_PREFIX", Some(&h.entry()))
                .says(format!(
                    "its global prefix is {}",
                    d(&home.join(".npm-global"))
                ))
                .says(format!("the user npmrc {}", d(&npmrc)))
                .says("ProgramArguments[4]")
                .fixes(format!("remove the `prefix` line from {}", d(&npmrc))),
        ],
        fix: Box::new(move |_| write(&npmrc, "fund=false\n", 0o644)),
    }
}

/// openclaw#74944: a `#!/usr/bin/env node` script as ProgramArguments[0], no PATH in the
/// plist, so env searches launchd's default PATH and exits 127.
fn env_script_launchd(h: &Host, _: &Path) -> Breakage {
    let label = "ai.openclaw.update";
    let script = h.env_script();
    let plist = h.agent_plist(&h.home, label);
    let job = |argv: Vec<String>| {
        Dictionary::from_iter([
            ("Label", s(label)),
            ("ProgramArguments", argv_value(&argv)),
            (
                "EnvironmentVariables",
                Value::Dictionary(Dictionary::from_iter([("HOME", s(sp(&h.home)))])),
            ),
        ])
    };
    write_plist(
        &plist,
        &job(vec![sp(&script), "update".into(), "--yes".into()]),
        Fmt::Xml,
    );
    let home = h.home.clone();
    let fixed = move |h: &Host| {
        let argv = vec![
            sp(&h.interpreter()),
            sp(&h.brew.join("bin/openclaw")),
            "update".into(),
            "--yes".into(),
        ];
        Dictionary::from_iter([
            ("Label", s(label)),
            ("ProgramArguments", argv_value(&argv)),
            (
                "EnvironmentVariables",
                Value::Dictionary(Dictionary::from_iter([("HOME", s(sp(&home)))])),
            ),
        ])
    };
    Breakage {
        unit: "env-script",
        files: vec![(
            "env-script",
            launchd_toml(label, &plist, &agent_domain(), &[]),
        )],
        expect: vec![
            error("SHEBANG_INTERPRETER_NOT_ON_PATH", Some(&script))
                .says(format!("#!/usr/bin/env {FIXTURE_INTERPRETER}"))
                .says(format!("{LAUNCHD_DEFAULT_PATH:?} (launchd's default"))
                .says("exit 127")
                .says("openclaw#74944")
                .fixes(format!(
                    "({} here) followed by the script",
                    d(&h.interpreter())
                ))
                .fixes("set PATH in the plist's EnvironmentVariables"),
        ],
        // Run the interpreter directly, the script after it (openclaw/openclaw#74944).
        fix: Box::new(move |h| {
            let plist = h.agent_plist(&h.home, label);
            write_plist(&plist, &fixed(h), Fmt::Xml);
        }),
    }
}

/// openclaw#40659: a bare `node` as ProgramArguments[0]. launchd resolves it before applying
/// EnvironmentVariables, so the plist's PATH (which has node) does not help.
fn bare_node(h: &Host, _: &Path) -> Breakage {
    let label = "ai.openclaw.bare";
    let plist = h.openclaw_agent(label, &h.plain_argv("node", &h.entry()), Fmt::Xml);
    Breakage {
        unit: "bare-node",
        files: vec![(
            "bare-node",
            launchd_toml(label, &plist, &agent_domain(), &[]),
        )],
        // The finding names no file (the program is not a path); the message names the plist.
        expect: vec![
            error("PROGRAM_NOT_ABSOLUTE", None)
                .says("program \"node\" (ProgramArguments[0] in the plist")
                .says(d(&plist))
                .says("openclaw#40659")
                .fixes("write an absolute path such as /opt/homebrew/opt/node/bin/node")
                .fixes("in ProgramArguments[0]"),
        ],
        fix: Box::new(move |h| {
            h.openclaw_agent(
                label,
                &h.plain_argv(&sp(&h.opt_node()), &h.entry()),
                Fmt::Xml,
            );
        }),
    }
}

/// launchd.plist(5), https://keith.github.io/xcode-man-pages/launchd.plist.5.html: "Configuration files must disallow group and world writes."
fn daemon_writable(h: &Host, _: &Path) -> Breakage {
    let label = "local.llama-server";
    let plist = h.llama_daemon(label, "8080", Fmt::Xml);
    chmod(&plist, 0o666);
    let p = plist.clone();
    Breakage {
        unit: "daemon-writable",
        files: vec![(
            "daemon-writable",
            launchd_toml(label, &plist, "system", &[]),
        )],
        expect: vec![
            error("PLIST_BAD_OWNERSHIP", Some(&plist))
                .says("Path had bad ownership/permissions")
                .says("its mode 0666 lets its group or others write it")
                .fixes(format!("sudo chmod 644 {}", d(&plist))),
        ],
        fix: Box::new(move |_| chmod(&p, 0o644)),
    }
}

/// launchd.plist(5), https://keith.github.io/xcode-man-pages/launchd.plist.5.html: "All system-wide daemons (LaunchDaemons) must be owned by root." A binary
/// plist owned by nobody.
fn daemon_owner(h: &Host, _: &Path) -> Breakage {
    let label = "local.llama-embed";
    let plist = h.llama_daemon(label, "8081", Fmt::Binary);
    std::os::unix::fs::chown(&plist, Some(65534), Some(65534)).unwrap();
    let p = plist.clone();
    Breakage {
        unit: "daemon-owner",
        files: vec![("daemon-owner", launchd_toml(label, &plist, "system", &[]))],
        expect: vec![
            error("PLIST_BAD_OWNERSHIP", Some(&plist))
                .says("it is owned by uid 65534, and a LaunchDaemon plist must be owned by root")
                .fixes(format!("sudo chown root:wheel {}", d(&plist))),
        ],
        fix: Box::new(move |_| std::os::unix::fs::chown(&p, Some(0), Some(0)).unwrap()),
    }
}

/// The unit drives `ai.openclaw.work`, but the plist of that name was renamed from the `lab`
/// profile's and still says `Label = ai.openclaw.lab`: renaming a file does not rename a job.
fn label_mismatch(h: &Host, dir: &Path) -> Breakage {
    let plist = h.agent_plist(&h.home, "ai.openclaw.work");
    let argv = h.sh_argv(&h.home, "ai.openclaw.lab", &h.opt_node(), &h.entry());
    write_plist(
        &plist,
        &h.openclaw_plist(&h.home, "ai.openclaw.lab", &argv),
        Fmt::Xml,
    );
    let (dir, p) = (dir.to_path_buf(), plist.clone());
    Breakage {
        unit: "label-mismatch",
        files: vec![(
            "label-mismatch",
            launchd_toml("ai.openclaw.work", &plist, &agent_domain(), &[]),
        )],
        expect: vec![
            error("PLIST_LABEL_MISMATCH", Some(&plist))
                .says("has Label \"ai.openclaw.lab\", but the unit drives \"ai.openclaw.work\"")
                .fixes("set `label = \"ai.openclaw.lab\"` in the unit file"),
        ],
        fix: Box::new(move |_| {
            write_units(
                &dir,
                &[(
                    "label-mismatch",
                    launchd_toml("ai.openclaw.lab", &p, &agent_domain(), &[]),
                )],
            );
        }),
    }
}

/// A WorkingDirectory that does not exist: launchd cannot chdir there.
fn workdir_missing(h: &Host, _: &Path) -> Breakage {
    let label = "ai.openclaw.ws";
    let wd = h.home.join(".openclaw/workspace-ws");
    let argv = h.sh_argv(&h.home, label, &h.opt_node(), &h.entry());
    let mut dict = h.openclaw_plist(&h.home, label, &argv);
    dict.insert("WorkingDirectory".into(), s(sp(&wd)));
    let plist = h.agent_plist(&h.home, label);
    write_plist(&plist, &dict, Fmt::Xml);
    let w = wd.clone();
    Breakage {
        unit: "workdir",
        files: vec![("workdir", launchd_toml(label, &plist, &agent_domain(), &[]))],
        expect: vec![
            error("WORKING_DIRECTORY_MISSING", Some(&wd))
                .says(format!(
                    "WorkingDirectory {} (the plist {})",
                    d(&wd),
                    d(&plist)
                ))
                .says("does not exist")
                .fixes(format!("mkdir -p {}", d(&wd))),
        ],
        fix: Box::new(move |_| std::fs::create_dir_all(&w).unwrap()),
    }
}

/// doctor §17 (Homebrew/homebrew-core Formula/n/node.rb; openclaw/openclaw#78775): node and the entry from an nvm version; one
/// `nvm uninstall` away from breaking.
fn nvm_node(h: &Host, _: &Path) -> Breakage {
    let label = "ai.openclaw.nvm";
    let plist = h.openclaw_agent(
        label,
        &h.plain_argv(&sp(&h.nvm_node()), &h.nvm_entry()),
        Fmt::Xml,
    );
    Breakage {
        unit: "nvm-node",
        files: vec![(
            "nvm-node",
            launchd_toml(label, &plist, &agent_domain(), &[]),
        )],
        expect: vec![
            warning("VERSION_MANAGER_PATH", Some(&h.nvm_node()))
                .says(format!("program {} (ProgramArguments[0]", d(&h.nvm_node())))
                .says("comes from nvm")
                .fixes("system node")
                .fixes("openclaw gateway install --force"),
            warning("VERSION_MANAGER_PATH", Some(&h.nvm_entry()))
                .says(format!(
                    "entry script {} (ProgramArguments[1]",
                    d(&h.nvm_entry())
                ))
                .says("comes from nvm")
                .fixes("system node"),
        ],
        fix: Box::new(move |h| {
            h.openclaw_agent(
                label,
                &h.plain_argv(&sp(&h.opt_node()), &h.entry()),
                Fmt::Xml,
            );
        }),
    }
}

/// openclaw#75233: the interactive shell's PATH, nvm first, captured into the plist.
fn nvm_path(h: &Host, _: &Path) -> Breakage {
    let label = "ai.openclaw.shell";
    let argv = h.sh_argv(&h.home, label, &h.opt_node(), &h.entry());
    let mut dict = h.openclaw_plist(&h.home, label, &argv);
    let nvm_bin = h.nvm().join("bin");
    set_env(
        &mut dict,
        "PATH",
        Some(&format!("{}:{}", d(&nvm_bin), h.path_var())),
    );
    let plist = h.agent_plist(&h.home, label);
    write_plist(&plist, &dict, Fmt::Xml);
    let p = plist.clone();
    Breakage {
        unit: "nvm-path",
        files: vec![(
            "nvm-path",
            launchd_toml(label, &plist, &agent_domain(), &[]),
        )],
        // A PATH is no file: no `path:` line.
        expect: vec![
            warning("VERSION_MANAGER_PATH", None)
                .says(format!("Node version-manager directories: {}", d(&nvm_bin)))
                .says("openclaw#75233")
                .fixes("set PATH in EnvironmentVariables to the canonical"),
        ],
        fix: Box::new(move |h| {
            let mut dict = read_plist(&p);
            set_env(&mut dict, "PATH", Some(&h.path_var()));
            write_plist(&p, &dict, Fmt::Xml);
        }),
    }
}

/// Takeover (docs/preflight.md): the gateway requires Ollama, but its plist has RunAtLoad and
/// KeepAlive, so launchd starts it at login, before Ollama answers. Homebrew's Ollama plist,
/// which requires nothing, keeps both keys and is accepted as it is.
fn takeover(h: &Host, _: &Path) -> Breakage {
    let label = "ai.openclaw.gateway";
    let plist = h.openclaw_agent(
        label,
        &h.sh_argv(&h.home, label, &h.opt_node(), &h.entry()),
        Fmt::Xml,
    );
    let fixes = |e: Expect| {
        e.fixes("run `sudo launchgraph adopt gateway`: it backs")
            .fixes("sets RunAtLoad to false and removes KeepAlive")
            .fixes("`launchgraph release gateway` gives it back")
            .fixes("OPENCLAW_SUPERVISOR_MODE=external")
            .fixes("OPENCLAW_SERVICE_REPAIR_POLICY=external")
    };
    let p = plist.clone();
    Breakage {
        unit: "gateway",
        files: vec![
            (
                "gateway",
                launchd_toml(label, &plist, &agent_domain(), &["ollama"]),
            ),
            ("ollama", h.ollama_unit()),
        ],
        expect: vec![
            fixes(
                warning("TAKEOVER_RUNATLOAD", Some(&plist))
                    .says("sets RunAtLoad = true")
                    .says("before ollama is ready"),
            ),
            fixes(
                warning("TAKEOVER_KEEPALIVE", Some(&plist))
                    .says("sets KeepAlive = true")
                    .says("before ollama is ready"),
            ),
        ],
        fix: Box::new(move |_| {
            let mut dict = read_plist(&p);
            dict.insert("RunAtLoad".into(), Value::Boolean(false));
            dict.remove("KeepAlive");
            write_plist(&p, &dict, Fmt::Xml);
        }),
    }
}

/// openclaw#20583 for an exec unit: its command names the keg `brew upgrade node` removed.
/// Ollama as an exec unit without `user` or HOME: it gets no HOME, and `ollama serve` (Go's
/// os.UserHomeDir reads only $HOME) exits before it listens.
fn exec_ollama_without_home(h: &Host, dir: &Path) -> Breakage {
    let ollama = h.brew.join("opt/ollama/bin/ollama");
    let argv = vec![sp(&ollama), "serve".to_owned()];
    let broken = exec_toml(&argv, &[("PATH", h.path_var())]);
    let fixed = exec_toml(&argv, &[("HOME", sp(&h.home)), ("PATH", h.path_var())]);
    let dir = dir.to_path_buf();
    Breakage {
        unit: "ollama-exec",
        files: vec![("ollama-exec", broken)],
        expect: vec![
            error("HOME_MISSING", Some(&ollama))
                .says("needs HOME in its environment")
                .says("an exec unit gets exactly its env")
                .fixes("set `user`"),
        ],
        fix: Box::new(move |_| write_units(&dir, &[("ollama-exec", fixed.clone())])),
    }
}

#[test]
fn exec_unit_running_ollama_without_home_is_refused() {
    run(exec_ollama_without_home);
}

fn exec_removed(h: &Host, dir: &Path) -> Breakage {
    let node = h.old_keg_node();
    let env = vec![("HOME", sp(&h.home)), ("PATH", h.path_var())];
    let toml = |node: &Path| exec_toml(&h.plain_argv(&sp(node), &h.entry()), &env);
    let broken = toml(&node);
    let fixed = toml(&h.opt_node());
    h.brew_upgrade_node();
    let unit_file = dir.join("exec-removed.toml");
    let dir = dir.to_path_buf();
    Breakage {
        unit: "exec-removed",
        files: vec![("exec-removed", broken)],
        expect: vec![
            error("COMMAND_PATH_MISSING", Some(&node))
                .says(format!(
                    "program {} (command[0] in the unit file {})",
                    d(&node),
                    d(&unit_file)
                ))
                .says("does not exist")
                .fixes(format!(
                    "fix command[0] in the unit file {}: point it at the stable {}",
                    d(&unit_file),
                    d(&h.opt_node())
                )),
            warning("CELLAR_VERSIONED_PATH", Some(&node)).says("command[0]"),
        ],
        fix: Box::new(move |_| write_units(&dir, &[("exec-removed", fixed.clone())])),
    }
}

/// openclaw#74944 for an exec unit: the same script, with the PATH exec units get.
fn exec_env_script(h: &Host, dir: &Path) -> Breakage {
    let script = h.env_script();
    let env = vec![("HOME", sp(&h.home))];
    let broken = exec_toml(&[sp(&script), "gateway".into()], &env);
    let fixed = exec_toml(&[sp(&h.interpreter()), sp(&script), "gateway".into()], &env);
    let dir = dir.to_path_buf();
    Breakage {
        unit: "exec-env-script",
        files: vec![("exec-env-script", broken)],
        expect: vec![
            error("SHEBANG_INTERPRETER_NOT_ON_PATH", Some(&script))
                .says("(the PATH exec units get when their env sets none)")
                .says("exit 127")
                .fixes(format!(
                    "({} here) followed by the script",
                    d(&h.interpreter())
                ))
                .fixes("set PATH in the unit's env"),
        ],
        fix: Box::new(move |_| write_units(&dir, &[("exec-env-script", fixed.clone())])),
    }
}

/// Every breakage, in the order of the reference sheet. The LaunchDaemon cases need root:
/// without it every LaunchDaemon plist is someone else's, and chown is not allowed.
fn breakages() -> Vec<Make> {
    let mut all: Vec<Make> = vec![
        cellar_pinned,
        cellar_removed,
        mixed_roots,
        keg_install,
        custom_prefix,
        env_script_launchd,
        bare_node,
        label_mismatch,
        workdir_missing,
        nvm_node,
        nvm_path,
        takeover,
        exec_removed,
        exec_env_script,
    ];
    if is_root() {
        all.extend([daemon_writable as Make, daemon_owner]);
    }
    all
}

/// One breakage on a host of its own: `check` names it and exits 65 for an error, 0 for only
/// warnings; after the fix, the unit (and any unit it requires) has no findings and `check`
/// exits 0.
fn run(make: Make) {
    let h = Host::new();
    let dir = h.units_dir("units");
    let b = make(&h, &dir);
    write_units(&dir, &b.files);

    let r = h.check(&dir);
    r.assert_findings(b.unit, &b.expect);
    for (other, _) in &b.files {
        if *other != b.unit {
            r.assert_clean(other);
        }
    }
    let want = if b.has_error() { EXIT_PREFLIGHT } else { 0 };
    assert_eq!(r.code, Some(want), "{r}");

    (b.fix)(&h);
    let r = h.check(&dir);
    for (unit, _) in &b.files {
        r.assert_clean(unit);
    }
    assert!(r.blocks().is_empty(), "{r}");
    assert_eq!(r.code, Some(0), "{r}");
}

#[test]
fn versioned_cellar_node_is_a_warning_until_the_opt_link_is_used() {
    run(cellar_pinned);
}

#[test]
fn cellar_node_removed_by_brew_upgrade_blocks_the_start() {
    run(cellar_removed);
}

#[test]
fn homebrew_node_running_the_nvm_entry_is_a_mixed_install() {
    run(mixed_roots);
}

#[test]
fn entry_installed_into_the_node_keg_is_outside_the_npm_prefix() {
    run(keg_install);
}

#[test]
fn custom_npm_prefix_from_the_env_file_home_moves_the_prefix() {
    run(custom_prefix);
}

#[test]
fn env_script_under_launchds_default_path_finds_no_interpreter() {
    run(env_script_launchd);
}

#[test]
fn bare_node_as_program_is_not_absolute() {
    run(bare_node);
}

#[test]
#[ignore = "needs root"]
fn root_world_writable_launch_daemon_plist_is_refused() {
    support::needs_root("a root-owned LaunchDaemon plist");
    run(daemon_writable);
}

#[test]
#[ignore = "needs root"]
fn root_launch_daemon_plist_owned_by_nobody_is_refused() {
    support::needs_root("chown to 65534");
    run(daemon_owner);
}

#[test]
fn plist_label_differing_from_the_units_is_a_mismatch() {
    run(label_mismatch);
}

#[test]
fn missing_working_directory_blocks_the_start() {
    run(workdir_missing);
}

#[test]
fn node_and_entry_from_nvm_are_version_manager_paths() {
    run(nvm_node);
}

#[test]
fn nvm_on_the_plists_path_is_a_version_manager_path() {
    run(nvm_path);
}

#[test]
fn a_unit_with_requirements_must_not_keep_runatload_or_keepalive() {
    run(takeover);
}

#[test]
fn exec_unit_naming_a_removed_keg_blocks_the_start() {
    run(exec_removed);
}

#[test]
fn exec_unit_running_an_env_script_finds_no_interpreter() {
    run(exec_env_script);
}

/// All the breakages on one host, in one units directory, as an admin who upgraded a busy Mac
/// would meet them: each finding under its own unit, the closing line counting every error;
/// then every fix applied, and `check` is clean.
#[test]
fn all_breakages_on_one_host() {
    let h = Host::new();
    // The host after `brew upgrade node`; the cases that pin a keg pin the current one.
    h.brew_upgrade_node();
    let dir = h.units_dir("units");
    let cases: Vec<Breakage> = breakages().into_iter().map(|m| m(&h, &dir)).collect();
    let files: Vec<(&str, String)> = cases.iter().flat_map(|b| b.files.clone()).collect();
    write_units(&dir, &files);

    let r = h.check(&dir);
    for b in &cases {
        r.assert_findings(b.unit, &b.expect);
    }
    let errors: usize = cases
        .iter()
        .flat_map(|b| &b.expect)
        .filter(|e| e.severity == "error")
        .count();
    assert!(errors > 0);
    assert_eq!(
        r.blocks().len(),
        cases.iter().map(|b| b.expect.len()).sum::<usize>(),
        "no other findings:\n{r}"
    );
    r.assert_clean("ollama");
    assert_eq!(r.code, Some(EXIT_PREFLIGHT), "{r}");
    let s = if errors == 1 {
        "error blocks"
    } else {
        "errors block"
    };
    assert!(
        r.stdout
            .contains(&format!("error: {errors} preflight {s} a start")),
        "{r}"
    );

    for b in &cases {
        (b.fix)(&h);
    }
    let r = h.check(&dir);
    assert!(r.blocks().is_empty(), "every fix applied:\n{r}");
    assert_eq!(r.code, Some(0), "{r}");
    let units = files.len();
    let exec = files.iter().filter(|(_, t)| t.contains("[exec]")).count();
    let ok = format!("ok: {units} units ({exec} exec, {} launchd)", units - exec);
    assert!(r.stdout.lines().any(|l| l.starts_with(&ok)), "{ok:?}:\n{r}");
}

// ---------------------------------------------------------------------------------------
// Layouts, modes and takeover details

/// OpenClaw's two env-wrapper layouts (openclaw/openclaw src/daemon/launchd-plist.ts, docs/platforms/mac/bundled-gateway.md): `/bin/sh <wrapper> <env>
/// <node> <entry>` (XML) and the older `<wrapper> <env> <node> <entry>` (binary). Healthy, both
/// are clean. Broken the same way (node in the keg, entry in nvm), the findings name node at
/// ProgramArguments[3] and [2] and the entry at [4] and [3]: node and entry were found by
/// position, not taken from the wrapper or the env file.
#[test]
fn openclaw_wrapper_layouts_are_parsed_by_position() {
    let h = Host::new();
    let dir = h.units_dir("units");
    let write_both = |node: &Path, entry: &Path| {
        let gw = h.openclaw_agent(
            "ai.openclaw.gateway",
            &h.sh_argv(&h.home, "ai.openclaw.gateway", node, entry),
            Fmt::Xml,
        );
        let legacy = h.openclaw_agent(
            "ai.openclaw.legacy",
            &h.wrapper_first_argv("ai.openclaw.legacy", node, entry),
            Fmt::Binary,
        );
        (gw, legacy)
    };
    let (gw, legacy) = write_both(&h.opt_node(), &h.entry());
    write_units(
        &dir,
        &[
            (
                "gateway",
                launchd_toml("ai.openclaw.gateway", &gw, &agent_domain(), &[]),
            ),
            (
                "legacy",
                launchd_toml("ai.openclaw.legacy", &legacy, &agent_domain(), &[]),
            ),
        ],
    );
    let r = h.check(&dir);
    assert!(r.blocks().is_empty(), "both layouts are clean:\n{r}");
    assert_eq!(r.code, Some(0), "{r}");
    assert!(
        r.stdout.starts_with("ok: 2 units (0 exec, 2 launchd)"),
        "{r}"
    );

    write_both(&h.keg_node(), &h.nvm_entry());
    let r = h.check(&dir);
    for (unit, n, e) in [("gateway", 3, 4), ("legacy", 2, 3)] {
        r.assert_findings(
            unit,
            &[
                warning("CELLAR_VERSIONED_PATH", Some(&h.keg_node()))
                    .says(format!("node {} (ProgramArguments[{n}]", d(&h.keg_node()))),
                error("MIXED_INSTALL_ROOTS", Some(&h.nvm_entry()))
                    .says(format!(
                        "(ProgramArguments[{n}]) is from the Homebrew prefix"
                    ))
                    .says(format!("(ProgramArguments[{e}]) is from nvm")),
                warning("VERSION_MANAGER_PATH", Some(&h.nvm_entry()))
                    .says(format!("ProgramArguments[{e}]")),
            ],
        );
    }
    assert_eq!(r.code, Some(EXIT_PREFLIGHT), "{r}");
}

/// KeepAlive as a dictionary implies RunAtLoad too (launchd.plist(5), https://keith.github.io/xcode-man-pages/launchd.plist.5.html): it is named with its keys.
#[test]
fn takeover_keepalive_dictionary_is_named_with_its_keys() {
    let h = Host::new();
    let dir = h.units_dir("units");
    let label = "ai.openclaw.gateway";
    let plist = h.agent_plist(&h.home, label);
    let argv = h.sh_argv(&h.home, label, &h.opt_node(), &h.entry());
    let mut dict = h.openclaw_plist(&h.home, label, &argv);
    dict.insert("RunAtLoad".into(), Value::Boolean(false));
    dict.insert(
        "KeepAlive".into(),
        Value::Dictionary(Dictionary::from_iter([
            ("SuccessfulExit", Value::Boolean(false)),
            ("Crashed", Value::Boolean(true)),
        ])),
    );
    write_plist(&plist, &dict, Fmt::Binary);
    write_units(
        &dir,
        &[
            (
                "gateway",
                launchd_toml(label, &plist, &agent_domain(), &["ollama"]),
            ),
            ("ollama", h.ollama_unit()),
        ],
    );
    let r = h.check(&dir);
    r.assert_findings(
        "gateway",
        &[warning("TAKEOVER_KEEPALIVE", Some(&plist))
            .says("sets KeepAlive = {SuccessfulExit, Crashed}")
            .fixes("removes KeepAlive")],
    );
    r.assert_clean("ollama");
    assert_eq!(r.code, Some(0), "warnings only:\n{r}");

    dict.remove("KeepAlive");
    write_plist(&plist, &dict, Fmt::Binary);
    let r = h.check(&dir);
    assert!(r.blocks().is_empty(), "{r}");
}

/// The mode rule is `mode & 0o022 == 0` for every plist, LaunchAgents included: group-writable
/// and world-writable are refused, 0600 loads as 0644 does (launchd.plist(5), https://keith.github.io/xcode-man-pages/launchd.plist.5.html).
#[test]
fn plist_mode_rule_refuses_group_or_world_write_and_accepts_0600() {
    let h = Host::new();
    let dir = h.units_dir("units");
    let label = "ai.openclaw.gateway";
    let plist = h.openclaw_agent(
        label,
        &h.sh_argv(&h.home, label, &h.opt_node(), &h.entry()),
        Fmt::Xml,
    );
    write_units(
        &dir,
        &[("gateway", launchd_toml(label, &plist, &agent_domain(), &[]))],
    );
    for mode in [0o664, 0o646, 0o622] {
        chmod(&plist, mode);
        let r = h.check(&dir);
        r.assert_findings(
            "gateway",
            &[error("PLIST_BAD_OWNERSHIP", Some(&plist))
                .says(format!(
                    "its mode {mode:04o} lets its group or others write it"
                ))
                .fixes(format!("sudo chmod 644 {}", d(&plist)))],
        );
        assert_eq!(r.code, Some(EXIT_PREFLIGHT), "{r}");
    }
    for mode in [0o600, 0o644] {
        chmod(&plist, mode);
        let r = h.check(&dir);
        assert!(r.blocks().is_empty(), "mode {mode:04o}:\n{r}");
    }
}

/// `openclaw.mjs` as it really is, `#!/usr/bin/env node`, under launchd's default PATH. What
/// happens depends on this machine's `/usr/bin:/bin:/usr/sbin:/sbin`, which the binary reads:
/// with no node there, env fails (openclaw#74944); with one (many Linux hosts have
/// `/usr/bin/node`), the job runs that node, the host's own install, against Homebrew's
/// package, which is a mixed install. Either way the start is blocked.
#[test]
fn env_node_script_depends_on_the_node_on_this_hosts_default_path() {
    let h = Host::new();
    let dir = h.units_dir("units");
    let label = "ai.openclaw.update";
    let script = h.brew.join("bin/openclaw");
    let plist = h.agent_plist(&h.home, label);
    let dict = Dictionary::from_iter([
        ("Label", s(label)),
        (
            "ProgramArguments",
            argv_value(&[sp(&script), "update".into()]),
        ),
        (
            "EnvironmentVariables",
            Value::Dictionary(Dictionary::from_iter([("HOME", s(sp(&h.home)))])),
        ),
    ]);
    write_plist(&plist, &dict, Fmt::Xml);
    write_units(
        &dir,
        &[("update", launchd_toml(label, &plist, &agent_domain(), &[]))],
    );
    let host_node = LAUNCHD_DEFAULT_PATH
        .split(':')
        .map(|dir| Path::new(dir).join("node"))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        });
    let r = h.check(&dir);
    match &host_node {
        None => r.assert_findings(
            "update",
            &[error("SHEBANG_INTERPRETER_NOT_ON_PATH", Some(&script))
                .says("#!/usr/bin/env node")
                .says("env: node: No such file or directory")],
        ),
        Some(node) => {
            eprintln!("this host has {} on launchd's default PATH", node.display());
            let blocks = r.of("update");
            assert!(
                blocks
                    .iter()
                    .all(|b| b.code != "SHEBANG_INTERPRETER_NOT_ON_PATH"),
                "the host's node is found:\n{r}"
            );
            let mixed = blocks
                .iter()
                .find(|b| b.code == "MIXED_INSTALL_ROOTS")
                .unwrap_or_else(|| panic!("the host's node with Homebrew's package:\n{r}"));
            assert_eq!(mixed.path.as_deref(), Some(d(&script).as_str()), "{r}");
            assert!(
                mixed
                    .message
                    .contains(&format!("node {} (the #! line)", node.display())),
                "{r}"
            );
        }
    }
    assert_eq!(r.code, Some(EXIT_PREFLIGHT), "{r}");
}

// ---------------------------------------------------------------------------------------
// Drift

/// Fingerprints stored with the library when the units were ready (what the daemon does),
/// then `npm i -g openclaw@2026.10.1`, `brew upgrade node` (26.0.0; the 25.5.0 keg removed)
/// and `openclaw gateway install --force` rewriting the gateway's plist. `check` says what
/// drifted, one line per change: for the gateway, which runs node through the stable opt link,
/// the new package, the new node behind the same path, its new version, the edited plist; for
/// a second profile pinned to the old keg, that its node no longer exists, next to the
/// PLIST_PATH_MISSING error. Once that plist is repointed, the drift says where node moved;
/// once new fingerprints are stored, there is none.
#[test]
fn drift_since_the_last_good_run_after_an_upgrade() {
    let h = Host::new();
    let dir = h.units_dir("units");
    let gw_label = "ai.openclaw.gateway";
    let gw_argv = h.sh_argv(&h.home, gw_label, &h.opt_node(), &h.entry());
    let gw = h.openclaw_agent(gw_label, &gw_argv, Fmt::Xml);
    let work_label = "ai.openclaw.work";
    let old_node = h.keg_node();
    let work = h.openclaw_agent(
        work_label,
        &h.plain_argv(&sp(&old_node), &h.entry()),
        Fmt::Xml,
    );
    write_units(
        &dir,
        &[
            ("gateway", launchd_toml(gw_label, &gw, &agent_domain(), &[])),
            (
                "work",
                launchd_toml(work_label, &work, &agent_domain(), &[]),
            ),
        ],
    );

    // Before: the pinned profile warns, nothing drifted (no fingerprints yet).
    let r = h.check(&dir);
    r.assert_clean("gateway");
    r.assert_findings("work", &[warning("CELLAR_VERSIONED_PATH", Some(&old_node))]);
    assert!(!r.stdout.contains("drift"), "{r}");
    assert_eq!(r.code, Some(0), "{r}");

    // The units became ready: the daemon stores what they ran.
    let store_all = || -> Vec<Fingerprint> {
        let compiled = launchgraph::compile::compile_dir(&dir).unwrap();
        let ctx = PreflightContext::host();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        compiled
            .units
            .iter()
            .map(|u| {
                let fp = rt.block_on(fingerprint::take(u, &ctx));
                fingerprint::store(&h.state_dir(), &fp).unwrap();
                fp
            })
            .collect()
    };
    let before = store_all();
    let (gw_fp, work_fp) = (&before[0], &before[1]);
    assert_eq!(
        (gw_fp.unit.as_str(), work_fp.unit.as_str()),
        ("gateway", "work")
    );
    assert_eq!(gw_fp.package, Some(("openclaw".into(), "2026.9.6".into())));
    assert_eq!(gw_fp.node_version.as_deref(), Some("v25.5.0"));
    assert_eq!(work_fp.node_version.as_deref(), Some("v25.5.0"));
    assert!(
        h.state_dir().join("fingerprints/gateway.json").is_file()
            && h.state_dir().join("fingerprints/work.json").is_file()
    );
    let r = h.check(&dir);
    assert!(!r.stdout.contains("drift"), "nothing changed yet:\n{r}");

    // The upgrade.
    h.npm_upgrade_openclaw();
    h.brew_upgrade_node();
    let mut dict = read_plist(&gw);
    set_env(&mut dict, "OPENCLAW_SERVICE_VERSION", Some("2026.10.1"));
    write_plist(&gw, &dict, Fmt::Xml);

    let sha = |fp: &Fingerprint, role: Role| fp.file(role).unwrap().sha256.clone().unwrap();
    let entry_line = format!(
        "entry {} changed (sha256 {} -> {})",
        d(&h.entry()),
        short(&sha(gw_fp, Role::Entry)),
        short(&sha256_hex(&h.entry()))
    );
    let new_real = h.keg_node().canonicalize().unwrap();
    let r = h.check(&dir);
    assert_eq!(
        r.drift("gateway"),
        [
            "openclaw 2026.9.6 -> 2026.10.1".to_owned(),
            format!(
                "plist ai.openclaw.gateway.plist changed (sha256 {} -> {})",
                short(&sha(gw_fp, Role::Plist)),
                short(&sha256_hex(&gw))
            ),
            format!("node {} now resolves to {}", d(&h.opt_node()), d(&new_real)),
            "node v25.5.0 -> v26.0.0".to_owned(),
            entry_line.clone(),
        ],
        "{r}"
    );
    assert_eq!(
        r.drift("work"),
        [
            "openclaw 2026.9.6 -> 2026.10.1".to_owned(),
            format!("node {} no longer exists", d(&old_node)),
            entry_line.clone(),
        ],
        "{r}"
    );
    r.assert_clean("gateway");
    r.assert_findings(
        "work",
        &[
            error("PLIST_PATH_MISSING", Some(&old_node)).fixes(d(&h.opt_node())),
            warning("CELLAR_VERSIONED_PATH", Some(&old_node)),
        ],
    );
    assert_eq!(r.code, Some(EXIT_PREFLIGHT), "{r}");

    // The fix: the pinned profile's plist repointed at the opt link.
    h.openclaw_agent(
        work_label,
        &h.plain_argv(&sp(&h.opt_node()), &h.entry()),
        Fmt::Xml,
    );
    let r = h.check(&dir);
    assert!(r.blocks().is_empty(), "{r}");
    assert_eq!(r.code, Some(0), "{r}");
    assert_eq!(
        r.drift("work"),
        [
            "openclaw 2026.9.6 -> 2026.10.1".to_owned(),
            format!(
                "plist ai.openclaw.work.plist changed (sha256 {} -> {})",
                short(&sha(work_fp, Role::Plist)),
                short(&sha256_hex(&work))
            ),
            format!("node {} -> {}", d(&old_node), d(&h.opt_node())),
            "node v25.5.0 -> v26.0.0".to_owned(),
            entry_line,
        ],
        "{r}"
    );

    // Ready again on the new versions: the new fingerprints are the last good run.
    store_all();
    let r = h.check(&dir);
    assert!(!r.stdout.contains("drift"), "{r}");
    assert_eq!(r.code, Some(0), "{r}");
}

// ---------------------------------------------------------------------------------------
// Known problems

/// A relative path after ProgramArguments[0] is an error, as the reference asks ("check that
/// both are absolute"), but its message explains it as launchd's lookup of argv[0] ("launchd
/// resolves a relative program on its standard path … not on the plist's PATH"), which is
/// wrong for these paths. launchd never looks at an entry script: node resolves
/// `dist/index.js` against the working directory (here WorkingDirectory is the package, so
/// node would find it). Nor does launchd look up node after OpenClaw's wrapper: the wrapper's
/// `exec "$@"` searches the PATH the job has, the plist's and the env file's.
#[test]
fn relative_paths_after_the_program_are_not_explained_as_launchds_lookup() {
    let h = Host::new();
    let dir = h.units_dir("units");
    let label = "ai.openclaw.gateway";
    let argv = h.plain_argv(&sp(&h.opt_node()), Path::new("dist/index.js"));
    let mut dict = h.openclaw_plist(&h.home, label, &argv);
    dict.insert(
        "WorkingDirectory".into(),
        s(sp(&h.node_modules().join("openclaw"))),
    );
    let plist = h.agent_plist(&h.home, label);
    write_plist(&plist, &dict, Fmt::Xml);
    let sh_label = "ai.openclaw.sh";
    let sh = h.openclaw_agent(
        sh_label,
        &h.sh_argv(&h.home, sh_label, Path::new("node"), &h.entry()),
        Fmt::Xml,
    );
    write_units(
        &dir,
        &[
            ("gateway", launchd_toml(label, &plist, &agent_domain(), &[])),
            ("sh", launchd_toml(sh_label, &sh, &agent_domain(), &[])),
        ],
    );
    let r = h.check(&dir);
    r.assert_findings(
        "gateway",
        &[error("PROGRAM_NOT_ABSOLUTE", None)
            .says("entry script \"dist/index.js\" (ProgramArguments[1]")
            .fixes("ProgramArguments[1]")],
    );
    r.assert_findings(
        "sh",
        &[error("PROGRAM_NOT_ABSOLUTE", None)
            .says("node \"node\" (ProgramArguments[3]")
            .fixes("ProgramArguments[3]")],
    );
    for unit in ["gateway", "sh"] {
        let b = &r.of(unit)[0];
        assert!(
            !b.message.contains("launchd resolves a relative program"),
            "{unit}: launchd does not resolve this argument:\n{}",
            b.message
        );
    }
}
