#!/usr/bin/env bash
# Removes objects left by earlier test runs (they all carry the label devaipod.test).
# CI starts right after a session's processes were killed, so Podman may still record
# containers as running whose processes are gone: force-remove handles that.
set -uo pipefail
label=devaipod.test
for pod in $(podman pod ps -q --filter "label=$label" 2>/dev/null); do
    podman pod rm -f "$pod" >/dev/null 2>&1 || podman pod rm -f -t 0 "$pod" >/dev/null
done
for ctr in $(podman ps -aq --filter "label=$label" 2>/dev/null); do
    podman rm -f -t 0 "$ctr" >/dev/null
done
for vol in $(podman volume ls -q --filter "label=$label" 2>/dev/null); do
    podman volume rm -f "$vol" >/dev/null
done
left=$(podman pod ps -q --filter "label=$label"; podman volume ls -q --filter "label=$label")
if [ -n "$left" ]; then
    echo "cleanup: could not remove stale test objects: $left" >&2
    exit 1
fi
exit 0
