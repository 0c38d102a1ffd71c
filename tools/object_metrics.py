"""The object check of generated bouncing-shapes videos beside held-out real clips (seconds, no I3D).

    python tools/object_metrics.py --fake results/demo/objects/generated --frame_interval 2 --out objects.json

--fake is a video set as sample/sample_ddp.py writes it (<dir>/<video>/<frame>.png) or as FVD reads it.
The real clips are rendered from the bouncing data's test split at the generated frame size and length. With
--vae, the real clips are also scored after a round trip through that autoencoder: the most a latent model
decoded by it can reach. --score_size 16 averages each generated frame down to 16 px first (box filter; the real
clips are rendered at 16 px), to compare a 64-px model with a 16-px one at one resolution and one shape tolerance.
Definitions: tools/metrics/objects.py. The conditioned tasks, scored against the true trajectories:
tools/object_tasks.py.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from datasets.bouncing import BouncingShapes
from tools.metrics.clips import list_videos
from tools.metrics.objects import object_statistics
from tools.runtime import video_to_uint8


def read_video_folders(root):
    """uint8 (B, N, H, W, 3): every video of a set (tools/metrics/clips.py layouts); all must have one shape."""
    videos = [video.read_frames(range(video.num_frames)) for video in list_videos(root)]
    shapes = {video.shape for video in videos}
    if len(shapes) > 1:
        raise ValueError(f"{root}: videos differ in shape {sorted(shapes)}")
    return np.stack(videos)


def real_videos(num_videos, num_frames, image_size, frame_interval, seed=0):
    dataset = BouncingShapes(num_frames=num_frames, frame_interval=frame_interval, image_size=image_size,
                             split="test", seed=seed, length=num_videos)
    return np.stack([video_to_uint8(dataset[i]["video"]) for i in range(num_videos)])


def autoencoder_round_trip(videos, vae_path):
    """uint8 (B, N, H, W, 3) -> the same clips encoded and decoded by the VAE at vae_path."""
    import torch

    from models.vae import decode_latents, encode_video, load_vae

    vae = load_vae(vae_path)
    video = torch.from_numpy(videos).permute(0, 1, 4, 2, 3).float() / 127.5 - 1.0  # (B, N, 3, H, W)
    decoded = decode_latents(vae, encode_video(vae, video))
    return np.stack([video_to_uint8(clip) for clip in decoded])


def summary(stats):
    """One line of the scores, the frame checks in brackets."""
    return (f"{stats['shows_object']:6.1%} of frames show the object (one part {stats['one_part']:.0%}, "
            f"area {stats['plausible_area']:.0%}, colour {stats['palette_colour']:.0%}, "
            f"shape {stats['recognised_shape']:.0%}); videos keep it {stats['videos_keep_object']:.0%}, "
            f"its colour {stats['videos_keep_colour']:.0%}, its shape {stats['videos_keep_shape']:.0%}, "
            f"move plausibly {stats['videos_move_plausibly']:.0%}, all {stats['videos_all_checks']:.0%}; "
            f"speed {stats['speed']:.2f} px/frame, off a bouncing track by {stats['track_residual']:.2f} px "
            f"({stats['num_videos']} videos x {stats['num_frames']} frames)")


def box_downsample(videos, size):
    """(V, N, H, W, 3) uint8 -> (V, N, size, size, 3) uint8, each output pixel the mean of the pixels it covers."""
    factor = videos.shape[2] // size if size >= 1 else 0
    if factor < 1 or videos.shape[2] != factor * size or videos.shape[3] != factor * size:
        raise ValueError(f"--score_size {size} must divide the generated frames' size {videos.shape[2]}")
    blocks = videos.reshape(*videos.shape[:2], size, factor, size, factor, 3).astype(np.float64)
    return np.rint(blocks.mean(axis=(3, 5))).astype(np.uint8)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fake", required=True, help="generated videos: <dir>/<video>/<frame>.png")
    parser.add_argument("--frame_interval", type=int, default=2,
                        help="generator time steps between frames, of the training and real clips (the demo's: 2)")
    parser.add_argument("--threshold", type=float, default=0.25, help="foreground: colour distance to background")
    parser.add_argument("--vae", default=None, help="also score the real clips after a round trip through this VAE")
    parser.add_argument("--score_size", type=int, default=None,
                        help="score at this frame size: generated frames box-averaged down to it (must divide theirs)")
    parser.add_argument("--out", default=None, help="write the sets' statistics as JSON here")
    args = parser.parse_args(argv)

    fake = read_video_folders(args.fake)
    generated_size = fake.shape[2]
    if args.score_size is not None:
        fake = box_downsample(fake, args.score_size)
    num_videos, num_frames, image_size = fake.shape[0], fake.shape[1], fake.shape[2]
    real = real_videos(num_videos, num_frames, image_size, args.frame_interval)
    results = {
        "generated": object_statistics(fake, args.frame_interval, args.threshold),
        "real": object_statistics(real, args.frame_interval, args.threshold),
        "fake_dir": str(args.fake), "threshold": args.threshold, "score_size": image_size,
    }
    if args.vae is not None:
        if args.score_size is None:
            round_trip = autoencoder_round_trip(real, args.vae)
        else:  # through the autoencoder at the generated frames' size, then averaged down as they were
            full_size = real_videos(num_videos, num_frames, generated_size, args.frame_interval)
            round_trip = box_downsample(autoencoder_round_trip(full_size, args.vae), args.score_size)
        results["real_through_autoencoder"] = object_statistics(round_trip, args.frame_interval, args.threshold)
        results["vae"] = str(args.vae)
    for name in [key for key in ("generated", "real", "real_through_autoencoder") if key in results]:
        print(f"{name:>24}: {summary(results[name])}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
