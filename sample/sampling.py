"""Sampling as functions (what sample.py, sample_ddp.py, tools and notebooks import): load a model from a
checkpoint, read a preset's input files, sample with any VTV preset (diffusion/vtv.py), write the videos.
"""
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from datasets.video_io import count_frames, read_frames, resize_center_crop
from diffusion import create_diffusion, vtv
from diffusion.vtv import resolve_frame_indices
from models import Latte, create_model
from models.checkpoint import (
    EMA, PT, checkpoint_config, is_pretrained_folder, load_pretrained, newest_valid_checkpoint, read_checkpoint,
    read_pretrained_config, read_training_config, unwrap_state_dict,
)
from models.latte import model_name
from models.text_encoder import TextEncoder
from models.vae import decode_latents, encode_video, load_vae, model_geometry
from sample.config import INPUT_KEYS, preset_options
from sample.outputs import Mp4Writer, VideoWriter, save_png_frames, save_schedule_heatmap
from tools.runtime import autocast_dtype, autocast_fn, video_to_uint8
from training.config import TrainConfig

MODEL_KEYS = ("model", "image_size", "num_frames", "num_classes", "learn_sigma")
DIFFUSION_DEFAULTS = {"noise_schedule": "linear", "diffusion_steps": 1000, "prediction_type": "epsilon"}


def read_sampling_checkpoint(path, weights="ema"):
    """(path, checkpoint) of a checkpoint file, or of a run's checkpoints/ folder: its newest <step>.pt or
    <step>-ema.safetensors that reads, so a file cut short (a full disk, a run killed elsewhere) falls back to the
    one before, with a note. weights="model" takes only .pt files: the EMA export holds no raw weights. The file
    is read once, here."""
    path = Path(path)
    if not path.is_dir():
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found (config key 'ckpt'): {path}")
        if weights == "model" and path.name.endswith(EMA):
            raise ValueError(f"config key 'weights' = 'model', but {path} is an EMA export that holds only the "
                             "EMA weights; give the run's <step>.pt or its checkpoints/ folder")
        return path, read_checkpoint(path)

    def skip(bad, error):
        print(f"config key 'ckpt': skipping unreadable checkpoint {bad}: {error}", file=sys.stderr)

    # Newest step; at equal steps the EMA export (smaller, no optimizer state) wins.
    suffixes = (PT,) if weights == "model" else (EMA, PT)
    found = newest_valid_checkpoint(path, suffixes, on_skip=skip)
    if found is None:
        names = " or ".join(f"<step>{suffix}" for suffix in suffixes)
        raise FileNotFoundError(f"config key 'ckpt': folder {path} holds no readable {names}")
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
    return resolved


def load_text_encoder(cfg, stored, has_text_weights, device):
    """The frozen text encoder a text model was trained with (None for other models): sample config's
    text_encoder / text_max_length, else the checkpoint's."""
    name = cfg.text_encoder if cfg.text_encoder is not None else stored.get("text_encoder")
    if name is None:
        if has_text_weights:
            raise ValueError("the checkpoint holds a text model but names no text encoder: set config key "
                             "text_encoder (minilm or a local folder)")
        return None
    max_length = cfg.text_max_length or stored.get("text_max_length") or TrainConfig.text_max_length
    return TextEncoder(name, max_length=max_length, device=device)


def model_folder_settings(folder):
    """(config.json's constructor arguments, the training settings): the folder's training_config.json, with the
    keys its config.json fixes written over it."""
    config = read_pretrained_config(folder, Latte.__name__)
    stored = read_training_config(folder)
    stored.update(num_frames=config["num_frames"], num_classes=config["num_classes"],
                  learn_sigma=config["learn_sigma"], model=model_name(config) or stored.get("model"))
    return config, stored


