"""A cache of training clips pre-encoded to VAE latents (written by tools/encode_latents.py), read by memory map.

Skipping the VAE encoder at every step is the main training speed-up on real data (fast-DiT reports ~+95%).
Layout of a cache folder:
    meta.json    what was encoded (dataset keys, clip count, orientations, latent shape, dtype)
    latents.npy  (num_items, clips_per_video, orientations, N, C, h, w) latents, shifted and scaled by the VAE's
                 own factors (models/vae.py: encode_video)
    labels.npy   (num_items, clips_per_video) int64
    done.npy     (num_items, clips_per_video) bool, so an interrupted encode resumes where it stopped
    captions.jsonl  where the dataset has captions: one {"index", "clip", "captions": [N strings]} line per clip
Clip c of item i is what the pixel dataset returns for index i at epoch c (its random start frame), encoded
with the posterior mean; orientation 1 is the same clip flipped horizontally in PIXEL space, then encoded
(flipping latents is not the same thing). Training epoch e reads clip e % clips_per_video.
"""
import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from models.vae import read_vae_config

CACHE_VERSION = 1
META_FILE, LATENTS_FILE, LABELS_FILE, DONE_FILE = "meta.json", "latents.npy", "labels.npy", "done.npy"
CAPTIONS_FILE = "captions.jsonl"
# Config keys that must agree between the cache and the training run that reads it.
MATCHED_KEYS = ("dataset", "num_frames", "frame_interval", "image_size")


def read_meta(cache_dir):
    path = Path(cache_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"latent cache {cache_dir}: no {META_FILE}; create it with tools/encode_latents.py")
    meta = json.loads(path.read_text())
    if meta.get("version") != CACHE_VERSION:
        raise ValueError(f"latent cache {cache_dir}: format version {meta.get('version')}, expected {CACHE_VERSION}")
    return meta


class LatentCacheWriter:
    """Creates a cache, or reopens one with identical meta to finish an interrupted encode."""

    def __init__(self, cache_dir, meta):
        self.cache_dir = Path(cache_dir)
        meta = {"version": CACHE_VERSION, **meta}
        shape = (meta["num_items"], meta["clips_per_video"], meta["orientations"], *meta["latent_shape"])
        grid = shape[:2]
        if (self.cache_dir / META_FILE).exists():
            existing = read_meta(self.cache_dir)
            differing = sorted(k for k in set(meta) | set(existing) if meta.get(k) != existing.get(k))
            if differing:
                raise ValueError(f"latent cache {self.cache_dir} was written with other settings "
                                 f"(differing keys: {differing}); use a new folder or the same arguments")
            mode = "r+"
            self.latents = np.load(self.cache_dir / LATENTS_FILE, mmap_mode=mode)
            self.labels = np.load(self.cache_dir / LABELS_FILE, mmap_mode=mode)
            self.done = np.load(self.cache_dir / DONE_FILE, mmap_mode=mode)
        else:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            open_memmap = np.lib.format.open_memmap
            self.latents = open_memmap(self.cache_dir / LATENTS_FILE, "w+", np.dtype(meta["dtype"]), shape)
            self.labels = open_memmap(self.cache_dir / LABELS_FILE, "w+", np.int64, grid)
            self.done = open_memmap(self.cache_dir / DONE_FILE, "w+", np.bool_, grid)
            self.done[:] = False
            self.done.flush()
            (self.cache_dir / META_FILE).write_text(json.dumps(meta, indent=2))
        self.meta = meta

    def pending(self, clip):
        """Item indices whose clip `clip` is not yet encoded."""
        return np.flatnonzero(~self.done[:, clip]).tolist()

    def write(self, indices, clip, latents, labels, captions=None):
        """latents (B, orientations, N, C, h, w); captions: B lists of N strings (meta "captions" caches only).
        Data is flushed before the items are marked done."""
        if bool(self.meta.get("captions")) != (captions is not None):
            raise ValueError(f"latent cache {self.cache_dir}: meta says captions={self.meta.get('captions')}, "
                             f"but write() got {'no ' if captions is None else ''}captions")
        self.latents[indices, clip] = latents.cpu().numpy().astype(self.latents.dtype)
        self.labels[indices, clip] = labels.cpu().numpy()
        self.latents.flush()
        self.labels.flush()
        if captions is not None:  # appended: a clip written twice (a resumed encode) reads back its last line
            with open(self.cache_dir / CAPTIONS_FILE, "a") as file:
                for index, clip_captions in zip(np.asarray(indices).tolist(), captions):
                    file.write(json.dumps({"index": index, "clip": clip, "captions": list(clip_captions)}) + "\n")
                file.flush()
        self.done[indices, clip] = True
        self.done.flush()


