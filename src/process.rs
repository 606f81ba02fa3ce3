//! Process spawning and reaping (placeholder; implemented next).

use std::io;
use std::process::ExitStatus;

/// A child process spawned through [`spawn_tracked`].
pub struct TrackedChild {
    pub child: tokio::process::Child,
    pid: u32,
}

impl TrackedChild {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait().await
    }
}

/// Spawns `cmd`; every child launchgraph starts goes through here.
pub fn spawn_tracked(cmd: &mut tokio::process::Command) -> io::Result<TrackedChild> {
    let child = cmd.spawn()?;
    let pid = child.id().unwrap_or(0);
    Ok(TrackedChild { child, pid })
}
