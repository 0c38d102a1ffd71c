"""Does a text-to-video sample of the bouncing shapes do what its prompts say? Read by the object measure.

Each frame's prompt ("a red circle moving right", datasets/bouncing.py: caption) names a colour, a shape and a
direction. Per frame the object measure (tools/metrics/objects.py: read_frame) reads the object's colour, shape
and centre; a frame that does not show the object scores wrong on every attribute, so noise and blank frames
score 0. Direction is read from the centre's step to the next frame (the larger of its two components), on frame
pairs whose prompts agree on the direction. Where a video's prompts change at frame k (an event), the frame at
which the video changes is the split that best separates the old attribute from the new one; its distance from
k is the switch error. Chance for a guess is 1/8 (colour), 1/3 (shape) and 1/4 (direction); `shuffled_prompts`
gives the control that pairs each video with another video's prompts, which a model that follows its prompts
scores near chance on.
"""
import numpy as np

from datasets.bouncing import (COLOUR_NAMES, DIRECTION_VECTORS, DIRECTIONS, HELD_OUT_COMBINATIONS, SHAPES,
                               parse_caption)
from tools.metrics.objects import read_videos

ATTRIBUTES = ("colour", "shape", "direction")
CHANCE = {"colour": 1 / len(COLOUR_NAMES), "shape": 1 / len(SHAPES), "direction": 1 / len(DIRECTIONS)}


def observed_directions(readings, strict=True):
    """(N - 1,) index into DIRECTIONS of each step between frames, -1 where either frame lacks the object."""
    vectors = np.array([DIRECTION_VECTORS[name] for name in DIRECTIONS])  # (4, 2) (dy, dx)
    steps = []
    for before, after in zip(readings[:-1], readings[1:]):
        seen = (before.shows_object and after.shows_object) if strict else \
            bool(np.isfinite(before.centre).all() and np.isfinite(after.centre).all())
        steps.append(int((vectors @ (after.centre - before.centre)).argmax()) if seen else -1)
    return np.array(steps)


def observed_attributes(readings, strict=True):
    """{"colour", "shape": (N,), "direction": (N - 1,)} indices read from a video, -1 where nothing is read.
    strict: only frames that show the object; else whatever the largest foreground part reads as (its nearest
    palette colour, a real-sized shape that fits it, its centre), which the control must then hold at chance."""
    def read(reading, value):
        return value if reading.shows_object or not strict else -1

    return {
        "colour": np.array([read(r, r.colour) for r in readings]),
        "shape": np.array([read(r, r.shape) for r in readings]),
        "direction": observed_directions(readings, strict),
    }


def asked_attributes(prompts):
    """The same indices from a video's N prompts; a direction is asked of step i -> i + 1 only where prompts i
    and i + 1 agree on it (-2 elsewhere: not scored)."""
    parsed = [parse_caption(prompt) for prompt in prompts]
    colour = np.array([COLOUR_NAMES.index(c) for c, _, _ in parsed])
    shape = np.array([SHAPES.index(s) for _, s, _ in parsed])
    direction = np.array([DIRECTIONS.index(d) for _, _, d in parsed])
    return {"colour": colour, "shape": shape,
            "direction": np.where(direction[:-1] == direction[1:], direction[:-1], -2)}


def best_switch(observed, old, new):
    """The split frame f (observed[:f] old, observed[f:] new) that most observations agree with (ties: their
    mean), and the share of observations that agree with it."""
    candidates = np.arange(1, len(observed))
    agreement = np.array([(observed[:f] == old).sum() + (observed[f:] == new).sum() for f in candidates])
    best = candidates[agreement == agreement.max()]
    return float(best.mean()), float(agreement.max() / len(observed))


def switch_reading(prompts, observed):
    """(attribute, frame asked, frame observed, share agreeing) of a video's first prompt change, else None."""
    changes = [k for k in range(1, len(prompts)) if prompts[k] != prompts[k - 1]]
    if not changes:
        return None
    k = changes[0]
    before, after = parse_caption(prompts[k - 1]), parse_caption(prompts[k])
    index = next(i for i in range(3) if before[i] != after[i])  # the first attribute that changes
    names = (COLOUR_NAMES, SHAPES, DIRECTIONS)[index]
    frame, share = best_switch(observed[ATTRIBUTES[index]], names.index(before[index]), names.index(after[index]))
    return ATTRIBUTES[index], k, frame, share


def is_held_out(prompt):
    return parse_caption(prompt)[:2] in HELD_OUT_COMBINATIONS


def text_following_scores(videos, frame_prompts, threshold=0.25, readings=None):
    """Scores of uint8 videos (B, N, H, W, 3) against B lists of N prompts (see the module docstring).

    colour / shape / direction: share of frames (frame steps) whose object matches the prompt, frames that do not
    show it counting wrong; *_shown: the same over frames that show it. switch_*: over videos whose prompts
    change: the mean absolute error in frames of the change, and the share of those videos that follow it (at
    least 3/4 of their frames agree with the best split, and it lies within one frame of the asked one).
    *_any: the same read from any foreground (`observed_attributes` with strict=False), for blobs that are
    not yet clean objects; noise then scores near chance there, so read it beside the shuffled control.
    """
    readings = readings if readings is not None else read_videos(videos, threshold)
    if len(readings) != len(frame_prompts) or any(len(r) != len(p) for r, p in zip(readings, frame_prompts)):
        raise ValueError(f"text_following_scores: {len(readings)} videos need as many prompt lists of one prompt "
                         "per frame")
    scores = {"num_videos": len(readings),
              "shows_object": float(np.mean([r.shows_object for video in readings for r in video]))}
    for strict, suffix in ((True, ""), (False, "_any")):
        hits = {key: [] for key in ATTRIBUTES}
        shown = {key: [] for key in ATTRIBUTES}
        switches = []
        for video_readings, prompts in zip(readings, frame_prompts):
            observed, asked = observed_attributes(video_readings, strict), asked_attributes(prompts)
            for key in ATTRIBUTES:
                scored, seen = asked[key] >= 0, (asked[key] >= 0) & (observed[key] >= 0)
                hits[key] += (observed[key][scored] == asked[key][scored]).tolist()
                shown[key] += (observed[key][seen] == asked[key][seen]).tolist()
            reading = switch_reading(prompts, observed)
            if reading is not None:
                switches.append(reading)
        for key in ATTRIBUTES:
            scores[key + suffix] = float(np.mean(hits[key])) if hits[key] else float("nan")
            if strict:
                scores[f"{key}_shown"] = float(np.mean(shown[key])) if shown[key] else float("nan")
                scores[f"{key}_chance"] = CHANCE[key]
        scores["switch_videos"] = len(switches)
        if switches:
            errors = np.array([abs(frame - asked) for _, asked, frame, _ in switches])
            followed = [share >= 0.75 and abs(frame - asked) <= 1 for _, asked, frame, share in switches]
            scores.update({f"switch_error{suffix}": float(errors.mean()),
                           f"switch_exact{suffix}": float(np.mean(errors == 0)),
                           f"switch_followed{suffix}": float(np.mean(followed))})
    return scores


def shuffled_prompts(frame_prompts, seed=0):
    """The control: every video gets another video's prompts (a random derangement)."""
    rng = np.random.default_rng(seed)
    count = len(frame_prompts)
    if count < 2:
        raise ValueError("shuffled_prompts needs at least two videos")
    while True:
        order = rng.permutation(count)
        if not (order == np.arange(count)).any():
            return [frame_prompts[i] for i in order]
