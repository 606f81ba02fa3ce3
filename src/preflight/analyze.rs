//! The checks themselves: one pass over what a unit's start will execute, producing both the
//! findings and the resolved [`Target`] (the paths that matter, for watchers and fingerprints).
//!
//! Order follows what launchd or the process layer does at start: the plist file, the program,
//! its `#!` interpreter, OpenClaw's wrapper and env file, node and its entry script (with the
//! install-root and npm-prefix rules of openclaw/openclaw src/daemon/launchd-plist.ts and docs/platforms/mac/bundled-gateway.md, openclaw/openclaw#58111 and #107074, and npm/cli workspaces/config/lib/index.js; https://docs.npmjs.com/cli/v10/configuring-npm/npmrc), the working
//! directory and log directories, and last the takeover rules.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::context::PreflightContext;
use super::finding::{Finding, FindingCode, Severity};
use super::job::{self, Access, Job, Source, permits};
use super::node::{self, RootKind, VersionManager};
use super::shebang::{self, Interpreter};
use super::{plist, takeover};
use crate::unit::{CANONICAL_PATH, Domain, Runner, Unit};

/// What a start of a unit will execute, resolved as far as the files allow. Paths are as
/// written in the plist or unit (absolute ones only); a `None` is something the job does not
/// have or that could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub plist: Option<PathBuf>,
    /// `Program` / `ProgramArguments[0]` / `command[0]`.
    pub program: Option<PathBuf>,
    /// The program's `#!` interpreter; for `#!/usr/bin/env NAME`, NAME as found on the job's
    /// PATH.
    pub interpreter: Option<PathBuf>,
    /// OpenClaw's env wrapper and the env file it sources (openclaw/openclaw src/daemon/launchd-plist.ts and docs/platforms/mac/bundled-gateway.md).
    pub wrapper: Option<PathBuf>,
    pub env_file: Option<PathBuf>,
    pub node: Option<PathBuf>,
    /// The script node runs.
    pub entry: Option<PathBuf>,
    /// npm's global prefix for that node, as npm computes it for the job.
    pub npm_prefix: Option<PathBuf>,
    /// The npmrc files that decide it, existing or not.
    pub npmrc_files: Vec<PathBuf>,
    /// The PATH the job gets.
    pub path_var: String,
    /// The job's HOME, as far as known.
    pub home: Option<PathBuf>,
    /// The uid and primary gid the job runs as, when known.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Runs every check of one unit.
pub(crate) fn analyze(unit: &Unit, ctx: &PreflightContext) -> (Target, Vec<Finding>) {
    let mut a = Analyzer {
        findings: Vec::new(),
        target: Target::default(),
        hazards_seen: BTreeSet::new(),
        openclaw: false,
        accounts: ctx.accounts.clone(),
    };
    match &unit.runner {
        Runner::Launchd(spec) => {
            a.target.plist = Some(spec.plist.clone());
            a.openclaw = spec.label.0.starts_with("ai.openclaw.");
            let file = match plist::read(spec) {
                Ok(f) => f,
                Err(f) => {
                    a.findings.push(f);
                    return (a.target, a.findings);
                }
            };
            a.findings.extend(plist::name(spec));
            // A fixed user domain is checked here; `gui/console` at each start, against
            // whoever is at the console then (the launchd backend).
            let other_user = match spec.domain {
                Domain::Gui(uid) | Domain::User(uid) => {
                    super::agent_user::other_user(spec, file.meta.uid(), uid, ctx.accounts.as_ref())
                }
                Domain::GuiConsole | Domain::System => None,
            };
            // Its fix is the domain, not a chown of one user's plist to another user.
            let owner_reported = other_user.is_some();
            a.findings.extend(other_user);
            a.findings
                .extend(plist::ownership(spec, &file.meta, owner_reported));
            let dict = match file.dict {
                Ok(d) => d,
                Err(f) => {
                    a.findings.push(f);
                    return (a.target, a.findings);
                }
            };
            a.findings.extend(plist::label(spec, &dict));
            match job::from_plist(&spec.plist, &dict, &spec.domain, Some(file.meta.uid()), ctx) {
                Some(job) => a.job(&job),
                None => a.findings.push(Finding::new(
                    FindingCode::PlistNoProgram,
                    Some(spec.plist.clone()),
                    format!(
                        "the plist {} has neither a Program string nor a non-empty \
                         ProgramArguments array of strings: launchd has nothing to run",
                        spec.plist.display()
                    ),
                    "add ProgramArguments with the absolute path of the program first, or \
                     reinstall the service that owns the plist",
                )),
            }
            a.findings.extend(takeover::check(unit, spec, &dict));
        }
        Runner::Exec(spec) => {
            let job = job::from_exec(&unit.file, spec, ctx);
            a.job(&job);
        }
        // launchgraph executes nothing for it: there is nothing to check before a start.
        Runner::External(_) => {}
    }
    (a.target, a.findings)
}

