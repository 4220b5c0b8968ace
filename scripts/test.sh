#!/usr/bin/env bash
# Runs every shifter test on a fresh machine: installs the external programs the tests need,
# then checks formatting and lints and runs the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/install-test-tools.sh
export PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --no-fail-fast --exclude shifter-tests
# The end-to-end suite runs real API server, controller and proxy processes under load; one test at
# a time keeps timing-sensitive rollouts from starving each other on a two-core machine.
cargo test -p shifter-tests --no-fail-fast -- --test-threads=1
