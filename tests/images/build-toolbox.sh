#!/usr/bin/env bash
# Builds localhost/devaipod-test-toolbox:latest: a toolbox image (what toolbox's entry
# point needs: capsh, sudo, passwd, util-linux) with git and the podman client, on top
# of localhost/devaipod-base:latest. Debian packages come from the Debian mirrors;
# no registry is used. Idempotent: skips when present with the same content key
# (which includes the base image's id).
set -euo pipefail
IMAGE=localhost/devaipod-test-toolbox:latest
BASE=localhost/devaipod-base:latest
base_id=$(podman image inspect --format '{{.Id}}' "$BASE")
key=$( (sha256sum <"$0"; echo "$base_id") | sha256sum | cut -c1-16)
have=$(podman image inspect --format '{{index .Labels "io.devaipod.image-key"}}' "$IMAGE" 2>/dev/null || true)
[ "$have" = "$key" ] && exit 0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/Containerfile" <<CONTAINERFILE
FROM $BASE
USER root
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        libcap2-bin sudo passwd util-linux podman >/dev/null && rm -rf /var/lib/apt/lists/*
LABEL com.github.containers.toolbox="true" io.devaipod.image-key="$key" org.opencontainers.image.title="devaipod-test-toolbox"
CONTAINERFILE
podman build --quiet --pull=never -t "$IMAGE" -f "$work/Containerfile" "$work" >/dev/null
echo "built $IMAGE" >&2
