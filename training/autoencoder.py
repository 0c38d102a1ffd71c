"""Stage 1: train a per-frame AutoencoderKL on video frames, so the FVDM runs in a latent space of its own data.

`train_autoencoder(cfg)` trains (or resumes) one run on this process, or on every rank torchrun started, with the
FVDM trainer's guarantees: exact resume, atomic checkpoints, metrics.jsonl + TensorBoard, previews. A run lives in
<results_dir>/<experiment_name>/: config.yaml, log.txt, metrics.jsonl, tensorboard/, checkpoints/, preview/, and
at the end
    vae/                 save_pretrained folder (config.json + safetensors) that `vae=PATH` loads; its config
                         carries the latent scale and shift measured on training clips
    reconstruction.json  held-out PSNR / SSIM per frame and their means
"""
import json
import math
import os
import shutil
import time
from contextlib import nullcontext
from copy import deepcopy

import numpy as np
import torch
import torch.distributed as dist
from einops import rearrange
from omegaconf import OmegaConf
from PIL import Image
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from datasets import build_config_dataset
from datasets.sampler import EpochShardSampler
from models.checkpoint import atomic_write, checkpoint_path, prune_checkpoints, read_training_checkpoint
from models.vae import create_autoencoder, downsampling_factor, load_vae
from tools.metrics.reconstruction import psnr, ssim
from tools.runtime import video_to_uint8

from .autoencoder_config import autoencoder_run_dir
from .logs import MetricsLog, SkippedVideoLog
from .loop import choose_resume_checkpoint, start_run
from .state import all_gather, capture_rng_state, learning_rate_at, restore_rng_state, seed_everything, update_ema

CHECKPOINT_KEYS = ("autoencoder", "model", "ema", "opt", "step", "epoch", "samples_in_epoch", "world_size",
                   "rank_states", "config")
LOSS_TERMS = ("loss", "reconstruction", "kl")
# The encoder's log-variance starts here instead of at 0: posterior noise of std 1 at the start would bury the
# latent means, and the model would spend its first hundreds of steps drawing only the background. Trained VAEs
# end with tiny posterior variances anyway (sd-vae-ft-ema's are far below this start).
INITIAL_LOGVAR = -8.0
PREVIEW_FRAMES = 8


class AutoencoderLoss(torch.nn.Module):
    """Frames -> (loss, reconstruction term, KL term), all per frame value: what DDP wraps (it syncs via forward).

    As in LDM's autoencoder loss, both terms are summed over a frame and the sum is divided by the frame's pixel
    values, so kl_weight means what it means there (LDM's 1e-6).

    With decoder_noise_std, the decoder sees its latents plus Gaussian noise of that std in units of the batch's
    latent std (what the exported scaling_factor makes 1, so the FVDM's units), detached so that the encoder cannot
    outgrow it: the decoder learns to turn a slightly wrong latent, which is what a diffusion model samples, into a
    clean frame.

    In the decoder fine-tune (`decoder_only_noise_std` set, encoder frozen) the decoder sees the posterior means,
    what a latent cache holds and the FVDM learns, plus noise of that std in the same units.
    """

    def __init__(self, vae, reconstruction_loss, kl_weight, decoder_noise_std=0.0):
        super().__init__()
        self.vae = vae
        self.reconstruction_loss = reconstruction_loss
        self.kl_weight = kl_weight
        self.decoder_noise_std = decoder_noise_std
        self.decoder_only_noise_std = None

    def forward(self, frames):  # frames: (F, 3, H, W) in [-1, 1]
        if self.decoder_only_noise_std is None:
            posterior = self.vae.encode(frames).latent_dist
            latents, noise_std = posterior.sample(), self.decoder_noise_std  # (F, C, h, w)
        else:
            with torch.no_grad():
                posterior = self.vae.encode(frames).latent_dist
            latents, noise_std = posterior.mean, self.decoder_only_noise_std
        if noise_std > 0:
            latents = latents + noise_std * latents.detach().std() * torch.randn_like(latents)
        decoded = self.vae.decode(latents).sample.float()
        error = decoded - frames
        reconstruction = error.abs().mean() if self.reconstruction_loss == "l1" else error.square().mean()
        kl = posterior.kl().float().mean() / frames[0].numel()
        return reconstruction + self.kl_weight * kl, reconstruction, kl


