"""Per-frame PSNR and SSIM: PSNR against its closed form, SSIM against a slow numpy + scipy implementation
of Wang et al. 2004 (a directly built 2-D window, not the separable one) and against closed forms."""
import math

import numpy as np
import pytest
import scipy.signal
import torch

from tools.metrics.reconstruction import psnr, ssim

C1 = (0.01 * 2.0) ** 2
C2 = (0.03 * 2.0) ** 2


def gaussian_window_2d(size=11, sigma=1.5) -> np.ndarray:
    """As MATLAB's fspecial('gaussian', 11, 1.5): exp(-(i^2 + j^2) / (2 sigma^2)), normalised to sum 1."""
    coords = np.arange(size) - (size - 1) / 2
    window = np.exp(-(coords[:, None] ** 2 + coords[None, :] ** 2) / (2 * sigma ** 2))
    return window / window.sum()


def local_means(image: np.ndarray) -> np.ndarray:
    return scipy.signal.correlate2d(image, gaussian_window_2d(), mode="valid")


def naive_ssim(x: np.ndarray, y: np.ndarray, data_range=2.0) -> float:
    """SSIM of one (C, H, W) frame pair, channel by channel, in float64."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for a, b in zip(np.asarray(x, np.float64), np.asarray(y, np.float64)):
        mu_a, mu_b = local_means(a), local_means(b)
        var_a = local_means(a * a) - mu_a ** 2
        var_b = local_means(b * b) - mu_b ** 2
        cov = local_means(a * b) - mu_a * mu_b
        ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
        values.append(ssim_map.mean())
    return float(np.mean(values))


def random_frames(*shape, seed=0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1


def square_pair(seed=0) -> tuple[torch.Tensor, torch.Tensor]:
    """A bright square on a dark (3, 24, 24) frame, and the same square shifted 1 px right, plus noise."""
    reference = torch.full((3, 24, 24), -0.8, dtype=torch.float64)
    reference[:, 6:16, 5:15] = 0.7
    shifted = torch.roll(reference, shifts=1, dims=-1)
    return reference, shifted + 0.05 * torch.randn(3, 24, 24, generator=torch.Generator().manual_seed(seed),
                                                   dtype=torch.float64)


def test_psnr_closed_form_per_frame():
    reference = torch.zeros(2, 3, 3, 8, 8, dtype=torch.float64)  # (B, N, C, H, W)
    errors = torch.tensor([[0.1, 0.2, 0.05], [0.3, 0.15, 0.01]], dtype=torch.float64)
    reconstruction = reference + errors[:, :, None, None, None]
    values = psnr(reference, reconstruction)
    assert values.shape == (2, 3) and values.dtype == torch.float64
    expected = [[10 * math.log10(4 / error ** 2) for error in row] for row in errors.tolist()]
    np.testing.assert_allclose(values.numpy(), expected, rtol=1e-12)
    assert math.isclose(values[0, 0].item(), 10 * math.log10(4 / 0.01), rel_tol=1e-12)
    # float32 frames: computed in float64 all the same, so only the float32 rounding of 0.1 shows.
    assert math.isclose(psnr(reference.float(), reconstruction.float())[0, 0].item(), 10 * math.log10(4 / 0.01),
                        abs_tol=1e-5)
    assert len(set(values.flatten().tolist())) == 6


def test_psnr_data_range_and_identical_frames():
    reference = random_frames(4, 3, 8, 8)
    assert math.isclose(psnr(reference[0], reference[0] + 0.5, data_range=1.0).item(), 10 * math.log10(1 / 0.25),
                        rel_tol=1e-12)
    reconstruction = reference.clone()
    reconstruction[1] += 0.1
    values = psnr(reference, reconstruction)
    assert torch.isinf(values[[0, 2, 3]]).all() and (values[[0, 2, 3]] > 0).all()
    assert math.isclose(values[1].item(), 10 * math.log10(4 / 0.01), rel_tol=1e-12)


def test_ssim_matches_naive_on_random_frames():
    reference = random_frames(4, 3, 24, 24, seed=1)
    reconstruction = (reference + 0.3 * random_frames(4, 3, 24, 24, seed=2)).clamp(-1, 1)
    values = ssim(reference, reconstruction)
    assert values.shape == (4,) and values.dtype == torch.float64
    expected = [naive_ssim(r.numpy(), s.numpy()) for r, s in zip(reference, reconstruction)]
    np.testing.assert_allclose(values.numpy(), expected, rtol=0, atol=1e-10)
    assert len(set(np.round(expected, 6))) == 4


def test_ssim_matches_naive_on_non_square_float32_frames():
    reference = random_frames(2, 2, 3, 13, 20, seed=3).float()  # (B, N, C, H, W), H != W
    reconstruction = (reference + 0.2 * random_frames(2, 2, 3, 13, 20, seed=4).float()).clamp(-1, 1)
    values = ssim(reference, reconstruction)
    assert values.shape == (2, 2) and values.dtype == torch.float64
    expected = [[naive_ssim(r.numpy(), s.numpy()) for r, s in zip(rs, ss)] for rs, ss in zip(reference, reconstruction)]
    np.testing.assert_allclose(values.numpy(), expected, rtol=0, atol=1e-10)


def test_ssim_matches_naive_on_shifted_square():
    reference, shifted = square_pair()
    value = ssim(reference, shifted)
    assert value.shape == ()
    assert math.isclose(value.item(), naive_ssim(reference.numpy(), shifted.numpy()), rel_tol=0, abs_tol=1e-10)
    assert value.item() < 0.95


def test_ssim_identical_is_one():
    frames = random_frames(4, 3, 24, 24, seed=5)
    np.testing.assert_allclose(ssim(frames, frames).numpy(), np.ones(4), rtol=0, atol=1e-12)


def test_ssim_constant_images_closed_form():
    mu_x = torch.tensor([-0.5, 0.0, 0.2, 0.9], dtype=torch.float64)
    mu_y = torch.tensor([-0.3, 0.4, 0.2, -0.9], dtype=torch.float64)
    x = mu_x[:, None, None, None].expand(4, 3, 16, 16)
    y = mu_y[:, None, None, None].expand(4, 3, 16, 16)
    expected = (2 * mu_x * mu_y + C1) / (mu_x ** 2 + mu_y ** 2 + C1)  # variances 0: contrast-structure C2/C2 = 1
    np.testing.assert_allclose(ssim(x, y).numpy(), expected.numpy(), rtol=0, atol=1e-12)
    assert expected[2] == 1 and (expected[[0, 1, 3]] < 1).all()


def test_ssim_offset_changes_only_luminance():
    """A constant offset leaves variances and covariance alone: SSIM is the mean of the luminance term alone."""
    reference = random_frames(2, 3, 24, 24, seed=6) * 0.5
    offset = 0.3
    values = ssim(reference, reference + offset)
    for value, frame in zip(values, reference.numpy()):
        luminance = [((2 * mu * (mu + offset) + C1) / (mu ** 2 + (mu + offset) ** 2 + C1)).mean()
                     for mu in map(local_means, frame)]
        assert math.isclose(value.item(), float(np.mean(luminance)), rel_tol=0, abs_tol=1e-10)
        assert value.item() < 1 - 1e-3


def test_ssim_noise_lowers_it():
    reference, _ = square_pair()
    noisy = reference + 0.3 * torch.randn(3, 24, 24, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert ssim(reference, noisy).item() < 0.9


def test_ssim_is_symmetric():
    x = random_frames(4, 3, 24, 24, seed=8)
    y = (x + 0.4 * random_frames(4, 3, 24, 24, seed=9)).clamp(-1, 1)
    np.testing.assert_allclose(ssim(x, y).numpy(), ssim(y, x).numpy(), rtol=0, atol=1e-15)


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_shape_mismatch_and_too_few_dims_raise(metric):
    with pytest.raises(ValueError, match=r"shapes differ: \(2, 3, 24, 24\) vs \(2, 3, 24, 23\)"):
        metric(torch.zeros(2, 3, 24, 24), torch.zeros(2, 3, 24, 23))
    with pytest.raises(ValueError, match=r"\(\.\.\., C, H, W\), got shape \(24, 24\)"):
        metric(torch.zeros(24, 24), torch.zeros(24, 24))


def test_ssim_too_small_frames_raise():
    with pytest.raises(ValueError, match="at least 11x11 px, got 10x24"):
        ssim(torch.zeros(2, 3, 10, 24), torch.zeros(2, 3, 10, 24))
    with pytest.raises(ValueError, match="got 24x8"):
        ssim(torch.zeros(3, 24, 8), torch.zeros(3, 24, 8))
