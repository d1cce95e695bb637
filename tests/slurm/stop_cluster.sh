#!/usr/bin/env bash
# Stop the cluster that start_cluster.sh started in $MEDGAN_SLURM_DIR (default /tmp/medgan-slurm):
# cancel its jobs, then stop slurmd, slurmctld and munged by the pids in their pid files (SIGTERM,
# SIGKILL after 15 s). Safe to run twice or when nothing runs.
set -uo pipefail
dir="${MEDGAN_SLURM_DIR:-/tmp/medgan-slurm}"
[ -d "$dir/run" ] || exit 0
export SLURM_CONF="$dir/etc/slurm.conf"
if [ -s "$dir/run/slurmctld.pid" ] && kill -0 "$(cat "$dir/run/slurmctld.pid")" 2>/dev/null; then
  timeout 10 scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
  # let slurmd's step daemons kill the jobs' processes before slurmd goes (bounded: 30 s)
  for _ in $(seq 1 60); do
    [ -z "$(timeout 5 squeue -h -t R,CG,PD,CF -o %i 2>/dev/null)" ] && break
    sleep 0.5
  done
fi
for name in slurmd-medgan1 slurmctld munged; do
  pidfile="$dir/run/$name.pid"
  [ -s "$pidfile" ] || continue
  pid="$(cat "$pidfile")"
  kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; continue; }
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  rm -f "$pidfile"
done
# the link to our config that start_cluster.sh made at SLURM's default path
if [ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$dir/etc/slurm.conf" ]; then
  rm -f /etc/slurm/slurm.conf
fi
exit 0
