#!/bin/bash
# Soak of the daemon for MINUTES (default 30): builds the release binary, runs `launchgraph up`
# on a units directory made to keep it busy, churns the control socket, and samples the
# daemon's resident memory, open fds, threads and CPU every 10 s from /proc/PID/{status,fd,stat}.
#
# The units: `crashloop` exits 1 a second after each start, forever (its start limit is never
# reached); `flappy` is a TCP server that exits after 4 to 12 s and is required by `web`
# (python3 -m http.server) and, through it, `worker`, so every flap restarts both in order.
# Probes of each kind: tcp (flappy), http (web), exec (worker).
# The churn, one action every 2 s: status, events, events --follow followers that come and
# go, reloads (half of them with a changed unit), restarts, stop and start, metrics. Every
# client call is bounded (20 s); one that has to be killed fails the soak.
#
# Fails (exit 1) when, after the warm-up (60 s, or a third of a shorter run), the mean of the
# last third of the samples exceeds the mean of the first third by more than: RSS 10% + 2 MiB,
# fds 6, threads 4 (the slack covers the clients connected at a sample, the blocking pool's
# threads and the event ring of 1000 filling up); or when the daemon dies, a client call
# hangs, the daemon takes more than 60 s to stop on SIGTERM, or a unit's process outlives it.
# Always cleans up: the daemon, its units' processes and the work directory.
set -euo pipefail

# All of it in one function, read whole before it runs: bash reads a script as it goes, so an
# edit to this file during a 30-minute run would otherwise change the run.
main() {
cd "$(dirname "$0")/.."

minutes=${1:-30}
case $minutes in
    '' | *[!0-9]* | 0)
        echo "usage: scripts/soak.sh [MINUTES]" >&2
        exit 2
        ;;
esac
duration=$((minutes * 60))
warmup=60
if [ $((duration / 3)) -lt "$warmup" ]; then
    warmup=$((duration / 3))
fi

echo "== building the release binary"
cargo build --release --bin launchgraph
bin="$PWD/target/release/launchgraph"

work=$(mktemp -d "${TMPDIR:-/tmp}/launchgraph-soak.XXXXXX")
units="$work/units"
mkdir -p "$units" "$work/state" "$work/run" "$work/www"
export LAUNCHGRAPH_SOCKET="$work/run/launchgraph.sock"
export LAUNCHGRAPH_UNITS="$units"
export LAUNCHGRAPH_STATE_DIR="$work/state"
# Every unit's environment carries this, so a process that outlives the daemon is found.
marker="LAUNCHGRAPH_SOAK=$work"

