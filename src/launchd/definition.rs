//! What launchd has loaded, against what the plist file says now.
//!
//! launchd reads a plist only at bootstrap. After `brew services` or
//! `openclaw gateway install --force` rewrites a plist, or an admin edits one, the loaded job
//! keeps the old program, arguments, KeepAlive and exit timeout until `bootout` and
//! `bootstrap`; `kickstart -k` restarts the old argv (github.com/openclaw/openclaw/pull/34829,
//! "after plist edits/version upgrades, do a full reload"; github.com/jackielii/skhd.zig/issues/30,
//! an edited plist that did not take effect), and launchd can keep a definition whose plist
//! was deleted (openclaw/openclaw `src/daemon/launchd-install.ts`).
//!
//! This module only compares: [`FileDefinition`] is read from a plist dictionary, the loaded
//! side is a parsed `print` ([`ServiceInfo`]), and [`drift`] lists what differs. A key `print`
//! did not show is not compared: its output "is NOT API" (launchctl(1)), so silence is not a
//! difference.

use std::path::Path;

use super::ServiceInfo;

/// What a plist defines that launchd fixes at bootstrap and `print` shows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileDefinition {
    /// `Program`, else `ProgramArguments[0]`: what `print` calls `program`.
    pub program: Option<String>,
    /// `ProgramArguments`, when the plist has them.
    pub arguments: Option<Vec<String>>,
    /// `KeepAlive` true, or any dictionary of conditions (launchd.plist(5)).
    pub keepalive: bool,
    /// `ExitTimeOut`, when the plist sets it.
    pub exit_timeout: Option<i64>,
}

impl FileDefinition {
    pub fn from_dict(dict: &plist::Dictionary) -> Self {
        let arguments: Option<Vec<String>> = dict
            .get("ProgramArguments")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_string().map(str::to_owned))
                    .collect()
            });
        let program = dict
            .get("Program")
            .and_then(|v| v.as_string())
            .map(str::to_owned)
            .or_else(|| arguments.as_ref().and_then(|a| a.first().cloned()));
        let keepalive = match dict.get("KeepAlive") {
            Some(plist::Value::Boolean(b)) => *b,
            Some(plist::Value::Dictionary(_)) => true,
            _ => false,
        };
        let exit_timeout = dict.get("ExitTimeOut").and_then(|v| v.as_signed_integer());
        Self {
            program,
            arguments,
            keepalive,
            exit_timeout,
        }
    }
}

/// One key whose loaded value differs from the file's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// The `print` key: `path`, `program`, `arguments`, `KeepAlive`, `exit timeout`.
    pub key: &'static str,
    /// What the file says, rendered for people.
    pub file: String,
    /// What launchd has loaded, rendered alike.
    pub loaded: String,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: file {}, loaded {}",
            self.key, self.file, self.loaded
        )
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn list(args: &[String]) -> String {
    format!("{args:?}")
}

