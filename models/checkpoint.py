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
SHOWN_KEYS = 5  # offending keys quoted in a mismatch error


def read_checkpoint(path):
    """The whole checkpoint: a .pt dict via weights_only=True, or a safetensors file as {state_dict, metadata}.

    A file that cannot be read raises RuntimeError naming it. We never fall back to full unpickling, so the
    message never suggests weights_only=False: unpickling a downloaded file can run arbitrary code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
            return {"state_dict": load_file(str(path)), "metadata": metadata}
        except SafetensorError as error:
            raise RuntimeError(f"checkpoint {path} is not a readable safetensors file (truncated or another "
                               f"format): {error}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch's own message suggests weights_only=False; we never do
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if unsafe:
            raise RuntimeError(f"checkpoint {path} contains pickled objects other than tensors ({unsafe.group(1)}); "
                               "we refuse to unpickle them for safety (unpickling can run arbitrary code). Save "
                               "the weights as plain tensors, e.g. torch.save(model.state_dict(), path)") from None
        raise RuntimeError(f"checkpoint {path} is not a readable checkpoint (truncated, or not a torch or "
                           f"safetensors file; {type(error).__name__})") from None


def checkpoint_config(checkpoint):
    """The training config stored in one of our checkpoints (.pt 'config' or safetensors metadata), or None."""
    if "config" in checkpoint and isinstance(checkpoint["config"], dict):
        return checkpoint["config"]
    metadata = checkpoint.get("metadata") or {}
    return json.loads(metadata["config"]) if "config" in metadata else None


def unwrap_state_dict(checkpoint, prefer="ema", source_name="<checkpoint dict>"):
    """Find the tensor dict inside wrappers ({'ema': ...}, {'model': ...}) and strip DDP / compile prefixes."""
    state = checkpoint
    order = (prefer,) + tuple(k for k in WRAPPER_KEYS if k != prefer)
    while isinstance(state, dict) and not all(isinstance(v, torch.Tensor) for v in state.values()):
        key = next((k for k in order if isinstance(state.get(k), dict)), None)
        if key is None:
            raise KeyError(f"checkpoint {source_name}: no state dict found; top-level keys are {sorted(state)[:20]}")
        state = state[key]
    if not isinstance(state, dict):
        raise KeyError(f"checkpoint {source_name} holds a {type(state).__name__}, not a dict of tensors")
    cleaned = {}
    for key, value in state.items():
        while key.startswith(PREFIXES):
            key = key[len(next(p for p in PREFIXES if key.startswith(p))):]
        cleaned[key] = value
    return cleaned


def read_state_dict(path, prefer="ema"):
    return unwrap_state_dict(read_checkpoint(path), prefer=prefer, source_name=path)


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


def load_pretrained(model, source, prefer="ema", strict=True, source_name=None):
    """Load ours, Latte's or FVDM's weights into `model` from a path or an already-read checkpoint dict.

    A mismatch names the checkpoint (source_name: the path an already-read dict came from) and the offending
    keys, with both shapes for keys whose shape differs (another model size, patch size or class count).
    """
    checkpoint = source if isinstance(source, dict) else read_checkpoint(source)
    name = source_name if source_name is not None else ("<checkpoint dict>" if isinstance(source, dict) else source)
    state = to_model_keys(unwrap_state_dict(checkpoint, prefer=prefer, source_name=name))
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and k not in FIXED_EMBEDDINGS]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in state
        if k in expected and k not in FIXED_EMBEDDINGS and state[k].shape != expected[k].shape
    ]
    if wrong_shape or (strict and (missing or unexpected)):
        def some(keys):
            return f"{len(keys)} keys, e.g. {keys[:SHOWN_KEYS]}" if len(keys) > SHOWN_KEYS else str(keys)

        problems = []
        if wrong_shape:
            problems.append(f"shape mismatch in {some(wrong_shape)}")
        if missing:
            problems.append(f"missing from checkpoint: {some(missing)}")
        if unexpected:
            problems.append(f"not in model: {some(unexpected)}")
        raise RuntimeError(f"checkpoint {name} does not fit the model; " + "; ".join(problems))
    loadable = {k: v for k, v in state.items() if k in expected and k not in FIXED_EMBEDDINGS}
    model.load_state_dict(loadable, strict=False)
    return model


def newest_valid_checkpoint(folder, suffixes=(".pt", "-ema.safetensors"), read=read_checkpoint, on_skip=None):
    """(path, read(path)) for the newest <step:07d><suffix> file in `folder` that reads, or None if none does.

    Files rank by step, then by the order of `suffixes`. One that fails to read (cut short by a full disk or a
    kill mid-copy) goes to on_skip(path, error) and the next one is tried, so a bad file never hides good ones.
    """
    pattern = re.compile(r"(\d{7,})(" + "|".join(re.escape(suffix) for suffix in suffixes) + r")")
    found = []
    for path in Path(folder).iterdir():
        match = pattern.fullmatch(path.name)
        if match:
            found.append(((int(match.group(1)), -suffixes.index(match.group(2))), path))
    for _, path in sorted(found, reverse=True):
        try:
            return path, read(path)
        except Exception as error:  # any unreadable file is skipped; on_skip says why
            if on_skip is not None:
                on_skip(path, error)
    return None
