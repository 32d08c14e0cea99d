#!/bin/sh
# Runs inside the agent container (POSIX sh; busybox works) and checks, one line per
# property, the hardening rows 1-15 of the security table (docs/security.md).
# Prints PASS/FAIL/INFO lines; exits 1 if any check fails. Never prints a value of an
# environment variable.
#
#   agent-probe.sh WORKSPACE_UID EXPECT_LIMITS PIDS_LIMIT MEMORY_LIMIT
WS_UID=$1 EXPECT_LIMITS=$2 PIDS=$3 MEM=$4
fails=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
check() { # check NAME COMMAND...: passes when COMMAND succeeds
    name=$1; shift
    if "$@" >/dev/null 2>&1; then pass "$name"; else fail "$name"; fi
}
refuse() { # refuse NAME COMMAND...: passes when COMMAND fails
    name=$1; shift
    if "$@" >/dev/null 2>&1; then fail "$name"; else pass "$name"; fi
}
field() { sed -n "s/^$1:[[:space:]]*//p" /proc/self/status; }

# 1 no capabilities in any set
for set in CapInh CapPrm CapEff CapBnd CapAmb; do
    v=$(field "$set")
    [ "$v" = 0000000000000000 ] && pass "1 $set is empty" || fail "1 $set is $v"
done
# 2 no-new-privileges
[ "$(field NoNewPrivs)" = 1 ] && pass "2 NoNewPrivs" || fail "2 NoNewPrivs is $(field NoNewPrivs)"
# 3 seccomp filter, stricter than podman's default: no user namespaces
[ "$(field Seccomp)" = 2 ] && pass "3 seccomp filter active" || fail "3 Seccomp is $(field Seccomp)"
if command -v unshare >/dev/null; then
    refuse "3 unshare -U (new user namespace)" unshare -U true
    refuse "3 unshare -Ur (root in a new user namespace)" unshare -Ur true
    refuse "3 unshare -n (new network namespace)" unshare -n true
else
    fail "3 unshare is not in the image: the user-namespace check cannot run"
fi
# 4 non-root uid, distinct from the workspace's
uid=$(id -u)
[ "$uid" != 0 ] && pass "4 uid $uid is not root" || fail "4 runs as root"
[ "$uid" != "$WS_UID" ] && pass "4 uid differs from the workspace's ($WS_UID)" || fail "4 same uid as the workspace"
# 5 no mounts
mkdir -p /tmp/probe-mnt
refuse "5 mount tmpfs" mount -t tmpfs none /tmp/probe-mnt
refuse "5 mount cgroup" mount -t cgroup -o rdma cgroup /tmp/probe-mnt
# 6 no chroot
refuse "6 chroot" chroot / true
# 7 no engine sockets
found=""
for s in /run/podman/podman.sock /var/run/docker.sock /run/docker.sock /run/user/*/podman/podman.sock /tmp/podman-run-*/podman/podman.sock; do
    [ -S "$s" ] && found="$found $s"
done
[ -z "$found" ] && pass "7 no engine socket" || fail "7 engine sockets:$found"
socks=$(find / -xdev -type s 2>/dev/null | grep -v '^/proc' | head -5)
[ -z "$socks" ] && pass "7 no unix sockets on the root filesystem" || echo "INFO 7 sockets: $socks"
# 8 read-only root, writable /tmp
refuse "8 root filesystem is read-only" touch /usr/bin/devaipod-probe
check "8 /tmp is writable" touch /tmp/devaipod-probe
# 9 limits
if [ "$EXPECT_LIMITS" = 1 ]; then
    p=$(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max 2>/dev/null)
    [ "$p" = "$PIDS" ] && pass "9 pids.max $p" || fail "9 pids.max is $p, expected $PIDS"
    m=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max 2>/dev/null)
    [ "$m" = "$MEM" ] && pass "9 memory limit $m" || fail "9 memory limit is $m, expected $MEM"
else
    echo "INFO 9 limits not checked (rootless Podman on cgroup v1 ignores them)"
fi
# 10 only the network namespace is shared
[ ! -e /dev/shm/devaipod-workspace-marker ] && pass "10 /dev/shm is not the workspace's" || fail "10 sees the workspace's /dev/shm"
n=$(ls /proc | grep -c '^[0-9]')
[ "$n" -lt 30 ] && pass "10 own pid namespace ($n processes)" || fail "10 sees $n processes"
comm=$(cat /proc/1/comm)
case "$comm" in catatonit|podman-init|tini|dumb-init) pass "10 pid 1 is the agent's init ($comm)" ;; *) fail "10 pid 1 is $comm" ;; esac
# 11 /proc and /sys masked and read-only
refuse "11 write core_pattern" sh -c 'echo x > /proc/sys/kernel/core_pattern'
refuse "11 write sysrq-trigger" sh -c 'echo h > /proc/sysrq-trigger'
grep -q ' /sys sysfs ro' /proc/mounts && pass "11 /sys is read-only" || fail "11 /sys is writable"
# 12 no devices beyond the defaults
bad=""
for d in /dev/kvm /dev/fuse /dev/net/tun /dev/mem /dev/sda /dev/vda /dev/nvme0n1; do [ -e "$d" ] && bad="$bad $d"; done
[ -z "$bad" ] && pass "12 no extra devices" || fail "12 devices:$bad"
# 13 no trusted secrets in the environment (names only)
leaked=$(env | cut -d= -f1 | grep -E '^(GH_TOKEN|GITHUB_TOKEN|GITLAB_TOKEN|JIRA_API_TOKEN|DEVAIPOD_TRUSTED_SENTINEL)$')
[ -z "$leaked" ] && pass "13 no trusted secret names in the environment" || fail "13 trusted secrets: $leaked"
# 14 isolated home
[ "$HOME" = /home/agent ] && pass "14 HOME is the agent's own" || fail "14 HOME is $HOME"
for f in .ssh .config/gh .git-credentials .docker/config.json; do
    [ -e "$HOME/$f" ] && fail "14 $HOME/$f exists"
done
grep -qs 'credential' "$HOME/.gitconfig" && fail "14 .gitconfig has a credential helper" || pass "14 no credentials in HOME"
# 15 the server listens on loopback only (port 4096 = 0x1000)
if grep -q ':1000 00000000:0000 0A' /proc/net/tcp; then
    grep ':1000 00000000:0000 0A' /proc/net/tcp | grep -q '^ *[0-9]*: 0100007F:1000' && \
        ! grep ':1000 00000000:0000 0A' /proc/net/tcp | grep -qv '0100007F:1000' \
        && pass "15 4096 listens on 127.0.0.1 only" || fail "15 4096 listens beyond loopback"
else
    fail "15 nothing listens on 4096"
fi
grep -q ':1000 00000000:0000 0A' /proc/net/tcp6 2>/dev/null && fail "15 4096 listens on IPv6" || true

echo "probe: $fails failure(s)"
[ "$fails" = 0 ]
