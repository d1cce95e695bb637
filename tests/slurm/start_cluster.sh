#!/usr/bin/env bash
# Start a one-node SLURM cluster on 127.0.0.1 (munged, slurmctld, slurmd from Debian's
# `slurm-wlm` and `munge`) for the tests marked `slurm`; stop it with stop_cluster.sh.
#
#   tests/slurm/start_cluster.sh            # prints: export SLURM_CONF=/tmp/medgan-slurm/etc/slurm.conf
#   eval "$(tests/slurm/start_cluster.sh)"  # ... and sets it in this shell
#
# Everything lives in $MEDGAN_SLURM_DIR (default /tmp/medgan-slurm): config, munge key and socket,
# state, logs, pid files. Settings (environment): MEDGAN_SLURM_CPUS (default 6: more than a
# 2-core CI machine has, which SlurmdParameters=config_overrides allows), MEDGAN_SLURM_MEM_MB
# (32000), MEDGAN_SLURM_GPUS_ON_NODE (4 GRES gpus, stand-in device files), MEDGAN_SLURM_PORT (6817; slurmd uses the next port). Run as root (slurmd must be root
# to start jobs as their users). Waits at most 60 s for the node to become idle.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${MEDGAN_SLURM_DIR:-/tmp/medgan-slurm}"
cpus="${MEDGAN_SLURM_CPUS:-6}"
mem="${MEDGAN_SLURM_MEM_MB:-32000}"
gpus="${MEDGAN_SLURM_GPUS_ON_NODE:-4}"
port="${MEDGAN_SLURM_PORT:-6817}"
node=medgan1
host="$(hostname -s)"
conf="$dir/etc/slurm.conf"

for bin in munged slurmctld slurmd sinfo sbatch; do
  command -v "$bin" >/dev/null || {
    echo "start_cluster.sh: $bin not found; install Debian's slurm-wlm and munge" >&2; exit 1; }
done
if [ -s "$dir/run/slurmctld.pid" ] && kill -0 "$(cat "$dir/run/slurmctld.pid")" 2>/dev/null; then
  echo "start_cluster.sh: a cluster is already running in $dir (stop it with stop_cluster.sh)" >&2
  exit 1
fi

rm -rf "$dir"
mkdir -p "$dir"/{etc,state,spool,run,log,munge,dev}
chmod 755 "$dir"
chmod 700 "$dir/munge"
# the node's GPUs: stand-in device files (there is no GPU; see gres.conf.in)
for i in $(seq 0 $((gpus - 1))); do : > "$dir/dev/nvidia$i"; done

# munge: a fresh key and a private socket, so a system munged (if any) is left alone
dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$dir/munge/munge.key"
munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
  --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" \
  --seed-file="$dir/munge/munged.seed"

for f in slurm.conf gres.conf; do
  sed -e "s|@DIR@|$dir|g" -e "s|@HOST@|$host|g" -e "s|@NODE@|$node|g" \
      -e "s|@CPUS@|$cpus|g" -e "s|@GPUS@|$gpus|g" -e "s|@LAST_GPU@|$((gpus - 1))|g" -e "s|@MEM_MB@|$mem|g" -e "s|@USER@|$(id -un)|g" \
      -e "s|@CTLD_PORT@|$port|g" -e "s|@SLURMD_PORT@|$((port + 1))|g" \
      -e "s|@MAX_TIME@|1-00:00:00|g" "$here/$f.in" > "$dir/etc/$f"
done
export SLURM_CONF="$conf"
# Jobs need the config at SLURM's default path too: snakemake-executor-plugin-slurm-jobstep
# drops SLURM_CONF (with every SLURM_* variable but the job's identity) before its nested srun.
if [ ! -e /etc/slurm/slurm.conf ] && [ ! -L /etc/slurm/slurm.conf ]; then
  mkdir -p /etc/slurm && ln -s "$conf" /etc/slurm/slurm.conf
elif [ "$(readlink /etc/slurm/slurm.conf)" != "$conf" ]; then
  echo "start_cluster.sh: /etc/slurm/slurm.conf exists; the jobs' srun will read it, not $conf" >&2
fi

slurmctld -f "$conf"
slurmd -f "$conf" -N "$node"

# bounded wait for the node to be idle
state=""
for _ in $(seq 1 120); do
  state="$(sinfo -h -n "$node" -o %T 2>/dev/null | head -n1 || true)"
  case "$state" in idle*) break ;; esac
  sleep 0.5
done
case "$state" in
  idle*) ;;
  *)
    echo "start_cluster.sh: node $node is '${state:-not answering}' after 60 s; logs in $dir/log" >&2
    tail -n 20 "$dir"/log/*.log >&2 || true
    "$here/stop_cluster.sh" >&2 || true
    exit 1 ;;
esac
echo "export SLURM_CONF=$conf"
