"""The training loop: `train(cfg)` trains (or resumes) one run on this process, or on every rank torchrun started.

A run lives in <results_dir>/<experiment_name>/: config.yaml, log.txt, metrics.jsonl, tensorboard/, checkpoints/,
preview/. resume_from_checkpoint=auto continues a killed run exactly where it stopped.
"""
import math
import time
from contextlib import nullcontext
from copy import deepcopy
from pathlib import Path

import torch
import torch.distributed as dist
from omegaconf import OmegaConf
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from datasets import batch_captions, build_training_dataset
from datasets.sampler import EpochShardSampler
from diffusion import create_diffusion, sample_frame_timesteps
from models import create_model
from models.checkpoint import (
    EMA, PRETRAINED_DIR, atomic_write, checkpoint_path, export_ema_safetensors, find_resume_checkpoint,
    list_checkpoints, load_pretrained, pretrained_step, prune_checkpoints, read_checkpoint,
    read_training_checkpoint, set_aside_later_checkpoints,
)
from models.text_encoder import TextEncoder
from models.vae import encode_video, load_vae, model_geometry
from tools.runtime import allow_tf32, autocast_dtype, autocast_fn, setup_distributed

from .config import run_dir_of
from .logs import LossSums, MetricsLog, SkippedVideoLog, create_logger
from .preview import write_preview
from .state import (
    all_gather, broadcast, capture_rng_state, learning_rate_at, restore_rng_state, seed_everything, update_ema,
)


