"""Sample videos from an FVDM with any VTV preset (diffusion/vtv.py).

    python sample/sample.py --config configs/sky/sky_sample.yaml [key=value ...]
    python sample/sample.py --config configs/demo/demo_sample.yaml preset=i2v image=face.png

Each video is written to <save_dir>/<preset>/<video:04d>/: frames/<frame:04d>.png, video.mp4, video.gif,
contact_sheet.png and schedule.png (the per-frame noise levels, frames x steps). The functions above main()
are what tools and notebooks import: load_config, load_model_for_sampling, load_preset_inputs, run_preset.
"""
import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from configs import MIXED_PRECISION, autocast_dtype, config_help, merge_config  # noqa: E402
from datasets.video_io import count_frames, read_frames, resize_center_crop  # noqa: E402
from diffusion import create_diffusion, vtv  # noqa: E402
from models import create_model  # noqa: E402
from models.checkpoint import (  # noqa: E402
    checkpoint_config, load_pretrained, newest_valid_checkpoint, read_checkpoint,
)
from models.vae import decode_latents, encode_video, load_vae  # noqa: E402
from sample.outputs import VideoWriter, save_schedule_heatmap, video_to_uint8  # noqa: E402

#################################################################################
#                                     Config                                    #
#################################################################################


@dataclass
class SampleConfig:
    # --- checkpoint and model (model keys left null are read from the checkpoint's stored training config) ---
    ckpt: Optional[str] = None  # ours (<step>.pt, <step>-ema.safetensors, or a checkpoints/ folder: newest),
    #                             a converted Latte/FVDM .pt, or null = random-init model (smoke runs)
    weights: str = "ema"  # which weights of a training checkpoint: "ema" | "model"
    model: Optional[str] = None  # Latte-{S,B,L,XL,T}/{2,4,8}
    image_size: Optional[int] = None  # frame size in pixels
    num_frames: Optional[int] = None  # frames per model window (its training clip length)
    num_classes: Optional[int] = None  # 0: unconditional; null label id = num_classes
    learn_sigma: Optional[bool] = None  # the model also predicts the variance (2C output channels)
    vae: Optional[str] = None  # local sd-vae-ft-ema folder (latent model); null: the checkpoint's, else pixels
    noise_schedule: Optional[str] = None  # training beta schedule (null: checkpoint's, else "linear")
    diffusion_steps: Optional[int] = None  # training chain length (null: checkpoint's, else 1000)
    # --- sampler ---
    sample_method: str = "ddim"  # "ddim" | "ddpm"
    num_sampling_steps: int = 50  # respaced steps, DiT/Latte spacing: create_diffusion(str(steps)); paper: DDIM-50
    eta: float = 0.0  # DDIM eta (0: deterministic)
    clip_denoised: Optional[bool] = None  # clamp each x0 estimate to [-1, 1] (IDDPM); null: on for pixel models,
    #                                       off for latent ones, whose values are unbounded
    cfg_scale: float = 1.0  # classifier-free guidance scale for class-conditional models (> 1 enables it)
    class_labels: Optional[List[int]] = None  # class of video k = class_labels[k % len]; null: random classes
    mixed_precision: str = "no"  # "no" | "bf16" | "fp16" | "auto" (bf16 where native): autocast around the model
    # --- VTV preset ---
    preset: str = "standard"  # standard | i2v | interpolation | transition | next_frame | progressive | custom |
    #                            long | diagonal  (definitions: diffusion/vtv.py) | all: each in turn, one model load
    cond_noise_level: int = 0  # > 0: the model sees conditioning frames noised to this level (stabilization);
    #                            the output keeps them exactly clean
    # --- preset inputs (images/videos are read, resized, center-cropped and encoded like training data;
    #     an input left null is generated first with the standard preset) ---
    image: Optional[str] = None  # i2v: the frame held clean
    cond_frame: int = 0  # i2v: its index (negative counts from the end)
    first_image: Optional[str] = None  # interpolation: keyframes 0 and N-1 ...
    last_image: Optional[str] = None
    keyframes: Optional[List[int]] = None  # ... or any frame indices (default [0, N-1]) ...
    keyframe_images: Optional[List[str]] = None  # ... with one image per index (or taken from `video`)
    video: Optional[str] = None  # long: the clip to continue; next_frame: its first frames are the context;
    #                              interpolation / custom: the clean frames are taken from it
    video_a: Optional[str] = None  # transition: its last frames_a frames open the window ...
    video_b: Optional[str] = None  # ... and the first frames_b frames of video_b close it
    video_start: int = 0  # input videos are read as N frames from video_start, every video_stride-th frame
    video_stride: int = 1
    # --- preset options ---
    context_frames: Optional[int] = None  # long: frames carried into each next window (null: N // 2, paper 8);
    #                                       next_frame: context length (null: N - predict_frames)
    length: int = 128  # long / diagonal: frames in the output video
    predict_frames: int = 1  # next_frame: frames predicted after the context
    frames_a: int = 4  # transition: clean frames from video_a
    frames_b: int = 4  # transition: clean frames from video_b
    progressive_mode: str = "scale"  # "scale": tau_i(t) = min(c i t, t); "lag": frame i starts i * lag steps late
    progressive_c: float = 0.2  # the paper's c
    progressive_lag: int = 1
    partitions: Optional[int] = None  # diagonal: a queue of partitions * N frames, each denoised through as many
    #                                   grid levels (null: num_sampling_steps // N, at least 1)
    expression: str = "t"  # custom: level of frame i at grid level t, in i (from 1), t, N, T
    frame_expressions: Dict[int, str] = field(default_factory=dict)  # custom: {frame: expression | "clean"}
    # --- run ---
    seed: int = 0  # video k uses seed + k (initial noise, class label, generated inputs)
    num_samples: int = 4  # videos to write
    batch_size: int = 4  # videos sampled together
    save_dir: str = "samples"
    fps: int = 8  # of the MP4 and GIF
    device: Optional[str] = None  # null: cuda when available, else cpu
    allow_tf32: bool = True  # TF32 matmuls on Ampere+ GPUs
    progress: bool = True  # progress bars


