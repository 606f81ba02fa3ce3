//! A fake Mac host under one temporary directory, as the preflight, fingerprint and breakage
//! tests need it: Homebrew at `opt/homebrew` with node in its Cellar (reached through `opt/` and
//! `bin/` links) and npm's builtin npmrc, OpenClaw installed by Homebrew's npm, an Ollama keg,
//! and a user's nvm tree with its own, older OpenClaw. Each test adds what only it needs.
//!
//! The layouts follow Homebrew's (https://docs.brew.sh/Installation, the node formula's
//! `npmrc`, Homebrew/homebrew-core:Formula/n/node.rb) and nvm's
//! (nvm-sh/nvm:README.md, `~/.nvm/versions/node/vX.Y.Z`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The node version Homebrew's `opt/node` points at on a fresh host.
pub const NODE: &str = "25.5.0";
/// The version of the nvm node, and of the OpenClaw under it.
pub const NVM_NODE: &str = "v22.22.0";
pub const OPENCLAW: &str = "2026.9.6";
pub const NVM_OPENCLAW: &str = "2026.6.6";

/// Writes `text` to `path` with `mode`, creating the parents.
pub fn write(path: &Path, text: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    chmod(path, mode);
}

pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Points the symlink `link` at `target`, replacing what was there.
pub fn relink(target: &str, link: &Path) {
    let _ = std::fs::remove_file(link);
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, link).unwrap();
}

/// A program at `path` that prints `output` (a fake `node` printing its `--version`).
pub fn fake_program(path: &Path, output: &str) {
    write(path, &format!("#!/bin/sh\necho {output}\n"), 0o755);
}

/// The fake host; the directory goes with it.
pub struct FakeHost {
    pub tmp: tempfile::TempDir,
    /// The host's `/`.
    pub root: PathBuf,
    /// Homebrew's prefix, `<root>/opt/homebrew`.
    pub brew: PathBuf,
    /// The user's home, `<root>/<home>`.
    pub home: PathBuf,
}

impl FakeHost {
    /// Builds the host with the user's home at `<root>/<home>` (`Users/oc`, `home/u`).
    pub fn new(home: &str) -> FakeHost {
        let tmp = tempfile::tempdir().unwrap();
        // The user the units run as must reach these files, and run node for `--version`.
        chmod(tmp.path(), 0o755);
        let root = tmp.path().to_path_buf();
        let brew = root.join("opt/homebrew");
        let home = root.join(home);

        // Homebrew's node, reached through its opt/ and bin/ links; npm's builtin npmrc as the
        // node formula writes it.
        fake_program(
            &brew.join(format!("Cellar/node/{NODE}/bin/node")),
            &format!("v{NODE}"),
        );
        relink(&format!("../Cellar/node/{NODE}"), &brew.join("opt/node"));
        relink(
            &format!("../Cellar/node/{NODE}/bin/node"),
            &brew.join("bin/node"),
        );
        write(
            &brew.join("lib/node_modules/npm/npmrc"),
            &format!("prefix = {}\n", brew.display()),
            0o644,
        );
        // OpenClaw installed by Homebrew's npm, its bin linked into the prefix.
        let oc = brew.join("lib/node_modules/openclaw");
        write(
            &oc.join("package.json"),
            &format!(
                r#"{{"name":"openclaw","version":"{OPENCLAW}","bin":{{"openclaw":"openclaw.mjs"}}}}"#
            ),
            0o644,
        );
        write(
            &oc.join("dist/index.js"),
            &format!("// openclaw {OPENCLAW}\n"),
            0o644,
        );
        write(
            &oc.join("openclaw.mjs"),
            "#!/usr/bin/env node\nimport './dist/entry.js';\n",
            0o755,
        );
        relink(
            "../lib/node_modules/openclaw/openclaw.mjs",
            &brew.join("bin/openclaw"),
        );
        // Homebrew's Ollama.
        write(
            &brew.join("Cellar/ollama/0.32.3/bin/ollama"),
            "#!/bin/sh\nexit 0\n",
            0o755,
        );
        relink("../Cellar/ollama/0.32.3", &brew.join("opt/ollama"));
        std::fs::create_dir_all(brew.join("var/log")).unwrap();

        // The user's nvm install, with its own OpenClaw.
        let nvm = home.join(format!(".nvm/versions/node/{NVM_NODE}"));
        fake_program(&nvm.join("bin/node"), NVM_NODE);
        write(
            &nvm.join("lib/node_modules/openclaw/package.json"),
            &format!(r#"{{"name":"openclaw","version":"{NVM_OPENCLAW}"}}"#),
            0o644,
        );
        write(
            &nvm.join("lib/node_modules/openclaw/dist/index.js"),
            &format!("// openclaw {NVM_OPENCLAW}\n"),
            0o644,
        );
        std::fs::create_dir_all(home.join("Library/LaunchAgents")).unwrap();
        std::fs::create_dir_all(home.join("Library/Logs/openclaw")).unwrap();
        std::fs::create_dir_all(root.join("Library/LaunchDaemons")).unwrap();

        FakeHost {
            tmp,
            root,
            brew,
            home,
        }
    }

    /// Homebrew's node of `version`, in its Cellar.
    pub fn keg_node(&self, version: &str) -> PathBuf {
        self.brew.join(format!("Cellar/node/{version}/bin/node"))
    }

    /// `brew upgrade node`: node `version` in the Cellar, `opt/node` and `bin/node` moved to
    /// it; the old keg stays until [`FakeHost::cleanup_node`].
    pub fn upgrade_node(&self, version: &str) {
        fake_program(&self.keg_node(version), &format!("v{version}"));
        relink(
            &format!("../Cellar/node/{version}"),
            &self.brew.join("opt/node"),
        );
        relink(
            &format!("../Cellar/node/{version}/bin/node"),
            &self.brew.join("bin/node"),
        );
    }

    /// `brew cleanup node`: the keg of `version` removed.
    pub fn cleanup_node(&self, version: &str) {
        std::fs::remove_dir_all(self.brew.join(format!("Cellar/node/{version}"))).unwrap();
    }

    /// The nvm tree's root for its node.
    pub fn nvm(&self) -> PathBuf {
        self.home.join(format!(".nvm/versions/node/{NVM_NODE}"))
    }
}
