"""Evaluation-scale sampling: num_samples videos split across torchrun ranks, as frame folders for the metrics.

    torchrun --nproc_per_node 8 sample/sample_ddp.py --config configs/sky/sky_sample.yaml num_samples=2048
    python sample/sample_ddp.py --config configs/demo/demo_sample.yaml num_samples=16     # one process

Video k (seed + k, as sample.py) goes to <eval_dir>/<k:05d>/<frame:04d>.png, the layout tools/metrics read,
and to <mp4_dir>/<k:05d>.mp4 when mp4_dir is set. Rank r takes videos r, r + world, ...; batch_size is per
rank. A video is written under a .tmp name and renamed when complete, so a killed job resumes: videos whose
folder exists are skipped.
"""
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from configs import parse_command_line
from sample.config import EvalConfig, load_eval_config
from sample.pipeline import FVDMPipeline
from sample.sampling import batches_of, pending_videos, write_eval_batch
from tools.runtime import allow_tf32, setup_distributed


@torch.no_grad()
def main(argv=None):
    cfg = parse_command_line(EvalConfig, load_eval_config, __doc__, argv)
    allow_tf32(cfg.allow_tf32)
    rank, world_size, device = setup_distributed(cfg.device)
    eval_dir = Path(cfg.eval_dir if cfg.eval_dir is not None else Path(cfg.save_dir) / f"eval-{cfg.preset}")
    eval_dir.mkdir(parents=True, exist_ok=True)
    if cfg.mp4_dir is not None:
        Path(cfg.mp4_dir).mkdir(parents=True, exist_ok=True)

    pipe = FVDMPipeline.from_config(cfg, device)
    length = pipe.output_length(cfg)
    todo = pending_videos(cfg, eval_dir, rank, world_size)
    skipped = len(range(rank, cfg.num_samples, world_size)) - len(todo)
    if rank == 0:
        print(f"rank 0 of {world_size}: {len(todo)} videos to sample, {skipped} already written in {eval_dir}")

    batches = batches_of(todo, cfg.batch_size)
    for indices, _, chunks in tqdm(pipe.batches(cfg, batches), total=len(batches), desc=f"rank {rank}",
                                   disable=rank != 0):
        write_eval_batch(chunks, indices, eval_dir, cfg, pipe.vae, device, length)

    if world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    if rank == 0:
        print(f"done: {cfg.num_samples} videos of {length} frames in {eval_dir}")


if __name__ == "__main__":
    main()