# Which presets read which input keys.
INPUT_KEYS = {
    "image": ("i2v",),
    "first_image": ("interpolation",),
    "last_image": ("interpolation",),
    "keyframe_images": ("interpolation",),
    "video": ("long", "next_frame", "interpolation", "custom"),
    "video_a": ("transition",),
    "video_b": ("transition",),
}


def load_config(config_path=None, overrides=()):
    cfg = merge_config(SampleConfig, config_path, overrides)
    validate_config(cfg)
    return cfg


def validate_config(cfg):
    def require(ok, key, why):
        if not ok:
            raise ValueError(f"config key {key!r} = {cfg[key]!r}: {why}")

    require(cfg.preset in (*vtv.PRESETS, "all"), "preset", f"unknown preset; choose one of {[*vtv.PRESETS, 'all']}")
    require(cfg.sample_method in ("ddim", "ddpm"), "sample_method", "choose 'ddim' or 'ddpm'")
    require(cfg.mixed_precision in MIXED_PRECISION, "mixed_precision", f"choose one of {list(MIXED_PRECISION)}")
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
    for key, presets in INPUT_KEYS.items():
        require(cfg[key] is None or cfg.preset in presets, key, f"is an input of preset(s) {list(presets)}, "
                f"not of preset {cfg.preset!r}")
    if cfg.first_image is not None or cfg.last_image is not None:
        require(cfg.first_image is not None and cfg.last_image is not None, "first_image",
                "first_image and last_image go together")
        require(cfg.keyframe_images is None and cfg.video is None, "first_image",
                "give first/last_image, keyframe_images or video, not several")
        require(cfg.keyframes is None, "first_image", "first/last_image are keyframes 0 and N-1; "
                "use keyframe_images for other keyframes")
    if cfg.keyframe_images is not None:
        require(cfg.video is None, "keyframe_images", "give keyframe_images or video, not both")


#################################################################################
#                                 Model loading                                 #
#################################################################################

MODEL_KEYS = ("model", "image_size", "num_frames", "num_classes", "learn_sigma")
DIFFUSION_DEFAULTS = {"noise_schedule": "linear", "diffusion_steps": 1000}


def read_sampling_checkpoint(path):
    """(path, checkpoint) of a checkpoint file, or of a run's checkpoints/ folder: its newest <step>.pt or
    <step>-ema.safetensors that reads, so a file cut short (a full disk, a run killed elsewhere) falls back to the
    one before, with a note. The file is read once, here."""
    path = Path(path)
    if not path.is_dir():
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found (config key 'ckpt'): {path}")
        return path, read_checkpoint(path)

    def skip(bad, error):
        print(f"config key 'ckpt': skipping unreadable checkpoint {bad}: {error}", file=sys.stderr)

    # Newest step; at equal steps the EMA export (smaller, no optimizer state) wins.
    found = newest_valid_checkpoint(path, ("-ema.safetensors", ".pt"), on_skip=skip)
    if found is None:
        raise FileNotFoundError(f"config key 'ckpt': folder {path} holds no readable <step>.pt or "
                                "<step>-ema.safetensors")
    return found


