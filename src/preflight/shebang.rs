//! `#!` lines: reading a script's interpreter, and finding it the way the kernel and
//! `/usr/bin/env` will when the job starts, on the PATH the job really has.
//!
//! `#!/usr/bin/env node` under launchd's default PATH is how an npm-installed script dies with
//! `env: node: No such file or directory`, exit 127 (openclaw/openclaw#74944).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What a `#!` line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Interpreter {
    /// `#!/abs/interpreter [arg]`.
    Direct(PathBuf),
    /// `#!/usr/bin/env [options] NAME …`: NAME looked up on `path` (the job's PATH unless the
    /// line overrides it).
    Env {
        env: PathBuf,
        name: String,
        /// A PATH set on the line itself (`env PATH=… node`, BSD `env -P dir`), or the
        /// search path `execvp` uses once `env -i` cleared the environment.
        path_override: Option<String>,
    },
}

/// The `#!` line of `path`, if it is a script. Only the first 512 bytes count: what macOS
/// reads of an interpreter line (Linux reads less).
pub(crate) fn read(path: &Path) -> Option<Interpreter> {
    let mut head = [0u8; 512];
    let n = {
        // Without blocking, and only a regular file: a FIFO has no `#!` line to wait for.
        let (mut f, _) = crate::fsutil::open_regular(path).ok()??;
        let mut n = 0;
        while n < head.len() {
            match f.read(&mut head[n..]) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        n
    };
    parse(&head[..n])
}

pub(crate) fn parse(head: &[u8]) -> Option<Interpreter> {
    let rest = head.strip_prefix(b"#!")?;
    let line = rest.split(|b| *b == b'\n').next()?;
    let line = String::from_utf8_lossy(line);
    // macOS splits the line on blanks; Linux passes everything after the interpreter as one
    // argument, which `env -S` splits again. Splitting on blanks reads both the same.
    let mut words = line.split_whitespace();
    let interp = PathBuf::from(words.next()?);
    if interp.file_name().is_some_and(|n| n == "env") {
        let args: Vec<&str> = words.collect();
        let (name, path_override) = env_command(&args)?;
        return Some(Interpreter::Env {
            env: interp,
            name,
            path_override,
        });
    }
    Some(Interpreter::Direct(interp))
}

/// The command `env ARGS…` runs, and the PATH it searches when the arguments change it.
fn env_command(args: &[&str]) -> Option<(String, Option<String>)> {
    let mut path = None;
    let mut i = 0;
    while let Some(&a) = args.get(i) {
        match a {
            "-S" | "--split-string" | "-v" | "--debug" | "-0" | "--null" => i += 1,
            // With the environment cleared, execvp searches its default path.
            "-i" | "-" | "--ignore-environment" => {
                path.get_or_insert_with(|| "/usr/bin:/bin".to_owned());
                i += 1;
            }
            "-u" | "--unset" | "-C" | "--chdir" => i += 2,
            "-P" => {
                path = args.get(i + 1).map(|p| (*p).to_owned());
                i += 2;
            }
            "--" => i += 1,
            _ if a.starts_with("-S") => {
                // `-Snode --flag`: the rest of the word is the first word of the split string.
                return Some((a[2..].to_owned(), path));
            }
            _ if a.starts_with('-') => i += 1,
            _ if a.contains('=') => {
                if let Some(p) = a.strip_prefix("PATH=") {
                    path = Some(p.to_owned());
                }
                i += 1;
            }
            _ => return Some((a.to_owned(), path)),
        }
    }
    None
}

/// Whether `path` is a regular file with an execute bit: what `execvp` needs to pick it.
pub(crate) fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The first `dir/name` on `path_var` that is an executable file, as `execvp` finds it.
/// Relative and empty entries (the working directory) are skipped: a job's working directory
/// is not a place to find node in.
pub(crate) fn lookup(name: &str, path_var: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_executable_file(&p).then_some(p);
    }
    path_var
        .split(':')
        .filter(|d| d.starts_with('/'))
        .map(|d| Path::new(d).join(name))
        .find(|p| is_executable_file(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str, path: Option<&str>) -> Interpreter {
        Interpreter::Env {
            env: PathBuf::from("/usr/bin/env"),
            name: name.into(),
            path_override: path.map(Into::into),
        }
    }

    #[test]
    fn shebang_forms() {
        assert_eq!(
            parse(b"#!/usr/bin/env node\nimport x"),
            Some(env("node", None))
        );
        assert_eq!(
            parse(b"#!/usr/bin/env -S node --no-warnings\n"),
            Some(env("node", None))
        );
        assert_eq!(
            parse(b"#!/usr/bin/env PATH=/x:/y node\n"),
            Some(env("node", Some("/x:/y")))
        );
        assert_eq!(
            parse(b"#!/usr/bin/env -i node\n"),
            Some(env("node", Some("/usr/bin:/bin")))
        );
        assert_eq!(
            parse(b"#! /bin/sh -e\n"),
            Some(Interpreter::Direct(PathBuf::from("/bin/sh")))
        );
        assert_eq!(parse(b"\x7fELF"), None);
        assert_eq!(parse(b"#!/usr/bin/env\n"), None);
    }
}
