"""Probabilistic timestep sampling (PTSS), the FVDM training-time timestep distribution."""
import torch


def sample_frame_timesteps(batch_size, num_frames, p, num_timesteps=1000, generator=None, device=None,
                           granularity="sample"):
    """Per-frame training timesteps (B, N) int64.

    With probability p a sample draws an independent timestep for every frame, otherwise all its frames share
    one. p = 0 is Latte's scalar timestep; p = 1 is fully independent frames (Diffusion Forcing style).
    granularity="batch" flips one coin for the whole batch, as the released FVDM code does.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"ptss_p must lie in [0, 1], got {p}")
    if granularity not in ("sample", "batch"):
        raise ValueError(f"granularity must be 'sample' or 'batch', got {granularity!r}")
    coins = 1 if granularity == "batch" else batch_size
    independent = torch.rand(coins, generator=generator, device=device) < p  # (B,) or (1,)
    per_frame = torch.randint(0, num_timesteps, (batch_size, num_frames), generator=generator, device=device)
    shared = torch.randint(0, num_timesteps, (batch_size, 1), generator=generator, device=device)
    return torch.where(independent[:, None], per_frame, shared.expand(batch_size, num_frames))
