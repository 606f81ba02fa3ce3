//! Fingerprints of a fixture install (a Homebrew prefix with node in its Cellar and OpenClaw
//! under `lib/node_modules`, driven by a LaunchAgent plist): taken, stored, loaded, and
//! compared after an "upgrade" that bumps the package, moves node to a new Cellar version
//! and edits the plist. The drift sentences are asserted exactly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use launchgraph::fingerprint::{Fingerprint, Role, drift, load, store, take};
use launchgraph::preflight::{Accounts, PreflightContext, UserEntry};
use launchgraph::unit::{
    Domain, Label, LaunchdSpec, PreflightSpec, RestartSpec, Runner, Unit, UnitName,
};
use plist::{Dictionary, Value};

mod support;
use support::host::{FakeHost, write};

struct FakeAccounts(HashMap<u32, UserEntry>);

impl Accounts for FakeAccounts {
    fn by_name(&self, name: &str) -> Option<UserEntry> {
        self.0.values().find(|u| u.name == name).cloned()
    }
    fn by_uid(&self, uid: u32) -> Option<UserEntry> {
        self.0.get(&uid).cloned()
    }
}

fn s(p: impl AsRef<Path>) -> Value {
    Value::String(p.as_ref().to_string_lossy().into_owned())
}

/// The user the LaunchAgent runs as: when the tests run as root, `node --version` runs as
/// this uid, which exercises the identity switch.
fn uid() -> u32 {
    if nix::unistd::geteuid().is_root() {
        501
    } else {
        nix::unistd::geteuid().as_raw()
    }
}

struct Fx {
    host: FakeHost,
    root: PathBuf,
    brew: PathBuf,
    ctx: PreflightContext,
}

