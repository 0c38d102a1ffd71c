"""Does each generated frame of the bouncing data show one whole object? A cheap, readable check of the CPU demo.

Every real frame of `datasets/bouncing.py` holds exactly one flat-coloured shape on a plain background, so a
model that learned the data keeps one connected object per frame at a steady size. A model that has not breaks
it into fragments and specks. Foreground is every pixel whose colour differs from the background by more than
`threshold` (on the [0, 1] scale) in some channel; objects are its 8-connected components.
"""
import numpy as np
from scipy import ndimage

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def object_statistics(videos, background, threshold=0.25, min_pixels=3):
    """Per-frame object statistics of uint8 videos (B, N, H, W, 3), averaged over all frames.

    one_object: share of frames with exactly one component of at least min_pixels pixels (smaller ones are specks);
    largest_share: the largest component's share of the foreground pixels (1.0 when nothing is fragmented);
    area_cv: per video, the coefficient of variation of the foreground area across frames (the median over videos).
    """
    videos = np.asarray(videos)
    if videos.ndim != 5 or videos.shape[-1] != 3:
        raise ValueError(f"expected uint8 videos (B, N, H, W, 3), got shape {videos.shape}")
    foreground = (np.abs(videos / 255.0 - background).max(axis=-1) > threshold)  # (B, N, H, W)
    one_object, largest_share = [], []
    for mask in foreground.reshape(-1, *foreground.shape[2:]):
        labels, count = ndimage.label(mask, structure=EIGHT_CONNECTED)
        sizes = np.bincount(labels.ravel())[1:]  # (count,) pixels per component
        one_object.append((sizes >= min_pixels).sum() == 1)
        largest_share.append(sizes.max() / sizes.sum() if count else 0.0)
    areas = foreground.sum(axis=(2, 3)).astype(np.float64)  # (B, N)
    area_cv = areas.std(axis=1) / np.maximum(areas.mean(axis=1), 1.0)
    return {
        "one_object": float(np.mean(one_object)),
        "largest_share": float(np.mean(largest_share)),
        "area_cv": float(np.median(area_cv)),
        "num_videos": int(videos.shape[0]),
        "num_frames": int(videos.shape[1]),
    }
