"""Train an FVDM (Latte backbone, per-frame timesteps sampled with PTSS) on video clips or their VAE latents.

    python train_video.py --config configs/sky/sky_train.yaml [key=value ...]          # one process
    torchrun --nproc_per_node 8 train_video.py --config configs/sky/sky_train.yaml    # DDP (NCCL on GPU, gloo on CPU)

A run lives in <results_dir>/<experiment_name>/: config.yaml, log.txt, metrics.jsonl, tensorboard/, checkpoints/,
preview/. resume_from_checkpoint=auto continues a killed run exactly where it stopped.
"""
import argparse
import json
import logging
import math
import os
import random
import sys
import time
from contextlib import nullcontext
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import OmegaConf
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from configs import MIXED_PRECISION, autocast_dtype, config_help, merge_config
from datasets.video_datasets import skipped_files
from diffusion import TIMESTEP_DISTRIBUTIONS, create_diffusion, sample_frame_timesteps
from models import create_model
from models.checkpoint import load_pretrained, newest_valid_checkpoint, read_checkpoint
from models.vae import decode_latents, encode_video, load_vae

#################################################################################
#                                     Config                                    #
#################################################################################


@dataclass
class TrainConfig:
    # --- data ---
    dataset: str = "ffs"  # build_dataset name: ffs | sky | taichi | ucf101 | video_folder | bouncing (built-in)
    data_path: Optional[str] = None  # dataset root folder; null only for the built-in bouncing data
    split: Optional[str] = None  # dataset split, e.g. ucf101 "train" (None: the dataset's default)
    split_file: Optional[str] = None  # optional list of videos to use (dataset-specific format)
    class_index_file: Optional[str] = None  # ucf101 classInd.txt (None: class names sorted)
    dataset_length: Optional[int] = None  # build_dataset(length=): bouncing clip count, or cap on real datasets
    num_frames: int = 16  # frames per training clip
    image_size: int = 256  # frames are resized/cropped to image_size x image_size pixels
    frame_interval: int = 3  # stride between sampled frames (Latte/FVDM: 3)
    random_flip: bool = False  # horizontal flip augmentation (with a latent cache: needs both orientations cached)
    num_workers: int = 4  # DataLoader worker processes per rank
    latent_cache_dir: Optional[str] = None  # read latents written by tools/encode_latents.py instead of videos
    # --- latent space ---
    vae: Optional[str] = None  # local sd-vae-ft-ema folder -> train on latents (4 ch, image_size/8); null: pixels
    vae_chunk_size: int = 32  # frames per VAE encoder/decoder call (memory only)
    # --- model ---
    model: str = "Latte-XL/2"  # Latte-{S,B,L,XL,T}/{2,4,8}
    num_classes: int = 0  # 0: unconditional; >0: class-conditional (ucf101: 101), null label id = num_classes
    class_dropout_prob: float = 0.1  # label dropout for classifier-free guidance
    learn_sigma: bool = True  # predict the variance too (IDDPM learned range): loss = mse + vb
    gradient_checkpointing: bool = False  # recompute block activations in backward (less memory, ~30% slower)
    pretrained: Optional[str] = None  # initialise from a Latte / FVDM / our checkpoint (ignored when resuming)
    # --- diffusion ---
    diffusion_steps: int = 1000  # length of the training chain
    noise_schedule: str = "linear"  # beta schedule (linear 1e-4 -> 0.02)
    ptss_p: float = 0.2  # PTSS: probability that a clip gets independent per-frame timesteps (paper: 0.2)
    ptss_granularity: str = "sample"  # "sample": one coin per clip (paper); "batch": one per batch (released code)
    timestep_distribution: str = "uniform"  # of each drawn timestep: "uniform" (paper) | "logit_normal" (mid-noise)
    timestep_logit_mean: float = 0.0  # logit_normal: t / diffusion_steps = sigmoid(mean + std * N(0, 1)) ...
    timestep_logit_std: float = 1.0  # ... (SD3: mean 0, std 1)
    min_snr_gamma: Optional[float] = None  # Min-SNR-gamma loss weighting per frame (Hang et al.: 5); null: plain MSE
    # --- optimisation ---
    learning_rate: float = 1e-4  # AdamW learning rate (peak, after warmup)
    weight_decay: float = 0.0  # AdamW weight decay
    lr_warmup_steps: int = 0  # linear warmup from 0 over this many optimizer steps
    lr_schedule: str = "constant"  # after warmup: "constant" (paper) or "cosine" (decays to 0 at max_train_steps)
    local_batch_size: int = 2  # clips per rank per micro-batch
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step
    max_train_steps: int = 400_000  # optimizer steps
    clip_max_norm: float = 0.1  # gradient-norm clipping threshold ...
    start_clip_iter: int = 20_000  # ... applied from this optimizer step on (before it, the norm is only logged)
    ema_decay: float = 0.9999  # EMA of the weights, updated every optimizer step; the EMA model is sampled
    mixed_precision: str = "no"  # "no" (or false) | "bf16" | "fp16" (GPU, loss scaling) | "auto": bf16 where native
    use_compile: bool = False  # torch.compile the model
    allow_tf32: bool = True  # TF32 matmuls/convolutions on Ampere+ GPUs
    global_seed: int = 3407  # rank r seeds its noise/timesteps with global_seed + r; data order uses global_seed
    # --- run, logging, checkpoints ---
    results_dir: str = "results"  # runs are written to results_dir/experiment_name
    experiment_name: Optional[str] = None  # None: "<dataset>-<model>" (e.g. sky-Latte-XL-2)
    log_every: int = 100  # optimizer steps per metrics.jsonl / TensorBoard record
    ckpt_every: int = 10_000  # optimizer steps per checkpoint (one is also written at the last step)
    keep_last_checkpoints: int = 3  # older checkpoints are deleted
    export_ema_every_ckpt: bool = False  # also write the EMA weights as safetensors at each checkpoint
    resume_from_checkpoint: Optional[str] = None  # "auto" (this run's newest valid .pt, or fresh), a .pt or a folder
    preview_every: int = 0  # optimizer steps per preview (DDIM samples of the EMA model as GIF/PNG); 0: off
    preview_num_samples: int = 2  # clips per preview
    preview_sampling: str = "ddim25"  # preview sampler: "ddimK" = K DDIM steps (eta 0), "K" = K ancestral DDPM steps