/// What differs between the loaded job and the file at `plist`, in `print`'s key order.
/// Empty when they agree on everything `print` showed.
pub fn drift(plist: &Path, file: &FileDefinition, loaded: &ServiceInfo) -> Vec<Drift> {
    let mut out = Vec::new();
    // `path = (submitted by smd.553)` is an SMAppService job with no plist path to compare.
    if let Some(path) = loaded.path.as_deref().filter(|p| p.is_absolute())
        && !same_file(path, plist)
    {
        out.push(Drift {
            key: "path",
            file: plist.display().to_string(),
            loaded: path.display().to_string(),
        });
    }
    if let (Some(f), Some(l)) = (&file.program, &loaded.program)
        && f != l
    {
        out.push(Drift {
            key: "program",
            file: f.clone(),
            loaded: l.clone(),
        });
    }
    // One argument per line in `print`: an argument holding a newline cannot be compared.
    if let Some(f) = &file.arguments
        && !loaded.arguments.is_empty()
        && !f.iter().any(|a| a.contains('\n') || a.contains('\r'))
        && *f != loaded.arguments
    {
        out.push(Drift {
            key: "arguments",
            file: list(f),
            loaded: list(&loaded.arguments),
        });
    }
    // With no `properties` line the loaded KeepAlive is unknown, not false.
    if !loaded.properties.is_empty() && file.keepalive != loaded.keepalive() {
        let word = |b: bool| if b { "KeepAlive" } else { "no KeepAlive" };
        out.push(Drift {
            key: "KeepAlive",
            file: word(file.keepalive).to_owned(),
            loaded: word(loaded.keepalive()).to_owned(),
        });
    }
    // Without ExitTimeOut in the file launchd uses its own default, which has changed across
    // releases (5 s now, 20 s in launchd-842): nothing to compare then.
    if let (Some(f), Some(l)) = (file.exit_timeout, loaded.exit_timeout)
        && u64::try_from(f).ok() != Some(l)
    {
        out.push(Drift {
            key: "exit timeout",
            file: f.to_string(),
            loaded: l.to_string(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded() -> ServiceInfo {
        ServiceInfo {
            path: Some("/nonexistent/a.plist".into()),
            program: Some("/opt/homebrew/Cellar/node/25.5.0/bin/node".into()),
            arguments: vec![
                "/opt/homebrew/Cellar/node/25.5.0/bin/node".into(),
                "/x/index.js".into(),
            ],
            exit_timeout: Some(20),
            properties: vec!["keepalive".into(), "runatload".into()],
            ..ServiceInfo::default()
        }
    }

    fn file() -> FileDefinition {
        FileDefinition {
            program: Some("/opt/homebrew/Cellar/node/25.5.0/bin/node".into()),
            arguments: Some(vec![
                "/opt/homebrew/Cellar/node/25.5.0/bin/node".into(),
                "/x/index.js".into(),
            ]),
            keepalive: true,
            exit_timeout: Some(20),
        }
    }

    #[test]
    fn the_same_definition_has_no_drift() {
        assert_eq!(
            drift(Path::new("/nonexistent/a.plist"), &file(), &loaded()),
            []
        );
    }

    #[test]
    fn each_key_is_named_with_both_values() {
        let mut f = file();
        f.program = Some("/opt/homebrew/opt/node/bin/node".into());
        f.arguments = Some(vec![
            "/opt/homebrew/opt/node/bin/node".into(),
            "/x/index.js".into(),
        ]);
        f.keepalive = false;
        f.exit_timeout = Some(30);
        let d = drift(Path::new("/nonexistent/b.plist"), &f, &loaded());
        let keys: Vec<&str> = d.iter().map(|d| d.key).collect();
        assert_eq!(
            keys,
            ["path", "program", "arguments", "KeepAlive", "exit timeout"]
        );
        assert_eq!(
            d[1].to_string(),
            "program: file /opt/homebrew/opt/node/bin/node, loaded \
             /opt/homebrew/Cellar/node/25.5.0/bin/node"
        );
        assert_eq!(d[3].file, "no KeepAlive");
    }

    #[test]
    fn what_print_did_not_show_is_not_a_difference() {
        let l = ServiceInfo {
            path: Some("(submitted by smd.553)".into()),
            ..ServiceInfo::default()
        };
        let mut f = file();
        f.keepalive = false;
        assert_eq!(drift(Path::new("/a.plist"), &f, &l), []);
        // No ExitTimeOut in the file: launchd's default is not a difference.
        let mut f = file();
        f.exit_timeout = None;
        assert_eq!(drift(Path::new("/nonexistent/a.plist"), &f, &loaded()), []);
    }

    #[test]
    fn file_definition_from_a_plist() {
        let mut d = plist::Dictionary::new();
        d.insert("Program".into(), plist::Value::String("/bin/p".into()));
        d.insert(
            "KeepAlive".into(),
            plist::Value::Dictionary(plist::Dictionary::new()),
        );
        d.insert("ExitTimeOut".into(), plist::Value::Integer(7.into()));
        let f = FileDefinition::from_dict(&d);
        assert_eq!(f.program.as_deref(), Some("/bin/p"));
        assert_eq!(f.arguments, None);
        assert!(f.keepalive);
        assert_eq!(f.exit_timeout, Some(7));
    }
}
