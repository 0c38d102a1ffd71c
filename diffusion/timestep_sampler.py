"""Probabilistic timestep sampling (PTSS), the FVDM training-time timestep distribution."""
import torch

TIMESTEP_DISTRIBUTIONS = ("uniform", "logit_normal")


def draw_timesteps(shape, num_timesteps, distribution="uniform", logit_mean=0.0, logit_std=1.0, generator=None,
                   device=None):
    """Integer timesteps in [0, num_timesteps): uniform (DDPM, Latte, FVDM), or logit-normal.

    logit_normal: t = floor(num_timesteps * sigmoid(logit_mean + logit_std * z)), z ~ N(0, 1), the SD3 density
    (Esser et al. 2024) on the discrete chain. It spends the training steps on the mid-noise band, where the
    layout of a frame is decided, and few on the nearly clean and nearly pure-noise ends.
    """
    if distribution == "uniform":
        return torch.randint(0, num_timesteps, shape, generator=generator, device=device)
    if distribution == "logit_normal":
        z = torch.randn(shape, generator=generator, device=device)
        fraction = torch.sigmoid(logit_mean + logit_std * z)
        return (fraction * num_timesteps).long().clamp_(0, num_timesteps - 1)
    raise ValueError(f"timestep distribution must be one of {TIMESTEP_DISTRIBUTIONS}, got {distribution!r}")


def sample_frame_timesteps(batch_size, num_frames, p, num_timesteps=1000, generator=None, device=None,
                           granularity="sample", distribution="uniform", logit_mean=0.0, logit_std=1.0):
    """Per-frame training timesteps (B, N) int64.

    With probability p a sample draws an independent timestep for every frame, otherwise all its frames share
    one. p = 0 is Latte's scalar timestep; p = 1 is fully independent frames (Diffusion Forcing style).
    granularity="batch" flips one coin for the whole batch, as the released FVDM code does. Each timestep,
    shared or per frame, comes from `distribution` (see draw_timesteps).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"ptss_p must lie in [0, 1], got {p}")
    if granularity not in ("sample", "batch"):
        raise ValueError(f"granularity must be 'sample' or 'batch', got {granularity!r}")
    coins = 1 if granularity == "batch" else batch_size
    independent = torch.rand(coins, generator=generator, device=device) < p  # (B,) or (1,)
    draw = dict(distribution=distribution, logit_mean=logit_mean, logit_std=logit_std, generator=generator,
                device=device)
    per_frame = draw_timesteps((batch_size, num_frames), num_timesteps, **draw)
    shared = draw_timesteps((batch_size, 1), num_timesteps, **draw)
    return torch.where(independent[:, None], per_frame, shared.expand(batch_size, num_frames))