def load_config(config_path=None, overrides=()):
    cfg = merge_config(TrainConfig, config_path, overrides)
    validate_config(cfg)
    return cfg


def validate_config(cfg):
    def require(ok, key, why):
        if not ok:
            raise ValueError(f"config key {key!r} = {cfg[key]!r}: {why}")

    for key in ("num_frames", "image_size", "frame_interval", "local_batch_size", "gradient_accumulation_steps",
                "max_train_steps", "log_every", "ckpt_every", "keep_last_checkpoints", "diffusion_steps",
                "preview_num_samples", "vae_chunk_size"):
        require(cfg[key] >= 1, key, "must be >= 1")
    for key in ("num_workers", "num_classes", "lr_warmup_steps", "start_clip_iter", "preview_every"):
        require(cfg[key] >= 0, key, "must be >= 0")
    require(cfg.mixed_precision in MIXED_PRECISION, "mixed_precision", f"choose one of {list(MIXED_PRECISION)}")
    require(0.0 <= cfg.ptss_p <= 1.0, "ptss_p", "must lie in [0, 1]")
    require(cfg.ptss_granularity in ("sample", "batch"), "ptss_granularity", "choose 'sample' or 'batch'")
    require(cfg.timestep_distribution in TIMESTEP_DISTRIBUTIONS, "timestep_distribution",
            f"choose one of {list(TIMESTEP_DISTRIBUTIONS)}")
    require(cfg.timestep_logit_std > 0, "timestep_logit_std", "must be > 0")
    require(cfg.min_snr_gamma is None or cfg.min_snr_gamma > 0, "min_snr_gamma", "must be > 0 (or null: off)")
    require(0.0 <= cfg.ema_decay <= 1.0, "ema_decay", "must lie in [0, 1]")
    require(cfg.learning_rate > 0, "learning_rate", "must be > 0")
    require(cfg.lr_schedule in ("constant", "cosine"), "lr_schedule", "choose 'constant' or 'cosine'")
    require(cfg.clip_max_norm > 0, "clip_max_norm", "must be > 0")
    require(0.0 <= cfg.class_dropout_prob < 1.0, "class_dropout_prob", "must lie in [0, 1)")
    if cfg.vae is not None:
        require(cfg.image_size % 8 == 0, "image_size", "must be a multiple of 8 in latent space (vae is set)")
    if cfg.latent_cache_dir is not None:
        require(cfg.vae is not None, "vae", "latent_cache_dir holds VAE latents, so set vae too (previews and "
                "the sampler decode with it)")


