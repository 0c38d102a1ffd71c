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
