//! Turning a unit's [`Domain`] into the domain and service targets launchctl takes, including
//! `gui/console`: the `gui/<uid>` domain of whoever is logged in at the console.
//!
//! It does not check that the domain exists: launchctl says so itself (112 or 125,
//! launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html; chilcote/outset#108).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::unit::Domain;

/// The setup assistant's account, which owns the console before the first login
/// (launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html; chilcote/outset#108: skip it like root).
const SETUP_ACCOUNT: &str = "_mbsetupuser";

/// Where to find the console user: the owner of a device file, as launchd tooling does
/// (`stat -f %u /dev/console`, launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html; chilcote/outset#108, outset#108).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleUser {
    device: PathBuf,
}

impl Default for ConsoleUser {
    fn default() -> Self {
        Self::new("/dev/console")
    }
}

/// Nobody usable is logged in at the console.
#[derive(Debug, thiserror::Error)]
pub enum NoConsoleUser {
    /// Root (the login window) or the setup assistant owns the console: nobody is logged in
    /// at the GUI, so no `gui/<uid>` domain exists to act in.
    #[error(
        "nobody is logged in at the console: {} is owned by uid {uid} ({who})",
        device.display()
    )]
    LoginWindow {
        device: PathBuf,
        uid: u32,
        who: &'static str,
    },
    #[error("cannot tell who is at the console: {}: {error}", device.display())]
    Unreadable { device: PathBuf, error: io::Error },
}

impl ConsoleUser {
    /// Reads the console user from the owner of `device` (tests point it at a file they own).
    pub fn new(device: impl Into<PathBuf>) -> Self {
        Self {
            device: device.into(),
        }
    }

    /// The uid of the user at the console.
    pub(crate) fn uid(&self) -> Result<u32, NoConsoleUser> {
        let uid = std::fs::metadata(&self.device)
            .map_err(|error| NoConsoleUser::Unreadable {
                device: self.device.clone(),
                error,
            })?
            .uid();
        let login_window = |who| NoConsoleUser::LoginWindow {
            device: self.device.clone(),
            uid,
            who,
        };
        if uid == 0 {
            return Err(login_window("root: the login window"));
        }
        let name = nix::unistd::User::from_uid(uid.into())
            .ok()
            .flatten()
            .map(|u| u.name);
        if name.as_deref() == Some(SETUP_ACCOUNT) {
            return Err(login_window("the setup assistant"));
        }
        Ok(uid)
    }
}

/// The launchctl domain target of `domain`: `system`, `gui/<uid>`, `user/<uid>`;
/// `gui/console` becomes `gui/<uid>` of the console user, read now.
pub fn domain_target(domain: &Domain, console: &ConsoleUser) -> Result<String, NoConsoleUser> {
    resolve(domain, console).map(|(target, _)| target)
}

/// [`domain_target`] and the uid whose domain it is (`None` for `system`), from one reading
/// of the console.
pub(crate) fn resolve(
    domain: &Domain,
    console: &ConsoleUser,
) -> Result<(String, Option<u32>), NoConsoleUser> {
    match domain {
        Domain::GuiConsole => {
            let uid = console.uid()?;
            Ok((format!("gui/{uid}"), Some(uid)))
        }
        Domain::Gui(uid) | Domain::User(uid) => Ok((domain.to_string(), Some(*uid))),
        Domain::System => Ok((domain.to_string(), None)),
    }
}

/// `<domain-target>/<label>`, e.g. `gui/501/ai.openclaw.gateway` (launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html).
pub fn service_target(domain_target: &str, label: &str) -> String {
    format!("{}/{label}", domain_target.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_domains_need_no_console() {
        let nowhere = ConsoleUser::new("/nonexistent/console");
        assert_eq!(domain_target(&Domain::System, &nowhere).unwrap(), "system");
        assert_eq!(
            domain_target(&Domain::Gui(501), &nowhere).unwrap(),
            "gui/501"
        );
        assert_eq!(domain_target(&Domain::User(0), &nowhere).unwrap(), "user/0");
        let e = domain_target(&Domain::GuiConsole, &nowhere).unwrap_err();
        assert!(matches!(e, NoConsoleUser::Unreadable { .. }), "{e}");
    }

    #[test]
    fn service_targets() {
        assert_eq!(service_target("system", "com.a"), "system/com.a");
        assert_eq!(service_target("gui/501/", "com.a"), "gui/501/com.a");
    }
}
