#!/usr/bin/env bash
# The registry tests' two OCI registries on loopback (issue 18), set up as root once
# before the real-Podman legs (`just registry`); tests/podman/registry.rs uses them.
#
#   registry.sh up [USER...]   start them (or keep them, when they are up, answer and
#                              every named USER is configured), push the base image, and
#                              configure Podman for root and for each USER
#   registry.sh down           stop exactly the registries `up` started; remove every file
#                              `up` installed (drop-ins, CA certificates) and /run/dvpt-registry
#   registry.sh status         check that both registries answer as they should, and that
#                              the calling user's Podman configuration is installed (any user)
#
# Layout (tests/common/registry.rs names the same; keep the two in step):
#   A  127.0.0.1:5701  plain HTTP, no authentication
#   B  127.0.0.1:5702  TLS (a test CA made at `up`), htpasswd (bcrypt): user `dvpt`, a
#      random password made at `up`. The distribution registry 2.8 would take htpasswd
#      over plain HTTP too; B uses TLS because a registry that asks for a password
#      does, and so that the tests also see Podman's certs.d trust in use.
#   Both serve one storage directory, so B holds what is pushed to A: `dvpt/base:latest`,
#   root's localhost/devaipod-base:latest, pushed once by `up` (tests add tags to it),
#   and, when DVPT_DEBIAN_TAR names tests/images/build-debian.sh's tarball,
#   `dvpt/debian:bookworm-slim`, the stand-in for Debian's own image.
#
#   Podman configuration, per engine, each only where that engine reads it:
#     root:  /etc/containers/registries.conf.d/50-devaipod-test-registry.conf
#            /etc/containers/certs.d/127.0.0.1:5702/ca.crt
#     USER:  ~USER/.config/containers/registries.conf.d/50-devaipod-test-registry.conf
#            ~USER/.config/containers/certs.d/localhost:5702/ca.crt
#   The drop-in marks A insecure (plain HTTP), rewrites the made-up prefix
#   registry.devaipod.test/dvpt to A's dvpt and docker.io/library/debian to A's
#   dvpt/debian, and blocks blocked.devaipod.test. A rootless
#   engine also reads the system drop-in directory (when the user has no registries.conf
#   of their own), so root's file names A and B as 127.0.0.1 and a user's as localhost:
#   a user's pull of registry.devaipod.test/... reaches A as localhost:5701 (A's log
#   shows the Host) only through the user's own drop-in, and B as localhost:5702 is
#   trusted only through the user's own certs.d.
#
#   Credentials, per engine user, as test secrets (0600, owned by that user, in a 0700
#   directory of theirs): /run/dvpt-registry/auth/NAME/ (NAME root or USER) holds
#     good.json   an auth.json (containers-auth.json(5)) with B's credentials, keyed
#                 127.0.0.1:5702 for root, localhost:5702 for a user
#     wrong.json  the same with a wrong password
#     password    B's password alone (the tests' sentinel: it must appear nowhere)
#   No password is ever on a command line: htpasswd and curl read it from stdin or a
#   file descriptor.
#
#   Files: /run/dvpt-registry/ready (written last: its presence means `up` finished),
#   ca.pem (the test CA), log/a.log and log/b.log (JSON lines, readable by all: the
#   tests read which Host asked for which manifest), pids/ (PID and start time of each
#   registry: `down` stops exactly those), installed (what `up` put outside this
#   directory: `down` removes exactly that), users (the configured users).
#
# Installs nothing: `just setup` installs docker-registry, apache2-utils (htpasswd),
# openssl and curl.
set -euo pipefail

RUN=/run/dvpt-registry
PORT_A=5701
PORT_B=5702
REPO=dvpt/base
TAG=latest
BASE_IMAGE=localhost/devaipod-base:latest
B_USER=dvpt
DROPIN_NAME=50-devaipod-test-registry.conf
REWRITE_PREFIX=registry.devaipod.test/dvpt
BLOCKED=blocked.devaipod.test
# The stand-in Debian base: DVPT_DEBIAN_TAR (tests/images/build-debian.sh's tarball) is
# pushed as DEBIAN_REPO:DEBIAN_TAG, and DEBIAN_NAME rewritten to it.
DEBIAN_NAME=docker.io/library/debian
DEBIAN_REPO=dvpt/debian
DEBIAN_TAG=bookworm-slim
DEBIAN_TAR=${DVPT_DEBIAN_TAR:-}
MANIFEST_TYPES='application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json'

