//! The process exit codes of the `launchgraph` binary, one table, from sysexits(3) so that
//! launchd and scripts read them the usual way. `--help` lists them from [`TABLE`]; the README
//! explains each.

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
/// EX_CANTCREAT: the control socket cannot be created (another daemon answers on it, or its
/// path is unsafe).
pub(crate) const CANTCREAT: u8 = 73;
/// EX_IOERR: a file or stream could not be written.
pub const IO: u8 = 74;
/// EX_TEMPFAIL: `up`: another daemon holds the state directory.
pub(crate) const STATE_LOCKED: u8 = 75;
/// EX_NOPERM: the caller may not do this (e.g. an acting verb without admin rights).
pub const NOPERM: u8 = 77;
/// EX_CONFIG: the units directory is invalid; every problem was reported.
pub const CONFIG: u8 = 78;

/// Every exit code: (code, sysexits name, what it means), in ascending order.
pub const TABLE: &[(u8, &str, &str)] = &[
    (OK, "EX_OK", "success"),
    (USAGE, "EX_USAGE", "usage error"),
    (PREFLIGHT, "EX_DATAERR", "a preflight check failed"),
    (UNAVAILABLE, "EX_UNAVAILABLE", "daemon unavailable"),
    (SOFTWARE, "EX_SOFTWARE", "internal error"),
    (
        CANTCREAT,
        "EX_CANTCREAT",
        "the control socket cannot be created",
    ),
    (IO, "EX_IOERR", "I/O error"),
    (
        STATE_LOCKED,
        "EX_TEMPFAIL",
        "the state directory is in use by another daemon",
    ),
    (NOPERM, "EX_NOPERM", "not permitted"),
    (CONFIG, "EX_CONFIG", "invalid configuration"),
];

/// The exit code list `--help` ends with: `Exit codes: 0 success; 64 usage error; ...`.
pub fn help() -> String {
    let list: Vec<String> = TABLE
        .iter()
        .map(|(code, _, meaning)| format!("{code} {meaning}"))
        .collect();
    format!("Exit codes: {}.", list.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_ascending_and_each_code_is_listed_once() {
        assert!(TABLE.windows(2).all(|w| w[0].0 < w[1].0), "{TABLE:?}");
    }
}
