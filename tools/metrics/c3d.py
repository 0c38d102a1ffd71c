"""C3D fine-tuned on UCF-101, for the video Inception Score (IS) of UCF-101.

The model is StyleGAN-V's `c3d_ucf101.pt`, a TorchScript port of TGANv2's chainer C3D. It takes
uint8 clips (B, 3, 16, H, W), does its own resizing and mean subtraction, and returns softmax
probabilities over the 101 classes. No offline source of these weights exists, so the user
supplies the file.
"""

import os
import warnings
from pathlib import Path

import torch

from .i3d import state_dict_sha256

C3D_NUM_FRAMES = 16
C3D_NUM_CLASSES = 101
DEFAULT_C3D_PATH = Path(os.environ.get("FVDM_C3D_WEIGHTS", "~/.cache/fvdm/c3d_ucf101.pt")).expanduser()


class C3DProbabilities(torch.nn.Module):
    """uint8 clips (B, 3, 16, H, W) -> (B, 101) class probabilities, checked as such."""

    def __init__(self, scripted, weights_path):
        super().__init__()
        self.net = scripted
        self.weights_path = str(weights_path)
        self.weights_sha256 = state_dict_sha256(scripted.state_dict())

    def forward(self, clips):
        probs = self.net(clips).float()
        if probs.shape != (len(clips), C3D_NUM_CLASSES):
            raise ValueError(f"{self.weights_path}: C3D returned shape {tuple(probs.shape)}, expected (B, 101)")
        if (probs < 0).any() or not torch.allclose(probs.sum(1), torch.ones(len(probs)), atol=1e-3):
            raise ValueError(f"{self.weights_path}: C3D output is not probabilities (rows must be >= 0 and sum to 1)")
        return probs


def load_c3d(weights=None, device="cpu") -> C3DProbabilities:
    path = Path(weights).expanduser() if weights is not None else DEFAULT_C3D_PATH
    if not path.is_file():
        raise FileNotFoundError(
            f"C3D weights for the UCF-101 Inception Score not found at {path}. No offline source "
            "exists: get StyleGAN-V's c3d_ucf101.pt (TorchScript port of TGANv2's C3D) yourself and "
            f"pass --c3d_weights PATH, set FVDM_C3D_WEIGHTS, or put it at {DEFAULT_C3D_PATH}."
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
        scripted = torch.jit.load(str(path), map_location="cpu")
    return C3DProbabilities(scripted, path).eval().requires_grad_(False).to(device)
