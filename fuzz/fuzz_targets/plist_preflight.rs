//! Fuzzes the plist of a `launchd` unit as preflight reads it (XML or binary, through the
//! `plist` crate) and the checks run on what it holds: `preflight::preflight`, `target`,
//! `takeover` and `watched_paths` of a unit whose plist file is the input. The unit requires
//! another, so the takeover rules (RunAtLoad, KeepAlive) run too.
//!
//! The plist's paths (Program, ProgramArguments, WorkingDirectory...) point at this host's
//! files; preflight only reads and stats them, so that is safe, and a path that could block
//! a read (a FIFO, a device) is exactly what the checks must survive.
//!
//! Invariant: nothing panics or hangs, whatever the file holds.
#![no_main]

use libfuzzer_sys::fuzz_target;

use launchgraph::compile::compile_dir;
use launchgraph::preflight::{self, PreflightContext};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let plist = dir.path().join("fuzz.job.plist");
    std::fs::write(&plist, data).expect("the plist");
    std::fs::write(
        dir.path().join("base.toml"),
        "[exec]\ncommand = [\"/bin/true\"]\n",
    )
    .expect("a unit file");
    std::fs::write(
        dir.path().join("job.toml"),
        format!(
            "requires = [\"base\"]\n[launchd]\nlabel = \"fuzz.job\"\nplist = {:?}\ndomain = \"system\"\n",
            plist.display().to_string()
        ),
    )
    .expect("a unit file");
    let compiled = compile_dir(dir.path()).expect("the fixed units compile");
    let ctx = PreflightContext::host();
    for unit in &compiled.units {
        let findings = preflight::preflight(unit, &ctx);
        let _ = preflight::blocks_start(&findings);
        let _ = preflight::target(unit, &ctx);
        let _ = preflight::takeover(unit);
        let _ = preflight::watched_paths_with(unit, &ctx);
    }
});
