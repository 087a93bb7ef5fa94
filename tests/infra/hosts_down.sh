#!/usr/bin/env bash
# Removes the hosts hosts_up.sh made (same BASE, N, PREFIX): every process left in their network
# namespaces (sshd, runs started there), then the namespaces, links and bridge.
source "$(dirname "$0")/lib.sh"
BASE=${BASE:?set BASE to the directory sshd_up.sh used}
N=${N:-2}
PREFIX=${PREFIX:?set PREFIX as for hosts_up.sh}
for i in $(seq 1 "$N"); do
    ns=${PREFIX}h$i
    ip netns list | grep -qw "^$ns" || continue
    pids=$(ip netns pids "$ns")
    if [[ -n $pids ]]; then
        # shellcheck disable=SC2086 # one pid per word
        kill -9 $pids 2>/dev/null
        wait_for 10 stopped $pids
    fi
    ip link del "$ns" 2>/dev/null
    ip netns del "$ns"
done
ip link del "${PREFIX}br" 2>/dev/null
sed -i "\|^Include $BASE/hosts_ssh_config|d" "$BASE/ssh_config" 2>/dev/null
true
