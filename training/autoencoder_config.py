"""The autoencoder (stage 1) config: the AutoencoderConfig schema and its checks.

Each key is documented by the comment beside its default (`python tools/train_autoencoder.py --help` lists them).
The run folder is named like the FVDM trainer's: results_dir/experiment_name.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from configs import key_checker, merge_config
from models.vae import downsampling_factor
from tools.runtime import MIXED_PRECISION


@dataclass
class AutoencoderConfig:
    # --- data: frames of the same video datasets (and keys) as train_video.py ---
    dataset: str = "ffs"  # build_dataset name: ffs | sky | taichi | ucf101 | video_folder | bouncing (built-in)
    data_path: Optional[str] = None  # dataset root folder; null only for the built-in bouncing data
    split: Optional[str] = None  # training split (None: the dataset's default)
    split_file: Optional[str] = None  # optional list of videos to use (dataset-specific format)
    class_index_file: Optional[str] = None  # ucf101 classInd.txt (labels are read but unused)
    dataset_length: Optional[int] = None  # build_dataset(length=): bouncing clip count, or cap on real datasets
    num_frames: int = 4  # frames taken from each clip per step (the autoencoder sees them one by one)
    frame_interval: int = 3  # stride between those frames; the same as the FVDM run's keeps the frame statistics
    image_size: int = 256  # frames are resized/cropped to image_size x image_size, as for the FVDM run
    random_flip: bool = True  # horizontal flip augmentation
    crop_size: Optional[int] = None  # train on a random crop of this size per frame (null: whole frames); the
    #                                  autoencoder is convolutional, so crops teach it the same map for less compute
    num_workers: int = 4  # DataLoader worker processes per rank
    eval_split: str = "test"  # held-out split for PSNR / SSIM (bouncing: its test stream; ucf101: testlist01)
    eval_num_clips: int = 32  # held-out clips (x num_frames frames) scored at every eval and at the end
    latent_stat_clips: int = 64  # training clips whose latents measure scaling_factor / shift_factor at export
    # --- model: a diffusers AutoencoderKL; downsampling factor 2^(len(block_out_channels) - 1) ---
    block_out_channels: List[int] = field(default_factory=lambda: [64, 128, 256, 256])  # channels per level
    layers_per_block: int = 1  # ResNet blocks per level in the encoder (the decoder has one more)
    latent_channels: int = 4  # channels of the latent (what the FVDM model's in_channels becomes)
    norm_num_groups: int = 32  # GroupNorm groups; must divide every block_out_channels entry
    mid_block_attention: bool = False  # self-attention at the bottleneck (sd-vae-ft-ema has it; costly, ties size)
    # --- loss ---
    reconstruction_loss: str = "l1"  # "l1" (sharper edges) | "mse", per pixel, on frames in [-1, 1]
    kl_weight: float = 1.0e-6  # weight of the KL term (per latent element) against the reconstruction term
    decoder_noise_std: float = 0.0  # noise added to the decoder's latents in training, in units of the latents' std
    #                                 (the FVDM's units), so the decoder trains on imperfect latents (0: off)
    decoder_finetune_steps: int = 0  # the last this many of max_train_steps train the decoder alone: the encoder is
    #                                  frozen (so the latents, their scale and a latent cache made of them stay
    #                                  fixed) and the decoder sees posterior means plus noise (0: no such phase)
    decoder_finetune_noise_std: float = 0.5  # that noise's std, in units of the latents' std (the FVDM's units)
    # --- optimisation ---
    learning_rate: float = 1.0e-4  # AdamW learning rate (peak, after warmup)
    weight_decay: float = 0.0  # AdamW weight decay
    adam_betas: List[float] = field(default_factory=lambda: [0.9, 0.999])  # AdamW (beta1, beta2)
    lr_warmup_steps: int = 100  # linear warmup from 0 over this many optimizer steps
    lr_schedule: str = "cosine"  # after warmup: "constant" or "cosine" (decays to 0 at max_train_steps)
    local_batch_size: int = 8  # clips per rank per step (x num_frames frames)
    max_train_steps: int = 100_000  # optimizer steps
    clip_max_norm: float = 1.0  # gradient-norm clipping threshold
    ema_decay: float = 0.0  # EMA of the weights (0: off, the exported weights are the trained ones)
    mixed_precision: str = "no"  # "no" | "bf16" | "fp16" (GPU) | "auto": bf16 where native (as train_video.py)
    global_seed: int = 3407  # rank r seeds its posterior samples with global_seed + r; data order uses it
    # --- run, logging, checkpoints ---
    results_dir: str = "results"  # runs are written to results_dir/experiment_name
    experiment_name: Optional[str] = None  # None: "<dataset>-autoencoder"
    log_every: int = 100  # optimizer steps per metrics.jsonl / TensorBoard record
    eval_every: int = 5000  # optimizer steps per held-out PSNR / SSIM record (and at the last step); 0: end only
    ckpt_every: int = 5000  # optimizer steps per checkpoint (one is also written at the last step)
    keep_last_checkpoints: int = 2  # older checkpoints are deleted
    resume_from_checkpoint: Optional[str] = "auto"  # "auto" (this run's newest valid .pt, or fresh), a .pt or folder
    preview_every: int = 5000  # optimizer steps per preview PNG of held-out frames over their reconstructions; 0: off


def load_autoencoder_config(config_path=None, overrides=()):
    """Schema defaults <- YAML file <- key=value overrides, then checked; a bad key or value raises, naming it."""
    cfg = merge_config(AutoencoderConfig, config_path, overrides)
    validate_autoencoder_config(cfg)
    return cfg


def validate_autoencoder_config(cfg):
    require = key_checker(cfg)
    for key in ("num_frames", "frame_interval", "image_size", "eval_num_clips", "latent_stat_clips",
                "layers_per_block", "latent_channels", "norm_num_groups", "local_batch_size", "max_train_steps",
                "log_every", "ckpt_every", "keep_last_checkpoints"):
        require(cfg[key] >= 1, key, "must be >= 1")
    for key in ("num_workers", "lr_warmup_steps", "eval_every", "preview_every"):
        require(cfg[key] >= 0, key, "must be >= 0")
    require(len(cfg.block_out_channels) >= 1, "block_out_channels", "needs at least one level")
    require(all(c % cfg.norm_num_groups == 0 for c in cfg.block_out_channels), "block_out_channels",
            f"every entry must be a multiple of norm_num_groups = {cfg.norm_num_groups}")
    factor = downsampling_factor(cfg.block_out_channels)
    require(cfg.image_size % factor == 0, "image_size",
            f"must be a multiple of the downsampling factor {factor} (len(block_out_channels) - 1 halvings)")
    if cfg.crop_size is not None:
        require(factor <= cfg.crop_size <= cfg.image_size and cfg.crop_size % factor == 0, "crop_size",
                f"must be a multiple of the downsampling factor {factor}, at most image_size")
        require(not cfg.mid_block_attention, "crop_size", "needs mid_block_attention=false (attention sees the "
                "whole frame, so crops would teach it another input size)")
    require(cfg.reconstruction_loss in ("l1", "mse"), "reconstruction_loss", "choose 'l1' or 'mse'")
    require(cfg.kl_weight >= 0, "kl_weight", "must be >= 0")
    require(cfg.decoder_noise_std >= 0, "decoder_noise_std", "must be >= 0")
    require(0 <= cfg.decoder_finetune_steps < cfg.max_train_steps, "decoder_finetune_steps",
            f"must lie in [0, max_train_steps = {cfg.max_train_steps})")
    require(cfg.decoder_finetune_noise_std >= 0, "decoder_finetune_noise_std", "must be >= 0")
    require(cfg.learning_rate > 0, "learning_rate", "must be > 0")
    require(cfg.lr_schedule in ("constant", "cosine"), "lr_schedule", "choose 'constant' or 'cosine'")
    require(len(cfg.adam_betas) == 2 and all(0 <= b < 1 for b in cfg.adam_betas), "adam_betas",
            "must be two numbers in [0, 1)")
    require(cfg.clip_max_norm > 0, "clip_max_norm", "must be > 0")
    require(0.0 <= cfg.ema_decay < 1.0, "ema_decay", "must lie in [0, 1)")
    require(cfg.mixed_precision in MIXED_PRECISION, "mixed_precision", f"choose one of {list(MIXED_PRECISION)}")


def autoencoder_run_dir(cfg):
    return Path(cfg.results_dir) / (cfg.experiment_name or f"{cfg.dataset}-autoencoder")