def create_initial_autoencoder(cfg):
    torch.manual_seed(cfg.global_seed)
    vae = create_autoencoder(cfg.block_out_channels, cfg.layers_per_block, cfg.latent_channels, cfg.norm_num_groups,
                             cfg.mid_block_attention, cfg.image_size)
    with torch.no_grad():
        vae.quant_conv.bias[cfg.latent_channels:] = INITIAL_LOGVAR  # quant_conv's output is (mean, logvar)
    return vae


def read_autoencoder_checkpoint(path):
    return read_training_checkpoint(path, CHECKPOINT_KEYS, "tools/train_autoencoder.py")


def train_autoencoder(cfg):
    """Train the autoencoder run of `cfg` (a load_autoencoder_config result) to max_train_steps, then export it."""
    run_dir = autoencoder_run_dir(cfg)
    rank, world_size, device, ckpt_dir, logger, amp_dtype = start_run(cfg, run_dir)
    is_main = rank == 0
    resume_path, checkpoint = choose_resume_checkpoint(cfg, ckpt_dir, is_main, world_size, logger,
                                                       read=read_autoencoder_checkpoint)
    config_dict = OmegaConf.to_container(cfg, resolve=True)
    if is_main:
        OmegaConf.save(cfg, run_dir / "config.yaml")
        logger.info(f"autoencoder run dir {run_dir}, {world_size} process(es) on {device}")
        if checkpoint is not None:
            logger.info(f"resuming from {resume_path} (step {checkpoint['step']})")

    dataset = build_config_dataset(cfg, cfg.random_flip)
    sampler = EpochShardSampler(len(dataset), rank, world_size, cfg.global_seed, cfg.local_batch_size)
    loader = DataLoader(dataset, batch_size=cfg.local_batch_size, sampler=sampler, num_workers=cfg.num_workers,
                        pin_memory=device.type == "cuda", drop_last=True,
                        generator=torch.Generator().manual_seed(cfg.global_seed))
    held_out = held_out_frames(cfg) if is_main else None  # (E, N, 3, H, W)

    vae = create_initial_autoencoder(cfg).to(device)
    ema = deepcopy(vae).requires_grad_(False).eval() if cfg.ema_decay > 0 else None
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.learning_rate, betas=tuple(cfg.adam_betas),
                                  weight_decay=cfg.weight_decay, fused=True)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    step, epoch, samples_in_epoch = 0, 0, 0
    if checkpoint is not None:
        vae.load_state_dict(checkpoint["model"])
        if ema is not None:
            ema.load_state_dict(checkpoint["ema"] if checkpoint["ema"] is not None else checkpoint["model"])
        optimizer.load_state_dict(checkpoint["opt"])
        scaler.load_state_dict(checkpoint["scaler"])
        step, epoch, samples_in_epoch = checkpoint["step"], checkpoint["epoch"], checkpoint["samples_in_epoch"]
    finished_on_resume = step >= cfg.max_train_steps
    logger.info(f"AutoencoderKL {list(cfg.block_out_channels)} (/{downsampling_factor(cfg.block_out_channels)}, "
                f"{cfg.latent_channels} latent channels): {sum(p.numel() for p in vae.parameters()):,} parameters, "
                f"frames {cfg.image_size}px, autocast {amp_dtype or 'off'}")

    loss_module = AutoencoderLoss(vae, cfg.reconstruction_loss, cfg.kl_weight, cfg.decoder_noise_std)
    train_module = DDP(loss_module) if world_size > 1 else loss_module
    decoder_finetune_start = cfg.max_train_steps - cfg.decoder_finetune_steps
    sums = seed_rank_state(cfg, rank, world_size, device, checkpoint, step, logger)
    del checkpoint
    metrics = MetricsLog(run_dir, None if resume_path is None else step) if is_main else None
    window_start = time.time()
    vae.train()
    progress = tqdm(total=cfg.max_train_steps, initial=step, disable=not is_main, desc="autoencoder",
                    dynamic_ncols=True)
    with logging_redirect_tqdm(loggers=[logger]):
        skipped = SkippedVideoLog(logger)
        while step < cfg.max_train_steps:
            sampler.set_position(epoch, samples_in_epoch)
            dataset.set_epoch(epoch)
            for batch in loader:
                if loss_module.decoder_only_noise_std is None and step >= decoder_finetune_start:
                    train_module = start_decoder_finetune(loss_module, ema, cfg, world_size, logger)
                frames = random_crops(rearrange(batch["video"].to(device), "b n c h w -> (b n) c h w"), cfg.crop_size)
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate_at(cfg, step)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    losses = train_module(frames)
                scaler.scale(losses[0]).backward()
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(vae.parameters(), cfg.clip_max_norm)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                if ema is not None:
                    update_ema(ema, vae, cfg.ema_decay)
                step += 1
                samples_in_epoch += cfg.local_batch_size * world_size
                sums = [total + value for total, value in zip(sums, [*(t.item() for t in losses), grad_norm.item(), 1])]
                skipped.add_batch(batch)
                progress.update(1)
                last = step == cfg.max_train_steps
                if step % cfg.log_every == 0 or last:
                    record = {"step": step, "epoch": epoch, **mean_terms(sums, world_size, device),
                              "lr": learning_rate_at(cfg, step - 1),
                              "steps_per_sec": sums[-1] / (time.time() - window_start)}
                    if is_main:
                        metrics.write(record)
                        progress.set_postfix(loss=f"{record['loss']:.4f}")
                    sums, window_start = [0.0] * 5, time.time()
                if is_main and ((cfg.eval_every and step % cfg.eval_every == 0) or last):
                    scores = reconstruction_scores(ema or vae, held_out, cfg, device, amp_dtype)
                    metrics.write({"step": step, "eval_psnr": scores["psnr_mean"], "eval_ssim": scores["ssim_mean"]})
                    vae.train()
                if is_main and cfg.preview_every and (step % cfg.preview_every == 0 or last):
                    write_reconstruction_preview(ema or vae, held_out, cfg, step, run_dir, device, amp_dtype)
                    vae.train()
                if step % cfg.ckpt_every == 0 or last:
                    rank_states = all_gather({"rng": capture_rng_state(device), "window": sums}, world_size)
                    if is_main:
                        path = checkpoint_path(ckpt_dir, step)
                        payload = {"autoencoder": True, "model": vae.state_dict(),
                                   "ema": ema.state_dict() if ema is not None else None,
                                   "opt": optimizer.state_dict(), "scaler": scaler.state_dict(), "step": step,
                                   "epoch": epoch, "samples_in_epoch": samples_in_epoch, "world_size": world_size,
                                   "rank_states": rank_states, "config": config_dict}
                        atomic_write(path, lambda tmp: torch.save(payload, tmp))
                        prune_checkpoints(ckpt_dir, cfg.keep_last_checkpoints)
                        logger.info(f"saved checkpoint {path}")
                    if world_size > 1:
                        dist.barrier()
                if step >= cfg.max_train_steps:
                    break
            else:
                skipped.end_epoch(epoch, world_size)
                epoch += 1
                samples_in_epoch = 0
    progress.close()
    if is_main:
        metrics.close()
        if finished_on_resume and finished_export_exists(run_dir):
            logger.info(f"step {step} already reaches max_train_steps={cfg.max_train_steps}, and {run_dir / 'vae'} "
                        "is exported: nothing to do")
        else:
            finish_autoencoder(cfg, ema or vae, held_out, run_dir, device, amp_dtype, logger)
    if world_size > 1:
        dist.destroy_process_group()


