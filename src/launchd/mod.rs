//! launchd, reached only through `launchctl`: the client that runs it, the parsers of what it
//! prints, and the domain and service targets it takes.
//!
//! - `launchctl`: [`Launchctl`], one method per subcommand, exit statuses mapped to outcomes
//!   and classified errors (launchd.md §1.4, §4).
//! - `print`: [`parse_print`] and [`parse_print_disabled`], lenient parsers of output that is
//!   "NOT API" (launchd.md §2).
//! - `domain`: [`domain_target`] (including `gui/console`) and [`service_target`].
//!
//! It does not decide when to start, stop or retry a job; the engine does.

pub(crate) mod domain;
pub(crate) mod launchctl;
pub(crate) mod print;

pub use domain::{ConsoleUser, NoConsoleUser, domain_target, service_target};
pub use launchctl::{CallOutput, Failure, Launchctl, LaunchctlError, PrintOutcome};
pub use print::{JobState, LastExit, ServiceInfo, parse_print, parse_print_disabled};
