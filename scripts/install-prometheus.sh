#!/bin/bash
# Installs promtool, which scripts/check-alerts.sh uses to check and unit-test the alerting
# rules in packaging/prometheus, and the prometheus server, which scripts/e2e-real-stack.sh
# runs itself (tests/real_prometheus.rs), from Debian's `prometheus` package (both come with
# it; keep_firing_for needs Prometheus 2.42 or later, what Debian 12 ships). Only when either
# is missing: safe to run again, it then does nothing. Needs root (or sudo) when it has work
# to do.
#
# The tests start their own server when they need one, so the package's service must not be
# left running or enabled:
# its maintainer scripts start it through invoke-rc.d, which asks /usr/sbin/policy-rc.d
# first. When the machine has no policy, a temporary one that denies every start (exit 101,
# Debian's policy-rc.d.txt) is put in place for the install and removed after it; then the
# systemd unit is disabled (and stopped, when systemd runs: CI containers often have none).
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    echo "install-prometheus: $(promtool --version 2>&1 | head -n 1)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-prometheus: promtool or prometheus is missing, and apt-get is not available to install it" >&2
    exit 1
fi

sudo=
if [ "$(id -u)" -ne 0 ]; then
    sudo=sudo
fi

policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    # Removed on every exit, so a failed install leaves no policy behind either.
    trap '$sudo rm -f "$policy"' EXIT
    printf '#!/bin/sh\n# Denies service starts while install-prometheus.sh runs.\nexit 101\n' |
        $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
else
    echo "install-prometheus: $policy exists, and decides whether services start during the install"
fi

echo "install-prometheus: installing prometheus (for promtool and the server)"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends prometheus

# The package enables its unit for the next boot even where nothing started it now.
# `systemctl disable` also removes the SysV links, and works while systemd is not running.
if [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now prometheus.service
elif command -v systemctl >/dev/null 2>&1; then
    $sudo systemctl disable prometheus.service
elif [ -e /etc/init.d/prometheus ]; then
    $sudo update-rc.d prometheus disable
fi

promtool --version 2>&1 | head -n 1
