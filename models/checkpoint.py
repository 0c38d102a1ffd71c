"""Read checkpoints safely and map released Latte / FVDM key names onto ours.

Released Latte: `blocks.k`, even k spatial, odd k temporal. Released FVDM: `blocks_spatial.i`, `blocks_temp.i`.
Ours: `spatial_blocks.i`, `temporal_blocks.i`; every other key is shared with Latte.
"""
import json
import re
from pathlib import Path

import torch

WRAPPER_KEYS = ("ema", "model", "state_dict", "module")
PREFIXES = ("module.", "_orig_mod.")
# Fixed sin-cos tables: rebuilt by the model, so a checkpoint for another frame count or size still loads.
FIXED_EMBEDDINGS = ("pos_embed", "temp_embed")


def read_checkpoint(path):
    """The whole checkpoint: a .pt dict via weights_only=True, or a safetensors file as {state_dict, metadata}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        return {"state_dict": load_file(str(path)), "metadata": metadata}
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # weights_only refuses arbitrary pickled objects: say so instead of unpickling
        raise RuntimeError(f"could not read {path} with torch.load(weights_only=True): {error}") from error


def checkpoint_config(checkpoint):
    """The training config stored in one of our checkpoints (.pt 'config' or safetensors metadata), or None."""
    if "config" in checkpoint and isinstance(checkpoint["config"], dict):
        return checkpoint["config"]
    metadata = checkpoint.get("metadata") or {}
    return json.loads(metadata["config"]) if "config" in metadata else None


def unwrap_state_dict(checkpoint, prefer="ema"):
    """Find the tensor dict inside wrappers ({'ema': ...}, {'model': ...}) and strip DDP / compile prefixes."""
    state = checkpoint
    order = (prefer,) + tuple(k for k in WRAPPER_KEYS if k != prefer)
    while isinstance(state, dict) and not all(isinstance(v, torch.Tensor) for v in state.values()):
        key = next((k for k in order if isinstance(state.get(k), dict)), None)
        if key is None:
            raise KeyError(f"no state dict found; top-level keys are {sorted(state)[:20]}")
        state = state[key]
    cleaned = {}
    for key, value in state.items():
        while key.startswith(PREFIXES):
            key = key[len(next(p for p in PREFIXES if key.startswith(p))):]
        cleaned[key] = value
    return cleaned


def read_state_dict(path, prefer="ema"):
    return unwrap_state_dict(read_checkpoint(path), prefer=prefer)


def to_model_keys(state_dict):
    """Rename released Latte (blocks.k) or FVDM (blocks_spatial.i / blocks_temp.i) keys to ours."""
    renamed = {}
    for key, value in state_dict.items():
        match = re.match(r"blocks\.(\d+)\.(.*)", key)
        if match:
            index, rest = int(match.group(1)), match.group(2)
            kind = "temporal_blocks" if index % 2 else "spatial_blocks"
            key = f"{kind}.{index // 2}.{rest}"
        else:
            key = re.sub(r"^blocks_spatial\.", "spatial_blocks.", key)
            key = re.sub(r"^blocks_temp\.", "temporal_blocks.", key)
        renamed[key] = value
    return renamed


def load_pretrained(model, source, prefer="ema", strict=True):
    """Load ours, Latte's or FVDM's weights into `model` from a path or an already-read checkpoint dict;
    a mismatch names the offending keys."""
    checkpoint = source if isinstance(source, dict) else read_checkpoint(source)
    path = "<checkpoint dict>" if isinstance(source, dict) else source
    state = to_model_keys(unwrap_state_dict(checkpoint, prefer=prefer))
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and k not in FIXED_EMBEDDINGS]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in state
        if k in expected and k not in FIXED_EMBEDDINGS and state[k].shape != expected[k].shape
    ]
    if wrong_shape or (strict and (missing or unexpected)):
        problems = []
        if missing:
            problems.append(f"missing from checkpoint: {missing[:10]}{' ...' if len(missing) > 10 else ''}")
        if unexpected:
            problems.append(f"not in model: {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}")
        if wrong_shape:
            problems.append(f"shape mismatch: {wrong_shape[:10]}")
        raise RuntimeError(f"checkpoint {path} does not fit the model; " + "; ".join(problems))
    loadable = {k: v for k, v in state.items() if k in expected and k not in FIXED_EMBEDDINGS}
    model.load_state_dict(loadable, strict=False)
    return model
