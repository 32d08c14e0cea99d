#!/usr/bin/env bash
# Removes what test runs left behind: pods, containers and volumes labelled devaipod.test
# or named devaipod-dvpt-* (every test workspace's NAME starts with dvpt-, and objects a
# test makes itself are named devaipod-dvpt-*; volumes a test repo mounts, dvpt-*), and podman secrets of those runs (Podman
# 4.3 secrets carry no labels: the ones a test pod lists in io.devaipod.secrets, and the
# ones named devaipod-dvpt-*), and image names pulled from the registry tests' registries
# (tests/registry/registry.sh: the made-up registry.devaipod.test and blocked.devaipod.test,
# and dvpt/ on 127.0.0.1 or localhost ports 5701 and 5702; a name the image shares with
# another, such as the base image's, is only untagged), and the images the reference CLI's
# `up` made for tests/podman/feature_reference.rs (vsc-devaipod-test-repo-*-features and
# dev_container_feature_content_temp). Nothing else: a developer's own
# workspaces stay.
#
#   cleanup.sh          remove stale test objects (before a run); fails if any stays
#   cleanup.sh --check  after a run: fail, listing them, if any test object is left
#                       (they are removed as well, so the next run starts clean)
#
# CI starts right after a session's processes were killed, so Podman may still record
# containers as running whose processes are gone: force-remove handles that.
set -uo pipefail
label=devaipod.test
prefix=devaipod-dvpt-
registry_images='^(registry\.devaipod\.test|blocked\.devaipod\.test|(127\.0\.0\.1|localhost):570[12]/dvpt)/'
reference_images='^localhost/(vsc-devaipod-test-repo-[^:]*-features|dev_container_feature_content_temp):'

# Every test object, one "kind name" a line.
inventory() {
    { podman pod ps -q --filter "label=$label"; podman pod ps -q --filter "name=^$prefix"; } 2>/dev/null |
        sort -u | sed 's/^/pod /'
    { podman ps -aq --filter "label=$label"; podman ps -aq --filter "name=^$prefix"; } 2>/dev/null |
        sort -u | sed 's/^/container /'
    # Volumes a test's repo names itself start with dvpt- (the devaipod- prefix is
    # reserved: no repo may mount such a volume).
    { podman volume ls -q --filter "label=$label"; podman volume ls -q | grep -E "^($prefix|dvpt-)"; } 2>/dev/null |
        sort -u | sed 's/^/volume /'
    podman secret ls --format '{{.Name}}' 2>/dev/null | grep "^$prefix" | sed 's/^/secret /'
    podman images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | grep -E "$registry_images|$reference_images" |
        sort -u | sed 's/^/image /'
}

remove() {
    local secrets=()
    for pod in $(podman pod ps -q --filter "label=$label" 2>/dev/null); do
        # The secrets a pod lists are its own, whatever their names.
        IFS=, read -ra listed <<<"$(podman pod inspect "$pod" --format '{{index .Labels "io.devaipod.secrets"}}' 2>/dev/null)"
        secrets+=("${listed[@]}")
    done
    inventory | while read -r kind name; do
        case $kind in
            pod) podman pod rm -f "$name" >/dev/null 2>&1 || podman pod rm -f -t 0 "$name" >/dev/null ;;
            container) podman rm -f -t 0 "$name" >/dev/null ;;
        esac
    done
    inventory | while read -r kind name; do
        case $kind in
            volume) podman volume rm -f "$name" >/dev/null ;;
            secret) podman secret rm "$name" >/dev/null ;;
            image) podman image rm -f "$name" >/dev/null ;;
        esac
    done
    for s in "${secrets[@]}"; do
        [ -n "$s" ] && podman secret rm "$s" >/dev/null 2>&1
    done
    return 0
}

if [ "${1:-}" = --check ]; then
    left=$(inventory)
    if [ -n "$left" ]; then
        echo "the test run left devaipod objects behind (removing them now):" >&2
        echo "$left" >&2
        remove
        exit 1
    fi
    echo "cleanup: no test objects left (pods, containers, volumes, secrets, registry and reference test images)"
    exit 0
fi

remove
left=$(inventory)
if [ -n "$left" ]; then
    echo "cleanup: could not remove stale test objects:" >&2
    echo "$left" >&2
    exit 1
fi
exit 0
