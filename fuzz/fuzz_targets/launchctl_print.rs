//! Fuzzes the readers of `launchctl` output: `print <service-target>` (`parse_print`) and
//! `print-disabled <domain>` (`parse_print_disabled`). Their input is another program's
//! text, which changes between macOS releases.
//!
//! Invariants: neither panics; both are functions of the text alone (a second parse gives the
//! same result).
#![no_main]

use libfuzzer_sys::fuzz_target;

use launchgraph::launchd::{parse_print, parse_print_disabled};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let info = parse_print(&text);
    let _ = (
        info.keepalive(),
        info.runatload(),
        info.is_running(),
        info.spawn_failed(),
    );
    assert_eq!(info, parse_print(&text));
    let disabled = parse_print_disabled(&text);
    assert_eq!(disabled, parse_print_disabled(&text));
});
