"""Write dataset clips as frame folders DIR/<clip:05d>/<frame:04d>.png, the layout the FVD tool reads.

Example (held-out bouncing clips as the real set for FVD):
    python tools/dump_clips.py --dataset bouncing --num_clips 2048 --image_size 32 --split test --out real/bouncing
"""

import argparse
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from datasets import DATASETS, build_dataset
from datasets.video_datasets import skipped_files
from tools.runtime import video_to_uint8


def dump_clips(dataset, num_clips, out_dir, seed=0, num_workers=0):
    """Save num_clips clips drawn without replacement (seeded) from dataset; returns {path: reason} of the videos skipped."""
    if num_clips > len(dataset):
        raise ValueError(f"asked for {num_clips} clips but the dataset has {len(dataset)} items")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"output folder {out_dir} is not empty")
    indices = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:num_clips].tolist()
    loader = DataLoader(Subset(dataset, indices), batch_size=None, num_workers=num_workers)  # items, unbatched
    skipped = {}
    for clip_number, item in enumerate(tqdm(loader, desc=f"writing clips to {out_dir}", unit="clip")):
        clip_dir = out_dir / f"{clip_number:05d}"
        clip_dir.mkdir(parents=True)
        for frame_number, frame in enumerate(video_to_uint8(item["video"])):
            Image.fromarray(frame).save(clip_dir / f"{frame_number:04d}.png")
        skipped.update(skipped_files(item))
    return skipped


def main(args):
    dataset_kwargs = dict(
        data_path=args.data_path, num_frames=args.num_frames, frame_interval=args.frame_interval,
        image_size=args.image_size, seed=args.seed, split=args.split, split_file=args.split_file,
        class_index_file=args.class_index_file,
    )
    dataset = build_dataset(args.dataset, **dataset_kwargs)
    if args.num_clips > len(dataset):
        # More clips than videos: visit each video several times, each time from its own random start.
        dataset = build_dataset(args.dataset, length=args.num_clips, **dataset_kwargs)
    skipped = dump_clips(dataset, args.num_clips, args.out, seed=args.seed, num_workers=args.num_workers)
    print(f"wrote {args.num_clips} clips of {args.num_frames} frames to {args.out}")
    for path, reason in skipped.items():
        print(f"skipped {path}: {reason}")
    if skipped:
        print(f"skipped {len(skipped)} unreadable or too-short video(s); their clips came from other videos")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--num_clips", type=int, default=2048)
    parser.add_argument("--num_frames", type=int, default=16)
    parser.add_argument("--frame_interval", type=int, default=3)
    parser.add_argument("--image_size", type=int, default=256)
    parser.add_argument("--split", default=None, help="train | test (default: the dataset's own default)")
    parser.add_argument("--split_file", default=None, help="ucf101: trainlist0X.txt / testlist0X.txt")
    parser.add_argument("--class_index_file", default=None, help="ucf101: classInd.txt")
    parser.add_argument("--seed", type=int, default=0, help="picks the clips and their start frames")
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--out", required=True)
    main(parser.parse_args())