/// Programs that fail without HOME in their environment. Ollama is written in Go, whose
/// `os.UserHomeDir` reads only `$HOME` on Unix (https://pkg.go.dev/os#UserHomeDir); `ollama
/// serve` keeps its models and key under it and exits before it listens without one. node
/// (OpenClaw, npm) is not among them: its `os.homedir()` falls back to the user database.
const NEEDS_HOME: &[&str] = &["ollama"];

struct Analyzer {
    findings: Vec<Finding>,
    target: Target,
    /// (code, path) already reported, so one path named twice is reported once.
    hazards_seen: BTreeSet<(FindingCode, PathBuf)>,
    /// The job is OpenClaw's, whose fixes go through `openclaw gateway install --force`.
    openclaw: bool,
    /// For naming the owners of exposed paths.
    accounts: std::sync::Arc<dyn super::context::Accounts>,
}

/// One path the job runs, and where it is named.
struct Named<'j> {
    role: &'static str,
    key: String,
    raw: &'j str,
}

impl Analyzer {
    /// `HOME_MISSING`: a program of [`NEEDS_HOME`] that will run without HOME.
    fn home_needed(&mut self, job: &Job) {
        let Some(name) = Path::new(&job.argv[0]).file_name().and_then(|n| n.to_str()) else {
            return;
        };
        if job.home_in_env || !NEEDS_HOME.contains(&name) {
            return;
        }
        let (why, fix) = match &job.source {
            Source::Plist { .. } => (
                "launchd gives a LaunchDaemon without UserName no HOME",
                "run it as its user: `sudo brew services start --sudo-service-user=USER ollama` \
                 (Homebrew then writes UserName, and leaves the keg's ownership alone), or add \
                 UserName, or HOME to EnvironmentVariables",
            ),
            Source::Command { .. } => (
                "an exec unit gets exactly its env, plus PATH, and HOME only with `user`",
                "set `user` to the account whose home holds its files, or HOME in `env`",
            ),
        };
        self.findings.push(Finding::new(
            FindingCode::HomeMissing,
            absolute(&job.argv[0]),
            format!(
                "{} needs HOME in its environment and {why}: `{name} serve` exits before it \
                 listens, and the job restarts for ever",
                job.argv[0]
            ),
            fix,
        ));
    }

    fn job(&mut self, job: &Job) {
        self.target.path_var = job.path_var().to_owned();
        self.target.home = job.home().map(Path::to_path_buf);
        self.target.uid = job.run_as.as_ref().map(|r| r.uid);
        self.target.gid = job.run_as.as_ref().and_then(|r| r.gid);
        let argv = &job.argv;
        if argv.is_empty() {
            // Unit loading and plist reading never produce one; nothing to check.
            return;
        }
        let layout = node::node_layout(argv);
        self.openclaw |= layout.as_ref().is_some_and(|l| l.wrapper.is_some())
            || argv.iter().any(|a| a.contains("/node_modules/openclaw/"));

        self.home_needed(job);

        // The program.
        let program = self.executable(
            job,
            Named {
                role: "program",
                key: job.arg_key(0),
                raw: &argv[0],
            },
        );
        self.target.program = absolute(&argv[0]);

        // Its `#!` interpreter; a script node runs is a node + entry pair too.
        let mut script_node = None;
        if let Some(program) = &program {
            script_node = self.interpreter(job, program);
        }

        // OpenClaw's env wrapper layouts (§1.5): the env file can carry HOME and npm settings.
        let mut npm_env = job.env.clone();
        if let Some(l) = &layout
            && let Some((w, e)) = l.wrapper
        {
            self.target.wrapper = absolute(&argv[w]);
            if w != 0 {
                self.readable(
                    job,
                    Named {
                        role: "env wrapper",
                        key: job.arg_key(w),
                        raw: &argv[w],
                    },
                );
            }
            self.target.env_file = absolute(&argv[e]);
            let key = job.arg_key(e);
            if let Some((env_file, meta)) = self.existing(
                job,
                Named {
                    role: "env file",
                    key: key.clone(),
                    raw: &argv[e],
                },
            ) {
                if meta.is_file() {
                    npm_env.extend(node::read_env_file(&env_file));
                } else {
                    // The wrapper's `.` would wait on a FIFO, or read a device forever.
                    self.findings.push(Finding::new(
                        FindingCode::EntryNotReadable,
                        Some(env_file.clone()),
                        format!(
                            "env file {} ({key} in {}) is {}, expected a regular file",
                            env_file.display(),
                            job.declared_in(),
                            crate::fsutil::kind_of(&meta.file_type())
                        ),
                        format!(
                            "put a regular file at {} (or fix {key})",
                            env_file.display()
                        ),
                    ));
                }
            }
        }

        // node and its entry script.
        let pair = match &layout {
            Some(l) => {
                let node = if l.node == 0 {
                    program.clone()
                } else {
                    self.executable(
                        job,
                        Named {
                            role: "node",
                            key: job.arg_key(l.node),
                            raw: &argv[l.node],
                        },
                    )
                };
                self.target.node = absolute(&argv[l.node]);
                let entry = l.entry.and_then(|i| {
                    self.target.entry = absolute(&argv[i]);
                    self.readable(
                        job,
                        Named {
                            role: "entry script",
                            key: job.arg_key(i),
                            raw: &argv[i],
                        },
                    )
                    .map(|p| (p, job.arg_key(i)))
                });
                node.zip(entry)
                    .map(|(n, (e, ek))| (n, job.arg_key(l.node), e, ek))
            }
            None => script_node.map(|(node, script)| {
                self.target.node = Some(node.clone());
                self.target.entry = Some(script.clone());
                (node, "the #! line".to_owned(), script, job.arg_key(0))
            }),
        };
        if let Some((node, node_key, entry, entry_key)) = pair {
            self.install(job, &npm_env, &node, &node_key, &entry, &entry_key);
        } else if let Some(node) = self.target.node.clone().filter(|n| n.exists()) {
            // No entry to compare, but the prefix still names the npmrc files to watch.
            let home = npm_env.get("HOME").map(PathBuf::from);
            if let Some(p) = node::npm_prefix(&node, &npm_env, home.as_deref()) {
                self.target.npm_prefix = Some(p.prefix.clone());
                self.target.npmrc_files = p.npmrc_files;
            }
        }

        self.path_var(job);
        self.directories(job);
    }

