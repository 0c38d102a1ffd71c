"""Does a generated bouncing-shapes video show what the data shows? The CPU demo's object check.

Every real frame of `datasets/bouncing.py` holds one flat circle, square or diamond of a known size, in one palette
colour, on a plain background. Along a clip the object keeps its colour and shape, flies straight at a known speed
and turns only at the walls. The check asks each of these of a generated video, using what the generator knows,
so that noise, blank, saturated and multi-object frames fail it:

- A frame *shows the object* when its foreground (pixels whose colour differs from the background by more than
  `threshold` in some channel) is one 8-connected part, that part's area lies in the range real objects cover,
  its inner pixels match one palette colour, and a circle, square or diamond drawn at its centre and size covers
  it (intersection over union at least MIN_SHAPE_IOU) clearly better than the other two do (by MIN_SHAPE_MARGIN,
  in frames of 32 px and up): a perfect circle overlaps the square of its area by 0.83, so a fit alone would pass
  any round blob as a square.
- A video *keeps* its object when every frame shows it; it keeps its colour (shape) when every frame shows the
  same palette colour (shape). Its motion is *plausible* when the centres follow straight flight mirrored at the
  walls (a triangle wave per axis, fitted as the data moves) at a speed that real objects have.
- Where the true frames exist (conditioned tasks on held-out clips), `task_scores` measures the generated object
  against the scene's closed-form trajectory, colour and shape, beside copying the nearest given frame, and how far
  its colour drifts from the colour of the given frames.
"""
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial.distance import pdist

from datasets.bouncing import (BACKGROUND, OBJECT_SIZE, OBJECT_SPEED, PALETTE, SHAPE_EXTENT, SHAPES, object_centers,
                               shape_coverage)

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
MIN_PART_PIXELS = 3  # smaller components are specks, not a second object ...
MIN_LARGEST_SHARE = 0.95  # ... but together they may hold at most 5% of the foreground
AREA_TOLERANCE = 0.3  # area may be 30% below the smallest or above the largest real object's (edge pixels)
MAX_COLOUR_ERROR = 0.15  # mean over inner pixels of the largest channel difference to the palette colour
# Shape: intersection over union of the object with its best-fitting circle, square or diamond, and its lead over
# the best fit of another shape. Real 64-px frames reach IoU >= 0.97 and a lead >= 0.11, through the demo's
# autoencoder >= 0.95 and >= 0.10; the demo's lumpy blobs a median of 0.87 and 0.05. In frames smaller than
# SHAPE_REFERENCE_SIZE a pixel of outline weighs more, and a few pixels cannot tell the shapes apart (real 16-px
# frames reach IoU 0.86, but a lead of 0 now and then): there the IoU bound loosens in proportion (16 px: 0.8) and
# no lead is asked.
MIN_SHAPE_IOU = 0.9
MIN_SHAPE_MARGIN = 0.05
SHAPE_REFERENCE_SIZE = 32
SPEED_TOLERANCE = 0.15  # plausible speed: real objects' range, 15% wider on each side
MAX_TRACK_RESIDUAL = 0.35  # px, RMS distance of the centres from the fitted bouncing trajectory
SHAPE_SCALES = np.linspace(0.8, 1.2, 9)  # extents tried around the area-matched one when fitting a shape
# Colour drift (task_scores) that still reads as the object's own colour: a colour less than half the smallest RGB
# distance between two palette colours away from one of them is nearer it than any other (triangle inequality:
# its distance to another is at least that smallest distance less its own). Yellow and orange are the closest pair,
# 0.256 apart, so 0.128. A drift is measured from the given frames' colour, on real frames the palette's.
MAX_COLOUR_DRIFT = float(pdist(PALETTE).min() / 2)


def object_area_range(image_size):
    """(smallest, largest) area in pixels of the shapes the generator draws, over every shape and size."""
    areas = {"circle": np.pi, "square": 4.0, "diamond": 2.0}  # area / extent**2
    low, high = (size * image_size for size in OBJECT_SIZE)
    return (min(areas[s] * (SHAPE_EXTENT[s] * low) ** 2 for s in SHAPES),
            max(areas[s] * (SHAPE_EXTENT[s] * high) ** 2 for s in SHAPES))


def speed_range(image_size, frame_interval):
    """(slowest, fastest) speed of real objects in pixels per video frame."""
    return tuple(speed * image_size * frame_interval for speed in OBJECT_SPEED)


