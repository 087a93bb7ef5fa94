#!/usr/bin/env bash
# Switch the cluster of slurm_up.sh between accounting_storage/slurmdbd (on: real sacct) and
# accounting_storage/none (off: sacct fails), restarting slurmctld and slurmd only when the running
# controller uses the other plugin. Jobs survive (state is saved; running jobs keep running).
# "on" first starts MariaDB + slurmdbd (slurmdbd_up.sh --daemons-only); "off" leaves them running.
# Usage: BASE=... slurm_accounting.sh on|off
set -euo pipefail
BASE=${BASE:-/tmp/expdeploy-test/slurm}
export SLURM_CONF=$BASE/etc/slurm.conf
export PATH=$PATH:/usr/sbin:/sbin
case ${1:-} in
on) plugin=accounting_storage/slurmdbd gather=jobacct_gather/linux ;;
off) plugin=accounting_storage/none gather=jobacct_gather/none ;;
*)
    echo "usage: slurm_accounting.sh on|off" >&2
    exit 2
    ;;
esac
source "$(dirname "$0")"/lib.sh
stop() { # pid files: TERM all, then wait (each takes about 2 s to shut down)
    local file pids=()
    for file; do
        alive "$file" && pids+=("$(cat "$file")")
    done
    ((${#pids[@]})) || return 0
    kill "${pids[@]}"
    wait_for 15 stopped "${pids[@]}" || {
        echo "slurm_accounting.sh: ${pids[*]} did not stop" >&2
        return 1
    }
}
sacct_ok() { sacct -n -X -S now-1minutes >/dev/null 2>&1; }

if [[ $1 == on ]]; then
    bash "$(dirname "$0")"/slurmdbd_up.sh --daemons-only
fi
sed -i -e "s|^AccountingStorageType=.*|AccountingStorageType=$plugin|" \
    -e "s|^JobAcctGatherType=.*|JobAcctGatherType=$gather|" "$SLURM_CONF"

if [[ $1 == on ]]; then
    # sacctmgr talks to slurmdbd only once slurm.conf names it
    cluster=$(awk -F= '$1 == "ClusterName" {print $2; exit}' "$SLURM_CONF")
    wait_for 30 sacctmgr -i -n list cluster >/dev/null 2>&1
    sacctmgr -i -n list cluster format=cluster -P | grep -qx "$cluster" \
        || sacctmgr -i add cluster "$cluster" >/dev/null
fi

# AccountingStorageType needs a restart: `scontrol reconfigure` does not change it
running=
alive "$BASE"/slurmctld.pid && running=$(timeout 10 scontrol show config 2>/dev/null || true)
if ! grep -q "^AccountingStorageType *= *$plugin\$" <<<"$running"; then
    stop "$BASE"/slurmctld.pid "$BASE"/slurmd.pid
fi
# starts what is not running and waits until the node is usable
bash "$(dirname "$0")"/slurm_up.sh >/dev/null

if [[ $1 == on ]]; then
    wait_for 30 sacct_ok || {
        sacct -n -X -S now-1minutes >&2
        exit 1
    }
fi
echo "accounting $1"
