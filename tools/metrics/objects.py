"""Does each generated frame of the bouncing data show one whole object? A cheap, readable check of the CPU demo.

Every real frame of `datasets/bouncing.py` holds exactly one flat-coloured shape on a plain background, so a
model that learned the data keeps one connected object per frame at a steady size. A model that has not breaks
it into fragments and specks. Foreground is every pixel whose colour differs from the background by more than
`threshold` (on the [0, 1] scale) in some channel; objects are its 8-connected components. Motion is read from
the centre of the largest component: real objects fly straight at a steady speed and turn only at the walls.
"""
import numpy as np
from scipy import ndimage

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def object_statistics(videos, background, threshold=0.25, min_pixels=3):
    """Per-frame object statistics of uint8 videos (B, N, H, W, 3), averaged over all frames.

    one_object: share of frames with exactly one component of at least min_pixels pixels (smaller ones are specks);
    largest_share: the largest component's share of the foreground pixels (1.0 when nothing is fragmented);
    area_cv: per video, the coefficient of variation of the foreground area across frames (the median over videos);
    speed: per video, the mean step of the largest component's centre between frames, in pixels (median over videos);
    acceleration: per video, the mean of |c[n+1] - 2 c[n] + c[n-1]| of those centres, in pixels (median over
    videos): near 0 for smooth flight, large when the object jumps or jitters. Videos with an empty frame have
    no centre there and are left out of both (none_empty_share says how many remain).
    """
    videos = np.asarray(videos)
    if videos.ndim != 5 or videos.shape[-1] != 3:
        raise ValueError(f"expected uint8 videos (B, N, H, W, 3), got shape {videos.shape}")
    foreground = (np.abs(videos / 255.0 - background).max(axis=-1) > threshold)  # (B, N, H, W)
    one_object, largest_share, centres = [], [], []
    for mask in foreground.reshape(-1, *foreground.shape[2:]):
        labels, count = ndimage.label(mask, structure=EIGHT_CONNECTED)
        sizes = np.bincount(labels.ravel())[1:]  # (count,) pixels per component
        one_object.append((sizes >= min_pixels).sum() == 1)
        largest_share.append(sizes.max() / sizes.sum() if count else 0.0)
        centres.append(ndimage.center_of_mass(labels == sizes.argmax() + 1) if count else (np.nan, np.nan))
    centres = np.asarray(centres).reshape(*foreground.shape[:2], 2)  # (B, N, 2) (y, x)
    tracked = centres[~np.isnan(centres).any(axis=(1, 2))]  # videos with an object in every frame
    steps = np.linalg.norm(np.diff(tracked, axis=1), axis=-1)  # (B', N - 1)
    turns = np.linalg.norm(np.diff(tracked, n=2, axis=1), axis=-1)  # (B', N - 2)
    areas = foreground.sum(axis=(2, 3)).astype(np.float64)  # (B, N)
    area_cv = areas.std(axis=1) / np.maximum(areas.mean(axis=1), 1.0)
    return {
        "one_object": float(np.mean(one_object)),
        "largest_share": float(np.mean(largest_share)),
        "area_cv": float(np.median(area_cv)),
        "speed": float(np.median(steps.mean(axis=1))) if steps.size else float("nan"),
        "acceleration": float(np.median(turns.mean(axis=1))) if turns.size else float("nan"),
        "none_empty_share": len(tracked) / videos.shape[0],
        "num_videos": int(videos.shape[0]),
        "num_frames": int(videos.shape[1]),
    }