die() { echo "registry: $*" >&2; exit 1; }

require_root() {
    [ "$(id -u)" = 0 ] || die "needs root (system Podman configuration, other users' configuration): run it with sudo, or \`just registry\`"
}

require_tools() {
    local missing=() pair cmd pkg
    for pair in docker-registry:docker-registry htpasswd:apache2-utils openssl:openssl \
                curl:curl podman:podman setsid:util-linux runuser:util-linux; do
        cmd=${pair%%:*}; pkg=${pair#*:}
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] || die "missing packages: ${missing[*]}: install them with \`just setup\` (or \`sudo apt-get install ${missing[*]}\`)"
}

# The host name an engine user's configuration gives the registries (see the header).
host_of() { if [ "$1" = root ]; then echo 127.0.0.1; else echo localhost; fi; }

home_of() {
    local home
    home=$(getent passwd "$1" | cut -d: -f6)
    if [ -z "$home" ] || [ ! -d "$home" ]; then
        die "user $1 has no home directory (${home:-none in passwd})"
    fi
    echo "$home"
}

# Field N (1-based, as in proc(5)) of /proc/PID/stat; empty when there is no such process.
stat_field() {
    local line n=$2
    line=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    line=${line##*) }
    # shellcheck disable=SC2086 # split into fields on purpose
    set -- $line
    shift $(( n - 3 )) 2>/dev/null || return 0
    echo "${1:-}"
}

# The pid of registry NAME when it is the process `up` started (same start time) and
# has not ended, else empty.
live_pid() {
    local pid st
    read -r pid st 2>/dev/null <"$RUN/pids/$1" || return 0
    [ -n "$st" ] && [ "$(stat_field "$pid" 22)" = "$st" ] && [[ $(stat_field "$pid" 3) != [ZX] ]] && echo "$pid"
    return 0
}

# ---- files outside $RUN, as their owner ------------------------------------------------

# Run by OWNER (bash -c): put MODE PATH writes stdin to PATH (atomically), making the
# missing parent directories; prints `dir D` for each directory it made, outermost
# first, then `file PATH`.
# shellcheck disable=SC2016 # expanded by the owner's bash, not here
PUT='set -euo pipefail
mode=$1 path=$2
d=$(dirname "$path"); made=()
while [ ! -d "$d" ]; do made=("$d" "${made[@]}"); d=$(dirname "$d"); done
for d in "${made[@]}"; do mkdir -m 0755 "$d"; echo "dir $d"; done
tmp=$(mktemp "$path.XXXXXX")
cat >"$tmp"
chmod "$mode" "$tmp"
mv -f "$tmp" "$path"
echo "file $path"'

as_owner() {
    local owner=$1
    shift
    if [ "$owner" = root ]; then "$@"; else (cd / && runuser -u "$owner" -- "$@"); fi
}

# install_file OWNER MODE PATH <CONTENT: writes it as OWNER and records it in $RUN/installed.
install_file() {
    local owner=$1 mode=$2 path=$3 kind p
    as_owner "$owner" bash -c "$PUT" put "$mode" "$path" | while read -r kind p; do
        echo "$owner $kind $p" >>"$RUN/installed"
    done
    [ "${PIPESTATUS[0]}" = 0 ] || die "could not write $path as $owner"
}

# Removes what $RUN/installed lists, newest first: files, then the directories `up`
# made (only when empty).
remove_installed() {
    [ -f "$RUN/installed" ] || return 0
    local owner kind path
    tac "$RUN/installed" | while read -r owner kind path; do
        id "$owner" >/dev/null 2>&1 || continue
        case $kind in
            file) as_owner "$owner" rm -f -- "$path" ;;
            dir) as_owner "$owner" rmdir --ignore-fail-on-non-empty -- "$path" 2>/dev/null || true ;;
        esac
    done
    rm -f "$RUN/installed"
}

