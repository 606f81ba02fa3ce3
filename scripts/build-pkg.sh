#!/bin/bash
# Builds the macOS installer package of launchgraph, target/pkg/launchgraph-<version>.pkg, with
# pkgbuild and productbuild (pkgbuild(1) and productbuild(1), https://keith.github.io/xcode-man-pages/). Run it on a Mac with the Xcode command line
# tools, from anywhere in the repository:
#
#   scripts/build-pkg.sh
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
#   PKG_SIGN_IDENTITY              when set, productbuild signs the product with this identity
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
for tool in "$pkgbuild" "$productbuild"; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "$tool not found: build the package on macOS with the Xcode command line tools (xcode-select --install), or set PKGBUILD/PRODUCTBUILD"
done

if [ -n "${LAUNCHGRAPH_BINARY:-}" ]; then
    binary="$LAUNCHGRAPH_BINARY"
else
    command -v "$cargo" >/dev/null 2>&1 || die "$cargo not found: install a Rust toolchain, or set CARGO"
    # --locked: the committed Cargo.lock, as the Homebrew formula builds it.
    (cd "$repo" && "$cargo" build --release --locked --bin launchgraph)
    binary="$target_dir/release/launchgraph"
fi
[ -f "$binary" ] || die "no binary at $binary"

stage="$out/stage"
rm -rf "$stage"
payload="$stage/root"
scripts="$stage/scripts"
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

component="$out/launchgraph-component.pkg"
product="$out/launchgraph-$version.pkg"
rm -f "$component" "$product"

# --ownership recommended archives the files as root:wheel, whoever built them.
"$pkgbuild" \
    --root "$payload" \
    --identifier "$identifier" \
    --version "$version" \
    --install-location / \
    --scripts "$scripts" \
    --ownership recommended \
    "$component"

if [ -n "${PKG_SIGN_IDENTITY:-}" ]; then
    "$productbuild" --sign "$PKG_SIGN_IDENTITY" --package "$component" "$product"
else
    "$productbuild" --package "$component" "$product"
fi

echo "build-pkg: $product"
