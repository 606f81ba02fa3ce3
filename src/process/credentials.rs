//! Who an `exec` unit runs as: `user` and `group` resolved to ids before the fork, and the
//! switch to them inside the forked child.
//!
//! All lookups (user and group databases, supplementary groups) happen in the parent, where
//! they may allocate and block. The child only makes the three system calls that switch
//! identity, which is all that is safe between `fork` and `exec`.

use std::ffi::CString;
use std::io;
use std::path::PathBuf;

use nix::unistd::{Gid, Group, Uid, User};

use super::error::{SpawnCause, SpawnError};
use crate::unit::ExecSpec;

/// The identity a unit's process switches to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
    /// The supplementary groups: `gid` first, then every group the user belongs to (what
    /// `initgroups` would set), at most `NGROUPS_MAX`.
    pub groups: Vec<u32>,
    /// The user's entry, when `user` is set and has one: its name and home directory fill
    /// `USER`, `LOGNAME` and `HOME`.
    pub account: Option<Account>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub home: PathBuf,
}

/// Resolves the unit's `user` and `group`.
///
/// - Neither set: `Ok(None)`, the process keeps launchgraph's identity.
/// - Set while launchgraph is not root: refused, since only root can switch identity.
/// - `user`: a name, or a numeric uid (a uid without a user entry needs an explicit `group`).
///   Its primary group is the default for `group`.
/// - `group`: a name or a numeric gid. With `group` alone, the process stays uid 0 and only
///   its group changes.
///
/// `running_as_root` is a parameter so the refusal can be checked whoever runs the tests;
/// [`spawn_unit`](super::spawn_unit) passes whether the effective uid is 0.
pub fn plan_credentials(
    spec: &ExecSpec,
    unit: &str,
    running_as_root: bool,
) -> Result<Option<Credentials>, SpawnError> {
    plan(spec, running_as_root).map_err(|cause| SpawnError::new(unit, spec, cause))
}

fn plan(spec: &ExecSpec, running_as_root: bool) -> Result<Option<Credentials>, SpawnCause> {
    plan_ids(spec.user.as_deref(), spec.group.as_deref(), running_as_root)
}

/// Resolves a `user` (a name or a numeric uid) and its primary group and supplementary
/// groups, as [`plan_credentials`] does for a unit: for helper commands that run as a
/// configured user (a guard action's `user`).
pub fn user_credentials(user: &str, running_as_root: bool) -> Result<Credentials, SpawnCause> {
    plan_ids(Some(user), None, running_as_root).map(|c| c.expect("a user is given"))
}

fn plan_ids(
    user: Option<&str>,
    group: Option<&str>,
    running_as_root: bool,
) -> Result<Option<Credentials>, SpawnCause> {
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    if !running_as_root {
        let (key, value) = match (user, group) {
            (Some(u), _) => ("user", u),
            (None, Some(g)) => ("group", g),
            (None, None) => unreachable!("checked above"),
        };
        return Err(SpawnCause::NeedsRoot {
            key,
            value: value.to_owned(),
            euid: nix::unistd::geteuid().as_raw(),
        });
    }

    let Some(user) = user else {
        let gid = resolve_group(group.unwrap_or_default())?;
        return Ok(Some(Credentials {
            uid: 0,
            gid,
            groups: vec![gid],
            account: None,
        }));
    };

    let (uid, entry) = resolve_user(user)?;
    let gid = match (group, &entry) {
        (Some(g), _) => resolve_group(g)?,
        (None, Some(entry)) => entry.gid.as_raw(),
        (None, None) => return Err(SpawnCause::NoPrimaryGroup { uid }),
    };
    let mut groups = vec![gid];
    if let Some(entry) = &entry {
        supplementary_groups(entry, gid, &mut groups)?;
    }
    groups.truncate(ngroups_max());
    Ok(Some(Credentials {
        uid,
        gid,
        groups,
        account: entry.map(|e| Account {
            name: e.name,
            home: e.dir,
        }),
    }))
}

/// The identity of a job known by its ids (a plist's `UserName`, as preflight resolved it),
/// the way launchd sets it up: `uid`, `gid` (by default the user's primary group), and the
/// user's supplementary groups, as `initgroups` gives them. A uid without a user entry gets
/// `gid` alone, and needs it.
pub fn job_credentials(uid: u32, gid: Option<u32>) -> Result<Credentials, SpawnCause> {
    let entry = User::from_uid(Uid::from_raw(uid)).map_err(|error| SpawnCause::Lookup {
        what: format!("uid {uid}"),
        error,
    })?;
    let gid = match (gid, &entry) {
        (Some(g), _) => g,
        (None, Some(entry)) => entry.gid.as_raw(),
        (None, None) => return Err(SpawnCause::NoPrimaryGroup { uid }),
    };
    let mut groups = vec![gid];
    if let Some(entry) = &entry {
        supplementary_groups(entry, gid, &mut groups)?;
    }
    groups.truncate(ngroups_max());
    Ok(Credentials {
        uid,
        gid,
        groups,
        account: entry.map(|e| Account {
            name: e.name,
            home: e.dir,
        }),
    })
}