daemon=""
churn=""
# Run by the EXIT trap.
# shellcheck disable=SC2317
cleanup() {
    trap - EXIT INT TERM
    if [ -n "$churn" ]; then
        kill "$churn" 2>/dev/null || true
        wait "$churn" 2>/dev/null || true
    fi
    if [ -n "$daemon" ] && kill -0 "$daemon" 2>/dev/null; then
        kill -TERM "$daemon" 2>/dev/null || true
        for _ in $(seq 1 60); do
            kill -0 "$daemon" 2>/dev/null || break
            sleep 1
        done
        kill -KILL "$daemon" 2>/dev/null || true
    fi
    for pid in $(marked_pids); do
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Processes whose environment holds the marker (the units' processes and their children).
marked_pids() {
    for environ in /proc/[0-9]*/environ; do
        if tr '\0' '\n' 2>/dev/null <"$environ" | grep -qxF "$marker"; then
            pid=${environ#/proc/}
            echo "${pid%/environ}"
        fi
    done
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
flappy_port=$(free_port)
web_port=$(free_port)
python=$(command -v python3)

cat >"$work/flappy.py" <<PY
# A requirement that flaps: listens, answers connections, exits 1 after 4 to 12 s.
import random, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", $flappy_port))
s.listen(16)
s.settimeout(0.5)
end = time.monotonic() + random.uniform(4, 12)
while time.monotonic() < end:
    try:
        s.accept()[0].close()
    except socket.timeout:
        pass
sys.exit(1)
PY

env_table="env = { PATH = \"/usr/bin:/bin\", LAUNCHGRAPH_SOAK = \"$work\" }"
restart_table='[restart]
policy = "on-failure"
initial = "200ms"
max = "2s"
reset-after = "1h"
start-limit-count = 100
start-limit-period = "10s"'

cat >"$units/crashloop.toml" <<TOML
description = "exits 1 a second after each start"
[exec]
command = ["/bin/sh", "-c", "sleep 1; exit 1"]
$env_table
$restart_table
TOML

cat >"$units/flappy.toml" <<TOML
description = "a TCP server that exits every 4 to 12 s"
[exec]
command = ["$python", "-u", "$work/flappy.py"]
$env_table
stop-timeout = "5s"
[ready]
tcp = "127.0.0.1:$flappy_port"
start-timeout = "20s"
[alive]
tcp = "127.0.0.1:$flappy_port"
interval = "1s"
failures = 2
$restart_table
TOML

cat >"$units/web.toml" <<TOML
description = "an HTTP server that requires flappy"
requires = ["flappy"]
[exec]
command = ["$python", "-m", "http.server", "$web_port", "--bind", "127.0.0.1", "--directory", "$work/www"]
$env_table
stop-timeout = "5s"
[ready]
http = "http://127.0.0.1:$web_port/"
start-timeout = "20s"
[alive]
http = "http://127.0.0.1:$web_port/"
interval = "2s"
$restart_table
TOML

write_worker() {
    cat >"$units/worker.toml" <<TOML
description = "$1"
requires = ["web"]
[exec]
command = ["/bin/sh", "-c", "touch $work/run/worker.ready; exec sleep 1000000"]
$env_table
stop-timeout = "5s"
[ready]
exec = ["/bin/sh", "-c", "test -f $work/run/worker.ready"]
start-timeout = "20s"
[alive]
exec = ["/bin/sh", "-c", "test -f $work/run/worker.ready"]
interval = "2s"
$restart_table
TOML
}
write_worker "a process that requires web"

"$bin" check --config-only >/dev/null

echo "== launchgraph up in $work (${minutes} min, warm-up ${warmup}s)"
"$bin" up >"$work/daemon.log" 2>&1 &
daemon=$!

for _ in $(seq 1 100); do
    [ -S "$LAUNCHGRAPH_SOCKET" ] && break
    kill -0 "$daemon" 2>/dev/null || break
    sleep 0.1
done
if ! [ -S "$LAUNCHGRAPH_SOCKET" ]; then
    echo "soak: the daemon did not create its socket" >&2
    tail -n 40 "$work/daemon.log" >&2
    exit 1
fi

# One client call, bounded: a call that has to be killed is a hang, recorded for the verdict.
call() {
    rc=0
    timeout 20 "$bin" "$@" >/dev/null 2>&1 || rc=$?
    if [ "$rc" = 124 ]; then
        echo "hang: $*" >>"$work/hangs"
    elif [ "$rc" != 0 ]; then
        echo "$rc $*" >>"$work/errors"
    fi
    echo x >>"$work/calls"
}

(
    followers=""
    # Run by the TERM trap.
    # shellcheck disable=SC2317
    stop_followers() {
        for follower in $followers; do
            kill "$follower" 2>/dev/null || true
        done
        exit 0
    }
    trap stop_followers TERM
    i=0
    while :; do
        case $((i % 10)) in
            0) call status ;;
            1) call status flappy ;;
            2) call events ;;
            3)
                # A follower that stays 3 to 9 s, reading live events, then goes.
                timeout $((3 + i % 7)) "$bin" events --follow >/dev/null 2>&1 &
                followers="$followers $!"
                ;;
            4)
                if [ $((i % 20)) = 4 ]; then
                    write_worker "a process that requires web ($i)"
                fi
                call reload
                ;;
            5) call restart web ;;
            6) call metrics ;;
            7) call stop worker ;;
            8) call start worker ;;
            9)
                call reload --dry-run
                call restart crashloop
                ;;
        esac
        i=$((i + 1))
        sleep 2
    done
) &
churn=$!

