#!/usr/bin/env bash
# Builds localhost/devaipod-test-broken:latest: a 2 MB busybox image whose `opencode`
# prints a marker line and exits 3 (or, in a repo folder named *hang*,
# never answers), so tests can watch `up` fail, or be interrupted, and roll back.
# Needs busybox-static (Debian: busybox-static). Idempotent: skips when present with
# the same content key.
set -euo pipefail
IMAGE=localhost/devaipod-test-broken:latest
key=$(sha256sum "$0" | cut -c1-16)
have=$(podman image inspect --format '{{index .Labels "io.devaipod.image-key"}}' "$IMAGE" 2>/dev/null || true)
[ "$have" = "$key" ] && exit 0
busybox=/bin/busybox   # busybox-static's binary: no libraries needed in the image
[ -x "$busybox" ] || { echo "busybox-static is required: sudo apt-get install busybox-static" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin" "$work/rootfs/usr/local/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
cp "$busybox" "$work/rootfs/bin/busybox"
for app in sh sleep cat echo ls id ps grep hostname; do ln -s busybox "$work/rootfs/bin/$app"; done
printf 'root:x:0:0:root:/root:/bin/sh\ndev:x:1000:1000:dev:/home/dev:/bin/sh\n' >"$work/rootfs/etc/passwd"
printf 'root:x:0:\ndev:x:1000:\n' >"$work/rootfs/etc/group"
cat >"$work/rootfs/usr/local/bin/opencode" <<'SH'
#!/bin/sh
# In a repo whose folder name contains "hang": stay alive and never answer.
case "$PWD" in
    *hang*) echo "devaipod-test: hanging on purpose" >&2; exec sleep 600 ;;
esac
echo "devaipod-test: this opencode fails on purpose" >&2
exit 3
SH
chmod 0755 "$work/rootfs/usr/local/bin/opencode"
chmod 1777 "$work/rootfs/tmp"
tar --numeric-owner -C "$work/rootfs" -cf "$work/rootfs.tar" .
podman import --quiet \
    --change "LABEL io.devaipod.image-key=$key" \
    --change 'ENV PATH=/usr/local/bin:/bin' \
    --change 'CMD ["/bin/sh"]' \
    "$work/rootfs.tar" "$IMAGE" >/dev/null
