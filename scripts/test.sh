#!/bin/bash
# The test command: installs what the tests need beyond Rust (shellcheck and ruby, for the
# packaging tests; only when missing), then runs every test. `.ci/run` runs this too.
#
# Tests that need root (switching users, chown, root-owned plists) are ignored, named
# `root_*`, and fail with a clear message when run without root: run as root (as CI does),
# this script runs them in a second pass.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ci-deps.sh
cargo test "$@"
if [ "$(id -u)" = 0 ]; then
    echo "== tests that need root"
    cargo test "$@" -- --ignored root_
else
    echo "note: not root, so the root_* tests did not run (sudo scripts/test.sh runs them)" >&2
fi
