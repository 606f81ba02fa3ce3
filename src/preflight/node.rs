//! Node.js facts read from paths alone: where node and its script sit in a ProgramArguments
//! layout, which install they belong to (a Homebrew or npm prefix, nvm, fnm, volta, asdf,
//! `~/.openclaw`), versioned Cellar paths, and the npm global prefix of a given node,
//! computed as npm computes it, without running npm.
//!
//! Nothing here runs a program or reports a finding; `analyze` turns these facts into
//! findings.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// Where node and the script it runs sit in an argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeLayout {
    pub kind: LayoutKind,
    /// Index of node in the argv.
    pub node: usize,
    /// Index of the entry script in the argv, when there is one.
    pub entry: Option<usize>,
    /// OpenClaw's generated env wrapper and the env file it sources, as argv indices.
    pub wrapper: Option<(usize, usize)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LayoutKind {
    /// `/bin/sh <…-env-wrapper.sh> <env-file> <node> <entry> …`
    ShWrapper,
    /// `<…-env-wrapper.sh> <env-file> <node> <entry> …`
    WrapperFirst,
    /// `<…/node> [node options] <entry> …`
    Plain,
}

const WRAPPER_SUFFIX: &str = "-env-wrapper.sh";

fn file_name(arg: &str) -> &str {
    arg.rsplit('/').next().unwrap_or(arg)
}

/// The OpenClaw layouts of openclaw/openclaw src/daemon/launchd-plist.ts and docs/platforms/mac/bundled-gateway.md (`resolveGeneratedEnvWrapperLayout`: the
/// command starts at index 3 after `/bin/sh`, at 2 after a wrapper in argv[0]), else a plain
/// `node <entry>` when argv[0]'s file name is `node`.
pub(crate) fn node_layout(argv: &[String]) -> Option<NodeLayout> {
    let first = argv.first()?;
    if file_name(first) == "sh" && argv.get(1).is_some_and(|a| a.ends_with(WRAPPER_SUFFIX)) {
        return (argv.len() > 3).then(|| NodeLayout {
            kind: LayoutKind::ShWrapper,
            node: 3,
            entry: (argv.len() > 4).then_some(4),
            wrapper: Some((1, 2)),
        });
    }
    if first.ends_with(WRAPPER_SUFFIX) {
        return (argv.len() > 2).then(|| NodeLayout {
            kind: LayoutKind::WrapperFirst,
            node: 2,
            entry: (argv.len() > 3).then_some(3),
            wrapper: Some((0, 1)),
        });
    }
    if file_name(first) == "node" {
        return Some(NodeLayout {
            kind: LayoutKind::Plain,
            node: 0,
            entry: script_after_node_options(argv, 1),
            wrapper: None,
        });
    }
    None
}

/// The index of the script in `node [options] script …`, skipping node's own options (and
/// the value of those that take one). `-e`/`-p` mean there is no script file.
pub(crate) fn script_after_node_options(argv: &[String], from: usize) -> Option<usize> {
    const WITH_VALUE: &[&str] = &[
        "-r",
        "--require",
        "--import",
        "--loader",
        "--experimental-loader",
        "--env-file",
        "--title",
        "--conditions",
        "-C",
    ];
    let mut i = from;
    while let Some(arg) = argv.get(i) {
        match arg.as_str() {
            "-e" | "--eval" | "-p" | "--print" | "-" => return None,
            "--" => return (i + 1 < argv.len()).then_some(i + 1),
            a if WITH_VALUE.contains(&a) => i += 2,
            a if a.starts_with('-') => i += 1,
            _ => return Some(i),
        }
    }
    None
}

/// `…/Cellar/<formula>/<version>/<rest>`: a path that `brew upgrade` removes
/// (openclaw#20583, #107074).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CellarPath {
    pub prefix: PathBuf,
    pub formula: String,
    pub version: String,
    pub rest: PathBuf,
}

impl CellarPath {
    /// The stable path Homebrew keeps across upgrades: `<prefix>/opt/<formula>/<rest>`.
    pub(crate) fn opt_path(&self) -> PathBuf {
        self.prefix.join("opt").join(&self.formula).join(&self.rest)
    }
}

