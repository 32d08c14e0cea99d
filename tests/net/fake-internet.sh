#!/usr/bin/env bash
# The fake internet of the network tests (issue 16): offline, documentation addresses
# only, set up as root once before the real-Podman legs (`just fake-internet`).
#
#   fake-internet.sh up       make it (or keep it, when it is up and every server answers)
#   fake-internet.sh down     stop exactly the servers `up` started, remove the namespace,
#                             the veth pair, the route and /run/dvpt-inet
#   fake-internet.sh status   check from the host that every server answers (any user)
#
# Layout (tests/common/inet.rs names the same; keep the two in step):
#   network namespace dvpt-inet; veth dvpt-inet0 (host: 198.51.100.1/28, 203.0.113.1/28)
#   <-> dvpt-inet1 (namespace: 198.51.100.10, 198.51.100.11, 203.0.113.10, 10.0.0.1).
#   /28, not /24: the rest of those documentation networks stays routed as before (real
#   services, package mirrors among them, answer at other addresses of 203.0.113.0/24 on
#   these machines), and `up` refuses to shadow any route but the default one.
#   No default route in the namespace: every pod's traffic reaches it NATed to the host's
#   address on the link (rootful bridge: masquerade; rootless slirp4netns: a socket of the
#   host; nested Podman: both), so its replies need only the connected /28s.
#   10.0.0.1/32 is routed from the host into the namespace, so that even a proxy that
#   wrongly connects to private.test reaches a server here ("origin 10.0.0.1 ...")
#   instead of the real network.
#   Servers in the namespace:
#     :80 of 198.51.100.10, 198.51.100.11, 203.0.113.10, 10.0.0.1  HTTP, "origin IP HOST"
#     198.51.100.10:53/udp  DNS: every A question answered 198.51.100.10
#     :443 of 198.51.100.10 and 203.0.113.10  TLS (test CA) in front of the same :80
#     198.51.100.11:443  TLS in front of fake-llm (OpenAI compatible, scripts from
#                        /run/dvpt-inet/llm-scripts, header log /run/dvpt-inet/llm-headers.log)
#   On the host: 198.51.100.1:8080, HTTP "origin 198.51.100.1 HOST" (a host service).
#   Files: /run/dvpt-inet/hosts (the name map, written last: its presence means `up`
#   finished), ca.pem (the test CA), llm-scripts/ (1777: NAME.json is played for requests
#   to https://llm.test/NAME/v1/...; default.json for /v1/...), llm-headers.log, log/,
#   pids/ (PID and start time of each server: `down` stops exactly those).
#
# The binaries fake-origin and fake-llm come from $DVPT_INET_BIN, by default this
# repo's target/fake-llm/release (`just fake-internet` builds them); they are copied to
# /run/dvpt-inet/bin so that a rebuild does not change what runs.
set -euo pipefail

NS=dvpt-inet
HOST_IF=dvpt-inet0
NS_IF=dvpt-inet1
RUN=/run/dvpt-inet
HOST_NETS=(198.51.100.1/28 203.0.113.1/28)
NS_ADDRS=(198.51.100.10/28 198.51.100.11/28 203.0.113.10/28 10.0.0.1/32)
TRAP_ADDR=10.0.0.1
LLM_BACKEND=127.0.0.1:8011
HOSTS='allowed.test 198.51.100.10
www.allowed.test 198.51.100.10
other.test 203.0.113.10
llm.test 198.51.100.11
private.test 10.0.0.1
loop.test 127.0.0.1
hostside.test 198.51.100.1
mixed.test 198.51.100.10 10.0.0.1
'
# The names the server certificate is valid for.
CERT_NAMES=(allowed.test '*.allowed.test' other.test llm.test mixed.test private.test hostside.test)

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin_src=${DVPT_INET_BIN:-$repo/target/fake-llm/release}

die() { echo "fake-internet: $*" >&2; exit 1; }

require_root() {
    [ "$(id -u)" = 0 ] || die "needs root (a network namespace, a veth pair, a route): run it with sudo, or \`just fake-internet\`"
}

