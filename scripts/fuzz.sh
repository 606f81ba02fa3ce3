#!/bin/bash
# Runs every fuzz target in fuzz/ (cargo fuzz, libFuzzer) for SECONDS each (default 60), from
# the committed seeds (fuzz/seeds/TARGET) plus the corpus earlier runs grew (fuzz/corpus/TARGET,
# not committed). Fails on the first crash, panic, input that runs past 10 s or memory past
# 2 GiB; libFuzzer leaves the input in fuzz/artifacts/TARGET/ and says how to replay it.
#
# Installs what it needs when missing: cargo-fuzz (`cargo install`, into CARGO_HOME, outside
# the checkout). cargo fuzz needs a compiler that takes -Z flags: the nightly toolchain when
# rustup has one, otherwise the stable one with RUSTC_BOOTSTRAP=1, which cargo-fuzz accepts.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
case $seconds in
    '' | *[!0-9]*)
        echo "usage: scripts/fuzz.sh [SECONDS]" >&2
        exit 2
        ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

toolchain=""
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain="+nightly"
else
    echo "fuzz: no nightly toolchain; using $(rustc --version) with RUSTC_BOOTSTRAP=1"
    export RUSTC_BOOTSTRAP=1
fi

fuzz() {
    # An empty $toolchain must not become an empty argument.
    # shellcheck disable=SC2086
    cargo $toolchain fuzz "$@"
}

# unit_dir and plist_preflight write each input to a temporary directory: on a memory file
# system they run several times as many inputs a second as on a disk.
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
    export TMPDIR=/dev/shm
fi

echo "== building the fuzz targets"
fuzz build
targets=$(fuzz list)

summary=""
failed=""
for target in $targets; do
    echo "== fuzzing $target for ${seconds}s"
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
    log="fuzz/artifacts/$target.log"
    # libFuzzer writes new inputs to the first directory; the seeds are only read.
    if fuzz run "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        result=ok
    else
        result=FAILED
        failed="$failed $target"
        tail -n 60 "$log" >&2
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    corpus=$(find "fuzz/corpus/$target" -type f | wc -l | tr -d ' ')
    summary="$summary$(printf '%-18s %12s %8s  %s' "$target" "${runs:-?}" "$corpus" "$result")
"
done

echo "== fuzz summary (${seconds}s per target; logs in fuzz/artifacts/TARGET.log)"
printf '%-18s %12s %8s  %s\n' target executions corpus result
printf '%s' "$summary"
if [ -n "$failed" ]; then
    echo "fuzz: failed:$failed (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