def train(cfg):
    """Train the run of `cfg` (a load_config result) to cfg.max_train_steps, resuming as resume_from_checkpoint says."""
    run_dir = run_dir_of(cfg)
    rank, world_size, device, ckpt_dir, logger, amp_dtype = start_run(cfg, run_dir)
    is_main = rank == 0
    allow_tf32(cfg.allow_tf32)

    resume_path, checkpoint = choose_resume_checkpoint(cfg, ckpt_dir, is_main, world_size, logger)
    config_dict = OmegaConf.to_container(cfg, resolve=True)
    if is_main:
        OmegaConf.save(cfg, run_dir / "config.yaml")
        logger.info(f"run dir {run_dir}, {world_size} process(es) on {device}")
        if checkpoint is not None:
            log_resume(resume_path, checkpoint, config_dict, logger)
            set_aside_later_checkpoints(ckpt_dir, checkpoint["step"], logger)

    # Data.
    dataset, sampler, loader = build_data(cfg, rank, world_size, device)
    encode_on_the_fly = cfg.vae is not None and cfg.latent_cache_dir is None
    need_vae = encode_on_the_fly or (is_main and cfg.preview_every > 0 and cfg.vae is not None)
    vae = load_vae(cfg.vae, device=device) if need_vae else None
    text_encoder = build_text_encoder(cfg, dataset, device)

    # Model, EMA, optimiser. Same init on every rank (DDP also broadcasts rank 0's weights).
    in_channels, input_size = model_geometry(cfg.image_size, cfg.vae)
    text_dim = text_encoder.dim if text_encoder is not None else 0
    model = create_initial_model(cfg, in_channels, input_size, checkpoint, logger, text_dim).to(device)
    ema = deepcopy(model).requires_grad_(False).eval()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate,
                                  weight_decay=cfg.weight_decay, fused=True)  # one kernel per step, CPU and GPU
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    step, epoch, samples_in_epoch = load_training_state(checkpoint, model, ema, optimizer, scaler)
    # Resumed at (or past) max_train_steps: the loop will not run, so finish_run redoes the finish.
    finished_on_resume = step >= cfg.max_train_steps
    logger.info(f"{cfg.model}: {sum(p.numel() for p in model.parameters() if p.requires_grad):,} trainable "
                f"parameters, input {cfg.num_frames}x{in_channels}x{input_size}x{input_size}, autocast "
                f"{amp_dtype or 'off'} (mixed_precision={cfg.mixed_precision})")

    ddp_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None) if world_size > 1 else None
    train_model = ddp_model if ddp_model is not None else model
    if cfg.use_compile:
        model.compile_blocks()
    if checkpoint is None:
        ema.load_state_dict(model.state_dict())  # after DDP's broadcast
    forward = autocast_fn(train_model, device.type, amp_dtype)
    diffusion = create_diffusion(timestep_respacing="", noise_schedule=cfg.noise_schedule,
                                 learn_sigma=cfg.learn_sigma, diffusion_steps=cfg.diffusion_steps,
                                 prediction_type=cfg.prediction_type)
    # Per-rank randomness (noise, timesteps, label dropout): seeded, or restored exactly.
    sums = seed_rank(cfg, rank, world_size, device, checkpoint, step, logger)
    del checkpoint

    # Train: micro-batches accumulate gradients; every `accum`-th one ends with an optimizer step.
    metrics = MetricsLog(run_dir, None if resume_path is None else step) if is_main else None
    model.train()
    accum = cfg.gradient_accumulation_steps
    micro_step = 0
    window_start = time.time()
    progress = tqdm(total=cfg.max_train_steps, initial=step, disable=not is_main, desc="train", dynamic_ncols=True)
    with logging_redirect_tqdm(loggers=[logger]):
        skipped = SkippedVideoLog(logger)
        while step < cfg.max_train_steps:
            sampler.set_position(epoch, samples_in_epoch)
            dataset.set_epoch(epoch)
            for batch in loader:
                x = (batch["latents"] if cfg.latent_cache_dir is not None else batch["video"]).to(device)
                if encode_on_the_fly:
                    x = encode_video(vae, x, chunk_size=cfg.vae_chunk_size)  # (B, N, C, H/f, W/f)
                model_kwargs = {"y": batch["label"].to(device)} if cfg.num_classes > 0 else {}
                if text_encoder is not None:
                    text, text_mask = text_encoder.encode_frames(batch_captions(batch))
                    model_kwargs.update(text=text, text_mask=text_mask)  # (B, N, L, Dt), (B, N, L)
                frame_timesteps = sample_frame_timesteps(  # (B, N): PTSS
                    x.shape[0], x.shape[1], cfg.ptss_p, num_timesteps=diffusion.num_timesteps, device=device,
                    granularity=cfg.ptss_granularity, distribution=cfg.timestep_distribution,
                    logit_mean=cfg.timestep_logit_mean, logit_std=cfg.timestep_logit_std,
                )
                micro_step += 1
                sync = micro_step % accum == 0
                with nullcontext() if sync or ddp_model is None else ddp_model.no_sync():
                    losses = diffusion.training_losses(forward, x, frame_timesteps, model_kwargs=model_kwargs,
                                                       min_snr_gamma=cfg.min_snr_gamma)
                    scaler.scale(losses["loss"].mean() / accum).backward()
                sums.add_micro_batch(losses, accum)
                samples_in_epoch += cfg.local_batch_size * world_size
                skipped.add_batch(batch)
                if not sync:
                    continue

                lr, grad_norm = optimizer_step(cfg, step, model, optimizer, scaler, ema)
                step += 1
                sums.add_step(grad_norm)
                progress.update(1)
                if step % cfg.log_every == 0 or step == cfg.max_train_steps:
                    record = metrics_record(sums, step, epoch, lr, window_start, cfg, world_size, device)
                    if is_main:
                        metrics.write(record)
                        progress.set_postfix(loss=f"{record['loss']:.4f}",
                                             steps_per_sec=f"{record['steps_per_sec']:.2f}")
                    sums = LossSums()
                    window_start = time.time()
                if step % cfg.ckpt_every == 0 or step == cfg.max_train_steps:
                    rank_states = all_gather({"rng": capture_rng_state(device), "window": sums.as_list()}, world_size)
                    if is_main:
                        save_checkpoint(cfg, ckpt_dir, logger, {
                            "model": model.state_dict(), "ema": ema.state_dict(), "opt": optimizer.state_dict(),
                            "scaler": scaler.state_dict(), "step": step, "epoch": epoch,
                            "samples_in_epoch": samples_in_epoch, "world_size": world_size,
                            "rank_states": rank_states, "config": config_dict,
                        }, ema)
                    if world_size > 1:
                        dist.barrier()
                if is_main and cfg.preview_every > 0 and (step % cfg.preview_every == 0
                                                         or step == cfg.max_train_steps):
                    path = write_preview(ema, vae, cfg, step, run_dir, device, amp_dtype)
                    logger.info(f"wrote preview {path}")
                if step >= cfg.max_train_steps:
                    break
            else:  # the epoch ran out
                skipped.end_epoch(epoch, world_size)
                epoch += 1
                samples_in_epoch = 0
    progress.close()
    if is_main:
        metrics.close()
        finish_run(cfg, ckpt_dir, ema, config_dict, step, finished_on_resume, logger)
    if world_size > 1:
        dist.destroy_process_group()


def start_run(cfg, run_dir):
    """What every trainer does first: join torchrun's group, prepare run_dir/checkpoints and the logger, and resolve
    the autocast dtype. Returns (rank, world_size, device, ckpt_dir, logger, amp_dtype)."""
    rank, world_size, device = setup_distributed()
    ckpt_dir = run_dir / "checkpoints"
    prepare_checkpoint_dir(ckpt_dir, rank == 0, world_size)
    logger = create_logger(run_dir if rank == 0 else None)
    amp_dtype = autocast_dtype(cfg.mixed_precision, device.type)
    if amp_dtype == torch.float16 and device.type != "cuda":
        raise ValueError("mixed_precision=fp16 needs a GPU; use bf16 on CPU")
    return rank, world_size, device, ckpt_dir, logger, amp_dtype


