"""Clip datasets over real videos: one generic dataset plus discovery for the Latte/FVDM layouts.

Every item is `num_frames` frames `frame_interval` apart from a random start. The start and the
flip come from a generator seeded by (seed, epoch, index), so a resumed run sees the same clips.
An item whose video gives no clip takes one from other videos tried in an order drawn from the
same (seed, epoch, index); only failures that do not depend on the start frame are remembered,
so an item never depends on what this or another process read before it.
Note that `set_epoch` must reach the workers: DataLoader workers copy the dataset when they
start, so use non-persistent workers (the default) and call `set_epoch` before iterating.
"""

import logging
import operator
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from .video_io import VideoReadError, is_image_file, is_video_file, natural_sort_key, open_frames, resize_center_crop

logger = logging.getLogger(__name__)

_warned_paths = set()  # files already reported as skipped by this process


@dataclass(frozen=True)
class ClipSource:
    """One video file or frame folder, and its class index (0 for unlabelled data)."""

    path: Path
    label: int = 0


class ClipTooShortError(ValueError):
    """A video has fewer frames than one clip spans."""


def skipped_files(batch):
    """{path: reason} of the videos an item, or a batch of them, passed over (from its "skipped" field).

    A run counts and names each bad video once from this, whichever DataLoader worker read it.
    """
    field = batch.get("skipped", ())
    entries = [field] if isinstance(field, str) else field  # one item, or a batch's list of strings
    return dict(line.split(": ", 1) for entry in entries for line in entry.splitlines())


def find_clip_sources(root):
    """Every video file and every folder that directly holds frame images below root, in natural order."""
    root = Path(root)
    found = []
    for folder, subfolders, files in os.walk(root, followlinks=True):
        subfolders[:] = sorted((name for name in subfolders if not name.startswith(".")), key=natural_sort_key)
        files = [name for name in files if not name.startswith(".")]
        found.extend(Path(folder, name) for name in files if is_video_file(name))
        if any(is_image_file(name) for name in files):
            found.append(Path(folder))
    return sorted(found, key=lambda path: natural_sort_key(path.relative_to(root).as_posix()))


def _split_root(name, root, split, folder_name):
    """The folder of one split: root/<folder_name> when present, root itself when no split was asked for."""
    if split is None:
        default = root / folder_name.format(split="train")
        return default if default.is_dir() else root
    folder = root / folder_name.format(split=split)
    if folder.is_dir():
        return folder
    if root.name == folder.name:
        return root
    raise FileNotFoundError(f"{name}: split {split!r} expects the folder {folder}, which does not exist")


def _unlabelled_sources(name, root, split, folder_name):
    split_root = _split_root(name, root, split, folder_name)
    return [ClipSource(path) for path in find_clip_sources(split_root)], 0


def ffs_sources(root, split=None):
    """FaceForensics: mp4s or frame folders, below root/<split> when that folder exists."""
    return _unlabelled_sources("ffs", root, split, "{split}")


def sky_sources(root, split=None):
    """SkyTimelapse: root/sky_<split>/<video>/<clip>/*.jpg, each leaf folder of frames is one clip."""
    return _unlabelled_sources("sky", root, split, "sky_{split}")


def taichi_sources(root, split=None):
    """Taichi-HD: root/<split>/<video>/*.png frame folders, or mp4s."""
    return _unlabelled_sources("taichi", root, split, "{split}")


def video_folder_sources(root, split=None):
    """Any videos or frame folders below root (below root/<split> when a split is given)."""
    return _unlabelled_sources("video_folder", root, split, "{split}")


def read_class_index(path):
    """UCF-101 classInd.txt ("1 ApplyEyeMakeup" per line) -> {lower-case class name: 0-based label}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ucf101: class index file {path} does not exist")
    labels = {}
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or not fields[0].isdigit():
            raise ValueError(f"{path}:{line_number}: expected '<class id> <ClassName>', got {line!r}")
        labels[fields[1].lower()] = int(fields[0]) - 1
    if sorted(labels.values()) != list(range(len(labels))):
        raise ValueError(f"{path}: class ids must be 1..{len(labels)} with each used once")
    return labels


def read_split_file(path):
    """UCF-101 trainlist0X.txt / testlist0X.txt -> {(lower-case class, lower-case video stem)}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ucf101: split file {path} does not exist")
    entries = set()
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        video = Path(line.split()[0].replace("\\", "/"))
        if len(video.parts) != 2:
            raise ValueError(f"{path}:{line_number}: expected 'ClassName/video.avi [label]', got {line!r}")
        entries.add((video.parts[0].lower(), Path(video.parts[1]).stem.lower()))
    return entries


