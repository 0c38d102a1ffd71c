"""Conditioned tasks of a bouncing-shapes model, scored against the true trajectories of held-out clips.

    python tools/object_tasks.py --config configs/demo/demo_sample.yaml --out_dir results/demo/tasks [key=value ...]

Each held-out clip (the bouncing test split) gives the model some of its frames:
- interpolation: frames 0 and N-1 of the N-frame window; the model fills in the rest;
- next_frame: the first N/2 frames; the model predicts the other N/2;
- long: the first N/2 frames; the model continues them to --length frames, window after window.
The frames it generates are read by tools/metrics/objects.py and compared with the scene's closed-form
trajectory, colour and shape, beside copying the nearest given frame (the object stops where it was last seen).
Writes tasks.json and <task>.png per task (the true clip above the generated one, for the first clips).
key=value overrides go to the sample config (SampleConfig in sample/config.py), e.g. ckpt=... seed=...
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch

from datasets.bouncing import BouncingShapes
from sample.config import load_config
from sample.outputs import save_contact_sheet
from sample.sampling import (
    batches_of, create_sampling_diffusion, load_model_for_sampling, sampled_batches, to_model_space, to_pixels,
)
from tools.metrics.objects import task_scores
from tools.runtime import default_device, video_to_uint8

SHEET_CLIPS = 6  # clips drawn in each task's contact sheet


def task_settings(task, num_frames, length):
    """(sample config overrides, output frames, given-frame mask (frames,), frames passed as input) of a task."""
    half = num_frames // 2
    frames = length if task == "long" else num_frames
    given = np.zeros(frames, dtype=bool)
    if task == "interpolation":
        given[[0, num_frames - 1]] = True
        overrides, num_inputs = {"preset": "interpolation", "keyframes": None}, num_frames
    elif task == "next_frame":
        given[:half] = True
        overrides = {"preset": "next_frame", "context_frames": half, "predict_frames": num_frames - half}
        num_inputs = num_frames
    else:  # long: the given frames are the whole input, continued window after window
        given[:half] = True
        overrides, num_inputs = {"preset": "long", "context_frames": half, "length": length}, half
    return overrides, frames, given, num_inputs


@torch.no_grad()
def sample_task(cfg, model, vae, settings, diffusion, clips, num_inputs, batch_size, device):
    """uint8 (B, frames, H, W, 3): the task's videos, video k made from clip k with the seed cfg.seed + k."""
    videos = []
    for indices in batches_of(list(range(len(clips))), batch_size):
        given = [to_model_space(clips[indices, :num_inputs].to(device), vae)]
        (_, _, chunks), = sampled_batches(cfg, model, diffusion, settings, [indices], given, device)
        pixels = to_pixels(torch.cat(list(chunks), dim=1).to(device), vae).cpu()  # (b, frames, 3, H, W)
        videos.extend(video_to_uint8(video) for video in pixels)
    return np.stack(videos)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo/demo_sample.yaml", help="sample config (YAML)")
    parser.add_argument("--num_videos", type=int, default=32, help="held-out clips per task")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--length", type=int, default=24, help="frames of each long video")
    parser.add_argument("--frame_interval", type=int, default=2,
                        help="generator time steps between frames, as in training (the demo's: 2)")
    parser.add_argument("--tasks", nargs="+", default=["interpolation", "next_frame", "long"],
                        choices=["interpolation", "next_frame", "long"])
    parser.add_argument("--out_dir", default="results/demo/tasks")
    parser.add_argument("overrides", nargs="*", help="sample config key=value overrides")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    device = default_device(cfg.device)
    model, vae, settings = load_model_for_sampling(cfg, device)
    diffusion = create_sampling_diffusion(cfg, settings)
    num_frames, image_size = settings["num_frames"], settings["image_size"]

    held_out = BouncingShapes(num_frames=max(num_frames, args.length), frame_interval=args.frame_interval,
                              image_size=image_size, split="test", length=args.num_videos)
    clips = torch.stack([held_out[index]["video"] for index in range(args.num_videos)])  # (B, L, 3, H, W)
    truth = np.stack([video_to_uint8(clip) for clip in clips])  # (B, L, H, W, 3)
    scenes = [held_out.scene(index) for index in range(args.num_videos)]
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {"ckpt": settings["ckpt"], "sampler": f"{cfg.sample_method}-{cfg.num_sampling_steps}", "tasks": {}}
    for task in args.tasks:
        overrides, frames, given, num_inputs = task_settings(task, num_frames, args.length)
        for key, value in overrides.items():
            cfg[key] = value
        videos = sample_task(cfg, model, vae, settings, diffusion, clips, num_inputs, args.batch_size, device)
        times = args.frame_interval * np.arange(frames)
        scores = task_scores(videos, scenes, times, given)
        results["tasks"][task] = {"given_frames": np.flatnonzero(given).tolist(), **scores}
        print(f"{task:>13}: the object shows in {scores['shows_object']:.0%} of the {scores['generated_frames']} "
              f"generated frames per video (colour right in {scores['colour_match']:.0%} of those, shape in "
              f"{scores['shape_match']:.0%}); where anything shows ({scores['has_foreground']:.0%}), its centre is "
              f"{scores['centre_error']:.2f} px from the truth (copying the nearest given frame: "
              f"{scores['copy_centre_error']:.2f} px)")
        rows = [frame for clip in range(min(SHEET_CLIPS, len(videos))) for video in (truth, videos)
                for frame in video[clip, :frames]]
        save_contact_sheet(np.stack(rows), out_dir / f"{task}.png", columns=frames, max_frames=len(rows))
    (out_dir / "tasks.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {out_dir / 'tasks.json'} and a contact sheet per task (rows: true clip, then generated)")


if __name__ == "__main__":
    main()
