#!/usr/bin/env bash
# The registry tests' stand-in for docker.io/library/debian:bookworm-slim, the base of
# containers/base/Containerfile: a minbase bookworm rootfs from debootstrap (what the
# slim image is: required packages only, no docs), cached as a tarball under a content
# key. Prints the tarball's path. tests/registry/registry.sh pushes it to registry A as
# dvpt/debian:bookworm-slim, and its drop-in points docker.io/library/debian there.
#
#   build-debian.sh        print the tarball's path (making it first when missing: root)
set -euo pipefail

SUITE=bookworm
cache=/var/cache/devaipod

make_rootfs() {
    debootstrap --variant=minbase "$SUITE" "$1" >"$1.log" 2>&1 || { tail -20 "$1.log" >&2; return 1; }
    rm -rf "$1/var/cache/apt/archives/"*.deb "$1/var/lib/apt/lists/"* \
        "$1/usr/share/doc" "$1/usr/share/man" "$1/usr/share/locale"
}

key=$( { declare -f make_rootfs; echo "$SUITE"; } | sha256sum | cut -c1-16)
tarball="$cache/dvpt-debian-$SUITE-$key.tar"
if [ ! -f "$tarball" ]; then
    [ "$(id -u)" = 0 ] || { echo "build-debian: the stand-in rootfs needs root (debootstrap): run it with sudo" >&2; exit 1; }
    install -d -m 0755 "$cache"
    work=$(mktemp -d "$cache/debian.XXXXXX")
    trap 'rm -rf "$work" "$tarball.tmp"' EXIT
    echo "build-debian: debootstrap --variant=minbase $SUITE (about a minute)" >&2
    make_rootfs "$work/rootfs"
    tar --numeric-owner -C "$work/rootfs" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$work"
    trap - EXIT
fi
echo "$tarball"
