"""Encode a training dataset to VAE latents once, so training skips the encoder (see datasets/latent_cache.py).

    python tools/encode_latents.py --config configs/sky/sky_train.yaml --out cache/sky --clips-per-video 4 --flip
    python train_video.py --config configs/sky/sky_train.yaml latent_cache_dir=cache/sky

The dataset keys (dataset, data_path, num_frames, frame_interval, image_size, global_seed, ...) and the VAE path
come from the training config, so the cache holds exactly the clips the pixel pipeline would give in epochs
0..clips_per_video-1. An interrupted run resumes when started again with the same arguments.
"""
import argparse
import sys

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from datasets import batch_captions, build_config_dataset
from datasets.video_datasets import skipped_files
from datasets.latent_cache import LatentCacheWriter
from models.vae import encode_video, latent_scale_and_shift, load_vae, model_geometry
from tools.runtime import MIXED_PRECISION, autocast_dtype
from training import load_config


def encode_dataset(cfg, out_dir, clips_per_video=1, flip=False, batch_size=8, num_workers=4, dtype="float16",
                   device=None, mixed_precision="no"):
    """Fill (or finish) the cache at out_dir; returns {path: reason} of the videos the dataset skipped."""
    if cfg.vae is None:
        raise ValueError("config key 'vae' is null: a latent cache needs the local VAE path")
    if clips_per_video < 1:
        raise ValueError(f"clips_per_video must be >= 1, got {clips_per_video}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    # Flipping is done here, in pixel space, for both orientations; the dataset itself never flips.
    dataset = build_config_dataset(cfg, random_flip=False)
    latent_channels, latent_size = model_geometry(cfg.image_size, cfg.vae)
    vae = load_vae(cfg.vae, device=device)
    scale, shift = latent_scale_and_shift(vae)
    amp_dtype = autocast_dtype(mixed_precision, device.type)
    has_captions = "captions" in dataset[0]
    if has_captions and flip:
        raise ValueError(f"dataset {cfg.dataset!r} has captions, which a flip contradicts ('left', 'right'): "
                         "encode it without --flip")
    meta = {
        "dataset": cfg.dataset, "data_path": cfg.data_path, "split": cfg.split, "split_file": cfg.split_file,
        "class_index_file": cfg.class_index_file, "dataset_length": cfg.dataset_length,
        "num_frames": cfg.num_frames, "frame_interval": cfg.frame_interval, "image_size": cfg.image_size,
        "seed": cfg.global_seed, "num_classes": getattr(dataset, "num_classes", 0), "num_items": len(dataset),
        "clips_per_video": clips_per_video, "orientations": 2 if flip else 1,
        "latent_shape": [cfg.num_frames, latent_channels, latent_size, latent_size], "dtype": dtype,
        "vae": cfg.vae, "latent_scale": scale, "latent_shift": shift, "encoding": "posterior mean",
        "autocast": str(amp_dtype).removeprefix("torch.") if amp_dtype is not None else None,
        **({"captions": True} if has_captions else {}),
    }
    writer = LatentCacheWriter(out_dir, meta)
    skipped = {}
    for clip in range(clips_per_video):
        pending = writer.pending(clip)
        if not pending:
            continue
        dataset.set_epoch(clip)  # epoch c of the pixel pipeline = cached clip c
        loader = DataLoader(dataset, batch_size=batch_size, sampler=pending, num_workers=num_workers,
                            pin_memory=device.type == "cuda")
        for batch in tqdm(loader, desc=f"clip {clip + 1}/{clips_per_video}", dynamic_ncols=True):
            video = batch["video"].to(device)  # (B, N, 3, H, W)
            orientations = [video, video.flip(-1)] if flip else [video]
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                latents = torch.stack([encode_video(vae, v, chunk_size=cfg.vae_chunk_size) for v in orientations], 1)
            captions = batch_captions(batch) if has_captions else None  # B lists of N
            writer.write(batch["index"].numpy(), clip, latents, batch["label"], captions)  # latents (B, O, N, C, h, w)
            skipped.update(skipped_files(batch))
    return skipped


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="training config (dataset keys and vae path)")
    parser.add_argument("--out", required=True, help="cache folder (created, or resumed if it exists)")
    parser.add_argument("--clips-per-video", type=int, default=1,
                        help="clips per video, each from a different epoch's random start frame")
    parser.add_argument("--flip", action="store_true", help="also cache horizontally flipped clips (random_flip)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=4)
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16",
                        help="storage dtype; float16 halves the disk use (relative rounding ~5e-4)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--mixed-precision", choices=MIXED_PRECISION, default="no",
                        help="autocast of the encoder: bf16 about doubles the speed on a CPU with native bf16 "
                             "(latents then differ from fp32 ones by bf16 rounding, ~0.4%%); auto: bf16 where native")
    parser.add_argument("overrides", nargs="*", help="config key=value overrides, e.g. data_path=/data/sky")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    skipped = encode_dataset(cfg, args.out, args.clips_per_video, args.flip, args.batch_size,
                             args.num_workers, args.dtype, args.device, args.mixed_precision)
    for path, reason in skipped.items():
        print(f"warning: skipped {path}: {reason}", file=sys.stderr)
    if skipped:
        print(f"warning: {len(skipped)} unreadable or too-short video(s) were skipped; their clips came from other "
              "videos", file=sys.stderr)
    print(f"done; train with: latent_cache_dir={args.out}")


if __name__ == "__main__":
    main()