pub(crate) fn cellar_path(path: &Path) -> Option<CellarPath> {
    let comps: Vec<Component> = path.components().collect();
    let at = comps
        .iter()
        .position(|c| c.as_os_str() == OsStr::new("Cellar"))?;
    let formula = comps.get(at + 1)?.as_os_str().to_str()?.to_owned();
    let version = comps.get(at + 2)?.as_os_str().to_str()?.to_owned();
    let prefix: PathBuf = comps[..at].iter().collect();
    let rest: PathBuf = comps[at + 3..].iter().collect();
    Some(CellarPath {
        prefix,
        formula,
        version,
        rest,
    })
}

/// A Node version manager (openclaw/openclaw docs/gateway/doctor.md §17).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VersionManager {
    Nvm,
    Fnm,
    Volta,
    Asdf,
}

impl fmt::Display for VersionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VersionManager::Nvm => "nvm",
            VersionManager::Fnm => "fnm",
            VersionManager::Volta => "volta",
            VersionManager::Asdf => "asdf",
        })
    }
}

fn names(path: &Path) -> Vec<&str> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect()
}

/// The version manager whose tree `path` lies in.
pub(crate) fn version_manager(path: &Path) -> Option<VersionManager> {
    let n = names(path);
    let has = |s: &str| n.contains(&s);
    if has(".nvm") {
        Some(VersionManager::Nvm)
    } else if has(".fnm")
        || has("fnm_multishells")
        || n.windows(2).any(|w| w == ["fnm", "node-versions"])
    {
        Some(VersionManager::Fnm)
    } else if has(".volta") {
        Some(VersionManager::Volta)
    } else if has(".asdf") {
        Some(VersionManager::Asdf)
    } else {
        None
    }
}

/// What kind of install a node binary or a global package belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RootKind {
    /// An npm prefix: Homebrew's, `/usr/local`, a custom `prefix`.
    Prefix,
    Manager(VersionManager),
    /// OpenClaw's installer: node in `~/.openclaw/tools`, packages in `~/.openclaw/lib`.
    OpenClaw,
}

/// The install a node binary or a package belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstallRoot {
    pub kind: RootKind,
    pub dir: PathBuf,
    /// `dir` pins one install (one nvm version, one prefix). Shims (volta, asdf) and fnm's
    /// per-shell links only name the manager.
    pub exact: bool,
    /// The prefix is Homebrew's (the path went through its Cellar).
    pub homebrew: bool,
}

impl InstallRoot {
    /// Whether node from `self` and a package from `other` belong together.
    pub(crate) fn same_install(&self, other: &InstallRoot) -> bool {
        self.kind == other.kind && (!self.exact || !other.exact || same_dir(&self.dir, &other.dir))
    }
}

impl fmt::Display for InstallRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            RootKind::Prefix if self.homebrew => "the Homebrew prefix".to_owned(),
            RootKind::Prefix => "the prefix".to_owned(),
            RootKind::Manager(m) => m.to_string(),
            RootKind::OpenClaw => "the OpenClaw installer's".to_owned(),
        };
        write!(f, "{what} {}", self.dir.display())
    }
}

