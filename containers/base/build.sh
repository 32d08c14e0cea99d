#!/usr/bin/env bash
# Builds localhost/devaipod-base:latest without any container registry:
# debootstrap a Debian rootfs, add the real opencode binary from its npm package,
# then `podman import` the result. The rootfs tarball is cached under a content key
# (this script + the pinned versions), and the image carries that key as a label, so
# unchanged input neither rebuilds nor re-imports.
#
#   build.sh            import into the calling user's store (building the tarball if root)
#   build.sh --tar-only build the cached tarball only (needs root: debootstrap)
#   build.sh --key      print the content key
set -euo pipefail

IMAGE=localhost/devaipod-base:latest
SUITE=bookworm
OPENCODE_VERSION=1.18.34
PACKAGES=git,ca-certificates,bash,curl,procps,catatonit,less,openssh-client
here=$(cd "$(dirname "$0")" && pwd)

if [ "$(id -u)" = 0 ]; then
    cache=${DEVAIPOD_IMAGE_CACHE:-/var/cache/devaipod}
else
    cache=${DEVAIPOD_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/devaipod}
fi
shared_cache=/var/cache/devaipod

build_tarball() {
    if [ "$(id -u)" != 0 ]; then
        echo "building the base rootfs needs root (debootstrap): run 'sudo $0 --tar-only' first" >&2
        exit 1
    fi
    install -d -m 0755 "$cache"
    work=$(mktemp -d "$cache/build.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    echo "devaipod-base: debootstrap $SUITE (about a minute)" >&2
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$work/rootfs" >"$work/debootstrap.log" 2>&1 \
        || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
    echo "devaipod-base: opencode $OPENCODE_VERSION from npm" >&2
    npm install --silent --no-audit --no-fund --prefix "$work/npm" "opencode-linux-x64@$OPENCODE_VERSION" >&2
    install -m 0755 "$work/npm/node_modules/opencode-linux-x64/bin/opencode" "$work/rootfs/usr/local/bin/opencode"
    # An unprivileged user for dev environments that set remoteUser/containerUser: dev.
    echo 'dev:x:1000:1000:dev:/home/dev:/bin/bash' >>"$work/rootfs/etc/passwd"
    echo 'dev:x:1000:' >>"$work/rootfs/etc/group"
    echo 'dev:*:19000:0:99999:7:::' >>"$work/rootfs/etc/shadow"
    install -d -m 0755 -o 1000 -g 1000 "$work/rootfs/home/dev"
    # Slim: apt lists, docs and caches are not needed in a dev image built offline.
    rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"* \
        "$work/rootfs/usr/share/doc" "$work/rootfs/usr/share/man" "$work/rootfs/usr/share/locale"
    echo "devaipod-base rootfs $key opencode $OPENCODE_VERSION" >"$work/rootfs/etc/devaipod-base-release"
    tar --numeric-owner -C "$work/rootfs" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$work"
    trap - EXIT
}

# The rootfs key covers what goes into the tarball; the image key also covers how it is
# imported (this whole script), so an edit to either rebuilds just what it affects.
key=$( { declare -f build_tarball; echo "$SUITE $OPENCODE_VERSION $PACKAGES"; } | sha256sum | cut -c1-16)
image_key=$( { echo "$key"; cat "$0"; } | sha256sum | cut -c1-16)
tarball="$cache/devaipod-base-$key.tar"
case "${1:-}" in
    --key) echo "$image_key"; exit 0 ;;
esac

if [ ! -f "$tarball" ] && [ -f "$shared_cache/devaipod-base-$key.tar" ]; then
    tarball="$shared_cache/devaipod-base-$key.tar"
fi
if [ ! -f "$tarball" ]; then
    build_tarball
fi
[ "${1:-}" = --tar-only ] && exit 0

have=$(podman image inspect --format '{{index .Labels "io.devaipod.image-key"}}' "$IMAGE" 2>/dev/null || true)
if [ "$have" = "$image_key" ]; then
    echo "devaipod-base: $IMAGE is up to date ($image_key)" >&2
    exit 0
fi
echo "devaipod-base: importing $IMAGE ($image_key)" >&2
podman import --quiet \
    --change "LABEL io.devaipod.image-key=$image_key" \
    --change "LABEL org.opencontainers.image.title=devaipod-base" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    "$tarball" "$IMAGE" >/dev/null
