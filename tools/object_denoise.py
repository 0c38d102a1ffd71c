"""How far into the noise does a bouncing-shapes model still find the object? A reading of where its training falls
short, with less spread than scoring generated videos.

    python tools/object_denoise.py --config configs/demo/demo_sample.yaml --levels 100,300,500,999 [key=value ...]

Held-out clips (the bouncing test split) are taken into the model's space (through the autoencoder of a latent
model), noised to level L of the training chain, denoised from there with the config's sampler (sample_method,
eta; num_sampling_steps levels from L down to 0, then clean) and read by the object check
(tools/metrics/objects.py). From level 999 the clip is forgotten and this is unconditional generation; from low
levels only the outline is left to redraw. The level where the share of frames showing the object falls is the
noise band the model has not learnt. Every level and every checkpoint gets the same clips and the same noise
(--seed), so two checkpoints compare on equal draws. key=value overrides go to the sample config.
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch

from diffusion.vtv import CLEAN
from sample.config import load_config
from sample.sampling import (
    create_sampling_diffusion, load_model_for_sampling, sampling_model_fn, to_model_space, to_pixels,
)
from tools.metrics.objects import object_statistics
from tools.object_tasks import held_out_set
from tools.runtime import default_device, video_to_uint8


def level_path(level, steps):
    """Descending base-chain levels from `level` to 0 (at most `steps` of them), then CLEAN: one step between each."""
    levels = np.unique(np.linspace(level, 0, steps).round().astype(int))[::-1]
    return [*levels.tolist(), CLEAN]


@torch.no_grad()
def denoise_from_level(diffusion, model_fn, clean, level, steps, *, method, eta, clip_denoised, generator):
    """Model-space clips (B, N, C, H, W) noised to base level `level` and denoised back to clean."""
    path = level_path(level, steps)
    frames = clean.shape[:2]
    start = torch.full(frames, path[0], dtype=torch.long, device=clean.device)
    alpha_bar = diffusion._levels_alpha_bar(start, clean)  # (B, N, 1, 1, 1) float64
    noise = torch.randn(clean.shape, generator=generator).to(clean.device)
    x = (alpha_bar.sqrt() * clean + (1 - alpha_bar).sqrt() * noise).to(clean.dtype)
    for level_from, level_to in zip(path[:-1], path[1:]):
        x = diffusion.vtv_step(model_fn, x, torch.full_like(start, level_from), torch.full_like(start, level_to),
                               method=method, eta=eta, clip_denoised=clip_denoised, generator=generator)
    return x


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo/demo_sample.yaml", help="sample config (YAML)")
    parser.add_argument("--levels", type=lambda text: [int(level) for level in text.split(",")],
                        default=[100, 300, 500, 999], help="base-chain levels to noise the clips to, comma-separated")
    parser.add_argument("--num_videos", type=int, default=32, help="held-out clips")
    parser.add_argument("--frame_interval", type=int, default=2,
                        help="generator time steps between frames, as in training (the demo's: 2)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the noise, the same for every level")
    parser.add_argument("--out", default=None, help="write the scores here as JSON")
    parser.add_argument("overrides", nargs="*", help="sample config key=value overrides")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    device = default_device(cfg.device)
    model, vae, settings = load_model_for_sampling(cfg, device)
    diffusion = create_sampling_diffusion(cfg, settings)
    bad = [level for level in args.levels if not 0 <= level < diffusion.base_num_timesteps]
    if bad:
        raise ValueError(f"--levels {bad} lie outside the training chain [0, {diffusion.base_num_timesteps})")
    model_fn = sampling_model_fn(model, cfg.cfg_scale, cfg.mixed_precision)
    clips, _, _ = held_out_set(args.num_videos, settings["num_frames"], args.frame_interval, settings["image_size"])
    clean = to_model_space(clips.to(device), vae)
    clip_denoised = vae is None if cfg.clip_denoised is None else cfg.clip_denoised
    results = {"ckpt": settings["ckpt"], "sampler": f"{cfg.sample_method}-{cfg.num_sampling_steps}",
               "num_videos": args.num_videos, "levels": {}}
    for level in args.levels:
        generator = torch.Generator().manual_seed(args.seed)
        denoised = denoise_from_level(diffusion, model_fn, clean, level, cfg.num_sampling_steps,
                                      method=cfg.sample_method, eta=cfg.eta, clip_denoised=clip_denoised,
                                      generator=generator)
        videos = np.stack([video_to_uint8(video) for video in to_pixels(denoised, vae).cpu()])
        stats = object_statistics(videos, args.frame_interval)
        results["levels"][level] = stats
        print(f"from level {level:4d}: {stats['shows_object']:6.1%} of frames show the object (shape "
              f"{stats['recognised_shape']:.0%}, colour {stats['palette_colour']:.0%}, one part "
              f"{stats['one_part']:.0%}); videos keep it {stats['videos_keep_object']:.0%}", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