ticks=$(getconf CLK_TCK)
cpu_ticks() {
    # Fields 14 and 15 of /proc/PID/stat, counted after the `(comm)` field.
    sed 's/.*) //' "/proc/$daemon/stat" | awk '{ print $12 + $13 }'
}
samples="$work/samples"
: >"$samples"
printf '%6s %10s %6s %8s %6s\n' "t(s)" "rss(KiB)" fds threads "cpu%"
start=$(date +%s)
last_ticks=$(cpu_ticks)
last_t=$start
while :; do
    sleep 10
    if ! kill -0 "$daemon" 2>/dev/null; then
        echo "soak: the daemon died" >&2
        tail -n 40 "$work/daemon.log" >&2
        exit 1
    fi
    now=$(date +%s)
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$daemon/status")
    threads=$(awk '/^Threads:/ { print $2 }' "/proc/$daemon/status")
    fds=$(find "/proc/$daemon/fd" -mindepth 1 -maxdepth 1 | wc -l | tr -d ' ')
    cur_ticks=$(cpu_ticks)
    cpu=$(awk -v d="$((cur_ticks - last_ticks))" -v t="$((now - last_t))" -v hz="$ticks" \
        'BEGIN { printf "%.1f", (t > 0 ? 100 * d / hz / t : 0) }')
    last_ticks=$cur_ticks
    last_t=$now
    t=$((now - start))
    printf '%6s %10s %6s %8s %6s\n' "$t" "$rss" "$fds" "$threads" "$cpu"
    echo "$t $rss $fds $threads $cpu" >>"$samples"
    [ "$t" -ge "$duration" ] && break
done

kill "$churn" 2>/dev/null || true
wait "$churn" 2>/dev/null || true
churn=""

verdict=0
calls=$(wc -l <"$work/calls" | tr -d ' ')
errors=0
[ -f "$work/errors" ] && errors=$(wc -l <"$work/errors" | tr -d ' ')
echo "== ${calls} client calls, ${errors} answered with an error (a restart refused mid-flap, say)"
if [ -f "$work/hangs" ]; then
    echo "soak: client calls that hung:" >&2
    cat "$work/hangs" >&2
    verdict=1
fi
echo "== status at the end"
timeout 20 "$bin" status || verdict=1

echo "== growth after the ${warmup}s warm-up: mean of the first third against the last third"
if ! awk -v warmup="$warmup" '
    $1 >= warmup { n++; rss[n] = $2; fds[n] = $3; thr[n] = $4; cpu[n] = $5 }
    function mean(a, from, to,   s, i) { s = 0; for (i = from; i <= to; i++) s += a[i]; return s / (to - from + 1) }
    END {
        if (n < 3) { print "too few samples after the warm-up to judge growth"; exit 0 }
        k = int(n / 3)
        first_rss = mean(rss, 1, k); last_rss = mean(rss, n - k + 1, n)
        first_fds = mean(fds, 1, k); last_fds = mean(fds, n - k + 1, n)
        first_thr = mean(thr, 1, k); last_thr = mean(thr, n - k + 1, n)
        printf "%-8s %12s %12s %10s\n", "", "first third", "last third", "limit"
        printf "%-8s %12.0f %12.0f %10.0f\n", "rss KiB", first_rss, last_rss, first_rss * 1.10 + 2048
        printf "%-8s %12.1f %12.1f %10.1f\n", "fds", first_fds, last_fds, first_fds + 6
        printf "%-8s %12.1f %12.1f %10.1f\n", "threads", first_thr, last_thr, first_thr + 4
        printf "cpu%% mean after the warm-up: %.1f\n", mean(cpu, 1, n)
        bad = 0
        if (last_rss > first_rss * 1.10 + 2048) { print "RSS grew"; bad = 1 }
        if (last_fds > first_fds + 6) { print "open fds grew"; bad = 1 }
        if (last_thr > first_thr + 4) { print "threads grew"; bad = 1 }
        exit bad
    }' "$samples"; then
    verdict=1
fi

echo "== stopping the daemon (SIGTERM; bound 60 s)"
kill -TERM "$daemon"
stopped=""
for _ in $(seq 1 600); do
    if ! kill -0 "$daemon" 2>/dev/null; then
        stopped=yes
        break
    fi
    sleep 0.1
done
if [ -z "$stopped" ]; then
    echo "soak: the daemon did not exit within 60 s of SIGTERM" >&2
    verdict=1
else
    rc=0
    wait "$daemon" || rc=$?
    daemon=""
    echo "   exited with status $rc"
    [ "$rc" = 0 ] || verdict=1
fi
left=$(marked_pids | tr '\n' ' ')
if [ -n "$left" ]; then
    echo "soak: unit processes outlived the daemon: $left" >&2
    verdict=1
fi

if [ "$verdict" = 0 ]; then
    echo "soak: passed (${minutes} min)"
else
    echo "soak: FAILED; the daemon's log ends:" >&2
    tail -n 40 "$work/daemon.log" >&2
fi
exit "$verdict"
}

main "$@"
