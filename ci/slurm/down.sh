#!/usr/bin/env bash
# Stop the cluster started by up.sh: cancel jobs, then slurmd's, slurmctld and munged by their
# pid files in $NBLAUNCH_SLURM_DIR. Safe when nothing is running.
set -euo pipefail

STATE=${NBLAUNCH_SLURM_DIR:-/tmp/nblaunch-slurm}
WAIT=${NBLAUNCH_SLURM_WAIT:-20}

alive() {  # alive PID NAME: a live NAME process (zombies are dead)
  local comm state
  read -r _ comm state _ 2>/dev/null <"/proc/$1/stat" && [ "$comm" = "($2)" ] && [ "$state" != Z ]
}

stop() {  # stop PIDFILE NAME: SIGTERM, wait up to $WAIT s, then SIGKILL
  local pidfile=$1 name=$2 pid
  [ -s "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  # A stale pid file whose pid now belongs to something else is just removed.
  if alive "$pid" "$name"; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + WAIT))
    while alive "$pid" "$name" && ((SECONDS < deadline)); do sleep 0.2; done
    if alive "$pid" "$name"; then
      echo "down.sh: $name ($pid) ignored SIGTERM for ${WAIT}s, sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 5))
      while alive "$pid" "$name" && ((SECONDS < deadline)); do sleep 0.1; done
    fi
  fi
  rm -f "$pidfile"
}

# Jobs' slurmstepd's outlive slurmd, so cancel jobs while the controller still answers.
if [ -s "$STATE/slurmctld.pid" ] && timeout 15 scontrol ping 2>/dev/null | grep -q 'is UP'; then
  jobs=$(timeout 15 squeue -h -o %i 2>/dev/null || true)
  if [ -n "$jobs" ]; then
    # shellcheck disable=SC2086
    timeout 15 scancel $jobs || true
    deadline=$((SECONDS + WAIT))
    while [ -n "$(timeout 15 squeue -h -t all -o '%i %t' 2>/dev/null | grep -Ev ' (CD|CA|F|TO|NF|PR|OOM|BF|DL)$' || true)" ] &&
      ((SECONDS < deadline)); do sleep 0.5; done
  fi
fi

for f in "$STATE"/slurmd-*.pid; do stop "$f" slurmd; done
stop "$STATE/slurmctld.pid" slurmctld
stop "$STATE/munge/munged.pid" munged
echo "nblaunch slurm down"