def resolve_model_config(cfg, stored, ckpt_path=None):
    """Model and diffusion settings: the checkpoint's stored training config, checked against the sample config.

    A key neither given nor stored is an error naming every such key and why (no ckpt, or a bare state dict).
    """
    resolved, unset = {}, []
    for key in MODEL_KEYS + tuple(DIFFUSION_DEFAULTS):
        given, saved = cfg[key], stored.get(key)
        if given is not None and saved is not None and given != saved:
            raise ValueError(f"config key {key!r} = {given!r} contradicts the checkpoint's {saved!r}; "
                             "leave it null to use the checkpoint's value")
        value = given if given is not None else saved
        if value is None:
            value = DIFFUSION_DEFAULTS.get(key)
        if value is None:
            unset.append(key)
        resolved[key] = value
    if unset:
        if ckpt_path is None:
            why = "ckpt is null (a random-init model), so no checkpoint config is read"
        elif not stored:
            why = (f"checkpoint {ckpt_path} stores no training config (a bare state dict, e.g. a converted "
                   "Latte/FVDM checkpoint)")
        else:
            why = f"the training config stored in checkpoint {ckpt_path} lacks these keys"
        raise ValueError(f"config key {unset[0]!r} must be set: {why}; set the model keys "
                         + " ".join(f"{key}=..." for key in unset))
    if "vae" in stored and stored["vae"] is None and cfg.vae is not None:
        raise ValueError(f"config key 'vae' = {cfg.vae!r}, but the checkpoint's model was trained in pixel space")
    # A stored VAE path may not exist on this machine: a vae given here relocates it.
    resolved["vae"] = cfg.vae if cfg.vae is not None else stored.get("vae")
    if resolved["vae"] is not None and resolved["image_size"] % 8:
        raise ValueError(f"image_size {resolved['image_size']} must be a multiple of 8 for a latent (VAE) model")
    return resolved


def load_model_for_sampling(cfg, device="cpu"):
    """(model in eval mode, VAE or None, resolved settings dict); EMA weights of our checkpoints by default."""
    ckpt_path, checkpoint = read_sampling_checkpoint(cfg.ckpt) if cfg.ckpt is not None else (None, None)
    stored = (checkpoint_config(checkpoint) or {}) if checkpoint is not None else {}
    settings = resolve_model_config(cfg, stored, ckpt_path)
    latent = settings["vae"] is not None
    model = create_model(
        settings["model"],
        input_size=settings["image_size"] // 8 if latent else settings["image_size"],
        num_frames=settings["num_frames"],
        in_channels=4 if latent else 3,
        num_classes=settings["num_classes"],
        learn_sigma=settings["learn_sigma"],
    )
    if checkpoint is not None:
        load_pretrained(model, checkpoint, prefer=cfg.weights, source_name=ckpt_path)
    model.to(device).eval().requires_grad_(False)
    vae = load_vae(settings["vae"], device=device) if latent else None
    settings["ckpt"] = str(ckpt_path) if ckpt_path is not None else None
    return model, vae, settings


def create_sampling_diffusion(cfg, settings):
    return create_diffusion(str(cfg.num_sampling_steps), noise_schedule=settings["noise_schedule"],
                            learn_sigma=settings["learn_sigma"], diffusion_steps=settings["diffusion_steps"])


def sampling_model_fn(model, cfg_scale=1.0, mixed_precision="no"):
    """model(x, t, y) as the sampler calls it, with autocast and (cfg_scale > 1) classifier-free guidance.

    Guidance doubles the batch inside this call only (DiT's forward_with_cfg), so the sampler's tensors stay (B, ...).
    """
    device_type = next(model.parameters()).device.type
    dtype = autocast_dtype(mixed_precision, device_type)

    def model_fn(x, t, y=None):
        with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
            if y is not None and cfg_scale > 1.0:
                null = torch.full_like(y, model.num_classes)
                out = model.forward_with_cfg(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]), cfg_scale)
                out = out[: len(x)]
            else:
                out = model(x, t, y)
        return out.float()

    return model_fn