@dataclass
class FrameReading:
    shows_object: bool
    one_part: bool  # the checks, each on its own
    plausible_area: bool
    palette_colour: bool
    recognised_shape: bool
    centre: np.ndarray  # (2,) (y, x) in pixels (pixel centres at +0.5, as the generator draws); NaN: no foreground
    colour: int  # index into PALETTE of the nearest colour (-1: no foreground)
    shape: int  # index into SHAPES of the best-fitting shape (-1: no foreground, or no real-sized shape fits)
    extent: float  # half-size of that shape's bounding box, in pixels (NaN where shape is -1)
    mean_colour: np.ndarray  # (3,) RGB in [0, 1], mean of the pixels the colour check reads; NaN: no foreground


def shape_bounds(image_size):
    """(least IoU, least lead over another shape) a frame of this size must reach to show a recognised shape."""
    if image_size >= SHAPE_REFERENCE_SIZE:
        return MIN_SHAPE_IOU, MIN_SHAPE_MARGIN
    return 1 - (1 - MIN_SHAPE_IOU) * SHAPE_REFERENCE_SIZE / image_size, 0.0


def _fit_shape(part, centre, area, contrast, threshold):
    """(shape index, extent, IoU, lead) of the shape that best covers a boolean mask, drawn as the generator draws
    it; the lead is its IoU less the best IoU of any other shape.

    Each shape is tried at the extent that gives it the object's (soft) area and at a few around it; only extents
    that real objects of that shape have (within AREA_TOLERANCE) count, so a frame-filling blob is no square.
    """
    size = part.shape[0]
    grid = np.arange(size) + 0.5
    dy, dx = grid[:, None] - centre[0], grid[None, :] - centre[1]  # (H, 1), (1, W)
    area_extent = {"circle": np.sqrt(area / np.pi), "square": np.sqrt(area) / 2, "diamond": np.sqrt(area / 2)}
    scales = SHAPE_SCALES[np.argsort(np.abs(SHAPE_SCALES - 1), kind="stable")]  # ties go to the area-matched size
    fits = []  # (IoU, extent) of each shape's best fit
    for shape in SHAPES:
        low, high = (SHAPE_EXTENT[shape] * fraction * size for fraction in OBJECT_SIZE)
        fit = (0.0, np.nan)
        for extent in area_extent[shape] * scales:
            if not (1 - AREA_TOLERANCE) * low <= extent <= (1 + AREA_TOLERANCE) * high:
                continue
            template = shape_coverage(shape, dy, dx, extent) * contrast > threshold  # the mask it would give
            iou = (template & part).sum() / max((template | part).sum(), 1)
            if iou > fit[0]:
                fit = (float(iou), float(extent))
        fits.append(fit)
    ious = np.array([iou for iou, _ in fits])
    index = int(ious.argmax())
    if ious[index] == 0:
        return -1, np.nan, 0.0, 0.0
    return index, fits[index][1], float(ious[index]), float(ious[index] - np.delete(ious, index).max())


def read_frame(frame, threshold=0.25):
    """What one uint8 frame (H, W, 3) shows: the checks above, and the object's centre, colour and shape."""
    image = frame / 255.0
    distance = np.abs(image - BACKGROUND).max(axis=-1)  # (H, W) largest channel difference to the background
    foreground = distance > threshold
    labels, count = ndimage.label(foreground, structure=EIGHT_CONNECTED)
    if count == 0:
        return FrameReading(False, False, False, False, False, np.full(2, np.nan), -1, -1, np.nan, np.full(3, np.nan))
    sizes = np.bincount(labels.ravel())[1:]  # (count,) pixels per component
    part = labels == sizes.argmax() + 1
    one_part = (sizes >= MIN_PART_PIXELS).sum() == 1 and sizes.max() >= MIN_LARGEST_SHARE * sizes.sum()
    low, high = object_area_range(frame.shape[0])
    plausible_area = (1 - AREA_TOLERANCE) * low <= part.sum() <= (1 + AREA_TOLERANCE) * high
    inner = ndimage.binary_erosion(part)  # edge pixels blend with the background
    pixels = image[inner if inner.any() else part]  # (P, 3)
    colour_errors = np.abs(pixels[:, None, :] - PALETTE[None]).max(axis=-1).mean(axis=0)  # (colours,)
    colour = int(colour_errors.argmin())
    # Coverage of each pixel on and around the part (what the renderer blended), so that the centre and area are
    # exact on real frames rather than quantised by the threshold.
    contrast = np.abs(PALETTE[colour] - BACKGROUND).max()
    around = ndimage.binary_dilation(part, structure=EIGHT_CONNECTED) & ((labels == 0) | part)
    coverage = np.where(around, np.clip(distance / contrast, 0, 1), 0)  # (H, W)
    centre = np.asarray(ndimage.center_of_mass(coverage)) + 0.5
    shape, extent, iou, lead = _fit_shape(part, centre, coverage.sum(), contrast, threshold)
    min_iou, min_lead = shape_bounds(frame.shape[0])
    recognised_shape = iou >= min_iou and lead >= min_lead
    checks = (one_part, plausible_area, colour_errors[colour] <= MAX_COLOUR_ERROR, recognised_shape)
    return FrameReading(all(checks), *map(bool, checks), centre, colour, shape, extent, pixels.mean(axis=0))


