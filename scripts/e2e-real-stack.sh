#!/bin/bash
# End-to-end run of `launchgraph up` against the real stack on Linux: the OpenClaw gateway
# (openclaw@2026.9.6 from npm, on Node 24 from npm) and an Ollama-API server (ollama-proxy-plus
# from PyPI on 127.0.0.1:11434), as two `exec` units. It checks that the gateway starts only once
# /api/version answers, that a SIGKILL of the model server cycles the gateway in order, and that
# SIGTERM stops both in reverse order and leaves no process behind. See docs/e2e.md.
#
# Usage: scripts/e2e-real-stack.sh
# Environment (all optional):
#   LAUNCHGRAPH_E2E_CACHE          install cache, outside the checkout (default ~/.cache/launchgraph-e2e)
#   LAUNCHGRAPH_BIN                a launchgraph binary to test instead of building one
#   LAUNCHGRAPH_E2E_PROFILE        cargo profile to build when LAUNCHGRAPH_BIN is unset: dev (default) or release
#   LAUNCHGRAPH_E2E_GATEWAY_START_TIMEOUT  the gateway unit's start-timeout in seconds (default 120)
#   LAUNCHGRAPH_E2E_KEEP=1         keep the run directory even when the run passes
#   LAUNCHGRAPH_E2E_DEADLINE       overall bound in seconds after the installs (default 720)
set -Eeuo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd -P)"
OLLAMA_PORT=11434
GATEWAY_PORT=18789
GATEWAY_START_TIMEOUT="${LAUNCHGRAPH_E2E_GATEWAY_START_TIMEOUT:-120}"
DEADLINE_S="${LAUNCHGRAPH_E2E_DEADLINE:-720}"
PROFILE="${LAUNCHGRAPH_E2E_PROFILE:-dev}"

T_SCRIPT0=$(date +%s%N)
say() { printf '[e2e %6.1fs] %s\n' "$(( ($(date +%s%N) - T_SCRIPT0) / 1000000 ))e-3" "$*"; }
ms_between() { echo $(( ($2 - $1) / 1000000 )); }

RUN=""
LG_PID=""
POLL_PID=""
FAILED=1
declare -a SUMMARY=()
note() { SUMMARY+=("$(printf '%-44s %s' "$1" "$2")"); }

# ---------------------------------------------------------------------------------------------
# Failure reporting and cleanup
# ---------------------------------------------------------------------------------------------
show_file() {
  local title=$1 file=$2 lines=${3:-200}
  [ -s "$file" ] || return 0
  printf '\n----- %s (%s, last %s lines) -----\n' "$title" "$file" "$lines"
  tail -n "$lines" "$file" | cut -c1-400
}

dump_logs() {
  [ -n "$RUN" ] || return 0
  show_file "launchgraph" "$RUN/launchgraph.log" 200
  show_file "launchgraph check" "$RUN/check.log" 60
  show_file "openclaw-gateway stdout" "$RUN/gateway/stdout.log" 80
  show_file "openclaw-gateway stderr" "$RUN/gateway/stderr.log" 40
  show_file "openclaw-gateway file log" "$RUN/gateway/openclaw.log" 30
  show_file "ollama (ollama-proxy-plus) output" "$RUN/ollama/output.log" 30
  show_file "openclaw config" "$RUN/gateway/config.log" 30
  show_file "/api/version poller" "$RUN/poll.ollama" 20
}

REPORTED=0
fail() {
  trap - ERR
  printf '\nE2E FAILED: %s\n' "$*" >&2
  dump_logs >&2
  REPORTED=1
  exit 1
}

# A command that fails outside any check (set -e) is reported with its line, and the logs.
LAST_ERR=""
trap 'LAST_ERR="exit $? at line $LINENO: $BASH_COMMAND"' ERR

