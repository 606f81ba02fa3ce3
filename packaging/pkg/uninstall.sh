#!/bin/bash
# Uninstalls launchgraph installed by the .pkg: stops and unloads the daemon, gives the
# launchd jobs it adopted back to launchd (`launchgraph release --all`), removes the binary, the daemon's plist, its newsyslog entry and the example units, then forgets the
# package receipt. The .pkg installs this script as /usr/local/share/launchgraph/uninstall.sh (Apple ships no
# uninstaller for packages, launchd.md §7.2).
#
#   sudo /usr/local/share/launchgraph/uninstall.sh           keep units, state and log
#   sudo /usr/local/share/launchgraph/uninstall.sh --purge   remove them too
#
# By default the admin's units (/usr/local/etc/launchgraph), the state (fingerprints of the
# last good runs, /usr/local/var/launchgraph) and the log stay, so a reinstall picks up where
# it left off, as package managers do with configuration. It never runs `launchctl disable`:
# a disable persists and would make a later install's bootstrap fail (launchd.md §4).
#
# Paths are read under $LAUNCHGRAPH_ROOT (unset: the real root); the tests point it at a fake
# root and put stand-ins for launchctl, pkgutil and id first on PATH.
set -euo pipefail

label=com.launchgraph.daemon
pkg_id=com.launchgraph.pkg
root="${LAUNCHGRAPH_ROOT:-}"
binary="$root/usr/local/bin/launchgraph"
plist="$root/Library/LaunchDaemons/$label.plist"
share="$root/usr/local/share/launchgraph"
etc="$root/usr/local/etc/launchgraph"
state="$root/usr/local/var/launchgraph"
log="$root/usr/local/var/log/launchgraph.log"
newsyslog="$root/private/etc/newsyslog.d/launchgraph.conf"
# The daemon's ExitTimeOut (120 s) and a margin; the tests shorten it.
drain_timeout="${LAUNCHGRAPH_DRAIN_TIMEOUT:-130}"

export PATH="${PATH:+$PATH:}/bin:/usr/bin:/sbin:/usr/sbin"

usage() {
    echo "usage: sudo $0 [--purge]"
}

purge=0
case "${1:-}" in
    "") ;;
    --purge) purge=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        exit 64
        ;;
esac

if [ "$(id -u)" -ne 0 ]; then
    echo "uninstall: run as root (sudo $0)" >&2
    exit 77
fi

# Waits until print no longer finds the job (113), since bootout returns before the job is
# gone (launchd.md §4); at most until $drain_timeout seconds have passed in all.
wait_unloaded() {
    while launchctl print "system/$label" >/dev/null 2>&1; do
        if [ "$waited" -ge "$drain_timeout" ]; then
            echo "uninstall: system/$label still loaded ${drain_timeout}s after bootout" >&2
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

# Stop and unload: bootout of the service target; exit 3 means it was not loaded. Exit 36
# (EINPROGRESS, "Operation now in progress") means the job is still stopping, which
# launchgraph's ordered stop makes likely: wait until it is gone and ask again, as the
# preinstall and Homebrew do (osquery/osquery#5698), rather than fail.
waited=0
in_progress=0
while :; do
    rc=0
    launchctl bootout "system/$label" || rc=$?
    case "$rc" in
        0)
            wait_unloaded
            echo "uninstall: stopped system/$label"
            break
            ;;
        3)
            if [ "$in_progress" -eq 1 ]; then
                echo "uninstall: stopped system/$label"
            else
                echo "uninstall: system/$label was not loaded"
            fi
            break
            ;;
        36)
            if [ "$waited" -ge "$drain_timeout" ]; then
                echo "uninstall: bootout of system/$label still in progress after ${drain_timeout}s; nothing removed" >&2
                exit 1
            fi
            in_progress=1
            echo "uninstall: bootout of system/$label in progress; waiting for it to stop"
            sleep 1
            waited=$((waited + 1))
            wait_unloaded
            ;;
        *)
            echo "uninstall: launchctl bootout system/$label failed with exit $rc; nothing removed" >&2
            exit 1
            ;;
    esac
done

# Give every adopted job back to launchd: its plist restored from the backup in the state
# directory and the job reloaded, so it runs as launchd would run it, not without RunAtLoad
# and KeepAlive until someone notices. Only now that the daemon has stopped: its ordered stop
# would stop them again. A job that cannot be released stops the uninstall with everything in
# place, backups included.
if [ -x "$binary" ]; then
    rc=0
    "$binary" release --all --state-dir "$state" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "uninstall: launchgraph release --all failed with exit $rc (see above); nothing removed. Do what it says (e.g. $binary release UNIT --force), then run this again" >&2
        exit 1
    fi
fi

rm -f "$binary" "$plist" "$newsyslog"
rm -rf "$share"
echo "uninstall: removed $binary, $plist, $newsyslog and $share"

if [ "$purge" -eq 1 ]; then
    rm -rf "$etc" "$state"
    rm -f "$log"
    echo "uninstall: removed $etc, $state and $log"
else
    echo "uninstall: kept the units in $etc/units, the state in $state and the log $log (--purge removes them)"
fi

# Forget the receipt last; it "does not touch the installed files" (pkgutil(1), launchd.md
# §7.2). Not having one (installed by hand, or already forgotten) is fine.
if ! pkgutil --forget "$pkg_id"; then
    echo "uninstall: no package receipt for $pkg_id"
fi
echo "uninstall: done"
