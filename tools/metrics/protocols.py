"""The metric protocols (StyleGAN-V's, as Latte and FVDM report them) as plain functions.

compute_fvd / compute_fid / compute_kid / compute_isv each return a dict that holds the number
together with everything that defines it: counts, frames, stride, seed, resize, detector and a
hash of its weights, the folders compared. compute_metrics runs several, sharing networks and
features. Real-set statistics are cached under `cache_dir`, keyed by a hash of the set's file
names, sizes and modification times, the protocol and the detector weights.

Under torchrun (WORLD_SIZE > 1) feature extraction is split across ranks and gathered.
"""

import hashlib
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from .c3d import C3D_NUM_FRAMES, load_c3d
from .clips import ClipBatches, first_frames, frame_chunks, generated_clips, list_videos, real_clips, set_fingerprint
from .frechet import feature_statistics, frechet_distance, inception_score, kernel_inception_distance
from .i3d import load_i3d, preprocess_clips
from .inception import load_inception, preprocess_frames

DEFAULT_CACHE_DIR = Path(os.environ.get("FVDM_METRICS_CACHE", "~/.cache/fvdm/metrics")).expanduser()

# name -> protocol defaults; None counts mean "all".
PROTOCOLS = {
    "fvd2048_16f": dict(kind="fvd", num_real=2048, num_fake=2048, num_frames=16),
    "fvd2048_128f": dict(kind="fvd", num_real=2048, num_fake=2048, num_frames=128),
    "fid": dict(kind="frames", num_real=None, num_fake=50000),
    "kid": dict(kind="frames", num_real=1_000_000, num_fake=50000, num_subsets=100, max_subset_size=1000),
    "isv2048_ucf": dict(kind="is", num_fake=2048, num_frames=C3D_NUM_FRAMES, num_splits=10, shuffle_seed=42),
}
I3D_RESIZE = "bilinear to 224x224 (F.interpolate, align_corners=False, no antialias), then x/127.5 - 1"
INCEPTION_RESIZE = "bilinear to 299x299 as TF1 resize_bilinear (no half-pixel centres), then (x - 128) / 128"
FRAMES_PER_CHUNK = 32


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def extract_features(batches: ClipBatches, network, device="cpu", bf16=False, num_workers=2,
                     desc="features", progress=True) -> np.ndarray:
    """Runs `network` on every batch (this rank's share under torchrun) -> float32 (N, D), in
    batch order on every rank."""
    rank, world = _rank_and_world()
    mine = list(range(rank, len(batches), world))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(batches, mine), batch_size=None, num_workers=num_workers,
        pin_memory=str(device).startswith("cuda"),
    )
    if str(device).startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False  # TF32 changes FVD; the reference turns it off
        torch.backends.cudnn.allow_tf32 = False
    outputs = []
    for batch in tqdm(loader, desc=desc, disable=not progress or rank != 0, unit="batch"):
        batch = batch.to(device, non_blocking=True)
        if bf16:
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
                batch = batch.contiguous(memory_format=torch.channels_last_3d) if batch.ndim == 5 else batch
                outputs.append(network(batch).float().cpu())
        else:
            outputs.append(network(batch).float().cpu())
    local = torch.cat(outputs) if outputs else torch.zeros(0, 0)
    if world == 1:
        return local.numpy()
    return _gather_in_batch_order(local, batches, device, rank, world).numpy()


def _gather_in_batch_order(local, batches, device, rank, world):
    """all_gather of each rank's rows, reassembled so that row order is batch order."""
    rows = [batches.rows(k) for k in range(len(batches))]
    per_rank = [sum(rows[k] for k in range(r, len(batches), world)) for r in range(world)]
    width = torch.tensor([local.shape[1] if len(local) else 0], device=device)
    dist.all_reduce(width, op=dist.ReduceOp.MAX)
    padded = torch.zeros(max(per_rank), int(width), device=device)
    if len(local):  # a rank can have no batch at all
        padded[:len(local)] = local.to(device)
    gathered = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    pieces = {}
    for r in range(world):
        start = 0
        for k in range(r, len(batches), world):
            pieces[k] = gathered[r][start:start + rows[k]].cpu()
            start += rows[k]
    return torch.cat([pieces[k] for k in range(len(batches))])


