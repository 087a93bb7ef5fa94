#!/usr/bin/env bash
# Prepares a fresh Debian/Ubuntu machine (as root) to run expdeploy's test suite: installs what
# is missing, idempotently. The tests start and stop the services themselves (tests/services/),
# with their state in temporary directories: Slurm (slurmctld, slurmd, munge; slurmdbd and a
# private MariaDB for sacct), sshd on loopback and in network namespaces (iproute2), a private
# dockerd and podman store (docker.io, podman, runc, busybox-static for a rootfs image), rsync, git.
set -euo pipefail

# command -> Debian package
declare -A wanted=(
    [python3]=python3 [git]=git [rsync]=rsync
    [slurmctld]=slurmctld [slurmd]=slurmd [sbatch]=slurm-client [munged]=munge
    [slurmdbd]=slurmdbd [mariadbd]=mariadb-server
    [sshd]=openssh-server [ssh]=openssh-client
    [ip]=iproute2 [unshare]=util-linux
    [dockerd]=docker.io [podman]=podman [runc]=runc [catatonit]=catatonit [busybox]=busybox-static
    [newuidmap]=uidmap
)
need=()
for command in "${!wanted[@]}"; do
    command -v "$command" >/dev/null || [[ -x /usr/sbin/$command ]] || need+=("${wanted[$command]}")
done
python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)

if ((${#need[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup.sh: missing ${need[*]}; run as root or install them" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
echo "setup.sh: test prerequisites present"
