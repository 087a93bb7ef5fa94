#!/usr/bin/env bash
# Idempotent single-node Slurm 22.05 cluster on 127.0.0.1 (slurmctld + slurmd + a private munged), all
# state, logs and pid files under $BASE. Run as root. Afterwards: export SLURM_CONF=$BASE/etc/slurm.conf
# (clients need it; the munge socket is private and named in slurm.conf).
#
# Env knobs:
#   BASE            state directory (default /tmp/expdeploy-test/slurm); keep it short (unix sockets)
#   CPUS            CPUs of the node (default 8; may exceed the real cores: SlurmdParameters=config_overrides)
#   MAX_ARRAY_SIZE  MaxArraySize (default 10: array indices 0..9)
#   MINJOBAGE       seconds finished jobs stay visible to scontrol (default 3600)
#   SLURMCTLD_PORT, SLURMD_PORT, DBD_PORT (6817, 6818, 6819): distinct values let clusters run side by side
#   REWRITE_CONF=1  rewrite slurm.conf even if present (accounting off; running daemons are not restarted)
# Accounting (sacct) starts off; slurm_accounting.sh on|off switches it, and a later slurm_up.sh keeps the
# mode slurm.conf names (starting slurmdbd first when it is on). BASE's parent directories must be
# traversable by other users (mariadbd runs as mysql, jobs of other users need slurm.conf and the munge
# socket): not under a 0700 pytest temp dir.
set -euo pipefail
BASE=${BASE:-/tmp/expdeploy-test/slurm}
CPUS=${CPUS:-8}
MAX_ARRAY_SIZE=${MAX_ARRAY_SIZE:-10}
MINJOBAGE=${MINJOBAGE:-3600}
SLURMCTLD_PORT=${SLURMCTLD_PORT:-6817}
SLURMD_PORT=${SLURMD_PORT:-6818}
DBD_PORT=${DBD_PORT:-6819}
HOST=$(hostname -s)
MUNGE=$BASE/munge
export SLURM_CONF=$BASE/etc/slurm.conf
export PATH=$PATH:/usr/sbin:/sbin

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
    || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi

source "$(dirname "$0")"/lib.sh
munge_ok() {
    munge -S "$MUNGE"/munge.socket -n 2>/dev/null | unmunge -S "$MUNGE"/munge.socket >/dev/null 2>&1
}
# start DAEMON unless running; a stale pid file goes first so that a missing one means "still starting"
start() {
    alive "$BASE/$1.pid" && return 0
    rm -f "$BASE/$1.pid"
    "$1" -f "$SLURM_CONF"
}
# wait until the node is usable ("idle*", not responding, does not count), failing once a daemon died
node_ready() {
    local end=$((SECONDS + 30)) daemon
    until [[ $(timeout 5 sinfo -h -o %T 2>/dev/null | head -1) =~ ^(idle|mixed|allocated)$ ]]; do
        for daemon in slurmctld slurmd; do
            if [[ -f $BASE/$daemon.pid ]] && ! alive "$BASE/$daemon.pid"; then
                echo "slurm_up.sh: $daemon died; from $BASE/log/$daemon.log:" >&2
                tail -n 5 "$BASE/log/$daemon.log" >&2
                return 1
            fi
        done
        if ((SECONDS >= end)); then
            echo "slurm_up.sh: node not usable after 30 s; see $BASE/log" >&2
            return 1
        fi
        sleep 0.1
    done
}

mkdir -p "$BASE"/etc "$BASE"/state "$BASE"/spool "$BASE"/log "$MUNGE"
# other users (mariadbd, clients) must traverse these; munged refuses group/other-writable ones
chmod 755 "$BASE" "$BASE"/etc "$BASE"/log "$MUNGE"

# 1. private munged: its own key and socket, so the system munge (if any) is neither needed nor touched
[[ -s $MUNGE/munge.key ]] || mungekey -c -k "$MUNGE"/munge.key
chmod 400 "$MUNGE"/munge.key
if ! alive "$MUNGE"/munged.pid; then
    rm -f "$MUNGE"/munge.socket*
    munged --socket="$MUNGE"/munge.socket --key-file="$MUNGE"/munge.key --pid-file="$MUNGE"/munged.pid \
        --log-file="$MUNGE"/munged.log --seed-file="$MUNGE"/munged.seed
fi
wait_for 10 munge_ok || {
    echo "slurm_up.sh: munged does not answer; see $MUNGE/munged.log" >&2
    exit 1
}

# 2. slurm.conf (slurm_accounting.sh edits the accounting lines in place)
MEM=$(($(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 - 512))
if [[ ! -f $SLURM_CONF || ${REWRITE_CONF:-0} == 1 ]]; then
    cat >"$SLURM_CONF" <<EOF
ClusterName=expdeploytest
SlurmctldHost=${HOST}(127.0.0.1)
SlurmctldPort=$SLURMCTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job must wait before it may start again (default 120 s)
AuthInfo=socket=$MUNGE/munge.socket,cred_expire=5
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$BASE/slurmctld.pid
SlurmdPidFile=$BASE/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobCompType=jobcomp/filetxt
JobCompLoc=$BASE/log/jobcomp.txt
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
# for slurmdbd connections the munge socket is named here, not in AuthInfo
AccountingStoragePass=$MUNGE/munge.socket
ReturnToService=2
JobRequeue=1
MinJobAge=$MINJOBAGE
MaxJobCount=100000
MaxArraySize=$MAX_ARRAY_SIZE
SchedulerType=sched/backfill
# sched_interval=1: nothing triggers a scheduling pass when a begin time passes (requeued jobs), so
# without it such a job waits for the periodic pass (60 s)
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,default_queue_depth=1000,sched_interval=1
MpiDefault=none
MailProg=/bin/true
KillWait=2
InactiveLimit=0
SlurmdParameters=config_overrides
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM} State=UNKNOWN
PartitionName=debug Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
fi

# 3. daemons (they fork; pid files under $BASE); slurmctld does not start without its slurmdbd
if grep -q '^AccountingStorageType=accounting_storage/slurmdbd' "$SLURM_CONF"; then
    bash "$(dirname "$0")"/slurmdbd_up.sh --daemons-only
fi
start slurmctld
start slurmd
node_ready
echo "export SLURM_CONF=$SLURM_CONF"
