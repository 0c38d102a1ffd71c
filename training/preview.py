"""Preview samples of the EMA model during training, as GIFs and one PNG strip per preview."""
import numpy as np
import torch
from PIL import Image

from diffusion import create_diffusion, vtv
from models.vae import decode_latents, model_geometry
from sample.outputs import save_gif
from tools.runtime import autocast_fn, video_to_uint8


@torch.no_grad()
def write_preview(ema, vae, cfg, step, run_dir, device, amp_dtype):
    """Samples of the EMA model from a fixed seed (the same every preview, so progress is comparable); returns
    the PNG's path (rows: samples, columns: frames)."""
    in_channels, input_size = model_geometry(cfg.image_size, cfg.vae)
    diffusion = create_diffusion(cfg.preview_sampling, noise_schedule=cfg.noise_schedule,
                                 learn_sigma=cfg.learn_sigma, diffusion_steps=cfg.diffusion_steps,
                                 prediction_type=cfg.prediction_type)
    shape = (cfg.preview_num_samples, cfg.num_frames, in_channels, input_size, input_size)
    model_kwargs = {}
    if cfg.num_classes > 0:
        model_kwargs["y"] = torch.arange(cfg.preview_num_samples, device=device) % cfg.num_classes
    method = "ddim" if cfg.preview_sampling.startswith("ddim") else "ddpm"
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # training RNG untouched
        torch.manual_seed(cfg.global_seed)
        noise = torch.randn(shape, device=device)
        _, chunks = vtv.sample_video(diffusion, autocast_fn(ema, device.type, amp_dtype), "standard", shape,
                                     noise_fn=lambda num_frames: noise, method=method, eta=0.0,
                                     clip_denoised=vtv.default_clip_denoised(in_channels),
                                     model_kwargs=model_kwargs, device=device)
        video = torch.cat(list(chunks), dim=1)  # (S, N, C, h, w) on the CPU
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
    path = preview_dir / f"{step:07d}.png"
    Image.fromarray(np.concatenate(strips, axis=0)).save(path)  # (S*H, N*W, 3)
    return path