#################################################################################
#                                   Cache                                       #
#################################################################################

def _cache_path(cache_dir, key_fields: dict) -> Path | None:
    if cache_dir is None:
        return None
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()
    return Path(cache_dir) / f"real-{key_fields['protocol']['kind']}-{key[:24]}.npz"


def _load_cached(path: Path | None):
    if path is None or not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as cached:
        return {name: cached[name] for name in cached.files}


def _save_cached(path: Path | None, arrays: dict):
    if path is None or _rank_and_world()[0] != 0:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(temporary, **arrays)
    os.replace(temporary, path)


def _warn_if_short(what, got, wanted):
    if wanted is not None and got < wanted:
        warnings.warn(f"{what}: only {got} items available, the protocol asks for {wanted}; "
                      "the result is not comparable with full-protocol numbers")


#################################################################################
#                                   FVD                                         #
#################################################################################

def compute_fvd(real_dir, fake_dir, num_frames=16, num_real=2048, num_fake=2048, subsample_factor=3,
                seed=0, mirror=False, *, batch_size=8, device="cpu", bf16=False, num_workers=2,
                i3d_weights=None, i3d=None, cache_dir=DEFAULT_CACHE_DIR, progress=True) -> dict:
    """FVD with StyleGAN-V's fvd2048_{16,128}f protocol.

    Real clips: one per real video (name order, then mirrored copies when `mirror`), the first
    `num_real`, each `num_frames` frames `subsample_factor` apart from a seeded random start.
    Generated clips: the first `num_frames` frames of the first `num_fake` videos.
    """
    start_time = time.time()
    i3d = i3d if i3d is not None else load_i3d(i3d_weights, device)
    if bf16:
        i3d = i3d.to(memory_format=torch.channels_last_3d)  # AMX/tensor-core friendly layout
    clip_batch = max(1, batch_size * 16 // num_frames)

    def transform(frames):  # uint8 (T, H, W, 3) -> (3, T, 224, 224)
        return preprocess_clips(frames[None])[0]

    real_videos, fake_videos = list_videos(real_dir), list_videos(fake_dir)
    real_items = real_clips(real_videos, num_real, num_frames, subsample_factor, seed, mirror)
    fake_items = generated_clips(fake_videos, num_fake, num_frames)
    _warn_if_short(f"real clips in {real_dir}", len(real_items), num_real)
    _warn_if_short(f"generated videos in {fake_dir}", len(fake_items), num_fake)

    protocol = dict(
        kind="fvd", num_real=len(real_items), num_fake=len(fake_items), num_frames=num_frames,
        real_stride=subsample_factor, fake_stride=1, seed=seed, mirror=mirror,
        real_clip="one per video, videos in name order, seeded random start",
        fake_clip="first frames of each video", resize=I3D_RESIZE,
        features="I3D Kinetics-400 pre-softmax logits averaged over time (400-d)",
        statistics="float64 mean and biased (1/N) covariance", precision="bf16-autocast" if bf16 else "fp32",
    )
    real_protocol = {k: v for k, v in protocol.items() if k not in ("num_fake", "fake_stride", "fake_clip")}
    cache_file = _cache_path(cache_dir, dict(set=set_fingerprint(real_dir, real_videos), protocol=real_protocol,
                                             detector=i3d.weights_sha256))
    cached = _load_cached(cache_file)
    if cached is None:
        batches = ClipBatches(real_videos, real_items, clip_batch, transform)
        mu_real, sigma_real = feature_statistics(
            extract_features(batches, i3d, device, bf16, num_workers, "I3D real clips", progress))
        _save_cached(cache_file, dict(mu=mu_real, sigma=sigma_real))
    else:
        mu_real, sigma_real = cached["mu"], cached["sigma"]

    batches = ClipBatches(fake_videos, fake_items, clip_batch, transform)
    mu_fake, sigma_fake = feature_statistics(
        extract_features(batches, i3d, device, bf16, num_workers, "I3D generated clips", progress))
    return dict(
        metric=f"fvd{num_real}_{num_frames}f" if num_real == num_fake == 2048 else f"fvd_{num_frames}f",
        value=frechet_distance(mu_real, sigma_real, mu_fake, sigma_fake),
        protocol=protocol,
        detector=dict(name="I3D Kinetics-400 (tf.hub i3d-kinetics-400/1)", weights=i3d.weights_path,
                      weights_sha256=i3d.weights_sha256),
        real=dict(path=str(real_dir), videos=len(real_videos), cached=cached is not None),
        fake=dict(path=str(fake_dir), videos=len(fake_videos)),
        device=str(device), seconds=round(time.time() - start_time, 1),
    )


class _ArrayClipBatches(torch.utils.data.Dataset):
    """Batch k of in-memory uint8 clips (N, T, H, W, 3), preprocessed as compute_fvd preprocesses its clips."""

    def __init__(self, clips: np.ndarray, batch_size: int):
        self.clips, self.batch_size = clips, batch_size

    def __len__(self):
        return -(-len(self.clips) // self.batch_size)

    def rows(self, index) -> int:
        return len(self.clips[index * self.batch_size:(index + 1) * self.batch_size])

    def __getitem__(self, index):
        batch = self.clips[index * self.batch_size:(index + 1) * self.batch_size]
        return preprocess_clips(torch.from_numpy(np.ascontiguousarray(batch)))  # (b, 3, T, 224, 224)


def i3d_clip_features(clips, i3d, *, batch_size=8, device="cpu", bf16=False, desc="I3D clips",
                      progress=True) -> np.ndarray:
    """FVD features (N, 400) of in-memory uint8 clips (N, T, H, W, 3), as compute_fvd computes them from frame
    folders: for callers that score videos they have just sampled (tools/reproduce.py) without writing PNGs.
    The Frechet distance of two sets is frechet_distance(*feature_statistics(a), *feature_statistics(b))."""
    clips = np.asarray(clips)
    if clips.dtype != np.uint8 or clips.ndim != 5:
        raise ValueError(f"clips must be uint8 (N, T, H, W, C), got {clips.dtype} {clips.shape}")
    if bf16:
        i3d = i3d.to(memory_format=torch.channels_last_3d)  # as compute_fvd
    return extract_features(_ArrayClipBatches(clips, batch_size), i3d, device, bf16, 0, desc, progress)


#################################################################################
#                              FID and KID (frames)                             #
#################################################################################

def _frame_features(videos, count, seed, inception, device, num_workers, desc, progress):
    chunks = frame_chunks(videos, count, seed, FRAMES_PER_CHUNK)
    batches = ClipBatches(videos, chunks, 1, preprocess_frames, concat=True)
    return extract_features(batches, inception, device, False, num_workers, desc, progress)


def compute_frame_metrics(real_dir, fake_dir, metrics=("fid",), num_real=None, num_fake=50000, seed=0, *,
                          device="cpu", num_workers=2, inception_weights=None, inception=None,
                          cache_dir=DEFAULT_CACHE_DIR, progress=True) -> dict:
    """FID and/or KID on InceptionV3 pool3 features of frames, from one feature pass.

    Real frames: all frames of all real videos (StyleGAN-V's "full"), or `num_real` drawn at
    random (seeded). Generated frames: all frames of the generated videos in name order, up to
    `num_fake`. KID uses 100 subsets of up to 1000 (StyleGAN2-ADA's kid50k_full).
    """
    unknown = set(metrics) - {"fid", "kid"}
    if unknown:
        raise ValueError(f"frame metrics are 'fid' and 'kid', got {sorted(unknown)}")
    start_time = time.time()
    inception = inception if inception is not None else load_inception(inception_weights, device)
    real_videos, fake_videos = list_videos(real_dir), list_videos(fake_dir)
    total_real = sum(v.num_frames for v in real_videos)
    total_fake = sum(v.num_frames for v in fake_videos)
    real_count = total_real if num_real is None else min(num_real, total_real)
    fake_count = min(num_fake, total_fake)
    _warn_if_short(f"generated frames in {fake_dir}", total_fake, num_fake)
    real_protocol = dict(kind="frames", num_real=real_count, seed=seed, resize=INCEPTION_RESIZE,
                         real_frames="all frames" if real_count == total_real else "seeded random subset",
                         features="InceptionV3 pool3 (2048-d)", keep_features="kid" in metrics)
    cache_file = _cache_path(cache_dir, dict(set=set_fingerprint(real_dir, real_videos), protocol=real_protocol,
                                             detector=inception.weights_sha256))
    cached = _load_cached(cache_file)
    if cached is None:
        real_features = _frame_features(real_videos, None if real_count == total_real else real_count, seed,
                                        inception, device, num_workers, "Inception real frames", progress)
        mu_real, sigma_real = feature_statistics(real_features)
        _save_cached(cache_file, dict(mu=mu_real, sigma=sigma_real,
                                      **({"features": real_features} if "kid" in metrics else {})))
    else:
        mu_real, sigma_real = cached["mu"], cached["sigma"]
        real_features = cached.get("features")

    fake_chunks = first_frames(fake_videos, fake_count, FRAMES_PER_CHUNK)
    fake_features = extract_features(ClipBatches(fake_videos, fake_chunks, 1, preprocess_frames, concat=True),
                                     inception, device, False, num_workers, "Inception generated frames", progress)

    common = dict(
        protocol=dict(real_protocol, num_fake=len(fake_features), fake_frames="all frames in name order"),
        detector=dict(name="InceptionV3 pool3 (TF inception-2015-12-05 graph)", weights=inception.weights_path,
                      weights_sha256=inception.weights_sha256),
        real=dict(path=str(real_dir), videos=len(real_videos), cached=cached is not None),
        fake=dict(path=str(fake_dir), videos=len(fake_videos)),
        device=str(device),
    )
    results = {}
    if "fid" in metrics:
        mu_fake, sigma_fake = feature_statistics(fake_features)
        results["fid"] = dict(metric="fid", value=frechet_distance(mu_real, sigma_real, mu_fake, sigma_fake), **common)
    if "kid" in metrics:
        settings = PROTOCOLS["kid"]
        real_for_kid = real_features[:settings["num_real"]]
        mean, std = kernel_inception_distance(real_for_kid, fake_features, settings["num_subsets"],
                                              settings["max_subset_size"], seed)
        results["kid"] = dict(metric="kid", value=mean, std=std, **common)
        results["kid"]["protocol"] = dict(common["protocol"], num_subsets=settings["num_subsets"],
                                          max_subset_size=settings["max_subset_size"])
    for result in results.values():
        result["seconds"] = round(time.time() - start_time, 1)
    return results


def compute_fid(real_dir, fake_dir, **kwargs) -> dict:
    return compute_frame_metrics(real_dir, fake_dir, ("fid",), **kwargs)["fid"]


def compute_kid(real_dir, fake_dir, **kwargs) -> dict:
    return compute_frame_metrics(real_dir, fake_dir, ("kid",), **kwargs)["kid"]


#################################################################################
#                          Video Inception Score (UCF-101)                      #
#################################################################################

def compute_isv(fake_dir, num_fake=2048, *, batch_size=8, device="cpu", num_workers=2, c3d_weights=None,
                c3d=None, progress=True) -> dict:
    """StyleGAN-V's isv2048_ucf: C3D (UCF-101) probabilities of the first 16 frames of each
    generated video, rows shuffled with RandomState(42), IS over 10 splits (mean, std)."""
    start_time = time.time()
    c3d = c3d if c3d is not None else load_c3d(c3d_weights, device)
    settings = PROTOCOLS["isv2048_ucf"]
    videos = list_videos(fake_dir)
    items = generated_clips(videos, num_fake, settings["num_frames"])
    _warn_if_short(f"generated videos in {fake_dir}", len(items), num_fake)

    def transform(frames):  # uint8 (T, H, W, 3) -> uint8 (3, T, H, W), as StyleGAN-V feeds C3D
        return frames.permute(3, 0, 1, 2)

    probs = extract_features(ClipBatches(videos, items, batch_size, transform), c3d, device, False, num_workers,
                             "C3D generated clips", progress)
    mean, std = inception_score(probs, settings["num_splits"], settings["shuffle_seed"])
    return dict(
        metric="isv2048_ucf" if len(items) == 2048 else f"isv{len(items)}_ucf", value=mean, std=std,
        protocol=dict(kind="is", num_fake=len(items), num_frames=settings["num_frames"], fake_stride=1,
                      num_splits=settings["num_splits"], shuffle_seed=settings["shuffle_seed"],
                      input="uint8 (B, 3, 16, H, W); the TorchScript resizes and normalises itself"),
        detector=dict(name="C3D fine-tuned on UCF-101 (TGANv2, StyleGAN-V port)", weights=c3d.weights_path,
                      weights_sha256=c3d.weights_sha256),
        fake=dict(path=str(fake_dir), videos=len(videos)),
        device=str(device), seconds=round(time.time() - start_time, 1),
    )


#################################################################################
#                                  Several                                      #
#################################################################################

def compute_metrics(real_dir, fake_dir, metrics, *, num_real=None, num_fake=None, subsample_factor=3, seed=0,
                    mirror=False, batch_size=8, device="cpu", bf16=False, num_workers=2, i3d_weights=None,
                    inception_weights=None, c3d_weights=None, cache_dir=DEFAULT_CACHE_DIR, progress=True) -> dict:
    """Runs the named protocols (keys of PROTOCOLS); `num_real`/`num_fake` override every
    protocol's counts (clips for FVD and IS, frames for FID and KID)."""
    unknown = [m for m in metrics if m not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; known: {sorted(PROTOCOLS)}")
    results, i3d = {}, None
    for name in metrics:
        settings = PROTOCOLS[name]
        if settings["kind"] == "fvd":
            i3d = i3d if i3d is not None else load_i3d(i3d_weights, device)
            results[name] = compute_fvd(
                real_dir, fake_dir, settings["num_frames"],
                num_real if num_real is not None else settings["num_real"],
                num_fake if num_fake is not None else settings["num_fake"],
                subsample_factor, seed, mirror, batch_size=batch_size, device=device, bf16=bf16,
                num_workers=num_workers, i3d=i3d, cache_dir=cache_dir, progress=progress)
            results[name]["metric"] = name
    frame_metrics = [m for m in metrics if PROTOCOLS[m]["kind"] == "frames"]
    if frame_metrics:
        results.update(compute_frame_metrics(
            real_dir, fake_dir, frame_metrics, num_real=num_real,
            num_fake=num_fake if num_fake is not None else PROTOCOLS["fid"]["num_fake"], seed=seed, device=device,
            num_workers=num_workers, inception_weights=inception_weights, cache_dir=cache_dir, progress=progress))
    if "isv2048_ucf" in metrics:
        results["isv2048_ucf"] = compute_isv(
            fake_dir, num_fake if num_fake is not None else PROTOCOLS["isv2048_ucf"]["num_fake"],
            batch_size=batch_size, device=device, num_workers=num_workers, c3d_weights=c3d_weights,
            progress=progress)
    return {name: results[name] for name in metrics}
