"""Reading frames from video files, folders of frame images and single images.

Videos decode with decord when it is installed and can read the file, and with PyAV otherwise:
decord is faster at random access but refuses some files that PyAV reads (e.g. frames narrower
than 64 pixels), so a decord failure falls back to PyAV instead of failing the clip.
"""

import logging
import re
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image

try:
    import decord
except ImportError:  # decord ships wheels for x86-64 only; PyAV reads everything it reads
    decord = None

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".webm", ".mov", ".mkv", ".m4v"})
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm"})
BACKENDS = ("decord", "pyav")


class VideoReadError(RuntimeError):
    """A file exists but its frames cannot be decoded (corrupt, truncated, unsupported)."""


def is_video_file(path):
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def is_image_file(path):
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def natural_sort_key(name):
    """Order names as a person would: frame2.png before frame10.png, padded or not."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(name))]


def list_frame_files(folder):
    """Image files directly inside a folder, in natural order."""
    files = [entry for entry in Path(folder).iterdir() if entry.is_file() and is_image_file(entry)]
    return sorted(files, key=lambda file: natural_sort_key(file.name))


def _unique_sorted(indices, num_frames, path):
    """Validated indices -> (sorted unique indices, positions that restore the requested order)."""
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    out_of_range = indices[(indices < 0) | (indices >= num_frames)]
    if out_of_range.size:
        raise IndexError(f"frame index {int(out_of_range[0])} is out of range for {path} ({num_frames} frames)")
    return np.unique(indices, return_inverse=True)


class VideoFrames:
    """Random access to the frames of one video file, decord first and PyAV as the fallback."""

    def __init__(self, path, backend=None):
        self.path = Path(path)
        if backend is not None and backend not in BACKENDS:
            raise ValueError(f"unknown video backend {backend!r}; choose one of {BACKENDS}")
        if backend == "decord" and decord is None:
            raise ValueError("video backend 'decord' was requested but decord is not installed")
        self.backends = [backend] if backend else [name for name in BACKENDS if name != "decord" or decord]
        self.errors = {}
        self._decord_reader = None
        self._length = None
        for name in list(self.backends):
            try:
                self._length = self._decord_open() if name == "decord" else self._pyav_count()
                break
            except Exception as error:  # decoders raise their own exception types
                self._drop_backend(name, error)
        if self._length is None:
            raise self._read_error("cannot open")
        if self._length == 0:
            raise VideoReadError(f"{self.path}: no video frames")

    def __len__(self):
        return self._length

    def read(self, indices=None):
        """Frames at the given indices as uint8 (T, H, W, 3); all frames when indices is None."""
        indices = np.arange(len(self)) if indices is None else indices
        unique_indices, order = _unique_sorted(indices, len(self), self.path)
        for name in list(self.backends):
            try:
                reader = self._decord_read if name == "decord" else self._pyav_read
                return reader(unique_indices)[order]
            except Exception as error:  # decoders raise their own exception types
                self._drop_backend(name, error)
        raise self._read_error("cannot decode")

    def _drop_backend(self, name, error):
        self.errors[name] = f"{type(error).__name__}: {error}".strip()
        self.backends.remove(name)
        if self.backends:
            logger.debug("%s: %s failed (%s), trying %s", self.path, name, self.errors[name], self.backends[0])

    def _read_error(self, what):
        reasons = "; ".join(f"{name}: {reason}" for name, reason in self.errors.items())
        return VideoReadError(f"{self.path}: {what} ({reasons})")

    def _decord_open(self):
        self._decord_reader = decord.VideoReader(str(self.path), ctx=decord.cpu(0), num_threads=1)
        return len(self._decord_reader)

    def _decord_read(self, unique_indices):
        return self._decord_reader.get_batch(unique_indices.tolist()).asnumpy()

    def _pyav_count(self):
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            if stream.frames > 0:
                return stream.frames
            return sum(1 for packet in container.demux(stream) if packet.size > 0)

    def _pyav_read(self, unique_indices):
        """Decode from the start up to the last wanted frame (no seeking: frame-exact and simple)."""
        wanted = set(unique_indices.tolist())
        last_wanted = int(unique_indices[-1])
        frames = []
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame_index, frame in enumerate(container.decode(stream)):
                if frame_index in wanted:
                    frames.append(frame.to_ndarray(format="rgb24"))
                if frame_index == last_wanted:
                    return np.stack(frames)
        raise VideoReadError(f"stream ends before frame {last_wanted} although {len(self)} frames are declared")


class FolderFrames:
    """Frames stored as one image file per frame in a folder (or a single image: one frame)."""

    def __init__(self, path):
        self.path = Path(path)
        self.files = list_frame_files(self.path) if self.path.is_dir() else [self.path]
        if not self.files:
            raise VideoReadError(f"{self.path}: folder holds no image files ({sorted(IMAGE_EXTENSIONS)})")

    def __len__(self):
        return len(self.files)

    def read(self, indices=None):
        """Frames at the given indices as uint8 (T, H, W, 3); all frames when indices is None."""
        indices = np.arange(len(self)) if indices is None else indices
        unique_indices, order = _unique_sorted(indices, len(self), self.path)
        frames = []
        for frame_index in unique_indices.tolist():
            file = self.files[frame_index]
            try:
                with Image.open(file) as image:
                    frame = np.asarray(image.convert("RGB"))
            except OSError as error:
                raise VideoReadError(f"{file}: cannot read frame {frame_index} ({error})") from error
            if frames and frame.shape != frames[0].shape:
                raise VideoReadError(
                    f"{file}: frame {frame_index} is {frame.shape[1]}x{frame.shape[0]}, "
                    f"frame {int(unique_indices[0])} is {frames[0].shape[1]}x{frames[0].shape[0]}"
                )
            frames.append(frame)
        return np.stack(frames)[order]


def open_frames(path, backend=None):
    """A reader with len() and read(indices) for a video file, a frame folder or an image file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such video, frame folder or image: {path}")
    if path.is_dir() or is_image_file(path):
        return FolderFrames(path)
    if is_video_file(path):
        return VideoFrames(path, backend=backend)
    raise ValueError(
        f"{path}: unsupported file type {path.suffix!r}; "
        f"expected a video ({sorted(VIDEO_EXTENSIONS)}), an image or a folder of images"
    )