# ---- the pieces of `up` -----------------------------------------------------------------

random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

make_certs() {
    local tls=$RUN/tls
    install -d -m 0700 "$tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$tls/ca.key" -out "$tls/ca.pem" -days 30 -subj "/CN=devaipod registry test CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        2>"$tls/openssl.log" || { cat "$tls/openssl.log" >&2; die "making the test CA failed"; }
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$tls/server.key" -out "$tls/server.csr" -subj "/CN=localhost" \
        2>"$tls/openssl.log" || { cat "$tls/openssl.log" >&2; die "making the server key failed"; }
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$tls/server.ext"
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
        -set_serial "0x$(random_hex 8)" -days 30 -extfile "$tls/server.ext" \
        -out "$tls/server.pem" 2>"$tls/openssl.log" || { cat "$tls/openssl.log" >&2; die "signing the server certificate failed"; }
    # Nobody mints another certificate with this CA.
    rm -f "$tls/ca.key" "$tls/server.csr"
    install -m 0644 "$tls/ca.pem" "$RUN/ca.pem"
}

make_secrets() {
    install -d -m 0700 "$RUN/secret"
    random_hex 12 | sed 's/^/dvpt-pw-/' >"$RUN/secret/password"
    random_hex 12 | sed 's/^/dvpt-wrong-/' >"$RUN/secret/wrong"
    # -i: the password from stdin, not the command line.
    htpasswd -Bin "$B_USER" <"$RUN/secret/password" >"$RUN/secret/htpasswd" 2>/dev/null \
        || die "htpasswd -B failed (apache2-utils)"
}

write_configs() {
    local secret
    secret=$(random_hex 16)
    install -d -m 0700 "$RUN/data"
    install -d -m 0755 "$RUN/log"
    # JSON lines without the access log: every request is one line naming its Host.
    cat >"$RUN/a.yml" <<EOF
version: 0.1
log: {level: info, formatter: json, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $RUN/data}}
http: {addr: "127.0.0.1:$PORT_A", secret: "$secret"}
EOF
    cat >"$RUN/b.yml" <<EOF
version: 0.1
log: {level: info, formatter: json, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $RUN/data}}
http:
  addr: "127.0.0.1:$PORT_B"
  secret: "$secret"
  tls: {certificate: $RUN/tls/server.pem, key: $RUN/tls/server.key}
auth:
  htpasswd: {realm: devaipod-test, path: $RUN/secret/htpasswd}
EOF
    chmod 0600 "$RUN/a.yml" "$RUN/b.yml"
}

start() {
    local name=$1 pid
    shift
    setsid "$@" </dev/null >>"$RUN/log/$name.log" 2>&1 &
    pid=$!
    echo "$pid $(stat_field "$pid" 22)" >"$RUN/pids/$name"
}

start_registries() {
    install -d -m 0755 "$RUN/pids"
    install -m 0644 /dev/null "$RUN/log/a.log"
    install -m 0644 /dev/null "$RUN/log/b.log"
    start a docker-registry serve "$RUN/a.yml"
    start b docker-registry serve "$RUN/b.yml"
}

# An auth.json for B at HOST with PASSWORD_FILE's password.
auth_json() {
    local token
    token=$( { printf '%s:' "$B_USER"; tr -d '\n' <"$2"; } | base64 -w0)
    printf '{"auths": {"%s:%s": {"auth": "%s"}}}\n' "$1" "$PORT_B" "$token"
}

dropin() {
    local h=$1
    cat <<EOF
# devaipod's registry tests (tests/registry/registry.sh): \`registry.sh down\` removes it.
# Registry A: plain HTTP.
[[registry]]
location = "$h:$PORT_A"
insecure = true

# A made-up name that only this configuration resolves: to registry A.
[[registry]]
prefix = "$REWRITE_PREFIX"
location = "$h:$PORT_A/dvpt"
insecure = true

[[registry]]
location = "$BLOCKED"
blocked = true

# The Debian base image of containers/base/Containerfile, under its usual name: the
# stand-in (tests/images/build-debian.sh) in registry A.
[[registry]]
prefix = "$DEBIAN_NAME"
location = "$h:$PORT_A/$DEBIAN_REPO"
insecure = true
EOF
}

