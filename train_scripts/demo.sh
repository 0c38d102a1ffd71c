#!/usr/bin/env bash
# The main job on the built-in data, on a CPU, at 64 px through the real latent path: set up, train the demo's
# autoencoder (configs/demo/demo_autoencoder.yaml), encode the training clips to latents once, train the demo FVDM
# on them (configs/demo/demo_train.yaml) and sample every VTV preset through the decoder, then check the objects
# of 32 decoded standard samples against held-out clips.
# TASKS=1 also scores image-to-video, interpolation, next-frame prediction and long video against the true
# trajectories of held-out clips (2-3 more minutes; left out of the 15-minute budget on AVX2).
# FVD=1 also measures FVD against held-out clips (several more minutes: I3D). T2V=1 also trains the text-to-video
# demo on captioned clips (configs/t2v/) and scores how it follows its prompts (about 15 more minutes on 2 cores).
#   bash train_scripts/demo.sh [key=value ...]      # overrides go to the FVDM trainer, e.g. max_train_steps=200
#   TASKS=1 bash train_scripts/demo.sh
#   FVD=1 bash train_scripts/demo.sh
#   T2V=1 bash train_scripts/demo.sh
# A rerun reuses every finished stage (a killed one resumes) and rewrites the samples; a retrained autoencoder
# makes the latents and the FVDM start again.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${T2V:-0}" != 1 ] && [ "${FVD:-0}" != 1 ]; then
    FVDM_SETUP="${FVDM_SETUP:-core}"  # no text encoder, FID/FVD weights, app or tests: requirements.txt only
fi
source tools/setup_env.sh

AUTOENCODER_DIR=results/demo_autoencoder
LATENTS_DIR=results/demo_latents
RUN_DIR=results/demo
SAMPLES=samples/demo
FVD_DIR=$RUN_DIR/fvd
OBJECTS_DIR=$RUN_DIR/objects
TASKS_DIR=$RUN_DIR/tasks
NUM_FVD=${NUM_FVD:-64}   # videos per side; FVD on so few is biased upwards, so compare it with the real floor below
config_value() {  # a key of the demo's training config
    python -c "from omegaconf import OmegaConf; print(OmegaConf.load('configs/demo/demo_train.yaml').$1)"
}

echo "== 1/4 autoencoder (log: $AUTOENCODER_DIR/log.txt, input over reconstruction: $AUTOENCODER_DIR/preview/)"
python tools/train_autoencoder.py --config configs/demo/demo_autoencoder.yaml
if [ -f "$LATENTS_DIR/meta.json" ] && [ "$AUTOENCODER_DIR/vae/config.json" -nt "$LATENTS_DIR/meta.json" ]; then
    echo "the autoencoder is newer than its latents: encoding again, and training the FVDM afresh"
    rm -rf "$LATENTS_DIR" "$RUN_DIR"
fi

echo "== 2/4 encode the training clips to latents once ($LATENTS_DIR)"
python tools/encode_latents.py --config configs/demo/demo_train.yaml --out "$LATENTS_DIR" --batch-size 32 \
    --num-workers 0 --mixed-precision auto

echo "== 3/4 train the FVDM on the latents (log: $RUN_DIR/log.txt, curves: metrics.jsonl, previews: preview/)"
python train_video.py --config configs/demo/demo_train.yaml "$@"

echo "== 4/4 sample every VTV preset into $SAMPLES/<preset>/"
python sample/generate.py --config configs/demo/demo_sample.yaml preset=all

echo "samples: $SAMPLES/<preset>/<video>/ (video.mp4, video.gif, contact_sheet.png, schedule.png, frames/)"

echo "== object check: do 32 standard samples show one object with the shape, colour and motion of held-out clips?"
echo "   (and held-out clips through the autoencoder: the most a model decoded by it can score)"
rm -rf "$OBJECTS_DIR"
python sample/sample_ddp.py --config configs/demo/demo_sample.yaml num_samples=32 batch_size=32 seed=1000 \
    eval_dir="$OBJECTS_DIR/generated"
python tools/object_metrics.py --fake "$OBJECTS_DIR/generated" --frame_interval "$(config_value frame_interval)" \
    --vae "$AUTOENCODER_DIR/vae" --out "$OBJECTS_DIR/objects.json"
if [ "${TASKS:-0}" = 1 ]; then
    echo "== conditioned tasks on 32 held-out clips, against their true trajectories (contact sheets: $TASKS_DIR/)"
    python tools/object_tasks.py --config configs/demo/demo_sample.yaml --num_videos 32 \
        --frame_interval "$(config_value frame_interval)" --out_dir "$TASKS_DIR" progress=false
fi
if [ "${T2V:-0}" = 1 ]; then
    echo "== text-to-video: encode the captioned clips, train the demo T2V model, score its prompt following"
    python tools/encode_latents.py --config configs/t2v/demo_t2v_train.yaml --out results/demo_t2v_latents \
        --batch-size 32 --num-workers 0 --mixed-precision auto
    python train_video.py --config configs/t2v/demo_t2v_train.yaml
    python tools/text_following.py --config configs/t2v/demo_t2v_sample.yaml --out_dir results/demo_t2v/text \
        batch_size=32
    bash sample/t2v.sh preset=long length=24 \
        'prompt_schedule={0: "a red circle moving right", 12: "a blue square moving down"}'
fi
if [ "${FVD:-0}" != 1 ]; then
    echo "done. autoencoder: $AUTOENCODER_DIR (reconstruction.json); FVDM run: $RUN_DIR (previews: preview/," \
        "object check: objects/objects.json, tasks with TASKS=1: tasks/tasks.json). FVD=1 bash $0 adds the FVD of the" \
        "samples."
    exit 0
fi

echo "== FVD 1/2: 16-frame videos (the 8-frame model continued once with the long preset) and real clips"
rm -rf "$FVD_DIR"
python sample/sample_ddp.py --config configs/demo/demo_sample.yaml preset=long length=16 \
    num_samples="$NUM_FVD" batch_size=16 seed=1000 eval_dir="$FVD_DIR/generated"
for split in test train; do  # held-out clips are the reference; training clips give the real-vs-real floor
    python tools/dump_clips.py --dataset bouncing --split $split --num_clips "$NUM_FVD" --num_frames 16 \
        --frame_interval "$(config_value frame_interval)" --image_size "$(config_value image_size)" \
        --out "$FVD_DIR/real_$split"
done

echo "== FVD 2/2: I3D scores of generated vs held-out clips, then of real (train split) vs held-out clips"
for fake in generated real_train; do
    python tools/calc_metrics.py --real "$FVD_DIR/real_test" --fake "$FVD_DIR/$fake" --metrics fvd2048_16f \
        --num_real "$NUM_FVD" --num_fake "$NUM_FVD" --subsample_factor 1 --mixed_precision auto \
        --cache_dir "$FVD_DIR/cache" --out "$FVD_DIR/fvd_$fake.json"
done
echo "done. training run: $RUN_DIR   FVD: $FVD_DIR/fvd_generated.json (model), fvd_real_train.json (real-vs-real floor)"