def _find_ucf_split_file(root, split):
    """The official split-1 file for a split, looked up next to and inside the data folder."""
    file_name = f"{split}list01.txt"
    candidates = [root / file_name, root / "ucfTrainTestlist" / file_name, root.parent / "ucfTrainTestlist" / file_name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"ucf101: split {split!r} needs a split file; none of {[str(c) for c in candidates]} exists "
        "(pass split_file=path/to/trainlist0X.txt or testlist0X.txt)"
    )


def ucf101_sources(root, split=None, split_file=None, class_index_file=None):
    """UCF-101: root/<ClassName>/v_*.avi (or frame folders). Labels from classInd.txt or sorted class folders.

    split=None with no split_file takes every video (train + test, as StyleGAN-V measures FVD).
    Names are matched case-insensitively: the official lists spell some classes differently
    from the file names (HandstandPushups / v_HandStandPushups_...).
    """
    if split not in (None, "train", "test"):
        raise ValueError(f"ucf101: split must be None, 'train' or 'test', got {split!r}")
    class_folders = sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith("."))
    if class_index_file is not None:
        class_labels = read_class_index(class_index_file)
        unknown = [folder.name for folder in class_folders if folder.name.lower() not in class_labels]
        if unknown:
            raise ValueError(f"ucf101: class folders {unknown} of {root} are not listed in {class_index_file}")
    else:
        class_labels = {folder.name.lower(): label for label, folder in enumerate(class_folders)}
    if split_file is None and split is not None:
        split_file = _find_ucf_split_file(root, split)
    wanted = read_split_file(split_file) if split_file is not None else None

    sources, found = [], set()
    for folder in class_folders:
        for path in find_clip_sources(folder):
            key = (folder.name.lower(), (path.name if path.is_dir() else path.stem).lower())
            if wanted is None or key in wanted:
                sources.append(ClipSource(path, class_labels[key[0]]))
                found.add(key)
    if wanted is not None:
        missing = sorted(wanted - found)
        if missing:
            logger.warning(
                "ucf101: %d of the %d videos listed in %s are not under %s (first: %s/%s)",
                len(missing), len(wanted), split_file, root, *missing[0],
            )
    return sources, len(class_labels)


LAYOUTS = {
    "ffs": ffs_sources,
    "sky": sky_sources,
    "taichi": taichi_sources,
    "ucf101": ucf101_sources,
    "video_folder": video_folder_sources,
}


