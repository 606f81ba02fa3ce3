//! `launchgraph snapshot`: writes the artifact of a change window, or lists the existing ones.

use std::path::Path;

use launchgraph::snapshot::SnapshotOptions;

use super::{Failure, print, runtime};

pub(crate) fn take(opts: &SnapshotOptions) -> Result<(), Failure> {
    match runtime()?.block_on(launchgraph::snapshot::take(opts)) {
        Ok(snap) => {
            for w in &snap.warnings {
                eprintln!("launchgraph: snapshot: {w}");
            }
            print(&format!(
                "{} ({} entries)\n",
                snap.path.display(),
                snap.entries.len()
            ))
        }
        Err(e) => Err(Failure::Io(Some(format!("snapshot: {e}")))),
    }
}

pub fn list(state_dir: &Path) -> Result<(), Failure> {
    match launchgraph::snapshot::list(state_dir) {
        Ok(all) => {
            let mut out = String::new();
            for (path, size, _) in all {
                out.push_str(&format!("{}  {size} bytes\n", path.display()));
            }
            print(&out)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Failure::Io(Some(format!(
            "cannot list snapshots in {}: {e}",
            state_dir.display()
        )))),
    }
}