# Installs what is missing, the way `just setup` does.
require_tools() {
    local need=() pair cmd pkg
    for pair in ip:iproute2 openssl:openssl socat:socat curl:curl setsid:util-linux; do
        cmd=${pair%%:*}; pkg=${pair#*:}
        command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
    done
    if [ ${#need[@]} -gt 0 ]; then
        echo "fake-internet: installing: ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
}

# Field N (1-based, as in proc(5)) of /proc/PID/stat; empty when there is no such process.
stat_field() {
    local line n=$2
    line=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    # The fields after the command name (which may hold spaces and parentheses): 3 on.
    line=${line##*) }
    # shellcheck disable=SC2086 # split into fields on purpose
    set -- $line
    shift $(( n - 3 )) 2>/dev/null || return 0
    echo "${1:-}"
}

# Starts a server in its own session (process group = its pid, so `down` also stops the
# children socat forks): start NAME ns|host COMMAND...
start() {
    local name=$1 where=$2 pid
    shift 2
    [ "$where" = ns ] && set -- ip netns exec "$NS" "$@"
    # Not a group leader here (no job control), so setsid(1) calls setsid() and execs
    # without forking: $! is the server's pid.
    setsid "$@" </dev/null >"$RUN/log/$name.log" 2>&1 &
    pid=$!
    echo "$pid $(stat_field "$pid" 22)" >"$RUN/pids/$name"
}

# The pid of server NAME when it is the process `up` started (same start time) and has
# not ended (a zombie has ended: nobody may have reaped it yet), else empty.
live_pid() {
    local pid st
    read -r pid st <"$RUN/pids/$1" 2>/dev/null || return 0
    [ -n "$st" ] && [ "$(stat_field "$pid" 22)" = "$st" ] && [[ $(stat_field "$pid" 3) != [ZX] ]] && echo "$pid"
    return 0
}

# The processes of process group PGID that have not ended.
group_members() {
    local pgid=$1 stat line pid
    for stat in /proc/[0-9]*/stat; do
        read -r line <"$stat" 2>/dev/null || continue
        pid=${line%% *}
        line=${line##*) }
        # shellcheck disable=SC2086 # split into fields on purpose: state ppid pgrp ...
        set -- $line
        [ "${3:-}" = "$pgid" ] && [[ $1 != [ZX] ]] && echo "$pid"
    done
    return 0
}

make_certs() {
    local tls=$RUN/tls san="" n
    install -d -m 0700 "$tls"
    for n in "${CERT_NAMES[@]}"; do san+="${san:+,}DNS:$n"; done
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$tls/ca.key" -out "$tls/ca.pem" -days 30 -subj "/CN=devaipod fake internet test CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        2>"$tls/openssl.log" || { cat "$tls/openssl.log" >&2; die "making the test CA failed"; }
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$tls/server.key" -out "$tls/server.csr" -subj "/CN=allowed.test" \
        2>"$tls/openssl.log" || { cat "$tls/openssl.log" >&2; die "making the server key failed"; }
    printf '%s\n' "subjectAltName=$san" "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$tls/server.ext"
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
        -set_serial "0x$(openssl rand -hex 8)" -days 30 -extfile "$tls/server.ext" \
        -out "$tls/server.pem" 2>"$tls/openssl.log" || { cat "$tls/openssl.log" >&2; die "signing the server certificate failed"; }
    # Nobody mints another certificate with this CA.
    rm -f "$tls/ca.key" "$tls/server.csr"
    install -m 0644 "$tls/ca.pem" "$RUN/ca.pem"
}

make_network() {
    # The fake internet's networks, and 10.0.0.1, must shadow no route but the default.
    local net routes
    for net in "${HOST_NETS[@]}" "$TRAP_ADDR/32"; do
        routes=$({ ip -4 route show match "$net"; ip -4 route show root "$net"; } | grep -v '^default ' || true)
        [ -z "$routes" ] || die "$net overlaps a route of this host's (${routes%%$'\n'*}); the fake internet would shadow it"
    done
    ip netns add "$NS"
    ip link add "$HOST_IF" type veth peer name "$NS_IF" netns "$NS"
    # IPv4 only: no link-local addresses, router solicitations or neighbour discovery.
    sysctl -qw "net.ipv6.conf.$HOST_IF.disable_ipv6=1"
    ip netns exec "$NS" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    local a
    for a in "${HOST_NETS[@]}"; do ip addr add "$a" dev "$HOST_IF"; done
    for a in "${NS_ADDRS[@]}"; do ip -n "$NS" addr add "$a" dev "$NS_IF"; done
    ip link set "$HOST_IF" up
    ip -n "$NS" link set lo up
    ip -n "$NS" link set "$NS_IF" up
    # Source 198.51.100.1: the namespace answers it over the connected /28.
    ip route add "$TRAP_ADDR/32" dev "$HOST_IF" src 198.51.100.1
}

start_servers() {
    local b=$RUN/bin tls=$RUN/tls
    local tls_opts="reuseaddr,fork,cert=$tls/server.pem,key=$tls/server.key,verify=0"
    start origin ns "$b/fake-origin" --http 198.51.100.10:80 --http 198.51.100.11:80 \
        --http 203.0.113.10:80 --http "$TRAP_ADDR:80" --dns 198.51.100.10:53=198.51.100.10
    start llm ns "$b/fake-llm" --listen "$LLM_BACKEND" --scripts "$RUN/llm-scripts" \
        --header-log "$RUN/llm-headers.log"
    start tls-allowed ns socat "OPENSSL-LISTEN:443,bind=198.51.100.10,$tls_opts" TCP:198.51.100.10:80
    start tls-other ns socat "OPENSSL-LISTEN:443,bind=203.0.113.10,$tls_opts" TCP:203.0.113.10:80
    start tls-llm ns socat "OPENSSL-LISTEN:443,bind=198.51.100.11,$tls_opts" "TCP:$LLM_BACKEND"
    start hostside host "$b/fake-origin" --http 198.51.100.1:8080
}

# ---- checks (status, and readiness at the end of up) ----------------------------------

failures=()
fail() { failures+=("$1"); }

# expect NAME WANT CURL-ARGS...: curl's body must contain WANT.
expect() {
    local name=$1 want=$2 got
    shift 2
    got=$(curl -sS --max-time 3 --noproxy '*' "$@" 2>&1) || true
    [[ $got == *"$want"* ]] || fail "$name: wanted \"$want\", got: ${got:0:200}"
}

check_dns() {
    local got
    # A query for allowed.test, type A, id 0xabcd; the answer ends with the address.
    got=$( { exec 3<>/dev/udp/198.51.100.10/53
             printf '\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07allowed\x04test\x00\x00\x01\x00\x01' >&3
             timeout 3 dd bs=512 count=1 status=none <&3 | od -An -tx1 | tr -d ' \n'; } 2>&1) || true
    [[ $got == abcd8500* && $got == *c633640a ]] || fail "dns 198.51.100.10:53: wanted an A answer 198.51.100.10, got: ${got:-nothing}"
}

SERVERS=(origin llm tls-allowed tls-other tls-llm hostside)

dead_servers() {
    local name
    for name in "${SERVERS[@]}"; do
        [ -n "$(live_pid "$name")" ] || echo "$name"
    done
}

check_all() {
    failures=()
    local name ca=$RUN/ca.pem
    [ -e "/run/netns/$NS" ] || fail "no network namespace $NS"
    ip link show "$HOST_IF" >/dev/null 2>&1 || fail "no link $HOST_IF"
    for name in $(dead_servers); do
        fail "server $name is not running; the end of its log: $(tail -c 300 "$RUN/log/$name.log" 2>/dev/null | tr '\n' ' ')"
    done
    [ -s "$ca" ] || fail "no CA at $ca"
    expect "http 198.51.100.10:80" "origin 198.51.100.10 allowed.test" -H 'Host: allowed.test' http://198.51.100.10/
    expect "http 198.51.100.11:80" "origin 198.51.100.11 llm.test" -H 'Host: llm.test' http://198.51.100.11/
    expect "http 203.0.113.10:80" "origin 203.0.113.10 other.test" -H 'Host: other.test' http://203.0.113.10/
    expect "http $TRAP_ADDR:80" "origin $TRAP_ADDR private.test" -H 'Host: private.test' "http://$TRAP_ADDR/"
    expect "https allowed.test" "origin 198.51.100.10 allowed.test" --cacert "$ca" \
        --resolve allowed.test:443:198.51.100.10 https://allowed.test/
    expect "https www.allowed.test" "origin 198.51.100.10 www.allowed.test" --cacert "$ca" \
        --resolve www.allowed.test:443:198.51.100.10 https://www.allowed.test/
    expect "https other.test" "origin 203.0.113.10 other.test" --cacert "$ca" \
        --resolve other.test:443:203.0.113.10 https://other.test/
    expect "https llm.test models" '"id":"fake-model"' --cacert "$ca" \
        --resolve llm.test:443:198.51.100.11 https://llm.test/v1/models
    # A request with a fresh marker in x-api-key must reach the header log as that header.
    local marker
    marker=status-probe-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
    expect "https llm.test chat" 'data: [DONE]' --cacert "$ca" --resolve llm.test:443:198.51.100.11 \
        -H "x-api-key: $marker" -H 'content-type: application/json' \
        --data '{"messages":[{"role":"user","content":"hi"}],"tools":[{}]}' https://llm.test/v1/chat/completions
    grep -qF "[\"x-api-key\",\"$marker\"]" "$RUN/llm-headers.log" 2>/dev/null \
        || fail "llm header log: the probe's x-api-key is not in $RUN/llm-headers.log"
    expect "http 198.51.100.1:8080 (host)" "origin 198.51.100.1 hostside.test" -H 'Host: hostside.test' \
        http://198.51.100.1:8080/
    check_dns
    [ ${#failures[@]} -eq 0 ]
}

# ---- commands --------------------------------------------------------------------------

cmd_down() {
    require_root
    local f pid groups=()
    for f in "$RUN"/pids/*; do
        [ -e "$f" ] || continue
        pid=$(live_pid "${f##*/}")
        [ -n "$pid" ] || continue
        # Its whole process group when it leads one (socat's forked children too).
        if [ "$(stat_field "$pid" 5)" = "$pid" ]; then
            groups+=("$pid")
            kill -TERM -- "-$pid" 2>/dev/null || true
        else
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    local deadline=$(( SECONDS + 5 )) left g
    while :; do
        left=()
        for f in "$RUN"/pids/*; do
            [ -e "$f" ] || continue
            pid=$(live_pid "${f##*/}")
            [ -z "$pid" ] || left+=("$pid")
        done
        for g in "${groups[@]}"; do
            for pid in $(group_members "$g"); do left+=("$pid"); done
        done
        [ ${#left[@]} -eq 0 ] && break
        if [ $SECONDS -ge $deadline ]; then
            kill -KILL -- "${left[@]}" 2>/dev/null || true
            break
        fi
        sleep 0.05
    done
    ip route del "$TRAP_ADDR/32" dev "$HOST_IF" 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    ip link del "$HOST_IF" 2>/dev/null || true
    rm -rf "$RUN"
    ! ip link show "$HOST_IF" >/dev/null 2>&1 || die "could not remove the link $HOST_IF"
    [ ! -e "/run/netns/$NS" ] || die "could not remove the network namespace $NS"
}

cmd_up() {
    require_root
    if [ -e "$RUN/hosts" ] && check_all; then
        echo "fake-internet: already up (hosts $RUN/hosts, CA $RUN/ca.pem)"
        return 0
    fi
    require_tools
    local b
    for b in fake-origin fake-llm; do
        [ -x "$bin_src/$b" ] || die "$bin_src/$b is missing: build it with \`cargo build --release --manifest-path tests/fake-llm/Cargo.toml --target-dir target/fake-llm\` (\`just fake-internet\` does), or point DVPT_INET_BIN at a directory that has it"
    done
    # Whatever a failed or partial run left.
    cmd_down
    trap 'echo "fake-internet: up failed; removing what it made" >&2; cmd_down' EXIT
    install -d -m 0755 "$RUN" "$RUN/bin" "$RUN/log" "$RUN/pids"
    install -d -m 1777 "$RUN/llm-scripts"
    install -m 0755 "$bin_src/fake-origin" "$bin_src/fake-llm" "$RUN/bin/"
    printf '%s\n' '{"steps": [], "final": "fake answer"}' >"$RUN/llm-scripts/default.json"
    install -m 0644 /dev/null "$RUN/llm-headers.log"
    make_certs
    make_network
    start_servers
    # Ready when every check passes (bounded; at once a failure when a server ended).
    local deadline=$(( SECONDS + 15 ))
    until check_all; do
        if [ -n "$(dead_servers)" ] || [ $SECONDS -ge $deadline ]; then
            printf 'fake-internet: %s\n' "${failures[@]}" >&2
            false
        fi
        sleep 0.05
    done
    trap - EXIT
    # Written last: its presence means the fake internet is up.
    printf '%s' "$HOSTS" >"$RUN/hosts.tmp"
    chmod 0644 "$RUN/hosts.tmp"
    mv "$RUN/hosts.tmp" "$RUN/hosts"
    echo "fake-internet: up: namespace $NS, hosts $RUN/hosts, CA $RUN/ca.pem, LLM header log $RUN/llm-headers.log"
}

cmd_status() {
    if check_all; then
        [ -e "$RUN/hosts" ] || { echo "fake-internet: every server answers but $RUN/hosts is missing (up did not finish)" >&2; exit 1; }
        echo "fake-internet: up; every server answers"
    else
        printf 'fake-internet: %s\n' "${failures[@]}" >&2
        exit 1
    fi
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
