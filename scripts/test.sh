#!/usr/bin/env bash
# Runs every shifter test on a fresh machine: installs the external programs the tests need,
# then checks formatting and lints and runs the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/install-test-tools.sh
export PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --no-fail-fast
