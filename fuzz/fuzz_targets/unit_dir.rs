//! Fuzzes the units directory loader as `launchgraph check --config-only`, `plan` and `up`
//! run it: `compile::compile_dir` over a directory of unit files.
//!
//! Input: files separated by NUL bytes; each file's first line is its name (letters, digits
//! and `-` kept, `.toml` appended), the rest its text. The seeds in fuzz/seeds/unit_dir are
//! the shipped units and examples in that form.
//!
//! Invariants: loading never panics; a directory that fails has at least one diagnostic; one
//! that compiles has every unit in exactly one start wave, and its plan renders.
#![no_main]

use libfuzzer_sys::fuzz_target;

use launchgraph::compile::compile_dir;
use launchgraph::plan::Plan;

/// More files add nothing the fuzzer cannot reach with these.
const MAX_FILES: usize = 6;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (i, chunk) in data.split(|&b| b == 0).take(MAX_FILES).enumerate() {
        let (name, text) = match chunk.iter().position(|&b| b == b'\n') {
            Some(n) => (&chunk[..n], &chunk[n + 1..]),
            None => (&chunk[..0], chunk),
        };
        let name: String = name
            .iter()
            .filter(|b| b.is_ascii_alphanumeric() || **b == b'-')
            .take(40)
            .map(|&b| char::from(b))
            .collect();
        let name = if name.is_empty() {
            format!("u{i}")
        } else {
            name
        };
        std::fs::write(dir.path().join(format!("{name}.toml")), text).expect("a unit file");
    }
    match compile_dir(dir.path()) {
        Ok(c) => {
            let mut seen = vec![0u32; c.units.len()];
            for wave in c.graph.waves() {
                for &i in wave {
                    seen[i] += 1;
                }
            }
            assert!(
                seen.iter().all(|&n| n == 1),
                "every unit in exactly one wave: {seen:?}"
            );
            let _ = c.notes();
            let plan = Plan::new(&c);
            let _ = plan.render();
            serde_json::to_string(&plan).expect("the plan serializes");
        }
        Err(diags) => {
            assert!(!diags.is_empty(), "a failed load says why");
            for d in &diags {
                let _ = d.to_string();
            }
        }
    }
});
