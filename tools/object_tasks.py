"""Conditioned tasks of a bouncing-shapes model, scored against the true trajectories of held-out clips.

    python tools/object_tasks.py --config configs/demo/demo_sample.yaml --out_dir results/demo/tasks [key=value ...]
    python tools/object_tasks.py ... --method vtv --method replacement --method vtv:history_guidance=2 \\
        --method vtv:history_guidance=2,history_noise_level=500 --method vtv:cond_noise_level=50

Each held-out clip (the bouncing test split) gives the model some of its frames:
- i2v: frame 0; the model makes the other N-1 (one frame fixes no velocity: motion is judged by plausibility);
- interpolation: frames 0 and N-1 of the N-frame window; the model fills in the rest;
- next_frame: the first N/2 frames; the model predicts the other N/2;
- long: the first N/2 frames; the model continues them to --length frames, window after window, and every
  window is scored on its own, so drift is a number.
The frames it generates are read by tools/metrics/objects.py and compared with the scene's closed-form
trajectory, colour and shape, and their colour with the given frames' (colour drift, a distance in RGB). Every
method (--method: "vtv", "replacement" (the scalar-timestep baseline), either followed by ":key=value,..."
sample-config overrides such as history guidance or stabilization noise) is scored beside two rows made without
the model: the real clips (through the autoencoder, for a latent model: the most it can score) and copying the
nearest given frame (the object stops where it was last seen).
Writes tasks.json, tasks.md (the tables) and <task>.png per task (the true clip, then each method's video,
for the first clips). key=value overrides go to the sample config (SampleConfig in sample/config.py).
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch

from datasets.bouncing import BouncingShapes
from diffusion.vtv import plan_long_video
from sample.config import load_config
from sample.outputs import save_contact_sheet
from sample.sampling import (
    batches_of, create_sampling_diffusion, load_model_for_sampling, sampled_batches, to_model_space, to_pixels,
)
from tools.metrics.objects import nearest_given_frames, object_statistics, read_videos, task_scores
from tools.runtime import default_device, video_to_uint8

TASKS = ("i2v", "interpolation", "next_frame", "long")
SHEET_CLIPS = 4  # clips drawn in each task's contact sheet
REAL, COPY = "real clips", "copy nearest given frame"  # the rows made without the model
# Columns of the printed tables: (key in the scores, heading, format)
FRAME_COLUMNS = [("shows_object", "shows object", "{:.0%}"), ("colour_match", "colour kept", "{:.0%}"),
                 ("colour_drift", "colour drift", "{:.3f}"), ("shape_match", "shape kept", "{:.0%}"),
                 ("centre_error", "centre error (px)", "{:.2f}")]
VIDEO_COLUMNS = [("videos_keep_object", "videos keep it", "{:.0%}"),
                 ("videos_move_plausibly", "move plausibly", "{:.0%}")]


def task_settings(task, num_frames, length):
    """(sample config overrides, output frames, given-frame mask (frames,), frames passed as input) of a task."""
    half = num_frames // 2
    frames = length if task == "long" else num_frames
    given = np.zeros(frames, dtype=bool)
    if task == "i2v":
        given[0] = True
        overrides, num_inputs = {"preset": "i2v", "cond_frame": 0}, num_frames
    elif task == "interpolation":
        given[[0, num_frames - 1]] = True
        overrides, num_inputs = {"preset": "interpolation", "keyframes": None}, num_frames
    elif task == "next_frame":
        given[:half] = True
        overrides = {"preset": "next_frame", "context_frames": half, "predict_frames": num_frames - half}
        num_inputs = num_frames
    elif task == "long":  # the given frames are the whole input, continued window after window
        given[:half] = True
        overrides, num_inputs = {"preset": "long", "context_frames": half, "length": length}, half
    else:
        raise ValueError(f"unknown task {task!r}; choose from {TASKS}")
    return overrides, frames, given, num_inputs


def method_overrides(method):
    """Sample-config overrides of a method "vtv" | "replacement" [":key=value,key=value"]."""
    conditioning, _, extra = method.partition(":")
    if conditioning not in ("vtv", "replacement"):
        raise ValueError(f"method {method!r} must start with 'vtv' or 'replacement'")
    extra = [item for item in extra.split(",") if item]
    bad = [item for item in extra if "=" not in item]
    if bad:
        raise ValueError(f"method {method!r}: {bad} is not key=value")
    return [f"conditioning={conditioning}", *extra]


def long_windows(num_frames, length):
    """bool (windows, length): the frames each window of the long task generates."""
    half = num_frames // 2
    masks = []
    for start, context, new in plan_long_video(num_frames, half, length, given_frames=half):
        mask = np.zeros(length, dtype=bool)
        mask[start + context:start + context + new] = True
        masks.append(mask)
    return np.stack(masks)


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


@torch.no_grad()
def through_autoencoder(clips, vae, batch_size, device):
    """uint8 (B, L, H, W, 3): the clips encoded and decoded (for a pixel model, the clips themselves)."""
    videos = []
    for indices in batches_of(list(range(len(clips))), batch_size):
        pixels = to_pixels(to_model_space(clips[indices].to(device), vae), vae).cpu()
        videos.extend(video_to_uint8(video) for video in pixels)
    return np.stack(videos)


def score_videos(videos, scenes, times, given, frame_interval, windows=None):
    """Frame scores of the generated frames (task_scores), video scores of the whole videos (object_statistics),
    and, with windows (W, frames) bool, the frame scores of each window's frames."""
    readings = read_videos(videos)
    video_stats = object_statistics(videos, frame_interval, readings=readings)
    scores = {**task_scores(videos, scenes, times, given, readings=readings),
              **{key: video_stats[key] for key, _, _ in VIDEO_COLUMNS}}
    if windows is not None:
        scores["windows"] = [task_scores(videos, scenes, times, given, scored=mask, readings=readings)
                             for mask in windows]
    return scores