pub(crate) fn same_dir(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn join(parts: &[&str], absolute: bool) -> PathBuf {
    let mut p = if absolute {
        PathBuf::from("/")
    } else {
        PathBuf::new()
    };
    p.extend(parts);
    p
}

/// The install `path` belongs to. `is_node`: `path` is a node binary (`<root>/bin/node`),
/// else a file of a global package (`<root>/lib/node_modules/<pkg>/…`); anything else (a
/// project checkout, pnpm's store) belongs to no install we can compare.
pub(crate) fn install_root(path: &Path, is_node: bool) -> Option<InstallRoot> {
    let n = names(path);
    let abs = path.is_absolute();
    let root = |kind, upto: usize, exact| InstallRoot {
        kind,
        dir: join(&n[..upto], abs),
        exact,
        homebrew: false,
    };
    let find = |s: &str| n.iter().position(|c| *c == s);
    let manager = RootKind::Manager;

    if let Some(i) = find(".nvm") {
        // ~/.nvm/versions/node/<v>/…
        if n.get(i + 1) == Some(&"versions") && n.len() > i + 3 {
            return Some(root(manager(VersionManager::Nvm), i + 4, true));
        }
        return Some(root(manager(VersionManager::Nvm), i + 1, false));
    }
    if let Some(i) = find("fnm_multishells") {
        return Some(root(manager(VersionManager::Fnm), i + 1, false));
    }
    if let Some(i) = find("node-versions")
        && i > 0
        && matches!(n[i - 1], "fnm" | ".fnm")
    {
        // <fnm dir>/node-versions/<v>/installation/…
        let upto = if n.get(i + 2) == Some(&"installation") {
            i + 3
        } else {
            (i + 2).min(n.len())
        };
        return Some(root(manager(VersionManager::Fnm), upto, true));
    }
    if let Some(i) = find(".volta") {
        return Some(root(manager(VersionManager::Volta), i + 1, false));
    }
    if let Some(i) = find(".asdf") {
        // ~/.asdf/installs/nodejs/<v>/…, or a shim that picks a version at run time.
        if n.get(i + 1) == Some(&"installs") && n.len() > i + 3 {
            return Some(root(manager(VersionManager::Asdf), i + 4, true));
        }
        return Some(root(manager(VersionManager::Asdf), i + 1, false));
    }
    if let Some(i) = n
        .iter()
        .position(|c| *c == ".openclaw" || c.starts_with(".openclaw-"))
        && matches!(n.get(i + 1), Some(&"tools") | Some(&"lib"))
    {
        return Some(root(RootKind::OpenClaw, i + 1, true));
    }
    if let Some(c) = cellar_path(path) {
        return Some(InstallRoot {
            kind: RootKind::Prefix,
            dir: c.prefix,
            exact: true,
            homebrew: true,
        });
    }
    if let Some(i) = n.windows(2).rposition(|w| w == ["lib", "node_modules"]) {
        return Some(root(RootKind::Prefix, i, true));
    }
    if is_node && n.len() >= 2 && n[n.len() - 2] == "bin" {
        return Some(root(RootKind::Prefix, n.len() - 2, true));
    }
    None
}

/// `name` of the package a file of `…/node_modules/<name>/…` (or `@scope/name`) belongs to.
pub(crate) fn package_name(path: &Path) -> Option<String> {
    let n = names(path);
    let i = n.iter().rposition(|c| *c == "node_modules")?;
    let first = n.get(i + 1)?;
    if first.starts_with('@') {
        Some(format!("{first}/{}", n.get(i + 2)?))
    } else {
        Some((*first).to_owned())
    }
}

/// The npm package a script belongs to: the nearest `package.json` with a `name`, walking up
/// from the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageInfo {
    pub manifest: PathBuf,
    pub name: String,
    pub version: Option<String>,
}

pub(crate) fn nearest_package(script: &Path) -> Option<PackageInfo> {
    let mut dir = script.parent();
    while let Some(d) = dir {
        let manifest = d.join("package.json");
        if let Some(text) = read_text(&manifest, MAX_MANIFEST_BYTES)
            && let Ok(json) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(name) = json.get("name").and_then(|n| n.as_str())
        {
            return Some(PackageInfo {
                manifest,
                name: name.to_owned(),
                version: json
                    .get("version")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned),
            });
        }
        dir = d.parent();
    }
    None
}

/// Where npm's global prefix came from (npmrc(5), https://docs.npmjs.com/cli/v10/configuring-npm/npmrc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PrefixSource {
    Env(&'static str),
    UserNpmrc(PathBuf),
    GlobalNpmrc(PathBuf),
    BuiltinNpmrc(PathBuf),
    /// `dirname(dirname(realpath(node)))`, or `$PREFIX`.
    Default,
}

