"""Read checkpoints safely, map released Latte / FVDM key names onto ours, and name, write and prune ours.

Ours are <step:07d>.pt (train_video.py's whole training state) and <step:07d>-ema.safetensors (its EMA weights).
Released Latte: `blocks.k`, even k spatial, odd k temporal. Released FVDM: `blocks_spatial.i`, `blocks_temp.i`.
Ours: `spatial_blocks.i`, `temporal_blocks.i`; every other key is shared with Latte.
Model folders (Latte.save_pretrained / from_pretrained) follow Hugging Face's layout: config.json with every
constructor argument, diffusion_pytorch_model.safetensors, and our training_config.json beside them.
"""
import json
import os
import re
from pathlib import Path

import torch

WRAPPER_KEYS = ("ema", "model", "state_dict", "module")
PREFIXES = ("module.", "_orig_mod.")
# Fixed sin-cos tables: rebuilt by the model, so a checkpoint for another frame count or size still loads.
FIXED_EMBEDDINGS = ("pos_embed", "temp_embed")
SHOWN_KEYS = 5  # offending keys quoted in a mismatch error
PT, EMA = ".pt", "-ema.safetensors"  # suffixes of our checkpoint files after <step:07d>
CONFIG_FILE, WEIGHTS_FILE, TRAINING_CONFIG_FILE = ("config.json", "diffusion_pytorch_model.safetensors",
                                                   "training_config.json")  # a model folder's files
PRETRAINED_DIR = "pretrained"  # a training run's model folder of its final EMA weights: <run>/pretrained/
CHECKPOINT_KEYS = (
    "model", "ema", "opt", "step", "epoch", "samples_in_epoch", "world_size", "rank_states", "config"
)


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


def checkpoint_path(ckpt_dir, step, suffix=PT):
    """ckpt_dir/<step:07d><suffix>: how our checkpoints are named (checkpoint_step reads the name back)."""
    return Path(ckpt_dir) / f"{step:07d}{suffix}"


def checkpoint_step(path, suffix=PT):
    """The step of a <step:07d><suffix> file, or None for any other name: the one reader of checkpoint names."""
    match = re.fullmatch(r"(\d{7,})" + re.escape(suffix), Path(path).name)
    return int(match.group(1)) if match else None


