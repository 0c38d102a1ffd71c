"""Bouncing shapes: the built-in procedural video dataset (no files), the default of the CPU demo.

One flat-coloured shape (circle, square or diamond) moves at constant velocity and bounces off the walls
of a near-black frame. It spans about half the frame, a size the demo's tiny model draws whole more often than
smaller shapes (docs/experiments.md). One frame shows where the object is but not where it goes; two or more
frames fix the motion, so frame-conditioned generation (image-to-video, prediction, interpolation) has something
to learn. The scene is kept this simple because the demo trains for only minutes on a CPU. Positions are a closed
form of time (a triangle wave per axis), so any frame of the timeline renders directly and `frame_interval`
subsamples the timeline exactly as it subsamples a real video.
"""

import operator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

SHAPES = ("circle", "square", "diamond")
# Bright, mutually distinct colours (RGB in [0, 1]), all far from the background.
PALETTE = np.array(
    [
        [0.95, 0.25, 0.20],  # red
        [0.30, 0.85, 0.30],  # green
        [0.35, 0.55, 1.00],  # blue
        [0.98, 0.85, 0.20],  # yellow
        [0.20, 0.90, 0.90],  # cyan
        [0.90, 0.35, 0.90],  # magenta
        [1.00, 0.60, 0.15],  # orange
        [0.95, 0.95, 0.95],  # white
    ],
    dtype=np.float32,
)
# Half-extent (centre to bounding-box edge) relative to the drawn size, so shapes look alike in size.
SHAPE_EXTENT = {"circle": 1.0, "square": 0.85, "diamond": 1.25}
BACKGROUND = np.float32(0.05)  # grey level of every background
OBJECT_SIZE = (0.25, 0.32)  # range of the object's half-size, as a fraction of the frame size
OBJECT_SPEED = (0.02, 0.04)  # range of its speed in frame sizes per simulated time step
SPLIT_STREAMS = {"train": 0, "test": 1}


@dataclass(frozen=True)
class BouncingObject:
    shape: str
    color: np.ndarray  # (3,) RGB in [0, 1]
    extent: float  # half-size of the bounding box in pixels; the object bounces when it touches a wall
    position: np.ndarray  # (2,) (y, x) centre at time 0, in pixels, inside [extent, image_size - extent]
    velocity: np.ndarray  # (2,) (dy, dx) pixels per simulated time step


@dataclass(frozen=True)
class BouncingScene:
    image_size: int
    background: np.ndarray  # (H, W, 3) float32 in [0, 1], the same in every frame
    objects: tuple


