#!/usr/bin/env bash
# medgan on a CUDA machine, in about 10 minutes: the CUDA tests, single-GPU training throughput
# (Han's DCGAN at 64 px, Beers' PGGAN at 256 px; plain fp32 eager vs the fast mode side by side),
# DDP over NCCL with the GPUs present (1 vs N processes), and peak memory (in every table).
#
#   benchmarks/gpu_check.sh [OUT_DIR]        # default OUT_DIR: gpu_check/
#
# Run from anywhere with medgan importable (pip install -e . or PYTHONPATH=src). Every table is
# printed and also written as JSON under OUT_DIR; nothing is asserted about speed (goals: DCGAN
# 64 px >= 20,000 img/s; PGGAN 256 px fast >= 3x eager), the tests assert correctness only.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu_check}
mkdir -p "$OUT"
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD/src"
NGPU=$(python -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)")
if [ "$NGPU" -lt 1 ]; then
  echo "gpu_check: no CUDA device visible" >&2
  exit 1
fi
( nvidia-smi || true ) | tee "$OUT/nvidia-smi.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
  'devices', [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])"

step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }

step "1/4 CUDA tests"   # ~1-2 min; the NCCL test needs 2 GPUs and skips with one
python -m pytest -q -m cuda tests/test_cuda.py tests/test_accel.py 2>&1 | tee "$OUT/tests.txt"

HAN_DCGAN='{"latent_dim": 100, "width": 64, "max_width": 512, "kernel_size": 4,
            "d_activation": "elu", "output_activation": "none"}'
BEERS_PGGAN='{"latent_dim": 128, "filters": {"default": 128, "256": 64, "512": 16},
              "kernel_size": 3, "mbstd_group_size": 4}'
BEERS_LOSS='{"name": "wgan_gp", "n_critic": 1, "gp_lambda": 10.0, "drift": 0.001}'

step "2/4 Han's DCGAN 64 px, one GPU: eager vs fast (+ torch.compile)"   # ~2 min
python -m medgan.bench --arch dcgan --arch-config "$HAN_DCGAN" --resolution 64 \
  --batch 64 512 2048 --steps 50 --warmup 10 --compile --json "$OUT/dcgan64.json"

step "3/4 Beers' PGGAN 256 px, one GPU: eager vs fast (+ torch.compile)"   # ~3 min
python -m medgan.bench --arch pggan --arch-config "$BEERS_PGGAN" --loss "$BEERS_LOSS" \
  --resolution 256 --channels 3 --batch 16 64 --steps 20 --warmup 5 --compile \
  --json "$OUT/pggan256.json"

step "4/4 DDP over NCCL: 1 vs $NGPU processes (global batch fixed)"   # ~2 min
if [ "$NGPU" -ge 2 ]; then
  python -m medgan.bench --processes 1 "$NGPU" --modes eager fast --arch dcgan \
    --arch-config "$HAN_DCGAN" --resolution 64 --batch 2048 --steps 50 --warmup 10 \
    --json "$OUT/ddp_dcgan64.json"
  python -m medgan.bench --processes 1 "$NGPU" --modes fast --arch pggan \
    --arch-config "$BEERS_PGGAN" --loss "$BEERS_LOSS" --resolution 256 --channels 3 \
    --batch $((16 * NGPU)) --steps 20 --warmup 5 --json "$OUT/ddp_pggan256.json"
else
  echo "one GPU: DDP over NCCL on 1 process only (the code path, no scaling)"
  python -m medgan.bench --processes 1 --modes fast --arch dcgan --arch-config "$HAN_DCGAN" \
    --resolution 64 --batch 512 --steps 20 --warmup 5 --json "$OUT/ddp_dcgan64.json"
fi
step "+ the memory-mapped reader (cold and warm, into pinned memory): 4 GB of 128 px images"
python benchmarks/loader_bench.py --gb 4 --batches 1000 --device cuda 2>&1 | tee "$OUT/loader.txt"
echo; echo "gpu_check: done; tables above, JSON in $OUT/"
