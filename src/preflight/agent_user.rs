//! Whose LaunchAgent a plist is, and whether the domain a unit names belongs to that user.
//!
//! Root may bootstrap a plist into any user's GUI domain (launchctl(1) usage: "Root may modify
//! any GUI domain", https://keith.github.io/xcode-man-pages/launchctl.1.html), and the job then
//! runs as *that* domain's user: with another HOME, unable to read its own user's 0600 files.
//! `gui/console` is whoever is at the console, which on a Mac with several users (fast user
//! switching, another admin logged in) need not be the user whose `~/Library/LaunchAgents`
//! holds the plist. OpenClaw itself always targets `gui/<its own uid>`
//! (openclaw/openclaw src/daemon/launchd-runtime.ts `resolveLaunchAgentGuiDomain`).
//!
//! Pure decisions: the plist's path, its owner's uid and the domain's uid are inputs, so the
//! rules are tested without a Mac and without those users.

use std::path::{Component, Path};

use super::context::{Accounts, UserEntry};
use super::finding::{Finding, FindingCode};
use crate::unit::{Domain, LaunchdSpec};

/// How a plist's user was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Evidence {
    /// The plist is in `/Users/NAME/Library/LaunchAgents`.
    Path,
    /// The plist file is owned by that (non-root) uid.
    Owner,
}

/// The user whose LaunchAgent a plist is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AgentUser {
    pub uid: u32,
    pub name: Option<String>,
    pub evidence: Evidence,
}

/// `NAME` when `plist` is `/Users/NAME/Library/LaunchAgents/<file>`.
fn home_agents_user(plist: &Path) -> Option<&str> {
    let parts: Vec<Component<'_>> = plist.components().collect();
    match parts.as_slice() {
        [
            Component::RootDir,
            Component::Normal(users),
            Component::Normal(name),
            Component::Normal(library),
            Component::Normal(agents),
            Component::Normal(_file),
        ] if *users == "Users" && *library == "Library" && *agents == "LaunchAgents" => {
            name.to_str()
        }
        _ => None,
    }
}

/// The user a LaunchAgent plist belongs to: the account whose `~/Library/LaunchAgents` holds
/// it (its path: `/Users/NAME/...`, or the owner's home), else the file's owner when that is not root. `None` when neither tells (a
/// root-owned plist elsewhere, e.g. `/Library/LaunchAgents`, which is every user's).
pub(crate) fn agent_user(
    plist: &Path,
    owner_uid: u32,
    accounts: &dyn Accounts,
) -> Option<AgentUser> {
    let by_path = home_agents_user(plist)
        .and_then(|n| accounts.by_name(n))
        .or_else(|| {
            accounts
                .by_uid(owner_uid)
                .filter(|e| in_agents_of(plist, e))
        });
    if let Some(entry) = by_path {
        return Some(AgentUser {
            uid: entry.uid,
            name: Some(entry.name),
            evidence: Evidence::Path,
        });
    }
    (owner_uid != 0).then(|| AgentUser {
        uid: owner_uid,
        name: accounts.by_uid(owner_uid).map(|e| e.name),
        evidence: Evidence::Owner,
    })
}

/// Whether `plist` is in `<home>/Library/LaunchAgents` of `user`.
fn in_agents_of(plist: &Path, user: &UserEntry) -> bool {
    plist.parent() == Some(user.home.join("Library/LaunchAgents").as_path())
}