def fit_bouncing_axis(positions, low, high, max_speed):
    """(RMS residual, velocity) of the best triangle wave low <-> high through positions (N,), one per frame.

    The generator moves each axis this way: straight at a constant velocity, mirrored at the walls. A grid search
    over the start position and velocity (about 0.1 px and 0.01 px/frame apart) is exact enough for a few frames.
    """
    span = high - low
    if span <= 0:
        return np.inf, 0.0
    starts = np.linspace(low, high, 81)
    velocities = np.linspace(-max_speed, max_speed, 2 * int(np.ceil(max_speed / 0.01)) + 1)
    frames = np.arange(len(positions))
    unfolded = starts[:, None, None] - low + velocities[None, :, None] * frames  # (S, V, N)
    track = low + span - np.abs(np.mod(unfolded, 2 * span) - span)
    residual = np.sqrt(((track - positions) ** 2).mean(axis=-1))  # (S, V)
    best = np.unravel_index(residual.argmin(), residual.shape)
    return float(residual[best]), float(velocities[best[1]])


def fit_motion(centres, extent, image_size, max_speed):
    """(RMS residual over both axes, speed in px/frame) of the bouncing trajectory that best fits (N, 2) centres."""
    fits = [fit_bouncing_axis(centres[:, axis], extent, image_size - extent, max_speed) for axis in range(2)]
    return float(np.sqrt(np.mean([residual**2 for residual, _ in fits]))), float(np.hypot(*[v for _, v in fits]))


def read_videos(videos, threshold=0.25):
    """FrameReading per frame of uint8 videos (B, N, H, W, 3), as a list of lists."""
    videos = np.asarray(videos)
    if videos.ndim != 5 or videos.shape[-1] != 3 or videos.dtype != np.uint8:
        raise ValueError(f"expected uint8 videos (B, N, H, W, 3), got {videos.dtype} of shape {videos.shape}")
    return [[read_frame(frame, threshold) for frame in video] for video in videos]


def object_statistics(videos, frame_interval, threshold=0.25, readings=None):
    """Frame and video scores of uint8 videos (B, N, H, W, 3), as shares (see the module docstring).

    frame_interval: time steps of the generator between frames (the training clips'), which sets the real speeds.
    speed and track_residual are medians over the videos that keep their object (NaN when none does).
    readings: read_videos(videos), when the caller has them already.
    """
    readings = read_videos(videos, threshold) if readings is None else readings
    image_size = np.asarray(videos).shape[2]
    slowest, fastest = speed_range(image_size, frame_interval)
    max_speed = 1.5 * fastest
    frame_checks = ("shows_object", "one_part", "plausible_area", "palette_colour", "recognised_shape")
    stats = {check: float(np.mean([getattr(r, check) for video in readings for r in video]))
             for check in frame_checks}
    kept, colour_kept, shape_kept, plausible, everything, speeds, residuals = ([] for _ in range(7))
    for video in readings:
        keeps = all(r.shows_object for r in video)
        keeps_colour = keeps and len({r.colour for r in video}) == 1
        keeps_shape = keeps and len({r.shape for r in video}) == 1
        moves_plausibly = False
        if keeps:
            extent = float(np.median([r.extent for r in video]))
            residual, speed = fit_motion(np.stack([r.centre for r in video]), extent, image_size, max_speed)
            speeds.append(speed)
            residuals.append(residual)
            moves_plausibly = (residual <= MAX_TRACK_RESIDUAL
                               and (1 - SPEED_TOLERANCE) * slowest <= speed <= (1 + SPEED_TOLERANCE) * fastest)
        kept.append(keeps)
        colour_kept.append(keeps_colour)
        shape_kept.append(keeps_shape)
        plausible.append(moves_plausibly)
        everything.append(keeps_colour and keeps_shape and moves_plausibly)
    stats.update({
        "videos_keep_object": float(np.mean(kept)),
        "videos_keep_colour": float(np.mean(colour_kept)),
        "videos_keep_shape": float(np.mean(shape_kept)),
        "videos_move_plausibly": float(np.mean(plausible)),
        "videos_all_checks": float(np.mean(everything)),
        "speed": float(np.median(speeds)) if speeds else float("nan"),
        "track_residual": float(np.median(residuals)) if residuals else float("nan"),
        "num_videos": len(readings),
        "num_frames": len(readings[0]),
    })
    return stats


