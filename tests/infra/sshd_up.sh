#!/bin/bash
# Idempotent throwaway sshd on 127.0.0.1:$PORT for the tests, host key and config under $BASE.
# Key-only auth with a generated client key, for root and for $SSHUSER (default exp, created if
# missing). Writes a pinned $BASE/known_hosts and a client $BASE/ssh_config with aliases
# `local` (root) and `local-$SSHUSER`:
#   ssh -F $BASE/ssh_config local echo ok
#   rsync -e "ssh -F $BASE/ssh_config" -a src/ local:/dst/
# Needs root (a user, /run/sshd) and openssh-server; tests/infra/setup.sh installs the packages.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
BASE=${BASE:?set BASE to a directory for the sshd state}
PORT=${PORT:-2222}
LISTEN=${LISTEN:-127.0.0.1}
SSHUSER=${SSHUSER:-exp}
NAME=${NAME:-sshd_$PORT}     # pid/config file prefix (lets several instances share $BASE)
SSHD=$(command -v sshd || echo /usr/sbin/sshd)

mkdir -p "$BASE/authorized_keys"; chmod 755 "$BASE" "$BASE/authorized_keys"
mkdir -p /run/sshd; chmod 755 /run/sshd          # sshd's compiled-in privsep dir; must exist
[ -f "$BASE/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$BASE/host_ed25519"
[ -f "$BASE/id_ed25519" ]   || ssh-keygen -q -t ed25519 -N '' -f "$BASE/id_ed25519" -C expdeploy-test
id "$SSHUSER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$SSHUSER"
usermod -p '*' "$SSHUSER"          # '!' (locked) => sshd with UsePAM=no refuses even pubkey
# the same client key is authorized for root and the test user
for u in root "$SSHUSER"; do
  cp "$BASE/id_ed25519.pub" "$BASE/authorized_keys/$u"; chmod 644 "$BASE/authorized_keys/$u"
done
# the test user's own copy of the private key (so it can ssh as itself)
install -d -o "$SSHUSER" -m 700 "$BASE/user_key"
install -o "$SSHUSER" -m 600 "$BASE/id_ed25519" "$BASE/user_key/id_ed25519"

cat > "$BASE/$NAME.conf" <<CONF
Port $PORT
ListenAddress $LISTEN
HostKey $BASE/host_ed25519
PidFile $BASE/$NAME.pid
PubkeyAuthentication yes
AcceptEnv LANG LC_* EXPDEPLOY_*
LogLevel INFO
$(sshd_options "$BASE")
CONF
"$SSHD" -t -f "$BASE/$NAME.conf"
if ! { [ -f "$BASE/$NAME.pid" ] && kill -0 "$(cat "$BASE/$NAME.pid")" 2>/dev/null; }; then
  "$SSHD" -f "$BASE/$NAME.conf" -E "$BASE/$NAME.log"     # daemonizes, writes PidFile
fi

# client side: known_hosts pinned to the generated host key (clients verify the server)
echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$BASE/host_ed25519.pub")" > "$BASE/known_hosts.$PORT"
cat "$BASE"/known_hosts.* > "$BASE/known_hosts"; chmod 644 "$BASE/known_hosts"
cat > "$BASE/ssh_config" <<CONF
Host *
  IdentityFile $BASE/id_ed25519
  IdentitiesOnly yes
  StrictHostKeyChecking yes
  UserKnownHostsFile $BASE/known_hosts
  LogLevel ERROR
  BatchMode yes
  ConnectTimeout 5
Host local
  HostName 127.0.0.1
  Port $PORT
  User root
Host local-$SSHUSER
  HostName 127.0.0.1
  Port $PORT
  User $SSHUSER
CONF
chmod 644 "$BASE/ssh_config"
for _ in $(seq 50); do ssh -F "$BASE/ssh_config" local true 2>/dev/null && break; sleep 0.1; done
ssh -F "$BASE/ssh_config" local echo ok-root
ssh -F "$BASE/ssh_config" "local-$SSHUSER" 'echo ok-$(whoami)'