# Every process of the run carries LAUNCHGRAPH_E2E_RUN=$RUN in its environment (the units set
# it, children inherit it), which finds them even after they left their process group.
run_pids() {
  local f pid
  [ -n "$RUN" ] || return 0
  for f in /proc/[0-9]*/environ; do
    pid=${f#/proc/}
    pid=${pid%/environ}
    [ "$pid" != "$$" ] || continue
    if grep -qzxF "LAUNCHGRAPH_E2E_RUN=$RUN" "$f" 2>/dev/null; then
      echo "$pid"
    fi
  done
}

TMP_SNAPSHOT=""
snapshot_tmp() { find /tmp -maxdepth 2 -path '/tmp/openclaw*' 2>/dev/null | sort; }

clean_tmp() {
  # Remove the /tmp/openclaw* entries that did not exist before this run (OpenClaw writes its
  # default rolling log and its state-lock files there whatever its state directory).
  [ -n "$TMP_SNAPSHOT" ] && [ -f "$TMP_SNAPSHOT" ] || return 0
  local p
  snapshot_tmp | comm -13 "$TMP_SNAPSHOT" - | sort -r | while read -r p; do
    if [ -d "$p" ] && [ ! -L "$p" ]; then
      rmdir "$p" 2>/dev/null || say "left $p: it holds files this run did not create"
    else
      rm -f "$p"
    fi
  done
}

cleanup() {
  local rc=$? pid
  set +e
  trap - EXIT INT TERM ERR
  if [ "$rc" != 0 ] && [ "$REPORTED" = 0 ] && [ "$BASHPID" = "$$" ]; then
    printf '\nE2E FAILED: unexpected failure (%s)\n' "${LAST_ERR:-exit $rc}" >&2
    dump_logs >&2
  fi
  if [ -n "$POLL_PID" ] && kill -0 "$POLL_PID" 2>/dev/null; then
    kill "$POLL_PID" 2>/dev/null
    wait "$POLL_PID" 2>/dev/null
  fi
  if [ -n "$LG_PID" ] && kill -0 "$LG_PID" 2>/dev/null; then
    say "cleanup: stopping launchgraph (pid $LG_PID)"
    kill -TERM "$LG_PID" 2>/dev/null
    for _ in $(seq 1 300); do kill -0 "$LG_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$LG_PID" 2>/dev/null && kill -KILL "$LG_PID" 2>/dev/null
    wait "$LG_PID" 2>/dev/null
  fi
  for pid in $(run_pids); do
    say "cleanup: killing leftover process $pid: $(tr '\0' ' ' 2>/dev/null </proc/"$pid"/cmdline | cut -c1-160)"
    kill -KILL "$pid" 2>/dev/null
  done
  clean_tmp
  if [ -n "$RUN" ] && [ -d "$RUN" ]; then
    if [ "$FAILED" = 0 ] && [ "${LAUNCHGRAPH_E2E_KEEP:-0}" != 1 ]; then
      rm -rf "$RUN"
    else
      say "run directory kept: $RUN"
    fi
  fi
  [ "$rc" = 0 ] && [ "$FAILED" != 0 ] && rc=1
  exit "$rc"
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM

# cap_secs SECONDS: SECONDS, or less if the overall deadline comes first (fails once it passed).
CAPPED=0
cap_secs() {
  local left=$(( DEADLINE_S - ($(date +%s) - T_DEADLINE0) ))
  [ "$left" -gt 0 ] || fail "the overall deadline of ${DEADLINE_S}s after the installs has passed"
  CAPPED=$1
  [ "$CAPPED" -le "$left" ] || CAPPED=$left
}

# ---------------------------------------------------------------------------------------------
# HTTP and log helpers
# ---------------------------------------------------------------------------------------------
# http_get URL OUTFILE: prints the status code (000 when nothing answered), body to OUTFILE.
if command -v curl >/dev/null 2>&1; then
  http_get() { curl -s -o "$2" -w '%{http_code}' --max-time 3 "$1" 2>/dev/null || true; }
else
  http_get() {
    python3 - "$1" "$2" <<'PY' 2>/dev/null || echo 000
import sys, urllib.request, urllib.error
url, out = sys.argv[1], sys.argv[2]
try:
    r = urllib.request.urlopen(url, timeout=3)
    code, body = r.status, r.read()
except urllib.error.HTTPError as e:
    code, body = e.code, e.read()
except Exception:
    code, body = 0, b""
open(out, "wb").write(body)
print("%03d" % code)
PY
  }
fi

LG_LOG=""
# nth_line REGEX N: the Nth line of launchgraph's log matching REGEX, as "LINENO:LINE".
nth_line() { { grep -nE -- "$1" "$LG_LOG" 2>/dev/null || true; } | sed -n "${2}p"; }
count_lines() { grep -cE -- "$1" "$LG_LOG" 2>/dev/null || true; }
# line_ns "LINENO:LINE": the line's timestamp in ns since the epoch.
line_ns() { local l=${1#*:}; date -d "${l%% *}" +%s%N; }
line_no() { echo "${1%%:*}"; }
# event_field UNIT FROM TO N FIELD: FIELD of the Nth transition of UNIT from FROM to TO ('*'
# for any state), read typed from `launchgraph events --json` (docs/events-schema.md); empty
# when there is none. The log lines are only waited on, never read for figures.
event_field() {
  "$LG" events --json --socket "$RUN/control/ctl.sock" 2>/dev/null | python3 -c '
import json, sys
unit, frm, to, n, field = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
hits = [e for e in map(json.loads, sys.stdin)
        if e["unit"] == unit and frm in ("*", e["from"]) and to in ("*", e["to"])]
v = hits[n - 1].get(field) if len(hits) >= n else None
print("" if v is None else v)' "$@"
}
# event_pids: every pid launchgraph reported for a unit, from its events.
event_pids() {
  "$LG" events --json --socket "$RUN/control/ctl.sock" 2>/dev/null | python3 -c '
import json, sys
print(" ".join(sorted({str(e["pid"]) for e in map(json.loads, sys.stdin) if e.get("pid")}, key=int)))'
}

# wait_log REGEX N SECONDS WHAT: wait for the Nth matching line; fail fast if launchgraph exits
# or a unit fails.
wait_log() {
  local re=$1 n=$2 secs=$3 what=$4 end
  cap_secs "$secs"
  secs=$CAPPED
  end=$(( $(date +%s) + secs ))
  while :; do
    [ "$(count_lines "$re")" -ge "$n" ] && return 0
    kill -0 "$LG_PID" 2>/dev/null || fail "launchgraph exited while waiting for $what"
    if grep -qE -- '-> failed ' "$LG_LOG"; then
      fail "a unit failed while waiting for $what: $(grep -E -- '-> failed ' "$LG_LOG" | head -1)"
    fi
    [ "$(date +%s)" -lt "$end" ] || fail "timed out after ${secs}s waiting for $what"
    sleep 0.1
  done
}

# assert_before "A" "B" WHY: line A comes before line B in the log and is not later in time.
assert_before() {
  local a=$1 b=$2 why=$3
  [ -n "$a" ] || fail "$why: first line missing"
  [ -n "$b" ] || fail "$why: second line missing"
  if [ "$(line_no "$a")" -ge "$(line_no "$b")" ] || [ "$(line_ns "$a")" -gt "$(line_ns "$b")" ]; then
    fail "$why: out of order:
  ${a#*:}
  ${b#*:}"
  fi
  say "ok: $why"
}

# stamp FILE PID: the exec time (ns) the process PID recorded in FILE.
stamp() { awk -v p="$2" '$2 == p { print $1; exit }' "$1" 2>/dev/null; }

wait_http() {
  # wait_http URL STATUS SECONDS REGEX WHAT: poll until URL answers STATUS with a body matching REGEX.
  local url=$1 want=$2 secs=$3 re=$4 what=$5 code end body="$RUN/http.body"
  cap_secs "$secs"
  secs=$CAPPED
  end=$(( $(date +%s) + secs ))
  while :; do
    code=$(http_get "$url" "$body")
    if [ "$code" = "$want" ] && grep -qE -- "$re" "$body" 2>/dev/null; then
      say "ok: $what: $url -> $code $(head -c 160 "$body")"
      return 0
    fi
    [ "$(date +%s)" -lt "$end" ] || fail "$what: $url answered ${code} ($(head -c 300 "$body" 2>/dev/null)) after ${secs}s, expected $want matching /$re/"
    sleep 0.25
  done
}

port_free() {
  # The gateway listens on 127.0.0.1 and [::1]; Ollama on 127.0.0.1. Anything already there
  # would answer our probes in place of the units, so the run cannot go on.
  local port=$1 who=""
  if command -v ss >/dev/null 2>&1; then
    who=$(ss -Hltnp "sport = :$port" 2>/dev/null || true)
  fi
  if [ -z "$who" ]; then
    who=$(python3 - "$port" <<'PY'
import socket, sys
port = int(sys.argv[1])
for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    try:
        with socket.socket(family) as s:
            s.settimeout(1)
            s.connect((host, port))
            print(f"something accepts connections on {host} port {port}")
    except OSError:
        pass
PY
)
  fi
  if [ -n "$who" ]; then
    fail "port $port is already in use, so this run cannot own it:
$who
Stop whatever listens there (another gateway or model server) and run again."
  fi
}

# ---------------------------------------------------------------------------------------------
# 1. Install (cached) and build
# ---------------------------------------------------------------------------------------------
say "installing into ${LAUNCHGRAPH_E2E_CACHE:-${HOME:-/root}/.cache/launchgraph-e2e} (skipped where cached)"
t0=$(date +%s%N)
NODE_BIN="" OPENCLAW_ENTRY="" OPENCLAW_VERSION="" OLLAMA_PROXY_BIN="" CACHE_DIR=""
INSTALL_OUT=$(bash "$ROOT/scripts/e2e-install.sh" </dev/null) || fail "the installer failed"
eval "$INSTALL_OUT"
note "install (node, openclaw, ollama-proxy-plus)" "$(ms_between "$t0" "$(date +%s%N)") ms"
say "node $("$NODE_BIN" --version), openclaw $OPENCLAW_VERSION, ollama-proxy-plus at $OLLAMA_PROXY_BIN"

T_DEADLINE0=$(date +%s)
if [ -n "${LAUNCHGRAPH_BIN:-}" ]; then
  [ -x "$LAUNCHGRAPH_BIN" ] || fail "LAUNCHGRAPH_BIN=$LAUNCHGRAPH_BIN is not an executable file"
  LG="$(cd "$(dirname "$LAUNCHGRAPH_BIN")" && pwd -P)/$(basename "$LAUNCHGRAPH_BIN")"
  note "build" "skipped (LAUNCHGRAPH_BIN)"
else
  case "$PROFILE" in
    dev) dir=debug ;;
    release) dir=release ;;
    *) fail "LAUNCHGRAPH_E2E_PROFILE must be dev or release, not '$PROFILE'" ;;
  esac
  say "building launchgraph (cargo build --profile $PROFILE)"
  t0=$(date +%s%N)
  (cd "$ROOT" && cargo build --locked --profile "$PROFILE" --bin launchgraph </dev/null) || fail "cargo build failed"
  target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
  case "$target_dir" in /*) ;; *) target_dir="$ROOT/$target_dir" ;; esac
  LG="$target_dir/$dir/launchgraph"
  [ -x "$LG" ] || fail "cargo build did not produce $LG"
  note "build (cargo build --profile $PROFILE)" "$(ms_between "$t0" "$(date +%s%N)") ms"
fi
say "launchgraph: $LG"

# ---------------------------------------------------------------------------------------------
# 2. The run directory: OpenClaw's own HOME, state and config; the units
# ---------------------------------------------------------------------------------------------
port_free "$OLLAMA_PORT"
port_free "$GATEWAY_PORT"

RUN="$(mktemp -d "${TMPDIR:-/tmp}/launchgraph-e2e.XXXXXX")"
RUN="$(cd "$RUN" && pwd -P)"
TMP_SNAPSHOT="$RUN/tmp-before.txt"
snapshot_tmp >"$TMP_SNAPSHOT"
mkdir -p "$RUN/units" "$RUN/state" "$RUN/events" \
  "$RUN/gateway/home" "$RUN/gateway/state" "$RUN/gateway/tmp" "$RUN/ollama/home"
LG_LOG="$RUN/launchgraph.log"
say "run directory: $RUN"

GW_HOME="$RUN/gateway/home"
GW_STATE="$RUN/gateway/state"
GW_CONFIG="$RUN/gateway/openclaw.json"
GW_TMP="$RUN/gateway/tmp"
GW_TOKEN="e2e-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
NODE_DIR="$(dirname "$NODE_BIN")"
GW_PATH="$NODE_DIR:/usr/local/bin:/usr/bin:/bin"
# OpenClaw keeps Node's compile cache in $TMPDIR/node-compile-cache (setting NODE_COMPILE_CACHE
# instead makes openclaw.mjs respawn itself, so the gateway would no longer be the pid we spawn).
# Keeping it in the install cache makes later runs start like a host where the gateway ran before.
mkdir -p "$CACHE_DIR/node-compile-cache"
ln -s "$CACHE_DIR/node-compile-cache" "$GW_TMP/node-compile-cache"

# Configure the gateway offline, in one `openclaw config set --batch-json` call (each call
# loads the whole CLI: several seconds): local mode, loopback, token auth, our port, and its
# file log inside the run directory.
say "configuring OpenClaw in $RUN/gateway (offline)"
t0=$(date +%s%N)
batch=$(printf '[%s]' "$(printf '{"path":"%s","value":%s},' \
  gateway.mode '"local"' \
  gateway.bind '"loopback"' \
  gateway.port "$GATEWAY_PORT" \
  gateway.auth.mode '"token"' \
  gateway.auth.token "\"$GW_TOKEN\"" \
  logging.file "\"$RUN/gateway/openclaw.log\"" | sed 's/,$//')")
env -i PATH="$GW_PATH" HOME="$GW_HOME" TMPDIR="$GW_TMP" \
  OPENCLAW_STATE_DIR="$GW_STATE" OPENCLAW_CONFIG_PATH="$GW_CONFIG" \
  OPENCLAW_DISABLE_BONJOUR=1 OPENCLAW_NO_AUTO_UPDATE=1 LAUNCHGRAPH_E2E_RUN="$RUN" \
  timeout 180 "$NODE_BIN" "$OPENCLAW_ENTRY" config set --strict-json --batch-json "$batch" \
  </dev/null >"$RUN/gateway/config.log" 2>&1 || fail "openclaw config set failed"
grep -q '"mode": "local"' "$GW_CONFIG" || fail "$GW_CONFIG does not set gateway.mode local"
note "openclaw config set (6 keys, one call)" "$(ms_between "$t0" "$(date +%s%N)") ms"

# The gateway's exec time: node records performance.timeOrigin (its process start) from a
# preload, so the gateway's argv keeps the absolute node path first.
cat >"$RUN/gateway/exec-stamp.mjs" <<'JS'
// Records this node process's start time (ns since the epoch) and pid, for the e2e run.
import { appendFileSync } from "node:fs";
import { isMainThread } from "node:worker_threads";
const file = process.env.LAUNCHGRAPH_E2E_STAMP;
if (file && isMainThread) {
  const ns = BigInt(Math.round(performance.timeOrigin * 1000)) * 1000n;
  try { appendFileSync(file, `${ns} ${process.pid} ${process.argv[1] ?? ""}\n`); } catch {}
}
JS

toml_str() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }
toml_arr() { local out="" a; for a in "$@"; do out+="${out:+, }$(toml_str "$a")"; done; printf '[%s]' "$out"; }

cat >"$RUN/units/ollama.toml" <<EOF
# The Ollama API on 127.0.0.1:$OLLAMA_PORT, served by ollama-proxy-plus (its /api/version needs no
# model). The shell records the exec time, then execs the server in its place (same pid).
description = "Ollama-API server (ollama-proxy-plus), HTTP on 127.0.0.1:$OLLAMA_PORT"

[exec]
command = $(toml_arr /bin/sh -c "echo \"\$(date +%s%N) \$\$\" >> '$RUN/events/ollama'; exec \"\$0\" \"\$@\"" \
  "$OLLAMA_PROXY_BIN" serve --host 127.0.0.1 --port "$OLLAMA_PORT")
env = { HOME = $(toml_str "$RUN/ollama/home"), LAUNCHGRAPH_E2E_RUN = $(toml_str "$RUN"), PYTHONUNBUFFERED = "1" }
working-directory = $(toml_str "$RUN/ollama")
stdout = $(toml_str "$RUN/ollama/output.log")
stderr = $(toml_str "$RUN/ollama/output.log")
stop-timeout = "10s"

[ready]
http = "http://127.0.0.1:$OLLAMA_PORT/api/version"
body-contains = "version"
interval = "1s"
timeout = "2s"
start-timeout = "90s"

[alive]
http = "http://127.0.0.1:$OLLAMA_PORT/"
body-contains = "Ollama is running"
interval = "10s"
timeout = "3s"
failures = 3

[restart]
policy = "on-failure"
initial = "1s"
max = "60s"
reset-after = "5m"
start-limit-count = 5
start-limit-period = "10m"
EOF

cat >"$RUN/units/openclaw-gateway.toml" <<EOF
# The real OpenClaw gateway $OPENCLAW_VERSION on 127.0.0.1:$GATEWAY_PORT, run by the absolute path of
# Node 24 (never through openclaw.mjs's "#!/usr/bin/env node"), with its own HOME, state
# directory and config in the run directory.
description = "OpenClaw Gateway, HTTP/WebSocket on 127.0.0.1:$GATEWAY_PORT"
requires = ["ollama"]

[exec]
command = $(toml_arr "$NODE_BIN" "--import=file://$RUN/gateway/exec-stamp.mjs" "$OPENCLAW_ENTRY" gateway run)
working-directory = $(toml_str "$RUN/gateway")
stdout = $(toml_str "$RUN/gateway/stdout.log")
stderr = $(toml_str "$RUN/gateway/stderr.log")
stop-timeout = "30s"

[exec.env]
PATH = $(toml_str "$GW_PATH")
HOME = $(toml_str "$GW_HOME")
TMPDIR = $(toml_str "$GW_TMP")
OPENCLAW_STATE_DIR = $(toml_str "$GW_STATE")
OPENCLAW_CONFIG_PATH = $(toml_str "$GW_CONFIG")
OPENCLAW_SUPERVISOR_MODE = "external"
OPENCLAW_SERVICE_REPAIR_POLICY = "external"
OPENCLAW_DISABLE_BONJOUR = "1"
OPENCLAW_NO_AUTO_UPDATE = "1"
LAUNCHGRAPH_E2E_RUN = $(toml_str "$RUN")
LAUNCHGRAPH_E2E_STAMP = $(toml_str "$RUN/events/gateway")

# /startupz: 200 once startup is complete. A cold gateway takes 4 to 8 s on an idle host and
# much longer on a loaded 2-core one.
[ready]
http = "http://127.0.0.1:$GATEWAY_PORT/startupz"
status = 200
interval = "1s"
timeout = "2s"
start-timeout = "${GATEWAY_START_TIMEOUT}s"

[alive]
http = "http://127.0.0.1:$GATEWAY_PORT/healthz"
interval = "10s"
timeout = "3s"
failures = 3

[restart]
policy = "on-failure"
initial = "2s"
max = "2m"
reset-after = "10m"
start-limit-count = 5
start-limit-period = "15m"
no-restart-exit-codes = [78]
EOF

say "checking the units (launchgraph check)"
set +e
"$LG" check --units "$RUN/units" --state-dir "$RUN/state" </dev/null >"$RUN/check.log" 2>&1
rc=$?
set -e
sed 's/^/  check: /' "$RUN/check.log" | cut -c1-300
[ "$rc" = 0 ] || fail "launchgraph check exited $rc"

# ---------------------------------------------------------------------------------------------
# 3. Up: the gateway starts only once /api/version answers
# ---------------------------------------------------------------------------------------------
# Our own view of the Ollama API, independent of launchgraph's probe: every few ms while it does
# not answer, every 200 ms while it does; one line per change: "<ns> up <ns of the last miss>"
# or "<ns> down". It stops by itself when this script or its deadline is gone.
python3 - "$RUN/poll.ollama" "$OLLAMA_PORT" "$$" "$DEADLINE_S" <<'PY' &
import os, sys, time, urllib.request
out, port, parent, deadline = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
url = f"http://127.0.0.1:{port}/api/version"
end = time.monotonic() + deadline
up, last_miss = False, time.time_ns()
with open(out, "a", buffering=1) as f:
    while time.monotonic() < end:
        try:
            os.kill(parent, 0)
        except OSError:
            break
        t = time.time_ns()
        try:
            ok = b"version" in urllib.request.urlopen(url, timeout=1).read()
        except Exception:
            ok = False
        if ok and not up:
            f.write(f"{time.time_ns()} up {last_miss}\n")
        elif not ok and up:
            f.write(f"{t} down\n")
        up = ok
        if not ok:
            last_miss = t
        time.sleep(0.2 if up else 0.003)
PY
POLL_PID=$!

say "starting launchgraph up"
T_UP=$(date +%s%N)
"$LG" up --units "$RUN/units" --state-dir "$RUN/state" --socket "$RUN/control/ctl.sock" </dev/null 2>"$LG_LOG" >"$RUN/launchgraph.stdout" &
LG_PID=$!

wait_log '^[^ ]+ +INFO ollama: started -> ready READY' 1 120 "ollama to be ready"
wait_log '^[^ ]+ +INFO openclaw-gateway: started -> ready READY' 1 $(( GATEWAY_START_TIMEOUT + 60 )) "the gateway to be ready"
T_GW_READY_SEEN=$(date +%s%N)

O_SPAWN1=$(nth_line 'ollama: starting -> started SPAWNED' 1)
O_READY1=$(nth_line 'ollama: started -> ready READY' 1)
G_WAIT1=$(nth_line 'openclaw-gateway: [a-z]+ -> waiting WAITING_FOR_DEPENDENCY on=ollama' 1)
G_START1=$(nth_line 'openclaw-gateway: waiting -> starting' 1)
G_SPAWN1=$(nth_line 'openclaw-gateway: starting -> started SPAWNED' 1)
G_READY1=$(nth_line 'openclaw-gateway: started -> ready READY' 1)
O_PID1=$(event_field ollama starting started 1 pid)
G_PID1=$(event_field openclaw-gateway starting started 1 pid)
{ [ -n "$O_SPAWN1" ] && [ -n "$O_PID1" ]; } || fail "no pid in ollama's first spawn event"
{ [ -n "$G_SPAWN1" ] && [ -n "$G_PID1" ]; } || fail "no pid in the gateway's first spawn event"
say "ollama pid $O_PID1, gateway pid $G_PID1"

[ -n "$G_WAIT1" ] || fail "the gateway never waited for ollama (no WAITING_FOR_DEPENDENCY on=ollama line)"
assert_before "$O_READY1" "$G_START1" "log: ollama ready before the gateway starts"
[ "$(count_lines 'openclaw-gateway: [a-z]+ -> starting')" = 1 ] || fail "the gateway was started more than once before it became ready"

O_EXEC1=$(stamp "$RUN/events/ollama" "$O_PID1")
G_EXEC1=$(stamp "$RUN/events/gateway" "$G_PID1")
[ -n "$O_EXEC1" ] || fail "no exec time recorded for ollama pid $O_PID1 in $RUN/events/ollama"
[ -n "$G_EXEC1" ] || fail "no exec time recorded for gateway pid $G_PID1 in $RUN/events/gateway"
POLL_UP1=$(awk '$2 == "up" { print; exit }' "$RUN/poll.ollama")
[ -n "$POLL_UP1" ] || fail "our own /api/version poller never saw the API answer"
API_FIRST1=$(cut -d' ' -f1 <<<"$POLL_UP1")
API_MISS1=$(cut -d' ' -f3 <<<"$POLL_UP1")
O_READY1_NS=$(line_ns "$O_READY1")
[ "$G_EXEC1" -gt "$O_READY1_NS" ] \
  || fail "timestamps: the gateway process started at $G_EXEC1, before launchgraph logged ollama READY at $O_READY1_NS"
[ "$G_EXEC1" -gt "$API_MISS1" ] \
  || fail "timestamps: the gateway process started at $G_EXEC1, when /api/version did not answer yet (last miss at $API_MISS1)"
say "ok: timestamps: gateway exec $(ms_between "$O_READY1_NS" "$G_EXEC1") ms after ollama READY, $(ms_between "$API_MISS1" "$G_EXEC1") ms after /api/version last failed to answer"
if [ "$G_EXEC1" -lt "$API_FIRST1" ]; then
  say "note: launchgraph's probe saw /api/version answer $(ms_between "$G_EXEC1" "$API_FIRST1") ms before our poller did"
fi

note "ollama: exec -> /api/version answers (poller)" "$(ms_between "$O_EXEC1" "$API_FIRST1") ms"
note "ollama: exec -> READY (launchgraph)" "$(ms_between "$O_EXEC1" "$O_READY1_NS") ms"
note "gate latency: ollama READY -> gateway exec" "$(ms_between "$O_READY1_NS" "$G_EXEC1") ms"
note "gate latency: /api/version answers -> gateway exec" "$(ms_between "$API_FIRST1" "$G_EXEC1") ms"
note "gateway: exec -> READY (/startupz 200)" "$(ms_between "$G_EXEC1" "$(line_ns "$G_READY1")") ms"
note "launchgraph up -> gateway READY" "$(ms_between "$T_UP" "$(line_ns "$G_READY1")") ms"

wait_http "http://127.0.0.1:$GATEWAY_PORT/healthz" 200 30 '"status" *: *"live"' "gateway /healthz"
t0=$(date +%s%N)
wait_http "http://127.0.0.1:$GATEWAY_PORT/readyz" 200 60 '"ready" *: *true' "gateway /readyz"
note "gateway READY -> /readyz 200 (as polled)" "$(ms_between "$T_GW_READY_SEEN" "$(date +%s%N)") ms"

# launchgraph fingerprints a unit once it is ready: what ran, with the package's version.
FP="$RUN/state/fingerprints/openclaw-gateway.json"
for _ in $(seq 1 100); do [ -s "$FP" ] && break; sleep 0.1; done
[ -s "$FP" ] || fail "no fingerprint $FP after the gateway became ready"
FP_SAYS=$(python3 - "$FP" "$OPENCLAW_VERSION" "$NODE_BIN" "$OPENCLAW_ENTRY" <<'PY'

import json, sys
fp, version, node, entry = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4]
roles = {f["role"]: f["path"] for f in fp["files"]}
assert fp["package"] == ["openclaw", version], fp["package"]
assert roles.get("node") == node and roles.get("entry") == entry, roles
print(f"openclaw {fp['package'][1]}, node {fp.get('node_version')}, entry {roles['entry']}")
PY
) || fail "the gateway's fingerprint does not say what ran: $(head -c 600 "$FP")"
say "ok: fingerprint: $FP_SAYS"

BROKER1=$(sed -nE 's/.*spawn broker ready pid=([0-9]+).*/\1/p' "$RUN/gateway/stdout.log" "$RUN/gateway/stderr.log" 2>/dev/null | head -1)
if [ -n "$BROKER1" ]; then
  say "gateway spawn-broker pid $BROKER1 (session $(ps -o sid= -p "$BROKER1" 2>/dev/null | tr -d ' ' || echo gone))"
fi

# ---------------------------------------------------------------------------------------------
# 4. SIGKILL the model server: the gateway is stopped first, ollama restarts, then the gateway
# ---------------------------------------------------------------------------------------------
grep -qzxF "LAUNCHGRAPH_E2E_RUN=$RUN" "/proc/$O_PID1/environ" 2>/dev/null \
  || fail "pid $O_PID1 is not this run's ollama process"
say "SIGKILL ollama (pid $O_PID1)"
T_KILL=$(date +%s%N)
kill -KILL "$O_PID1"

wait_log '^[^ ]+ +INFO openclaw-gateway: started -> ready READY' 2 $(( GATEWAY_START_TIMEOUT + 90 )) "the gateway to be ready again"

O_DOWN=$(nth_line 'ollama: ready -> [a-z]+ ' 1)
O_DOWN_PID=$(event_field ollama ready '*' 1 pid)
G_STOP=$(nth_line 'openclaw-gateway: ready -> stopping DEPENDENCY_RESTARTING' 1)
G_STOPPED=$(nth_line 'openclaw-gateway: stopping -> [a-z]+ DEPENDENCY_RESTARTING' 1)
O_START2=$(nth_line 'ollama: [a-z]+ -> starting' 2)
O_SPAWN2=$(nth_line 'ollama: starting -> started SPAWNED' 2)
O_READY2=$(nth_line 'ollama: started -> ready READY' 2)
G_START2=$(nth_line 'openclaw-gateway: waiting -> starting' 2)
G_SPAWN2=$(nth_line 'openclaw-gateway: starting -> started SPAWNED' 2)
G_READY2=$(nth_line 'openclaw-gateway: started -> ready READY' 2)
O_PID2=$(event_field ollama starting started 2 pid)
G_PID2=$(event_field openclaw-gateway starting started 2 pid)

[ -n "$O_DOWN" ] || fail "no log line for ollama leaving ready after the SIGKILL"
[ "$O_DOWN_PID" = "$O_PID1" ] || fail "ollama left ready with pid '$O_DOWN_PID', not the killed $O_PID1"
{ [ -n "$O_SPAWN2" ] && [ -n "$O_PID2" ]; } || fail "no pid in ollama's second spawn event"
{ [ -n "$G_SPAWN2" ] && [ -n "$G_PID2" ]; } || fail "no pid in the gateway's second spawn event"
assert_before "$O_DOWN" "$G_STOP" "log: ollama died, then the gateway was stopped (DEPENDENCY_RESTARTING)"
assert_before "$G_STOPPED" "$O_START2" "log: the gateway was down before ollama was started again"
assert_before "$O_READY2" "$G_START2" "log: ollama ready again before the gateway starts again"

O_EXEC2=$(stamp "$RUN/events/ollama" "$O_PID2")
G_EXEC2=$(stamp "$RUN/events/gateway" "$G_PID2")
[ -n "$O_EXEC2" ] || fail "no exec time recorded for the new ollama pid $O_PID2"
[ -n "$G_EXEC2" ] || fail "no exec time recorded for the new gateway pid $G_PID2"
G_STOPPED_NS=$(line_ns "$G_STOPPED")
O_READY2_NS=$(line_ns "$O_READY2")
[ "$O_EXEC2" -gt "$G_STOPPED_NS" ] \
  || fail "timestamps: ollama was respawned at $O_EXEC2, before the gateway was stopped at $G_STOPPED_NS"
if kill -0 "$G_PID1" 2>/dev/null; then fail "the first gateway process $G_PID1 is still alive"; fi
POLL_UP2=$(awk '$2 == "up" { n++ } $2 == "up" && n == 2 { print; exit }' "$RUN/poll.ollama")
[ -n "$POLL_UP2" ] || fail "our own /api/version poller never saw the API answer again"
API_FIRST2=$(cut -d' ' -f1 <<<"$POLL_UP2")
API_MISS2=$(cut -d' ' -f3 <<<"$POLL_UP2")
[ "$G_EXEC2" -gt "$O_READY2_NS" ] \
  || fail "timestamps: the new gateway started at $G_EXEC2, before ollama READY at $O_READY2_NS"
[ "$G_EXEC2" -gt "$API_MISS2" ] \
  || fail "timestamps: the new gateway started at $G_EXEC2, when /api/version did not answer yet (last miss at $API_MISS2)"
say "ok: timestamps: gateway stopped $(ms_between "$T_KILL" "$G_STOPPED_NS") ms after the kill, ollama respawned $(ms_between "$G_STOPPED_NS" "$O_EXEC2") ms after that, gateway respawned $(ms_between "$O_READY2_NS" "$G_EXEC2") ms after ollama READY"

wait_http "http://127.0.0.1:$GATEWAY_PORT/healthz" 200 30 '"status" *: *"live"' "gateway /healthz after the restart"
T_HEALTH2=$(date +%s%N)

# The first gateway's spawn-broker ran in its own session: a process-group stop does not reach
# it. It must still go away with its gateway.
if [ -n "$BROKER1" ]; then
  for _ in $(seq 1 100); do kill -0 "$BROKER1" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$BROKER1" 2>/dev/null; then
    fail "the first gateway's spawn-broker (pid $BROKER1, session $(ps -o sid= -p "$BROKER1" | tr -d ' ')) outlived its gateway (pid $G_PID1) by more than 10 s: $(ps -o pid,ppid,pgid,sid,etime,args -p "$BROKER1" | tail -1)"
  fi
  say "ok: the first gateway's spawn-broker (pid $BROKER1) is gone"
fi

note "restart: SIGKILL -> gateway stopped" "$(ms_between "$T_KILL" "$G_STOPPED_NS") ms"
note "restart: SIGKILL -> ollama exec again" "$(ms_between "$T_KILL" "$O_EXEC2") ms (backoff 1s ±10%)"
note "restart: ollama exec -> /api/version answers" "$(ms_between "$O_EXEC2" "$API_FIRST2") ms"
note "restart: ollama exec -> READY" "$(ms_between "$O_EXEC2" "$O_READY2_NS") ms"
note "restart: ollama READY -> gateway exec" "$(ms_between "$O_READY2_NS" "$G_EXEC2") ms"
note "restart: gateway exec -> READY" "$(ms_between "$G_EXEC2" "$(line_ns "$G_READY2")") ms"
note "restart cycle: SIGKILL -> gateway READY" "$(ms_between "$T_KILL" "$(line_ns "$G_READY2")") ms"
note "restart cycle: SIGKILL -> /healthz 200 again" "$(ms_between "$T_KILL" "$T_HEALTH2") ms"

# ---------------------------------------------------------------------------------------------
# 5. SIGTERM launchgraph: exit 0, the gateway stopped before ollama, nothing left behind
# ---------------------------------------------------------------------------------------------
BROKER2=$(sed -nE 's/.*spawn broker ready pid=([0-9]+).*/\1/p' "$RUN/gateway/stdout.log" "$RUN/gateway/stderr.log" 2>/dev/null | sed -n 2p)
UNIT_PIDS=$(event_pids)
BEFORE_PIDS=$(run_pids | tr '\n' ' ')
say "processes of the run before the stop: $BEFORE_PIDS"
ps -o pid,ppid,pgid,sid,rss,args -p "$(tr ' ' ',' <<<"$BEFORE_PIDS" | sed 's/,$//')" 2>/dev/null | cut -c1-200 | sed 's/^/  /' || true

say "SIGTERM launchgraph (pid $LG_PID)"
T_TERM=$(date +%s%N)
kill -TERM "$LG_PID"
end=$(( $(date +%s) + 90 ))
while kill -0 "$LG_PID" 2>/dev/null; do
  [ "$(date +%s)" -lt "$end" ] || fail "launchgraph did not exit within 90 s of SIGTERM"
  sleep 0.05
done
T_EXIT=$(date +%s%N)
set +e
wait "$LG_PID"
LG_RC=$?
set -e
LG_PID=""
[ "$LG_RC" = 0 ] || fail "launchgraph exited $LG_RC after SIGTERM, expected 0"
say "ok: launchgraph exited 0, $(ms_between "$T_TERM" "$T_EXIT") ms after SIGTERM"
note "shutdown: SIGTERM -> launchgraph exit 0" "$(ms_between "$T_TERM" "$T_EXIT") ms"

G_SHUT=$(nth_line 'openclaw-gateway: stopping -> stopped SHUTDOWN' 1)
O_SHUT0=$(nth_line 'ollama: ready -> stopping SHUTDOWN' 1)
O_SHUT=$(nth_line 'ollama: stopping -> stopped SHUTDOWN' 1)
[ -n "$O_SHUT" ] || fail "no 'ollama: stopping -> stopped SHUTDOWN' line"
assert_before "$G_SHUT" "$O_SHUT0" "log: the gateway was stopped before ollama was asked to stop"
grep -q 'all units stopped' "$LG_LOG" || fail "launchgraph did not log 'all units stopped'"

# Nothing of the run may be left: the units' pids and process groups, the spawn-brokers (own
# sessions), and anything else carrying the run's marker in its environment.
leftovers() {
  local p
  for p in $UNIT_PIDS $BEFORE_PIDS $BROKER1 $BROKER2; do
    kill -0 "$p" 2>/dev/null && echo "$p"
  done
  for p in $UNIT_PIDS; do
    ps -Ao pid=,pgid=,sid= | awk -v g="$p" '$2 == g || $3 == g { print $1 }'
  done
  run_pids
}
end=$(( $(date +%s) + 10 ))
while :; do
  LEFT=$(leftovers | sort -un | tr '\n' ' ')
  [ -n "${LEFT// /}" ] || break
  if [ "$(date +%s)" -ge "$end" ]; then
    msg="processes of the run outlived launchgraph by more than 10 s:"
    for p in $LEFT; do
      msg+=$'\n'"  $(ps -o pid=,ppid=,pgid=,sid=,etime=,args= -p "$p" 2>/dev/null | cut -c1-200)"
      [ "$p" = "$BROKER1" ] || [ "$p" = "$BROKER2" ] && msg+="  <- OpenClaw spawn-broker (own session, not in the gateway's process group)"
    done
    fail "$msg"
  fi
  sleep 0.1
done
say "ok: no process of the run is left (unit pids: $UNIT_PIDS; brokers: ${BROKER1:-?} ${BROKER2:-?})"

kill "$POLL_PID" 2>/dev/null || true
wait "$POLL_PID" 2>/dev/null || true
POLL_PID=""

FAILED=0
echo
echo "== launchgraph e2e against the real stack: PASSED"
echo "   openclaw $OPENCLAW_VERSION on node $("$NODE_BIN" --version), ollama-proxy-plus, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for line in "${SUMMARY[@]}"; do echo "   $line"; done
echo "   total                                        $(( ($(date +%s%N) - T_SCRIPT0) / 1000000 )) ms"
