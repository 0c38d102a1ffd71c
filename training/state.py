"""Training state beyond the weights: the EMA, the learning-rate schedule, every RNG, and rank-to-rank exchange."""
import math
import random

import numpy as np
import torch
import torch.distributed as dist


@torch.no_grad()
def update_ema(ema_model, model, decay):
    ema_params = dict(ema_model.named_parameters())
    for name, param in model.named_parameters():
        if param.requires_grad:  # a frozen weight's average is the weight itself, bit for bit
            ema_params[name].mul_(decay).add_(param.detach(), alpha=1 - decay)


def learning_rate_at(cfg, step):
    """The rate for optimizer step `step` (0-based): linear warmup, then constant or a cosine down to 0."""
    if step < cfg.lr_warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.lr_warmup_steps
    if cfg.lr_schedule == "constant":
        return cfg.learning_rate
    progress = (step - cfg.lr_warmup_steps) / max(1, cfg.max_train_steps - cfg.lr_warmup_steps)
    return cfg.learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))


def seed_everything(seed):
    """torch, numpy and python: all that noise, timesteps and label dropout draw from."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def capture_rng_state(device):
    """Every RNG the training step can touch, as tensors and plain types (readable with weights_only=True)."""
    _, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "cached_gaussian": float(np_cached)},
        "python": [version, list(py_state), py_gauss],
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state, device):
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    version, py_state, py_gauss = state["python"]
    random.setstate((version, tuple(py_state), py_gauss))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def all_gather(obj, world_size):
    """Every rank's `obj`, in rank order, on every rank."""
    if world_size == 1:
        return [obj]
    gathered = [None] * world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast(obj, world_size):
    """Rank 0's value on every rank."""
    if world_size == 1:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