    fn missing_code(job: &Job) -> FindingCode {
        if job.is_plist() {
            FindingCode::PlistPathMissing
        } else {
            FindingCode::CommandPathMissing
        }
    }

    /// How to repair a path the job names: `to` says what to point it at.
    fn repoint(&self, job: &Job, key: &str, to: &str) -> String {
        if !job.is_plist() {
            return format!("fix {key} in {}: point it at {to}", job.declared_in());
        }
        let mut fix = format!("edit {key} in {} to {to}", job.declared_in());
        if self.openclaw {
            fix.push_str(
                ", or regenerate the service with `openclaw gateway install --force`, run with \
                 the intended node first on PATH",
            );
        } else {
            fix.push_str(", or reinstall the service that owns the plist");
        }
        fix
    }

    /// Absolute and existing: the path and its metadata. Reports what is wrong otherwise,
    /// and the path hazards (Cellar, version manager) either way.
    fn existing(&mut self, job: &Job, n: Named<'_>) -> Option<(PathBuf, Metadata)> {
        let path = PathBuf::from(n.raw);
        if !path.is_absolute() {
            // launchd.plist(5), https://keith.github.io/xcode-man-pages/launchd.plist.5.html: without Program, a relative ProgramArguments[0] is resolved on
            // _PATH_STDPATH; openclaw#40659: a bare `node` exits 78.
            // Who resolves a relative path depends on which argument it is: launchd only
            // looks up the program itself; an entry script is opened by node relative to the
            // working directory; node after OpenClaw's wrapper is found by the wrapper's
            // `exec` on the job's PATH. Each is a hazard, explained by what really happens.
            let why = match (n.role, job.is_plist()) {
                ("program", true) => {
                    "launchd resolves a relative program on its standard path \
                     (/usr/bin:/bin:/usr/sbin:/sbin), not on the plist's PATH (a bare `node` \
                     exits 78, openclaw#40659)"
                }
                ("program", false) => "units never search PATH for their program",
                ("entry script", _) => {
                    "node opens it relative to the job's working directory, which an upgrade \
                     or a changed WorkingDirectory silently repoints"
                }
                ("node", _) => {
                    "the wrapper's `exec` looks it up on the job's PATH, which may hold another \
                     node than the one the package was installed with"
                }
                _ => "it depends on the directory or PATH the job happens to have",
            };
            let example = if n.role == "node" || n.raw.rsplit('/').next() == Some("node") {
                " such as /opt/homebrew/opt/node/bin/node"
            } else {
                ""
            };
            self.findings.push(Finding::new(
                FindingCode::ProgramNotAbsolute,
                None,
                format!(
                    "{} {:?} ({} in {}) is not an absolute path: {why}",
                    n.role,
                    n.raw,
                    n.key,
                    job.declared_in()
                ),
                format!("write an absolute path{example} in {}", n.key),
            ));
            return None;
        }
        self.hazards(job, &n, &path);
        match std::fs::metadata(&path) {
            Ok(meta) => {
                self.exposure(job, &n, &path);
                Some((path, meta))
            }
            Err(e) => {
                let mut message = format!(
                    "{} {} ({} in {}) ",
                    n.role,
                    path.display(),
                    n.key,
                    job.declared_in()
                );
                if e.kind() == std::io::ErrorKind::NotFound {
                    message.push_str("does not exist");
                } else {
                    message.push_str(&format!("cannot be examined: {e}"));
                }
                if let Ok(target) = std::fs::read_link(&path) {
                    message.push_str(&format!(
                        " (it is a symlink to {}, which is gone)",
                        target.display()
                    ));
                }
                let fix = match node::cellar_path(&path) {
                    Some(c) => {
                        message.push_str(&format!(
                            "; it was inside Homebrew's Cellar, which `brew upgrade {}` \
                             replaced (openclaw#20583)",
                            c.formula
                        ));
                        let stable = format!(
                            "the stable {}, which survives upgrades",
                            c.opt_path().display()
                        );
                        self.repoint(job, &n.key, &stable)
                    }
                    None => self.repoint(job, &n.key, "an existing path"),
                };
                self.findings.push(Finding::new(
                    Self::missing_code(job),
                    Some(path),
                    message,
                    fix,
                ));
                None
            }
        }
    }