/// Adds the groups `entry` belongs to, after those already in `groups`.
fn supplementary_groups(entry: &User, gid: u32, groups: &mut Vec<u32>) -> Result<(), SpawnCause> {
    let name = CString::new(entry.name.as_str()).map_err(|_| SpawnCause::UnknownUser {
        user: entry.name.clone(),
    })?;
    let member_of = group_list(&name, Gid::from_raw(gid)).map_err(|error| SpawnCause::Lookup {
        what: format!("the groups of user {:?}", entry.name),
        error,
    })?;
    for g in member_of {
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    Ok(())
}

/// A name, or a numeric uid that need not have a user entry.
fn resolve_user(user: &str) -> Result<(u32, Option<User>), SpawnCause> {
    let lookup_failed = |error| SpawnCause::Lookup {
        what: format!("user {user:?}"),
        error,
    };
    if let Ok(uid) = user.parse::<u32>() {
        let entry = User::from_uid(Uid::from_raw(uid)).map_err(lookup_failed)?;
        return Ok((uid, entry));
    }
    match User::from_name(user).map_err(lookup_failed)? {
        Some(entry) => Ok((entry.uid.as_raw(), Some(entry))),
        None => Err(SpawnCause::UnknownUser {
            user: user.to_owned(),
        }),
    }
}

/// A name, or any numeric gid.
fn resolve_group(group: &str) -> Result<u32, SpawnCause> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    match Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(SpawnCause::UnknownGroup {
            group: group.to_owned(),
        }),
        Err(error) => Err(SpawnCause::Lookup {
            what: format!("group {group:?}"),
            error,
        }),
    }
}

fn ngroups_max() -> usize {
    use nix::unistd::{SysconfVar, sysconf};
    match sysconf(SysconfVar::NGROUPS_MAX) {
        Ok(Some(n)) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
        // POSIX's minimum, and macOS's value.
        _ => 16,
    }
}

#[cfg(not(target_vendor = "apple"))]
pub(crate) fn group_list(name: &std::ffi::CStr, gid: Gid) -> nix::Result<Vec<u32>> {
    Ok(nix::unistd::getgrouplist(name, gid)?
        .into_iter()
        .map(Gid::as_raw)
        .collect())
}

/// nix leaves `getgrouplist` out on Apple platforms, whose version takes `int` group ids.
#[cfg(target_vendor = "apple")]
pub(crate) fn group_list(name: &std::ffi::CStr, gid: Gid) -> nix::Result<Vec<u32>> {
    let mut buf: Vec<libc::c_int> = vec![0; 64];
    loop {
        let mut n = buf.len() as libc::c_int;
        // SAFETY: `name` is NUL-terminated and `buf` holds `n` ints.
        let r = unsafe {
            libc::getgrouplist(
                name.as_ptr(),
                gid.as_raw() as libc::c_int,
                buf.as_mut_ptr(),
                &mut n,
            )
        };
        if r == 0 {
            buf.truncate(usize::try_from(n).unwrap_or(0));
            return Ok(buf.into_iter().map(|g| g as u32).collect());
        }
        if buf.len() >= 1 << 16 {
            return Err(nix::errno::Errno::EINVAL);
        }
        let doubled = buf.len() * 2;
        buf.resize(doubled, 0);
    }
}

/// Switches the calling (forked, single-threaded) child to `creds`: supplementary groups,
/// then group, then user, since after `setuid` the other two are no longer allowed.
///
/// Only async-signal-safe system calls; no allocation.
pub(crate) fn switch_in_child(creds: &Credentials) -> io::Result<()> {
    // SAFETY: plain system calls on memory owned by `creds`, which outlives them.
    unsafe {
        if libc::setgroups(creds.groups.len() as _, creds.groups.as_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::setgid(creds.gid) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::setuid(creds.uid) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::process::test_spec as spec;

    #[test]
    fn user_or_group_is_refused_unless_root() {
        let mut s = spec(&[]);
        s.group = Some("staff".into());
        let e = plan_credentials(&s, "web", false).unwrap_err();
        assert!(
            matches!(e.cause, SpawnCause::NeedsRoot { key: "group", .. }),
            "{e}"
        );
        assert!(
            plan_credentials(&spec(&[]), "web", false)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_job_known_by_uid_gets_the_users_primary_group_and_entry() {
        let creds = job_credentials(0, None).unwrap();
        assert_eq!((creds.uid, creds.gid), (0, 0));
        assert_eq!(creds.groups.first(), Some(&0));
        assert_eq!(creds.account.map(|a| a.name).as_deref(), Some("root"));
        let creds = job_credentials(0, Some(12345)).unwrap();
        assert_eq!((creds.gid, creds.groups.first()), (12345, Some(&12345)));
        // A uid nobody has an entry for has no primary group to fall back on.
        assert!(matches!(
            job_credentials(3_999_999_999, None),
            Err(SpawnCause::NoPrimaryGroup { uid: 3_999_999_999 })
        ));
    }
}