def read_captions(cache_dir):
    """{(index, clip): tuple of N captions} of a cache written from a captioned dataset."""
    captions = {}
    with open(Path(cache_dir) / CAPTIONS_FILE) as file:
        for line in file:
            record = json.loads(line)
            captions[record["index"], record["clip"]] = tuple(record["captions"])
    return captions


class LatentCacheDataset(Dataset):
    """Items {"latents": float32 (N, C, h, w), "label", "index", "skipped": ""}, like the pixel datasets', and
    "captions" (N strings) where the cache was encoded from a captioned dataset."""

    def __init__(self, cache_dir, random_flip=False, seed=0):
        self.cache_dir = Path(cache_dir)
        self.meta = read_meta(cache_dir)
        done = np.load(self.cache_dir / DONE_FILE)
        if not done.all():
            raise ValueError(f"latent cache {cache_dir} is incomplete ({int(done.sum())} of {done.size} clips "
                             "encoded); rerun tools/encode_latents.py with the same arguments to finish it")
        if random_flip and self.meta["orientations"] < 2:
            raise ValueError(f"random_flip=True but latent cache {cache_dir} holds one orientation; "
                             "encode it with --flip, or train with random_flip=false")
        self.random_flip = random_flip
        self.seed = seed
        self.num_classes = self.meta["num_classes"]
        self.captions = read_captions(self.cache_dir) if self.meta.get("captions") else None
        if self.captions is not None and random_flip:
            raise ValueError(f"latent cache {cache_dir} holds captions, which a flip would contradict ('left', "
                             "'right'): train it with random_flip=false")
        self.epoch = 0
        self._latents = self._labels = None  # memory maps, opened lazily in each DataLoader worker

    def check_matches(self, cfg):
        """The cache must hold clips of the training run's dataset, length, stride and size, encoded by a VAE with
        the same latent scale and shift as the run's `vae` (a retrained autoencoder measures new ones)."""
        for key in MATCHED_KEYS:
            if self.meta[key] != cfg[key]:
                raise ValueError(f"config key {key!r} = {cfg[key]!r} but latent cache {self.cache_dir} was "
                                 f"encoded with {key} = {self.meta[key]!r}")
        vae_config = read_vae_config(cfg.vae)
        expected = (vae_config["scaling_factor"], vae_config.get("shift_factor") or 0.0)
        cached = (self.meta["latent_scale"], self.meta.get("latent_shift", 0.0))
        if not np.allclose(expected, cached, rtol=1e-6, atol=0):
            raise ValueError(f"config key 'vae' = {cfg.vae!r} has latent (scale, shift) {expected}, but latent cache "
                             f"{self.cache_dir} was encoded with {cached}: encode it again with this VAE")

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        return self.meta["num_items"]

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"latent cache: index {index} is out of range for {len(self)} items")
        if self._latents is None:
            self._latents = np.load(self.cache_dir / LATENTS_FILE, mmap_mode="r")
            self._labels = np.load(self.cache_dir / LABELS_FILE, mmap_mode="r")
        clip = self.epoch % self.meta["clips_per_video"]
        orientation = 0
        if self.random_flip and np.random.default_rng([self.seed, self.epoch, index]).random() < 0.5:
            orientation = 1
        latents = np.array(self._latents[index, clip, orientation], dtype=np.float32)  # copy: (N, C, h, w)
        item = {
            "latents": torch.from_numpy(latents),
            "label": torch.tensor(int(self._labels[index, clip]), dtype=torch.int64),
            "index": index,
            "skipped": "",
        }
        if self.captions is not None:
            item["captions"] = self.captions[index, clip]
        return item
