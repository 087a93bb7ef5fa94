#!/usr/bin/env bash
# Stop what slurm_up.sh / slurmdbd_up.sh started under $BASE: cancel the cluster's jobs, then end the
# daemons named in $BASE's pid files (nothing else). Idempotent. PURGE=1 also deletes $BASE.
set -uo pipefail
BASE=${BASE:-/tmp/expdeploy-test/slurm}
export SLURM_CONF=$BASE/etc/slurm.conf
export PATH=$PATH:/usr/sbin:/sbin

source "$(dirname "$0")"/lib.sh
no_jobs() { [[ -z $(squeue -h -o %i 2>/dev/null) ]]; }
stop() { # pid files: TERM all at once (each daemon takes about 2 s to exit), KILL after 15 s
    local file pids=()
    for file; do
        alive "$file" && pids+=("$(cat "$file")")
    done
    if ((${#pids[@]})); then
        kill "${pids[@]}" 2>/dev/null
        wait_for 15 stopped "${pids[@]}" || {
            echo "slurm_down.sh: ${pids[*]} still alive, sending KILL" >&2
            kill -9 "${pids[@]}" 2>/dev/null
        }
    fi
    rm -f "$@"
}

# Jobs outlive slurmd (slurmstepd is on its own): cancel them while the controller can still do it.
if alive "$BASE"/slurmctld.pid && [[ -f $SLURM_CONF ]]; then
    jobs=$(squeue -h -o %F 2>/dev/null | sort -u)
    if [[ -n $jobs ]]; then
        # shellcheck disable=SC2086
        scancel $jobs 2>/dev/null
        wait_for 15 no_jobs
    fi
fi

stop "$BASE"/slurmd.pid "$BASE"/slurmctld.pid "$BASE"/slurmdbd.pid
# the slurm daemons may still talk to munge and slurmdbd to MariaDB while they shut down
stop "$BASE"/mysql/mariadb.pid "$BASE"/munge/munged.pid
[[ ${PURGE:-0} == 1 ]] && rm -rf "$BASE"
true
