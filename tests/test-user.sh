#!/usr/bin/env bash
# Makes the rootless test user ready (test machines only; run as root): the user, its
# runtime directory, /dev/net/tun usable by slirp4netns (0600 here), and its image store
# on native overlay. With no storage.conf (Debian 12 installs none without the
# containers-storage package) rootless Podman 4.3 picks vfs here, which copies a whole
# image for every container: a pod then took seconds more to make and remove. A store
# made with vfs is reset once (the test user's images are imported again by build.sh).
#
#   test-user.sh USER
set -euo pipefail
user=${1:?usage: test-user.sh USER}
id "$user" >/dev/null 2>&1 || useradd -m -s /bin/bash "$user"
uid=$(id -u "$user")
home=$(getent passwd "$user" | cut -d: -f6)
[ "$(stat -c %a /dev/net/tun)" = 666 ] || chmod 0666 /dev/net/tun
install -d -m 0700 -o "$user" -g "$user" "/run/user/$uid"
conf=$home/.config/containers/storage.conf
want='[storage]
driver = "overlay"'
if [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
    as_user() {
        runuser -u "$user" -- env -i HOME="$home" USER="$user" PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
            XDG_RUNTIME_DIR="/run/user/$uid" "$@"
    }
    if [ -d "$home/.local/share/containers/storage/vfs" ]; then
        echo "test-user.sh: resetting $user's vfs image store for overlay" >&2
        as_user podman system reset --force >/dev/null 2>&1 || true
        rm -rf "$home/.local/share/containers/storage"
    fi
    as_user mkdir -p "$home/.config/containers"
    printf '%s\n' "$want" | as_user tee "$conf" >/dev/null
fi