def count_frames(path, backend=None):
    """Number of frames in a video file, frame folder or image file."""
    return len(open_frames(path, backend=backend))


def read_frames(path, indices=None, backend=None):
    """Frames of a video file, frame folder or image file as uint8 (T, H, W, 3)."""
    return open_frames(path, backend=backend).read(indices)


def resize_center_crop(frames, size):
    """uint8 (T, H, W, 3) -> float32 (T, 3, size, size) in [-1, 1]: shorter side to size, center crop.

    Frames whose shorter side already equals size are only cropped, so their values stay exact.
    """
    video = torch.as_tensor(np.asarray(frames))
    if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != torch.uint8:
        raise ValueError(f"expected uint8 frames of shape (T, H, W, 3), got {video.dtype} {tuple(video.shape)}")
    video = rearrange(video, "t h w c -> t c h w")
    height, width = video.shape[-2:]
    if min(height, width) != size:
        scale = size / min(height, width)
        resized = (max(size, round(height * scale)), max(size, round(width * scale)))
        video = F.interpolate(video.float(), size=resized, mode="bilinear", antialias=True, align_corners=False)
        video = video.clamp_(0, 255)  # a convex filter, but float rounding can step past the ends
        height, width = resized
    top, left = (height - size) // 2, (width - size) // 2
    video = video[:, :, top : top + size, left : left + size]  # (T, 3, size, size)
    return (video.float() / 127.5 - 1.0).contiguous()
