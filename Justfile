# devaipod's front door. `just --list` shows the recipes.
#
#   just demo    install what is missing, build devaipod and the image, `up` examples/hello
#   just test    everything CI runs: checks, unit/CLI tests, real-Podman tests rootful and rootless
#   just check   fmt, clippy -D warnings, unit and CLI tests (before every commit)
#   just fuzz    the readers of untrusted text fuzzed for 60 s (docs/fuzzing.md)

set shell := ["bash", "-euo", "pipefail", "-c"]

# On hybrid (v1) cgroup hosts podman needs runc and no default ulimits; point podman
# at the repo's containers.conf there (and only there). A cgroup v2 host gets nothing.
hybrid := `if [ -d /sys/fs/cgroup/unified ] && [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]; then echo yes; else echo no; fi`
export CONTAINERS_CONF := if hybrid == "yes" { justfile_directory() / "containers/hybrid-cgroups.conf" } else { env_var_or_default("CONTAINERS_CONF", "") }

sudo := if `id -u` == "0" { "" } else { "sudo" }
# The fixed rootless user the root-run test suite uses for its rootless leg.
test_user := "dvp-ci"
stage := "/tmp/devaipod-test-stage"

default:
    @just --list

# Install Podman and the tools devaipod and its tests need (apt; only what is missing)
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    need=()
    for pair in podman:podman runc:runc newuidmap:uidmap slirp4netns:slirp4netns \
                fuse-overlayfs:fuse-overlayfs catatonit:catatonit debootstrap:debootstrap \
                git:git nsenter:util-linux toolbox:podman-toolbox dbus-daemon:dbus \
                script:bsdutils ssh:openssh-client sftp:openssh-client \
                docker-registry:docker-registry htpasswd:apache2-utils openssl:openssl curl:curl; do
        cmd=${pair%%:*}; pkg=${pair#*:}
        command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/libexec/podman/$cmd" ] || [ -x "/usr/sbin/$cmd" ] || need+=("$pkg")
    done
    [ -x /bin/busybox ] || need+=(busybox-static)
    # GNU time (not the shell's keyword): the peak RSS of devaipod in tests/podman/hostile_sizes.rs
    [ -x /usr/bin/time ] || need+=(time)
    command -v npm >/dev/null 2>&1 || need+=(npm)
    if [ ${#need[@]} -gt 0 ]; then
        echo "installing: ${need[*]}"
        {{sudo}} apt-get update -qq
        {{sudo}} env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    podman --version

# The reference Dev Containers CLI, for the comparison test (npm, into target/)
setup-reference:
    #!/usr/bin/env bash
    set -euo pipefail
    want=0.89.0
    have=$(node -p "require('./target/reference-cli/node_modules/@devcontainers/cli/package.json').version" 2>/dev/null || true)
    if [ "$have" != "$want" ]; then
        rm -rf target/reference-cli && mkdir -p target/reference-cli
        npm install --silent --no-audit --no-fund --prefix target/reference-cli "@devcontainers/cli@$want" >/dev/null
    fi

# Small images the tests use (in the current user's store)
test-images:
    tests/images/build-broken.sh
    tests/images/build-meta.sh

# devaipod reads every corpus config like the reference CLI (tests/reference.rs)
test-reference: setup setup-reference test-images
    cargo test --test reference

# Build devaipod (debug), with its network guard beside it
build: net
    cargo build

# Install devaipod and its network guard side by side (default ~/.cargo/bin): `just install /usr/local`
install prefix=(env_var("HOME") / ".cargo"): net
    cargo install --quiet --locked --path . --root {{prefix}}
    install -m 0755 target/debug/devaipod-net {{prefix}}/bin/devaipod-net

# It runs in its own scratch image and, for the agent's gate, in any user image.
# Build devaipod-net, the pod's network guard (net/), static, beside devaipod
net:
    #!/usr/bin/env bash
    set -euo pipefail
    host=$(rustc -vV | sed -n 's/^host: //p')
    RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --quiet \
        --manifest-path net/Cargo.toml --target "$host" --target-dir target/net-static
    install -d target/debug
    install -m 0755 "target/net-static/$host/release/devaipod-net" target/debug/devaipod-net

# Build localhost/devaipod-base:latest offline (cached by content key)
image: setup
    #!/usr/bin/env bash
    set -euo pipefail
    if [ "$(id -u)" = 0 ]; then
        containers/base/build.sh --tar-only
    fi
    # Root imports the tarball it made; anyone else imports a cached one (theirs or the
    # machine's) or, without one, builds from containers/base/Containerfile rootless
    # (a registry that serves Debian needed): `just image-offline` makes the tarball.
    containers/base/build.sh

# The bundled image without any registry: debootstrap (sudo) the cached rootfs, then import it
image-offline: setup
    {{sudo}} containers/base/build.sh --tar-only
    containers/base/build.sh

# The main job: build everything and `devaipod up` the bundled example repo
demo: setup build image
    ./target/debug/devaipod up examples/hello
    @if [ -n "$CONTAINERS_CONF" ]; then echo; echo "this host has hybrid cgroups: run podman and devaipod with"; echo "  export CONTAINERS_CONF=$CONTAINERS_CONF"; fi
    @echo "devaipod itself is ./target/debug/devaipod (cargo install --path . puts it on PATH)"

# fmt, clippy -D warnings (the engine test tiers too), unit and CLI tests (no engine needed)
check:
    cargo fmt --check
    cargo fmt --check --manifest-path tests/fake-llm/Cargo.toml
    cargo fmt --check --manifest-path net/Cargo.toml
    cargo clippy --all-targets --test podman --test toolbox --test reference -- -D warnings
    cargo clippy --quiet --all-targets --manifest-path tests/fake-llm/Cargo.toml --target-dir target/fake-llm -- -D warnings
    cargo clippy --quiet --all-targets --manifest-path net/Cargo.toml --target-dir target/net -- -D warnings
    cargo test --lib --bins --test cli
    cargo test --quiet --manifest-path tests/fake-llm/Cargo.toml --target-dir target/fake-llm
    cargo test --quiet --manifest-path net/Cargo.toml --target-dir target/net

# Fuzz the readers of untrusted text for SECONDS in all (docs/fuzzing.md): the cargo-fuzz
# targets of fuzz/ on nightly when cargo-fuzz is installed, else (or with=proptest) the
# property tests' long run
fuzz seconds="60" with="auto":
    #!/usr/bin/env bash
    set -euo pipefail
    targets=(devcontainer_json run_args devaipod_toml)
    if [ "{{with}}" != proptest ] && cargo +nightly fuzz --version >/dev/null 2>&1; then
        # libFuzzer overshoots -max_total_time by a second, and cargo fuzz adds one.
        per=$(( {{seconds}} / ${#targets[@]} - 2 ))
        cd fuzz
        # No sanitizer: devaipod has no unsafe code, the bugs sought are panics, hangs
        # and memory, and AddressSanitizer's own memory would count against the limit.
        fuzz=(cargo +nightly fuzz run -s none --target-dir ../target/fuzz)
        cargo +nightly fuzz build -s none --target-dir ../target/fuzz
        for t in "${targets[@]}"; do
            # New inputs go to target/ (the first folder); the repo's seeds and
            # regressions are read, never written.
            mkdir -p "../target/fuzz-corpus/$t" "../target/fuzz-artifacts/$t"
            dirs=("../target/fuzz-corpus/$t" "corpus/$t")
            [ -d "regressions/$t" ] && dirs+=("regressions/$t")
            log="../target/fuzz-artifacts/$t/log"
            if ! "${fuzz[@]}" "$t" "${dirs[@]}" -- -max_total_time="$per" -rss_limit_mb=256 \
                -malloc_limit_mb=256 -max_len=1048576 -timeout=10 -dict="dict/$t.dict" \
                -artifact_prefix="../target/fuzz-artifacts/$t/" -print_final_stats=1 >"$log" 2>&1; then
                tail -n 60 "$log" >&2
                echo "fuzz: $t failed (above; target/fuzz-artifacts/$t/log): the input is in target/fuzz-artifacts/$t/; once fixed, keep it in fuzz/regressions/$t/" >&2
                exit 1
            fi
            echo "fuzz: $t for ${per}s: $(grep -E '^Done [0-9]+ runs' "$log" || tail -n 1 "$log")"
            grep -E '^stat::(number_of_executed_units|peak_rss_mb|new_units_added)' "$log" | tr '\n' ' '; echo
        done
    else
        [ "{{with}}" = proptest ] ||
            echo "fuzz: cargo-fuzz on nightly is not installed (cargo install cargo-fuzz --locked): the property tests' long run instead"
        cargo test --lib --no-run --quiet
        # Rounds of PROPTEST_CASES cases of each property (a fresh random seed each), the
        # next only while it is expected to end within SECONDS; the worst cases and the
        # fuzz seeds (not random) in the first round only.
        started=$(date +%s); deadline=$(( started + {{seconds}} )); round=0; skip=()
        while :; do
            begun=$(date +%s)
            if ! PROPTEST_CASES="${PROPTEST_CASES:-300}" timeout $(( deadline - begun )) \
                cargo test --lib --quiet fuzzing:: -- "${skip[@]}"; then
                rc=$?
                [ "$rc" = 124 ] || exit "$rc"
                [ "$round" -gt 0 ] || { echo "fuzz: one round did not end within {{seconds}}s: give more seconds or lower PROPTEST_CASES" >&2; exit 1; }
                echo "fuzz: round $(( round + 1 )) stopped at the deadline"
                break
            fi
            round=$(( round + 1 ))
            skip=(--skip peak_memory_and_time --skip fuzz_seeds_and_regressions)
            now=$(date +%s)
            [ $(( now + now - begun )) -le "$deadline" ] || break
        done
        echo "fuzz: $round rounds of ${PROPTEST_CASES:-300} cases of each property in $(( $(date +%s) - started ))s"
    fi

# Everything CI runs: check, then the real-Podman tests rootful and rootless
test: setup
    #!/usr/bin/env bash
    set -euo pipefail
    # On a fresh machine the images' root filesystems (debootstrap: mostly waiting on
    # downloads) and the reference CLI (npm) are made while the code compiles (mostly
    # CPU). Each is cached by its content key, so a warm run skips them.
    logs=$(mktemp -d)
    trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
    {{sudo}} containers/base/build.sh --tar-only >"$logs/base.log" 2>&1 & base=$!
    {{sudo}} tests/images/build-podman5.sh >"$logs/podman5.log" 2>&1 & podman5=$!
    {{sudo}} tests/images/build-debian.sh >"$logs/debian.log" 2>&1 & debian=$!
    just setup-reference >"$logs/reference.log" 2>&1 & reference=$!
    just check
    for job in base:$base podman5:$podman5 debian:$debian reference:$reference; do
        name=${job%%:*}
        wait "${job#*:}" || { cat "$logs/$name.log" >&2; echo "test: making the $name image or CLI failed (above)" >&2; exit 1; }
    done
    just image
    just net-rules
    just test-reference
    just test-rootful
    just test-rootless
    just test-toolbox
    just test-podman5
    just test-podman5-rootless
    # Nothing of the fake internet stays behind: its namespace, veth pair and servers.
    {{sudo}} tests/net/fake-internet.sh down
    # Nor of the test registries: their processes, data, drop-ins and CA certificates.
    {{sudo}} tests/registry/registry.sh down

# Real-Podman tests against the root (rootful) engine
test-rootful: _stage fake-internet registry setup-reference
    #!/usr/bin/env bash
    set -euo pipefail
    run=({{sudo}} env CONTAINERS_CONF="$CONTAINERS_CONF" DEVAIPOD_BIN={{stage}}/devaipod
         DEVAIPOD_FAKE_LLM={{stage}}/fake-llm PATH="$PATH")
    "${run[@]}" bash {{stage}}/build.sh
    "${run[@]}" bash {{stage}}/build-broken.sh
    "${run[@]}" bash {{stage}}/build-gator.sh {{stage}}/fake-gator
    "${run[@]}" {{stage}}/cleanup.sh
    "${run[@]}" {{stage}}/podman-tests --test-threads=2
    # gc acts on the whole store: its tests run alone, after the suite (rootful only).
    "${run[@]}" {{stage}}/podman-tests --ignored --test-threads=1 gc::
    # A 1 GiB packed-refs in an agent's clone, and devaipod's peak RSS: one leg, alone.
    "${run[@]}" {{stage}}/podman-tests --ignored --test-threads=1 hostile_sizes::
    # Fault injection (signals at each step, a dying Podman service): rootful only.
    "${run[@]}" {{stage}}/podman-tests --ignored --test-threads=2 interrupt::
    # Load: five ups at once, a race of two `up --name X`, five deletes: rootful only.
    "${run[@]}" {{stage}}/podman-tests --ignored --test-threads=1 load::
    # doctor for a user made just now (no subordinate ids, no runtime dir): makes a user.
    "${run[@]}" {{stage}}/podman-tests --ignored --test-threads=1 doctor::
    "${run[@]}" {{stage}}/cleanup.sh --check

# Real-Podman tests against a rootless engine (the test user when root, else yourself)
test-rootless: _stage fake-internet registry setup-reference
    #!/usr/bin/env bash
    set -euo pipefail
    if [ "$(id -u)" = 0 ]; then
        user={{test_user}}
        tests/test-user.sh "$user"
        uid=$(id -u "$user")
        run=(runuser -u "$user" -- env -i HOME="/home/$user" USER="$user" LOGNAME="$user"
             PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin XDG_RUNTIME_DIR="/run/user/$uid"
             CONTAINERS_CONF="${CONTAINERS_CONF:+{{stage}}/containers.conf}" DEVAIPOD_BIN={{stage}}/devaipod
             DEVAIPOD_FAKE_LLM={{stage}}/fake-llm DEVAIPOD_IMAGE_CACHE=/var/cache/devaipod)
    else
        run=(env DEVAIPOD_BIN={{stage}}/devaipod DEVAIPOD_FAKE_LLM={{stage}}/fake-llm)
    fi
    cd /tmp
    "${run[@]}" bash {{stage}}/build.sh
    "${run[@]}" bash {{stage}}/build-broken.sh
    "${run[@]}" bash {{stage}}/build-gator.sh {{stage}}/fake-gator
    "${run[@]}" {{stage}}/cleanup.sh
    "${run[@]}" {{stage}}/podman-tests --test-threads=2
    # The bundled image built rootless from containers/base/Containerfile: this leg only.
    "${run[@]}" {{stage}}/podman-tests --ignored --test-threads=1 base_build::
    "${run[@]}" {{stage}}/cleanup.sh --check

# net/tests/rules.rs, in throwaway network namespaces; needs ip, nft, sysctl, unshare, nsenter.
# Root-only kernel tests of devaipod-net's nftables rules and gate
net-rules:
    #!/usr/bin/env bash
    set -euo pipefail
    cd net
    exe=$(cargo test --target-dir ../target/net --test rules --no-run --message-format=json-render-diagnostics |
        grep -E '"profile":\{[^}]*"test":true' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
    [ -n "$exe" ] || { echo "could not build the rules test (cd net && cargo test --test rules --no-run)" >&2; exit 1; }
    {{sudo}} "$exe"

# Real-Podman tests whose names contain FILTER, rootful then rootless, without the suite's
# cleanup (so other runs are left alone): `just test-one ssh`, or `just stage=/tmp/mine test-one ssh`
test-one filter: _stage fake-internet registry setup-reference
    #!/usr/bin/env bash
    set -euo pipefail
    {{sudo}} env CONTAINERS_CONF="$CONTAINERS_CONF" DEVAIPOD_BIN={{stage}}/devaipod \
        DEVAIPOD_FAKE_LLM={{stage}}/fake-llm PATH="$PATH" {{stage}}/podman-tests --test-threads=2 {{filter}}
    if [ "$(id -u)" = 0 ]; then
        user={{test_user}}
        tests/test-user.sh "$user"
        uid=$(id -u "$user")
        cd /tmp
        runuser -u "$user" -- env -i HOME="/home/$user" USER="$user" LOGNAME="$user" \
            PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin XDG_RUNTIME_DIR="/run/user/$uid" \
            CONTAINERS_CONF="${CONTAINERS_CONF:+{{stage}}/containers.conf}" DEVAIPOD_BIN={{stage}}/devaipod \
            DEVAIPOD_FAKE_LLM={{stage}}/fake-llm DEVAIPOD_IMAGE_CACHE=/var/cache/devaipod \
            {{stage}}/podman-tests --test-threads=2 {{filter}}
    fi

# devaipod inside a real toolbox, on the host's rootless Podman (the test user when root)
test-toolbox: _stage fake-internet registry
    #!/usr/bin/env bash
    set -euo pipefail
    if [ "$(id -u)" = 0 ]; then
        # toolbox needs the D-Bus system bus; there is no systemd on the CI machines.
        [ -S /run/dbus/system_bus_socket ] || { mkdir -p /run/dbus; dbus-daemon --system --fork; }
        user={{test_user}}
        tests/test-user.sh "$user"
        uid=$(id -u "$user")
        run=(runuser -u "$user" -- env -i HOME="/home/$user" USER="$user" LOGNAME="$user" SHELL=/bin/bash
             PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin XDG_RUNTIME_DIR="/run/user/$uid"
             CONTAINERS_CONF="${CONTAINERS_CONF:+{{stage}}/containers.conf}" DEVAIPOD_BIN={{stage}}/devaipod
             DEVAIPOD_IMAGE_CACHE=/var/cache/devaipod)
    else
        run=(env DEVAIPOD_BIN={{stage}}/devaipod)
    fi
    cd /tmp
    # toolbox's first command after a Podman install or upgrade runs `podman system
    # migrate`, which restarts the user's pause process: every running pod then loses
    # its network namespace (`setns` fails). Let it happen now, before any pod exists.
    "${run[@]}" toolbox list >/dev/null
    "${run[@]}" bash {{stage}}/build.sh
    "${run[@]}" bash {{stage}}/build-toolbox.sh
    "${run[@]}" {{stage}}/cleanup.sh
    "${run[@]}" {{stage}}/toolbox-tests --test-threads=1
    "${run[@]}" {{stage}}/cleanup.sh --check

# Real-Podman tests, rootful, against Podman 5.4 (Debian trixie's) nested in a privileged
# container of the host's Podman: `just stage=/tmp/mine test-podman5` (root or sudo)
test-podman5: _stage fake-internet registry
    #!/usr/bin/env bash
    set -euo pipefail
    started=$(date +%s)
    # The base rootfs tarball, imported inside by build.sh from the read-only cache.
    {{sudo}} containers/base/build.sh --tar-only
    image=$({{sudo}} tests/images/build-podman5.sh)
    key=${image##*:}
    # The nested store lives in a volume named by the environment's key: kept between
    # runs (the images inside are then up to date and skipped), replaced when the key
    # changes. /run is a fresh tmpfs each run, so Podman inside resets the state of
    # whatever a killed run left, and cleanup.sh removes it.
    store=devaipod-p5-store-$key
    for v in $({{sudo}} podman volume ls -q --filter name=^devaipod-p5-store-); do
        [ "$v" = "$store" ] || {{sudo}} podman volume rm -f "$v" >/dev/null
    done
    name=devaipod-p5-$$
    trap '{{sudo}} podman rm -f -t 0 "$name" >/dev/null 2>&1 || true' EXIT
    # No devaipod.test or io.devaipod.* label: the host's cleanup leaves it alone.
    {{sudo}} podman run -d --quiet --name "$name" --privileged --cgroupns=host --init \
        --tmpfs /run:rw,exec,mode=0755 --tmpfs /tmp:rw,exec,mode=1777 \
        -v "$store:/var/lib/containers" -v {{stage}}:{{stage}}:ro \
        -v /var/cache/devaipod:/var/cache/devaipod:ro -v /run/dvpt-inet:/run/dvpt-inet \
        -v /run/dvpt-registry:/run/dvpt-registry -v "$(command -v docker-registry)":/usr/local/bin/docker-registry:ro \
        -e PODMAN_IGNORE_CGROUPSV1_WARNING=1 "$image" sleep infinity >/dev/null
    run=({{sudo}} podman exec -w /tmp -e DEVAIPOD_BIN={{stage}}/devaipod
         -e DEVAIPOD_FAKE_LLM={{stage}}/fake-llm -e DEVAIPOD_IMAGE_CACHE=/var/cache/devaipod "$name")
    # Podman 5's builds (buildah) raise nofile and nproc to 1048576 when containers.conf
    # names none, which this kernel refuses ("error setting rlimit type 7"): name the
    # limits the container already has (machine-dependent, so written here, not baked).
    "${run[@]}" bash -c 'mkdir -p /etc/containers/containers.conf.d && printf "[containers]\ndefault_ulimits = [\"nofile=%s:%s\", \"nproc=%s:%s\"]\n" $(ulimit -Hn) $(ulimit -Hn) $(ulimit -Hu) $(ulimit -Hu) >/etc/containers/containers.conf.d/ulimits.conf'
    "${run[@]}" podman version
    # The registry tests: the nested engine has a loopback of its own, so the two test
    # registries run again inside, on the same configuration and storage (the host's
    # are idle meanwhile), with root's drop-in and CA as on the host.
    "${run[@]}" bash -c 'for r in a b; do setsid docker-registry serve /run/dvpt-registry/$r.yml </dev/null >>/run/dvpt-registry/log/$r.log 2>&1 & done'
    dropin=/etc/containers/registries.conf.d/50-devaipod-test-registry.conf
    ca=/etc/containers/certs.d/127.0.0.1:5702/ca.crt
    {{sudo}} podman exec "$name" mkdir -p /etc/containers/registries.conf.d /etc/containers/certs.d/127.0.0.1:5702
    {{sudo}} cat "$dropin" | {{sudo}} podman exec -i "$name" tee "$dropin" >/dev/null
    {{sudo}} cat "$ca" | {{sudo}} podman exec -i "$name" tee "$ca" >/dev/null
    "${run[@]}" bash {{stage}}/build.sh
    "${run[@]}" bash {{stage}}/build-broken.sh
    "${run[@]}" bash {{stage}}/build-gator.sh {{stage}}/fake-gator
    "${run[@]}" {{stage}}/cleanup.sh
    # The tests that drive the engine API (issue 15): what differs between engine
    # versions. The agent end to end, ssh, terminal escaping and most devcontainer.json
    # cases exercise devaipod, not the engine, and run on the 4.3 legs.
    "${run[@]}" {{stage}}/podman-tests --test-threads=2 engine:: pod:: secrets:: security:: network:: gator:: jobs:: inert_git:: build:: registry:: devcontainer::forwarded_ports devcontainer::run_args
    "${run[@]}" {{stage}}/cleanup.sh --check
    echo "test-podman5: done in $(( $(date +%s) - started ))s"

# Real-Podman tests against Podman 5.4 nested as in test-podman5, rootless (pasta), as
# the image's user dvp-ci in a container of its own, on the tests that drive the engine
# API (up, list, status, stop, start, delete, rollback, hardening, secrets, a port)
# Rootless Podman 5.4 tests (a subset): `just stage=/tmp/mine test-podman5-rootless` (root or sudo)
test-podman5-rootless: _stage fake-internet
    #!/usr/bin/env bash
    set -euo pipefail
    started=$(date +%s)
    {{sudo}} containers/base/build.sh --tar-only
    image=$({{sudo}} tests/images/build-podman5.sh)
    key=${image##*:}
    # The rootless user of the image (tests/images/build-podman5.sh) and its store: a
    # volume of its own (not test-podman5's, which only root's Podman uses), kept between
    # runs, replaced when the key changes. On a volume (ext4 here) rootless overlay is
    # native; on the container's own overlay root it would need fuse-overlayfs.
    user=dvp-ci
    store=devaipod-p5r-store-$key
    for v in $({{sudo}} podman volume ls -q --filter name=^devaipod-p5r-store-); do
        [ "$v" = "$store" ] || {{sudo}} podman volume rm -f "$v" >/dev/null
    done
    name=devaipod-p5r-$$
    trap '{{sudo}} podman rm -f -t 0 "$name" >/dev/null 2>&1 || true' EXIT
    # No devaipod.test or io.devaipod.* label: the host's cleanup leaves it alone.
    {{sudo}} podman run -d --quiet --name "$name" --privileged --cgroupns=host --init \
        --tmpfs /run:rw,exec,mode=0755 --tmpfs /tmp:rw,exec,mode=1777 \
        -v "$store:/home/$user/.local/share/containers" -v {{stage}}:{{stage}}:ro \
        -v /var/cache/devaipod:/var/cache/devaipod:ro -v /run/dvpt-inet:/run/dvpt-inet \
        -e PODMAN_IGNORE_CGROUPSV1_WARNING=1 "$image" sleep infinity >/dev/null
    root=({{sudo}} podman exec "$name")
    uid=$("${root[@]}" id -u "$user")
    # As root inside the container (its own /dev and mount namespace; the host's stay
    # as they are): pasta opens /dev/net/tun, 0600 on a fresh machine ("Failed to open()
    # /dev/net/tun: Permission denied"); a shared / as on a systemd host (else every new
    # rootless session warns that "/" is not a shared mount); the store's mount point and
    # the runtime directory the user's; the ulimits drop-in of test-podman5.
    "${root[@]}" bash -c "set -e
        chmod 0666 /dev/net/tun
        mount --make-rshared /
        chown $user: /home/$user/.local /home/$user/.local/share /home/$user/.local/share/containers
        install -d -m 0700 -o $user -g $user /run/user/$uid
        mkdir -p /etc/containers/containers.conf.d
        printf '[containers]\ndefault_ulimits = [\"nofile=%s:%s\", \"nproc=%s:%s\"]\n' \$(ulimit -Hn) \$(ulimit -Hn) \$(ulimit -Hu) \$(ulimit -Hu) >/etc/containers/containers.conf.d/ulimits.conf"
    run=({{sudo}} podman exec -u "$user" -w /tmp -e HOME="/home/$user" -e USER="$user"
         -e XDG_RUNTIME_DIR="/run/user/$uid" -e DEVAIPOD_BIN={{stage}}/devaipod
         -e DEVAIPOD_FAKE_LLM={{stage}}/fake-llm -e DEVAIPOD_IMAGE_CACHE=/var/cache/devaipod "$name")
    "${run[@]}" podman version
    "${run[@]}" podman info --format 'rootless={{{{.Host.Security.Rootless}} network={{{{.Host.NetworkBackend}}/{{{{.Host.RootlessNetworkCmd}} storage={{{{.Store.GraphDriverName}} native-overlay={{{{index .Store.GraphStatus "Native Overlay Diff"}} cgroups={{{{.Host.CgroupsVersion}}'
    "${run[@]}" bash {{stage}}/build.sh
    "${run[@]}" bash {{stage}}/build-broken.sh
    "${run[@]}" bash {{stage}}/build-gator.sh {{stage}}/fake-gator
    "${run[@]}" {{stage}}/cleanup.sh
    "${run[@]}" {{stage}}/podman-tests --test-threads=2 engine:: pod:: security:: secrets:: network:: devcontainer::forwarded_ports
    "${run[@]}" {{stage}}/cleanup.sh --check
    echo "test-podman5-rootless: done in $(( $(date +%s) - started ))s"

# The network tests' offline fake internet, as root: kept when up (tests/net/fake-internet.sh down removes it)
fake-internet:
    cargo build --release --quiet --manifest-path tests/fake-llm/Cargo.toml --target-dir target/fake-llm
    {{sudo}} tests/net/fake-internet.sh up

# A 127.0.0.1:5701 plain HTTP, B 127.0.0.1:5702 TLS and a password, both holding root's base
# image; Podman configured for them for root and the rootless test user (yourself when not
# root). Kept when up; tests/registry/registry.sh down removes everything it added.
# The registry tests' two OCI registries on loopback, as root
registry:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ "$(id -u)" = 0 ]; then
        user={{test_user}}
        id "$user" >/dev/null 2>&1 || useradd -m -s /bin/bash "$user"
    else
        user=$(id -un)
    fi
    # What it pushes: root's base image (imported from the cached rootfs when missing),
    # and the stand-in for Debian's image that containers/base/Containerfile builds on.
    {{sudo}} containers/base/build.sh
    debian=$({{sudo}} tests/images/build-debian.sh)
    {{sudo}} env DVPT_DEBIAN_TAR="$debian" tests/registry/registry.sh up "$user"

# Copy the binaries and scripts the Podman tests need where any user can read them
_stage:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build
    just net
    # The scripted LLM of the agent end-to-end test (tests/fake-llm, std only).
    cargo build --release --quiet --manifest-path tests/fake-llm/Cargo.toml --target-dir target/fake-llm
    # The test executables, from cargo's JSON messages (the podman and toolbox tiers are
    # test = false targets: selected by name, never by a plain `cargo test`).
    test_exe() {
        # The test harness's artifact only (its profile has "test":true): devaipod's own
        # binary, built for CARGO_BIN_EXE_devaipod, is listed too, before or after it.
        cargo test --test "$1" --no-run --message-format=json-render-diagnostics |
            grep -E '"profile":\{[^}]*"test":true' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1
    }
    exe=$(test_exe podman)
    [ -n "$exe" ] || { echo "could not find the podman test executable (cargo test --test podman --no-run)" >&2; exit 1; }
    tb=$(test_exe toolbox)
    [ -n "$tb" ] || { echo "could not find the toolbox test executable (cargo test --test toolbox --no-run)" >&2; exit 1; }
    rm -rf {{stage}}; install -d -m 0755 {{stage}}
    cp target/debug/devaipod target/debug/devaipod-net {{stage}}/
    cp target/fake-llm/release/fake-llm target/fake-llm/release/fake-gator target/fake-llm/release/fake-origin {{stage}}/
    cp "$exe" {{stage}}/podman-tests
    cp "$tb" {{stage}}/toolbox-tests
    cp containers/base/build.sh containers/base/Containerfile tests/images/build-broken.sh tests/images/build-toolbox.sh \
       tests/images/build-gator.sh tests/cleanup.sh {{stage}}/
    [ -z "$CONTAINERS_CONF" ] || cp "$CONTAINERS_CONF" {{stage}}/containers.conf
    chmod -R a+rX {{stage}}

# Benchmarks against the hand-made floor; record results in docs/benchmarks.md
bench: setup image net fake-internet
    #!/usr/bin/env bash
    set -euo pipefail
    exe=$(cargo bench --bench pod --no-run 2>&1 | sed -n 's/.*Executable benches\/pod.rs (\(.*\))/\1/p' | tail -1)
    [ -n "$exe" ] || { echo "could not build the benchmark" >&2; exit 1; }
    {{sudo}} env CONTAINERS_CONF="$CONTAINERS_CONF" PATH="$PATH" DEVAIPOD_NET_BIN="$PWD/target/debug/devaipod-net" DEVAIPOD_BENCH_ROUNDS="${DEVAIPOD_BENCH_ROUNDS:-5}" "$exe"

# How many pods this machine holds, ten `up`s at a time (`just bench-scale 20`; `all`: delete --all). Not CI
bench-scale n="50" delete="names": setup image net
    #!/usr/bin/env bash
    set -euo pipefail
    exe=$(cargo bench --bench scale --no-run 2>&1 | sed -n 's/.*Executable benches\/scale.rs (\(.*\))/\1/p' | tail -1)
    [ -n "$exe" ] || { echo "could not build the benchmark" >&2; exit 1; }
    {{sudo}} env CONTAINERS_CONF="$CONTAINERS_CONF" PATH="$PATH" DEVAIPOD_NET_BIN="$PWD/target/debug/devaipod-net" \
        DEVAIPOD_BENCH_SCALE_MINUTES="${DEVAIPOD_BENCH_SCALE_MINUTES:-20}" \
        DEVAIPOD_BENCH_SCALE_RESERVE_GIB="${DEVAIPOD_BENCH_SCALE_RESERVE_GIB:-2}" "$exe" {{n}} {{delete}}