impl fmt::Display for PrefixSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrefixSource::Env(var) => write!(f, "${var} in the job's environment"),
            PrefixSource::UserNpmrc(p) => write!(f, "`prefix` in the user npmrc {}", p.display()),
            PrefixSource::GlobalNpmrc(p) => {
                write!(f, "`prefix` in the global npmrc {}", p.display())
            }
            PrefixSource::BuiltinNpmrc(p) => {
                write!(f, "`prefix` in npm's builtin npmrc {}", p.display())
            }
            PrefixSource::Default => f.write_str("npm's default, the directory above node's bin"),
        }
    }
}

/// npm's global prefix for one node, and every npmrc file that could change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NpmPrefix {
    pub prefix: PathBuf,
    pub source: PrefixSource,
    /// The npmrc files consulted, existing or not: what to watch.
    pub npmrc_files: Vec<PathBuf>,
}

impl NpmPrefix {
    /// `<prefix>/lib/node_modules`, where `npm i -g` puts packages (§4.1).
    pub(crate) fn node_modules(&self) -> PathBuf {
        self.prefix.join("lib/node_modules")
    }

    /// Whether `path` (as written, or resolved) is inside `<prefix>/lib/node_modules`.
    pub(crate) fn contains(&self, path: &Path) -> bool {
        let nm = self.node_modules();
        let nm_real = nm.canonicalize().ok();
        let candidates = [Some(path.to_path_buf()), path.canonicalize().ok()];
        candidates
            .iter()
            .flatten()
            .any(|p| p.starts_with(&nm) || nm_real.as_ref().is_some_and(|r| p.starts_with(r)))
    }
}

/// The candidate locations of npm's builtin npmrc for `node`: the npm installed next to it
/// (`<prefix>/lib/node_modules/npm/npmrc`), where for a Cellar node the prefix is Homebrew's,
/// since the formula bootstraps npm into `HOMEBREW_PREFIX/lib/node_modules/npm` and writes
/// `prefix = HOMEBREW_PREFIX` there (Homebrew/homebrew-core Formula/n/node.rb `post_install`).
fn builtin_npmrc_candidates(node: &Path, real: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(c) = cellar_path(real) {
        out.push(c.prefix.join("lib/node_modules/npm/npmrc"));
    }
    for n in [real, node] {
        if let Some(p) = n.parent().and_then(Path::parent) {
            out.push(p.join("lib/node_modules/npm/npmrc"));
        }
    }
    out.dedup();
    out
}

/// npm's global prefix as the given node's npm sees it in the job's environment, following
/// @npmcli/config (npm/cli workspaces/config/lib/index.js), highest first: `npm_config_prefix` /
/// `NPM_CONFIG_PREFIX`; `prefix` in the user npmrc (`$npm_config_userconfig`, else
/// `$HOME/.npmrc`); in the global npmrc (`$npm_config_globalconfig`, else
/// `<builtin-or-default prefix>/etc/npmrc`); in npm's builtin npmrc; else the default,
/// `$PREFIX` or `dirname(dirname(realpath(node)))` (a node reached through a symlink reports
/// its realpath, openclaw#20583). Project npmrc files do not apply to `-g`.
///
/// `None` when node does not exist: there is no realpath to start from.
pub(crate) fn npm_prefix(
    node: &Path,
    env: &BTreeMap<String, String>,
    home: Option<&Path>,
) -> Option<NpmPrefix> {
    let real = node.canonicalize().ok()?;
    let var = |k: &str| env.get(k).filter(|v| !v.is_empty());
    let mut files = Vec::new();

    let default = match var("PREFIX") {
        Some(p) => PathBuf::from(p),
        None => real.parent()?.parent()?.to_path_buf(),
    };

    let builtin_candidates = builtin_npmrc_candidates(node, &real);
    let builtin = builtin_candidates.iter().find(|p| p.is_file()).cloned();
    files.push(
        builtin
            .clone()
            .or_else(|| builtin_candidates.first().cloned())
            .unwrap_or_default(),
    );
    let builtin_prefix = builtin
        .as_deref()
        .and_then(|f| npmrc_prefix(f, env, home).map(|p| (p, f.to_path_buf())));

    let global = match var("npm_config_globalconfig").or_else(|| var("NPM_CONFIG_GLOBALCONFIG")) {
        Some(p) => expand_path(p, env, home, Path::new("/")),
        None => builtin_prefix
            .as_ref()
            .map_or(default.as_path(), |(p, _)| p.as_path())
            .join("etc/npmrc"),
    };
    files.push(global.clone());

    let user = match var("npm_config_userconfig").or_else(|| var("NPM_CONFIG_USERCONFIG")) {
        Some(p) => Some(expand_path(p, env, home, Path::new("/"))),
        None => home.map(|h| h.join(".npmrc")),
    };
    if let Some(u) = &user {
        files.push(u.clone());
    }
    files.retain(|f| !f.as_os_str().is_empty());

    let found = |prefix, source| {
        Some(NpmPrefix {
            prefix,
            source,
            npmrc_files: files.clone(),
        })
    };
    for key in ["npm_config_prefix", "NPM_CONFIG_PREFIX"] {
        if let Some(p) = var(key) {
            return found(
                expand_path(p, env, home, Path::new("/")),
                PrefixSource::Env(key),
            );
        }
    }
    if let Some(u) = &user
        && let Some(p) = npmrc_prefix(u, env, home)
    {
        return found(p, PrefixSource::UserNpmrc(u.clone()));
    }
    if let Some(p) = npmrc_prefix(&global, env, home) {
        return found(p, PrefixSource::GlobalNpmrc(global.clone()));
    }
    if let Some((p, f)) = builtin_prefix {
        return found(p, PrefixSource::BuiltinNpmrc(f));
    }
    found(default, PrefixSource::Default)
}

