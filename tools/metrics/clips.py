"""Reading real and generated videos, and choosing the clips and frames each protocol uses.

A video set is a folder holding, in name order, either frame folders (root/<video>/<frame>.png
or .jpg, the layout sample/sample_ddp.py writes and StyleGAN-V reads) or video files
(root/<video>.mp4). Frames are read as uint8 RGB arrays (T, H, W, 3).
"""

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


@dataclass(frozen=True)
class Video:
    """One video: a folder of frame images or a video file."""

    path: Path
    num_frames: int
    frame_files: tuple[str, ...] = ()  # names inside `path` when it is a frame folder
    fingerprint: str = ""  # digest of names, sizes and modification times

    def read_frames(self, indices) -> np.ndarray:
        """uint8 (len(indices), H, W, 3)."""
        indices = list(indices)
        bad = [i for i in indices if not 0 <= i < self.num_frames]
        if bad:
            raise IndexError(f"{self.path}: frame indices {bad[:3]} outside 0..{self.num_frames - 1}")
        if self.frame_files:
            return np.stack([_read_image(self.path / self.frame_files[i]) for i in indices])
        return _decoded_video(self.path)[indices]


def _read_image(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


_last_decoded: dict = {}


def _decoded_video(path: Path) -> np.ndarray:
    """All frames of a video file; the last file decoded is kept, since protocols read a file's
    clips or frame chunks one after another."""
    if _last_decoded.get("path") != path:
        import av

        with av.open(str(path)) as container:
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        if not frames:
            raise ValueError(f"{path}: no video frames could be decoded")
        _last_decoded.clear()
        _last_decoded.update(path=path, frames=np.stack(frames))
    return _last_decoded["frames"]


def _count_video_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.frames > 0:
            return stream.frames
        return sum(1 for _ in container.decode(video=0))


def _frame_folder(entry: os.DirEntry) -> Video:
    digest = hashlib.sha256()
    names = []
    with os.scandir(entry.path) as children:
        for child in children:
            if child.is_file() and child.name.lower().endswith(IMAGE_EXTENSIONS):
                names.append(child.name)
                info = child.stat()
                digest.update(f"{child.name}:{info.st_size}:{info.st_mtime_ns};".encode())
    names.sort()
    natural = sorted(names, key=_natural_key)
    if names != natural:
        first = next(a for a, b in zip(names, natural) if a != b)
        raise ValueError(
            f"{entry.path}: frame names are not zero-padded, so name order is not frame order "
            f"(e.g. '{first}'); rename them like 000000.png"
        )
    if not names:
        raise ValueError(f"{entry.path}: video folder holds no {'/'.join(IMAGE_EXTENSIONS)} frames")
    return Video(Path(entry.path), len(names), tuple(names), digest.hexdigest())


def list_videos(root) -> list[Video]:
    """The videos of a set, in name order (the order StyleGAN-V uses)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"video set not found (expected a folder): {root}")
    videos = []
    with os.scandir(root) as entries:
        entries = sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)
    for entry in entries:
        name = entry.name.lower()
        if entry.is_dir():
            videos.append(_frame_folder(entry))
        elif name.endswith(VIDEO_EXTENSIONS):
            info = entry.stat()
            fingerprint = hashlib.sha256(f"{entry.name}:{info.st_size}:{info.st_mtime_ns}".encode()).hexdigest()
            videos.append(Video(Path(entry.path), _count_video_frames(Path(entry.path)), (), fingerprint))
        elif name.endswith(IMAGE_EXTENSIONS):
            raise ValueError(f"{root} holds frame images directly; expected root/<video>/<frame> or root/<video>.mp4")
    if not videos:
        raise ValueError(f"{root}: no frame folders or {'/'.join(VIDEO_EXTENSIONS)} files found")
    return videos


def set_fingerprint(root, videos: list[Video]) -> str:
    """Digest of every file name, size and modification time in the set."""
    digest = hashlib.sha256(str(Path(root).resolve()).encode())
    for video in videos:
        digest.update(f"{video.path.name}/{video.fingerprint};".encode())
    return digest.hexdigest()


#################################################################################
#                              Clip selection                                   #
#################################################################################

@dataclass(frozen=True)
class Clip:
    """Frames `indices` of video number `video`, mirrored left-right when `flip`."""

    video: int
    indices: tuple[int, ...]
    flip: bool = False


def real_clips(videos, count, num_frames, stride, seed, mirror=False) -> list[Clip]:
    """StyleGAN-V's real clips: one per video, videos in name order (then their mirror images
    when `mirror`), the first `count` of them, each starting at a random frame (seeded) and
    taking `num_frames` frames `stride` apart. Videos too short for a clip are skipped."""
    span = num_frames * stride
    usable = [i for i, video in enumerate(videos) if video.num_frames >= span]
    if not usable:
        longest = max(video.num_frames for video in videos)
        raise ValueError(f"no real video has {span} frames ({num_frames} at stride {stride}); the longest has {longest}")
    items = [(i, False) for i in usable] + ([(i, True) for i in usable] if mirror else [])
    rng = np.random.RandomState(seed)
    clips = []
    for video_index, flip in items[:count]:
        start = rng.randint(0, videos[video_index].num_frames - span + stride)
        clips.append(Clip(video_index, tuple(range(start, start + span, stride)), flip))
    return clips


def generated_clips(videos, count, num_frames) -> list[Clip]:
    """The first `num_frames` frames of each of the first `count` videos."""
    clips = []
    for index, video in enumerate(videos[:count]):
        if video.num_frames < num_frames:
            raise ValueError(f"generated video {video.path} has {video.num_frames} frames, the protocol needs {num_frames}")
        clips.append(Clip(index, tuple(range(num_frames))))
    return clips


def frame_chunks(videos, count=None, seed=0, chunk=32) -> list[Clip]:
    """Frames for FID/KID as chunks of consecutive frames of one video: every frame of every
    video when `count` is None, else `count` frames drawn at random (seeded) without replacement."""
    offsets = np.cumsum([0] + [video.num_frames for video in videos])
    total = int(offsets[-1])
    if count is None or count >= total:
        chosen = np.arange(total)
    else:
        chosen = np.sort(np.random.RandomState(seed).choice(total, count, replace=False))
    video_of = np.searchsorted(offsets, chosen, side="right") - 1
    chunks = []
    for video_index in np.unique(video_of):
        frames = (chosen[video_of == video_index] - offsets[video_index]).tolist()
        for i in range(0, len(frames), chunk):
            chunks.append(Clip(int(video_index), tuple(frames[i:i + chunk])))
    return chunks


def first_frames(videos, count, chunk=32) -> list[Clip]:
    """The first `count` frames of the set in name order (every frame of the first videos)."""
    chunks, remaining = [], count
    for index, video in enumerate(videos):
        for start in range(0, min(video.num_frames, remaining), chunk):
            stop = min(start + chunk, video.num_frames, start + remaining)
            chunks.append(Clip(index, tuple(range(start, stop))))
        remaining -= min(video.num_frames, remaining)
        if remaining == 0:
            break
    return chunks


class ClipBatches(torch.utils.data.Dataset):
    """Item k is batch k: its clips read, each passed through `transform` (uint8 (T, H, W, 3) ->
    tensor) and concatenated along dim 0 when `concat`, stacked otherwise."""

    def __init__(self, videos, clips, batch_size, transform, concat=False):
        self.videos, self.transform, self.concat = videos, transform, concat
        self.batches = [clips[i:i + batch_size] for i in range(0, len(clips), batch_size)]

    def __len__(self):
        return len(self.batches)

    def rows(self, index) -> int:
        """How many feature rows batch `index` gives: clips when stacked, frames when concatenated."""
        batch = self.batches[index]
        return sum(len(clip.indices) for clip in batch) if self.concat else len(batch)

    def __getitem__(self, index):
        tensors = []
        for clip in self.batches[index]:
            frames = self.videos[clip.video].read_frames(clip.indices)
            if clip.flip:
                frames = frames[:, :, ::-1]
            tensors.append(self.transform(torch.from_numpy(np.ascontiguousarray(frames))))
        return torch.cat(tensors) if self.concat else torch.stack(tensors)
