"""FVDMPipeline: any VTV preset in one call, from a model folder, the Hugging Face way.

    from PIL import Image
    from sample.pipeline import FVDMPipeline

    pipe = FVDMPipeline.from_pretrained("results/demo/pretrained")   # + the VAE / text encoder it was trained with
    out = pipe(preset="i2v", image=Image.open("first.png"), num_inference_steps=50, seed=0)
    out.videos[0]                                                     # uint8 (N, H, W, 3)

Keyword arguments are SampleConfig's keys (sample/config.py documents each one) plus the diffusers names
num_inference_steps (num_sampling_steps), num_videos (num_samples) and num_frames (the length of a long or
diagonal video). Input images and videos may be paths, PIL images or uint8 arrays. sample/generate.py and
sample/sample_ddp.py sample through this object too, so a seed gives the same videos from Python as from the CLI.
"""
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf
from PIL import Image
from tqdm.auto import tqdm

from diffusion import vtv
from sample.config import INPUT_KEYS, load_config, preset_options
from sample.sampling import (
    batches_of, create_sampling_diffusion, load_model_for_sampling, load_preset_inputs, sampled_batches, to_pixels,
)
from tools.runtime import default_device, video_to_uint8

IN_MEMORY = "<in memory>"  # the config's value for an input given as images or arrays (validation sees it set)
OUTPUT_TYPES = ("np", "pil", "pt")


@dataclass
class FVDMPipelineOutput:
    videos: list  # per video: uint8 (T, H, W, 3) ("np"), a list of T PIL images ("pil"), float (T, 3, H, W) in [-1, 1] ("pt")
    schedule: torch.Tensor  # (sampler steps, T): every output frame's noise level at each step


def is_path(value):
    if isinstance(value, (list, tuple)):
        return all(isinstance(item, (str, Path)) for item in value)
    return isinstance(value, (str, Path))


class FVDMPipeline:
    """A sampling-ready model with its VAE (latent models), text encoder (text models) and settings."""

    def __init__(self, model, vae, settings, device, defaults):
        self.model = model
        self.vae = vae
        self.settings = settings  # resolve_model_config's, plus "ckpt" and "text_encoder"
        self.device = torch.device(device)
        self.defaults = defaults  # SampleConfig values each call starts from (the CLI's config file and overrides)
        self.diffusions = {}

    @classmethod
    def from_pretrained(cls, model_folder, vae=None, text_encoder=None, device=None, **sample_keys):
        """The model folder Latte.save_pretrained wrote (training writes <run>/pretrained/); vae and text_encoder:
        local folders, by default those its training_config.json names. sample_keys: defaults for every call."""
        cfg = load_config(values={"ckpt": str(model_folder), "vae": None if vae is None else str(vae),
                                  "text_encoder": None if text_encoder is None else str(text_encoder),
                                  **sample_keys})
        return cls.from_config(cfg, device)

    @classmethod
    def from_config(cls, cfg, device=None):
        """From a SampleConfig, whose ckpt may be any checkpoint the CLI reads (file, folder, model folder, null)."""
        device = default_device(device if device is not None else cfg.device)
        model, vae, settings = load_model_for_sampling(cfg, device)
        return cls(model, vae, settings, device, OmegaConf.to_container(cfg))

    def diffusion(self, cfg):
        """The respaced diffusion of cfg's sampler, built once per step count."""
        key = str(cfg.num_sampling_steps)
        if key not in self.diffusions:
            self.diffusions[key] = create_sampling_diffusion(cfg, self.settings)
        return self.diffusions[key]

    def batches(self, cfg, batches, in_memory=None):
        """(indices, schedule, chunks) per batch of video indices, chunks in model space (sampled_batches)."""
        clips = load_preset_inputs(cfg, self.settings, self.vae, self.device, in_memory)
        return sampled_batches(cfg, self.model, self.diffusion(cfg), self.settings, batches, clips, self.device)

    def decode(self, chunk):
        """Model-space frames (B, k, C, h, w) -> pixels (B, k, 3, H, W) in [-1, 1], on the CPU."""
        return to_pixels(chunk.to(self.device), self.vae).cpu()

    def config(self, preset, num_inference_steps=None, num_videos=None, num_frames=None, generator=None, **keys):
        """(the SampleConfig of a call, its in-memory inputs): the defaults <- keys, checked as the CLI checks."""
        in_memory = {key: keys.pop(key) for key in INPUT_KEYS if keys.get(key) is not None and not is_path(keys[key])}
        values = {**keys, **{key: IN_MEMORY for key in in_memory}, "preset": preset}
        values.update({key: str(value) for key, value in keys.items() if isinstance(value, Path)})
        if num_inference_steps is not None:
            values["num_sampling_steps"] = num_inference_steps
        if num_videos is not None:
            values["num_samples"] = num_videos
        if num_frames is not None:
            if preset in ("long", "diagonal"):
                values["length"] = num_frames
            elif num_frames != self.settings["num_frames"]:
                raise ValueError(f"num_frames={num_frames}: preset {preset!r} writes the model's window of "
                                 f"{self.settings['num_frames']} frames; only long and diagonal take another length")
        if generator is not None:
            if not isinstance(generator, torch.Generator):
                raise TypeError("generator: give one torch.Generator (video k then uses a seed drawn from it, + k) "
                                "or seed=...")
            values["seed"] = int(torch.randint(2**62, (), generator=generator, device=generator.device))
        cfg = load_config(values={**self.defaults, **values})
        if cfg.preset == "all":
            raise ValueError("preset 'all': the pipeline samples one preset per call; name it")
        return cfg, in_memory

    @torch.no_grad()
    def __call__(self, preset="standard", *, output_type="np", batch_size=None, **keys):
        """Sample num_videos videos of `preset` (video k from seed + k, as the CLI): FVDMPipelineOutput."""
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type {output_type!r}: choose one of {list(OUTPUT_TYPES)}")
        keys.setdefault("num_videos", 1)
        cfg, in_memory = self.config(preset, **keys)
        batches = batches_of(list(range(cfg.num_samples)), batch_size or cfg.num_samples)
        videos, schedule = [], None
        for _, schedule, chunks in tqdm(self.batches(cfg, batches, in_memory), total=len(batches), desc="batches",
                                        disable=not cfg.progress or len(batches) == 1):
            pixels = torch.cat([self.decode(chunk) for chunk in chunks], dim=1)  # (B, T, 3, H, W)
            videos.extend(pixels)
        if output_type != "pt":
            videos = [video_to_uint8(video) for video in videos]
        if output_type == "pil":
            videos = [[Image.fromarray(frame) for frame in video] for video in videos]
        return FVDMPipelineOutput(videos=videos, schedule=schedule)

    def output_length(self, cfg):
        """Frames per video of cfg's preset."""
        return vtv.output_length(cfg.preset, self.settings["num_frames"], preset_options(cfg))

    def __repr__(self):
        kind = "latent" if self.vae is not None else "pixel-space"
        text = ", text" if self.settings.get("text_encoder") is not None else ""
        return (f"FVDMPipeline({self.settings.get('ckpt')}: {self.settings['model']}, {kind}{text}, "
                f"{self.settings['num_frames']} frames of {self.settings['image_size']} px, on {self.device})")