#################################################################################
#                                 Preset inputs                                 #
#################################################################################


def to_model_space(video, vae):
    """(B, N, 3, H, W) in [-1, 1] -> what the model denoises: scaled VAE latents, or the pixels themselves."""
    return video if vae is None else encode_video(vae, video)


def to_pixels(frames, vae):
    return frames if vae is None else decode_latents(vae, frames)


def read_image(path, image_size, key):
    if not Path(path).exists():
        raise FileNotFoundError(f"config key {key!r}: no such image {path}")
    return resize_center_crop(read_frames(path, indices=[0]), image_size)  # (1, 3, S, S)


def read_clip(path, num_frames, image_size, start, stride, key):
    """num_frames frames from `start`, every `stride`-th, resized and cropped like training clips: (N, 3, S, S)."""
    if not Path(path).exists():
        raise FileNotFoundError(f"config key {key!r}: no such video or frame folder {path}")
    available = count_frames(path)
    last = start + (num_frames - 1) * stride
    if last >= available:
        raise ValueError(f"config key {key!r}: {path} has {available} frames, but {num_frames} frames from "
                         f"video_start {start} at video_stride {stride} need frame {last}")
    return resize_center_crop(read_frames(path, indices=list(range(start, last + 1, stride))), image_size)


def load_preset_inputs(cfg, settings, vae=None, device="cpu"):
    """The preset's input files as model-space clips (1, N, C, h, w), keyed "clip" (and "clip_b" for transition).

    Images are placed at the frame index they condition (other frames are zeros and never used). Inputs not
    given are absent from the dict; run_preset then generates them with the standard preset.
    """
    N, size = settings["num_frames"], settings["image_size"]

    def clip_of(path, key):
        return read_clip(path, N, size, cfg.video_start, cfg.video_stride, key)

    def placed(images_by_index):
        first = next(iter(images_by_index.values()))
        clip = torch.zeros(N, *first.shape[1:])
        for index, image in images_by_index.items():
            clip[index] = image[0]
        return clip

    clips = {}
    if cfg.image is not None:
        (index,) = vtv.resolve_frame_indices([cfg.cond_frame], N, "cond_frame")
        clips["clip"] = placed({index: read_image(cfg.image, size, "image")})
    if cfg.first_image is not None:
        clips["clip"] = placed({0: read_image(cfg.first_image, size, "first_image"),
                                N - 1: read_image(cfg.last_image, size, "last_image")})
    if cfg.keyframe_images is not None:
        keyframes = list(cfg.keyframes) if cfg.keyframes is not None else [0, N - 1]
        if len(keyframes) != len(cfg.keyframe_images):
            raise ValueError(f"config key 'keyframe_images': {len(cfg.keyframe_images)} images for "
                             f"{len(keyframes)} keyframes {keyframes}")
        indices = [vtv.resolve_frame_indices([k], N, "keyframes")[0] for k in keyframes]
        clips["clip"] = placed({index: read_image(path, size, "keyframe_images")
                                for index, path in zip(indices, cfg.keyframe_images)})
    if cfg.video is not None:
        clips["clip"] = clip_of(cfg.video, "video")
    if cfg.video_a is not None:
        clips["clip"] = clip_of(cfg.video_a, "video_a")
    if cfg.video_b is not None:
        clips["clip_b"] = clip_of(cfg.video_b, "video_b")
    return {key: to_model_space(clip[None].to(device), vae) for key, clip in clips.items()}


def preset_options(cfg):
    """build_plan keyword arguments of the configured single-window preset."""
    options = {
        "standard": {},
        "i2v": {"cond_frame": cfg.cond_frame},
        "interpolation": {"keyframes": list(cfg.keyframes) if cfg.keyframes is not None else None},
        "transition": {"frames_a": cfg.frames_a, "frames_b": cfg.frames_b},
        "next_frame": {"context_frames": cfg.context_frames, "predict_frames": cfg.predict_frames},
        "progressive": {"mode": cfg.progressive_mode, "c": cfg.progressive_c, "lag": cfg.progressive_lag},
        "custom": {"expression": cfg.expression, "frame_expressions": dict(cfg.frame_expressions)},
    }
    return options[cfg.preset]


