"""tools/benchmark_libraries.py: the checks behind README's Dependencies decisions, on tiny inputs."""
import numpy as np
import pytest
import torch

from datasets.video_io import resize_center_crop
from tools.benchmark_libraries import (
    TIMM_VARIANTS, library_clip, output_and_grad_difference, perturbed_model, same_state_dict_keys, with_timm_layers,
)


def test_timm_layers_keep_our_keys_and_outputs():
    pytest.importorskip("timm")
    ours = perturbed_model("Latte-T/8", input_size=16, num_frames=4, channels=4)
    x = torch.randn(2, 4, 4, 16, 16)
    t = torch.randint(0, 1000, (2, 4))
    for variant in TIMM_VARIANTS[1:]:
        model = with_timm_layers(ours, variant)
        assert same_state_dict_keys(ours, model), variant
        out_diff, out_scale, grad_diff, grad_scale = output_and_grad_difference(ours, model, x, t)
        assert out_scale > 0.1 and out_diff < 1e-5 * out_scale, variant
        assert grad_diff < 1e-4 * grad_scale, variant


def test_torchvision_matches_ours_only_with_our_geometry():
    pytest.importorskip("torchvision")
    frames = np.random.default_rng(0).integers(0, 256, (2, 72, 128, 3), dtype=np.uint8)
    ours = resize_center_crop(frames, 32)  # resized 32x57, crop offset 12 (floor of 12.5)
    same, resized, offset = library_clip(frames, 32, "torchvision", uint8=False, geometry="ours")
    assert torch.equal(same, ours) and resized == (32, 57) and offset == (0, 12)
    _, resized, offset = library_clip(frames, 32, "torchvision", uint8=False, geometry="torchvision")
    assert resized == (32, 56) and offset == (0, 12)  # the longer side truncated: a different scale
    unresized = frames[:, :32, :55]  # shorter side already 32: crop only, at floor(23 / 2) against round(11.5)
    crop, _, offset = library_clip(unresized, 32, "torchvision", uint8=False, geometry="torchvision")
    assert offset == (0, 12) and torch.equal(crop[..., :-1], resize_center_crop(unresized, 32)[..., 1:])
    uint8, _, _ = library_clip(frames, 32, "torch", uint8=True, geometry="ours")
    assert 0 < (uint8 - ours).abs().max() * 127.5 <= 1  # rounded to uint8: within one level, not equal