def list_checkpoints(folder, suffixes=(PT,)):
    """Our checkpoints in `folder` with one of `suffixes`, newest step first; at equal steps, in suffix order."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        for order, suffix in enumerate(suffixes):
            step = checkpoint_step(path, suffix)
            if step is not None:
                found.append((step, -order, path))
    return [path for _, _, path in sorted(found, reverse=True)]


def newest_valid_checkpoint(folder, suffixes=(PT, EMA), read=read_checkpoint, on_skip=None):
    """(path, read(path)) for the newest <step:07d><suffix> file in `folder` that reads, or None if none does.

    Files rank as in list_checkpoints. One that fails to read (cut short by a full disk or a kill mid-copy) goes
    to on_skip(path, error) and the next one is tried, so a bad file never hides good ones.
    """
    for path in list_checkpoints(folder, suffixes):
        try:
            return path, read(path)
        except Exception as error:  # any unreadable file is skipped; on_skip says why
            if on_skip is not None:
                on_skip(path, error)
    return None


def read_training_checkpoint(path, keys=CHECKPOINT_KEYS, producer="train_video.py"):
    """A training checkpoint of `producer`, read with weights_only=True; an unreadable or foreign file (one that
    lacks any of `keys`) raises, naming it."""
    checkpoint = read_checkpoint(path)
    missing = [key for key in keys if key not in checkpoint]
    if missing:
        raise KeyError(f"{path} is not a {producer} checkpoint: missing keys {missing}")
    return checkpoint


def find_resume_checkpoint(folder, ckpt_dir, logger, read=read_training_checkpoint):
    """(path, checkpoint) of the newest <step>.pt in `folder` that loads, or None; unreadable ones are skipped.

    In this run's own ckpt_dir an unreadable file (cut short by a full disk, say) is renamed to <name>.corrupt,
    and so is an unreadable EMA export above the newest good one: pruning ranks files by step, so a corrupt
    file left in place would count as kept and push out every new good checkpoint.
    """
    own = folder.resolve() == ckpt_dir.resolve()

    def skip(path, error):
        note = ""
        if own:
            os.replace(path, path.with_name(path.name + ".corrupt"))
            note = f"; moved it aside to {path.name}.corrupt"
        logger.warning(f"skipping unreadable checkpoint {path}: {type(error).__name__}: {error}{note}")

    found = newest_valid_checkpoint(folder, (PT,), read=read, on_skip=skip)
    if own:
        newest_valid_checkpoint(ckpt_dir, (EMA,), on_skip=skip)
    return found


def set_aside_later_checkpoints(ckpt_dir, step, logger):
    """Rename this run's checkpoints of steps after `step` to <name>.superseded when resuming from an earlier one.

    Pruning ranks files by step, so they would count as kept and push out every checkpoint the resumed run writes.
    """
    for suffix in (PT, EMA):
        for path in list_checkpoints(ckpt_dir, (suffix,)):
            if checkpoint_step(path, suffix) > step:
                os.replace(path, path.with_name(path.name + ".superseded"))
                logger.warning(f"{path} is later than the resumed step {step}: moved it aside to "
                               f"{path.name}.superseded")


def atomic_write(path, write):
    """write(tmp_path), fsync, os.replace, fsync the folder: a kill or power cut leaves the old file or the whole
    new one. The file gets the mode a plain open() gives (0o666 less the umask), although safetensors makes 0o600."""
    tmp_path = path.with_name(path.name + ".tmp")
    try:
        write(tmp_path)
        umask = os.umask(0)  # reading the umask means setting it
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        with open(tmp_path, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except BaseException:  # a write that failed (full disk) must not leave a large .tmp behind
        tmp_path.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)  # the rename itself survives a power cut only once this is synced
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def export_ema_safetensors(ema, config, step, path):
    """EMA weights for the sampler, with the resolved config JSON in the metadata."""
    from safetensors.torch import save_file

    tensors = {key: value.detach().cpu().contiguous() for key, value in ema.state_dict().items()}
    metadata = {"config": json.dumps(config), "step": str(step)}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def prune_checkpoints(ckpt_dir, keep):
    """Delete all but the `keep` newest .pt checkpoints, and all but the `keep` newest EMA exports."""
    for suffix in (PT, EMA):
        for path in list_checkpoints(ckpt_dir, (suffix,))[keep:]:
            path.unlink()


def is_pretrained_folder(path):
    return (Path(path) / CONFIG_FILE).is_file()


def save_pretrained_folder(folder, config, state_dict, training_config=None):
    """Write a model folder: config.json, the weights as safetensors, training_config.json if given; each file
    atomically, the weights first, so a folder with a config.json was written whole."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {key: value.detach().cpu().contiguous() for key, value in state_dict.items()}
    atomic_write(folder / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp)))
    if training_config is not None:
        text = json.dumps(training_config, indent=2)
        atomic_write(folder / TRAINING_CONFIG_FILE, lambda tmp: tmp.write_text(text))
    text = json.dumps(config, indent=2)
    atomic_write(folder / CONFIG_FILE, lambda tmp: tmp.write_text(text))


def read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None


def read_pretrained_config(folder, class_name):
    """The constructor arguments in folder/config.json, checked to be for `class_name`."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a model folder: no {CONFIG_FILE} (Latte.save_pretrained or "
                                f"tools/export_pretrained.py write one)")
    config = read_json(path)
    if config.get("_class_name") != class_name:
        raise ValueError(f"{path} describes a {config.get('_class_name')!r}, not a {class_name!r}")
    return {key: value for key, value in config.items() if not key.startswith("_")}


def pretrained_weights_path(folder):
    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"model folder {folder} has no {WEIGHTS_FILE}")
    return path


def read_training_config(folder):
    """folder/training_config.json (the settings the model was trained with), or {} when the folder has none."""
    path = Path(folder) / TRAINING_CONFIG_FILE
    return read_json(path) if path.is_file() else {}


def pretrained_step(folder):
    """The training step a run's model folder was exported at, or None when any of its files is missing or its
    training config unreadable."""
    if not all((Path(folder) / name).is_file() for name in (CONFIG_FILE, WEIGHTS_FILE)):
        return None
    try:
        return read_training_config(folder).get("step")
    except ValueError:
        return None