impl Fx {
    fn new() -> Fx {
        let host = FakeHost::new("home/u");
        let (root, brew) = (host.root.clone(), host.brew.clone());
        let oc = brew.join("lib/node_modules/openclaw");
        write(
            &oc.join("package.json"),
            r#"{"name":"openclaw","version":"2026.9.6"}"#,
            0o644,
        );
        // A package.json without a name, as bundlers leave in dist/: not the package's.
        write(&oc.join("dist/package.json"), r#"{"type":"module"}"#, 0o644);
        write(
            &oc.join("dist/index.js"),
            "console.log('2026.9.6');\n",
            0o644,
        );
        std::fs::create_dir_all(root.join("home/u/Library/LaunchAgents")).unwrap();
        let users = HashMap::from([(
            uid(),
            UserEntry {
                name: "u".into(),
                uid: uid(),
                gid: nix::unistd::getegid().as_raw(),
                home: root.join("home/u"),
            },
        )]);
        let ctx = PreflightContext {
            launchd_path: "/usr/bin:/bin:/usr/sbin:/sbin".into(),
            euid: nix::unistd::geteuid().as_raw(),
            accounts: Arc::new(FakeAccounts(users)),
        };
        Fx {
            host,
            root,
            brew,
            ctx,
        }
    }

    fn plist(&self) -> PathBuf {
        self.root
            .join("home/u/Library/LaunchAgents/ai.openclaw.gateway.plist")
    }

    fn entry(&self) -> PathBuf {
        self.brew.join("lib/node_modules/openclaw/dist/index.js")
    }

    fn write_plist(&self, node: &Path, port: &str) {
        let d = Dictionary::from_iter([
            ("Label", s("ai.openclaw.gateway")),
            (
                "ProgramArguments",
                Value::Array(vec![
                    s(node),
                    s(self.entry()),
                    s("gateway"),
                    s("--port"),
                    s(port),
                ]),
            ),
        ]);
        Value::Dictionary(d).to_file_xml(self.plist()).unwrap();
    }

    fn unit(&self) -> Unit {
        Unit {
            name: UnitName::parse("gateway").unwrap(),
            file: PathBuf::from("/etc/launchgraph/units/gateway.toml"),
            description: None,
            requires: Vec::new(),
            runner: Runner::Launchd(LaunchdSpec {
                label: Label("ai.openclaw.gateway".into()),
                plist: self.plist(),
                domain: Domain::Gui(uid()),
            }),
            ready: None,
            alive: None,
            restart: RestartSpec::default(),
            preflight: PreflightSpec::default(),
            guards: Default::default(),
        }
    }

    /// `brew upgrade node` to 26.0.0 (the 25.5.0 keg removed), `npm i -g openclaw@2026.10.1`.
    fn upgrade(&self) {
        self.host.upgrade_node("26.0.0");
        self.host.cleanup_node("25.5.0");
        let oc = self.brew.join("lib/node_modules/openclaw");
        write(
            &oc.join("package.json"),
            r#"{"name":"openclaw","version":"2026.10.1"}"#,
            0o644,
        );
        write(
            &oc.join("dist/index.js"),
            "console.log('2026.10.1');\n",
            0o644,
        );
    }

    async fn take(&self) -> Fingerprint {
        tokio::time::timeout(Duration::from_secs(60), take(&self.unit(), &self.ctx))
            .await
            .expect("take is bounded")
    }
}

fn sha(fp: &Fingerprint, role: Role) -> &str {
    fp.file(role).unwrap().sha256.as_deref().unwrap()
}

/// How drift shows a hash: its first 8 hex digits.
fn short(sha: &str) -> String {
    format!("{}…", &sha[..8])
}

#[tokio::test]
async fn a_fingerprint_records_what_ran() {
    let fx = Fx::new();
    fx.write_plist(&fx.brew.join("opt/node/bin/node"), "18789");
    let fp = fx.take().await;

    assert_eq!(fp.unit, "gateway");
    assert!(humantime::parse_rfc3339(&fp.recorded_at).is_ok(), "{fp:#?}");
    assert_eq!(
        fp.package,
        Some(("openclaw".to_owned(), "2026.9.6".to_owned()))
    );
    assert_eq!(fp.node_version.as_deref(), Some("v25.5.0"));
    let roles: Vec<Role> = fp.files.iter().map(|f| f.role).collect();
    assert_eq!(
        roles,
        [Role::Plist, Role::Node, Role::Entry, Role::PackageJson],
        "{fp:#?}"
    );
    let node = fp.file(Role::Node).unwrap();
    assert_eq!(node.path, fx.brew.join("opt/node/bin/node"));
    assert_eq!(
        node.realpath.as_deref(),
        Some(fx.brew.join("Cellar/node/25.5.0/bin/node").as_path())
    );
    assert!(node.exists && node.size.is_some() && node.mtime.is_some());
    assert_eq!(sha(&fp, Role::Plist).len(), 64);
    assert_eq!(
        fp.file(Role::PackageJson).unwrap().path,
        fx.brew.join("lib/node_modules/openclaw/package.json")
    );
}

#[tokio::test]
async fn drift_after_an_upgrade_through_the_stable_opt_path() {
    let fx = Fx::new();
    let opt_node = fx.brew.join("opt/node/bin/node");
    fx.write_plist(&opt_node, "18789");
    let state = tempfile::tempdir().unwrap();
    let before = fx.take().await;
    store(state.path(), &before).unwrap();
    assert_eq!(load(state.path(), "gateway").unwrap(), Some(before.clone()));

    fx.upgrade();
    fx.write_plist(&opt_node, "18790");
    let after = fx.take().await;
    let old = load(state.path(), "gateway").unwrap().unwrap();

    assert_eq!(
        drift(&old, &after),
        [
            "openclaw 2026.9.6 -> 2026.10.1".to_owned(),
            format!(
                "plist ai.openclaw.gateway.plist changed (sha256 {} -> {})",
                short(sha(&old, Role::Plist)),
                short(sha(&after, Role::Plist))
            ),
            format!(
                "node {} now resolves to {}",
                opt_node.display(),
                fx.brew.join("Cellar/node/26.0.0/bin/node").display()
            ),
            "node v25.5.0 -> v26.0.0".to_owned(),
            format!(
                "entry {} changed (sha256 {} -> {})",
                fx.entry().display(),
                short(sha(&old, Role::Entry)),
                short(sha(&after, Role::Entry))
            ),
        ]
    );
    assert!(drift(&after, &after.clone()).is_empty());
}

#[tokio::test]
async fn drift_after_an_upgrade_that_removed_the_pinned_cellar_node() {
    let fx = Fx::new();
    let cellar_node = fx.brew.join("Cellar/node/25.5.0/bin/node");
    fx.write_plist(&cellar_node, "18789");
    let before = fx.take().await;
    assert_eq!(before.node_version.as_deref(), Some("v25.5.0"));

    fx.upgrade();
    let after = fx.take().await;
    assert_eq!(after.node_version, None);
    assert_eq!(
        drift(&before, &after),
        [
            "openclaw 2026.9.6 -> 2026.10.1".to_owned(),
            format!("node {} no longer exists", cellar_node.display()),
            format!(
                "entry {} changed (sha256 {} -> {})",
                fx.entry().display(),
                short(sha(&before, Role::Entry)),
                short(sha(&after, Role::Entry)),
            ),
        ]
    );

    // The plist repointed at the new node: the path itself changed.
    let new_node = fx.brew.join("Cellar/node/26.0.0/bin/node");
    fx.write_plist(&new_node, "18789");
    let repointed = fx.take().await;
    let sentences = drift(&before, &repointed);
    assert!(
        sentences.contains(&format!(
            "node {} -> {}",
            cellar_node.display(),
            new_node.display()
        )),
        "{sentences:#?}"
    );
    assert!(sentences.contains(&"node v25.5.0 -> v26.0.0".to_owned()));
}

#[tokio::test]
async fn store_is_atomic_and_overwrites() {
    let fx = Fx::new();
    fx.write_plist(&fx.brew.join("opt/node/bin/node"), "18789");
    let state = tempfile::tempdir().unwrap();
    let first = fx.take().await;
    store(state.path(), &first).unwrap();
    let mut second = first.clone();
    second.node_version = Some("v99.0.0".into());
    store(state.path(), &second).unwrap();

    let dir = state.path().join("fingerprints");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["gateway.json"], "no temporary files are left");
    let text = std::fs::read_to_string(dir.join("gateway.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["node_version"], "v99.0.0");
    assert_eq!(json["files"][0]["role"], "plist");
    assert_eq!(load(state.path(), "gateway").unwrap(), Some(second));
}

#[test]
fn load_of_nothing_and_of_garbage() {
    let state = tempfile::tempdir().unwrap();
    assert_eq!(load(state.path(), "gateway").unwrap(), None);
    std::fs::create_dir_all(state.path().join("fingerprints")).unwrap();
    std::fs::write(state.path().join("fingerprints/gateway.json"), "{\"unit\":").unwrap();
    let e = load(state.path(), "gateway").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    assert!(load(state.path(), "../gateway").is_err());
}

#[test]
fn load_never_blocks_on_a_fifo_nor_reads_a_huge_file() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().join("fingerprints");
    std::fs::create_dir_all(&dir).unwrap();
    nix::unistd::mkfifo(
        &dir.join("fifo.json"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    std::fs::write(dir.join("huge.json"), vec![b' '; 2 << 20]).unwrap();
    // On a thread, so a load that blocks on the FIFO fails the test instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    let path = state.path().to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send((load(&path, "fifo"), load(&path, "huge")));
    });
    let (fifo, huge) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("load returns without a writer on the FIFO");
    let (fifo, huge) = (fifo.unwrap_err(), huge.unwrap_err());
    assert_eq!(fifo.kind(), std::io::ErrorKind::InvalidData, "{fifo}");
    assert!(fifo.to_string().contains("not a regular file"), "{fifo}");
    assert_eq!(huge.kind(), std::io::ErrorKind::InvalidData, "{huge}");
    assert!(huge.to_string().contains("more than"), "{huge}");
}

#[tokio::test]
async fn node_version_is_bounded() {
    let fx = Fx::new();
    // A node that never answers: the fingerprint is still taken, without a version.
    write(
        &fx.brew.join("Cellar/node/25.5.0/bin/node"),
        "#!/bin/sh\nsleep 120\n",
        0o755,
    );
    fx.write_plist(&fx.brew.join("opt/node/bin/node"), "18789");
    let fp = fx.take().await;
    assert_eq!(fp.node_version, None);
    assert!(fp.file(Role::Node).unwrap().exists);
}

#[cfg(target_os = "linux")]
#[test]
fn the_linux_state_directory() {
    assert_eq!(
        launchgraph::fingerprint::default_state_dir(),
        Path::new("/var/lib/launchgraph")
    );
}