def start_decoder_finetune(loss_module, ema, cfg, world_size, logger):
    """Freeze the encoder the export will carry (the EMA's, when there is one, so that EMA and weights agree from
    here on) and train the decoder alone on noisy posterior means; returns the module to train, DDP-wrapped anew
    so that DDP expects gradients for the decoder only. Idempotent, so a resumed run calls it again."""
    vae = loss_module.vae
    for part in ("encoder", "quant_conv"):
        if ema is not None:
            getattr(vae, part).load_state_dict(getattr(ema, part).state_dict())
        getattr(vae, part).requires_grad_(False)
    loss_module.decoder_only_noise_std = cfg.decoder_finetune_noise_std
    logger.info(f"steps {cfg.max_train_steps - cfg.decoder_finetune_steps + 1}-{cfg.max_train_steps}: decoder "
                f"fine-tune, encoder frozen, latent noise std {cfg.decoder_finetune_noise_std}")
    return DDP(loss_module) if world_size > 1 else loss_module


def random_crops(frames, crop_size):
    """(F, 3, H, W) -> (F, 3, crop_size, crop_size), each frame cropped at its own place (from the torch RNG, so
    resume restores it); crop_size None: the frames themselves."""
    if crop_size is None:
        return frames
    height, width = frames.shape[-2:]
    tops = torch.randint(0, height - crop_size + 1, (len(frames),)).tolist()
    lefts = torch.randint(0, width - crop_size + 1, (len(frames),)).tolist()
    return torch.stack([frame[:, top:top + crop_size, left:left + crop_size]
                        for frame, top, left in zip(frames, tops, lefts)])