def cond_window(cfg, plan, clip, clip_b):
    """Conditioning frames (B, n, C, h, w) laid out as the plan's window; only cond_mask positions matter."""
    if cfg.preset == "transition":
        frames_a, frames_b = cfg.frames_a, cfg.frames_b
        gap = torch.zeros_like(clip[:, : plan.num_frames - frames_a - frames_b])
        return torch.cat([clip[:, clip.shape[1] - frames_a:], gap, clip_b[:, :frames_b]], dim=1)
    return clip[:, : plan.num_frames]  # next_frame: the first M frames are the context


#################################################################################
#                                    Sampling                                   #
#################################################################################


def per_sample_noise(generators, frame_shape, device):
    """noise_fn(n) -> (B, n, *frame_shape), each video from its own generator, so batching does not change it."""
    if generators is None:
        return None
    return lambda num: torch.stack([torch.randn(num, *frame_shape, generator=g, device=device) for g in generators])


HEATMAP_FRAMES = 64  # long/diagonal heatmaps show the first frames only


def clips_denoised(cfg, model):
    """cfg.clip_denoised, where null means: clip for pixel models (3 channels), not for latent ones (the VAE's 4)."""
    return cfg.clip_denoised if cfg.clip_denoised is not None else model.in_channels == 3


def run_preset(model, diffusion, cfg, *, batch_size, inputs=None, labels=None, generators=None, device="cpu"):
    """Sample batch_size videos with cfg.preset, in model space.

    Returns (schedule, chunks): the level matrix drawn as the heatmap (rows = steps, columns = frames; -1 clean,
    NaN not started) and an iterator of chunks (B, k, C, h, w) on the CPU that make up the videos (one chunk for
    single-window presets; long and diagonal stream, holding only a window on `device`).
    inputs: from load_preset_inputs; labels (B,) for class-conditional models; generators: one per video.
    """
    inputs = inputs or {}
    N = model.num_frames
    frame_shape = (model.in_channels, model.input_size, model.input_size)
    shape = (batch_size, N, *frame_shape)
    noise_fn = per_sample_noise(generators, frame_shape, device)
    model_fn = sampling_model_fn(model, cfg.cfg_scale, cfg.mixed_precision)
    model_kwargs = {"y": labels.to(device)} if labels is not None else {}
    sampler = dict(method=cfg.sample_method, eta=cfg.eta, model_kwargs=model_kwargs, device=device,
                   generator=generators, clip_denoised=clips_denoised(cfg, model))
    grid = diffusion.sampling_timesteps

    def noise(num_frames):
        return noise_fn(num_frames) if noise_fn is not None else None

    def expand(clip):
        return clip.to(device).expand(batch_size, *clip.shape[1:])

    def standard_clip():
        plan = vtv.build_plan("standard", grid, N)
        return diffusion.vtv_sample_loop(model_fn, shape, plan.frame_schedule, noise=noise(N), **sampler)

    if cfg.preset == "long":
        context = cfg.context_frames if cfg.context_frames is not None else N // 2
        given = expand(inputs["clip"]) if "clip" in inputs else None
        given_frames = 0 if given is None else given.shape[1]
        schedule = vtv.long_video_schedule(grid, N, context, cfg.length, given_frames, max_frames=HEATMAP_FRAMES)
        chunks = vtv.iter_long_video(diffusion, model_fn, shape, cfg.length, context, given=given,
                                     cond_noise_level=cfg.cond_noise_level, noise_fn=noise_fn,
                                     progress=cfg.progress, **sampler)
        return schedule, chunks
    if cfg.preset == "diagonal":
        partitions = cfg.partitions if cfg.partitions is not None else max(1, len(grid) // N)
        schedule = vtv.diagonal_video_schedule(grid, N, cfg.length, partitions, max_frames=HEATMAP_FRAMES)
        chunks = vtv.iter_diagonal_video(diffusion, model_fn, shape, cfg.length, partitions, noise_fn=noise_fn,
                                         progress=cfg.progress, **sampler)
        return schedule, chunks

    plan = vtv.build_plan(cfg.preset, grid, N, diffusion.base_num_timesteps, **preset_options(cfg))
    cond_frames = None
    if plan.cond_mask.any():
        clip = expand(inputs["clip"]) if "clip" in inputs else standard_clip()
        clip_b = None
        if cfg.preset == "transition":
            clip_b = expand(inputs["clip_b"]) if "clip_b" in inputs else standard_clip()
        cond_frames = cond_window(cfg, plan, clip, clip_b)
    video = diffusion.vtv_sample_loop(
        model_fn, (batch_size, plan.num_frames, *frame_shape), plan.frame_schedule, cond_frames=cond_frames,
        cond_mask=plan.cond_mask.to(device), cond_noise_level=cfg.cond_noise_level, noise=noise(plan.num_frames),
        progress=cfg.progress, **sampler)
    return plan.frame_schedule.numpy(), iter([video.cpu()])


def output_length(cfg, num_frames):
    """Frames in each output video."""
    if cfg.preset in vtv.STREAMING_PRESETS:
        return cfg.length
    if cfg.preset == "next_frame":
        return sum(vtv.next_frame_split(num_frames, cfg.context_frames, cfg.predict_frames))
    return num_frames


def video_generators(cfg, indices, device):
    return [torch.Generator(device=device).manual_seed(cfg.seed + index) for index in indices]


def video_labels(cfg, indices, num_classes, generators):
    """Class of each video: class_labels cycled by video index, or drawn from the video's own generator."""
    if num_classes == 0:
        if cfg.class_labels is not None:
            raise ValueError("config key 'class_labels' is set but the model is unconditional (num_classes 0)")
        return None
    if cfg.class_labels is not None:
        labels = [cfg.class_labels[index % len(cfg.class_labels)] for index in indices]
        bad = [label for label in labels if not 0 <= label < num_classes]
        if bad:
            raise ValueError(f"config key 'class_labels': {bad} outside [0, {num_classes - 1}]")
        return torch.tensor(labels)
    return torch.stack([torch.randint(num_classes, (), generator=g, device=g.device).cpu() for g in generators])


def write_videos(schedule, chunks, folders, vae, device, fps=8, num_timesteps=1000, title="", length=None):
    """Decode streamed model-space chunks and write every output of each video into its folder."""
    digits = max(4, len(str((length or 1) - 1)))
    writers = [VideoWriter(folder, fps=fps, digits=digits) for folder in folders]
    for chunk in chunks:
        pixels = to_pixels(chunk.to(device), vae).cpu()  # (B, k, 3, H, W)
        for writer, video in zip(writers, pixels):
            writer.write(video_to_uint8(video))
    for writer, folder in zip(writers, folders):
        writer.close()
        save_schedule_heatmap(schedule, Path(folder) / "schedule.png", num_timesteps, title)


def default_device(name=None):
    return torch.device(name if name is not None else ("cuda" if torch.cuda.is_available() else "cpu"))


@torch.no_grad()
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, epilog=config_help(SampleConfig),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML file of SampleConfig keys")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. preset=i2v image=face.png")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)

    torch.backends.cuda.matmul.allow_tf32 = cfg.allow_tf32
    torch.backends.cudnn.allow_tf32 = cfg.allow_tf32
    device = default_device(cfg.device)
    model, vae, settings = load_model_for_sampling(cfg, device)
    diffusion = create_sampling_diffusion(cfg, settings)
    for preset in vtv.PRESETS if cfg.preset == "all" else (cfg.preset,):
        cfg.preset = preset
        sample_preset(cfg, model, vae, settings, diffusion, device)


