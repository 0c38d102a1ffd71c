#!/usr/bin/env bash
# FVD of generated SkyTimelapse videos with the reference settings of Latte/FVDM:
# fvd2048_16f, real clips at stride (subsample factor) 3 = the training frame_interval, real set
# mirrored (--mirror 1 in the released scripts), 2048 real and 2048 generated clips.
#
#   bash tools/eval_metrics_sky.sh REAL_DIR FAKE_DIR [more calc_metrics.py options]
#
# REAL_DIR: the SkyTimelapse training frames (sky_train/<video>/<frame>.jpg).
# FAKE_DIR: the output of sample/sample_ddp.py (root/<video>/<frame>.png), at least 2048 videos.
# NPROC=N runs feature extraction on N processes with torchrun; OUT sets the JSON path.

set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: bash $0 REAL_DIR FAKE_DIR [calc_metrics.py options]" >&2
  exit 2
fi
REAL_DIR=$(realpath "$1")
FAKE_DIR=$(realpath "$2")
shift 2
cd "$(dirname "$0")/.."
source tools/setup_env.sh  # the active virtual env, else ./.venv (created and filled on first use)
OUT=${OUT:-results/metrics_sky_$(basename "$FAKE_DIR").json}
METRICS=fvd2048_16f
EXTRA=()
if [ "${NPROC:-1}" -gt 1 ]; then
  LAUNCH=(python -m torch.distributed.run --standalone --nproc_per_node "$NPROC")
else
  LAUNCH=(python)
fi
"${LAUNCH[@]}" tools/calc_metrics.py --real "$REAL_DIR" --fake "$FAKE_DIR" --metrics "$METRICS" \
  --subsample_factor 3 --mirror --seed 0 --out "$OUT" "${EXTRA[@]}" "$@"
