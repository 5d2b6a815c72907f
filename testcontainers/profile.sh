#!/usr/bin/env bash
# Profiles the service under the load generator's scenario 0 (send and confirm at full speed,
# `wrk` outside the process) and the gateway under scenario 11 (signed requests through nginx),
# and draws one flamegraph per run (docs/performance.md, "Where the service's CPU goes";
# docs/gateway.md for the gateway's). Installs what it needs on Debian: wrk, linux-perf, inferno.
# Usage: bash testcontainers/profile.sh [output dir, default target/profile]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/profile}"
say() { echo "profile.sh: $*" >&2; }

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v perf >/dev/null || missing+=(linux-perf)
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v inferno-flamegraph >/dev/null || cargo install --quiet --locked inferno

# A release build with line tables, so every frame has a name (the shipped build has none).
export CARGO_PROFILE_RELEASE_DEBUG=line-tables-only
mkdir -p "$out"
# The gateway binary scenario 11 runs sits beside the loadgen.
cargo build --release --bins
bash testcontainers/with-engine.sh cargo run --release -p authsession-testbench --bin loadgen -- \
  --only-targets --duration 5 --perf-dir "$out" | tee "$out/loadgen.txt"
bash testcontainers/with-engine.sh cargo run --release -p authsession-testbench --bin loadgen -- \
  --only-edge --duration 10 --perf-dir "$out" | tee "$out/loadgen-edge.txt"

for data in "$out"/*.perf.data; do
  route=$(basename "$data" .perf.data)
  perf script -i "$data" 2>/dev/null | inferno-collapse-perf >"$out/$route.folded"
  # Frames under 0.5 % of the width left out: the picture stays a few hundred KB.
  inferno-flamegraph --minwidth 0.5 --title "$route: CPU" <"$out/$route.folded" >"$out/$route.svg"
  # The frames where the samples land (self time), the table docs/performance.md keeps.
  # (`head` closes the pipe early: not a failure.)
  { perf report -i "$data" --no-children --sort symbol --stdio 2>/dev/null |
    grep -E '^ +[0-9.]+%' | sed 's/ *$//' | head -25 >"$out/$route.top.txt"; } || true
  say "$out/$route.svg, $out/$route.top.txt, $out/$route.syscalls.txt"
done
