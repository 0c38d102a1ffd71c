#!/usr/bin/env bash
# Sample with a VTV preset: bash sample/ffs_sample.sh PRESET [key=value ...]
#   PRESET: standard | i2v | interpolation | transition | next_frame | progressive | custom | long | diagonal
#   e.g. bash sample/ffs_sample.sh i2v image=first_frame.png
# Evaluation frame folders (FVD), split over GPUs and resumable:
#   MODE=eval GPUS=8 bash sample/ffs_sample.sh standard num_samples=2048 eval_dir=samples/ffs/fvd
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/setup_env.sh  # the active virtual env, else ./.venv (created and filled on first use)
CONFIG=configs/ffs/ffs_sample.yaml
PRESET=${1:?usage: bash sample/ffs_sample.sh PRESET [key=value ...]}
shift
if [ "${MODE:-sample}" = eval ]; then
    exec python -m torch.distributed.run --nproc_per_node "${GPUS:-1}" --master_port "${MASTER_PORT:-29501}" \
        sample/sample_ddp.py --config "$CONFIG" preset="$PRESET" "$@"
fi
exec python sample/sample.py --config "$CONFIG" preset="$PRESET" "$@"
