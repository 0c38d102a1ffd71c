"""Training data: real-video layouts used by Latte/FVDM and the built-in bouncing-shapes clips.

Our package shares its name with HuggingFace's `datasets`; import it from the repository root
and keep imports inside it relative.
"""

from .bouncing import BouncingShapes, CaptionedBouncingShapes
from .latent_cache import LatentCacheDataset
from .video_datasets import LAYOUTS, VideoClipDataset, build_video_dataset
from .video_io import count_frames, read_frames, resize_center_crop

__all__ = [
    "DATASETS", "BouncingShapes", "CaptionedBouncingShapes", "LatentCacheDataset", "VideoClipDataset",
    "batch_captions", "build_config_dataset", "build_dataset", "build_training_dataset", "count_frames", "read_frames",
    "resize_center_crop",
]


def batch_captions(batch):
    """A loader batch's captions as B lists of N prompts: the default collate turns each item's N strings into N
    tuples of B."""
    return [list(clip) for clip in zip(*batch["captions"])]


def _bouncing_builder(name, dataset_class):
    def build(data_path=None, split=None, split_file=None, class_index_file=None, length=None, **kwargs):
        if data_path is not None or split_file is not None or class_index_file is not None:
            raise ValueError(f"dataset {name!r} is generated in memory: data_path, split_file and class_index_file "
                             "must be None")
        return dataset_class(split=split or "train", length=10000 if length is None else length, **kwargs)

    return build


def _video_builder(name):
    def build(data_path=None, **kwargs):
        return build_video_dataset(name, data_path, **kwargs)

    return build


DATASETS = {"bouncing": _bouncing_builder("bouncing", BouncingShapes),
            "bouncing_captions": _bouncing_builder("bouncing_captions", CaptionedBouncingShapes), **{name: _video_builder(name) for name in LAYOUTS}}


def build_dataset(name, data_path=None, num_frames=16, frame_interval=3, image_size=256, random_flip=False, seed=0,
                  split=None, split_file=None, class_index_file=None, length=None):
    """A clip dataset by name. Items: {"video": float32 (N, 3, H, W) in [-1, 1], "label", "index", "skipped"}, and
    "captions" (a tuple of N strings, one per frame) where the dataset has text.

    "skipped": a "path: reason" line per video the item passed over ("" when none; `skipped_files` reads it).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {sorted(DATASETS)}")
    return DATASETS[name](
        data_path=data_path, num_frames=num_frames, frame_interval=frame_interval, image_size=image_size,
        random_flip=random_flip, seed=seed, split=split, split_file=split_file, class_index_file=class_index_file,
        length=length,
    )


def build_config_dataset(cfg, random_flip):
    """build_dataset from the dataset keys of a training config; random_flip is the caller's (the latent cache
    encoder flips clips itself)."""
    return build_dataset(
        cfg.dataset, data_path=cfg.data_path, num_frames=cfg.num_frames, frame_interval=cfg.frame_interval,
        image_size=cfg.image_size, random_flip=random_flip, seed=cfg.global_seed, split=cfg.split,
        split_file=cfg.split_file, class_index_file=cfg.class_index_file, length=cfg.dataset_length,
    )


def build_training_dataset(cfg):
    """What a training config reads: its latent cache (checked against the config) when set, else its clips."""
    if cfg.latent_cache_dir is None:
        return build_config_dataset(cfg, cfg.random_flip)
    dataset = LatentCacheDataset(cfg.latent_cache_dir, random_flip=cfg.random_flip, seed=cfg.global_seed)
    dataset.check_matches(cfg)
    return dataset