def run_dir_of(cfg):
    name = cfg.experiment_name or f"{cfg.dataset}-{cfg.model.replace('/', '-')}"
    return Path(cfg.results_dir) / name


#################################################################################
#                              Distributed helpers                              #
#################################################################################


def setup_distributed():
    """torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; a plain `python train_video.py` is one process."""
    if "RANK" not in os.environ:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return 0, 1, device
    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        dist.init_process_group("nccl", device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size(), device


def all_gather(obj, world_size):
    if world_size == 1:
        return [obj]
    gathered = [None] * world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast(obj, world_size):
    """Rank 0's value on every rank."""
    if world_size == 1:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


class EpochShardSampler(Sampler):
    """A (seed, epoch)-shuffled order cut into global batches, dealt round-robin to ranks, startable mid-epoch.

    Position is counted in global samples, so a resumed run (even on another number of ranks) continues the
    same epoch order without repeating or skipping clips.
    """

    def __init__(self, dataset_size, rank, world_size, seed, local_batch_size):
        global_batch = local_batch_size * world_size
        if dataset_size < global_batch:
            raise ValueError(f"dataset has {dataset_size} clips, fewer than one global batch "
                             f"({local_batch_size} per rank x {world_size} ranks)")
        self.dataset_size, self.rank, self.world_size, self.seed = dataset_size, rank, world_size, seed
        self.samples_per_epoch = dataset_size // global_batch * global_batch  # drop the ragged tail
        self.epoch, self.start = 0, 0

    def set_position(self, epoch, start):
        self.epoch, self.start = epoch, start

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.dataset_size, generator=generator)[: self.samples_per_epoch]
        return iter(order[self.start + self.rank :: self.world_size].tolist())

    def __len__(self):
        return len(range(self.start + self.rank, self.samples_per_epoch, self.world_size))


#################################################################################
#                          Checkpoints and RNG state                            #
#################################################################################

CHECKPOINT_KEYS = (
    "model", "ema", "opt", "step", "epoch", "samples_in_epoch", "world_size", "rank_states", "config"
)


def capture_rng_state(device):
    """Every RNG the training step can touch, as tensors and plain types (readable with weights_only=True)."""
    _, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "cached_gaussian": float(np_cached)},
        "python": [version, list(py_state), py_gauss],
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state, device):
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    version, py_state, py_gauss = state["python"]
    random.setstate((version, tuple(py_state), py_gauss))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def checkpoint_step(path):
    return int(path.name.split(".")[0].split("-")[0])


def list_checkpoints(ckpt_dir, suffix=".pt"):
    """Our checkpoints in ckpt_dir (<step:07d>.pt or <step:07d>-ema.safetensors), newest first."""
    if not ckpt_dir.is_dir():
        return []
    found = [p for p in ckpt_dir.iterdir() if p.name[:7].isdigit() and p.name.endswith(suffix)]
    return sorted(found, key=checkpoint_step, reverse=True)


def read_training_checkpoint(path):
    """A train_video.py checkpoint, read with weights_only=True; an unreadable or foreign file raises, naming it."""
    checkpoint = read_checkpoint(path)
    missing = [key for key in CHECKPOINT_KEYS if key not in checkpoint]
    if missing:
        raise KeyError(f"{path} is not a train_video.py checkpoint: missing keys {missing}")
    return checkpoint


def find_resume_checkpoint(folder, ckpt_dir, logger):
    """(path, checkpoint) of the newest <step>.pt in `folder` that loads, or None; unreadable ones are skipped.

    In this run's own ckpt_dir an unreadable file (cut short by a full disk, say) is renamed to <name>.corrupt,
    and so is an unreadable EMA export above the newest good one: pruning ranks files by step, so a corrupt
    file left in place would count as kept and push out every new good checkpoint.
    """
    own = folder.resolve() == ckpt_dir.resolve()

    def skip(path, error):
        note = ""
        if own:
            os.replace(path, path.with_name(path.name + ".corrupt"))
            note = f"; moved it aside to {path.name}.corrupt"
        logger.warning(f"skipping unreadable checkpoint {path}: {type(error).__name__}: {error}{note}")

    found = newest_valid_checkpoint(folder, (".pt",), read=read_training_checkpoint, on_skip=skip)
    if own:
        newest_valid_checkpoint(ckpt_dir, ("-ema.safetensors",), on_skip=skip)
    return found


