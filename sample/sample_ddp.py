"""Evaluation-scale sampling: num_samples videos split across torchrun ranks, as frame folders for the metrics.

    torchrun --nproc_per_node 8 sample/sample_ddp.py --config configs/sky/sky_sample.yaml num_samples=2048
    python sample/sample_ddp.py --config configs/demo/demo_sample.yaml num_samples=16     # one process

Video k (seed + k, as sample.py) goes to <eval_dir>/<k:05d>/<frame:04d>.png, the layout tools/metrics read,
and to <mp4_dir>/<k:05d>.mp4 when mp4_dir is set. Rank r takes videos r, r + world, ...; batch_size is per
rank. A video is written under a .tmp name and renamed when complete, so a killed job resumes: videos whose
folder exists are skipped.
"""
import argparse
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from configs import config_help  # noqa: E402
from sample.outputs import Mp4Writer, save_png_frames, video_to_uint8  # noqa: E402
from sample.sample import (  # noqa: E402
    SampleConfig,
    create_sampling_diffusion,
    load_model_for_sampling,
    load_preset_inputs,
    merge_config,
    output_length,
    run_preset,
    to_pixels,
    validate_config,
    video_generators,
    video_labels,
)


@dataclass
class EvalConfig(SampleConfig):
    eval_dir: Optional[str] = None  # frame folders <eval_dir>/<video:05d>/; null: <save_dir>/eval-<preset>
    mp4_dir: Optional[str] = None  # also write <mp4_dir>/<video:05d>.mp4 (lossless libx264rgb); null: no MP4
    progress: bool = False  # per-video sampler bars (the batch bar of rank 0 is always shown)


def load_eval_config(config_path=None, overrides=()):
    cfg = merge_config(EvalConfig, config_path, overrides)
    validate_config(cfg)
    if cfg.preset == "all":
        raise ValueError("config key 'preset' = 'all': an evaluation set holds one preset; name it")
    return cfg


def setup_distributed(device_name=None):
    """(rank, world_size, device); a plain `python` run is rank 0 of 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        device = torch.device(device_name or ("cuda" if torch.cuda.is_available() else "cpu"))
        return 0, 1, device
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    rank = dist.get_rank()
    if torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return rank, world_size, torch.device("cuda", local_rank)
    return rank, world_size, torch.device("cpu")


def pending_videos(cfg, eval_dir, rank, world_size):
    """This rank's video indices whose outputs are not all written yet."""
    def done(index):
        folder_done = (eval_dir / f"{index:05d}").is_dir()
        mp4_done = cfg.mp4_dir is None or (Path(cfg.mp4_dir) / f"{index:05d}.mp4").is_file()
        return folder_done and mp4_done

    return [index for index in range(rank, cfg.num_samples, world_size) if not done(index)]


def write_batch(chunks, indices, eval_dir, cfg, vae, device, length):
    """Stream decoded chunks into <index>.tmp folders / MP4s, then rename each video into place."""
    digits = max(4, len(str(length - 1)))
    tmp_dirs = [eval_dir / f"{index:05d}.tmp" for index in indices]
    for tmp_dir in tmp_dirs:
        shutil.rmtree(tmp_dir, ignore_errors=True)  # left by a killed run
    mp4s = []
    if cfg.mp4_dir is not None:
        mp4s = [Mp4Writer(Path(cfg.mp4_dir) / f"{index:05d}.tmp.mp4", cfg.fps, lossless=True) for index in indices]
    written = 0
    for chunk in chunks:
        pixels = to_pixels(chunk.to(device), vae).cpu()  # (B, k, 3, H, W)
        for b, video in enumerate(pixels):
            frames = video_to_uint8(video)
            save_png_frames(frames, tmp_dirs[b], start_index=written, digits=digits)
            if mp4s:
                mp4s[b].write(frames)
        written += pixels.shape[1]
    for b, index in enumerate(indices):
        if mp4s:
            mp4s[b].close()
            os.replace(mp4s[b].path, Path(cfg.mp4_dir) / f"{index:05d}.mp4")
        final = eval_dir / f"{index:05d}"
        shutil.rmtree(final, ignore_errors=True)  # a folder left while its MP4 was missing
        os.replace(tmp_dirs[b], final)


@torch.no_grad()
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, epilog=config_help(EvalConfig),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file of EvalConfig keys (SampleConfig + eval_dir, mp4_dir)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    args = parser.parse_args(argv)
    cfg = load_eval_config(args.config, args.overrides)

    torch.backends.cuda.matmul.allow_tf32 = cfg.allow_tf32
    torch.backends.cudnn.allow_tf32 = cfg.allow_tf32
    rank, world_size, device = setup_distributed(cfg.device)
    eval_dir = Path(cfg.eval_dir if cfg.eval_dir is not None else Path(cfg.save_dir) / f"eval-{cfg.preset}")
    eval_dir.mkdir(parents=True, exist_ok=True)
    if cfg.mp4_dir is not None:
        Path(cfg.mp4_dir).mkdir(parents=True, exist_ok=True)

    model, vae, settings = load_model_for_sampling(cfg, device)
    diffusion = create_sampling_diffusion(cfg, settings)
    inputs = load_preset_inputs(cfg, settings, vae, device)
    length = output_length(cfg, settings["num_frames"])
    todo = pending_videos(cfg, eval_dir, rank, world_size)
    skipped = len(range(rank, cfg.num_samples, world_size)) - len(todo)
    if rank == 0:
        print(f"rank 0 of {world_size}: {len(todo)} videos to sample, {skipped} already written in {eval_dir}")

    batches = [todo[i:i + cfg.batch_size] for i in range(0, len(todo), cfg.batch_size)]
    for indices in tqdm(batches, desc=f"rank {rank}", disable=rank != 0):
        torch.manual_seed(cfg.seed + indices[0])  # DDPM / stabilization noise inside the sampler
        generators = video_generators(cfg, indices, device)
        labels = video_labels(cfg, indices, settings["num_classes"], generators)
        _, chunks = run_preset(model, diffusion, cfg, batch_size=len(indices), inputs=inputs, labels=labels,
                               generators=generators, device=device)
        write_batch(chunks, indices, eval_dir, cfg, vae, device, length)

    if world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    if rank == 0:
        print(f"done: {cfg.num_samples} videos of {length} frames in {eval_dir}")


if __name__ == "__main__":
    main()