def seed_rank_state(cfg, rank, world_size, device, checkpoint, step, logger):
    """Seed this rank's posterior noise, or restore it (and its unfinished metrics window) from the checkpoint;
    returns the window's sums [loss, reconstruction, kl, grad_norm, steps]."""
    seed_everything(cfg.global_seed + rank)
    if checkpoint is None:
        return [0.0] * 5
    if checkpoint["world_size"] == world_size:
        state = checkpoint["rank_states"][rank]
        restore_rng_state(state["rng"], device)
        return list(state["window"])
    logger.warning(f"checkpoint was written by {checkpoint['world_size']} ranks, now {world_size}: "
                   "RNG streams restart, so losses will not match an uninterrupted run")
    torch.manual_seed(cfg.global_seed + rank + step)
    return [0.0] * 5


def mean_terms(sums, world_size, device):
    """{loss, reconstruction, kl, grad_norm} averaged over the window's steps of every rank (all ranks call it)."""
    totals = torch.tensor(sums, dtype=torch.float64, device=device)
    if world_size > 1:
        dist.all_reduce(totals)
    means = (totals[:4] / totals[4]).tolist()
    return dict(zip((*LOSS_TERMS, "grad_norm"), means))


def held_out_frames(cfg):
    """(E, N, 3, H, W) held-out clips: the first eval_num_clips of eval_split, at epoch 0 (fixed)."""
    held_out_keys = {"split": cfg.eval_split, "split_file": None, "dataset_length": cfg.eval_num_clips}
    dataset = build_config_dataset(OmegaConf.merge(cfg, held_out_keys), random_flip=False)
    if len(dataset) == 0:
        raise ValueError(f"config key 'eval_split' = {cfg.eval_split!r}: dataset {cfg.dataset!r} has no clips there")
    return torch.stack([dataset[i]["video"] for i in range(min(cfg.eval_num_clips, len(dataset)))])


@torch.no_grad()
def over_chunks(fn, frames, device, amp_dtype, chunk_size=32):
    """fn of (F, 3, H, W) frames, chunk by chunk on `device` under the run's autocast, concatenated on the CPU."""
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        return torch.cat([fn(chunk.to(device)).cpu() for chunk in frames.split(chunk_size)])


def reconstruct(vae, frames, device, amp_dtype):
    """(F, 3, H, W) -> its reconstructions through the posterior mean (what encode_video uses), in [-1, 1]."""
    vae.eval()
    return over_chunks(lambda chunk: vae.decode(vae.encode(chunk).latent_dist.mean).sample.float().clamp(-1, 1),
                       frames, device, amp_dtype)


