#!/bin/bash
# The test command: installs what the tests need beyond Rust (shellcheck and ruby, for the
# packaging tests; only when missing), then runs every test. `.ci/run` runs this too.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ci-deps.sh
cargo test "$@"
