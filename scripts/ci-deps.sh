#!/bin/bash
# Installs the tools the packaging tests call on Linux, shellcheck (shell scripts) and ruby
# (`ruby -c` on the Homebrew formula), with apt-get, only when they are missing. Safe to run
# again: it does nothing once both are on PATH. Needs root (or sudo) when it has work to do.
set -euo pipefail

missing=()
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
command -v ruby >/dev/null 2>&1 || missing+=(ruby)

if [ "${#missing[@]}" -eq 0 ]; then
    echo "ci-deps: shellcheck and ruby are installed"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ci-deps: missing ${missing[*]}, and apt-get is not available to install them" >&2
    exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
fi

echo "ci-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