/// The `prefix` an npmrc file sets at its top level (ini: `key = value`, `;` and `#`
/// comments, `${VAR}` from the environment, a leading `~/` for the home directory).
fn npmrc_prefix(
    file: &Path,
    env: &BTreeMap<String, String>,
    home: Option<&Path>,
) -> Option<PathBuf> {
    let text = read_text(file, MAX_CONFIG_BYTES)?;
    let mut prefix = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            // Keys inside a section are not top-level config.
            break;
        }
        if line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() == "prefix" {
            let value = unquote(value.trim());
            if !value.is_empty() {
                let base = file.parent().unwrap_or(Path::new("/"));
                prefix = Some(expand_path(value, env, home, base));
            }
        }
    }
    prefix
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

/// npm's treatment of a path-typed value: `${VAR}` replaced from the environment, `~/`
/// meaning the home directory, a relative path taken from `base`.
fn expand_path(
    value: &str,
    env: &BTreeMap<String, String>,
    home: Option<&Path>,
    base: &Path,
) -> PathBuf {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start + 2..].find('}') {
            Some(end) => {
                let name = &rest[start + 2..start + 2 + end];
                out.push_str(env.get(name).map(String::as_str).unwrap_or(""));
                rest = &rest[start + 2 + end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    let p = match (out.strip_prefix("~/"), home) {
        (Some(tail), Some(h)) => h.join(tail),
        _ => PathBuf::from(&out),
    };
    if p.is_absolute() { p } else { base.join(p) }
}

/// The simple `KEY=value` / `export KEY=value` assignments of a shell env file, such as the
/// one OpenClaw's env wrapper sources (openclaw/openclaw src/daemon/launchd-plist.ts and docs/platforms/mac/bundled-gateway.md). Best effort: lines that are
/// not plain assignments are skipped.
pub(crate) fn read_env_file(path: &Path) -> BTreeMap<String, String> {
    read_text(path, MAX_CONFIG_BYTES)
        .map(|text| parse_env_file(&text))
        .unwrap_or_default()
}

/// The most a package.json may hold for its name and version to be read.
const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// The most an npmrc or env file may hold.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A regular file's text, read without blocking and with a bound (see
/// [`crate::fsutil::read_regular`]); `None` when it cannot be: these reads are best effort, and
/// the checks that depend on the file report what is wrong with it.
fn read_text(path: &Path, cap: u64) -> Option<String> {
    let bytes = crate::fsutil::read_regular(path, cap).ok()?;
    String::from_utf8(bytes).ok()
}

/// `read_env_file` on text already read.
pub fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        out.insert(key.to_owned(), unquote(value.trim()).to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn layouts_of_openclaw_plists() {
        let sh = argv(&[
            "/bin/sh",
            "/s/service-env/ai.openclaw.gateway-env-wrapper.sh",
            "/s/service-env/ai.openclaw.gateway.env",
            "/opt/homebrew/opt/node/bin/node",
            "/opt/homebrew/lib/node_modules/openclaw/dist/index.js",
            "gateway",
        ]);
        let l = node_layout(&sh).unwrap();
        assert_eq!(
            (l.kind, l.node, l.entry, l.wrapper),
            (LayoutKind::ShWrapper, 3, Some(4), Some((1, 2)))
        );
        let first = argv(&["/s/x-env-wrapper.sh", "/s/x.env", "/n/bin/node", "/e.js"]);
        let l = node_layout(&first).unwrap();
        assert_eq!(
            (l.kind, l.node, l.entry),
            (LayoutKind::WrapperFirst, 2, Some(3))
        );
        let plain = argv(&[
            "/n/bin/node",
            "--max-old-space-size=4096",
            "-r",
            "x",
            "/e.js",
            "gateway",
        ]);
        assert_eq!(node_layout(&plain).unwrap().entry, Some(4));
        assert_eq!(node_layout(&argv(&["/usr/bin/ollama", "serve"])), None);
    }

    #[test]
    fn install_roots() {
        let nvm = install_root(
            Path::new("/h/.nvm/versions/node/v22.22.0/lib/node_modules/openclaw/dist/index.js"),
            false,
        )
        .unwrap();
        assert_eq!(nvm.dir, Path::new("/h/.nvm/versions/node/v22.22.0"));
        let brew =
            install_root(Path::new("/opt/homebrew/Cellar/node/25.5.0/bin/node"), true).unwrap();
        assert!(brew.homebrew && brew.dir == Path::new("/opt/homebrew"));
        let pkg = install_root(
            Path::new("/opt/homebrew/lib/node_modules/openclaw/dist/index.js"),
            false,
        )
        .unwrap();
        assert!(brew.same_install(&pkg));
        assert!(!brew.same_install(&nvm));
        let oc_node =
            install_root(Path::new("/h/.openclaw/tools/node-v24/bin/node"), true).unwrap();
        let oc_pkg = install_root(
            Path::new("/h/.openclaw/lib/node_modules/openclaw/dist/index.js"),
            false,
        )
        .unwrap();
        assert!(oc_node.same_install(&oc_pkg));
        assert_eq!(install_root(Path::new("/srv/app/server.js"), false), None);
    }

    #[test]
    fn cellar_paths_and_their_stable_form() {
        let c = cellar_path(Path::new("/opt/homebrew/Cellar/node/25.5.0/bin/node")).unwrap();
        assert_eq!(c.opt_path(), Path::new("/opt/homebrew/opt/node/bin/node"));
        assert_eq!(
            cellar_path(Path::new("/opt/homebrew/opt/node/bin/node")),
            None
        );
    }

    #[test]
    fn env_file_assignments() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.env");
        std::fs::write(
            &f,
            "# c\nexport HOME='/Users/a'\nPATH=\"/usr/bin:/bin\"\nif true; then\n",
        )
        .unwrap();
        let env = read_env_file(&f);
        assert_eq!(env.get("HOME").unwrap(), "/Users/a");
        assert_eq!(env.get("PATH").unwrap(), "/usr/bin:/bin");
        assert_eq!(env.len(), 2);
    }

    #[test]
    fn npmrc_values_expand() {
        let env = BTreeMap::from([("X".to_string(), "/x".to_string())]);
        assert_eq!(
            expand_path("${X}/y", &env, None, Path::new("/")),
            Path::new("/x/y")
        );
        assert_eq!(
            expand_path("~/g", &env, Some(Path::new("/h")), Path::new("/")),
            Path::new("/h/g")
        );
        assert_eq!(
            expand_path("rel", &env, None, Path::new("/b")),
            Path::new("/b/rel")
        );
    }
}
