//! Who besides root may replace a path: for a job that runs as root, a program (or a script,
//! or a units directory) that a non-root user can rewrite, or rename away and put back, is a
//! way to run code as root without sudo. Intel Homebrew makes `/usr/local/bin`, `etc` and
//! `var` owned by the installing admin (Homebrew/install#850, Homebrew/brew#17499).
//!
//! It owns only the rule: which components of a path are exposed, and why. The findings that
//! name them are made in `analyze` and `check`.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One component of a path that a non-root user may replace or rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposed {
    pub path: PathBuf,
    pub uid: u32,
    pub gid: u32,
    /// The permission bits, `mode & 0o7777`.
    pub mode: u32,
}

impl Exposed {
    /// Why it is exposed, in words: `owned by uid 501, mode 0755`.
    pub fn describe(&self, name_of: impl Fn(u32) -> Option<String>) -> String {
        let owner = match name_of(self.uid) {
            Some(n) => format!("uid {} ({n})", self.uid),
            None => format!("uid {}", self.uid),
        };
        format!(
            "{} is owned by {owner}, group {}, mode {:04o}",
            self.path.display(),
            self.gid,
            self.mode
        )
    }
}

/// Every component of `path`, from `/` down to `path` itself, that a non-root user may
/// replace: owned by a uid other than 0, or writable by others, or writable by a group other
/// than gid 0 (wheel on macOS, root on Linux, which hold only root unless an admin adds
/// someone). A directory with the sticky bit (`/tmp`, mode 1777) is not exposed by its write
/// bits: there only an entry's owner may rename or remove it. Symlinks are followed: both the
/// path as written and its realpath are checked, each component once; a symlink's own mode
/// means nothing. Components that cannot be examined are skipped: a missing path is another
/// finding.
pub fn exposed(path: &Path) -> Vec<Exposed> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let real = path.canonicalize().ok();
    for p in std::iter::once(path).chain(real.as_deref()) {
        let mut chain: Vec<&Path> = p.ancestors().collect();
        chain.reverse();
        for c in chain {
            if !seen.insert(c.to_path_buf()) {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(c) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                continue;
            }
            let mode = meta.mode() & 0o7777;
            let sticky_dir = meta.is_dir() && mode & 0o1000 != 0;
            let writable =
                !sticky_dir && (mode & 0o002 != 0 || (mode & 0o020 != 0 && meta.gid() != 0));
            if meta.uid() != 0 || writable {
                out.push(Exposed {
                    path: c.to_path_buf(),
                    uid: meta.uid(),
                    gid: meta.gid(),
                    mode,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// `dir/bin/prog`, all root's, modes 0755.
    fn tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let prog = bin.join("prog");
        std::fs::write(&prog, "#!/bin/sh\n").unwrap();
        chmod(&prog, 0o755);
        chmod(&bin, 0o755);
        (dir, bin, prog)
    }

    fn paths(p: &Path) -> Vec<PathBuf> {
        exposed(p).into_iter().map(|e| e.path).collect()
    }

    // Run as root so that every component starts out root's: what is exposed is what the
    // test changed.
    #[test]
    #[ignore = "needs root"]
    fn root_write_bits_expose_unless_sticky() {
        let (_d, bin, prog) = tree();
        assert_eq!(paths(&prog), Vec::<PathBuf>::new());

        chmod(&bin, 0o757);
        let e = exposed(&prog);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!((e[0].path.as_path(), e[0].mode), (bin.as_path(), 0o757));

        // Like /tmp: others may create entries but not replace root's.
        chmod(&bin, 0o1777);
        assert_eq!(paths(&prog), Vec::<PathBuf>::new());

        chmod(&bin, 0o755);
        chmod(&prog, 0o757);
        assert_eq!(paths(&prog), vec![prog.clone()]);

        // Group-writable: exposed unless the group is gid 0.
        chmod(&prog, 0o775);
        assert_eq!(paths(&prog), Vec::<PathBuf>::new());
        nix::unistd::chown(&prog, None, Some(nix::unistd::Gid::from_raw(1))).unwrap();
        assert_eq!(paths(&prog), vec![prog.clone()]);
    }

    #[test]
    #[ignore = "needs root"]
    fn root_a_non_root_owner_exposes_even_with_tight_modes() {
        let (_d, bin, prog) = tree();
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid;
        nix::unistd::chown(&bin, Some(nobody), None).unwrap();
        let e = exposed(&prog);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(
            (e[0].path.as_path(), e[0].uid),
            (bin.as_path(), nobody.as_raw())
        );
        assert!(
            e[0].describe(|_| Some("nobody".into()))
                .contains("(nobody)")
        );
    }

    /// A symlink's own mode (0777 on Linux) is ignored; its target's directories count.
    #[test]
    #[ignore = "needs root"]
    fn root_symlinks_are_followed() {
        let (d, bin, prog) = tree();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&prog, &link).unwrap();
        assert_eq!(paths(&link), Vec::<PathBuf>::new());
        chmod(&bin, 0o777);
        assert_eq!(paths(&link), vec![bin.clone()]);
    }

    /// Whoever runs it: a world-writable directory is named, with its mode.
    #[test]
    fn a_world_writable_directory_is_named() {
        let (_d, bin, prog) = tree();
        chmod(&bin, 0o777);
        let e = exposed(&prog);
        let hit = e.iter().find(|e| e.path == bin).expect("bin is exposed");
        assert_eq!(hit.mode, 0o777);
    }
}
