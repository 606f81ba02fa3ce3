#!/bin/bash
# Builds the macOS installer package of launchgraph, target/pkg/launchgraph-<version>.pkg, with
# pkgbuild and productbuild (pkgbuild(1) and productbuild(1), https://keith.github.io/xcode-man-pages/). Run it on a Mac with the Xcode command line
# tools, from anywhere in the repository:
#
#   scripts/build-pkg.sh                                   unsigned, for local testing
#   scripts/build-pkg.sh --app-identity "Developer ID Application: Name (TEAMID)" \
#       --installer-identity "Developer ID Installer: Name (TEAMID)" \
#       --notary-profile NAME                              signed, notarized, stapled
#   scripts/build-pkg.sh --dry-run [options]               print the commands, run none
#
# Distribution outside the Mac it was built on needs all three. Notarization rejects a
# package whose executables are not signed with a Developer ID, the hardened runtime and a
# secure timestamp, so the binary is signed first (codesign --force --options runtime
# --timestamp --sign), then the product (productbuild --sign), which is submitted with
# `xcrun notarytool submit --keychain-profile NAME --wait` and stapled with
# `xcrun stapler staple`, so Gatekeeper accepts it offline
# (https://developer.apple.com/documentation/security/notarizing-macos-software-before-distribution;
# GuillaumeFalourd/sign-and-notarize-gha README). The profile is made once with
# `xcrun notarytool store-credentials NAME`. An unsigned package installs with
# `sudo installer -pkg` on the Mac that built it; downloaded, it is quarantined and Gatekeeper
# refuses to open it (since Sequoia without the Control-click override).
#
# Payload (installed relative to /):
#   usr/local/bin/launchgraph                           the release binary
#   Library/LaunchDaemons/com.launchgraph.daemon.plist   the daemon (packaging/)
#   usr/local/share/launchgraph/units/*.toml             the shipped units, as examples
#   usr/local/share/launchgraph/uninstall.sh             packaging/pkg/uninstall.sh
#   private/etc/newsyslog.d/launchgraph.conf             log rotation (packaging/pkg/newsyslog.d);
#                                                        private/etc, since /etc is a symlink
# and packaging/pkg/scripts/{preinstall,postinstall} as the package scripts. The units are not
# installed into /usr/local/etc/launchgraph/units by the payload, which would overwrite an
# admin's edits on every upgrade: postinstall copies the examples there only when that
# directory does not exist.
#
# Environment:
#   CARGO, PKGBUILD, PRODUCTBUILD  the tools to run (default: cargo, pkgbuild, productbuild);
#                                  the tests set them to recording stand-ins to run this on Linux
#   CARGO_TARGET_DIR               cargo's target directory (default: <repo>/target)
#   LAUNCHGRAPH_BINARY             package this binary instead of building one (e.g. a
#                                  universal binary made with lipo)
#   PKG_OUT_DIR                    where the stage and the packages go (default: <target>/pkg)
#   PKG_APP_IDENTITY               as --app-identity
#   PKG_INSTALLER_IDENTITY         as --installer-identity (PKG_SIGN_IDENTITY, its older name,
#                                  is still read)
#   PKG_NOTARY_PROFILE             as --notary-profile
#   CODESIGN, XCRUN                the signing tools (default: codesign, xcrun)
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cargo="${CARGO:-cargo}"
pkgbuild="${PKGBUILD:-pkgbuild}"
productbuild="${PRODUCTBUILD:-productbuild}"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
out="${PKG_OUT_DIR:-$target_dir/pkg}"
identifier=com.launchgraph.pkg
label=com.launchgraph.daemon

die() {
    echo "build-pkg: $*" >&2
    exit 1
}

usage() {
    echo "usage: $0 [--app-identity ID] [--installer-identity ID] [--notary-profile NAME] [--dry-run]"
}

codesign="${CODESIGN:-codesign}"
xcrun="${XCRUN:-xcrun}"
app_identity="${PKG_APP_IDENTITY:-}"
installer_identity="${PKG_INSTALLER_IDENTITY:-${PKG_SIGN_IDENTITY:-}}"
notary_profile="${PKG_NOTARY_PROFILE:-}"
dry_run=0
while [ "$#" -gt 0 ]; do
    case "$1" in
        --app-identity | --installer-identity | --notary-profile)
            if [ "$#" -lt 2 ] || [ -z "$2" ]; then
                echo "build-pkg: $1 needs a value" >&2
                usage >&2
                exit 64
            fi
            case "$1" in
                --app-identity) app_identity="$2" ;;
                --installer-identity) installer_identity="$2" ;;
                *) notary_profile="$2" ;;
            esac
            shift 2
            ;;
        --dry-run)
            dry_run=1
            shift
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            echo "build-pkg: unknown argument '$1'" >&2
            usage >&2
            exit 64
            ;;
    esac
done
# Notarization refuses what is not signed: ask for it only with both identities.
if [ -n "$notary_profile" ] && { [ -z "$app_identity" ] || [ -z "$installer_identity" ]; }; then
    echo "build-pkg: --notary-profile needs --app-identity and --installer-identity: notarization rejects unsigned code" >&2
    exit 64
fi