fn who(uid: u32, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("{n} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// `AGENT_DOMAIN_OTHER_USER` when `spec`'s plist (owned by `owner_uid`) is one user's
/// LaunchAgent and the unit's domain, resolved to `domain_uid` (the uid of `gui/<uid>` or
/// `user/<uid>`, or the console user's for `gui/console`), is another user's. `None` for the
/// system domain and when the plist's user cannot be told.
pub(crate) fn other_user(
    spec: &LaunchdSpec,
    owner_uid: u32,
    domain_uid: u32,
    accounts: &dyn Accounts,
) -> Option<Finding> {
    if spec.domain == Domain::System {
        return None;
    }
    let domain_entry = accounts.by_uid(domain_uid);
    // In the domain user's own ~/Library/LaunchAgents, whoever owns it: that is theirs, and
    // a wrong owner is PLIST_BAD_OWNERSHIP's (a chown), not this.
    if domain_entry
        .as_ref()
        .is_some_and(|e| in_agents_of(&spec.plist, e))
    {
        return None;
    }
    let agent = agent_user(&spec.plist, owner_uid, accounts)?;
    if agent.uid == domain_uid {
        return None;
    }
    let path = &spec.plist;
    let owner = who(agent.uid, agent.name.as_deref());
    let domain_user = who(
        domain_uid,
        accounts.by_uid(domain_uid).map(|e| e.name).as_deref(),
    );
    let because = match agent.evidence {
        Evidence::Path => "it is in their ~/Library/LaunchAgents",
        Evidence::Owner => "they own the file",
    };
    let domain = match spec.domain {
        Domain::GuiConsole => {
            format!("gui/console, now gui/{domain_uid} of {domain_user} at the console")
        }
        ref d => format!("{d}, the domain of {domain_user}"),
    };
    let fixed = match spec.domain {
        Domain::User(_) => format!("user/{}", agent.uid),
        _ => format!("gui/{}", agent.uid),
    };
    Some(Finding::new(
        FindingCode::AgentDomainOtherUser,
        Some(path.clone()),
        format!(
            "the plist {} is the LaunchAgent of {owner} ({because}), but the unit's domain is \
             {domain}: bootstrapped there it would run as uid {domain_uid}, with that user's \
             HOME and without access to {owner}'s files, so launchgraph does not bootstrap it",
            path.display()
        ),
        format!("set `domain = \"{fixed}\"` in the unit file"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::Label;
    use std::path::PathBuf;

    struct Two;

    impl Accounts for Two {
        fn by_name(&self, name: &str) -> Option<UserEntry> {
            [("alice", 501), ("openclaw", 502)]
                .into_iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, uid)| self.by_uid(uid))
        }
        fn by_uid(&self, uid: u32) -> Option<UserEntry> {
            let name = match uid {
                501 => "alice",
                502 => "openclaw",
                _ => return None,
            };
            Some(UserEntry {
                name: name.into(),
                uid,
                gid: 20,
                home: PathBuf::from(format!("/Users/{name}")),
            })
        }
    }

    fn spec(plist: &str, domain: Domain) -> LaunchdSpec {
        LaunchdSpec {
            label: Label("ai.openclaw.gateway".into()),
            plist: PathBuf::from(plist),
            domain,
        }
    }

    const GATEWAY: &str = "/Users/openclaw/Library/LaunchAgents/ai.openclaw.gateway.plist";

    #[test]
    fn the_plist_s_user_comes_from_its_home_then_from_its_owner() {
        let p = |s: &str| PathBuf::from(s);
        let by_path = agent_user(&p(GATEWAY), 0, &Two).unwrap();
        assert_eq!((by_path.uid, by_path.evidence), (502, Evidence::Path));
        // The path wins over an owner that is someone else (launchd's own ownership rule
        // is PLIST_BAD_OWNERSHIP's business).
        assert_eq!(agent_user(&p(GATEWAY), 501, &Two).unwrap().uid, 502);
        let by_owner = agent_user(&p("/opt/agents/x.plist"), 501, &Two).unwrap();
        assert_eq!(
            (by_owner.uid, by_owner.name.as_deref(), by_owner.evidence),
            (501, Some("alice"), Evidence::Owner)
        );
        // An unknown account in the path: the owner decides.
        assert_eq!(
            agent_user(&p("/Users/ghost/Library/LaunchAgents/x.plist"), 503, &Two)
                .unwrap()
                .uid,
            503
        );
        // In the owner's home wherever it is: by path.
        let home = agent_user(&p("/Users/alice/Library/LaunchAgents/x.plist"), 501, &Two).unwrap();
        assert_eq!(home.evidence, Evidence::Path);
        // Root-owned outside a home: every user's agent (/Library/LaunchAgents).
        assert_eq!(
            agent_user(&p("/Library/LaunchAgents/x.plist"), 0, &Two),
            None
        );
        assert_eq!(agent_user(&p("/Users/openclaw/x.plist"), 0, &Two), None);
    }

    #[test]
    fn another_user_s_domain_is_refused_with_the_owner_s_domain_as_the_fix() {
        // The console is alice's; the plist is openclaw's.
        let f = other_user(&spec(GATEWAY, Domain::GuiConsole), 502, 501, &Two).unwrap();
        assert_eq!(f.code, FindingCode::AgentDomainOtherUser);
        assert!(f.blocks_start());
        assert!(
            f.message.contains("LaunchAgent of openclaw (uid 502)"),
            "{}",
            f.message
        );
        assert!(
            f.message
                .contains("gui/console, now gui/501 of alice (uid 501) at the console"),
            "{}",
            f.message
        );
        assert_eq!(f.fix, "set `domain = \"gui/502\"` in the unit file");
        // The same user at the console: nothing to say.
        assert_eq!(
            other_user(&spec(GATEWAY, Domain::GuiConsole), 502, 502, &Two),
            None
        );
        // A fixed domain naming another uid.
        let f = other_user(&spec(GATEWAY, Domain::Gui(501)), 0, 501, &Two).unwrap();
        assert!(
            f.message.contains("gui/501, the domain of alice"),
            "{}",
            f.message
        );
        let f = other_user(&spec(GATEWAY, Domain::User(501)), 502, 501, &Two).unwrap();
        assert_eq!(f.fix, "set `domain = \"user/502\"` in the unit file");
        // By owner alone, with a uid the user database does not know.
        let f = other_user(&spec("/opt/a/x.plist", Domain::Gui(501)), 777, 501, &Two).unwrap();
        assert!(
            f.message
                .contains("LaunchAgent of uid 777 (they own the file)"),
            "{}",
            f.message
        );
        // In the domain user's own LaunchAgents but owned by another: a chown, not this.
        let alice = spec(
            "/Users/alice/Library/LaunchAgents/x.plist",
            Domain::Gui(501),
        );
        assert_eq!(other_user(&alice, 502, 501, &Two), None);
        // The system domain, and plists no single user owns, are never another user's.
        assert_eq!(
            other_user(&spec(GATEWAY, Domain::System), 502, 0, &Two),
            None
        );
        let shared = spec("/Library/LaunchAgents/x.plist", Domain::GuiConsole);
        assert_eq!(other_user(&shared, 0, 501, &Two), None);
    }
}
