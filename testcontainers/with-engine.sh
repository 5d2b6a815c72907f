#!/usr/bin/env bash
# Runs a command (`testcontainers/test.sh` runs each tier's through it) with the container engine the test
# bench needs, on a fresh Debian machine as root:
#   - installs docker.io and debootstrap when missing;
#   - starts dockerd when no engine answers, with no bridge and no iptables rules (every test
#     container uses the host's network, so every address stays on loopback), and stops it again
#     when the command ends: an engine that was running is left running, one that was not is not;
#   - removes containers a killed earlier run left behind (label authsession.testbench, whose
#     test process, label authsession.testbench.pid, is gone: a concurrent run's stay);
#   - builds the local images when they are missing (no registry is reachable here): the Redis
#     image (Debian 12's redis-server, redis-sentinel, redis-cli) and a stand-in for the service
#     image's distroless runtime base and the nginx image the edge tests run (Debian 12's nginx,
#     with auth_request), all from one debootstrap of Debian's packages.
# For `cargo test ...` the setup runs while the test binaries compile (`cargo test --no-run`).
# Usage: bash testcontainers/with-engine.sh cargo test --workspace
set -euo pipefail

REDIS_IMAGE="${AUTHSESSION_TEST_REDIS_IMAGE:-authsession-test/redis:bookworm}"
RUNTIME_IMAGE="${AUTHSESSION_TEST_RUNTIME_IMAGE:-authsession-local/cc-debian12:nonroot}"
NGINX_IMAGE="${AUTHSESSION_TEST_NGINX_IMAGE:-authsession-test/nginx:bookworm}"
# The images the build below makes; any other name is pulled.
LOCAL_REDIS=authsession-test/redis:bookworm
LOCAL_RUNTIME=authsession-local/cc-debian12:nonroot
LOCAL_NGINX=authsession-test/nginx:bookworm
SUITE="${DEBIAN_SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

say() { echo "with-engine: $*" >&2; }

# The pid of a dockerd this script started (a file: the setup may run in a subshell).
started=$(mktemp)
stop_engine() {
  local pid
  pid=$(cat "$started" 2>/dev/null || true)
  if [[ -n "$pid" ]]; then
    say "stopping the dockerd it started"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$started"
}
trap stop_engine EXIT

setup() {
  missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi

  if ! docker info >/dev/null 2>&1; then
    say "starting dockerd (no bridge, no iptables; log: /var/log/authsession-dockerd.log)"
    dockerd --iptables=false --ip6tables=false --bridge=none >/var/log/authsession-dockerd.log 2>&1 &
    echo $! >"$started"
    for _ in $(seq 1 150); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
    docker info >/dev/null 2>&1 || { say "dockerd did not come up:"; tail -20 /var/log/authsession-dockerd.log >&2; exit 1; }
  fi

  # Containers a killed run left behind: those whose test process is gone (another run's stay).
  leftovers=()
  while read -r id pid; do
    [[ -n "$id" ]] || continue
    if [[ -z "$pid" || ! -d "/proc/$pid" ]]; then leftovers+=("$id"); fi
  done < <(docker ps -a --filter label=authsession.testbench \
    --format '{{.ID}} {{.Label "authsession.testbench.pid"}}')
  ((${#leftovers[@]} == 0)) || docker rm -f "${leftovers[@]}" >/dev/null

  # An image named other than the local defaults (an official `redis:7`, the distroless base) is
  # pulled when missing; a missing local default is built.
  build=
  for image in "$REDIS_IMAGE" "$RUNTIME_IMAGE" "$NGINX_IMAGE"; do
    docker image inspect "$image" >/dev/null 2>&1 && continue
    case "$image" in
      "$LOCAL_REDIS" | "$LOCAL_RUNTIME" | "$LOCAL_NGINX") build=1 ;;
      *) docker pull "$image" ;;
    esac
  done

  if [[ -n "$build" ]]; then
    root=$(mktemp -d)
    base=$(mktemp -d)
    say "building $LOCAL_REDIS, $LOCAL_NGINX and $LOCAL_RUNTIME from Debian $SUITE (debootstrap, about a minute)"
    debootstrap --variant=minbase --include=redis-server,redis-sentinel,nginx-light,ca-certificates \
      "$SUITE" "$root" "$MIRROR" >/dev/null
    tar -C "$root" --exclude=./var/cache/apt --exclude=./var/lib/apt/lists \
      --exclude=./usr/share/doc --exclude=./usr/share/man -c . |
      docker import -c 'CMD ["redis-server"]' -c 'USER 64999:64999' -c 'LABEL org.opencontainers.image.description="Debian redis-server for authsession tests"' \
        - "$LOCAL_REDIS" >/dev/null
    # The same root runs nginx (the edge tests give it their configuration and a user).
    tar -C "$root" --exclude=./var/cache/apt --exclude=./var/lib/apt/lists \
      --exclude=./usr/share/doc --exclude=./usr/share/man -c . |
      docker import -c 'CMD ["nginx", "-g", "daemon off;"]' -c 'USER 64999:64999' -c 'LABEL org.opencontainers.image.description="Debian nginx for authsession tests"' \
        - "$LOCAL_NGINX" >/dev/null
    # The distroless cc base holds glibc, libgcc, CA certificates and a nonroot user; so does this.
    mkdir -p "$base"/lib/x86_64-linux-gnu "$base"/lib64 "$base"/etc/ssl/certs "$base"/tmp
    cp -L "$root"/lib/x86_64-linux-gnu/{libc.so.6,libm.so.6,libgcc_s.so.1} "$base"/lib/x86_64-linux-gnu/
    cp -L "$root"/lib64/ld-linux-x86-64.so.2 "$base"/lib64/
    cp "$root"/etc/ssl/certs/ca-certificates.crt "$base"/etc/ssl/certs/
    printf 'root:x:0:0::/root:/sbin/nologin\nnonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n' >"$base"/etc/passwd
    chmod 1777 "$base"/tmp
    tar -C "$base" -c . | docker import -c 'USER 65532:65532' - "$LOCAL_RUNTIME" >/dev/null
    rm -rf "$root" "$base"
  fi
}

if [[ "${1:-}" == cargo && "${2:-}" == test ]]; then
  # On a fresh machine the engine's setup (packages, dockerd, debootstrap) and the test build
  # take minutes each, and neither needs the other: side by side, then the tests.
  setup &
  setup_pid=$!
  built=0
  cargo test --no-run "${@:3}" || built=$?
  wait "$setup_pid" || { say "setting up the engine failed"; exit 1; }
  ((built == 0)) || exit "$built"
else
  setup
fi

"$@"
