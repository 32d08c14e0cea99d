#!/usr/bin/env bash
# Builds localhost/devaipod-base:latest, the bundled image, in one of two ways:
#   - offline (root): debootstrap a Debian rootfs, add the real opencode binary from its
#     npm package, then `podman import` it. The rootfs tarball is cached under a content
#     key (the build function + the pinned versions), so it is made once per machine.
#   - rootless, where a registry serves Debian: `podman build` from ./Containerfile on
#     docker.io/library/debian:SUITE-slim (registries.conf may point that name at a
#     mirror) with the same packages, user and opencode.
# Either way the image carries its content key as the label io.devaipod.image-key, so
# unchanged input neither rebuilds nor re-imports.
#
#   build.sh                 a cached rootfs tarball (the user's cache or the machine's,
#                            /var/cache/devaipod) is imported; else root debootstraps one,
#                            and anyone else builds from the Containerfile
#   build.sh --tar-only      build the cached tarball only (needs root: debootstrap)
#   build.sh --containerfile build from the Containerfile, as root or not
#   build.sh [--containerfile] --key
#                            print the image's content key for that way
#
# DEVAIPOD_BASE_TAG names another image to make (tests); DEVAIPOD_IMAGE_CACHE another cache.
set -euo pipefail

IMAGE=${DEVAIPOD_BASE_TAG:-localhost/devaipod-base:latest}
SUITE=bookworm
DEBIAN_BASE=docker.io/library/debian:$SUITE-slim
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

# `podman build` from the Containerfile: opencode is fetched on the host (npm) into the
# build context; no layers are kept, so nothing but the image (and the Debian base it
# pulled) stays in the store.
build_containerfile() {
    command -v npm >/dev/null 2>&1 || { echo "devaipod-base: building needs npm (opencode comes from its npm package): sudo apt-get install npm" >&2; exit 1; }
    # Node trusts its own CA list only; where TLS goes through a proxy whose CA is in the
    # system's store (a company's, a sandbox's), npm needs that store too.
    if [ -z "${NODE_EXTRA_CA_CERTS:-}" ] && [ -r /etc/ssl/certs/ca-certificates.crt ]; then
        export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
    fi
    context=$(mktemp -d)
    trap 'rm -rf "$context"' EXIT
    echo "devaipod-base: opencode $OPENCODE_VERSION from npm" >&2
    npm install --silent --no-audit --no-fund --prefix "$context/npm" "opencode-linux-x64@$OPENCODE_VERSION" >&2 \
        || { echo "devaipod-base: npm could not install opencode-linux-x64@$OPENCODE_VERSION (above); npm's own configuration (~/.npmrc: registry, proxy, cafile) applies" >&2; exit 1; }
    install -m 0755 "$context/npm/node_modules/opencode-linux-x64/bin/opencode" "$context/opencode"
    rm -rf "$context/npm"
    cp "$here/Containerfile" "$context/Containerfile"
    echo "devaipod-base: podman build on $DEBIAN_BASE (a minute or two: Debian's packages are downloaded)" >&2
    if ! podman build --pull=missing --layers=false -f "$context/Containerfile" \
            --build-arg BASE="$DEBIAN_BASE" --build-arg PACKAGES="${PACKAGES//,/ }" \
            --build-arg RELEASE="devaipod-base containerfile $containerfile_key opencode $OPENCODE_VERSION" \
            --label "io.devaipod.image-key=$containerfile_key" \
            --label org.opencontainers.image.title=devaipod-base \
            -t "$IMAGE" "$context" >"$context/build.log" 2>&1; then
        tail -20 "$context/build.log" >&2
        echo "devaipod-base: podman build failed (above). It needs a registry that serves $DEBIAN_BASE (a registries.conf [[registry]] prefix can point that name at a mirror) and Debian's package mirrors. Offline, make the rootfs with debootstrap instead: sudo $0 --tar-only, then $0" >&2
        exit 1
    fi
    rm -rf "$context"
    trap - EXIT
}

mode=auto print_key=no
for arg in "$@"; do
    case "$arg" in
        --tar-only) mode=tar ;;
        --containerfile) mode=containerfile ;;
        --key) print_key=yes ;;
        *) echo "usage: $0 [--tar-only | --containerfile] [--key]" >&2; exit 2 ;;
    esac
done

# The rootfs key covers what goes into the tarball; the image key also covers how it is
# imported (this whole script), so an edit to either rebuilds just what it affects. The
# Containerfile's key covers the file, its base and what the script passes to it.
key=$( { declare -f build_tarball; echo "$SUITE $OPENCODE_VERSION $PACKAGES"; } | sha256sum | cut -c1-16)
image_key=$( { echo "$key"; cat "$0"; } | sha256sum | cut -c1-16)
containerfile_key=$( { cat "$here/Containerfile"; declare -f build_containerfile;
                       echo "$DEBIAN_BASE $OPENCODE_VERSION $PACKAGES"; } | sha256sum | cut -c1-16)
tarball="$cache/devaipod-base-$key.tar"
if [ ! -f "$tarball" ] && [ -f "$shared_cache/devaipod-base-$key.tar" ]; then
    tarball="$shared_cache/devaipod-base-$key.tar"
fi
if [ "$mode" = auto ] && [ ! -f "$tarball" ] && [ "$(id -u)" != 0 ]; then
    mode=containerfile
fi
if [ "$print_key" = yes ]; then
    if [ "$mode" = containerfile ]; then echo "$containerfile_key"; else echo "$image_key"; fi
    exit 0
fi

have=$(podman image inspect --format '{{index .Labels "io.devaipod.image-key"}}' "$IMAGE" 2>/dev/null || true)
if [ "$mode" = containerfile ]; then
    if [ "$have" = "$containerfile_key" ]; then
        echo "devaipod-base: $IMAGE is up to date ($containerfile_key, built from the Containerfile)" >&2
        exit 0
    fi
    build_containerfile
    echo "devaipod-base: built $IMAGE ($containerfile_key)" >&2
    exit 0
fi

if [ ! -f "$tarball" ]; then
    build_tarball
fi
[ "$mode" = tar ] && exit 0

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