    /// Existing, a regular file, executable by the job's user.
    fn executable(&mut self, job: &Job, n: Named<'_>) -> Option<PathBuf> {
        let (role, key) = (n.role, n.key.clone());
        let (path, meta) = self.existing(job, n)?;
        if meta.is_file() && permits(&meta, job.run_as.as_ref(), Access::Execute) {
            return Some(path);
        }
        let (why, fix) = if meta.is_dir() {
            (
                "is a directory".to_owned(),
                format!("point {key} at the program itself"),
            )
        } else {
            (
                format!(
                    "is not executable by {} (mode {:04o})",
                    who(job),
                    meta.permissions().mode() & 0o7777
                ),
                format!("chmod +x {} (or fix {key})", path.display()),
            )
        };
        self.findings.push(Finding::new(
            FindingCode::ProgramNotExecutable,
            Some(path.clone()),
            format!(
                "{role} {} ({key} in {}) {why}",
                path.display(),
                job.declared_in()
            ),
            fix,
        ));
        None
    }

    /// Existing, a regular file, readable by the job's user.
    fn readable(&mut self, job: &Job, n: Named<'_>) -> Option<PathBuf> {
        let (role, key) = (n.role, n.key.clone());
        let (path, meta) = self.existing(job, n)?;
        if meta.is_file() && permits(&meta, job.run_as.as_ref(), Access::Read) {
            return Some(path);
        }
        let why = if meta.is_dir() {
            "is a directory, not a script".to_owned()
        } else if !meta.is_file() {
            format!(
                "is {}, expected a regular file",
                crate::fsutil::kind_of(&meta.file_type())
            )
        } else {
            format!(
                "is not readable by {} (mode {:04o})",
                who(job),
                meta.permissions().mode() & 0o7777
            )
        };
        self.findings.push(Finding::new(
            FindingCode::EntryNotReadable,
            Some(path.clone()),
            format!(
                "{role} {} ({key} in {}) {why}",
                path.display(),
                job.declared_in()
            ),
            if meta.is_dir() {
                format!("point {key} at the script file (e.g. …/dist/index.js)")
            } else if !meta.is_file() {
                format!("put a regular file at {} (or fix {key})", path.display())
            } else {
                format!("chmod a+r {} (or fix {key})", path.display())
            },
        ));
        None
    }

