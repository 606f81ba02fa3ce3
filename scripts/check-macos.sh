#!/bin/bash
# Compiles and lints the macOS build on a Linux machine: `cargo clippy --target
# aarch64-apple-darwin`, so the `cfg(target_os = "macos")` code (proc_pidinfo, libproc, os_log)
# is type-checked against the macOS bindings of libc and nix wherever the tests run.
#
# Nothing is linked or run. The only C in the dependency tree is tracing-oslog's wrapper around
# os_log, which needs Apple's SDK; `cargo clippy` never links, so a stand-in compiler that
# writes an empty object lets its build script finish. Installs the target's standard library
# with rustup when it is missing (idempotent, cached in rustup's home, outside the checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-apple-darwin

if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
fi

stand_in="$(mktemp -d)"
trap 'rm -rf "$stand_in"' EXIT
cat >"$stand_in/cc" <<'SH'
#!/bin/sh
# Writes an empty object for the output named by -o / -Fo; compiles nothing.
out=""
while [ $# -gt 0 ]; do
    case "$1" in
        -o) out="$2"; shift ;;
        -o*) out="${1#-o}" ;;
        -Fo*) out="${1#-Fo}" ;;
    esac
    shift
done
[ -n "$out" ] && : >"$out"
exit 0
SH
chmod +x "$stand_in/cc"

CC_aarch64_apple_darwin="$stand_in/cc" AR_aarch64_apple_darwin=ar \
    cargo clippy --target "$target" --all-targets -- -D warnings