def set_aside_later_checkpoints(ckpt_dir, step, logger):
    """Rename this run's checkpoints of steps after `step` to <name>.superseded when resuming from an earlier one.

    Pruning ranks files by step, so they would count as kept and push out every checkpoint the resumed run writes.
    """
    for suffix in (".pt", "-ema.safetensors"):
        for path in list_checkpoints(ckpt_dir, suffix):
            if checkpoint_step(path) > step:
                os.replace(path, path.with_name(path.name + ".superseded"))
                logger.warning(f"{path} is later than the resumed step {step}: moved it aside to "
                               f"{path.name}.superseded")


def atomic_write(path, write):
    """write(tmp_path), fsync, os.replace, fsync the folder: a kill or power cut leaves the old file or the whole
    new one. The file gets the mode a plain open() gives (0o666 less the umask), although safetensors makes 0o600."""
    tmp_path = path.with_name(path.name + ".tmp")
    try:
        write(tmp_path)
        umask = os.umask(0)  # reading the umask means setting it
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        with open(tmp_path, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException:  # a write that failed (full disk) must not leave a large .tmp behind
        tmp_path.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)  # the rename itself survives a power cut only once this is synced
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def export_ema_safetensors(ema, config, step, path):
    """EMA weights for the sampler, with the resolved config JSON in the metadata."""
    from safetensors.torch import save_file

    tensors = {key: value.detach().cpu().contiguous() for key, value in ema.state_dict().items()}
    metadata = {"config": json.dumps(config), "step": str(step)}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def prune_checkpoints(ckpt_dir, keep):
    for suffix in (".pt", "-ema.safetensors"):
        for path in list_checkpoints(ckpt_dir, suffix)[keep:]:
            path.unlink()


#################################################################################
#                                Training helpers                               #
#################################################################################


@torch.no_grad()
def update_ema(ema_model, model, decay):
    ema_params = dict(ema_model.named_parameters())
    for name, param in model.named_parameters():
        ema_params[name].mul_(decay).add_(param.detach(), alpha=1 - decay)


