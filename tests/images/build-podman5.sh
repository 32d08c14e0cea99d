#!/usr/bin/env bash
# Builds localhost/devaipod-podman5:KEY: a Debian trixie rootfs with Podman 5.4 and what
# the real-Podman tests run inside it (git, ps, script, nsenter, curl, busybox-static for
# the broken test image), for the Podman 5 leg (`just test-podman5`): a privileged
# container under the host's Podman that runs a nested, rootful Podman 5. No registry
# is needed: debootstrap, then `podman import`. The rootfs tarball is cached under a
# content key (this build function, the suite, the packages and the containers.conf),
# like containers/base/build.sh, and the image is tagged with that key, so unchanged
# input neither rebuilds nor re-imports. Needs root (debootstrap).
#
#   build-podman5.sh          build (when missing) and import; prints the image name
#   build-podman5.sh --key    print the content key
set -euo pipefail

SUITE=trixie
PACKAGES=podman,runc,crun,uidmap,slirp4netns,passt,fuse-overlayfs,catatonit,iptables,nftables,ca-certificates,git,procps,bash,util-linux,bsdutils,curl,busybox-static
# This kernel has hybrid (v1) cgroups: crun fails there and the default ulimits cannot
# be set (docs/ci.md); the same settings as containers/hybrid-cgroups.conf. The outer
# container sits on the host's default network, 10.88.0.0/16: the nested default
# network must take another subnet, or two routes claim 10.88.0.0/16 and nothing
# reaches the nested pods (published ports time out).
NESTED_CONF='[containers]
default_ulimits = []
[engine]
runtime = "runc"
[network]
default_subnet = "10.99.0.0/16"
'
cache=${DEVAIPOD_IMAGE_CACHE:-/var/cache/devaipod}

build_tarball() {
    install -d -m 0755 "$cache"
    work=$(mktemp -d "$cache/build-podman5.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    echo "devaipod-podman5: debootstrap $SUITE (about a minute)" >&2
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$work/rootfs" >"$work/debootstrap.log" 2>&1 \
        || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
    printf '%s' "$NESTED_CONF" >"$work/rootfs/etc/containers/containers.conf"
    # A rootless user for the rootless attempt (docs/ci.md): useradd gives it subuids.
    chroot "$work/rootfs" useradd -m -s /bin/bash dvp-ci
    rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"* \
        "$work/rootfs/usr/share/doc" "$work/rootfs/usr/share/man" "$work/rootfs/usr/share/locale"
    tar --numeric-owner -C "$work/rootfs" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$work"
    trap - EXIT
}

key=$( { declare -f build_tarball; echo "$SUITE $PACKAGES $NESTED_CONF"; } | sha256sum | cut -c1-16)
tarball="$cache/devaipod-podman5-$key.tar"
image=localhost/devaipod-podman5:$key
case "${1:-}" in
    --key) echo "$key"; exit 0 ;;
esac
if [ "$(id -u)" != 0 ]; then
    echo "the Podman 5 environment needs root (debootstrap, a privileged container): run it with sudo" >&2
    exit 1
fi

if ! podman image exists "$image"; then
    [ -f "$tarball" ] || build_tarball
    echo "devaipod-podman5: importing $image" >&2
    podman import --quiet \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' \
        "$tarball" "$image" >/dev/null
fi
echo "$image"