def load_model_for_sampling(cfg, device="cpu"):
    """(model in eval mode, VAE or None, resolved settings dict); EMA weights of our checkpoints by default.
    cfg.ckpt may also be a model folder (Latte.save_pretrained; the model is built by Latte.from_pretrained).
    settings["text_encoder"] is the frozen TextEncoder of a text model, else None; settings["training_config"]
    what the checkpoint stores of its training config ({} for none)."""
    if cfg.ckpt is not None and is_pretrained_folder(cfg.ckpt):
        ckpt_path = Path(cfg.ckpt)
        if cfg.weights == "model":
            raise ValueError(f"config key 'weights' = 'model', but {ckpt_path} is a model folder, which holds one set "
                             "of weights (a run's: its EMA); give the run's <step>.pt or its checkpoints/ folder")
        config, stored = model_folder_settings(ckpt_path)
        if "image_size" not in stored and cfg.image_size is None and cfg.vae is None and config["in_channels"] == 3:
            stored["image_size"] = config["input_size"]  # no training config: a 3-channel model is a pixel one
        settings = resolve_model_config(cfg, stored, ckpt_path)
        text_encoder = load_text_encoder(cfg, stored, config["text_dim"] > 0, device)
        model = Latte.from_pretrained(ckpt_path, attention=cfg.attention)
        geometry = model_geometry(settings["image_size"], settings["vae"])
        if geometry != (model.in_channels, model.input_size):
            raise ValueError(f"model folder {ckpt_path} holds a model of {model.in_channels} x {model.input_size}^2 "
                             f"inputs, but image_size {settings['image_size']} with vae {settings['vae']} gives "
                             f"{geometry[0]} x {geometry[1]}^2 (config keys image_size, vae)")
        if text_encoder is not None and text_encoder.dim != model.text_dim:
            raise ValueError(f"text encoder {text_encoder.path} gives {text_encoder.dim}-wide tokens, but the model "
                             f"in {ckpt_path} takes {model.text_dim or 'no text'} (config key text_encoder)")
    else:
        ckpt_path, checkpoint = read_sampling_checkpoint(cfg.ckpt, cfg.weights) if cfg.ckpt is not None else (None, None)
        stored = (checkpoint_config(checkpoint) or {}) if checkpoint is not None else {}
        settings = resolve_model_config(cfg, stored, ckpt_path)
        weight_names = unwrap_state_dict(checkpoint, prefer=cfg.weights) if checkpoint is not None else {}
        has_text_weights = any(key.startswith("text_embedder.") for key in weight_names)
        text_encoder = load_text_encoder(cfg, stored, has_text_weights, device)
        in_channels, input_size = model_geometry(settings["image_size"], settings["vae"])
        model = create_model(settings["model"], input_size=input_size, num_frames=settings["num_frames"],
                             in_channels=in_channels, num_classes=settings["num_classes"],
                             learn_sigma=settings["learn_sigma"], attention=cfg.attention,
                             text_dim=text_encoder.dim if text_encoder is not None else 0,
                             text_adaln=any(key.startswith("text_embedder.pooled_mlp.") for key in weight_names))
        if checkpoint is not None:
            load_pretrained(model, checkpoint, prefer=cfg.weights, source_name=ckpt_path)
    latent = settings["vae"] is not None
    model.to(device).eval().requires_grad_(False)
    if cfg.use_compile:
        model.compile_blocks()
    vae = load_vae(settings["vae"], device=device) if latent else None
    settings["ckpt"] = str(ckpt_path) if ckpt_path is not None else None
    settings["text_encoder"] = text_encoder
    settings["training_config"] = stored
    return model, vae, settings


def create_sampling_diffusion(cfg, settings):
    return create_diffusion(str(cfg.num_sampling_steps), noise_schedule=settings["noise_schedule"],
                            learn_sigma=settings["learn_sigma"], diffusion_steps=settings["diffusion_steps"],
                            prediction_type=settings["prediction_type"])


def sampling_model_fn(model, cfg_scale=1.0, mixed_precision="no"):
    """model(x, t, y, text, text_mask) as the sampler calls it, with autocast and (cfg_scale > 1) classifier-free
    guidance on the class label and the prompt together: the unconditional half has the null label and the learned
    null prompt. Guidance doubles the batch inside this call only (DiT's forward_with_cfg), so the sampler's
    tensors stay (B, ...); history guidance around it doubles it again.
    """
    def model_fn(x, t, y=None, text=None, text_mask=None):
        text_conditioning = {} if text is None else {"text": text, "text_mask": text_mask}
        if (y is None and text is None) or cfg_scale <= 1.0:
            return model(x, t, y, **text_conditioning)
        doubled_y = None if y is None else torch.cat([y, torch.full_like(y, model.num_classes)])
        if text is not None:
            drop = torch.arange(2 * len(x), device=x.device) >= len(x)  # (2B,): the null prompt in the second half
            text_conditioning = {"text": torch.cat([text, text]), "text_mask": torch.cat([text_mask, text_mask]),
                                 "drop_text": drop}
        return model.forward_with_cfg(torch.cat([x, x]), torch.cat([t, t]), doubled_y, cfg_scale,
                                      **text_conditioning)[: len(x)]

    device_type = next(model.parameters()).device.type
    return autocast_fn(model_fn, device_type, autocast_dtype(mixed_precision, device_type))


