"""Does a text-to-video bouncing-shapes model follow its prompts? Scores beside a caption-shuffled control.

    python tools/text_following.py --config configs/t2v/demo_t2v_sample.yaml --out_dir results/demo_t2v/text
        [--repeats 1] [key=value ...]

Two prompt sets, sampled with the standard preset:
- one prompt per video: every colour x shape x direction (96), `--repeats` times; scored on the colour-shape
  pairs seen in training and on the held-out ones (datasets/bouncing.py: HELD_OUT_COMBINATIONS) apart;
- a prompt change per video: from frame 2..N-2 on, the colour, the shape or the direction changes; scored for
  the frame at which the video changes against the frame asked for.
Each is scored against its own prompts and against another video's (tools/metrics/text_following.py:
shuffled_prompts), which a model that follows its prompts scores near chance on. Writes text_following.json and
contact sheets (<set>.png: the first videos, one row each, with their prompts in the JSON).
key=value overrides go to the sample config (SampleConfig in sample/config.py).
"""
import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from datasets.bouncing import COLOUR_NAMES, DIRECTIONS, SHAPES, caption
from sample.config import load_config
from sample.outputs import save_contact_sheet
from sample.sampling import batches_of, create_sampling_diffusion, load_model_for_sampling, sampled_batches, to_pixels
from tools.metrics.text_following import is_held_out, shuffled_prompts, text_following_scores
from tools.runtime import default_device, video_to_uint8

SHEET_VIDEOS = 8
PRINTED = ("shows_object", "colour", "shape", "direction", "switch_error", "switch_followed", "colour_any", "shape_any",
           "direction_any", "switch_error_any", "switch_followed_any")


def single_prompt_set(num_frames, repeats):
    prompts = [caption(*combination) for combination in itertools.product(COLOUR_NAMES, SHAPES, DIRECTIONS)]
    return [[prompt] * num_frames for prompt in prompts * repeats]


def switch_prompt_set(num_frames, count, seed=0):
    """count videos whose prompt changes one attribute at a frame in [2, N-2] (never to a held-out pair)."""
    rng = np.random.default_rng(seed)
    videos = []
    while len(videos) < count:
        first = [COLOUR_NAMES[rng.integers(8)], SHAPES[rng.integers(3)], DIRECTIONS[rng.integers(4)]]
        second = list(first)
        attribute = len(videos) % 3
        second[attribute] = (COLOUR_NAMES, SHAPES, DIRECTIONS)[attribute][rng.integers((8, 3, 4)[attribute])]
        if second == first or is_held_out(caption(*first)) or is_held_out(caption(*second)):
            continue
        frame = int(rng.integers(2, num_frames - 1))
        videos.append([caption(*first)] * frame + [caption(*second)] * (num_frames - frame))
    return videos


def sample_videos(cfg, model, vae, settings, diffusion, frame_prompts, device, desc):
    """uint8 videos (V, N, H, W, 3) of the standard preset, video k from seed + k and its prompts."""
    videos = []
    batches = batches_of(list(range(len(frame_prompts))), cfg.batch_size)
    for _, _, chunks in tqdm(sampled_batches(cfg, model, diffusion, settings, batches, [], device, frame_prompts),
                             total=len(batches), desc=desc):
        pixels = to_pixels(torch.cat(list(chunks), dim=1).to(device), vae).cpu()
        videos += [video_to_uint8(video) for video in pixels]
    return np.stack(videos)


def scored(videos, frame_prompts, keep=None):
    keep = np.ones(len(videos), dtype=bool) if keep is None else np.asarray(keep)
    kept = [p for p, k in zip(frame_prompts, keep) if k]
    return {"prompted": text_following_scores(videos[keep], kept),
            "shuffled_control": text_following_scores(videos[keep], shuffled_prompts(kept, seed=1))}


@torch.no_grad()
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/t2v/demo_t2v_sample.yaml")
    parser.add_argument("--out_dir", default="results/demo_t2v/text")
    parser.add_argument("--repeats", type=int, default=1, help="videos per prompt of the one-prompt set")
    parser.add_argument("--switch_videos", type=int, default=48)
    args, overrides = parser.parse_known_args(argv)
    cfg = load_config(args.config, [*overrides, "preset=standard", "prompt=null", "progress=false"])
    device = default_device(cfg.device)
    model, vae, settings = load_model_for_sampling(cfg, device)
    if settings["text_encoder"] is None:
        raise ValueError(f"{cfg.ckpt} is not a text model (trained without text_encoder)")
    diffusion = create_sampling_diffusion(cfg, settings)
    num_frames = settings["num_frames"]
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    single = single_prompt_set(num_frames, args.repeats)
    switch = switch_prompt_set(num_frames, args.switch_videos)
    single_videos = sample_videos(cfg, model, vae, settings, diffusion, single, device, "one prompt per video")
    switch_videos = sample_videos(cfg, model, vae, settings, diffusion, switch, device, "a prompt change")
    held_out = [is_held_out(prompts[0]) for prompts in single]
    results = {
        "ckpt": settings["ckpt"], "cfg_scale": cfg.cfg_scale, "sampler": f"{cfg.sample_method}-{cfg.num_sampling_steps}",
        "seen_pairs": scored(single_videos, single, ~np.array(held_out)),
        "held_out_pairs": scored(single_videos, single, held_out),
        "switch": scored(switch_videos, switch),
        "prompts": {"one_prompt": [p[0] for p in single[:SHEET_VIDEOS]], "switch": switch[:SHEET_VIDEOS]},
    }
    (out_dir / "text_following.json").write_text(json.dumps(results, indent=2))
    held_out_first = np.argsort(~np.array(held_out), kind="stable")[:SHEET_VIDEOS // 2]
    sheets = {"one_prompt": single_videos[:SHEET_VIDEOS], "held_out": single_videos[held_out_first],
              "switch": switch_videos[:SHEET_VIDEOS]}
    for name, videos in sheets.items():
        save_contact_sheet(np.concatenate(list(videos)), out_dir / f"{name}.png", columns=num_frames)
    for name in ("seen_pairs", "held_out_pairs", "switch"):
        for kind, scores in results[name].items():
            print(f"{name:15s} {kind:17s} " + " ".join(f"{key} {scores[key]:.2f}" for key in PRINTED if key in scores))
    print(f"wrote {out_dir / 'text_following.json'} and contact sheets {', '.join(sheets)} (.png)")


if __name__ == "__main__":
    main()
