#!/usr/bin/env bash
# FVDM on one of the paper's datasets, with configs/<dataset>/<dataset>_train.yaml:
#   GPUS=2 bash train_scripts/train.sh DATASET [key=value ...]     # overrides go to the trainer
#   DATASET: ffs (FaceForensics, Latte-B/2, GPUS default 1) | sky (SkyTimelapse) | taichi (Taichi-HD)
#            | ucf101 (UCF-101, class-conditional); the last three Latte-XL/2, GPUS default 2
# Several nodes: run this on each with NNODES, NODE_RANK, MASTER_ADDR (and MASTER_PORT) set.
# The CPU demo on built-in data is its own job: train_scripts/demo.sh.
set -euo pipefail
KNOWN="ffs sky taichi ucf101"
DATASET=${1:-}
case "$DATASET" in
    ffs) DEFAULT_GPUS=1 ;;
    sky | taichi | ucf101) DEFAULT_GPUS=2 ;;
    *)
        echo "${DATASET:+unknown dataset '$DATASET'; }usage: bash $0 DATASET [key=value ...]," \
            "DATASET one of: $KNOWN" >&2
        exit 2 ;;
esac
shift
cd "$(dirname "$0")/.."
source tools/setup_env.sh  # the active virtual env, else ./.venv (created and filled on first use)
CONFIG=configs/$DATASET/${DATASET}_train.yaml
GPUS=${GPUS:-$DEFAULT_GPUS}
exec python -m torch.distributed.run --nnodes "${NNODES:-1}" --node_rank "${NODE_RANK:-0}" --nproc_per_node "$GPUS" \
    --master_addr "${MASTER_ADDR:-127.0.0.1}" --master_port "${MASTER_PORT:-29500}" \
    train_video.py --config "$CONFIG" "$@"