def create_logger(run_dir):
    """Rank 0 logs to stderr and run_dir/log.txt; other ranks stay silent."""
    logger = logging.getLogger("train_video")
    logger.handlers.clear()
    logger.propagate = False
    if run_dir is None:
        logger.addHandler(logging.NullHandler())
        return logger
    logger.setLevel(logging.INFO)
    formatter = logging.Formatter("[%(asctime)s] %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    for handler in (logging.StreamHandler(), logging.FileHandler(run_dir / "log.txt")):
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    return logger


def build_training_dataset(cfg):
    if cfg.latent_cache_dir is not None:
        from datasets.latent_cache import LatentCacheDataset

        dataset = LatentCacheDataset(cfg.latent_cache_dir, random_flip=cfg.random_flip, seed=cfg.global_seed)
        dataset.check_matches(cfg)
        return dataset
    from datasets import build_dataset

    return build_dataset(
        cfg.dataset, data_path=cfg.data_path, num_frames=cfg.num_frames, frame_interval=cfg.frame_interval,
        image_size=cfg.image_size, random_flip=cfg.random_flip, seed=cfg.global_seed, split=cfg.split,
        split_file=cfg.split_file, class_index_file=cfg.class_index_file, length=cfg.dataset_length,
    )


def model_input_geometry(cfg):
    """(in_channels, input_size): 4 x image_size/8 latents with a VAE, 3 x image_size pixels without."""
    return (4, cfg.image_size // 8) if cfg.vae is not None else (3, cfg.image_size)


def autocast_forward(model, device, amp_dtype):
    """Run the network under autocast but hand fp32 outputs to the diffusion maths (VLB logs/exps stay fp32)."""

    def forward(x, t, **kwargs):
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            return model(x, t, **kwargs).float()

    return forward


def learning_rate_at(cfg, step):
    """The rate for optimizer step `step` (0-based): linear warmup, then constant or a cosine down to 0."""
    if step < cfg.lr_warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.lr_warmup_steps
    if cfg.lr_schedule == "constant":
        return cfg.learning_rate
    progress = (step - cfg.lr_warmup_steps) / max(1, cfg.max_train_steps - cfg.lr_warmup_steps)
    return cfg.learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def write_preview(ema, vae, cfg, step, run_dir, device, amp_dtype):
    """Samples of the EMA model from a fixed seed (the same every preview, so progress is comparable)."""
    from PIL import Image

    from sample.outputs import save_gif, video_to_uint8

    in_channels, input_size = model_input_geometry(cfg)
    diffusion = create_diffusion(cfg.preview_sampling, noise_schedule=cfg.noise_schedule,
                                 learn_sigma=cfg.learn_sigma, diffusion_steps=cfg.diffusion_steps)
    shape = (cfg.preview_num_samples, cfg.num_frames, in_channels, input_size, input_size)
    model_kwargs = {}
    if cfg.num_classes > 0:
        model_kwargs["y"] = torch.arange(cfg.preview_num_samples, device=device) % cfg.num_classes
    # Pixels live in [-1, 1], so x0 estimates are clipped there (as IDDPM does); latents are unbounded.
    sample_kwargs = dict(clip_denoised=cfg.vae is None, model_kwargs=model_kwargs, device=device)
    forward = autocast_forward(ema, device, amp_dtype)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # training RNG untouched
        torch.manual_seed(cfg.global_seed)
        noise = torch.randn(shape, device=device)
        if cfg.preview_sampling.startswith("ddim"):
            video = diffusion.ddim_sample_loop(forward, shape, noise=noise, eta=0.0, **sample_kwargs)
        else:
            video = diffusion.p_sample_loop(forward, shape, noise=noise, **sample_kwargs)
    if vae is not None:
        video = decode_latents(vae, video, chunk_size=cfg.vae_chunk_size)
    video = video.clamp(-1, 1).cpu()  # (S, N, 3, H, W)
    preview_dir = run_dir / "preview"
    preview_dir.mkdir(exist_ok=True)
    strips = []
    for index, clip in enumerate(video):
        frames = video_to_uint8(clip)  # (N, H, W, 3)
        save_gif(frames, preview_dir / f"{step:07d}_{index}.gif")
        strips.append(np.concatenate(list(frames), axis=1))  # (H, N*W, 3)
    Image.fromarray(np.concatenate(strips, axis=0)).save(preview_dir / f"{step:07d}.png")  # rows: samples


class MetricsLog:
    """metrics.jsonl + TensorBoard on rank 0. On resume, records after the checkpoint's step are dropped."""

    def __init__(self, run_dir, resume_step):
        from torch.utils.tensorboard import SummaryWriter

        self.path = run_dir / "metrics.jsonl"
        if resume_step is None:
            atomic_write(self.path, lambda tmp: tmp.write_text(""))
        elif self.path.exists():
            kept = []
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a kill
                    continue
                if record.get("step", math.inf) <= resume_step:
                    kept.append(line)
            # Atomic: a kill mid-rewrite must not lose the records up to the resumed step.
            atomic_write(self.path, lambda tmp: tmp.write_text("".join(line + "\n" for line in kept)))
        purge_step = None if resume_step is None else resume_step + 1
        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge_step)

    def write(self, record):
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if key not in ("step", "epoch") and value is not None:
                self.writer.add_scalar(f"train/{key}", value, record["step"])
        self.writer.flush()

    def close(self):
        self.writer.close()


#################################################################################
#                                   Training                                    #
#################################################################################


def main(cfg):
    rank, world_size, device = setup_distributed()
    is_main = rank == 0
    run_dir = run_dir_of(cfg)
    ckpt_dir = run_dir / "checkpoints"
    if is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        for stale in ckpt_dir.glob("*.tmp"):  # half-written files of a killed run
            stale.unlink()
    if world_size > 1:
        dist.barrier()
    logger = create_logger(run_dir if is_main else None)
    torch.backends.cuda.matmul.allow_tf32 = cfg.allow_tf32
    torch.backends.cudnn.allow_tf32 = cfg.allow_tf32
    amp_dtype = autocast_dtype(cfg.mixed_precision, device.type)
    if amp_dtype == torch.float16 and device.type != "cuda":
        raise ValueError("mixed_precision=fp16 needs a GPU; use bf16 on CPU")

    # Decide what to resume from on rank 0, so every rank loads the same file.
    resume_path, checkpoint = None, None
    given = cfg.resume_from_checkpoint
    if is_main:
        if given == "auto" or (given is not None and Path(given).is_dir()):  # a folder: its newest valid .pt
            folder = ckpt_dir if given == "auto" else Path(given)
            found = find_resume_checkpoint(folder, ckpt_dir, logger)
            if found is None and given != "auto":
                raise FileNotFoundError(f"config key 'resume_from_checkpoint': folder {folder} holds no readable "
                                        "<step>.pt checkpoint")
            resume_path, checkpoint = found or (None, None)
        elif given is not None:
            resume_path = Path(given)
            if not resume_path.is_file():
                raise FileNotFoundError(f"config key 'resume_from_checkpoint': no such file or folder {resume_path}")
        elif list_checkpoints(ckpt_dir):
            raise FileExistsError(f"{ckpt_dir} already holds checkpoints; pass resume_from_checkpoint=auto to "
                                  "continue that run, or choose another experiment_name")
    resume_path = broadcast(resume_path, world_size)
    if resume_path is not None and checkpoint is None:  # other ranks, or a file named by path
        checkpoint = read_training_checkpoint(resume_path)
    config_dict = OmegaConf.to_container(cfg, resolve=True)
    if is_main:
        OmegaConf.save(cfg, run_dir / "config.yaml")
        logger.info(f"run dir {run_dir}, {world_size} process(es) on {device}")
        if checkpoint is not None:
            changed = {k: (checkpoint["config"].get(k), v) for k, v in config_dict.items()
                       if checkpoint["config"].get(k) != v and k not in ("resume_from_checkpoint", "max_train_steps")}
            logger.info(f"resuming from {resume_path} (step {checkpoint['step']})"
                        + (f"; config changed (old, new): {changed}" if changed else ""))
            set_aside_later_checkpoints(ckpt_dir, checkpoint["step"], logger)

    # Data.
    dataset = build_training_dataset(cfg)
    if cfg.num_classes > 0 and getattr(dataset, "num_classes", 0) != cfg.num_classes:
        raise ValueError(f"config key 'num_classes' = {cfg.num_classes} but dataset {cfg.dataset!r} has "
                         f"{getattr(dataset, 'num_classes', 0)} classes")
    sampler = EpochShardSampler(len(dataset), rank, world_size, cfg.global_seed, cfg.local_batch_size)
    loader = DataLoader(
        dataset, batch_size=cfg.local_batch_size, sampler=sampler, num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda", drop_last=True,
        generator=torch.Generator().manual_seed(cfg.global_seed),  # keeps the loader off the global RNG
    )
    encode_on_the_fly = cfg.vae is not None and cfg.latent_cache_dir is None
    need_vae = encode_on_the_fly or (is_main and cfg.preview_every > 0 and cfg.vae is not None)
    vae = load_vae(cfg.vae, device=device) if need_vae else None

    # Model, EMA, optimiser. Same init on every rank (DDP also broadcasts rank 0's weights).
    torch.manual_seed(cfg.global_seed)
    in_channels, input_size = model_input_geometry(cfg)
    model = create_model(cfg.model, input_size=input_size, num_frames=cfg.num_frames, in_channels=in_channels,
                         num_classes=cfg.num_classes, learn_sigma=cfg.learn_sigma,
                         class_dropout_prob=cfg.class_dropout_prob,
                         gradient_checkpointing=cfg.gradient_checkpointing)
    if cfg.pretrained is not None and checkpoint is None:
        load_pretrained(model, cfg.pretrained)
        logger.info(f"initialised from {cfg.pretrained}")
    model.to(device)
    ema = deepcopy(model).requires_grad_(False).eval()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate,
                                  weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    step, epoch, samples_in_epoch = 0, 0, 0
    window = [0.0, 0.0, 0.0, 0.0, 0]  # loss, mse, vb, grad_norm sums since the last log record, and their count
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        ema.load_state_dict(checkpoint["ema"])
        optimizer.load_state_dict(checkpoint["opt"])
        if "scaler" in checkpoint:
            scaler.load_state_dict(checkpoint["scaler"])
        step, epoch, samples_in_epoch = checkpoint["step"], checkpoint["epoch"], checkpoint["samples_in_epoch"]
    # Resumed at (or past) max_train_steps: the loop will not run, so the end of main redoes the finish.
    finished_on_resume = step >= cfg.max_train_steps
    logger.info(f"{cfg.model}: {sum(p.numel() for p in model.parameters() if p.requires_grad):,} trainable "
                f"parameters, input {cfg.num_frames}x{in_channels}x{input_size}x{input_size}, autocast "
                f"{amp_dtype or 'off'} (mixed_precision={cfg.mixed_precision})")

    ddp_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None) if world_size > 1 else None
    train_model = ddp_model if ddp_model is not None else model
    if cfg.use_compile:
        train_model = torch.compile(train_model)
    if checkpoint is None:
        ema.load_state_dict(model.state_dict())  # after DDP's broadcast
    forward = autocast_forward(train_model, device, amp_dtype)
    diffusion = create_diffusion(timestep_respacing="", noise_schedule=cfg.noise_schedule,
                                 learn_sigma=cfg.learn_sigma, diffusion_steps=cfg.diffusion_steps)

    # Per-rank randomness (noise, timesteps, label dropout): seeded, or restored exactly.
    seed = cfg.global_seed + rank
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    if checkpoint is not None:
        if checkpoint["world_size"] == world_size:
            restore_rng_state(checkpoint["rank_states"][rank]["rng"], device)
            window = list(checkpoint["rank_states"][rank]["window"])
        else:
            logger.warning(f"checkpoint was written by {checkpoint['world_size']} ranks, now {world_size}: "
                           "RNG streams restart, so losses will not match an uninterrupted run")
            torch.manual_seed(seed + step)
    del checkpoint

    metrics = MetricsLog(run_dir, None if resume_path is None else step) if is_main else None
    model.train()
    accum = cfg.gradient_accumulation_steps
    micro_step = 0
    window_start = time.time()
    progress = tqdm(total=cfg.max_train_steps, initial=step, disable=not is_main, desc="train", dynamic_ncols=True)

    def save_checkpoint():
        rank_states = all_gather({"rng": capture_rng_state(device), "window": list(window)}, world_size)
        if is_main:
            payload = {
                "model": model.state_dict(), "ema": ema.state_dict(), "opt": optimizer.state_dict(),
                "scaler": scaler.state_dict(), "step": step, "epoch": epoch, "samples_in_epoch": samples_in_epoch,
                "world_size": world_size, "rank_states": rank_states, "config": config_dict,
            }
            atomic_write(ckpt_dir / f"{step:07d}.pt", lambda tmp: torch.save(payload, tmp))
            if cfg.export_ema_every_ckpt or step == cfg.max_train_steps:
                export_ema_safetensors(ema, config_dict, step, ckpt_dir / f"{step:07d}-ema.safetensors")
            prune_checkpoints(ckpt_dir, cfg.keep_last_checkpoints)
            logger.info(f"saved checkpoint {ckpt_dir / f'{step:07d}.pt'}")
        if world_size > 1:
            dist.barrier()

    with logging_redirect_tqdm(loggers=[logger]):
        reported = set()  # skipped videos already named in the log: each is named once per run
        while step < cfg.max_train_steps:
            sampler.set_position(epoch, samples_in_epoch)
            dataset.set_epoch(epoch)
            skipped = {}  # path -> reason of each video this rank's items skipped in this epoch
            for batch in loader:
                x = (batch["latents"] if cfg.latent_cache_dir is not None else batch["video"]).to(device)
                if encode_on_the_fly:
                    x = encode_video(vae, x, chunk_size=cfg.vae_chunk_size)  # (B, N, 4, H/8, W/8)
                model_kwargs = {"y": batch["label"].to(device)} if cfg.num_classes > 0 else {}
                frame_timesteps = sample_frame_timesteps(  # (B, N): PTSS
                    x.shape[0], x.shape[1], cfg.ptss_p, num_timesteps=diffusion.num_timesteps, device=device,
                    granularity=cfg.ptss_granularity, distribution=cfg.timestep_distribution,
                    logit_mean=cfg.timestep_logit_mean, logit_std=cfg.timestep_logit_std,
                )
                micro_step += 1
                sync = micro_step % accum == 0
                with nullcontext() if sync or ddp_model is None else ddp_model.no_sync():
                    losses = diffusion.training_losses(forward, x, frame_timesteps, model_kwargs=model_kwargs,
                                                       min_snr_gamma=cfg.min_snr_gamma)
                    loss = losses["loss"].mean()
                    scaler.scale(loss / accum).backward()
                window[0] += loss.item() / accum
                window[1] += losses["mse"].mean().item() / accum
                window[2] += losses["vb"].mean().item() / accum if "vb" in losses else 0.0
                samples_in_epoch += cfg.local_batch_size * world_size
                batch_skipped = skipped_files(batch)
                for path in sorted(batch_skipped.keys() - reported):
                    logger.warning(f"skipped video {path}: {batch_skipped[path]}")
                reported.update(batch_skipped)
                skipped.update(batch_skipped)
                if not sync:
                    continue

                lr = learning_rate_at(cfg, step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                scaler.unscale_(optimizer)
                max_norm = cfg.clip_max_norm if step >= cfg.start_clip_iter else math.inf
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                update_ema(ema, model, cfg.ema_decay)
                step += 1
                window[3] += grad_norm.item()
                window[4] += 1
                progress.update(1)

                if step % cfg.log_every == 0 or step == cfg.max_train_steps:
                    sums = torch.tensor(window[:4], dtype=torch.float64, device=device)
                    if world_size > 1:
                        dist.all_reduce(sums)
                    mean = (sums / (world_size * window[4])).tolist()
                    elapsed = time.time() - window_start
                    record = {"step": step, "epoch": epoch, "loss": mean[0], "mse": mean[1],
                              "vb": mean[2] if cfg.learn_sigma else None, "lr": lr, "grad_norm": mean[3],
                              "steps_per_sec": window[4] / elapsed}
                    if is_main:
                        metrics.write(record)
                        progress.set_postfix(loss=f"{mean[0]:.4f}", steps_per_sec=f"{record['steps_per_sec']:.2f}")
                    window = [0.0, 0.0, 0.0, 0.0, 0]
                    window_start = time.time()
                if step % cfg.ckpt_every == 0 or step == cfg.max_train_steps:
                    save_checkpoint()
                if is_main and cfg.preview_every > 0 and (step % cfg.preview_every == 0
                                                         or step == cfg.max_train_steps):
                    write_preview(ema, vae, cfg, step, run_dir, device, amp_dtype)
                    logger.info(f"wrote preview {run_dir / 'preview' / f'{step:07d}.png'}")
                if step >= cfg.max_train_steps:
                    break
            else:  # the epoch ran out
                if world_size > 1:  # count each video once over all ranks; name those only other ranks met
                    skipped = {path: reason for rank_skipped in all_gather(skipped, world_size)
                               for path, reason in rank_skipped.items()}
                    for path in sorted(skipped.keys() - reported):
                        logger.warning(f"skipped video {path}: {skipped[path]}")
                    reported.update(skipped)
                if skipped:
                    logger.warning(f"epoch {epoch}: {len(skipped)} video(s) were skipped as unreadable or too short")
                epoch += 1
                samples_in_epoch = 0
    progress.close()
    if is_main:
        metrics.close()
        ema_path = ckpt_dir / f"{step:07d}-ema.safetensors"
        if finished_on_resume:  # the first finish may have been killed mid-export, before pruning
            logger.info(f"step {step} already reaches max_train_steps={cfg.max_train_steps}: nothing to train")
            try:
                read_checkpoint(ema_path)
            except Exception as error:  # missing or unreadable: write it again from the checkpoint's EMA
                logger.info(f"EMA export {ema_path} is missing or unreadable ({type(error).__name__}): writing it")
                export_ema_safetensors(ema, config_dict, step, ema_path)
            prune_checkpoints(ckpt_dir, cfg.keep_last_checkpoints)
        logger.info(f"done: {step} steps; EMA weights in {ema_path}")
    if world_size > 1:
        dist.destroy_process_group()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, epilog=config_help(TrainConfig),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=str, default=None, help="YAML file with TrainConfig keys")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. local_batch_size=4")
    args = parser.parse_args(argv)
    return load_config(args.config, args.overrides)


if __name__ == "__main__":
    main(parse_args(sys.argv[1:]))
