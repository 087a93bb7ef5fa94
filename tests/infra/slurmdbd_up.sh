#!/usr/bin/env bash
# Real accounting (sacct) for the cluster of slurm_up.sh: a private MariaDB and slurmdbd, data under $BASE.
# Run after slurm_up.sh. Idempotent. Then turns accounting on (slurm_accounting.sh on), unless called
# as `slurmdbd_up.sh --daemons-only`.
# Env knobs: BASE (as slurm_up.sh), DB_PORT (MariaDB on 127.0.0.1, default 3307; kept from an earlier run).
# The slurmdbd port is AccountingStoragePort in slurm.conf (DBD_PORT of slurm_up.sh).
set -euo pipefail
BASE=${BASE:-/tmp/expdeploy-test/slurm}
DB=$BASE/mysql
export SLURM_CONF=$BASE/etc/slurm.conf
export PATH=$PATH:/usr/sbin:/sbin
[[ -f $SLURM_CONF ]] || {
    echo "slurmdbd_up.sh: no $SLURM_CONF; run slurm_up.sh first" >&2
    exit 1
}
conf() { awk -F= -v key="$1" '$1 == key {print $2; exit}' "$2"; }
DBD_PORT=$(conf AccountingStoragePort "$SLURM_CONF")
DBD_PORT=${DBD_PORT:-6819}
[[ -f $BASE/etc/slurmdbd.conf ]] && DB_PORT=${DB_PORT:-$(conf StoragePort "$BASE"/etc/slurmdbd.conf)}
DB_PORT=${DB_PORT:-3307}

if ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmdbd mariadb-server >/dev/null
fi
source "$(dirname "$0")"/lib.sh
db() { mariadb --no-defaults --socket="$DB"/mysqld.sock "$@"; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# 1. private MariaDB (datadir and socket under $DB, TCP on 127.0.0.1:$DB_PORT only)
mkdir -p "$DB"
if [[ ! -d $DB/data/mysql ]]; then
    mkdir -p "$DB"/data
    chown -R mysql:mysql "$DB"
    mariadb-install-db --no-defaults --user=mysql --datadir="$DB"/data --skip-test-db \
        --auth-root-authentication-method=socket >"$DB"/install.log 2>&1
fi
chown -R mysql:mysql "$DB"
if ! alive "$DB"/mariadb.pid; then
    # setsid: the server must not share the caller's session (pytest, a terminal) and die with it
    setsid mariadbd --no-defaults --user=mysql --datadir="$DB"/data --socket="$DB"/mysqld.sock \
        --pid-file="$DB"/mariadb.pid --bind-address=127.0.0.1 --port="$DB_PORT" --log-error="$DB"/error.log \
        --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 </dev/null >/dev/null 2>&1 &
fi
wait_for 60 db -e 'select 1' >/dev/null 2>&1 || {
    echo "slurmdbd_up.sh: MariaDB does not answer; see $DB/error.log" >&2
    exit 1
}
db -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmpw';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"

# 2. slurmdbd (it has no -f: it reads slurmdbd.conf next to $SLURM_CONF); AuthInfo is the munge socket
cat >"$BASE"/etc/slurmdbd.conf <<EOF
AuthType=auth/munge
AuthInfo=$BASE/munge/munge.socket
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$BASE/log/slurmdbd.log
PidFile=$BASE/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=slurmpw
EOF
chmod 600 "$BASE"/etc/slurmdbd.conf
alive "$BASE"/slurmdbd.pid || slurmdbd
# it listens once its tables exist
wait_for 60 listening "$DBD_PORT" || {
    echo "slurmdbd_up.sh: slurmdbd does not listen on $DBD_PORT; see $BASE/log/slurmdbd.log" >&2
    exit 1
}

[[ ${1:-} == --daemons-only ]] || exec bash "$(dirname "$0")"/slurm_accounting.sh on
