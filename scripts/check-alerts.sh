#!/bin/bash
# Checks launchgraph's Prometheus alerting rules (packaging/prometheus): `promtool check rules`
# (YAML, PromQL, templates) on the rules, then `promtool test rules` on their unit tests, which
# fire and must not fire each alert. Needs promtool 2.42 or later on PATH
# (scripts/install-prometheus.sh installs it); fails, rather than skips, without it.
set -euo pipefail
cd "$(dirname "$0")/../packaging/prometheus"

if ! command -v promtool >/dev/null 2>&1; then
    echo "check-alerts: promtool is not on PATH (scripts/install-prometheus.sh installs it)" >&2
    exit 1
fi

promtool check rules launchgraph.rules.yml
promtool test rules launchgraph.rules.test.yml
