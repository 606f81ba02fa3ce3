//! launchd, reached only through `launchctl`: the client that runs it, the parsers of what it
//! prints, and the domain and service targets it takes.
//!
//! - `launchctl`: [`Launchctl`], one method per subcommand, exit statuses mapped to outcomes
//!   and classified errors (launchctl exit statuses as captured in DeterminateSystems/nix-installer#530, openclaw/openclaw#80384 and ProcursusTeam/launchctl xpc_private.h; Homebrew/brew Library/Homebrew/services/cli.rb; launchctl(1), https://keith.github.io/xcode-man-pages/launchctl.1.html).
//! - `print`: [`parse_print`] and [`parse_print_disabled`], lenient parsers of output that is
//!   "NOT API" (verbatim `launchctl print` captures: sglavoie/dev-helpers LaunchctlFixtures.swift, byliu-labs/egress-guard status_darwin_test.go, wazuh/wazuh-agent#569).
//! - `definition`: [`FileDefinition`] and [`drift`], what the loaded job (`print`) and the
//!   plist file disagree on; launchd reads a plist only at bootstrap.
//! - `domain`: [`domain_target`] (including `gui/console`) and [`service_target`].
//! - `owner`: what a job's owner decided and launchgraph leaves alone: a job it disabled, a
//!   label it loaded in another domain ([`owner_findings`] for `check`).
//!
//! It does not decide when to start, stop or retry a job; the engine does.

pub(crate) mod definition;
pub(crate) mod domain;
pub(crate) mod launchctl;
pub(crate) mod owner;
pub(crate) mod print;

pub use definition::{Drift, FileDefinition, drift};
pub use domain::{ConsoleUser, NoConsoleUser, domain_target, service_target};
pub use launchctl::{CallOutput, Failure, Launchctl, LaunchctlError, PrintOutcome};
pub use owner::owner_findings;
pub use print::{JobState, LastExit, ServiceInfo, parse_print, parse_print_disabled};