def sample_preset(cfg, model, vae, settings, diffusion, device):
    """cfg.num_samples videos of cfg.preset, written to <save_dir>/<preset>/<video>/."""
    inputs = load_preset_inputs(cfg, settings, vae, device)
    length = output_length(cfg, settings["num_frames"])
    save_root = Path(cfg.save_dir) / cfg.preset
    title = f"{cfg.preset}, {cfg.sample_method}-{cfg.num_sampling_steps}"

    for first in tqdm(range(0, cfg.num_samples, cfg.batch_size), desc="batches", disable=not cfg.progress):
        indices = list(range(first, min(first + cfg.batch_size, cfg.num_samples)))
        torch.manual_seed(cfg.seed + first)  # DDPM / stabilization noise inside the sampler
        generators = video_generators(cfg, indices, device)
        labels = video_labels(cfg, indices, settings["num_classes"], generators)
        schedule, chunks = run_preset(model, diffusion, cfg, batch_size=len(indices), inputs=inputs, labels=labels,
                                      generators=generators, device=device)
        folders = [save_root / f"{index:04d}" for index in indices]
        write_videos(schedule, chunks, folders, vae, device, cfg.fps, diffusion.base_num_timesteps, title, length)
    print(f"wrote {cfg.num_samples} {cfg.preset} videos of {length} frames to {save_root}")


if __name__ == "__main__":
    main()
