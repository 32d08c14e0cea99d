#!/usr/bin/env bash
# Builds localhost/devaipod-test-gator:latest: a stand-in for the service-gator image
# (the real one cannot be pulled here). Its entrypoint is tests/fake-llm's fake-gator,
# which takes service-gator's command line, serves MCP over HTTP at /mcp and reports
# its arguments, environment variable names and token files (never their content) at
# /report. Usage: build-gator.sh PATH-TO-fake-gator. Idempotent by content key.
set -euo pipefail
IMAGE=localhost/devaipod-test-gator:latest
BASE=localhost/devaipod-base:latest
bin=${1:?usage: build-gator.sh PATH-TO-fake-gator}
base_id=$(podman image inspect --format '{{.Id}}' "$BASE")
key=$( (sha256sum <"$0"; sha256sum <"$bin"; echo "$base_id") | sha256sum | cut -c1-16)
have=$(podman image inspect --format '{{index .Labels "io.devaipod.image-key"}}' "$IMAGE" 2>/dev/null || true)
[ "$have" = "$key" ] && exit 0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$bin" "$work/service-gator"
cat >"$work/Containerfile" <<CONTAINERFILE
FROM $BASE
COPY service-gator /usr/local/bin/service-gator
ENTRYPOINT ["/usr/local/bin/service-gator"]
CMD []
LABEL io.devaipod.image-key="$key" org.opencontainers.image.title="devaipod-test-gator"
CONTAINERFILE
podman build --quiet --pull=never -t "$IMAGE" -f "$work/Containerfile" "$work" >/dev/null