def scene_truth(scene, times):
    """(centres (N, 2), colour index, shape index) of a one-object scene at the given generator times."""
    (obj,) = scene.objects
    colour = int(np.abs(PALETTE - obj.color).max(axis=1).argmin())
    return object_centers(obj, times, scene.image_size), colour, SHAPES.index(obj.shape)


def nearest_given_frames(given):
    """int (N,): for each frame index, the nearest given frame (ties: the earlier one); given: bool (N,)."""
    given_indices = np.flatnonzero(given)
    return np.array([given_indices[np.abs(given_indices - n).argmin()] for n in range(len(given))])


def task_scores(videos, scenes, times, given, threshold=0.25, scored=None, readings=None):
    """A conditioned task's generated frames against the truth of held-out scenes, beside the copy baseline.

    videos: uint8 (B, N, H, W, 3) made from the given frames of `scenes` (B one-object scenes) at generator
    `times` (N,); given: bool (N,), the frames the model was given; scored: bool (N,), the generated frames to
    score (default: all; a long video's windows score one at a time); readings: read_videos(videos), when the
    caller has them already. Over the scored frames:
    shows_object: share that show the object (all checks); colour_match / shape_match: share of those in the
    scene's colour / shape; has_foreground: share with any foreground; centre_error: mean distance in pixels of
    their largest part's centre from the true centre; copy_centre_error: the same over the same frames for copying
    the nearest given frame (an object that stops where it was last seen), the trivial predictor to beat;
    colour_drift: mean distance of their object's colour (FrameReading.mean_colour) from its mean over the video's
    given frames (the colour the model was shown; videos whose given frames show nothing count for nothing). It
    sees the slow colour shift of long videos that colour_match misses until the colour crosses to a neighbouring
    palette colour. Euclidean distance in RGB (channels in [0, 1], so 0 to sqrt(3)) rather than a hue difference:
    the palette holds white, whose hue is undefined, and a fade towards grey keeps its hue. Real clips drift 0.006
    (16 px) and 0.001 (64 px) on average, one 16-px clip up to 0.03 (edge pixels left inside a small object blend
    with the background); below MAX_COLOUR_DRIFT (0.128) the colour is still nearer its own palette colour than any
    other, a full step to another palette colour is 0.26 to 1.21.
    """
    given = np.asarray(given, dtype=bool)
    if given.all() or not given.any():
        raise ValueError("task_scores needs both given and generated frames")
    scored = ~given if scored is None else np.asarray(scored, dtype=bool)
    if (scored & given).any() or not scored.any():
        raise ValueError("task_scores scores generated frames only, and at least one")
    readings = read_videos(videos, threshold) if readings is None else readings
    nearest = nearest_given_frames(given)
    shown, foreground, errors, copy_errors, colour_match, shape_match, drifts = [], [], [], [], [], [], []
    for video, scene in zip(readings, scenes, strict=True):
        centres, colour, shape = scene_truth(scene, times)
        given_colours = [video[n].mean_colour for n in np.flatnonzero(given) if not np.isnan(video[n].centre).any()]
        reference_colour = np.mean(given_colours, axis=0) if given_colours else None  # (3,)
        for n in np.flatnonzero(scored):
            reading = video[n]
            shown.append(reading.shows_object)
            foreground.append(not np.isnan(reading.centre).any())
            if foreground[-1]:
                errors.append(np.linalg.norm(reading.centre - centres[n]))
                copy_errors.append(np.linalg.norm(centres[nearest[n]] - centres[n]))
                if reference_colour is not None:
                    drifts.append(np.linalg.norm(reading.mean_colour - reference_colour))
            if reading.shows_object:
                colour_match.append(reading.colour == colour)
                shape_match.append(reading.shape == shape)

    def mean(values):
        return float(np.mean(values)) if values else float("nan")

    return {"shows_object": mean(shown), "colour_match": mean(colour_match), "shape_match": mean(shape_match),
            "has_foreground": mean(foreground), "centre_error": mean(errors), "copy_centre_error": mean(copy_errors),
            "colour_drift": mean(drifts),
            "num_videos": len(readings), "generated_frames": int(scored.sum())}