def run_preset(model, diffusion, cfg, *, batch_size, clips=(), labels=None, generators=None, device="cpu",
               text=None):
    """vtv.sample_video with the config's preset, options and sampler: (schedule, chunks) in model space.

    clips: from load_preset_inputs; labels (B,) for class-conditional models; generators: one per video;
    text: (text (B, n, L, Dt), text_mask (B, n, L)) of a text model, n = the output length or 1 (`encode_prompts`).
    """
    frame_kwargs = {} if text is None else {"text": text[0].to(device), "text_mask": text[1].to(device)}
    frame_shape = (model.in_channels, model.input_size, model.input_size)
    clip_denoised = cfg.clip_denoised if cfg.clip_denoised is not None else vtv.default_clip_denoised(model.in_channels)
    return vtv.sample_video(
        diffusion, sampling_model_fn(model, cfg.cfg_scale, cfg.mixed_precision), cfg.preset,
        (batch_size, model.num_frames, *frame_shape), options=preset_options(cfg), clips=clips,
        noise_fn=vtv.frame_noise(batch_size, frame_shape, device, generators), method=cfg.sample_method, eta=cfg.eta,
        model_kwargs={"y": labels.to(device)} if labels is not None else {}, device=device, generator=generators,
        clip_denoised=clip_denoised, cond_noise_level=cfg.cond_noise_level, history_guidance=cfg.history_guidance,
        history_noise_level=cfg.history_noise_level, conditioning=cfg.conditioning, progress=cfg.progress,
        frame_kwargs=frame_kwargs)


def output_prompts(cfg, length):
    """The prompt of each of `length` output frames from prompt / prompts / prompt_schedule (one prompt: [it])."""
    if cfg.prompt is not None:
        return [cfg.prompt]
    if cfg.prompts is not None:
        if len(cfg.prompts) != length:
            raise ValueError(f"config key 'prompts' holds {len(cfg.prompts)} prompts, but preset {cfg.preset!r} "
                             f"writes {length} frames: give one per frame")
        return list(cfg.prompts)
    schedule = {int(frame): prompt for frame, prompt in cfg.prompt_schedule.items()}
    bad = [frame for frame in schedule if not 0 <= frame < length]
    if 0 not in schedule or bad:
        raise ValueError(f"config key 'prompt_schedule': its frames must include 0 and lie in [0, {length - 1}] "
                         f"(preset {cfg.preset!r} writes {length} frames), got {sorted(schedule)}")
    starts = sorted(schedule)
    return [schedule[max(start for start in starts if start <= frame)] for frame in range(length)]


def encode_prompts(text_encoder, frame_prompts):
    """B lists of prompts (one per output frame, or one for the video) -> (text, text_mask) for run_preset."""
    if all(len(set(prompts)) == 1 for prompts in frame_prompts):
        frame_prompts = [prompts[:1] for prompts in frame_prompts]  # (B, 1, L, Dt): one cross-attention input
    return text_encoder.encode_frames(frame_prompts)


def config_text(cfg, settings, batch_size, length):
    """(text, text_mask) of the configured prompts for a text model, None for other models."""
    text_encoder = settings.get("text_encoder")
    given = any(cfg[key] is not None for key in ("prompt", "prompts", "prompt_schedule"))
    if text_encoder is None:
        if given:
            raise ValueError("config keys prompt / prompts / prompt_schedule need a text model (trained with "
                             "text_encoder); this model takes no text")
        return None
    if not given:
        raise ValueError("this is a text model: give config key prompt (or prompts, one per frame, or "
                         "prompt_schedule) to sample it")
    return encode_prompts(text_encoder, [output_prompts(cfg, length)] * batch_size)


def to_model_space(video, vae):
    """(B, N, 3, H, W) in [-1, 1] -> what the model denoises: scaled VAE latents, or the pixels themselves."""
    return video if vae is None else encode_video(vae, video)