def reconstruction_scores(vae, held_out, cfg, device, amp_dtype):
    """PSNR and SSIM of every held-out frame, per frame (lists) and their means."""
    frames = rearrange(held_out, "e n c h w -> (e n) c h w")
    decoded = reconstruct(vae, frames, device, amp_dtype)
    frame_psnr, frame_ssim = psnr(frames, decoded), ssim(frames, decoded)
    return {"psnr_mean": frame_psnr.mean().item(), "ssim_mean": frame_ssim.mean().item(),
            "psnr": frame_psnr.tolist(), "ssim": frame_ssim.tolist(), "num_frames": len(frames),
            "split": cfg.eval_split, "image_size": cfg.image_size}


def write_reconstruction_preview(vae, held_out, cfg, step, run_dir, device, amp_dtype):
    """preview/<step>.png: held-out frames (top row) over their reconstructions (bottom row)."""
    frames = held_out[:PREVIEW_FRAMES, 0]  # (F, 3, H, W): the first frame of each of the first clips
    rows = [np.concatenate(list(video_to_uint8(video)), axis=1)  # (H, F*W, 3)
            for video in (frames, reconstruct(vae, frames, device, amp_dtype))]
    (run_dir / "preview").mkdir(exist_ok=True)
    path = run_dir / "preview" / f"{step:07d}.png"
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return path


@torch.no_grad()
def measure_latent_statistics(vae, cfg, device, amp_dtype):
    """(mean, std) over every element of the posterior means of latent_stat_clips training clips (epoch 0)."""
    dataset = build_config_dataset(cfg, random_flip=False)
    dataset.set_epoch(0)
    count = min(cfg.latent_stat_clips, len(dataset))
    indices = np.random.default_rng(cfg.global_seed).permutation(len(dataset))[:count]
    frames = torch.cat([dataset[int(i)]["video"] for i in indices])  # (count*N, 3, H, W)
    vae.eval()
    latents = over_chunks(lambda chunk: vae.encode(chunk).latent_dist.mean.double(), frames, device, amp_dtype)
    return latents.mean().item(), latents.std().item()


def export_autoencoder(vae, folder, shift, scale):
    """save_pretrained to `folder` with the latent shift and scale in its config, replacing any old export whole:
    it is written beside, then renamed into place."""
    export = deepcopy(vae).float().cpu()
    export.register_to_config(scaling_factor=scale, shift_factor=shift)
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    export.save_pretrained(staging, safe_serialization=True)
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
        os.replace(staging, folder)
        shutil.rmtree(old)
    else:
        os.replace(staging, folder)


def finished_export_exists(run_dir):
    """Whether vae/ loads and reconstruction.json reads: a run killed mid-finish has to finish again."""
    try:
        load_vae(run_dir / "vae")
        json.loads((run_dir / "reconstruction.json").read_text())
    except Exception:  # missing or unreadable: either way the finish is redone
        return False
    return True


def finish_autoencoder(cfg, vae, held_out, run_dir, device, amp_dtype, logger):
    """Measure the latent scale, export vae/, and score the held-out frames into reconstruction.json."""
    mean, std = measure_latent_statistics(vae, cfg, device, amp_dtype)
    if not math.isfinite(std) or std <= 0:
        raise ValueError(f"the autoencoder's latents have std {std} on the training clips; training diverged")
    export_autoencoder(vae, run_dir / "vae", shift=mean, scale=1.0 / std)
    scores = reconstruction_scores(vae, held_out, cfg, device, amp_dtype)
    scores.update({"latent_shift": mean, "latent_scale": 1.0 / std})
    atomic_write(run_dir / "reconstruction.json", lambda tmp: tmp.write_text(json.dumps(scores, indent=2)))
    logger.info(f"held-out reconstruction ({scores['num_frames']} frames of split {cfg.eval_split!r}): PSNR "
                f"{scores['psnr_mean']:.2f} dB, SSIM {scores['ssim_mean']:.4f}; latents: shift {mean:.4f}, "
                f"scale {1.0 / std:.4f}")
    logger.info(f"done; train the FVDM on it with vae={run_dir / 'vae'}")
