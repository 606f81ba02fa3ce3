//! Fuzzes the env file reader (`preflight::parse_env_file`): the `KEY=value` file that
//! OpenClaw's service wrapper sources, read by preflight and by snapshots.
//!
//! Invariants: it never panics; every key is a shell name (ASCII letters, digits, `_`); the
//! result written back as `KEY="value"` lines reads as the same map.
#![no_main]

use libfuzzer_sys::fuzz_target;

use launchgraph::preflight::parse_env_file;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let env = parse_env_file(&text);
    let mut written = String::new();
    for (key, value) in &env {
        assert!(
            !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "{key:?} is not a shell name"
        );
        assert!(!value.contains('\n'), "a value is one line: {value:?}");
        written.push_str(&format!("{key}=\"{value}\"\n"));
    }
    assert_eq!(parse_env_file(&written), env, "written back:\n{written}");
});