def cell(value, form):
    return "-" if value is None or np.isnan(value) else form.format(value)


def markdown_tables(results):
    """One table per task (rows: methods, then the real clips and the copy baseline); the long task also gets
    one row per method and window."""
    lines = []
    for task, entry in results["tasks"].items():
        columns = FRAME_COLUMNS + VIDEO_COLUMNS
        lines += [f"### {task} (given frames {entry['given_frames']}, {entry['generated_frames']} generated per "
                  f"video, {results['num_videos']} held-out clips)", "",
                  "| method | " + " | ".join(heading for _, heading, _ in columns) + " |",
                  "|---|" + "---|" * len(columns)]
        for method, scores in entry["methods"].items():
            lines.append(f"| {method} | " + " | ".join(cell(scores[key], form) for key, _, form in columns) + " |")
        lines.append("")
        if task == "long":
            windows = entry["windows"]
            lines += ["Per window of the long video (frames it generates):", "",
                      "| method | " + " | ".join(f"frames {w['frames'][0]}-{w['frames'][-1]}" for w in windows)
                      + " |", "|---|" + "---|" * len(windows)]
            for method, scores in entry["methods"].items():
                lines.append(f"| {method} | " + " | ".join(
                    f"{cell(w['shows_object'], '{:.0%}')}, {cell(w['centre_error'], '{:.2f}')} px, "
                    f"drift {cell(w['colour_drift'], '{:.3f}')}" for w in scores["windows"]) + " |")
            lines += ["", "(cells: frames showing the object, centre error against the true trajectory, colour drift "
                      "from the given frames)", ""]
    return "\n".join(lines)


def held_out_set(num_videos, frames, frame_interval, image_size):
    """(clips float (B, frames, 3, H, W) in [-1, 1], their uint8 frames (B, frames, H, W, 3), their scenes): the
    first held-out clips (the bouncing test split)."""
    held_out = BouncingShapes(num_frames=frames, frame_interval=frame_interval, image_size=image_size,
                              split="test", length=num_videos)
    clips = torch.stack([held_out[index]["video"] for index in range(num_videos)])
    truth = np.stack([video_to_uint8(clip) for clip in clips])
    return clips, truth, [held_out.scene(index) for index in range(num_videos)]


