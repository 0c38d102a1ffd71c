#!/usr/bin/env bash
# Text-to-video: sample a text model with prompts, through any VTV preset (configs/t2v/demo_t2v_sample.yaml by
# default, the CPU demo's model; CONFIG=... for another).
#   bash sample/t2v.sh prompt="a red circle moving right"
#   bash sample/t2v.sh preset=i2v image=first.png prompt="a blue square moving up"
#   bash sample/t2v.sh preset=long length=24 \
#       'prompt_schedule={0: "a red circle moving right", 12: "a blue square moving up"}'
#   bash sample/t2v.sh 'prompts=[...]'      # one prompt per output frame
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/setup_env.sh
exec python sample/generate.py --config "${CONFIG:-configs/t2v/demo_t2v_sample.yaml}" "$@"
