#!/usr/bin/env bash
# FVDM on SkyTimelapse (Latte-XL/2). One node: GPUS=2 bash train_scripts/sky_train.sh [key=value ...]
# Several nodes: run this on each with NNODES, NODE_RANK, MASTER_ADDR (and MASTER_PORT) set.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/setup_env.sh  # the active virtual env, else ./.venv (created and filled on first use)
CONFIG=configs/sky/sky_train.yaml
GPUS=${GPUS:-2}
exec python -m torch.distributed.run --nnodes "${NNODES:-1}" --node_rank "${NODE_RANK:-0}" --nproc_per_node "$GPUS" \
    --master_addr "${MASTER_ADDR:-127.0.0.1}" --master_port "${MASTER_PORT:-29500}" \
    train_video.py --config "$CONFIG" "$@"