    /// A versioned Cellar path, a version manager's path: fragile, not broken.
    fn hazards(&mut self, job: &Job, n: &Named<'_>, path: &Path) {
        if let Some(c) = node::cellar_path(path)
            && self
                .hazards_seen
                .insert((FindingCode::CellarVersionedPath, path.to_path_buf()))
        {
            let fix = match node::package_name(path) {
                Some(pkg) if c.rest.starts_with("lib/node_modules") => format!(
                    "install {pkg} under the npm prefix with Homebrew's npm (`{} install -g \
                     {pkg}`) and point {} at {} (openclaw#107074)",
                    c.prefix.join("bin/npm").display(),
                    n.key,
                    c.prefix.join(&c.rest).display()
                ),
                _ => format!(
                    "point {} at the stable {} (or {}), which survives `brew upgrade`",
                    n.key,
                    c.opt_path().display(),
                    c.prefix
                        .join("bin")
                        .join(c.rest.file_name().unwrap_or_default())
                        .display()
                ),
            };
            let fix = if job.is_plist() && self.openclaw {
                format!(
                    "{fix}; for OpenClaw, `openclaw gateway install --force` run with {} \
                     first on PATH writes the stable path",
                    c.prefix.join("bin").display()
                )
            } else {
                fix
            };
            self.findings.push(Finding::new(
                FindingCode::CellarVersionedPath,
                Some(path.to_path_buf()),
                format!(
                    "{} {} ({} in {}) is inside the versioned Homebrew Cellar directory {}, \
                     which the next `brew upgrade {}` removes (openclaw#20583, #107074)",
                    n.role,
                    path.display(),
                    n.key,
                    job.declared_in(),
                    c.prefix
                        .join("Cellar")
                        .join(&c.formula)
                        .join(&c.version)
                        .display(),
                    c.formula
                ),
                fix,
            ));
        }
        // OpenClaw's doctor (§17 of its gateway docs) warns about the same paths.
        if let Some(vm) = node::version_manager(path)
            && self
                .hazards_seen
                .insert((FindingCode::VersionManagerPath, path.to_path_buf()))
        {
            self.findings.push(Finding::new(
                FindingCode::VersionManagerPath,
                Some(path.to_path_buf()),
                format!(
                    "{} {} ({} in {}) comes from {vm}, a Node version manager: switching or \
                     removing that version breaks the job (`openclaw doctor` warns about it too)",
                    n.role,
                    path.display(),
                    n.key,
                    job.declared_in()
                ),
                format!(
                    "run the service on a system node (Homebrew: `brew install node`, then \
                     /opt/homebrew/opt/node/bin/node) with the package installed by that \
                     node's npm{}",
                    if self.openclaw {
                        "; for OpenClaw, `openclaw gateway install --force` run with that node \
                         first on PATH"
                    } else {
                        ""
                    }
                ),
            ));
        }
    }

    /// For a job that runs as root: a path it runs or reads that a non-root user may
    /// replace, through its own owner or mode or a directory above it
    /// (`WRITABLE_BY_NON_ROOT`). A job that runs as another user is that user's business.
    fn exposure(&mut self, job: &Job, n: &Named<'_>, path: &Path) {
        if job.run_as.as_ref().is_none_or(|r| r.uid != 0) {
            return;
        }
        let exposed = super::exposure::exposed(path);
        let Some(first) = exposed.first() else {
            return;
        };
        if !self
            .hazards_seen
            .insert((FindingCode::WritableByNonRoot, path.to_path_buf()))
        {
            return;
        }
        let name_of = |uid: u32| self.accounts.by_uid(uid).map(|u| u.name);
        let why: Vec<String> = exposed.iter().map(|e| e.describe(name_of)).collect();
        let run_as = if job.is_plist() {
            "set UserName to the user that owns it (a LaunchDaemon runs as root without it)"
        } else {
            "set `user` in the unit to the user that owns it"
        };
        self.findings.push(Finding::new(
            FindingCode::WritableByNonRoot,
            Some(first.path.clone()),
            format!(
                "{} {} ({} in {}) runs as root, but {}: a user other than root can replace \
                 what root runs",
                n.role,
                path.display(),
                n.key,
                job.declared_in(),
                why.join("; ")
            ),
            format!(
                "make it root's: `sudo chown root {}` and `sudo chmod go-w {}` for each path \
                 named (for Intel Homebrew under /usr/local, install the program outside the \
                 prefix instead); or {run_as}",
                first.path.display(),
                first.path.display()
            ),
        ));
    }

