#!/usr/bin/env bash
# Builds localhost/devaipod-test-meta:latest: the broken test image plus a
# devcontainer.metadata label, so devcontainer reading can be compared with the
# reference CLI's merge. Needs localhost/devaipod-test-broken:latest.
set -euo pipefail
IMAGE=localhost/devaipod-test-meta:latest
key=$(sha256sum "$0" | cut -c1-16)
have=$(podman image inspect --format '{{index .Labels "io.devaipod.image-key"}}' "$IMAGE" 2>/dev/null || true)
[ "$have" = "$key" ] && exit 0
metadata='[
 {"id": "feature-a", "init": true, "capAdd": ["SYS_PTRACE"], "securityOpt": ["seccomp=unconfined"],
  "entrypoint": "/usr/local/share/a-init.sh", "mounts": ["source=img,target=/meta-mount,type=volume", {"source": "imgvol", "target": "/meta-obj", "type": "volume"}],
  "customizations": {"vscode": {"extensions": ["a"]}}, "postCreateCommand": "echo feature-a",
  "containerEnv": {"FA": "1", "SHARED": "feature"}},
 {"remoteUser": "img", "containerUser": "img", "userEnvProbe": "loginShell",
  "remoteEnv": {"A": "image", "B": "image"}, "onCreateCommand": ["echo", "image"],
  "postStartCommand": {"x": "echo x"}, "forwardPorts": [3000, 4000], "portsAttributes": {"3000": {"label": "img"}},
  "otherPortsAttributes": {"onAutoForward": "silent"}, "waitFor": "onCreateCommand", "overrideCommand": true,
  "shutdownAction": "stopContainer", "updateRemoteUserUID": true, "privileged": false,
  "hostRequirements": {"cpus": 1, "memory": "1gb"}}
]'
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo 'FROM localhost/devaipod-test-broken:latest' >"$work/Containerfile"
podman build --quiet --pull=never --label "io.devaipod.image-key=$key" \
    --label "devcontainer.metadata=$metadata" -t "$IMAGE" -f "$work/Containerfile" "$work" >/dev/null