# Podman's configuration and the credentials of engine user U (root or a user).
configure_user() {
    local u=$1 h config_dir adir
    h=$(host_of "$u")
    if [ "$u" = root ]; then
        config_dir=/etc/containers
    else
        id "$u" >/dev/null 2>&1 || die "no user $u (the rootless test user): create it first (\`just registry\` does)"
        config_dir=$(home_of "$u")/.config/containers
    fi
    dropin "$h" | install_file "$u" 0644 "$config_dir/registries.conf.d/$DROPIN_NAME"
    install_file "$u" 0644 "$config_dir/certs.d/$h:$PORT_B/ca.crt" <"$RUN/ca.pem"
    adir=$RUN/auth/$u
    rm -rf "$adir"
    install -d -m 0700 -o "$u" -g "$(id -gn "$u")" "$adir"
    auth_json "$h" "$RUN/secret/password" >"$RUN/secret/good.json.tmp"
    auth_json "$h" "$RUN/secret/wrong" >"$RUN/secret/wrong.json.tmp"
    install -m 0600 -o "$u" -g "$(id -gn "$u")" "$RUN/secret/good.json.tmp" "$adir/good.json"
    install -m 0600 -o "$u" -g "$(id -gn "$u")" "$RUN/secret/wrong.json.tmp" "$adir/wrong.json"
    install -m 0600 -o "$u" -g "$(id -gn "$u")" "$RUN/secret/password" "$adir/password"
    rm -f "$RUN/secret/good.json.tmp" "$RUN/secret/wrong.json.tmp"
    grep -qx "$u" "$RUN/users" 2>/dev/null || echo "$u" >>"$RUN/users"
}

# Root's base image into A (and so B), through root's drop-in (A is insecure there).
push_base() {
    local id
    id=$(podman image inspect --format '{{.Id}}' "$BASE_IMAGE" 2>/dev/null) \
        || die "$BASE_IMAGE is not in root's image store: build it with \`sudo containers/base/build.sh\` (\`just image\` does)"
    echo "registry: pushing $BASE_IMAGE to 127.0.0.1:$PORT_A/$REPO:$TAG (a minute when the registry is new)" >&2
    podman push --quiet "$BASE_IMAGE" "127.0.0.1:$PORT_A/$REPO:$TAG" >"$RUN/log/push.log" 2>&1 \
        || { cat "$RUN/log/push.log" >&2; die "pushing $BASE_IMAGE to registry A failed"; }
    echo "$id" >"$RUN/pushed"
}

# The stand-in Debian base into A, once per tarball: imported into root's store only for
# the push, then removed from it.
push_debian() {
    local staged=localhost/dvpt-stand-in-debian:$DEBIAN_TAG
    echo "registry: pushing the Debian stand-in ($DEBIAN_TAR) to 127.0.0.1:$PORT_A/$DEBIAN_REPO:$DEBIAN_TAG" >&2
    podman import --quiet "$DEBIAN_TAR" "$staged" >/dev/null
    podman push --quiet "$staged" "127.0.0.1:$PORT_A/$DEBIAN_REPO:$DEBIAN_TAG" >"$RUN/log/push-debian.log" 2>&1 \
        || { cat "$RUN/log/push-debian.log" >&2; podman rmi "$staged" >/dev/null 2>&1 || true; die "pushing the Debian stand-in to registry A failed"; }
    podman rmi "$staged" >/dev/null
    echo "$DEBIAN_TAR" >"$RUN/pushed-debian"
}

# ---- checks (status, and readiness at the end of up) ----------------------------------

failures=()
fail() { failures+=("$1"); }

# http_code ARGS...: the HTTP status curl got (000 when it got none).
http_code() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 3 --noproxy '*' "$@" 2>/dev/null || true
}

