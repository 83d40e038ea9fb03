#!/usr/bin/env bash
# Bring up a single-node SLURM cluster (slurm 22.05 + accounting) on this Debian 12 machine.
#
# For tests and CI: run as root on a machine (or container) without systemd. Installs the
# packages if missing, writes /etc/slurm/{slurm,slurmdbd}.conf, and starts munged, MariaDB
# (socket only), slurmdbd, slurmctld and slurmd; ends with a job whose completion must show up
# in sacct (submitit reads job states through it). Safe to run twice: a cluster that is already
# up is left as it is. `scripts/slurm-down.sh` stops it.
#
# Environment: KDFAIR_SLURM_PARTITION (default "debug"), KDFAIR_SLURM_CLUSTER (default "kdfair").
set -euo pipefail

PARTITION=${KDFAIR_SLURM_PARTITION:-debug}
CLUSTER=${KDFAIR_SLURM_CLUSTER:-kdfair}
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
LOGDIR=/var/log/slurm
STATEDIR=/var/lib/slurm
T0=$(date +%s)

say() { echo "[slurm-up +$(($(date +%s) - T0))s] $*"; }
die() {
  say "ERROR: $*"
  for f in "$LOGDIR"/slurmdbd.log "$LOGDIR"/slurmctld.log "$LOGDIR"/slurmd.log "$LOGDIR"/mariadb.log; do
    [ -s "$f" ] && { echo "--- last lines of $f"; tail -n 15 "$f"; }
  done
  exit 1
}

# Daemons orphaned here become zombies (PID 1 does not reap them), so `kill -0` would call a
# dead daemon alive: read the process state instead.
alive() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null | tr -d ' ') || return 1
  [ -n "$st" ] && [ "${st:0:1}" != Z ]
}
pidfile_alive() { [ -s "$1" ] && alive "$(cat "$1")"; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.2 s until it succeeds.
wait_for() {
  local limit=$1 what=$2 end=$(($(date +%s) + $1))
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || die "$what: not ready after ${limit}s"
    sleep 0.2
  done
}

[ "$(id -u)" -eq 0 ] || { echo "slurm-up.sh must run as root" >&2; exit 1; }

# --- packages ----------------------------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
      >/tmp/slurm-up-apt.log 2>&1
  }
  install || { apt-get update -qq >>/tmp/slurm-up-apt.log 2>&1 && install; } \
    || { tail -n 20 /tmp/slurm-up-apt.log; die "apt-get install failed (log: /tmp/slurm-up-apt.log)"; }
fi

if pidfile_alive /run/slurmctld.pid && pidfile_alive /run/slurmd.pid \
  && sinfo -h -p "$PARTITION" -o %a 2>/dev/null | grep -q up; then
  say "already up: partition $PARTITION"
  sinfo
  exit 0
fi

mkdir -p "$LOGDIR" "$STATEDIR"/slurmctld "$STATEDIR"/slurmd /run/munge /var/log/munge /var/lib/munge /run/mysqld
chown munge:munge /run/munge /var/log/munge /var/lib/munge
chown mysql:mysql /run/mysqld

# --- munge -------------------------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
fi
if ! pidfile_alive /run/munge/munged.pid; then
  rm -f /run/munge/munged.pid /run/munge/munge.socket.2*
  runuser -u munge -- /usr/sbin/munged
fi
wait_for 20 munged bash -c 'munge -n | unmunge'
say "munged up"

# --- MariaDB (no network: slurmdbd talks to it over its socket, as root) ------------------------
if ! pidfile_alive /run/mysqld/mysqld.pid; then
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql \
    >"$LOGDIR"/mariadb-install.log 2>&1
  setsid /usr/sbin/mariadbd --user=mysql --skip-networking --socket=/run/mysqld/mysqld.sock \
    --pid-file=/run/mysqld/mysqld.pid --log-error="$LOGDIR"/mariadb.log \
    --innodb-lock-wait-timeout=900 </dev/null >/dev/null 2>&1 &
fi
wait_for 60 "MariaDB" mariadb -e "SELECT 1"
mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db"
say "MariaDB up"

# --- configuration -----------------------------------------------------------------------------
HOST=$(hostname -s)
NODE=$(slurmd -C | head -n 1)
[[ "$NODE" == NodeName=* ]] || die "slurmd -C did not describe this node: $NODE"

cat >/etc/slurm/slurmdbd.conf <<EOF
# written by kdfair scripts/slurm-up.sh
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
PidFile=/run/slurmdbd.pid
LogFile=$LOGDIR/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
EOF
chmod 600 /etc/slurm/slurmdbd.conf

cat >/etc/slurm/slurm.conf <<EOF
# written by kdfair scripts/slurm-up.sh: a single-node cluster for tests
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
AuthType=auth/munge
SlurmUser=root
StateSaveLocation=$STATEDIR/slurmctld
SlurmdSpoolDir=$STATEDIR/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
KillWait=5
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
MailProg=/bin/true
$NODE NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

# --- slurmdbd, then (only once it answers) slurmctld and slurmd --------------------------------
port_open() { (exec 3<>/dev/tcp/127.0.0.1/6819) 2>/dev/null; }
if ! pidfile_alive /run/slurmdbd.pid; then
  slurmdbd
fi
wait_for 60 "slurmdbd (port 6819)" port_open
say "slurmdbd up"
sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true

pidfile_alive /run/slurmctld.pid || slurmctld
wait_for 60 slurmctld scontrol ping
pidfile_alive /run/slurmd.pid || slurmd
node_ready() { sinfo -h -N -p "$PARTITION" -o %T | grep -Eq '^(idle|mixed|allocated)'; }
wait_for 60 "node $HOST in partition $PARTITION" node_ready
say "slurmctld and slurmd up"

# --- a job, end to end: scheduled, run, and recorded by accounting ------------------------------
jid=$(sbatch --parsable -p "$PARTITION" -t 1 -o /dev/null --wrap true) || die "sbatch failed"
acct_done() { sacct -n -X -P -j "$jid" -o State | grep -q COMPLETED; }
wait_for 60 "job $jid in sacct" acct_done
say "ready: partition $PARTITION, job $jid COMPLETED in sacct"
sinfo
