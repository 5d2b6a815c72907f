#!/usr/bin/env bash
# The named test tiers (README "Test tiers"), each installing what it needs on a fresh Debian
# machine (as root, nothing but Rust preinstalled) and then running its tests:
#   unit        the lib tests and the `api` binary's `unit::` tests: no engine, no Redis
#   service     `api`'s `service::` tests, each on standalone Redis containers
#   topologies  `api`'s `topologies::` tests: ACL, TLS, Sentinel, cluster, partitioned, migrations
#   full        every test of the workspace (what `.ci/run` runs)
#   torture     `full` with 20 failovers per torture test, the larger protocol bound (release
#               build) and the ignored measurements
# A second argument narrows a tier of the `api` binary: `test.sh service send::` runs
# `service::send::`.
# Usage: bash testcontainers/test.sh unit|service|topologies|full|torture [filter]
set -euo pipefail
cd "$(dirname "$0")/.."

tier="${1:-full}"
narrow="${2:-}"
say() { echo "test.sh: $*" >&2; }

apt_install() {
  say "installing $*"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# `luacheck` lints the assembled scripts (unit::lint).
need_luacheck() {
  command -v luacheck >/dev/null || apt_install lua-check
}

# The OpenAPI fuzzer from PyPI, in a venv of its own under target/ (service::fuzz).
need_schemathesis() {
  test -x target/schemathesis-venv/bin/schemathesis && return
  python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
  say "installing schemathesis into target/schemathesis-venv"
  python3 -m venv target/schemathesis-venv
  target/schemathesis-venv/bin/pip install -q 'schemathesis>=4,<5'
}

# The independent RFC 9421 and DPoP implementations the edge tests run against, from PyPI, in a
# venv of their own under target/ (service::edge_auth::interop).
need_interop() {
  test -x target/interop-venv/bin/python3 && target/interop-venv/bin/python3 -c 'import http_message_signatures, jwt' 2>/dev/null && return
  python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
  say "installing http-message-signatures and PyJWT into target/interop-venv"
  python3 -m venv target/interop-venv
  target/interop-venv/bin/pip install -q 'http-message-signatures>=3,<4' 'pyjwt[crypto]>=2.10,<3' 'requests>=2.31,<3'
}

engine() { bash testcontainers/with-engine.sh "$@"; }

case "$tier" in
  unit)
    need_luacheck
    cargo test --workspace --lib
    cargo test --test api -- "unit::$narrow"
    ;;
  service)
    need_schemathesis
    need_interop
    engine cargo test --test api -- "service::$narrow"
    ;;
  topologies)
    engine cargo test --test api -- "topologies::$narrow"
    ;;
  full)
    need_luacheck
    need_schemathesis
    need_interop
    engine cargo test --workspace
    ;;
  torture)
    need_luacheck
    need_schemathesis
    need_interop
    TORTURE_FAILOVERS="${TORTURE_FAILOVERS:-20}" engine cargo test --workspace -- --include-ignored
    AUTHSESSION_PROTOCOL_BOUND=large cargo test --release --test api -- \
      unit::protocol::every_property_holds_in_the_larger_bound_when_asked --nocapture
    ;;
  *)
    say "no tier '$tier': unit, service, topologies, full or torture"
    exit 2
    ;;
esac