    /// The program's `#!` line. Returns (node, script) when the interpreter is node.
    fn interpreter(&mut self, job: &Job, program: &Path) -> Option<(PathBuf, PathBuf)> {
        let interp = shebang::read(program)?;
        let key = job.arg_key(0);
        let (found, name) = match interp {
            Interpreter::Direct(path) => {
                if !path.is_absolute() || !shebang::is_executable_file(&path) {
                    self.findings.push(Finding::new(
                        FindingCode::ShebangInterpreterMissing,
                        Some(path.clone()),
                        format!(
                            "program {} starts with `#!{}`, which {}: exec fails before the \
                             script runs",
                            program.display(),
                            path.display(),
                            if path.is_absolute() && path.exists() {
                                "is not an executable file"
                            } else if path.is_absolute() {
                                "does not exist"
                            } else {
                                "is not an absolute path"
                            }
                        ),
                        format!(
                            "make {key} the absolute path of an existing interpreter, followed \
                             by the script (e.g. /opt/homebrew/opt/node/bin/node {}), or fix \
                             the script's #! line",
                            program.display()
                        ),
                    ));
                    return None;
                }
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (path, name)
            }
            Interpreter::Env {
                env,
                name,
                path_override,
            } => {
                if !shebang::is_executable_file(&env) {
                    self.findings.push(Finding::new(
                        FindingCode::ShebangInterpreterMissing,
                        Some(env.clone()),
                        format!(
                            "program {} starts with `#!{} {name}`, and {} does not exist or is \
                             not executable",
                            program.display(),
                            env.display(),
                            env.display()
                        ),
                        format!("make {key} the absolute path of {name}, followed by the script"),
                    ));
                    return None;
                }
                let (path_var, origin) = match &path_override {
                    Some(p) => (p.as_str(), "the #! line itself"),
                    None => (job.path_var(), job.path_origin),
                };
                match shebang::lookup(&name, path_var) {
                    Some(found) => (found, name),
                    None => {
                        self.not_on_path(job, program, &env, &name, path_var, origin);
                        return None;
                    }
                }
            }
        };
        self.target.interpreter = Some(found.clone());
        let key = format!("the #! line of {}", program.display());
        self.hazards(
            job,
            &Named {
                role: "interpreter",
                key,
                raw: "",
            },
            &found,
        );
        (name == "node").then(|| (found, program.to_path_buf()))
    }

    /// `#!/usr/bin/env NAME` with no NAME on the job's PATH: exit 127 (openclaw#74944).
    fn not_on_path(
        &mut self,
        job: &Job,
        program: &Path,
        env: &Path,
        name: &str,
        path_var: &str,
        origin: &str,
    ) {
        let key = job.arg_key(0);
        // Where NAME most likely belongs: next to the script (npm links a package's bin next
        // to the node that installed it), in the bin of the install the script is part of,
        // else on the canonical PATH.
        let real = program
            .canonicalize()
            .unwrap_or_else(|_| program.to_path_buf());
        let near: Vec<String> = [
            program.parent().map(Path::to_path_buf),
            node::install_root(&real, false).map(|r| r.dir.join("bin")),
        ]
        .into_iter()
        .flatten()
        .map(|d| d.display().to_string())
        .collect();
        let elsewhere = shebang::lookup(name, &near.join(":"))
            .or_else(|| shebang::lookup(name, CANONICAL_PATH));
        let mut fix = match &elsewhere {
            Some(found) => format!(
                "make {key} the absolute path of {name} ({} here) followed by the script, so \
                 no PATH lookup is needed",
                found.display()
            ),
            None => format!(
                "make {key} the absolute path of {name} (e.g. /opt/homebrew/opt/node/bin/node) \
                 followed by the script, so no PATH lookup is needed"
            ),
        };
        let dir = elsewhere
            .as_ref()
            .and_then(|f| f.parent())
            .map_or("/opt/homebrew/bin".to_owned(), |d| d.display().to_string());
        fix.push_str(&if job.is_plist() {
            format!(
                "; or set PATH in the plist's EnvironmentVariables to one that includes {dir}, \
                 e.g. {CANONICAL_PATH}"
            )
        } else {
            format!("; or set PATH in the unit's env to one that includes {dir}")
        });
        self.findings.push(Finding::new(
            FindingCode::ShebangInterpreterNotOnPath,
            Some(program.to_path_buf()),
            format!(
                "program {} starts with `#!{} {name}`, and no {name} is on the PATH the job \
                 gets, {path_var:?} ({origin}): env fails with `env: {name}: No such file or \
                 directory`, exit 127 (openclaw#74944)",
                program.display(),
                env.display()
            ),
            fix,
        ));
    }