# expect_code NAME WANT ARGS...
expect_code() {
    local name=$1 want=$2 got
    shift 2
    got=$(http_code "$@")
    [ "$got" = "$want" ] || fail "$name: wanted HTTP $want, got ${got:-nothing}"
}

# curl -K config with B's user and the password in FILE (not on a command line).
creds_config() { printf 'user = "%s:%s"\n' "$B_USER" "$(tr -d '\n' <"$1")"; }

dead_registries() {
    local name
    for name in a b; do [ -n "$(live_pid "$name")" ] || echo "$name"; done
}

# The password file the caller may read (root's own copy, or a user's), else empty.
readable_password() {
    local f
    f=$RUN/auth/$(id -un)/password
    [ -r "$f" ] && echo "$f"
    return 0
}

check_servers() {
    local name manifest="/v2/$REPO/manifests/$TAG" pw
    for name in $(dead_registries); do
        fail "registry $name is not running; the end of its log: $(tail -c 300 "$RUN/log/$name.log" 2>/dev/null | tr '\n' ' ')"
    done
    expect_code "A: $REPO:$TAG" 200 -H "Accept: $MANIFEST_TYPES" "http://127.0.0.1:$PORT_A$manifest"
    expect_code "B without credentials" 401 --cacert "$RUN/ca.pem" "https://127.0.0.1:$PORT_B/v2/"
    expect_code "B with a wrong password" 401 --cacert "$RUN/ca.pem" -u "$B_USER:not-the-password" \
        "https://127.0.0.1:$PORT_B/v2/"
    pw=$(readable_password)
    if [ -n "$pw" ]; then
        expect_code "B: $REPO:$TAG with the password" 200 --cacert "$RUN/ca.pem" -K <(creds_config "$pw") \
            -H "Accept: $MANIFEST_TYPES" "https://127.0.0.1:$PORT_B$manifest"
        expect_code "B as localhost with the password" 200 --cacert "$RUN/ca.pem" -K <(creds_config "$pw") \
            "https://localhost:$PORT_B/v2/"
    fi
}

# The configuration of engine user U is in place (its files exist).
check_user() {
    local u=$1 h config_dir f
    h=$(host_of "$u")
    if [ "$u" = root ]; then config_dir=/etc/containers; else config_dir=$(home_of "$u")/.config/containers; fi
    for f in "$config_dir/registries.conf.d/$DROPIN_NAME" "$config_dir/certs.d/$h:$PORT_B/ca.crt" \
             "$RUN/auth/$u/good.json" "$RUN/auth/$u/wrong.json" "$RUN/auth/$u/password"; do
        [ -e "$f" ] || fail "$u: $f is missing"
    done
    f=$config_dir/registries.conf.d/$DROPIN_NAME
    [ ! -e "$f" ] || dropin "$h" | cmp -s - "$f" || fail "$u: $f is not this script's drop-in"
}

