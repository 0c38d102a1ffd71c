"""The sampling config: every key of sample/generate.py and sample_ddp.py, documented next to its default.

Preset option defaults come from diffusion/vtv.py's OPTION_DEFAULTS, the one place they are set.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from omegaconf import OmegaConf

from configs import key_checker, merge_config
from diffusion.vtv import CONDITIONING, OPTION_DEFAULTS, PRESETS, REPLACEMENT_PRESETS
from models.latte import ATTENTION_BACKENDS
from tools.runtime import MIXED_PRECISION

# Config keys that name input files (images, videos); PRESETS says which presets read each.
INPUT_KEYS = ("image", "first_image", "last_image", "keyframe_images", "video", "video_a", "video_b")


@dataclass
class SampleConfig:
    # --- checkpoint and model (model keys left null are read from the checkpoint's stored training config) ---
    ckpt: Optional[str] = None  # ours (<step>.pt, <step>-ema.safetensors, or a checkpoints/ folder: newest),
    #                             a model folder (config.json + safetensors: <run>/pretrained/), a converted
    #                             Latte/FVDM .pt, or null = random-init model (smoke runs)
    weights: str = "ema"  # which weights of a training checkpoint: "ema" | "model"
    model: Optional[str] = None  # Latte-{S,B,L,XL,T}/{2,4,8}
    image_size: Optional[int] = None  # frame size in pixels
    num_frames: Optional[int] = None  # frames per model window (its training clip length)
    num_classes: Optional[int] = None  # 0: unconditional; null label id = num_classes
    learn_sigma: Optional[bool] = None  # the model also predicts the variance (2C output channels)
    vae: Optional[str] = None  # local VAE folder of a latent model (sd-vae-ft-ema or ours); null: the checkpoint's
    noise_schedule: Optional[str] = None  # training beta schedule (null: checkpoint's, else "linear")
    diffusion_steps: Optional[int] = None  # training chain length (null: checkpoint's, else 1000)
    prediction_type: Optional[str] = None  # what the model outputs (null: checkpoint's, else "epsilon")
    # --- sampler ---
    sample_method: str = "ddim"  # "ddim" | "ddpm"
    num_sampling_steps: int = 50  # respaced steps, DiT/Latte spacing: create_diffusion(str(steps)); paper: DDIM-50
    eta: float = 0.0  # DDIM eta (0: deterministic)
    clip_denoised: Optional[bool] = None  # clamp each x0 estimate to [-1, 1] (IDDPM); null: on for pixel models,
    #                                       off for latent ones, whose values are unbounded
    cfg_scale: float = 1.0  # classifier-free guidance scale on the class or the prompt (> 1 enables it)
    class_labels: Optional[List[int]] = None  # class of video k = class_labels[k % len]; null: random classes
    # --- text (models trained with text_encoder; cfg_scale > 1 guides by the prompt, against the null prompt) ---
    text_encoder: Optional[str] = None  # "minilm" or a local Hugging Face folder; null: the checkpoint's
    text_max_length: Optional[int] = None  # tokens per prompt; null: the checkpoint's
    prompt: Optional[str] = None  # one prompt for every frame ("a red circle moving right") ...
    prompts: Optional[List[str]] = None  # ... or one per output frame (long / diagonal: `length` of them) ...
    prompt_schedule: Optional[Dict[int, str]] = None  # ... or {first output frame: prompt} segments, a story:
    #                                                    {0: "a red circle moving right", 8: "a blue square ..."}
    mixed_precision: str = "no"  # "no" | "bf16" | "fp16" | "auto" (bf16 where native): autocast around the model
    attention: str = "auto"  # attention kernel: "auto" (fastest measured for device, dtype, length) | "sdpa" | "matmul"
    use_compile: bool = False  # torch.compile each transformer block (Latte.compile_blocks); see README, Performance
    # --- VTV preset ---
    preset: str = "standard"  # a name in PRESETS of diffusion/vtv.py (standard, i2v, interpolation, long, ...),
    #                            or all: each in turn, one model load
    cond_noise_level: int = 0  # > 0: the model sees conditioning frames noised to this level (stabilization);
    #                            the output keeps them exactly clean
    history_guidance: float = 1.0  # w of history guidance for presets that hold frames: without + w * (with -
    #                                without), "without" showing the held frames at history_noise_level; 1 = off
    #                                (one model call per step on twice the batch, four times with cfg_scale > 1)
    history_noise_level: Optional[int] = None  # level of the held frames in the branch without them; null: the
    #                                top level (999: pure noise); lower: fractional history guidance
    conditioning: str = "vtv"  # "vtv": held frames clean beside noisy ones | "replacement": the scalar-timestep
    #                            baseline (every frame at one t, the held ones forward-noised to it each step),
    #                            for presets with one shared t (REPLACEMENT_PRESETS of diffusion/vtv.py)
    # --- preset inputs (images/videos are read, resized, center-cropped and encoded like training data;
    #     an input left null is generated first with the standard preset) ---
    image: Optional[str] = None  # i2v: the frame held clean
    cond_frame: int = OPTION_DEFAULTS["cond_frame"]  # i2v: its index (negative counts from the end)
    first_image: Optional[str] = None  # interpolation: keyframes 0 and N-1 ...
    last_image: Optional[str] = None
    keyframes: Optional[List[int]] = OPTION_DEFAULTS["keyframes"]  # ... or any frame indices (null: [0, N-1]) ...
    keyframe_images: Optional[List[str]] = None  # ... with one image per index (or taken from `video`)
    video: Optional[str] = None  # long: the clip to continue; next_frame: its first frames are the context;
    #                              interpolation / custom: the clean frames are taken from it
    video_a: Optional[str] = None  # transition: its last frames_a frames open the window ...
    video_b: Optional[str] = None  # ... and the first frames_b frames of video_b close it
    video_start: int = 0  # input videos are read as N frames from video_start, every video_stride-th frame
    video_stride: int = 1
    # --- preset options (defaults: diffusion/vtv.py OPTION_DEFAULTS) ---
    context_frames: Optional[int] = OPTION_DEFAULTS["context_frames"]  # long: frames carried into each next
    #   window (null: N // 2, paper 8); next_frame: context length (null: N - predict_frames)
    length: int = OPTION_DEFAULTS["length"]  # long / diagonal: frames in the output video
    predict_frames: int = OPTION_DEFAULTS["predict_frames"]  # next_frame: frames predicted after the context
    frames_a: int = OPTION_DEFAULTS["frames_a"]  # transition: clean frames from video_a
    frames_b: int = OPTION_DEFAULTS["frames_b"]  # transition: clean frames from video_b
    progressive_mode: str = OPTION_DEFAULTS["progressive_mode"]  # "scale": tau_i(t) = min(c i t, t);
    #   "lag": frame i starts i * lag steps late
    progressive_c: float = OPTION_DEFAULTS["progressive_c"]  # the paper's c
    progressive_lag: int = OPTION_DEFAULTS["progressive_lag"]
    partitions: Optional[int] = OPTION_DEFAULTS["partitions"]  # diagonal: a queue of partitions * N frames, each
    #   denoised through as many grid levels (null: num_sampling_steps // N, at least 1)
    expression: str = OPTION_DEFAULTS["expression"]  # custom: level of frame i at grid level t, in i (from 1), t, N, T
    frame_expressions: Dict[int, str] = field(  # custom: {frame: expression | "clean"}
        default_factory=lambda: dict(OPTION_DEFAULTS["frame_expressions"]))
    # --- run ---
    seed: int = 0  # video k uses seed + k (initial noise, class label, generated inputs)
    num_samples: int = 4  # videos to write
    batch_size: int = 4  # videos sampled together
    save_dir: str = "samples"
    fps: int = 8  # of the MP4 and GIF
    device: Optional[str] = None  # null: cuda when available, else cpu
    allow_tf32: bool = True  # TF32 matmuls on Ampere+ GPUs
    progress: bool = True  # progress bars


@dataclass
class EvalConfig(SampleConfig):
    eval_dir: Optional[str] = None  # frame folders <eval_dir>/<video:05d>/; null: <save_dir>/eval-<preset>
    mp4_dir: Optional[str] = None  # also write <mp4_dir>/<video:05d>.mp4 (lossless libx264rgb); null: no MP4
    progress: bool = False  # per-video sampler bars (the batch bar of rank 0 is always shown)


def load_config(config_path=None, overrides=(), values=None):
    cfg = merge_config(SampleConfig, config_path, overrides, values)
    validate_config(cfg)
    return cfg


def load_eval_config(config_path=None, overrides=()):
    cfg = merge_config(EvalConfig, config_path, overrides)
    validate_config(cfg)
    if cfg.preset == "all":
        raise ValueError("config key 'preset' = 'all': an evaluation set holds one preset; name it")
    return cfg


def validate_config(cfg):
    require = key_checker(cfg)
    require(cfg.preset in (*PRESETS, "all"), "preset", f"unknown preset; choose one of {[*PRESETS, 'all']}")
    require(cfg.sample_method in ("ddim", "ddpm"), "sample_method", "choose 'ddim' or 'ddpm'")
    require(cfg.mixed_precision in MIXED_PRECISION, "mixed_precision", f"choose one of {list(MIXED_PRECISION)}")
    require(cfg.attention in ATTENTION_BACKENDS, "attention", f"choose one of {list(ATTENTION_BACKENDS)}")
    require(cfg.weights in ("ema", "model"), "weights", "choose 'ema' or 'model'")
    require(cfg.progressive_mode in ("scale", "lag"), "progressive_mode", "choose 'scale' or 'lag'")
    for key in ("num_sampling_steps", "num_samples", "batch_size", "fps", "length", "video_stride",
                "predict_frames", "frames_a", "frames_b", "progressive_lag"):
        require(cfg[key] >= 1, key, "must be >= 1")
    for key in ("video_start", "cond_noise_level"):
        require(cfg[key] >= 0, key, "must be >= 0")
    require(cfg.partitions is None or cfg.partitions >= 1, "partitions", "must be >= 1")
    require(cfg.eta >= 0, "eta", "must be >= 0")
    require(cfg.cfg_scale >= 0, "cfg_scale", "must be >= 0")
    require(cfg.history_guidance >= 0, "history_guidance", "must be >= 0 (1 = off)")
    require(cfg.history_noise_level is None or cfg.history_noise_level >= 0, "history_noise_level",
            "must be >= 0 (null: the top level)")
    require(cfg.conditioning in CONDITIONING, "conditioning", f"choose one of {list(CONDITIONING)}")
    if cfg.conditioning == "replacement":
        require(cfg.preset in REPLACEMENT_PRESETS, "conditioning", f"'replacement' needs one shared timestep: "
                f"presets {list(REPLACEMENT_PRESETS)}, not {cfg.preset!r}")
        require(cfg.history_guidance == 1 and cfg.cond_noise_level == 0, "conditioning", "'replacement' takes "
                "neither history_guidance nor cond_noise_level (the held frames are noised to the shared t)")
    for key in INPUT_KEYS:
        presets = [name for name, preset in PRESETS.items() if key in preset.input_keys]
        require(cfg[key] is None or cfg.preset in presets, key, f"is an input of preset(s) {presets}, "
                f"not of preset {cfg.preset!r}")
    if cfg.first_image is not None or cfg.last_image is not None:
        require(cfg.first_image is not None and cfg.last_image is not None, "first_image",
                "first_image and last_image go together")
        require(cfg.keyframe_images is None and cfg.video is None, "first_image",
                "give first/last_image, keyframe_images or video, not several")
        require(cfg.keyframes is None, "first_image", "first/last_image are keyframes 0 and N-1; "
                "use keyframe_images for other keyframes")
    given_prompts = [key for key in ("prompt", "prompts", "prompt_schedule") if cfg[key] is not None]
    require(len(given_prompts) <= 1, given_prompts[-1] if given_prompts else "prompt",
            f"give one of prompt, prompts and prompt_schedule, not {given_prompts}")
    require(cfg.text_max_length is None or cfg.text_max_length >= 1, "text_max_length", "must be >= 1")
    if cfg.keyframe_images is not None:
        require(cfg.video is None, "keyframe_images", "give keyframe_images or video, not both")


def preset_options(cfg):
    """The configured preset's options, as vtv.sample_video takes them (plain lists and dicts)."""
    return {name: to_plain(cfg[name]) for name in PRESETS[cfg.preset].options}


def to_plain(value):
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