def to_pixels(frames, vae):
    return frames if vae is None else decode_latents(vae, frames)


def in_memory_frames(frames, key):
    """uint8 (T, H, W, 3) of frames given in memory: a PIL image or a list of them, or a uint8 array or tensor of
    shape (H, W, 3) or (T, H, W, 3)."""
    if isinstance(frames, (list, tuple)):
        frames = np.stack([np.asarray(frame.convert("RGB") if hasattr(frame, "convert") else frame)
                           for frame in frames])
    elif hasattr(frames, "convert"):  # a PIL image
        frames = np.array(frames.convert("RGB"))  # a copy: PIL lends read-only memory
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"input {key!r}: expected a path, PIL image(s) or uint8 frames of shape (H, W, 3) or "
                         f"(T, H, W, 3), got {frames.dtype} {frames.shape}")
    return frames


def read_image(source, image_size, key):
    """The first frame of a path or of in-memory frames (in_memory_frames), resized and cropped: (1, 3, S, S)."""
    if not isinstance(source, (str, Path)):
        return resize_center_crop(in_memory_frames(source, key)[:1], image_size)
    if not Path(source).exists():
        raise FileNotFoundError(f"config key {key!r}: no such image {source}")
    return resize_center_crop(read_frames(source, indices=[0]), image_size)  # (1, 3, S, S)


def read_clip(source, num_frames, image_size, start, stride, key):
    """num_frames frames from `start`, every `stride`-th, of a video path or in-memory frames, resized and cropped
    like training clips: (N, 3, S, S)."""
    in_memory = not isinstance(source, (str, Path))
    if in_memory:
        source = in_memory_frames(source, key)
        name, available = "it", len(source)
    elif not Path(source).exists():
        raise FileNotFoundError(f"config key {key!r}: no such video or frame folder {source}")
    else:
        name, available = source, count_frames(source)
    last = start + (num_frames - 1) * stride
    if last >= available:
        raise ValueError(f"config key {key!r}: {name} has {available} frames, but {num_frames} frames from "
                         f"video_start {start} at video_stride {stride} need frame {last}")
    indices = list(range(start, last + 1, stride))
    return resize_center_crop(source[indices] if in_memory else read_frames(source, indices=indices), image_size)


def load_preset_inputs(cfg, settings, vae=None, device="cpu", in_memory=None):
    """The preset's input files as a list of model-space clips (1, N, C, h, w), in the order the preset takes them
    (transition: video_a, video_b); None where a clip is not given, which sample_video then generates.

    in_memory: {input key: frames} given as images or arrays rather than paths (the pipeline's), read in place of
    the config's value for that key. Images are placed at the frame index they condition (other frames are zeros
    and never used).
    """
    N, size = settings["num_frames"], settings["image_size"]
    sources = {key: cfg[key] for key in INPUT_KEYS}
    sources.update(in_memory or {})

    def clip_of(key):
        return read_clip(sources[key], N, size, cfg.video_start, cfg.video_stride, key)

    def placed(images_by_index):
        first = next(iter(images_by_index.values()))
        clip = torch.zeros(N, *first.shape[1:])
        for index, image in images_by_index.items():
            clip[index] = image[0]
        return clip

    clips = {}
    if sources["image"] is not None:
        (index,) = resolve_frame_indices([cfg.cond_frame], N, "cond_frame")
        clips["clip"] = placed({index: read_image(sources["image"], size, "image")})
    if sources["first_image"] is not None:
        clips["clip"] = placed({0: read_image(sources["first_image"], size, "first_image"),
                                N - 1: read_image(sources["last_image"], size, "last_image")})
    if sources["keyframe_images"] is not None:
        keyframes = list(cfg.keyframes) if cfg.keyframes is not None else [0, N - 1]
        if len(keyframes) != len(sources["keyframe_images"]):
            raise ValueError(f"config key 'keyframe_images': {len(sources['keyframe_images'])} images for "
                             f"{len(keyframes)} keyframes {keyframes}")
        indices = [resolve_frame_indices([k], N, "keyframes")[0] for k in keyframes]
        clips["clip"] = placed({index: read_image(image, size, "keyframe_images")
                                for index, image in zip(indices, sources["keyframe_images"])})
    if sources["video"] is not None:
        clips["clip"] = clip_of("video")
    if sources["video_a"] is not None:
        clips["clip"] = clip_of("video_a")
    if sources["video_b"] is not None:
        clips["clip_b"] = clip_of("video_b")
    return [to_model_space(clips[key][None].to(device), vae) if key in clips else None for key in ("clip", "clip_b")]


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