    /// node and its entry from one install, and the entry under that node's npm prefix
    /// (openclaw/openclaw#58111, #117566, #107074).
    fn install(
        &mut self,
        job: &Job,
        npm_env: &BTreeMap<String, String>,
        node: &Path,
        node_key: &str,
        entry: &Path,
        entry_key: &str,
    ) {
        let home = npm_env.get("HOME").map(PathBuf::from);
        let Some(prefix) = node::npm_prefix(node, npm_env, home.as_deref()) else {
            return;
        };
        self.target.npm_prefix = Some(prefix.prefix.clone());
        self.target.npmrc_files = prefix.npmrc_files.clone();

        let node_real = node.canonicalize().unwrap_or_else(|_| node.to_path_buf());
        let node_root =
            node::install_root(&node_real, true).or_else(|| node::install_root(node, true));
        let entry_root = node::install_root(entry, false).or_else(|| {
            entry
                .canonicalize()
                .ok()
                .and_then(|r| node::install_root(&r, false))
        });
        // A script outside any global-install layout (a project checkout, pnpm's store) has
        // no install to compare.
        let (Some(node_root), Some(entry_root)) = (node_root, entry_root) else {
            return;
        };
        if prefix.contains(entry) {
            return;
        }
        let pkg = node::package_name(entry).unwrap_or_else(|| "the package".to_owned());
        let npm = node.with_file_name("npm");
        let install = format!(
            "install {pkg} with this node's npm (`{} install -g {pkg}`) and point {entry_key} \
             at its copy under {}",
            npm.display(),
            prefix.node_modules().display()
        );
        let openclaw = if self.openclaw && job.is_plist() {
            "; for OpenClaw, `openclaw gateway install --force` run with the intended node \
             first on PATH rewrites both paths"
        } else {
            ""
        };
        if !node_root.same_install(&entry_root) {
            self.findings.push(Finding::new(
                FindingCode::MixedInstallRoots,
                Some(entry.to_path_buf()),
                format!(
                    "node {} ({node_key}) is from {node_root}, but the entry {} ({entry_key}) is \
                     from {entry_root}; npm's global prefix for this node is {} ({}), so the job \
                     runs a copy the current install no longer updates (openclaw#58111, \
                     #117566)",
                    node.display(),
                    entry.display(),
                    prefix.prefix.display(),
                    prefix.source
                ),
                format!(
                    "converge on one install: {install}{openclaw}; or point {node_key} at the \
                     node of {entry_root}"
                ),
            ));
            return;
        }
        // Volta and OpenClaw's installer keep packages outside node's prefix by design.
        let npm_managed = matches!(
            node_root.kind,
            RootKind::Prefix
                | RootKind::Manager(VersionManager::Nvm)
                | RootKind::Manager(VersionManager::Fnm)
                | RootKind::Manager(VersionManager::Asdf)
        );
        if npm_managed {
            // npm's prefix inside a keg means Homebrew's builtin npmrc is gone: installing
            // there is the Cellar trap again (openclaw#107074).
            let fix = match node::cellar_path(&prefix.prefix) {
                Some(c) => format!(
                    "restore Homebrew's builtin npmrc: `brew postinstall {}` writes `prefix = \
                     {}` into {}; until then `npm install -g` installs into the versioned \
                     keg",
                    c.formula,
                    c.prefix.display(),
                    c.prefix.join("lib/node_modules/npm/npmrc").display()
                ),
                None => format!(
                    "{install}{openclaw}{}",
                    match &prefix.source {
                        node::PrefixSource::Env(v) => {
                            format!("; or unset {v} in the job's environment")
                        }
                        node::PrefixSource::UserNpmrc(p) | node::PrefixSource::GlobalNpmrc(p) => {
                            format!("; or remove the `prefix` line from {}", p.display())
                        }
                        node::PrefixSource::BuiltinNpmrc(_) | node::PrefixSource::Default => {
                            String::new()
                        }
                    }
                ),
            };
            self.findings.push(Finding::new(
                FindingCode::EntryOutsideNpmPrefix,
                Some(entry.to_path_buf()),
                format!(
                    "the entry {} ({entry_key}) is outside {}, where npm puts global packages \
                     for node {}: its global prefix is {} ({}), so `npm install -g` updates \
                     another copy (openclaw#107074, #149382)",
                    entry.display(),
                    prefix.node_modules().display(),
                    node.display(),
                    prefix.prefix.display(),
                    prefix.source
                ),
                fix,
            ));
        }
    }

    /// Version-manager directories on the job's PATH make which node runs depend on them
    /// (openclaw#75233).
    fn path_var(&mut self, job: &Job) {
        let dirs: Vec<&str> = job
            .path_var()
            .split(':')
            .filter(|d| node::version_manager(Path::new(d)).is_some())
            .collect();
        if dirs.is_empty() {
            return;
        }
        let (where_, key) = if job.is_plist() {
            (
                "the plist's EnvironmentVariables",
                "PATH in EnvironmentVariables",
            )
        } else {
            ("the unit's env", "PATH in the unit's env")
        };
        self.findings.push(Finding::new(
            FindingCode::VersionManagerPath,
            None,
            format!(
                "the PATH in {where_} ({}) holds Node version-manager directories: {}; which \
                 node the job and its children find depends on them (openclaw#75233)",
                job.declared_in(),
                dirs.join(", ")
            ),
            format!("set {key} to the canonical {CANONICAL_PATH}"),
        ));
    }

