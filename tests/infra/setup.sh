#!/usr/bin/env bash
# Prepares a fresh Debian/Ubuntu machine (as root) to run expdeploy's test suite:
# installs what is missing, idempotently. Later integration tests (Slurm, sshd, containers)
# add their packages and services here; tests start and stop the services themselves.
set -euo pipefail

need=()
command -v python3 >/dev/null || need+=(python3)
python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
command -v git >/dev/null || need+=(git)

if ((${#need[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup.sh: missing ${need[*]}; run as root or install them" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
echo "setup.sh: test prerequisites present"