def sampled_batches(cfg, model, diffusion, settings, batches, clips, device, frame_prompts=None):
    """(indices, schedule, chunks) for each batch of video indices; video k depends on seed + k, not its batch.

    frame_prompts: for a text model, the prompts of every video (video k: one per output frame, or one), in place
    of the config's prompt keys.
    """
    for indices in batches:
        torch.manual_seed(cfg.seed + indices[0])  # DDPM / stabilization noise inside the sampler
        generators = video_generators(cfg, indices, device)
        labels = video_labels(cfg, indices, settings["num_classes"], generators)
        if frame_prompts is not None:
            text = encode_prompts(settings["text_encoder"], [frame_prompts[index] for index in indices])
        else:
            text = config_text(cfg, settings, len(indices),
                               vtv.output_length(cfg.preset, settings["num_frames"], preset_options(cfg)))
        yield indices, *run_preset(model, diffusion, cfg, batch_size=len(indices), clips=clips, labels=labels,
                                   generators=generators, device=device, text=text)


def batches_of(indices, batch_size):
    return [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]


def sample_preset(cfg, pipe):
    """cfg.num_samples videos of cfg.preset from an FVDMPipeline, written to <save_dir>/<preset>/<video>/."""
    length = pipe.output_length(cfg)
    save_root = Path(cfg.save_dir) / cfg.preset
    title = f"{cfg.preset}, {cfg.sample_method}-{cfg.num_sampling_steps}"
    batches = batches_of(list(range(cfg.num_samples)), cfg.batch_size)
    for indices, schedule, chunks in tqdm(pipe.batches(cfg, batches), total=len(batches), desc="batches",
                                          disable=not cfg.progress):
        folders = [save_root / f"{index:04d}" for index in indices]
        write_videos(schedule, chunks, folders, pipe.vae, pipe.device, cfg.fps,
                     pipe.diffusion(cfg).base_num_timesteps, title, length)
    print(f"wrote {cfg.num_samples} {cfg.preset} videos of {length} frames to {save_root}")


def pending_videos(cfg, eval_dir, rank, world_size):
    """This rank's video indices whose outputs are not all written yet."""
    def done(index):
        folder_done = (eval_dir / f"{index:05d}").is_dir()
        mp4_done = cfg.mp4_dir is None or (Path(cfg.mp4_dir) / f"{index:05d}.mp4").is_file()
        return folder_done and mp4_done

    return [index for index in range(rank, cfg.num_samples, world_size) if not done(index)]


def write_eval_batch(chunks, indices, eval_dir, cfg, vae, device, length):
    """Stream decoded chunks into <index>.tmp folders / MP4s, then rename each video into place."""
    digits = max(4, len(str(length - 1)))
    tmp_dirs = [eval_dir / f"{index:05d}.tmp" for index in indices]
    for tmp_dir in tmp_dirs:
        shutil.rmtree(tmp_dir, ignore_errors=True)  # left by a killed run
    mp4s = []
    if cfg.mp4_dir is not None:
        mp4s = [Mp4Writer(Path(cfg.mp4_dir) / f"{index:05d}.tmp.mp4", cfg.fps, lossless=True) for index in indices]
    written = 0
    for chunk in chunks:
        pixels = to_pixels(chunk.to(device), vae).cpu()  # (B, k, 3, H, W)
        for b, video in enumerate(pixels):
            frames = video_to_uint8(video)
            save_png_frames(frames, tmp_dirs[b], start_index=written, digits=digits)
            if mp4s:
                mp4s[b].write(frames)
        written += pixels.shape[1]
    for b, index in enumerate(indices):
        if mp4s:
            mp4s[b].close()
            os.replace(mp4s[b].path, Path(cfg.mp4_dir) / f"{index:05d}.mp4")
        final = eval_dir / f"{index:05d}"
        shutil.rmtree(final, ignore_errors=True)  # a folder left while its MP4 was missing
        os.replace(tmp_dirs[b], final)