def evaluate_task(task, methods, *, config, overrides, model, vae, settings, held_out, real, length, frame_interval,
                  batch_size, device):
    """(scores, videos, given mask, long-video window masks or None) of one task: each method's videos and the
    rows made without the model.

    methods: {name: method_overrides(name)}; held_out: held_out_set(...) over at least `length` frames; real: those
    clips through the autoencoder (through_autoencoder). Video k of every method starts from the seed cfg.seed + k.
    """
    clips, truth, scenes = held_out
    task_overrides, frames, given, num_inputs = task_settings(task, settings["num_frames"], length)
    task_keys = [f"{key}={'null' if value is None else value}" for key, value in task_overrides.items()]
    times = frame_interval * np.arange(frames)
    windows = long_windows(settings["num_frames"], length) if task == "long" else None
    videos = {}
    for method, extra in methods.items():
        cfg = load_config(config, [*overrides, *task_keys, *extra])
        diffusion = create_sampling_diffusion(cfg, settings)
        videos[method] = sample_task(cfg, model, vae, settings, diffusion, clips, num_inputs, batch_size, device)
    videos[REAL], videos[COPY] = real[:, :frames], truth[:, nearest_given_frames(given)]
    scores = {name: score_videos(video, scenes, times, given, frame_interval, windows)
              for name, video in videos.items()}
    return scores, videos, given, windows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo/demo_sample.yaml", help="sample config (YAML)")
    parser.add_argument("--num_videos", type=int, default=32, help="held-out clips per task")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--length", type=int, default=24, help="frames of each long video")
    parser.add_argument("--frame_interval", type=int, default=2,
                        help="generator time steps between frames, as in training (the demo's: 2)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--method", action="append", dest="methods",
                        help='"vtv" (default) or "replacement", optionally with ":key=value,..." sample-config '
                             'overrides; repeat the flag for several methods')
    parser.add_argument("--out_dir", default="results/demo/tasks")
    parser.add_argument("overrides", nargs="*", help="sample config key=value overrides (every method)")
    args = parser.parse_args(argv)
    methods = {method: method_overrides(method) for method in args.methods or ["vtv"]}
    cfg = load_config(args.config, args.overrides)
    device = default_device(cfg.device)
    model, vae, settings = load_model_for_sampling(cfg, device)
    num_frames = settings["num_frames"]
    held_out = held_out_set(args.num_videos, max(num_frames, args.length), args.frame_interval,
                            settings["image_size"])
    real = through_autoencoder(held_out[0], vae, args.batch_size, device)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {"ckpt": settings["ckpt"], "sampler": f"{cfg.sample_method}-{cfg.num_sampling_steps}",
               "num_videos": args.num_videos, "tasks": {}}
    for task in args.tasks:
        scores, videos, given, windows = evaluate_task(
            task, methods, config=args.config, overrides=args.overrides, model=model, vae=vae, settings=settings,
            held_out=held_out, real=real, length=args.length, frame_interval=args.frame_interval,
            batch_size=args.batch_size, device=device)
        frames = len(given)
        results["tasks"][task] = {"given_frames": np.flatnonzero(given).tolist(),
                                  "generated_frames": int((~given).sum()), "methods": scores}
        if windows is not None:
            results["tasks"][task]["windows"] = [{"frames": np.flatnonzero(mask).tolist()} for mask in windows]
        for name, entry in scores.items():
            print(f"{task:>13} {name}: the object shows in {entry['shows_object']:.0%} of the "
                  f"{entry['generated_frames']} generated frames (colour kept in "
                  f"{cell(entry['colour_match'], '{:.0%}')} of those, shape in "
                  f"{cell(entry['shape_match'], '{:.0%}')}); centre "
                  f"{cell(entry['centre_error'], '{:.2f}')} px from the truth; colour drift "
                  f"{cell(entry['colour_drift'], '{:.3f}')}; "
                  f"{entry['videos_move_plausibly']:.0%} of videos move plausibly")
        shown = [held_out[1][:, :frames], *(videos[method] for method in methods)]
        rows = [frame for clip in range(min(SHEET_CLIPS, args.num_videos)) for video in shown
                for frame in video[clip]]
        save_contact_sheet(np.stack(rows), out_dir / f"{task}.png", columns=frames, max_frames=len(rows))
    (out_dir / "tasks.json").write_text(json.dumps(results, indent=2))
    (out_dir / "tasks.md").write_text(markdown_tables(results))
    print(f"wrote {out_dir / 'tasks.json'}, tasks.md and a contact sheet per task (rows, per clip: the true clip, "
          f"then {', '.join(methods)})")


if __name__ == "__main__":
    main()
