#!/usr/bin/env bash
# FVD of generated videos of one dataset with the reference settings of Latte/FVDM:
# fvd2048_16f, real clips at stride (subsample factor) 3 = the training frame_interval, real set
# mirrored (--mirror 1 in the released scripts), 2048 real and 2048 generated clips.
#
#   bash tools/evaluate.sh DATASET REAL_DIR FAKE_DIR [more calc_metrics.py options]
#
# DATASET and its REAL_DIR:
#   ffs     the FaceForensics training frames (root/<video>/<frame>.png)
#   sky     the SkyTimelapse training frames (sky_train/<video>/<frame>.jpg)
#   taichi  the Taichi-HD training frames (taichi-256/frames/train). Stride 3 is what FVDM's released script
#           passes; Latte's author reported using 6 for Taichi (STRIDE=6 reproduces that), and published
#           Taichi FVDs move a lot with it (see docs/evaluation.md).
#   ucf101  ALL UCF-101 videos, train and test splits together, as StyleGAN-V and DIGAN do.
#           isv2048_ucf (C3D Inception Score) is added when C3D_WEIGHTS points at StyleGAN-V's c3d_ucf101.pt.
# FAKE_DIR: the output of sample/sample_ddp.py (root/<video>/<frame>.png), at least 2048 videos.
# NPROC=N runs feature extraction on N processes with torchrun; OUT sets the JSON path.
set -euo pipefail
KNOWN="ffs sky taichi ucf101"
DATASET=${1:-}
case "$DATASET" in
    ffs | sky | taichi | ucf101) ;;
    *)
        echo "${DATASET:+unknown dataset '$DATASET'; }usage: bash $0 DATASET REAL_DIR FAKE_DIR" \
            "[calc_metrics.py options], DATASET one of: $KNOWN" >&2
        exit 2 ;;
esac
if [ $# -lt 3 ]; then
  echo "usage: bash $0 $DATASET REAL_DIR FAKE_DIR [calc_metrics.py options]" >&2
  exit 2
fi
REAL_DIR=$(realpath "$2")
FAKE_DIR=$(realpath "$3")
shift 3
cd "$(dirname "$0")/.."
source tools/setup_env.sh  # the active virtual env, else ./.venv (created and filled on first use)
OUT=${OUT:-results/metrics_${DATASET}_$(basename "$FAKE_DIR").json}
METRICS=fvd2048_16f
SUBSAMPLE=3
EXTRA=()
case "$DATASET" in
    taichi) SUBSAMPLE=${STRIDE:-3} ;;
    ucf101)
        if [ -n "${C3D_WEIGHTS:-}" ]; then
          METRICS=$METRICS,isv2048_ucf
          EXTRA=(--c3d_weights "$C3D_WEIGHTS")
        fi ;;
esac
if [ "${NPROC:-1}" -gt 1 ]; then
  LAUNCH=(python -m torch.distributed.run --standalone --nproc_per_node "$NPROC")
else
  LAUNCH=(python)
fi
"${LAUNCH[@]}" tools/calc_metrics.py --real "$REAL_DIR" --fake "$FAKE_DIR" --metrics "$METRICS" \
  --subsample_factor "$SUBSAMPLE" --mirror --seed 0 --out "$OUT" "${EXTRA[@]}" "$@"
