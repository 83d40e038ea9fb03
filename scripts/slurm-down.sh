#!/usr/bin/env bash
# Stop the single-node SLURM cluster of scripts/slurm-up.sh: cancel its jobs, then stop slurmd,
# slurmctld, slurmdbd, MariaDB and munged by the PIDs in their pid files (never by name).
# Configuration, accounting database and job state are kept, so job ids keep counting up.
set -uo pipefail

say() { echo "[slurm-down] $*"; }

# Orphaned daemons become zombies here (PID 1 does not reap them): a zombie counts as stopped.
alive() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null | tr -d ' ') || return 1
  [ -n "$st" ] && [ "${st:0:1}" != Z ]
}

stop() {  # stop NAME PIDFILE
  local name=$1 pidfile=$2 pid
  [ -s "$pidfile" ] || { say "$name: no pid file"; return 0; }
  pid=$(cat "$pidfile")
  if ! alive "$pid"; then say "$name: not running"; rm -f "$pidfile"; return 0; fi
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then
    say "$name ($pid) ignored SIGTERM for 10 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null
    sleep 0.2
  fi
  rm -f "$pidfile"
  say "$name stopped"
}

if [ -s /run/slurmctld.pid ] && alive "$(cat /run/slurmctld.pid)"; then
  jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
  if [ -n "${jobs// /}" ]; then
    say "cancelling jobs: $jobs"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null
    for _ in $(seq 1 100); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.1; done
  fi
fi

stop slurmd /run/slurmd.pid
stop slurmctld /run/slurmctld.pid
stop slurmdbd /run/slurmdbd.pid
stop mariadb /run/mysqld/mysqld.pid
stop munged /run/munge/munged.pid
exit 0
