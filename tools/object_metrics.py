"""Object statistics of generated bouncing-shapes videos beside those of held-out real clips (seconds, no I3D).

    python tools/object_metrics.py --fake results/demo/objects/generated --frame_interval 2 --out objects.json

--fake is a video set as sample/sample_ddp.py writes it (<dir>/<video>/<frame>.png) or as FVD reads it.
The real clips are rendered from the bouncing data's test split at the generated frame size and length.
Definitions: tools/metrics/objects.py.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from datasets.bouncing import BACKGROUND, BouncingShapes  # noqa: E402
from tools.dump_clips import to_uint8  # noqa: E402
from tools.metrics.clips import list_videos  # noqa: E402
from tools.metrics.objects import object_statistics  # noqa: E402


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
    return np.stack([to_uint8(dataset[i]["video"]) for i in range(num_videos)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fake", required=True, help="generated videos: <dir>/<video>/<frame>.png")
    parser.add_argument("--frame_interval", type=int, default=2, help="of the real clips (the demo's: 2)")
    parser.add_argument("--threshold", type=float, default=0.25, help="foreground: colour distance to background")
    parser.add_argument("--out", default=None, help="write both sets' statistics as JSON here")
    args = parser.parse_args(argv)

    fake = read_video_folders(args.fake)
    num_videos, num_frames, image_size = fake.shape[0], fake.shape[1], fake.shape[2]
    real = real_videos(num_videos, num_frames, image_size, args.frame_interval)
    results = {
        "generated": object_statistics(fake, BACKGROUND, args.threshold),
        "real": object_statistics(real, BACKGROUND, args.threshold),
        "fake_dir": str(args.fake), "threshold": args.threshold,
    }
    for name in ("generated", "real"):
        stats = results[name]
        print(f"{name:>9}: {stats['one_object']:6.1%} of frames show one object, largest part "
              f"{stats['largest_share']:6.1%} of the foreground, area varies {stats['area_cv']:5.1%}, "
              f"moves {stats['speed']:.2f} px/frame (acceleration {stats['acceleration']:.2f} px) "
              f"({stats['num_videos']} videos x {stats['num_frames']} frames)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