# Runs a command, or with --dry-run prints it, quoted so it can be pasted into a shell.
run() {
    if [ "$dry_run" -eq 1 ]; then
        printf 'would run:'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

# The version is the [package] version of Cargo.toml: pkgbuild's --version is how the
# Installer orders upgrades, and a missing one becomes 0 (pkgbuild(1) and productbuild(1), https://keith.github.io/xcode-man-pages/).
version="$(awk -F'"' '
    /^\[/ { in_package = ($0 == "[package]") }
    in_package && /^version[[:space:]]*=/ { print $2; exit }
' "$repo/Cargo.toml")"
case "$version" in
    [0-9]*.[0-9]*.[0-9]*) ;;
    *) die "no [package] version found in $repo/Cargo.toml (got '$version')" ;;
esac

# Fail before the long build when the packaging tools are missing.
need() {
    command -v "$1" >/dev/null 2>&1 ||
        die "$1 not found: build the package on macOS with the Xcode command line tools (xcode-select --install), or set PKGBUILD/PRODUCTBUILD/CODESIGN/XCRUN"
}
if [ "$dry_run" -eq 0 ]; then
    need "$pkgbuild"
    need "$productbuild"
    if [ -n "$app_identity" ]; then need "$codesign"; fi
    if [ -n "$notary_profile" ]; then need "$xcrun"; fi
fi

if [ -n "${LAUNCHGRAPH_BINARY:-}" ]; then
    binary="$LAUNCHGRAPH_BINARY"
else
    if [ "$dry_run" -eq 0 ]; then
        command -v "$cargo" >/dev/null 2>&1 || die "$cargo not found: install a Rust toolchain, or set CARGO"
    fi
    # --locked: the committed Cargo.lock, as the Homebrew formula builds it.
    (cd "$repo" && run "$cargo" build --release --locked --bin launchgraph)
    binary="$target_dir/release/launchgraph"
fi
[ "$dry_run" -eq 1 ] || [ -f "$binary" ] || die "no binary at $binary"

stage="$out/stage"
payload="$stage/root"
scripts="$stage/scripts"
component="$out/launchgraph-component.pkg"
product="$out/launchgraph-$version.pkg"
if [ "$dry_run" -eq 0 ]; then
    rm -rf "$stage"
    install -d -m 755 "$payload/usr/local/bin" "$payload/Library/LaunchDaemons" \
        "$payload/usr/local/share/launchgraph/units" "$payload/private/etc/newsyslog.d" "$scripts"
    install -m 755 "$binary" "$payload/usr/local/bin/launchgraph"
    install -m 644 "$repo/packaging/$label.plist" "$payload/Library/LaunchDaemons/$label.plist"
    install -m 644 "$repo"/units/*.toml "$payload/usr/local/share/launchgraph/units/"
    install -m 755 "$repo/packaging/pkg/uninstall.sh" "$payload/usr/local/share/launchgraph/uninstall.sh"
    install -m 644 "$repo/packaging/pkg/newsyslog.d/launchgraph.conf" "$payload/private/etc/newsyslog.d/launchgraph.conf"
    install -m 755 "$repo/packaging/pkg/scripts/preinstall" "$repo/packaging/pkg/scripts/postinstall" "$scripts/"

    # A plist launchd cannot parse would only show up at bootstrap; plutil exists on macOS only.
    if command -v plutil >/dev/null 2>&1; then
        plutil -lint "$payload/Library/LaunchDaemons/$label.plist" >/dev/null ||
            die "packaging/$label.plist does not lint"
    fi

    rm -f "$component" "$product"
else
    echo "build-pkg: dry run: would stage the payload in $payload and the scripts in $scripts"
fi

# The binary first: notarization checks every executable inside the package.
if [ -n "$app_identity" ]; then
    run "$codesign" --force --options runtime --timestamp --sign "$app_identity" \
        "$payload/usr/local/bin/launchgraph"
fi

# --ownership recommended archives the files as root:wheel, whoever built them.
run "$pkgbuild" \
    --root "$payload" \
    --identifier "$identifier" \
    --version "$version" \
    --install-location / \
    --scripts "$scripts" \
    --ownership recommended \
    "$component"

if [ -n "$installer_identity" ]; then
    run "$productbuild" --sign "$installer_identity" --package "$component" "$product"
else
    run "$productbuild" --package "$component" "$product"
fi

if [ -n "$notary_profile" ]; then
    # --wait returns when Apple has decided; staple fails when there is no ticket, that is
    # when the submission was not accepted (`xcrun notarytool log <id>` says why).
    run "$xcrun" notarytool submit "$product" --keychain-profile "$notary_profile" --wait
    run "$xcrun" stapler staple "$product"
fi

if [ "$dry_run" -eq 1 ]; then
    echo "build-pkg: dry run: nothing was built, signed or submitted"
    exit 0
fi
echo "build-pkg: $product"
if [ -n "$notary_profile" ]; then
    echo "build-pkg: signed, notarized and stapled: ready to distribute"
else
    if [ -z "$app_identity" ] || [ -z "$installer_identity" ]; then
        echo "build-pkg: NOT SIGNED: good for local testing only (sudo installer -pkg $product on this Mac)."
    else
        echo "build-pkg: signed but NOT NOTARIZED: good for local testing only (sudo installer -pkg $product on this Mac)."
    fi
    echo "build-pkg: downloaded, Gatekeeper refuses to open it; to distribute, give --app-identity, --installer-identity and --notary-profile."
fi
