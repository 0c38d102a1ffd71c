"""Per-frame autoencoders for video latents: a diffusers AutoencoderKL, loaded from a local folder only.

Two kinds load alike: a local copy of sd-vae-ft-ema (Latte, DiT and FVDM use it; /8, 4 channels, scaling factor
0.18215) and the autoencoders tools/train_autoencoder.py trains on the video data itself (create_autoencoder).
Each folder's config.json carries its latents' scale and shift (`scaling_factor`, `shift_factor`, as diffusers
stores them), and the latents the diffusion model sees are (posterior mean - shift) * scale.
"""
import json
from pathlib import Path

import torch
from einops import rearrange


def find_vae_dir(path) -> Path:
    """Accept either the VAE folder itself or a pipeline folder with a vae/ subfolder (Latte's layout)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"VAE path {str(path)!r} does not exist (config key `vae`)")
    if (path / "config.json").is_file():
        return path
    if (path / "vae" / "config.json").is_file():
        return path / "vae"
    raise FileNotFoundError(
        f"VAE path {str(path)!r} has no config.json (nor vae/config.json). Point it at a local copy of "
        "stabilityai/sd-vae-ft-ema or at the vae/ folder tools/train_autoencoder.py writes; nothing is downloaded."
    )


def read_vae_config(path):
    """The VAE folder's config.json as a dict, without loading (or importing) the weights."""
    config_path = find_vae_dir(path) / "config.json"
    try:
        return json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"VAE config {config_path} is not valid JSON: {error}") from None


def downsampling_factor(block_out_channels):
    """Pixels per latent pixel along each side: one 2x downsampling between consecutive encoder blocks."""
    return 2 ** (len(block_out_channels) - 1)


def model_geometry(image_size, vae=None):
    """(in_channels, input_size) the diffusion model sees: the latents of the VAE folder `vae` (its latent
    channels at image_size / its downsampling factor), or 3 x image_size pixels when vae is None."""
    if vae is None:
        return 3, image_size
    config = read_vae_config(vae)
    factor = downsampling_factor(config["block_out_channels"])
    if image_size % factor:
        raise ValueError(f"image_size {image_size} must be a multiple of {factor}, the downsampling factor of the "
                         f"VAE at {vae} (config key `vae`)")
    return config["latent_channels"], image_size // factor


def create_autoencoder(block_out_channels=(16, 32, 64), layers_per_block=1, latent_channels=4, norm_num_groups=8,
                       mid_block_attention=False, image_size=64):
    """A new (random-init) AutoencoderKL for frames: len(block_out_channels) - 1 downsamplings by 2."""
    from diffusers.models import AutoencoderKL  # imported lazily: pixel-space runs do not need diffusers

    levels = len(block_out_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels, block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block, latent_channels=latent_channels, norm_num_groups=norm_num_groups,
        mid_block_add_attention=mid_block_attention, sample_size=image_size,
    )


def load_vae(path, device=None, dtype=torch.float32):
    """Load a diffusers AutoencoderKL from a local folder, frozen and in eval mode."""
    from diffusers.models import AutoencoderKL

    if path is None:
        raise ValueError("load_vae got path=None; set the config key `vae` to a local VAE folder")
    vae = AutoencoderKL.from_pretrained(find_vae_dir(path), local_files_only=True, torch_dtype=dtype,
                                        low_cpu_mem_usage=False)  # the fast path needs accelerate; a VAE is small
    vae.requires_grad_(False).eval()
    return vae.to(device) if device is not None else vae


def latent_scale_and_shift(vae):
    """(scale, shift) of the VAE's latents from its config: z_model = (posterior mean - shift) * scale."""
    shift = vae.config.get("shift_factor")
    return float(vae.config.scaling_factor), 0.0 if shift is None else float(shift)


def _check_video(video, channels, name):
    if video.dim() != 5 or video.shape[2] != channels:
        raise ValueError(f"{name} must have shape (B, N, {channels}, H, W), got {tuple(video.shape)}")


@torch.no_grad()
def encode_video(vae, video, chunk_size=32):
    """Encode frames independently to scaled latents, using the posterior MEAN (deterministic, cacheable).

    video: (B, N, 3, H, W) in [-1, 1] -> (B, N, C, H/f, W/f) float32, already shifted and scaled by the VAE's own
    factors (latent_scale_and_shift). chunk_size bounds how many frames go through the encoder at once (memory only).
    """
    _check_video(video, 3, "video")
    batch_size = video.shape[0]
    scale, shift = latent_scale_and_shift(vae)
    frames = rearrange(video, "b n c h w -> (b n) c h w")
    param = next(vae.parameters())
    latents = [
        vae.encode(chunk.to(param.device, param.dtype)).latent_dist.mean.float()
        for chunk in frames.split(chunk_size)
    ]
    latents = (torch.cat(latents) - shift) * scale  # (B*N, C, H/f, W/f)
    return rearrange(latents, "(b n) c h w -> b n c h w", b=batch_size)


@torch.no_grad()
def decode_latents(vae, latents, chunk_size=32):
    """Decode scaled latents (B, N, C, h, w) per frame to video (B, N, 3, f*h, f*w) float32, clamped to [-1, 1]."""
    _check_video(latents, vae.config.latent_channels, "latents")
    batch_size = latents.shape[0]
    scale, shift = latent_scale_and_shift(vae)
    param = next(vae.parameters())
    flat = rearrange(latents, "b n c h w -> (b n) c h w") / scale + shift
    frames = [vae.decode(chunk.to(param.device, param.dtype)).sample.float() for chunk in flat.split(chunk_size)]
    frames = torch.cat(frames).clamp(-1, 1)  # (B*N, 3, H, W)
    return rearrange(frames, "(b n) c h w -> b n c h w", b=batch_size)
