"""Stable Diffusion VAE (sd-vae-ft-ema) for per-frame video latents, loaded from a local path only."""
from pathlib import Path

import torch
from einops import rearrange

# Multiplier that brings SD-VAE latents to roughly unit variance (Latte, DiT and FVDM all use it).
LATENT_SCALE = 0.18215


def model_geometry(image_size, latent):
    """(in_channels, input_size) the model sees: 4 x image_size/8 SD-VAE latents, or 3 x image_size pixels."""
    return (4, image_size // 8) if latent else (3, image_size)


def _find_vae_dir(path: Path) -> Path:
    """Accept either the VAE folder itself or a pipeline folder with a vae/ subfolder (Latte's layout)."""
    if (path / "config.json").is_file():
        return path
    if (path / "vae" / "config.json").is_file():
        return path / "vae"
    raise FileNotFoundError(
        f"VAE path {str(path)!r} has no config.json (nor vae/config.json). Point it at a local copy of "
        "stabilityai/sd-vae-ft-ema (config.json + diffusion_pytorch_model.safetensors); nothing is downloaded."
    )


def load_vae(path, device=None, dtype=torch.float32):
    """Load a diffusers AutoencoderKL from a local folder, frozen and in eval mode."""
    from diffusers.models import AutoencoderKL  # imported lazily: pixel-space runs do not need diffusers

    if path is None:
        raise ValueError("load_vae got path=None; set the config key `vae` to a local sd-vae-ft-ema folder")
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"VAE path {str(path)!r} does not exist (config key `vae`)")
    vae = AutoencoderKL.from_pretrained(_find_vae_dir(path), local_files_only=True, torch_dtype=dtype)
    vae.requires_grad_(False).eval()
    return vae.to(device) if device is not None else vae


def _check_video(video, channels, name):
    if video.dim() != 5 or video.shape[2] != channels:
        raise ValueError(f"{name} must have shape (B, N, {channels}, H, W), got {tuple(video.shape)}")


@torch.no_grad()
def encode_video(vae, video, chunk_size=32):
    """Encode frames independently to scaled latents, using the posterior MEAN (deterministic, cacheable).

    video: (B, N, 3, H, W) in [-1, 1] -> (B, N, 4, H/8, W/8) float32, already multiplied by LATENT_SCALE.
    chunk_size bounds how many frames go through the encoder at once (memory, not results).
    """
    _check_video(video, 3, "video")
    batch_size = video.shape[0]
    frames = rearrange(video, "b n c h w -> (b n) c h w")
    param = next(vae.parameters())
    latents = [
        vae.encode(chunk.to(param.device, param.dtype)).latent_dist.mean.float()
        for chunk in frames.split(chunk_size)
    ]
    latents = torch.cat(latents) * LATENT_SCALE  # (B*N, 4, H/8, W/8)
    return rearrange(latents, "(b n) c h w -> b n c h w", b=batch_size)


@torch.no_grad()
def decode_latents(vae, latents, chunk_size=32):
    """Decode scaled latents (B, N, 4, h, w) per frame to video (B, N, 3, 8h, 8w) float32, clamped to [-1, 1]."""
    _check_video(latents, vae.config.latent_channels, "latents")
    batch_size = latents.shape[0]
    param = next(vae.parameters())
    flat = rearrange(latents, "b n c h w -> (b n) c h w") / LATENT_SCALE
    frames = [vae.decode(chunk.to(param.device, param.dtype)).sample.float() for chunk in flat.split(chunk_size)]
    frames = torch.cat(frames).clamp(-1, 1)  # (B*N, 3, H, W)
    return rearrange(frames, "(b n) c h w -> b n c h w", b=batch_size)
