//! Preflight against fixture installs built in a temporary directory: a Homebrew prefix with
//! node in its Cellar and OpenClaw under `lib/node_modules`, an nvm tree, npmrc files,
//! OpenClaw's LaunchAgent layouts and Homebrew's Ollama service as XML and binary plists.
//! For every finding code, one test produces it and then applies the fix and sees it cleared.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use launchgraph::preflight::{
    Accounts, Finding, FindingCode, LAUNCHD_DEFAULT_PATH, PreflightContext, Severity, UserEntry,
    blocks_start, preflight, watched_paths_with,
};
use launchgraph::unit::{
    Domain, ExecSpec, Label, LaunchdSpec, PreflightSpec, RestartSpec, Runner, Signal, Unit,
    UnitName,
};
use plist::{Dictionary, Value};

mod support;
use support::host::{FakeHost, chmod, fake_program as fake_node, relink as symlink, write};

// ---------------------------------------------------------------------------------------
// Fixture

/// The user `u`: uid 501 when the tests run as root (its files are chowned to it), else
/// whoever runs them, so the files it must own are its own.
fn uid() -> u32 {
    if is_root() {
        501
    } else {
        nix::unistd::geteuid().as_raw()
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() && !path.is_symlink() {
        for e in std::fs::read_dir(path).unwrap() {
            chown_tree(&e.unwrap().path(), uid, gid);
        }
    }
}

struct FakeAccounts(HashMap<String, UserEntry>);

impl Accounts for FakeAccounts {
    fn by_name(&self, name: &str) -> Option<UserEntry> {
        self.0.get(name).cloned()
    }
    fn by_uid(&self, uid: u32) -> Option<UserEntry> {
        self.0.values().find(|u| u.uid == uid).cloned()
    }
}

fn s(p: impl AsRef<Path>) -> Value {
    Value::String(p.as_ref().to_string_lossy().into_owned())
}

fn args(items: &[&Path]) -> Value {
    Value::Array(items.iter().map(s).collect())
}

fn words(items: &[&str]) -> Vec<Value> {
    items.iter().map(|w| Value::String((*w).into())).collect()
}

/// A host: a Homebrew prefix, a user `u` (uid 501) with an nvm tree and OpenClaw's service
/// files, and a fake system root whose `/usr/bin` has no node, used as launchd's default PATH
/// so the tests do not depend on this machine's /usr/bin.
struct Fx {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    brew: PathBuf,
    home: PathBuf,
    ctx: PreflightContext,
}

impl Fx {
    fn new() -> Fx {
        let host = FakeHost::new("home/u");
        let (root, brew, home) = (host.root.clone(), host.brew.clone(), host.home.clone());

        // OpenClaw's generated service files.
        let se = home.join(".openclaw/service-env");
        write(
            &se.join("ai.openclaw.gateway-env-wrapper.sh"),
            &format!(
                "#!/bin/sh\nset -a\n. \"$1\"\nset +a\nshift\nexec \"$@\"\n# {}\n",
                se.display()
            ),
            0o700,
        );
        write(
            &se.join("ai.openclaw.gateway.env"),
            &format!(
                "export HOME='{}'\nOPENCLAW_GATEWAY_PORT=18789\n",
                home.display()
            ),
            0o600,
        );
        std::fs::create_dir_all(home.join("Library/Logs/openclaw")).unwrap();
        std::fs::create_dir_all(home.join("Library/LaunchAgents")).unwrap();
        std::fs::create_dir_all(root.join("Library/LaunchDaemons")).unwrap();

        // A system root without node.
        for d in ["usr/bin", "bin", "usr/sbin", "sbin"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let launchd_path = ["usr/bin", "bin", "usr/sbin", "sbin"]
            .iter()
            .map(|d| root.join(d).display().to_string())
            .collect::<Vec<_>>()
            .join(":");

        // The user's files are the user's, as OpenClaw's installer leaves them.
        if is_root() {
            chown_tree(&home, uid(), 20);
        }

        let users = HashMap::from([
            (
                "u".to_owned(),
                UserEntry {
                    name: "u".into(),
                    uid: uid(),
                    gid: if is_root() {
                        20
                    } else {
                        nix::unistd::getegid().as_raw()
                    },
                    home: home.clone(),
                },
            ),
            (
                "root".to_owned(),
                UserEntry {
                    name: "root".into(),
                    uid: 0,
                    gid: 0,
                    home: root.join("var/root"),
                },
            ),
        ]);
        let ctx = PreflightContext {
            launchd_path,
            euid: 0,
            accounts: Arc::new(FakeAccounts(users)),
        };
        Fx {
            _tmp: host.tmp,
            root,
            brew,
            home,
            ctx,
        }
    }

    fn cellar_node(&self) -> PathBuf {
        self.brew.join("Cellar/node/25.5.0/bin/node")
    }
    fn opt_node(&self) -> PathBuf {
        self.brew.join("opt/node/bin/node")
    }
    fn brew_entry(&self) -> PathBuf {
        self.brew.join("lib/node_modules/openclaw/dist/index.js")
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
    fn wrapper(&self) -> PathBuf {
        self.home
            .join(".openclaw/service-env/ai.openclaw.gateway-env-wrapper.sh")
    }
    fn env_file(&self) -> PathBuf {
        self.home
            .join(".openclaw/service-env/ai.openclaw.gateway.env")
    }
    fn gateway_plist(&self) -> PathBuf {
        self.home
            .join("Library/LaunchAgents/ai.openclaw.gateway.plist")
    }
    fn ollama_plist(&self) -> PathBuf {
        self.root
            .join("Library/LaunchDaemons/homebrew.mxcl.ollama.plist")
    }

    /// The current OpenClaw LaunchAgent: `/bin/sh <wrapper> <env> <node> <entry> gateway
    /// --port 18789`, RunAtLoad and KeepAlive true, logs in ~/Library/Logs/openclaw.
    fn gateway(&self, node: &Path, entry: &Path) -> Dictionary {
        let mut argv = vec![
            s("/bin/sh"),
            s(self.wrapper()),
            s(self.env_file()),
            s(node),
            s(entry),
        ];
        argv.extend(words(&["gateway", "--port", "18789"]));
        let log = self.home.join("Library/Logs/openclaw/gateway.log");
        Dictionary::from_iter([
            ("Label", s("ai.openclaw.gateway")),
            ("ProgramArguments", Value::Array(argv)),
            ("RunAtLoad", Value::Boolean(true)),
            ("KeepAlive", Value::Boolean(true)),
            ("ThrottleInterval", Value::Integer(10.into())),
            ("Umask", Value::Integer(63.into())),
            ("ProcessType", s("Interactive")),
            ("StandardInPath", s("/dev/null")),
            ("StandardOutPath", s(&log)),
            ("StandardErrorPath", s(&log)),
            (
                "EnvironmentVariables",
                Value::Dictionary(Dictionary::from_iter([
                    ("HOME", s(&self.home)),
                    (
                        "PATH",
                        s(format!(
                            "{}:{}",
                            self.brew.join("bin").display(),
                            self.ctx.launchd_path
                        )),
                    ),
                ])),
            ),
        ])
    }

    /// Homebrew's rendering of the Ollama formula's `service do` block, with HOME in its
    /// environment, as an admin fixes `HOME_MISSING` (see
    /// `homebrew_ollama_as_a_root_daemon_without_a_user_has_no_home`).
    fn ollama(&self) -> Dictionary {
        let log = self.brew.join("var/log/ollama.log");
        Dictionary::from_iter([
            ("Label", s("homebrew.mxcl.ollama")),
            (
                "ProgramArguments",
                Value::Array(vec![s(self.brew.join("opt/ollama/bin/ollama")), s("serve")]),
            ),
            ("RunAtLoad", Value::Boolean(true)),
            ("KeepAlive", Value::Boolean(true)),
            ("WorkingDirectory", s(self.brew.join("var"))),
            ("StandardOutPath", s(&log)),
            ("StandardErrorPath", s(&log)),
            (
                "EnvironmentVariables",
                Value::Dictionary(Dictionary::from_iter([
                    ("HOME", s(&self.home)),
                    ("OLLAMA_FLASH_ATTENTION", s("1")),
                    ("OLLAMA_KV_CACHE_TYPE", s("q8_0")),
                ])),
            ),
            (
                "LimitLoadToSessionType",
                Value::Array(words(&[
                    "Aqua",
                    "Background",
                    "LoginWindow",
                    "StandardIO",
                    "System",
                ])),
            ),
        ])
    }

    fn check(&self, unit: &Unit) -> Vec<Finding> {
        let mut found = preflight(unit, &self.ctx);
        // The context says launchgraph runs as root, so jobs without a user run as root; a
        // fixture that root does not own is then WRITABLE_BY_NON_ROOT everywhere. Only root
        // can make it root's: the tests of that code run as root, or call preflight itself.
        if !is_root() {
            found.retain(|f| f.code != FindingCode::WritableByNonRoot);
        }
        found
    }
}

fn write_plist(path: &Path, dict: &Dictionary, binary: bool) {
    let v = Value::Dictionary(dict.clone());
    if binary {
        v.to_file_binary(path).unwrap();
    } else {
        v.to_file_xml(path).unwrap();
    }
    chmod(path, 0o644);
}

fn unit(name: &str, requires: &[&str], runner: Runner) -> Unit {
    Unit {
        name: UnitName::parse(name).unwrap(),
        file: PathBuf::from(format!("/etc/launchgraph/units/{name}.toml")),
        description: None,
        requires: requires
            .iter()
            .map(|r| UnitName::parse(r).unwrap())
            .collect(),
        runner,
        ready: None,
        alive: None,
        restart: RestartSpec::default(),
        preflight: PreflightSpec::default(),
        guards: Default::default(),
    }
}

fn launchd(name: &str, requires: &[&str], label: &str, plist: &Path, domain: Domain) -> Unit {
    unit(
        name,
        requires,
        Runner::Launchd(LaunchdSpec {
            label: Label(label.into()),
            plist: plist.to_path_buf(),
            domain,
        }),
    )
}

fn exec(name: &str, command: &[&Path], env: &[(&str, &str)]) -> Unit {
    unit(
        name,
        &[],
        Runner::Exec(ExecSpec {
            command: command
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            working_directory: PathBuf::from("/"),
            user: None,
            group: None,
            stop_signal: Signal::parse("SIGTERM").unwrap(),
            stop_timeout: Duration::from_secs(10),
            stdout: None,
            stderr: None,
            log_max_bytes: 10 << 20,
            log_keep: 3,
        }),
    )
}

/// The gateway LaunchAgent unit (gui/501) for `plist`.
fn gateway_unit(plist: &Path) -> Unit {
    launchd(
        "gateway",
        &[],
        "ai.openclaw.gateway",
        plist,
        Domain::Gui(uid()),
    )
}

/// The one finding with `code`; fails listing all findings otherwise.
fn find(findings: &[Finding], code: FindingCode) -> Finding {
    let hits: Vec<&Finding> = findings.iter().filter(|f| f.code == code).collect();
    assert_eq!(
        hits.len(),
        1,
        "one {code} finding expected, got {findings:#?}"
    );
    hits[0].clone()
}

fn lacks(findings: &[Finding], code: FindingCode) {
    assert!(
        findings.iter().all(|f| f.code != code),
        "no {code} finding expected, got {findings:#?}"
    );
}

fn assert_finding(f: &Finding, severity: Severity, path: Option<&Path>) {
    assert_eq!(f.severity, severity, "{f:#?}");
    assert_eq!(f.path.as_deref(), path, "{f:#?}");
    assert!(!f.message.is_empty() && !f.fix.is_empty(), "{f:#?}");
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

// ---------------------------------------------------------------------------------------
// Healthy layouts

#[test]
fn current_openclaw_layout_with_homebrew_node_is_clean() {
    let fx = Fx::new();
    write_plist(
        &fx.gateway_plist(),
        &fx.gateway(&fx.opt_node(), &fx.brew_entry()),
        false,
    );
    let findings = fx.check(&gateway_unit(&fx.gateway_plist()));
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn older_wrapper_first_layout_in_a_binary_plist_is_clean() {
    let fx = Fx::new();
    let mut d = fx.gateway(&fx.opt_node(), &fx.brew_entry());
    d.insert(
        "ProgramArguments".into(),
        args(&[
            &fx.wrapper(),
            &fx.env_file(),
            &fx.opt_node(),
            &fx.brew_entry(),
        ]),
    );
    write_plist(&fx.gateway_plist(), &d, true);
    let findings = fx.check(&gateway_unit(&fx.gateway_plist()));
    assert!(findings.is_empty(), "{findings:#?}");
}

/// `sudo brew services start ollama` writes a LaunchDaemon without UserName or HOME: launchd
/// gives it no HOME, and `ollama serve` exits before it listens. Preflight says so, with
/// Homebrew's own fix, instead of assuming root's home.
#[test]
fn homebrew_ollama_as_a_root_daemon_without_a_user_has_no_home() {
    let fx = Fx::new();
    let mut dict = fx.ollama();
    if let Some(Value::Dictionary(env)) = dict.get_mut("EnvironmentVariables") {
        env.remove("HOME");
    }
    write_plist(&fx.ollama_plist(), &dict, false);
    let u = launchd(
        "ollama",
        &[],
        "homebrew.mxcl.ollama",
        &fx.ollama_plist(),
        Domain::System,
    );
    let findings = fx.check(&u);
    let codes: Vec<_> = findings.iter().map(|f| f.code).collect();
    assert_eq!(codes, [FindingCode::HomeMissing], "{findings:#?}");
    assert!(
        findings[0].fix.contains("--sudo-service-user"),
        "{findings:#?}"
    );
    // With UserName, launchd gives the job that user's HOME.
    dict.insert("UserName".into(), s("root"));
    write_plist(&fx.ollama_plist(), &dict, false);
    let findings = fx.check(&u);
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn homebrew_ollama_service_with_a_home_is_accepted() {
    let fx = Fx::new();
    write_plist(&fx.ollama_plist(), &fx.ollama(), false);
    let u = launchd(
        "ollama",
        &[],
        "homebrew.mxcl.ollama",
        &fx.ollama_plist(),
        Domain::System,
    );
    let findings = fx.check(&u);
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn the_host_context_uses_launchds_default_path() {
    let ctx = PreflightContext::host();
    assert_eq!(ctx.launchd_path, LAUNCHD_DEFAULT_PATH);
    assert_eq!(LAUNCHD_DEFAULT_PATH, "/usr/bin:/bin:/usr/sbin:/sbin");
}

// ---------------------------------------------------------------------------------------
// The plist file

#[test]
fn plist_unreadable_when_missing_or_garbage_then_cleared() {
    let fx = Fx::new();
    let u = gateway_unit(&fx.gateway_plist());
    let f = find(&fx.check(&u), FindingCode::PlistUnreadable);
    assert_finding(&f, Severity::Error, Some(&fx.gateway_plist()));
    assert!(f.message.contains("does not exist"), "{f:#?}");

    write(
        &fx.gateway_plist(),
        "<?xml version=\"1.0\"?><plist><dict><key>",
        0o644,
    );
    let f = find(&fx.check(&u), FindingCode::PlistUnreadable);
    assert_finding(&f, Severity::Error, Some(&fx.gateway_plist()));
    assert!(blocks_start(&fx.check(&u)));

    write_plist(
        &fx.gateway_plist(),
        &fx.gateway(&fx.opt_node(), &fx.brew_entry()),
        true,
    );
    assert!(fx.check(&u).is_empty());
}

#[test]
fn plist_label_mismatch_then_cleared() {
    let fx = Fx::new();
    let mut d = fx.gateway(&fx.opt_node(), &fx.brew_entry());
    d.insert("Label".into(), s("ai.openclaw.node"));
    write_plist(&fx.gateway_plist(), &d, false);
    let u = gateway_unit(&fx.gateway_plist());
    let f = find(&fx.check(&u), FindingCode::PlistLabelMismatch);
    assert_finding(&f, Severity::Error, Some(&fx.gateway_plist()));
    assert!(f.message.contains("ai.openclaw.node"), "{f:#?}");

    d.insert("Label".into(), s("ai.openclaw.gateway"));
    write_plist(&fx.gateway_plist(), &d, false);
    lacks(&fx.check(&u), FindingCode::PlistLabelMismatch);
}

#[test]
fn plist_no_program_then_cleared() {
    let fx = Fx::new();
    let mut d = fx.ollama();
    d.remove("ProgramArguments");
    write_plist(&fx.ollama_plist(), &d, false);
    let u = launchd(
        "ollama",
        &[],
        "homebrew.mxcl.ollama",
        &fx.ollama_plist(),
        Domain::System,
    );
    let f = find(&fx.check(&u), FindingCode::PlistNoProgram);
    assert_finding(&f, Severity::Error, Some(&fx.ollama_plist()));

    write_plist(&fx.ollama_plist(), &fx.ollama(), false);
    assert!(fx.check(&u).is_empty());
}

#[test]
fn plist_bad_mode_then_cleared() {
    let fx = Fx::new();
    write_plist(&fx.ollama_plist(), &fx.ollama(), false);
    let u = launchd(
        "ollama",
        &[],
        "homebrew.mxcl.ollama",
        &fx.ollama_plist(),
        Domain::System,
    );
    chmod(&fx.ollama_plist(), 0o666);
    let f = find(&fx.check(&u), FindingCode::PlistBadOwnership);
    assert_finding(&f, Severity::Error, Some(&fx.ollama_plist()));
    assert!(f.message.contains("0666"), "{f:#?}");
    assert!(f.fix.contains("chmod 644"), "{f:#?}");

    chmod(&fx.ollama_plist(), 0o644);
    lacks(&fx.check(&u), FindingCode::PlistBadOwnership);
}

#[test]
#[ignore = "needs root"]
fn root_launch_daemon_plist_owned_by_nobody_then_cleared() {
    support::needs_root("chown");
    let fx = Fx::new();
    write_plist(&fx.ollama_plist(), &fx.ollama(), false);
    let u = launchd(
        "ollama",
        &[],
        "homebrew.mxcl.ollama",
        &fx.ollama_plist(),
        Domain::System,
    );
    std::os::unix::fs::chown(fx.ollama_plist(), Some(65534), Some(65534)).unwrap();
    let f = find(&fx.check(&u), FindingCode::PlistBadOwnership);
    assert_finding(&f, Severity::Error, Some(&fx.ollama_plist()));
    assert!(f.message.contains("uid 65534"), "{f:#?}");
    assert!(f.fix.contains("chown root:wheel"), "{f:#?}");

    std::os::unix::fs::chown(fx.ollama_plist(), Some(0), Some(0)).unwrap();
    lacks(&fx.check(&u), FindingCode::PlistBadOwnership);
}

#[test]
#[ignore = "needs root"]
fn root_launch_agent_plist_owned_by_its_user_is_fine_by_another_is_not() {
    support::needs_root("chown");
    let fx = Fx::new();
    write_plist(
        &fx.gateway_plist(),
        &fx.gateway(&fx.opt_node(), &fx.brew_entry()),
        false,
    );
    let u = gateway_unit(&fx.gateway_plist());
    std::os::unix::fs::chown(fx.gateway_plist(), Some(uid()), Some(20)).unwrap();
    lacks(&fx.check(&u), FindingCode::PlistBadOwnership);

    std::os::unix::fs::chown(fx.gateway_plist(), Some(65534), Some(65534)).unwrap();
    let f = find(&fx.check(&u), FindingCode::PlistBadOwnership);
    assert_finding(&f, Severity::Error, Some(&fx.gateway_plist()));
    assert!(f.fix.contains(&format!("chown {}", uid())), "{f:#?}");
}

/// A plist outside the domain user's home, owned by another user, is that user's agent: in
/// `gui/<uid>` of someone else it is AGENT_DOMAIN_OTHER_USER, fixed by the owner's domain (not
/// a chown to the wrong user, so no PLIST_BAD_OWNERSHIP beside it).
#[test]
#[ignore = "needs root"]
fn root_another_user_s_agent_in_a_fixed_domain_then_cleared() {
    support::needs_root("chown");
    let fx = Fx::new();
    let plist = fx.root.join("opt/agents/ai.openclaw.gateway.plist");
    std::fs::create_dir_all(plist.parent().unwrap()).unwrap();
    write_plist(&plist, &fx.gateway(&fx.opt_node(), &fx.brew_entry()), false);
    std::os::unix::fs::chown(&plist, Some(65534), Some(65534)).unwrap();
    let findings = fx.check(&gateway_unit(&plist));
    let f = find(&findings, FindingCode::AgentDomainOtherUser);
    assert_finding(&f, Severity::Error, Some(&plist));
    assert!(f.message.contains("LaunchAgent of uid 65534"), "{f:#?}");
    assert_eq!(f.fix, "set `domain = \"gui/65534\"` in the unit file");
    lacks(&findings, FindingCode::PlistBadOwnership);

    let owners = launchd(
        "gateway",
        &[],
        "ai.openclaw.gateway",
        &plist,
        Domain::Gui(65534),
    );
    lacks(&fx.check(&owners), FindingCode::AgentDomainOtherUser);
}

#[test]
fn plist_bad_name_then_cleared() {
    let fx = Fx::new();
    let odd = fx.home.join("Library/LaunchAgents/ai.openclaw.gateway.xml");
    write_plist(&odd, &fx.gateway(&fx.opt_node(), &fx.brew_entry()), false);
    let f = find(&fx.check(&gateway_unit(&odd)), FindingCode::PlistBadName);
    assert_finding(&f, Severity::Warning, Some(&odd));
    assert!(!blocks_start(&fx.check(&gateway_unit(&odd))));

    std::fs::rename(&odd, fx.gateway_plist()).unwrap();
    assert!(fx.check(&gateway_unit(&fx.gateway_plist())).is_empty());
}

// ---------------------------------------------------------------------------------------
// Paths the job runs

#[test]
fn plist_path_missing_after_brew_upgrade_then_cleared() {
    let fx = Fx::new();
    // The plist pinned the Cellar realpath (openclaw#20583), then `brew upgrade node` moved
    // node to 26.0.0 and removed the 25.5.0 keg.
    write_plist(
        &fx.gateway_plist(),
        &fx.gateway(&fx.cellar_node(), &fx.brew_entry()),
        false,
    );
    fake_node(&fx.brew.join("Cellar/node/26.0.0/bin/node"), "v26.0.0");
    std::fs::remove_file(fx.brew.join("opt/node")).unwrap();
    symlink("../Cellar/node/26.0.0", &fx.brew.join("opt/node"));
    std::fs::remove_dir_all(fx.brew.join("Cellar/node/25.5.0")).unwrap();

    let u = gateway_unit(&fx.gateway_plist());
    let findings = fx.check(&u);
    let f = find(&findings, FindingCode::PlistPathMissing);
    assert_finding(&f, Severity::Error, Some(&fx.cellar_node()));
    assert!(f.message.contains("ProgramArguments[3]"), "{f:#?}");
    assert!(f.message.contains("does not exist"), "{f:#?}");
    assert!(
        f.fix.contains(&fx.opt_node().display().to_string()),
        "the fix names the stable opt path: {f:#?}"
    );
    find(&findings, FindingCode::CellarVersionedPath);

    write_plist(
        &fx.gateway_plist(),
        &fx.gateway(&fx.opt_node(), &fx.brew_entry()),
        false,
    );
    assert!(fx.check(&u).is_empty(), "{:#?}", fx.check(&u));
}

#[test]
fn plist_path_missing_for_the_entry_and_the_env_file() {
    let fx = Fx::new();
    let gone = fx.brew.join("lib/node_modules/openclaw/dist/entry-old.js");
    write_plist(
        &fx.gateway_plist(),
        &fx.gateway(&fx.opt_node(), &gone),
        false,
    );
    let u = gateway_unit(&fx.gateway_plist());
    let f = find(&fx.check(&u), FindingCode::PlistPathMissing);
    assert_finding(&f, Severity::Error, Some(&gone));
    assert!(f.message.contains("ProgramArguments[4]"), "{f:#?}");
    assert!(f.fix.contains("openclaw gateway install --force"), "{f:#?}");

    write_plist(
        &fx.gateway_plist(),
        &fx.gateway(&fx.opt_node(), &fx.brew_entry()),
        false,
    );
    std::fs::remove_file(fx.env_file()).unwrap();
    let f = find(&fx.check(&u), FindingCode::PlistPathMissing);
    assert_finding(&f, Severity::Error, Some(&fx.env_file()));

    write(&fx.env_file(), "OPENCLAW_GATEWAY_PORT=18789\n", 0o600);
    assert!(fx.check(&u).is_empty());
}

#[test]
fn command_path_missing_then_cleared() {
    let fx = Fx::new();
    let gone = fx.brew.join("lib/node_modules/openclaw/dist/missing.js");
    let u = exec("gateway", &[&fx.opt_node(), &gone], &[]);
    let f = find(&fx.check(&u), FindingCode::CommandPathMissing);
    assert_finding(&f, Severity::Error, Some(&gone));
    assert!(f.message.contains("command[1]"), "{f:#?}");
    lacks(&fx.check(&u), FindingCode::PlistPathMissing);

    let u = exec("gateway", &[&fx.opt_node(), &fx.brew_entry()], &[]);
    assert!(fx.check(&u).is_empty(), "{:#?}", fx.check(&u));
}

#[test]
fn program_not_absolute_then_cleared() {
    let fx = Fx::new();
    // openclaw#40659: a bare `node` in ProgramArguments[0] exits 78.
    let mut d = fx.gateway(&fx.opt_node(), &fx.brew_entry());
    d.insert(
        "ProgramArguments".into(),
        Value::Array(vec![s("node"), s(fx.brew_entry()), s("gateway")]),
    );
    write_plist(&fx.gateway_plist(), &d, false);
    let u = gateway_unit(&fx.gateway_plist());
    let f = find(&fx.check(&u), FindingCode::ProgramNotAbsolute);
    assert_finding(&f, Severity::Error, None);
    assert!(f.message.contains("ProgramArguments[0]"), "{f:#?}");

    d.insert(
        "ProgramArguments".into(),
        args(&[&fx.opt_node(), &fx.brew_entry()]),
    );
    write_plist(&fx.gateway_plist(), &d, false);
    assert!(fx.check(&u).is_empty(), "{:#?}", fx.check(&u));
}

#[test]
fn program_not_executable_then_cleared() {
    let fx = Fx::new();
    write_plist(
        &fx.gateway_plist(),
        &fx.gateway(&fx.opt_node(), &fx.brew_entry()),
        false,
    );
    let u = gateway_unit(&fx.gateway_plist());
    chmod(&fx.cellar_node(), 0o644);
    let f = find(&fx.check(&u), FindingCode::ProgramNotExecutable);
    assert_finding(&f, Severity::Error, Some(&fx.opt_node()));
    assert!(f.message.contains("node"), "{f:#?}");

    chmod(&fx.cellar_node(), 0o755);
    assert!(fx.check(&u).is_empty());
}

#[test]
fn entry_not_readable_then_cleared() {
    let fx = Fx::new();
    let dist = fx.brew.join("lib/node_modules/openclaw/dist");
    write_plist(
        &fx.gateway_plist(),
        &fx.gateway(&fx.opt_node(), &dist),
        false,
    );
    let u = gateway_unit(&fx.gateway_plist());
    let f = find(&fx.check(&u), FindingCode::EntryNotReadable);
    assert_finding(&f, Severity::Error, Some(&dist));
    assert!(f.message.contains("directory"), "{f:#?}");

    // Owned by root, mode 0600: the agent's user (uid 501) cannot read it.
    write_plist(
        &fx.gateway_plist(),
        &fx.gateway(&fx.opt_node(), &fx.brew_entry()),
        false,
    );
    chmod(&fx.brew_entry(), 0o600);
    let f = find(&fx.check(&u), FindingCode::EntryNotReadable);
    assert_finding(&f, Severity::Error, Some(&fx.brew_entry()));

    chmod(&fx.brew_entry(), 0o644);
    assert!(fx.check(&u).is_empty());
}

// ---------------------------------------------------------------------------------------
// Interpreters

#[test]
fn env_node_script_under_launchds_default_path_then_cleared() {
    let fx = Fx::new();
    // `openclaw.mjs` through its `#!/usr/bin/env node`, with no PATH in the plist: launchd's
    // default PATH has no node (openclaw#74944).
    let program = fx.brew.join("bin/openclaw");
    let mut d = fx.ollama();
    d.insert("Label".into(), s("ai.openclaw.gateway"));
    d.insert(
        "ProgramArguments".into(),
        Value::Array(vec![s(&program), s("gateway")]),
    );
    d.remove("EnvironmentVariables");
    d.remove("WorkingDirectory");
    write_plist(&fx.gateway_plist(), &d, false);
    let u = gateway_unit(&fx.gateway_plist());
    let f = find(&fx.check(&u), FindingCode::ShebangInterpreterNotOnPath);
    assert_finding(&f, Severity::Error, Some(&program));
    assert!(f.message.contains(&fx.ctx.launchd_path), "{f:#?}");
    assert!(f.message.contains("launchd's default"), "{f:#?}");
    assert!(f.message.contains("127"), "{f:#?}");

    // Fix: a PATH with Homebrew's bin.
    let path = format!("{}:{}", fx.brew.join("bin").display(), fx.ctx.launchd_path);
    d.insert(
        "EnvironmentVariables".into(),
        Value::Dictionary(Dictionary::from_iter([("PATH", s(&path))])),
    );
    write_plist(&fx.gateway_plist(), &d, false);
    let findings = fx.check(&u);
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn env_node_script_in_an_exec_unit_then_cleared() {
    let fx = Fx::new();
    let program = fx.brew.join("lib/node_modules/openclaw/openclaw.mjs");
    let u = exec("gateway", &[&program], &[("PATH", &fx.ctx.launchd_path)]);
    let f = find(&fx.check(&u), FindingCode::ShebangInterpreterNotOnPath);
    assert_finding(&f, Severity::Error, Some(&program));
    assert!(f.message.contains("the unit's env"), "{f:#?}");

    // Fix: node run directly, no PATH lookup.
    let u = exec(
        "gateway",
        &[&fx.opt_node(), &program],
        &[("PATH", &fx.ctx.launchd_path)],
    );
    assert!(fx.check(&u).is_empty(), "{:#?}", fx.check(&u));
}

#[test]
fn shebang_interpreter_missing_then_cleared() {
    let fx = Fx::new();
    let script = fx.root.join("usr/local/libexec/report");
    write(&script, "#!/opt/missing/bin/python3\nprint('x')\n", 0o755);
    let u = exec("report", &[&script], &[]);
    let f = find(&fx.check(&u), FindingCode::ShebangInterpreterMissing);
    assert_finding(
        &f,
        Severity::Error,
        Some(Path::new("/opt/missing/bin/python3")),
    );

    write(&script, "#!/bin/sh\necho x\n", 0o755);
    assert!(fx.check(&u).is_empty());
}

// ---------------------------------------------------------------------------------------
// Installs

#[test]
fn cellar_versioned_path_then_cleared() {
    let fx = Fx::new();
    write_plist(
        &fx.gateway_plist(),
        &fx.gateway(&fx.cellar_node(), &fx.brew_entry()),
        false,
    );
    let u = gateway_unit(&fx.gateway_plist());
    let findings = fx.check(&u);
    let f = find(&findings, FindingCode::CellarVersionedPath);
    assert_finding(&f, Severity::Warning, Some(&fx.cellar_node()));
    assert!(
        f.fix.contains(&fx.opt_node().display().to_string()),
        "{f:#?}"
    );
    assert!(!blocks_start(&findings), "{findings:#?}");

    write_plist(
        &fx.gateway_plist(),
        &fx.gateway(&fx.opt_node(), &fx.brew_entry()),
        false,
    );
    lacks(&fx.check(&u), FindingCode::CellarVersionedPath);
}

#[test]
fn mixed_install_roots_homebrew_node_with_nvm_entry_then_cleared() {
    let fx = Fx::new();
    // openclaw#58111: Homebrew node, the entry left in an nvm tree.
    let mut d = fx.gateway(&fx.opt_node(), &fx.nvm_entry());
    d.insert(
        "ProgramArguments".into(),
        Value::Array(vec![
            s(fx.brew.join("bin/node")),
            s(fx.nvm_entry()),
            s("gateway"),
        ]),
    );
    write_plist(&fx.gateway_plist(), &d, false);
    let u = gateway_unit(&fx.gateway_plist());
    let findings = fx.check(&u);
    let f = find(&findings, FindingCode::MixedInstallRoots);
    assert_finding(&f, Severity::Error, Some(&fx.nvm_entry()));
    assert!(f.message.contains("nvm"), "{f:#?}");
    assert!(f.message.contains("Homebrew prefix"), "{f:#?}");
    assert!(blocks_start(&findings));
    // One problem, one finding: the entry is also outside the prefix, said once.
    lacks(&findings, FindingCode::EntryOutsideNpmPrefix);

    d.insert(
        "ProgramArguments".into(),
        Value::Array(vec![
            s(fx.brew.join("bin/node")),
            s(fx.brew_entry()),
            s("gateway"),
        ]),
    );
    write_plist(&fx.gateway_plist(), &d, false);
    assert!(fx.check(&u).is_empty(), "{:#?}", fx.check(&u));
}

#[test]
fn entry_outside_npm_prefix_from_user_npmrc_then_cleared() {
    let fx = Fx::new();
    write_plist(
        &fx.gateway_plist(),
        &fx.gateway(&fx.opt_node(), &fx.brew_entry()),
        false,
    );
    let u = gateway_unit(&fx.gateway_plist());
    let npmrc = fx.home.join(".npmrc");
    write(&npmrc, "; moved\nprefix=~/.npm-global\n", 0o644);
    let f = find(&fx.check(&u), FindingCode::EntryOutsideNpmPrefix);
    assert_finding(&f, Severity::Warning, Some(&fx.brew_entry()));
    let prefix = fx.home.join(".npm-global");
    assert!(
        f.message.contains(&prefix.display().to_string()),
        "names the prefix: {f:#?}"
    );
    assert!(
        f.message.contains(&fx.brew_entry().display().to_string()),
        "names the entry: {f:#?}"
    );
    assert!(f.message.contains(&npmrc.display().to_string()), "{f:#?}");

    std::fs::remove_file(&npmrc).unwrap();
    assert!(fx.check(&u).is_empty());
}

#[test]
fn npm_prefix_from_the_environment_wins_over_npmrc() {
    let fx = Fx::new();
    write(
        &fx.home.join(".npmrc"),
        &format!("prefix={}\n", fx.brew.display()),
        0o644,
    );
    let elsewhere = fx.root.join("srv/npm");
    let u = exec(
        "gateway",
        &[&fx.opt_node(), &fx.brew_entry()],
        &[
            ("HOME", &fx.home.display().to_string()),
            ("npm_config_prefix", &elsewhere.display().to_string()),
        ],
    );
    let f = find(&fx.check(&u), FindingCode::EntryOutsideNpmPrefix);
    assert!(f.message.contains("$npm_config_prefix"), "{f:#?}");

    let u = exec(
        "gateway",
        &[&fx.opt_node(), &fx.brew_entry()],
        &[("HOME", &fx.home.display().to_string())],
    );
    assert!(fx.check(&u).is_empty(), "{:#?}", fx.check(&u));
}

#[test]
fn without_homebrews_builtin_npmrc_the_prefix_is_the_keg() {
    let fx = Fx::new();
    write_plist(
        &fx.gateway_plist(),
        &fx.gateway(&fx.opt_node(), &fx.brew_entry()),
        false,
    );
    let u = gateway_unit(&fx.gateway_plist());
    let builtin = fx.brew.join("lib/node_modules/npm/npmrc");
    std::fs::remove_file(&builtin).unwrap();
    // dirname(dirname(realpath(node))) is the versioned keg (openclaw#107074).
    let f = find(&fx.check(&u), FindingCode::EntryOutsideNpmPrefix);
    assert!(
        f.message
            .contains(&fx.brew.join("Cellar/node/25.5.0").display().to_string()),
        "{f:#?}"
    );
    assert!(f.fix.contains("brew postinstall node"), "{f:#?}");

    write(
        &builtin,
        &format!("prefix = {}\n", fx.brew.display()),
        0o644,
    );
    assert!(fx.check(&u).is_empty());
}

#[test]
fn a_global_npmrc_sets_the_prefix_too() {
    let fx = Fx::new();
    write_plist(
        &fx.gateway_plist(),
        &fx.gateway(&fx.opt_node(), &fx.brew_entry()),
        false,
    );
    let u = gateway_unit(&fx.gateway_plist());
    let global = fx.brew.join("etc/npmrc");
    write(&global, "prefix = /usr/local\n", 0o644);
    let f = find(&fx.check(&u), FindingCode::EntryOutsideNpmPrefix);
    assert!(f.message.contains(&global.display().to_string()), "{f:#?}");
    std::fs::remove_file(&global).unwrap();
    assert!(fx.check(&u).is_empty());
}

#[test]
fn version_manager_path_then_cleared() {
    let fx = Fx::new();
    let mut d = fx.gateway(&fx.nvm_node(), &fx.nvm_entry());
    write_plist(&fx.gateway_plist(), &d, false);
    let u = gateway_unit(&fx.gateway_plist());
    let findings = fx.check(&u);
    let vm: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.code == FindingCode::VersionManagerPath)
        .collect();
    assert_eq!(vm.len(), 2, "node and entry: {findings:#?}");
    assert_finding(vm[0], Severity::Warning, Some(&fx.nvm_node()));
    assert_finding(vm[1], Severity::Warning, Some(&fx.nvm_entry()));
    assert!(vm[0].message.contains("nvm"), "{findings:#?}");
    // One nvm version for both, under its own prefix: nothing else is wrong.
    assert_eq!(findings.len(), 2, "{findings:#?}");

    // The PATH captured from a shell (openclaw#75233).
    d = fx.gateway(&fx.opt_node(), &fx.brew_entry());
    let path = format!("{}:{}", fx.nvm().join("bin").display(), fx.ctx.launchd_path);
    d.insert(
        "EnvironmentVariables".into(),
        Value::Dictionary(Dictionary::from_iter([("PATH", s(&path))])),
    );
    write_plist(&fx.gateway_plist(), &d, false);
    let f = find(&fx.check(&u), FindingCode::VersionManagerPath);
    assert_finding(&f, Severity::Warning, None);
    assert!(
        f.message
            .contains(&fx.nvm().join("bin").display().to_string())
    );

    write_plist(
        &fx.gateway_plist(),
        &fx.gateway(&fx.opt_node(), &fx.brew_entry()),
        false,
    );
    assert!(fx.check(&u).is_empty());
}

#[test]
fn env_node_found_in_nvm_runs_a_homebrew_script() {
    let fx = Fx::new();
    // A PATH captured from a shell with nvm first: `openclaw`'s `#!/usr/bin/env node` picks
    // nvm's node for Homebrew's package.
    let program = fx.brew.join("bin/openclaw");
    let path = format!(
        "{}:{}:{}",
        fx.nvm().join("bin").display(),
        fx.brew.join("bin").display(),
        fx.ctx.launchd_path
    );
    let u = exec("gateway", &[&program], &[("PATH", &path)]);
    let findings = fx.check(&u);
    let f = find(&findings, FindingCode::MixedInstallRoots);
    assert_finding(&f, Severity::Error, Some(&program));
    assert!(f.message.contains("the #! line"), "{f:#?}");
    assert!(
        findings
            .iter()
            .any(|f| f.code == FindingCode::VersionManagerPath
                && f.path.as_deref() == Some(fx.nvm_node().as_path())),
        "{findings:#?}"
    );

    let path = format!("{}:{}", fx.brew.join("bin").display(), fx.ctx.launchd_path);
    let u = exec("gateway", &[&program], &[("PATH", &path)]);
    assert!(fx.check(&u).is_empty(), "{:#?}", fx.check(&u));
}

// ---------------------------------------------------------------------------------------
// Directories

#[test]
fn working_directory_missing_then_cleared() {
    let fx = Fx::new();
    write_plist(&fx.ollama_plist(), &fx.ollama(), true);
    let u = launchd(
        "ollama",
        &[],
        "homebrew.mxcl.ollama",
        &fx.ollama_plist(),
        Domain::System,
    );
    let var = fx.brew.join("var");
    std::fs::rename(&var, fx.brew.join("var.old")).unwrap();
    let findings = fx.check(&u);
    let f = find(&findings, FindingCode::WorkingDirectoryMissing);
    assert_finding(&f, Severity::Error, Some(&var));

    std::fs::rename(fx.brew.join("var.old"), &var).unwrap();
    assert!(fx.check(&u).is_empty());
}

#[test]
fn log_directory_missing_is_a_warning_when_launchd_can_create_it_else_an_error() {
    let fx = Fx::new();
    write_plist(
        &fx.gateway_plist(),
        &fx.gateway(&fx.opt_node(), &fx.brew_entry()),
        false,
    );
    let u = gateway_unit(&fx.gateway_plist());
    let logs = fx.home.join("Library/Logs/openclaw");
    std::fs::remove_dir(&logs).unwrap();
    let log_dirs = |findings: &[Finding]| -> Vec<Finding> {
        findings
            .iter()
            .filter(|f| f.code == FindingCode::LogDirectoryMissing)
            .cloned()
            .collect()
    };
    // The job's user owns ~/Library/Logs: launchd creates the directory at start
    // (LrGenius/LrGeniusAI#298). stdout and stderr share it: one finding naming both.
    let findings = fx.check(&u);
    let hits = log_dirs(&findings);
    assert_eq!(hits.len(), 1, "one directory, one finding: {findings:#?}");
    assert_finding(&hits[0], Severity::Warning, Some(&logs));
    assert!(hits[0].message.contains("StandardOutPath"), "{}", hits[0]);
    assert!(hits[0].message.contains("StandardErrorPath"), "{}", hits[0]);
    assert!(
        hits[0].message.contains("launchd creates it"),
        "{}",
        hits[0]
    );
    assert!(!blocks_start(&findings), "{findings:#?}");

    // Its parent no longer writable by the job's user: launchd fails the spawn with 78.
    let parent = fx.home.join("Library/Logs");
    chmod(&parent, 0o555);
    let findings = fx.check(&u);
    let hits = log_dirs(&findings);
    assert_eq!(hits.len(), 1, "{findings:#?}");
    assert_finding(&hits[0], Severity::Error, Some(&logs));
    assert!(hits[0].message.contains("cannot create it"), "{}", hits[0]);
    assert!(hits[0].message.contains("EX_CONFIG"), "{}", hits[0]);
    chmod(&parent, 0o755);

    std::fs::create_dir(&logs).unwrap();
    assert!(fx.check(&u).is_empty());
}

#[test]
fn exec_unit_log_directory_missing_is_informational() {
    let fx = Fx::new();
    let logs = fx.root.join("var/log/launchgraph");
    let mut u = exec("gateway", &[&fx.opt_node(), &fx.brew_entry()], &[]);
    if let Runner::Exec(spec) = &mut u.runner {
        spec.stdout = Some(logs.join("gateway.log"));
        spec.working_directory = fx.root.join("srv/gateway");
    }
    let findings = fx.check(&u);
    let f = find(&findings, FindingCode::LogDirectoryMissing);
    assert_finding(&f, Severity::Info, Some(&logs));
    let f = find(&findings, FindingCode::WorkingDirectoryMissing);
    assert_finding(&f, Severity::Error, Some(&fx.root.join("srv/gateway")));

    std::fs::create_dir_all(&logs).unwrap();
    std::fs::create_dir_all(fx.root.join("srv/gateway")).unwrap();
    assert!(fx.check(&u).is_empty());
}

// ---------------------------------------------------------------------------------------
// Takeover

#[test]
fn takeover_runatload_then_cleared() {
    let fx = Fx::new();
    let mut d = fx.gateway(&fx.opt_node(), &fx.brew_entry());
    d.remove("KeepAlive");
    write_plist(&fx.gateway_plist(), &d, false);
    let u = launchd(
        "gateway",
        &["ollama"],
        "ai.openclaw.gateway",
        &fx.gateway_plist(),
        Domain::Gui(uid()),
    );
    let findings = fx.check(&u);
    let f = find(&findings, FindingCode::TakeoverRunAtLoad);
    assert_finding(&f, Severity::Warning, Some(&fx.gateway_plist()));
    assert!(f.message.contains("RunAtLoad"), "{f:#?}");
    assert!(
        f.message.contains("ollama"),
        "names the requirement: {f:#?}"
    );
    assert!(
        f.fix.contains("OPENCLAW_SUPERVISOR_MODE=external"),
        "{f:#?}"
    );
    assert!(
        f.fix.contains("OPENCLAW_SERVICE_REPAIR_POLICY=external"),
        "{f:#?}"
    );
    lacks(&findings, FindingCode::TakeoverKeepAlive);
    assert_eq!(launchgraph::preflight::takeover(&u), vec![f]);

    d.insert("RunAtLoad".into(), Value::Boolean(false));
    write_plist(&fx.gateway_plist(), &d, false);
    assert!(fx.check(&u).is_empty());
}

#[test]
fn takeover_keepalive_then_cleared() {
    let fx = Fx::new();
    let mut d = fx.ollama();
    d.remove("RunAtLoad");
    write_plist(&fx.ollama_plist(), &d, false);
    let u = launchd(
        "ollama",
        &["disk"],
        "homebrew.mxcl.ollama",
        &fx.ollama_plist(),
        Domain::System,
    );
    let f = find(&fx.check(&u), FindingCode::TakeoverKeepAlive);
    assert_finding(&f, Severity::Warning, Some(&fx.ollama_plist()));
    assert!(f.message.contains("KeepAlive = true"), "{f:#?}");
    assert!(f.fix.contains("brew services"), "{f:#?}");

    d.insert(
        "KeepAlive".into(),
        Value::Dictionary(Dictionary::from_iter([(
            "SuccessfulExit",
            Value::Boolean(false),
        )])),
    );
    write_plist(&fx.ollama_plist(), &d, true);
    let f = find(&fx.check(&u), FindingCode::TakeoverKeepAlive);
    assert!(f.message.contains("SuccessfulExit"), "{f:#?}");

    d.remove("KeepAlive");
    write_plist(&fx.ollama_plist(), &d, false);
    assert!(fx.check(&u).is_empty());
}

#[test]
fn both_takeover_keys_on_the_openclaw_default_plist() {
    let fx = Fx::new();
    write_plist(
        &fx.gateway_plist(),
        &fx.gateway(&fx.opt_node(), &fx.brew_entry()),
        false,
    );
    let u = launchd(
        "gateway",
        &["ollama"],
        "ai.openclaw.gateway",
        &fx.gateway_plist(),
        Domain::Gui(uid()),
    );
    let findings = fx.check(&u);
    find(&findings, FindingCode::TakeoverRunAtLoad);
    find(&findings, FindingCode::TakeoverKeepAlive);
    assert!(!blocks_start(&findings));
}

// ---------------------------------------------------------------------------------------
// Watched files

#[test]
fn watched_paths_cover_what_an_upgrade_changes() {
    let fx = Fx::new();
    write_plist(
        &fx.gateway_plist(),
        &fx.gateway(&fx.opt_node(), &fx.brew_entry()),
        false,
    );
    let u = gateway_unit(&fx.gateway_plist());
    let watched = watched_paths_with(&u, &fx.ctx);
    let expect = [
        fx.gateway_plist(),
        PathBuf::from("/bin/sh"),
        fx.wrapper(),
        fx.env_file(),
        fx.opt_node(),
        fx.cellar_node(),
        fx.brew_entry(),
        fx.brew.join("lib/node_modules/openclaw/package.json"),
        fx.brew.join("lib/node_modules/npm/npmrc"),
        fx.brew.join("etc/npmrc"),
        fx.home.join(".npmrc"),
    ];
    for p in &expect {
        assert!(watched.contains(p), "{} not in {watched:#?}", p.display());
    }
}

/// `up` with a launchd unit whose plist is a FIFO or a device: the unit waits with the
/// finding at once, instead of the supervisor hanging on the read (or reading /dev/zero
/// without end) before it answers anything.
#[test]
fn up_refuses_a_plist_that_is_a_fifo_or_a_device_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("test.job.plist");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    for (plist, what) in [
        (fifo.as_path(), "is a FIFO, expected a regular file"),
        (
            Path::new("/dev/zero"),
            "is a character device, expected a regular file",
        ),
    ] {
        let base = tempfile::tempdir().unwrap();
        let units = base.path().join("units");
        std::fs::create_dir(&units).unwrap();
        std::fs::write(
            units.join("job.toml"),
            format!(
                "[launchd]\nlabel = \"test.job\"\nplist = \"{}\"\ndomain = \"gui/{}\"\n",
                plist.display(),
                nix::unistd::geteuid()
            ),
        )
        .unwrap();
        let mut d = support::Daemon::start_with(&units, &[], &["--launchctl", "/bin/false"]);
        d.wait_serving();
        let s = d.wait_state("job", "waiting");
        assert_eq!(s.reason, "PREFLIGHT_FAILED", "{s:?}");
        let f = s
            .preflight
            .iter()
            .find(|f| f.code == "PLIST_UNREADABLE")
            .unwrap_or_else(|| panic!("{s:?}"));
        assert!(
            f.message
                .contains(&format!("the plist {} {what}", plist.display())),
            "{f:?}"
        );
        d.terminate();
    }
}

// ---------------------------------------------------------------------------------------
// WRITABLE_BY_NON_ROOT

/// A program for a root job under `dir` (mode 0755 dirs from `create_dir_all`).
fn root_program(fx: &Fx, dir: &str) -> (PathBuf, PathBuf) {
    let bin = fx.root.join(dir);
    let prog = bin.join("tool");
    fake_node(&prog, "tool");
    chmod(&bin, 0o755);
    (bin, prog)
}

// As root, so that the fixture's directories are root's to begin with.
#[test]
#[ignore = "needs root"]
fn root_writable_by_non_root_for_a_root_exec_unit_then_cleared() {
    let fx = Fx::new();
    let (bin, prog) = root_program(&fx, "usr/local/bin");
    let u = exec("tool", &[&prog], &[]);
    lacks(&fx.check(&u), FindingCode::WritableByNonRoot);

    // Intel Homebrew: the admin who installed it owns /usr/local/bin.
    std::os::unix::fs::lchown(&bin, Some(uid()), None).unwrap();
    let f = find(&fx.check(&u), FindingCode::WritableByNonRoot);
    assert_finding(&f, Severity::Error, Some(&bin));
    assert!(blocks_start(&fx.check(&u)));
    let owner = format!("owned by uid {} (u)", uid());
    for part in [prog.to_str().unwrap(), "command[0]", &owner, "mode 0755"] {
        assert!(f.message.contains(part), "{part:?} in {f:#?}");
    }
    assert!(
        f.fix.contains("chown root") && f.fix.contains("chmod go-w"),
        "{f:#?}"
    );
    assert!(f.fix.contains("`user`"), "{f:#?}");

    std::os::unix::fs::lchown(&bin, Some(0), None).unwrap();
    lacks(&fx.check(&u), FindingCode::WritableByNonRoot);

    // Group-writable by a group other than wheel, then the program itself world-writable.
    std::os::unix::fs::lchown(&bin, None, Some(20)).unwrap();
    chmod(&bin, 0o775);
    let f = find(&fx.check(&u), FindingCode::WritableByNonRoot);
    assert!(f.message.contains("group 20, mode 0775"), "{f:#?}");
    chmod(&bin, 0o755);
    chmod(&prog, 0o757);
    let f = find(&fx.check(&u), FindingCode::WritableByNonRoot);
    assert_finding(&f, Severity::Error, Some(&prog));
    chmod(&prog, 0o755);
    assert!(fx.check(&u).is_empty(), "{:#?}", fx.check(&u));
}

/// A LaunchDaemon without UserName runs as root; with UserName it is its user's business.
#[test]
#[ignore = "needs root"]
fn root_writable_by_non_root_for_a_launch_daemon_unless_it_has_a_user_name() {
    let fx = Fx::new();
    let (bin, prog) = root_program(&fx, "usr/local/bin");
    std::os::unix::fs::lchown(&bin, Some(uid()), None).unwrap();
    let plist = fx.root.join("Library/LaunchDaemons/com.example.tool.plist");
    let mut dict = Dictionary::from_iter([
        ("Label", s("com.example.tool")),
        ("ProgramArguments", args(&[&prog])),
    ]);
    write_plist(&plist, &dict, false);
    let u = launchd("tool", &[], "com.example.tool", &plist, Domain::System);
    let f = find(&fx.check(&u), FindingCode::WritableByNonRoot);
    assert_finding(&f, Severity::Error, Some(&bin));
    assert!(f.message.contains("ProgramArguments[0]"), "{f:#?}");
    assert!(f.fix.contains("UserName"), "{f:#?}");

    dict.insert("UserName".into(), s("u"));
    write_plist(&plist, &dict, false);
    lacks(&fx.check(&u), FindingCode::WritableByNonRoot);
}

/// An exec unit that runs as another user is not reported, whoever owns its program.
#[test]
fn writable_by_non_root_is_not_reported_for_a_unit_with_a_user() {
    let fx = Fx::new();
    let (bin, prog) = root_program(&fx, "opt/tool/bin");
    chmod(&bin, 0o777);
    let mut u = exec("tool", &[&prog], &[]);
    if let Runner::Exec(spec) = &mut u.runner {
        spec.user = Some("u".into());
    }
    lacks(&preflight(&u, &fx.ctx), FindingCode::WritableByNonRoot);
    // The same unit as root is reported, naming the world-writable directory.
    let u = exec("tool", &[&prog], &[]);
    let f = find(&preflight(&u, &fx.ctx), FindingCode::WritableByNonRoot);
    assert!(f.message.contains("mode 0777"), "{f:#?}");
}