check_all() {
    failures=()
    check_servers
    [ ${#failures[@]} -eq 0 ]
}

# ---- commands --------------------------------------------------------------------------

cmd_down() {
    require_root
    local name pid left deadline=$(( SECONDS + 5 ))
    for name in a b; do
        pid=$(live_pid "$name")
        [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true
    done
    while :; do
        left=()
        for name in a b; do
            pid=$(live_pid "$name")
            [ -z "$pid" ] || left+=("$pid")
        done
        [ ${#left[@]} -eq 0 ] && break
        if [ $SECONDS -ge $deadline ]; then
            kill -KILL -- "${left[@]}" 2>/dev/null || true
            break
        fi
        sleep 0.05
    done
    remove_installed
    rm -rf "$RUN"
}

cmd_up() {
    require_root
    local users=(root) u want=() new=0
    for u in "$@"; do
        [ "$u" = root ] || users+=("$u")
    done
    if [ -e "$RUN/ready" ] && check_all; then
        for u in "${users[@]}"; do
            grep -qx "$u" "$RUN/users" 2>/dev/null || { new=1; configure_user "$u"; }
        done
        failures=()
        for u in "${users[@]}"; do check_user "$u"; done
        if [ ${#failures[@]} -eq 0 ]; then
            if [ "$(podman image inspect --format '{{.Id}}' "$BASE_IMAGE" 2>/dev/null)" != "$(cat "$RUN/pushed")" ]; then
                push_base
            fi
            if [ -n "$DEBIAN_TAR" ] && [ "$(cat "$RUN/pushed-debian" 2>/dev/null)" != "$DEBIAN_TAR" ]; then
                push_debian
            fi
            if [ "$new" = 0 ]; then
                echo "registry: already up (A 127.0.0.1:$PORT_A, B 127.0.0.1:$PORT_B; configured: $(paste -sd' ' "$RUN/users"))"
            else
                echo "registry: up; configured: $(paste -sd' ' "$RUN/users")"
            fi
            return 0
        fi
    fi
    require_tools
    # Keep the users configured before (a renewal must not drop one).
    if [ -f "$RUN/users" ]; then
        while read -r u; do
            printf '%s\n' "${users[@]}" | grep -qx "$u" || users+=("$u")
        done <"$RUN/users"
    fi
    # Whatever a failed or partial run left.
    cmd_down
    trap 'echo "registry: up failed; removing what it made" >&2; cmd_down' EXIT
    install -d -m 0755 "$RUN" "$RUN/auth"
    : >"$RUN/installed"
    make_certs
    make_secrets
    write_configs
    start_registries
    # Ready when A answers /v2/ (bounded; at once a failure when a registry ended).
    local deadline=$(( SECONDS + 15 ))
    until [ "$(http_code "http://127.0.0.1:$PORT_A/v2/")" = 200 ] \
          && [ "$(http_code --cacert "$RUN/ca.pem" "https://127.0.0.1:$PORT_B/v2/")" = 401 ]; do
        if [ -n "$(dead_registries)" ] || [ $SECONDS -ge $deadline ]; then
            echo "registry: the registries did not come up: A /v2/ $(http_code "http://127.0.0.1:$PORT_A/v2/"), B /v2/ $(http_code --cacert "$RUN/ca.pem" "https://127.0.0.1:$PORT_B/v2/")" >&2
            for u in a b; do echo "registry $u log: $(tail -c 500 "$RUN/log/$u.log")" >&2; done
            false
        fi
        sleep 0.05
    done
    for u in "${users[@]}"; do configure_user "$u"; done
    push_base
    [ -z "$DEBIAN_TAR" ] || push_debian
    check_all || { printf 'registry: %s\n' "${failures[@]}" >&2; false; }
    for u in "${users[@]}"; do check_user "$u"; done
    [ ${#failures[@]} -eq 0 ] || { printf 'registry: %s\n' "${failures[@]}" >&2; false; }
    trap - EXIT
    # Written last: its presence means the registries are up.
    printf 'a 127.0.0.1:%s\nb 127.0.0.1:%s\n' "$PORT_A" "$PORT_B" >"$RUN/ready.tmp"
    chmod 0644 "$RUN/ready.tmp"
    mv "$RUN/ready.tmp" "$RUN/ready"
    echo "registry: up: A http://127.0.0.1:$PORT_A, B https://127.0.0.1:$PORT_B (CA $RUN/ca.pem), $REPO:$TAG pushed; configured: ${users[*]}"
}

cmd_status() {
    failures=()
    check_servers
    local me
    me=$(id -un)
    [ -e "$RUN/ready" ] || fail "$RUN/ready is missing (up did not finish)"
    grep -qx "$me" "$RUN/users" 2>/dev/null || fail "user $me is not configured: run \`sudo $0 up $me\`"
    check_user "$me"
    if [ ${#failures[@]} -gt 0 ]; then
        printf 'registry: %s\n' "${failures[@]}" >&2
        exit 1
    fi
    echo "registry: up; both registries answer; $me is configured"
}

case "${1:-}" in
    up) shift; cmd_up "$@" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *) echo "usage: $0 up [USER...]|down|status" >&2; exit 2 ;;
esac