class VideoClipDataset(Dataset):
    """Fixed-length clips from video files or frame folders; unreadable or too-short sources are skipped.

    Item i reads source i % len(sources), so `length` below the source count caps the dataset and
    above it revisits sources from other random starts. When that source gives no clip, the item
    takes one from the other sources, tried in a random order drawn from (seed, epoch, index), so
    the replacements spread over the dataset. The item's "skipped" field holds a "path: reason"
    line per source it passed over ("" when none; read it with `skipped_files`). Skips are warned about once per file, in the main process only: in DataLoader
    workers the warning would repeat in every worker every epoch, so there the consumer reports
    them from the items (train_video.py names each once in log.txt).
    """

    def __init__(self, sources, *, name="video_folder", num_classes=0, num_frames=16, frame_interval=3,
                 image_size=256, random_flip=False, seed=0, length=None, backend=None):
        for key, value in (("num_frames", num_frames), ("frame_interval", frame_interval), ("image_size", image_size)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name}: {key} must be a positive integer, got {value!r}")
        if int(seed) != seed or seed < 0:
            raise ValueError(f"{name}: seed must be a non-negative integer, got {seed!r}")
        if length is not None and (int(length) != length or length < 1):
            raise ValueError(f"{name}: length must be a positive integer or None, got {length!r}")
        if not sources:
            raise ValueError(f"{name}: no clip sources given")
        self.sources = list(sources)
        self.name = name
        self.num_classes = num_classes
        self.num_frames = int(num_frames)
        self.frame_interval = int(frame_interval)
        self.image_size = int(image_size)
        self.random_flip = random_flip
        self.seed = int(seed)
        self.length = len(self.sources) if length is None else int(length)
        self.backend = backend
        self.epoch = 0
        self.clip_span = (self.num_frames - 1) * self.frame_interval + 1  # frames one clip covers
        # Source index -> why it gives no clip from any start (cannot be opened, too short). Remembering
        # only these keeps items independent of what was read before; failures of a read are retried.
        self._unusable = {}

    def set_epoch(self, epoch):
        """Start frames and flips are drawn from (seed, epoch, index): a new epoch, new clips."""
        self.epoch = int(epoch)

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        index = operator.index(index)
        if not 0 <= index < self.length:
            raise IndexError(f"{self.name}: index {index} is out of range for {self.length} items")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        start_fraction, flip_draw = rng.random(2)
        skipped = {}  # path -> why it gave no clip
        for source_index, start_fraction in self._attempts(index, start_fraction):
            path = self.sources[source_index].path
            frames, reason = self._read_clip(source_index, start_fraction)
            if frames is None:
                skipped[path] = reason
                self._warn_once(path, reason)
                continue
            video = resize_center_crop(frames, self.image_size)  # (N, 3, S, S)
            if self.random_flip and flip_draw < 0.5:
                video = video.flip(-1)
            return {
                "video": video,
                "label": torch.tensor(self.sources[source_index].label, dtype=torch.int64),
                "index": index,
                "skipped": "\n".join(f"{path}: {reason}" for path, reason in skipped.items()),
            }
        examples = "; ".join(f"{path}: {reason}" for path, reason in list(skipped.items())[:3])
        raise RuntimeError(f"{self.name}: none of the {len(self.sources)} videos gives a clip ({examples})")

    def _attempts(self, index, start_fraction):
        """(source index, start fraction) pairs to try for item `index`: its own source, then every other
        source once, in an order and from starts drawn from (seed, epoch, index). A lazy Fisher-Yates
        shuffle: each attempt costs O(1), however many sources there are.
        """
        own, count = index % len(self.sources), len(self.sources)
        yield own, start_fraction
        rng = np.random.default_rng([self.seed, self.epoch, index, 1])
        moved = {}  # shuffle position -> the source index now there, where it differs from the position
        for position in range(count):
            pick = int(rng.integers(position, count))
            source_index = moved.get(pick, pick)
            moved[pick] = moved.get(position, position)
            if source_index != own:
                yield source_index, rng.random()

    def _read_clip(self, source_index, start_fraction):
        """(uint8 (N, H, W, 3) frames, None) of one source, or (None, the reason it gives no clip)."""
        if source_index in self._unusable:
            return None, self._unusable[source_index]
        path = self.sources[source_index].path
        try:
            reader = open_frames(path, backend=self.backend)
            if len(reader) < self.clip_span:
                raise ClipTooShortError(
                    f"{len(reader)} frames, a clip needs {self.clip_span} "
                    f"(num_frames={self.num_frames}, frame_interval={self.frame_interval})"
                )
        except (VideoReadError, ClipTooShortError, OSError) as error:
            self._unusable[source_index] = str(error).removeprefix(f"{path}: ")
            return None, self._unusable[source_index]
        start = int(start_fraction * (len(reader) - self.clip_span + 1))
        try:
            return reader.read(start + self.frame_interval * np.arange(self.num_frames)), None
        except (VideoReadError, OSError) as error:  # some frames are bad: another start may read
            return None, str(error).removeprefix(f"{path}: ")

    def _warn_once(self, path, reason):
        """Main process only: in DataLoader workers the warning would repeat in every worker every epoch."""
        if get_worker_info() is None and path not in _warned_paths:
            _warned_paths.add(path)
            logger.warning("%s: skipping %s: %s", self.name, path, reason)


def build_video_dataset(name, data_path, *, split=None, split_file=None, class_index_file=None, **dataset_kwargs):
    """A VideoClipDataset over the clips that layout `name` finds under data_path."""
    if name not in LAYOUTS:
        raise ValueError(f"unknown video layout {name!r}; choose one of {sorted(LAYOUTS)}")
    if data_path is None:
        raise ValueError(f"dataset {name!r} needs a data_path")
    root = Path(data_path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset {name!r}: data_path {root} does not exist or is not a folder")
    if name == "ucf101":
        sources, num_classes = ucf101_sources(root, split, split_file, class_index_file)
    elif split_file is not None or class_index_file is not None:
        raise ValueError(f"dataset {name!r}: split_file and class_index_file apply to ucf101 only")
    else:
        sources, num_classes = LAYOUTS[name](root, split)
    if not sources:
        raise FileNotFoundError(
            f"dataset {name!r}: no video files or frame folders found under {root}"
            + (f" for split {split!r}" if split is not None else "")
        )
    return VideoClipDataset(sources, name=name, num_classes=num_classes, **dataset_kwargs)
