#!/usr/bin/env bash
# Idempotent: N distinct SSH hosts on this machine for the tests, after sshd_up.sh (its client key,
# authorized_keys and ssh_config under $BASE). Host i is a network namespace ${PREFIX}h<i> with its
# own address $NET.$((10+i)) on a bridge (this machine is $NET.1), its own hostname h<i>, its own
# sshd on port 22 with its own host key, and a private mount namespace in which $SHARED_PATH is an
# empty tmpfs: the same absolute path, different contents on every host and here.
# Writes $BASE/hosts_ssh_config (aliases h1..hN), included at the top of $BASE/ssh_config, and
# the hosts' keys into $BASE/known_hosts. Stop with hosts_down.sh (same variables).
#   ssh -F $BASE/ssh_config h1 hostname
set -euo pipefail
source "$(dirname "$0")/lib.sh"
BASE=${BASE:?set BASE to the directory sshd_up.sh used}
N=${N:-2}
PREFIX=${PREFIX:?set PREFIX: a short unique name part for namespaces and links}
NET=${NET:?set NET to the first three octets of a free /24, e.g. 10.200.7}
SHARED_PATH=${SHARED_PATH:?set SHARED_PATH: the path each host sees empty}
BRIDGE=${PREFIX}br
SSHD=$(command -v sshd || echo /usr/sbin/sshd)
mkdir -p "$SHARED_PATH" /run/sshd "$BASE/hosts"

if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$NET.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
fi
for i in $(seq 1 "$N"); do
    ns=${PREFIX}h$i address=$NET.$((10 + i)) dir=$BASE/hosts/h$i
    mkdir -p "$dir"
    ip netns list | grep -qw "^$ns" || ip netns add "$ns"
    if ! ip link show "$ns" >/dev/null 2>&1; then
        ip link add "$ns" type veth peer name eth0 netns "$ns"
        ip link set "$ns" master "$BRIDGE"
        ip link set "$ns" up
        ip -n "$ns" addr add "$address/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
    fi
    [[ -f $dir/host_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -f "$dir/host_ed25519"
    cat > "$dir/sshd.conf" <<CONF
Port 22
ListenAddress $address
HostKey $dir/host_ed25519
PidFile $dir/sshd.pid
ClientAliveInterval 2
ClientAliveCountMax 3
$(sshd_options "$BASE")
CONF
    if ! alive "$dir/sshd.pid"; then
        ip netns exec "$ns" unshare --mount --uts --propagation private sh -c "
            hostname h$i
            mount -t tmpfs -o size=1g,mode=755 tmpfs-$ns '$SHARED_PATH'
            echo h$i > '$SHARED_PATH/WHOAMI'
            exec $SSHD -f '$dir/sshd.conf' -E '$dir/sshd.log'"
    fi
    echo "$address $(cut -d' ' -f1,2 "$dir/host_ed25519.pub")"
done > "$BASE/known_hosts.hosts"
cat "$BASE"/known_hosts.* > "$BASE/known_hosts"

for i in $(seq 1 "$N"); do
    printf 'Host h%s\n  HostName %s\n  User root\n' "$i" "$NET.$((10 + i))"
done > "$BASE/hosts_ssh_config"
grep -q "^Include $BASE/hosts_ssh_config" "$BASE/ssh_config" ||
    sed -i "1i Include $BASE/hosts_ssh_config" "$BASE/ssh_config"
for i in $(seq 1 "$N"); do
    wait_for 10 ssh -F "$BASE/ssh_config" "h$i" true 2>/dev/null
    ssh -F "$BASE/ssh_config" "h$i" "echo \$(hostname) sees \$(cat '$SHARED_PATH/WHOAMI')"
done