def prepare_checkpoint_dir(ckpt_dir, is_main, world_size):
    """Rank 0 creates the folder and deletes the half-written *.tmp files of a killed run; the others wait."""
    if is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        for stale in ckpt_dir.glob("*.tmp"):
            stale.unlink()
    if world_size > 1:
        dist.barrier()


def build_data(cfg, rank, world_size, device):
    """(dataset, sampler, loader) of this rank; the sampler's position is set at each epoch's start."""
    dataset = build_training_dataset(cfg)
    if cfg.num_classes > 0 and getattr(dataset, "num_classes", 0) != cfg.num_classes:
        raise ValueError(f"config key 'num_classes' = {cfg.num_classes} but dataset {cfg.dataset!r} has "
                         f"{getattr(dataset, 'num_classes', 0)} classes")
    sampler = EpochShardSampler(len(dataset), rank, world_size, cfg.global_seed, cfg.local_batch_size)
    loader = DataLoader(
        dataset, batch_size=cfg.local_batch_size, sampler=sampler, num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda", drop_last=True,
        generator=torch.Generator().manual_seed(cfg.global_seed),  # keeps the loader off the global RNG
    )
    return dataset, sampler, loader


def build_text_encoder(cfg, dataset, device):
    """The frozen text encoder of a text-to-video run (None without text_encoder), once the data has captions."""
    if cfg.text_encoder is None:
        return None
    if "captions" not in dataset[0]:
        raise ValueError(f"config key 'text_encoder' = {cfg.text_encoder!r}, but dataset {cfg.dataset!r} gives no "
                         "captions (use bouncing_captions, or a latent cache encoded from a captioned dataset)")
    return TextEncoder(cfg.text_encoder, max_length=cfg.text_max_length, device=device)


def choose_resume_checkpoint(cfg, ckpt_dir, is_main, world_size, logger, read=read_training_checkpoint):
    """(path, checkpoint) to resume from, or (None, None) for a fresh run. Rank 0 decides, so every rank loads the
    same file even when a newer one appears meanwhile. read(path) reads and checks one checkpoint file."""
    resume_path, checkpoint = None, None
    given = cfg.resume_from_checkpoint
    if is_main:
        if given == "auto" or (given is not None and Path(given).is_dir()):  # a folder: its newest valid .pt
            folder = ckpt_dir if given == "auto" else Path(given)
            found = find_resume_checkpoint(folder, ckpt_dir, logger, read)
            if found is None and given != "auto":
                raise FileNotFoundError(f"config key 'resume_from_checkpoint': folder {folder} holds no readable "
                                        "<step>.pt checkpoint")
            resume_path, checkpoint = found or (None, None)
        elif given is not None:
            resume_path = Path(given)
            if not resume_path.is_file():
                raise FileNotFoundError(f"config key 'resume_from_checkpoint': no such file or folder {resume_path}")
        elif list_checkpoints(ckpt_dir):
            raise FileExistsError(f"{ckpt_dir} already holds checkpoints; pass resume_from_checkpoint=auto to "
                                  "continue that run, or choose another experiment_name")
    resume_path = broadcast(resume_path, world_size)
    if resume_path is not None and checkpoint is None:  # other ranks, or a file named by path
        checkpoint = read(resume_path)
    return resume_path, checkpoint


def log_resume(resume_path, checkpoint, config_dict, logger):
    """Name the checkpoint, and the config keys that differ from its run's (other than the resume keys)."""
    changed = {k: (checkpoint["config"].get(k), v) for k, v in config_dict.items()
               if checkpoint["config"].get(k) != v and k not in ("resume_from_checkpoint", "max_train_steps")}
    logger.info(f"resuming from {resume_path} (step {checkpoint['step']})"
                + (f"; config changed (old, new): {changed}" if changed else ""))


def create_initial_model(cfg, in_channels, input_size, checkpoint, logger, text_dim=0):
    """The model from a seed every rank shares; a fresh run starts from cfg.pretrained when set."""
    torch.manual_seed(cfg.global_seed)
    model = create_model(cfg.model, input_size=input_size, num_frames=cfg.num_frames, in_channels=in_channels,
                         num_classes=cfg.num_classes, learn_sigma=cfg.learn_sigma,
                         class_dropout_prob=cfg.class_dropout_prob,
                         gradient_checkpointing=cfg.gradient_checkpointing, attention=cfg.attention,
                         text_dim=text_dim, text_dropout_prob=cfg.text_dropout_prob, text_adaln=cfg.text_adaln)
    if cfg.pretrained is not None and checkpoint is None:
        load_pretrained(model, cfg.pretrained)
        logger.info(f"initialised from {cfg.pretrained}")
    return model