def sample_scene(rng, image_size=32):
    """A random scene: one object with a random shape, colour, size, start position and velocity."""
    color = PALETTE[int(rng.integers(len(PALETTE)))]
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    extent = SHAPE_EXTENT[shape] * rng.uniform(*OBJECT_SIZE) * image_size
    position = rng.uniform(extent, image_size - extent, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(*OBJECT_SPEED) * image_size
    velocity = speed * np.array([np.sin(angle), np.cos(angle)])
    background = np.full((image_size, image_size, 3), BACKGROUND, dtype=np.float32)
    return BouncingScene(image_size, background, (BouncingObject(shape, color, float(extent), position, velocity),))


def object_centers(obj, times, image_size):
    """(T, 2) centres at the given times: straight flight, mirrored at the walls (a triangle wave)."""
    low, span = obj.extent, image_size - 2 * obj.extent
    unfolded = obj.position - low + np.asarray(times, dtype=np.float64)[:, None] * obj.velocity  # (T, 2)
    folded = np.mod(unfolded, 2 * span)
    return low + span - np.abs(folded - span)


def _box_distance(dy, dx, half_size):
    """Exact signed distance to an axis-aligned square."""
    over_y, over_x = np.abs(dy) - half_size, np.abs(dx) - half_size
    outside = np.sqrt(np.maximum(over_y, 0) ** 2 + np.maximum(over_x, 0) ** 2)
    return outside + np.minimum(np.maximum(over_y, over_x), 0)


def _signed_distance(shape, dy, dx, extent):
    """Signed distance from pixel centres to the shape's outline (negative inside)."""
    if shape == "circle":
        return np.sqrt(dy**2 + dx**2) - extent
    if shape == "square":
        return _box_distance(dy, dx, extent)
    if shape == "diamond":
        # A square turned 45 degrees with corners at +-extent. Measured in units of sqrt(2) pixels,
        # so the anti-aliasing ramp spans what a pixel covers across a diagonal edge.
        return _box_distance((dy + dx) * 0.5, (dy - dx) * 0.5, extent * 0.5)
    raise ValueError(f"unknown shape {shape!r}; choose one of {SHAPES}")


def shape_coverage(shape, dy, dx, extent):
    """Share of each pixel the shape covers (anti-aliased over one pixel): what render_scene draws, and what
    tools/metrics/objects.py fits to a generated object to recognise its shape."""
    return np.clip(0.5 - _signed_distance(shape, dy, dx, extent), 0.0, 1.0)


def render_scene(scene, times):
    """float32 (T, 3, H, W) in [-1, 1]: the scene at the given times, with anti-aliased edges."""
    pixel_centres = np.arange(scene.image_size, dtype=np.float32) + 0.5
    frames = np.broadcast_to(scene.background, (len(times), *scene.background.shape)).copy()  # (T, H, W, 3)
    for obj in scene.objects:
        centers = object_centers(obj, times, scene.image_size).astype(np.float32)  # (T, 2)
        dy = pixel_centres[None, :, None] - centers[:, 0, None, None]  # (T, H, 1)
        dx = pixel_centres[None, None, :] - centers[:, 1, None, None]  # (T, 1, W)
        coverage = shape_coverage(obj.shape, dy, dx, obj.extent)[..., None]  # (T, H, W, 1)
        frames = frames * (1.0 - coverage) + coverage * obj.color
    # Scaled in numpy: a torch op on a clip this small can cost more in thread start-up than in work.
    return torch.from_numpy(np.ascontiguousarray((frames * 2.0 - 1.0).transpose(0, 3, 1, 2), dtype=np.float32))


class BouncingShapes(Dataset):
    """A virtual dataset of `length` bouncing-shape clips, each fixed by (seed, split, index)."""

    num_classes = 0

    def __init__(self, num_frames=16, frame_interval=3, image_size=32, split="train", seed=0, length=10000,
                 random_flip=False):
        if split not in SPLIT_STREAMS:
            raise ValueError(f"bouncing: split must be one of {sorted(SPLIT_STREAMS)}, got {split!r}")
        for key, value in (("num_frames", num_frames), ("frame_interval", frame_interval),
                           ("image_size", image_size), ("length", length)):
            if int(value) != value or value < 1:
                raise ValueError(f"bouncing: {key} must be a positive integer, got {value!r}")
        if int(seed) != seed or seed < 0:
            raise ValueError(f"bouncing: seed must be a non-negative integer, got {seed!r}")
        self.num_frames = int(num_frames)
        self.frame_interval = int(frame_interval)
        self.image_size = int(image_size)
        self.split = split
        self.seed = int(seed)
        self.length = int(length)
        self.random_flip = random_flip
        self.epoch = 0

    def set_epoch(self, epoch):
        """Only the random flip depends on the epoch; the clips themselves are fixed per index."""
        self.epoch = int(epoch)

    def __len__(self):
        return self.length

    def scene(self, index):
        return sample_scene(np.random.default_rng([self.seed, SPLIT_STREAMS[self.split], index]), self.image_size)

    def __getitem__(self, index):
        index = operator.index(index)
        if not 0 <= index < self.length:
            raise IndexError(f"bouncing: index {index} is out of range for {self.length} items")
        times = self.frame_interval * np.arange(self.num_frames)
        video = render_scene(self.scene(index), times)  # (N, 3, H, W)
        if self.random_flip:
            flip_rng = np.random.default_rng([self.seed, SPLIT_STREAMS[self.split], index, self.epoch])
            if flip_rng.random() < 0.5:
                video = video.flip(-1)
        return {"video": video, "label": torch.tensor(0, dtype=torch.int64), "index": index, "skipped": ""}


#################################################################################
#                    Captioned clips, for text-to-video                          #
#################################################################################

COLOUR_NAMES = ("red", "green", "blue", "yellow", "cyan", "magenta", "orange", "white")  # PALETTE's rows
DIRECTIONS = ("up", "down", "left", "right")
DIRECTION_VECTORS = {"up": (-1.0, 0.0), "down": (1.0, 0.0), "left": (0.0, -1.0), "right": (0.0, 1.0)}  # (dy, dx)
# Colour-shape pairs never shown in training, one per shape, so a prompt naming one tests composition.
HELD_OUT_COMBINATIONS = (("red", "diamond"), ("green", "circle"), ("blue", "square"))
MAX_HEADING_JITTER = np.pi / 6  # captioned motion keeps within 30 degrees of an axis, so its direction is clear
CAPTIONED_SPEED = (0.01, 0.02)  # half OBJECT_SPEED: most clips then cross the frame without a bounce
EVENT_KINDS = ("colour", "shape", "direction")  # direction: the object turns back


def caption(colour, shape, direction):
    return f"a {colour} {shape} moving {direction}"


def parse_caption(text):
    """(colour, shape, direction) of a caption `caption()` wrote; ValueError naming the caption otherwise."""
    words = text.split()
    if len(words) != 5 or words[0] != "a" or words[3] != "moving" or words[1] not in COLOUR_NAMES \
            or words[2] not in SHAPES or words[4] not in DIRECTIONS:
        raise ValueError(f"caption {text!r} is not 'a <colour> <shape> moving <direction>' with colour in "
                         f"{COLOUR_NAMES}, shape in {SHAPES}, direction in {DIRECTIONS}")
    return words[1], words[2], words[4]


def velocities(obj, times, image_size):
    """(T, 2) the object's (dy, dx) velocity at each time: its start velocity, mirrored by the bounces so far."""
    low, span = obj.extent, image_size - 2 * obj.extent
    unfolded = obj.position - low + np.asarray(times, dtype=np.float64)[:, None] * obj.velocity  # (T, 2)
    return obj.velocity * np.where(np.mod(unfolded, 2 * span) < span, 1.0, -1.0)


def headings(obj, times, image_size):
    """(T,) index into DIRECTIONS of the object's motion at each time: the sign of its velocity along its main
    axis, which flips at each bounce off a wall across that axis."""
    axis = int(np.abs(obj.velocity).argmax())
    forward = velocities(obj, times, image_size)[:, axis] > 0
    names = ("down", "up") if axis == 0 else ("right", "left")
    return np.where(forward, DIRECTIONS.index(names[0]), DIRECTIONS.index(names[1]))


@dataclass(frozen=True)
class CaptionedClip:
    """A clip in segments: from frame starts[k] on, objects[k] moves, its clock starting at that frame's time.
    An event (a new colour or shape, or a turn back) starts a segment; the track stays unbroken across it."""

    image_size: int
    times: np.ndarray  # (N,) generator time of each frame
    starts: tuple  # first frame of each segment; starts[0] = 0
    objects: tuple  # BouncingObject of each segment, its position at the segment's first frame

    def segments(self):
        ends = (*self.starts[1:], len(self.times))
        return [(start, end, obj) for start, end, obj in zip(self.starts, ends, self.objects)]

    def frame_attributes(self):
        """Per frame: (colour name, shape, direction)."""
        attributes = []
        for start, end, obj in self.segments():
            colour = COLOUR_NAMES[int(np.abs(PALETTE - obj.color).sum(axis=1).argmin())]
            local_times = self.times[start:end] - self.times[start]
            attributes += [(colour, obj.shape, DIRECTIONS[d]) for d in headings(obj, local_times, self.image_size)]
        return attributes

    def captions(self):
        return tuple(caption(*attributes) for attributes in self.frame_attributes())

    def centres(self):
        """(N, 2) the object's (y, x) centre in each frame."""
        return np.concatenate([object_centers(obj, self.times[start:end] - self.times[start], self.image_size)
                               for start, end, obj in self.segments()])

    def render(self):
        """float32 (N, 3, H, W) in [-1, 1]."""
        background = np.full((self.image_size, self.image_size, 3), BACKGROUND, dtype=np.float32)
        return torch.cat([render_scene(BouncingScene(self.image_size, background, (obj,)),
                                       self.times[start:end] - self.times[start])
                          for start, end, obj in self.segments()])


def allowed(colour, shape, split):
    return split != "train" or (colour, shape) not in HELD_OUT_COMBINATIONS


def sample_captioned_clip(rng, times, image_size, split="train", event_prob=0.5, colour=None, shape=None,
                          direction=None):
    """A captioned clip; colour / shape / direction fix the first segment's (None: drawn, avoiding the held-out
    pairs in the train split). With probability event_prob, from a frame in the middle half on, the object takes
    another colour or shape (never a held-out pair in training) or turns back, and the captions change there."""
    num_frames = len(times)
    while colour is None or shape is None:
        drawn = (colour or COLOUR_NAMES[int(rng.integers(len(COLOUR_NAMES)))],
                 shape or SHAPES[int(rng.integers(len(SHAPES)))])
        if allowed(*drawn, split):
            colour, shape = drawn
    direction = direction or DIRECTIONS[int(rng.integers(len(DIRECTIONS)))]
    size = rng.uniform(*OBJECT_SIZE) * image_size
    extent = SHAPE_EXTENT[shape] * size
    heading = np.arctan2(*DIRECTION_VECTORS[direction]) + rng.uniform(-MAX_HEADING_JITTER, MAX_HEADING_JITTER)
    velocity = rng.uniform(*CAPTIONED_SPEED) * image_size * np.array([np.sin(heading), np.cos(heading)])
    # Start where the first frames fly towards `direction` before any bounce: in the half of the frame behind it.
    position = rng.uniform(extent, image_size - extent, size=2)
    axis = int(np.abs(velocity).argmax())
    centre_line = image_size / 2
    behind = (extent, centre_line) if velocity[axis] > 0 else (centre_line, image_size - extent)
    position[axis] = rng.uniform(*behind)
    first = BouncingObject(shape, PALETTE[COLOUR_NAMES.index(colour)], float(extent), position, velocity)
    if num_frames < 4 or rng.random() >= event_prob:
        return CaptionedClip(image_size, np.asarray(times), (0,), (first,))
    event_frame = int(rng.integers(num_frames // 4, num_frames - num_frames // 4))
    kind = EVENT_KINDS[int(rng.integers(len(EVENT_KINDS)))]
    while kind != "direction":
        new_colour = COLOUR_NAMES[int(rng.integers(len(COLOUR_NAMES)))] if kind == "colour" else colour
        new_shape = SHAPES[int(rng.integers(len(SHAPES)))] if kind == "shape" else shape
        if (new_colour, new_shape) != (colour, shape) and allowed(new_colour, new_shape, split):
            break
    if kind == "direction":
        new_colour, new_shape = colour, shape
    new_extent = SHAPE_EXTENT[new_shape] * size
    elapsed = times[event_frame] - times[0]
    centre = object_centers(first, [elapsed], image_size)[0]
    new_velocity = velocities(first, [elapsed], image_size)[0]  # after the bounces so far
    if kind == "direction":
        new_velocity = -new_velocity
    second = BouncingObject(new_shape, PALETTE[COLOUR_NAMES.index(new_colour)], float(new_extent),
                            np.clip(centre, new_extent, image_size - new_extent), new_velocity)
    return CaptionedClip(image_size, np.asarray(times), (0, event_frame), (first, second))


class CaptionedBouncingShapes(BouncingShapes):
    """Bouncing shapes with a caption per frame ("a red circle moving right"): dataset name bouncing_captions.

    Motion keeps near one axis so its direction has a name; half the clips hold an event (the colour or shape
    changes, or the object turns back, at one frame) whose captions change there; HELD_OUT_COMBINATIONS never appear in the train split. Items add
    "captions": a tuple of N strings. No random flip: it would turn "left" into "right".
    """

    def __init__(self, *args, event_prob=0.5, **kwargs):
        super().__init__(*args, **kwargs)
        if self.random_flip:
            raise ValueError("bouncing_captions: random_flip must be false (a flip contradicts the captions' "
                             "'left' and 'right')")
        if not 0.0 <= event_prob <= 1.0:
            raise ValueError(f"bouncing_captions: event_prob must lie in [0, 1], got {event_prob!r}")
        self.event_prob = event_prob

    def clip(self, index):
        rng = np.random.default_rng([self.seed, SPLIT_STREAMS[self.split], index, 1])
        times = self.frame_interval * np.arange(self.num_frames)
        return sample_captioned_clip(rng, times, self.image_size, self.split, self.event_prob)

    def __getitem__(self, index):
        index = operator.index(index)
        if not 0 <= index < self.length:
            raise IndexError(f"bouncing_captions: index {index} is out of range for {self.length} items")
        clip = self.clip(index)
        return {"video": clip.render(), "label": torch.tensor(0, dtype=torch.int64), "index": index, "skipped": "",
                "captions": clip.captions()}
