//! The process exit codes of the `launchgraph` binary, one table, from sysexits(3) so that
//! launchd and scripts read them the usual way. Documented in the README.

/// Success (for `check`: the configuration is valid).
pub const OK: u8 = 0;
/// EX_USAGE: the command line is wrong.
pub const USAGE: u8 = 64;
/// EX_DATAERR: the configuration is valid, but a preflight check found an error in what a
/// unit would execute (a missing program, a broken plist, ...).
pub const PREFLIGHT: u8 = 65;
/// EX_UNAVAILABLE: the daemon is not running or its control socket cannot be reached.
pub const UNAVAILABLE: u8 = 69;
/// EX_SOFTWARE: an internal error.
pub const SOFTWARE: u8 = 70;
/// EX_IOERR: a file or stream could not be written.
pub const IO: u8 = 74;
/// EX_CANTCREAT: the control socket cannot be created (another daemon answers on it, or its
/// path is unsafe).
pub const CANTCREAT: u8 = 73;
/// EX_NOPERM: the caller may not do this (e.g. an acting verb without admin rights).
pub const NOPERM: u8 = 77;
/// EX_CONFIG: the units directory is invalid; every problem was reported.
pub const CONFIG: u8 = 78;
