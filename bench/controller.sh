#!/usr/bin/env bash
# Control-plane benchmark: propagation latency from an API write to 1, 100 and 1,000 connected proxy
# streams, and controller RSS with 10,000 TrafficSplits and 1,000 streams. Everything runs on
# loopback against the embedded API server; release builds.
#   bench/controller.sh            # full run (50 rounds, 10,000 splits)
#   ROUNDS=10 SPLITS=1000 bench/controller.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-test-tools.sh >/dev/null
cargo build -q --release -p shifter --bin shifter
cargo build -q --release -p shifter-tests --bin bench-controller
target=${CARGO_TARGET_DIR:-$PWD/target}
SHIFTER_BIN="$target/release/shifter" "$target/release/bench-controller"