def load_training_state(checkpoint, model, ema, optimizer, scaler):
    """Load a checkpoint's weights and optimiser state; (step, epoch, samples_in_epoch) to continue from."""
    if checkpoint is None:
        return 0, 0, 0
    model.load_state_dict(checkpoint["model"])
    ema.load_state_dict(checkpoint["ema"])
    optimizer.load_state_dict(checkpoint["opt"])
    if "scaler" in checkpoint:
        scaler.load_state_dict(checkpoint["scaler"])
    return checkpoint["step"], checkpoint["epoch"], checkpoint["samples_in_epoch"]


def seed_rank(cfg, rank, world_size, device, checkpoint, step, logger):
    """Seed this rank's noise, timesteps and label dropout with global_seed + rank, or restore them (and the loss
    sums of its unfinished metrics record) exactly from a checkpoint of as many ranks; the loss sums to go on with."""
    seed = cfg.global_seed + rank
    seed_everything(seed)
    if checkpoint is None:
        return LossSums()
    if checkpoint["world_size"] == world_size:
        restore_rng_state(checkpoint["rank_states"][rank]["rng"], device)
        return LossSums(*checkpoint["rank_states"][rank]["window"])
    logger.warning(f"checkpoint was written by {checkpoint['world_size']} ranks, now {world_size}: "
                   "RNG streams restart, so losses will not match an uninterrupted run")
    torch.manual_seed(seed + step)
    return LossSums()


def optimizer_step(cfg, step, model, optimizer, scaler, ema):
    """Optimizer step `step` (0-based) on the accumulated gradients, then the EMA update: (lr, gradient norm).

    The norm is clipped to clip_max_norm from start_clip_iter on; before, it is only measured.
    """
    lr = learning_rate_at(cfg, step)
    for group in optimizer.param_groups:
        group["lr"] = lr
    scaler.unscale_(optimizer)
    max_norm = cfg.clip_max_norm if step >= cfg.start_clip_iter else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    update_ema(ema, model, cfg.ema_decay)
    return lr, grad_norm.item()


def metrics_record(sums, step, epoch, lr, window_start, cfg, world_size, device):
    """The metrics.jsonl record of the steps since window_start (an all-reduce: every rank calls it)."""
    mean = sums.means(world_size, device)
    return {"step": step, "epoch": epoch, "loss": mean["loss"], "mse": mean["mse"],
            "vb": mean["vb"] if cfg.learn_sigma else None, "lr": lr, "grad_norm": mean["grad_norm"],
            "steps_per_sec": sums.steps / (time.time() - window_start)}


def save_checkpoint(cfg, ckpt_dir, logger, payload, ema):
    """Rank 0 writes <step>.pt (and the EMA export each checkpoint if asked, and at the last step), then prunes."""
    step = payload["step"]
    path = checkpoint_path(ckpt_dir, step)
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
    if cfg.export_ema_every_ckpt or step == cfg.max_train_steps:
        export_ema_safetensors(ema, payload["config"], step, checkpoint_path(ckpt_dir, step, EMA))
    if step == cfg.max_train_steps:
        export_model_folder(ema, payload["config"], step, ckpt_dir)
    prune_checkpoints(ckpt_dir, cfg.keep_last_checkpoints)
    logger.info(f"saved checkpoint {path}")


def export_model_folder(ema, config_dict, step, ckpt_dir):
    """The EMA weights as a Hugging Face model folder, <run>/pretrained/ (Latte.from_pretrained, FVDMPipeline)."""
    ema.save_pretrained(ckpt_dir.parent / PRETRAINED_DIR, training_config={**config_dict, "step": step})


def finish_run(cfg, ckpt_dir, ema, config_dict, step, finished_on_resume, logger):
    """Log where the EMA exports are. A run resumed already finished redoes the finish first: the first one may
    have been killed mid-export, before pruning."""
    ema_path = checkpoint_path(ckpt_dir, step, EMA)
    folder = ckpt_dir.parent / PRETRAINED_DIR
    if finished_on_resume:
        logger.info(f"step {step} already reaches max_train_steps={cfg.max_train_steps}: nothing to train")
        try:
            read_checkpoint(ema_path)
        except Exception as error:  # missing or unreadable: write it again from the checkpoint's EMA
            logger.info(f"EMA export {ema_path} is missing or unreadable ({type(error).__name__}): writing it")
            export_ema_safetensors(ema, config_dict, step, ema_path)
        if pretrained_step(folder) != step:  # missing, unreadable, or from an earlier end of this run
            export_model_folder(ema, config_dict, step, ckpt_dir)
        prune_checkpoints(ckpt_dir, cfg.keep_last_checkpoints)
    logger.info(f"done: {step} steps; model folder {folder}; EMA weights in {ema_path}")
