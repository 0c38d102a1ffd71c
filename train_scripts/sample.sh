#!/usr/bin/env bash
# Sample with a VTV preset, with configs/<dataset>/<dataset>_sample.yaml:
#   bash train_scripts/sample.sh DATASET PRESET [key=value ...]
#   DATASET: demo | ffs | sky | taichi | ucf101
#   PRESET: a name in PRESETS of diffusion/vtv.py (standard, i2v, interpolation, long, ...)
#   e.g. bash train_scripts/sample.sh sky i2v image=first_frame.png
# Evaluation frame folders (FVD), split over GPUs and resumable:
#   MODE=eval GPUS=8 bash train_scripts/sample.sh sky standard num_samples=2048 eval_dir=samples/sky/fvd
set -euo pipefail
KNOWN="demo ffs sky taichi ucf101"
DATASET=${1:-}
case "$DATASET" in
    demo | ffs | sky | taichi | ucf101) ;;
    *)
        echo "${DATASET:+unknown dataset '$DATASET'; }usage: bash $0 DATASET PRESET [key=value ...]," \
            "DATASET one of: $KNOWN" >&2
        exit 2 ;;
esac
shift
cd "$(dirname "$0")/.."
source tools/setup_env.sh  # the active virtual env, else ./.venv (created and filled on first use)
CONFIG=configs/$DATASET/${DATASET}_sample.yaml
PRESET=${1:?usage: bash train_scripts/sample.sh $DATASET PRESET [key=value ...]}
shift
if [ "${MODE:-sample}" = eval ]; then
    exec python -m torch.distributed.run --nproc_per_node "${GPUS:-1}" --master_port "${MASTER_PORT:-29501}" \
        sample/sample_ddp.py --config "$CONFIG" preset="$PRESET" "$@"
fi
exec python sample/generate.py --config "$CONFIG" preset="$PRESET" "$@"