    /// The working directory and the directories of the log files.
    fn directories(&mut self, job: &Job) {
        if let Some((key, dir)) = &job.working_dir
            && !dir.is_dir()
        {
            self.findings.push(Finding::new(
                FindingCode::WorkingDirectoryMissing,
                Some(dir.clone()),
                format!(
                    "{key} {} ({}) {}: the job cannot start there",
                    dir.display(),
                    job.declared_in(),
                    if dir.exists() {
                        "is not a directory"
                    } else {
                        "does not exist"
                    }
                ),
                format!(
                    "create it (`mkdir -p {}`, owned by the job's user) or fix {key}",
                    dir.display()
                ),
            ));
        }
        // One finding per directory: stdout and stderr often share one.
        let mut missing: Vec<(PathBuf, Vec<String>)> = Vec::new();
        for (key, log) in &job.logs {
            let Some(dir) = log.parent().filter(|d| !d.as_os_str().is_empty()) else {
                continue;
            };
            if dir.is_dir() {
                continue;
            }
            let named = format!("{key} {}", log.display());
            match missing.iter_mut().find(|(d, _)| d == dir) {
                Some((_, keys)) => keys.push(named),
                None => missing.push((dir.to_path_buf(), vec![named])),
            }
        }
        for (dir, keys) in missing {
            let keys = keys.join(" and ");
            let finding = if !job.is_plist() {
                Finding::new(
                    FindingCode::LogDirectoryMissing,
                    Some(dir.clone()),
                    format!(
                        "the directory {} of {keys} ({}) does not exist; launchgraph creates \
                         it (mode 0750) at start",
                        dir.display(),
                        job.declared_in()
                    ),
                    format!(
                        "nothing is needed; create it (`mkdir -p {}`) to choose its owner and \
                         mode",
                        dir.display()
                    ),
                )
                .with_severity(Severity::Info)
            } else {
                match creatable(&dir, job) {
                    // launchd creates a missing log directory when it can, and fails the
                    // spawn with 78 (EX_CONFIG) when the job's user may not write to the
                    // parent (github.com/LrGenius/LrGeniusAI/pull/298, observed with a
                    // LaunchAgent under root-owned /Library/Logs).
                    Ok(parent) => Finding::new(
                        FindingCode::LogDirectoryMissing,
                        Some(dir.clone()),
                        format!(
                            "the directory {} of {keys} ({}) does not exist; launchd creates \
                             it at start, since {} may write to {}",
                            dir.display(),
                            job.declared_in(),
                            who(job),
                            parent.display()
                        ),
                        format!(
                            "nothing is needed; create it (`mkdir -p {}`, owned by the job's \
                             user) to choose its owner and mode",
                            dir.display()
                        ),
                    )
                    .with_severity(Severity::Warning),
                    Err(why) => Finding::new(
                        FindingCode::LogDirectoryMissing,
                        Some(dir.clone()),
                        format!(
                            "the directory {} of {keys} ({}) does not exist, and launchd cannot \
                             create it: {why}; launchd fails the spawn with 78 (EX_CONFIG) and \
                             the job never starts (LrGenius/LrGeniusAI#298)",
                            dir.display(),
                            job.declared_in()
                        ),
                        format!(
                            "create it (`sudo mkdir -p {}`, owned by the job's user) or point \
                             the key at a directory that user owns",
                            dir.display()
                        ),
                    ),
                }
            };
            self.findings.push(finding);
        }
    }
}

/// Whether launchd, creating a missing directory as the job's user, can create `dir`: its
/// nearest existing ancestor must be a directory that user may write to and search. That
/// ancestor, or why not.
fn creatable(dir: &Path, job: &Job) -> Result<PathBuf, String> {
    let who = job.run_as.as_ref();
    for ancestor in dir.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(ancestor) else {
            continue;
        };
        if !meta.is_dir() {
            return Err(format!("{} is not a directory", ancestor.display()));
        }
        if permits(&meta, who, Access::Write) && permits(&meta, who, Access::Execute) {
            return Ok(ancestor.to_path_buf());
        }
        return Err(format!(
            "{} may not write to {} (owner uid {}, mode {:o})",
            self::who(job),
            ancestor.display(),
            meta.uid(),
            meta.permissions().mode() & 0o7777
        ));
    }
    Err("no parent of it exists".to_owned())
}

fn absolute(raw: &str) -> Option<PathBuf> {
    let p = PathBuf::from(raw);
    p.is_absolute().then_some(p)
}

fn who(job: &Job) -> String {
    match &job.run_as {
        Some(r) => format!("the job's user (uid {})", r.uid),
        None => "anyone".to_owned(),
    }
}
