#!/usr/bin/env bash
# Bring up a two-node Slurm cluster (node1, node2; 4 CPUs and 2 fake GPUs each) on this host,
# without systemd. State lives in $NBLAUNCH_SLURM_DIR (default /tmp/nblaunch-slurm).
# Idempotent: if the cluster is already up and answering, it only verifies it.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${NBLAUNCH_SLURM_DIR:-/tmp/nblaunch-slurm}
WAIT=${NBLAUNCH_SLURM_WAIT:-60}
HOST=$(hostname -s)
NODES=(node1 node2)
PKGS=(slurmctld slurmd slurm-client munge)

alive() {  # alive PIDFILE NAME: PIDFILE names a live NAME process (zombies are dead)
  local pid comm state
  pid=$(cat "$1" 2>/dev/null) && read -r _ comm state _ 2>/dev/null <"/proc/$pid/stat" &&
    [ "$comm" = "($2)" ] && [ "$state" != Z ]
}

# "node1 idle" lines; a trailing * (not responding) or down/drain state never matches below.
node_states() { timeout 15 sinfo -h -N -o '%N %T' 2>/dev/null | sort -u; }

nodes_in() {  # nodes_in REGEX: true if every node's state matches REGEX
  local states; states=$(node_states) || return 1
  for n in "${NODES[@]}"; do grep -Eq "^$n ($1)\$" <<<"$states" || return 1; done
}

summary() {
  local states; states=$(node_states | tr '\n' ' ')
  echo "nblaunch slurm up: $(timeout 15 sinfo -V) cluster=nblaunch partition=debug nodes: ${states% } (4 CPUs, gpu:2 each) state=$STATE"
}

fail() {
  echo "up.sh: $*" >&2
  for f in "$STATE"/log/*.log "$STATE"/munge/*.log; do [ -f "$f" ] && { echo "--- tail $f" >&2; tail -n 20 "$f" >&2; }; done
  exit 1
}

wait_for() {  # wait_for WHAT CMD...: poll CMD until it succeeds or $WAIT s pass
  local what=$1; shift
  local deadline=$((SECONDS + WAIT))
  until "$@"; do
    ((SECONDS < deadline)) || fail "timed out after ${WAIT}s waiting for $what"
    sleep 0.5
  done
}

install_packages() {
  local missing=()
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  # Keep postinst scripts from starting daemons through invoke-rc.d; we start our own.
  local policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
    trap 'rm -f "'"$policy"'"' EXIT
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" ||
    { apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"; }
}

munge_works() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
  install -d -o munge -g munge -m 0700 /etc/munge "$STATE/munge"
  install -d -o munge -g munge -m 0755 /run/munge
  local key=/etc/munge/munge.key
  [ -s "$key" ] || dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
  chown munge:munge "$key" && chmod 0400 "$key"
  # A munged that already answers on the default socket (ours or the system's) is reused.
  munge_works && return 0
  runuser -u munge -- munged --pid-file="$STATE/munge/munged.pid" \
    --log-file="$STATE/munge/munged.log" || fail "munged failed to start"
  wait_for "munged" munge_works
}

render() { sed -e "s|@STATE@|$STATE|g" -e "s|@HOST@|$HOST|g" "$here/$1.in" >"$STATE/$1"; }
same_conf() { cmp -s "$STATE/slurm.conf" /etc/slurm/slurm.conf && cmp -s "$STATE/gres.conf" /etc/slurm/gres.conf; }

all_alive() {
  alive "$STATE/slurmctld.pid" slurmctld || return 1
  for n in "${NODES[@]}"; do alive "$STATE/slurmd-$n.pid" slurmd || return 1; done
}

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  # The Slurm tests then skip and say why; nothing else needs the cluster.
  echo "up.sh: no Slurm test cluster: starting one needs root and apt-get" >&2
  exit 0
fi

mkdir -p "$STATE"/{log,dev,ctld-state} /etc/slurm
render slurm.conf
render gres.conf
if all_alive && same_conf && munge_works && nodes_in 'idle|mixed|allocated|completing'; then
  summary; exit 0
fi

install_packages
# Anything else (half up, a daemon died, nodes not answering, config changed) is stopped and
# started afresh; down.sh cancels the jobs.
"$here/down.sh" >/dev/null

for n in "${NODES[@]}"; do
  mkdir -p "$STATE/spool/$n"
  ln -sfn /dev/null "$STATE/dev/nvidia_${n}_0"
  ln -sfn /dev/null "$STATE/dev/nvidia_${n}_1"
done
cp "$STATE/slurm.conf" "$STATE/gres.conf" /etc/slurm/

start_munge
slurmctld || fail "slurmctld failed to start"
wait_for "slurmctld" bash -c 'timeout 15 scontrol ping | grep -q "is UP"'
for n in "${NODES[@]}"; do slurmd -N "$n" || fail "slurmd -N $n failed to start"; done

# slurmctld restores DRAIN states from its saved state; resume them once the node registered.
idle_now() {
  local drained
  drained=$(timeout 15 sinfo -h -N -r -t drain -o %N 2>/dev/null | sort -u | paste -sd, -) || true
  [ -z "$drained" ] || timeout 15 scontrol update nodename="$drained" state=resume || true
  nodes_in idle
}
wait_for "both nodes idle" idle_now
summary
