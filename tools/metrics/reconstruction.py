"""Per-frame reconstruction quality of an autoencoder: PSNR and SSIM of held-out frames against their
reconstructions, one value per frame, which the autoencoder trainer writes to JSON. Computed in float64, in torch,
on the inputs' device, batched over all frames."""

import math

import torch
import torch.nn.functional as F

# Wang et al. 2004, as their reference code: an 11x11 Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03.
WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
K1, K2 = 0.01, 0.03


def _check_pair(reference: torch.Tensor, reconstruction: torch.Tensor, data_range: float) -> None:
    if reference.shape != reconstruction.shape:
        raise ValueError(f"reference and reconstruction shapes differ: {tuple(reference.shape)} "
                         f"vs {tuple(reconstruction.shape)}")
    if reference.dim() < 3:
        raise ValueError(f"frames must be (..., C, H, W), got shape {tuple(reference.shape)}")
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range}")


def psnr(reference: torch.Tensor, reconstruction: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """10 log10(data_range^2 / MSE over C, H, W) per frame: (..., C, H, W) -> float64 (...).

    The default data_range 2 is for frames in [-1, 1]. A frame reconstructed exactly (MSE 0) gives +inf, so
    averages over frames should be taken with that in mind.
    """
    _check_pair(reference, reconstruction, data_range)
    mse = (reference.double() - reconstruction.double()).square().mean(dim=(-3, -2, -1))  # (...)
    return 10 * torch.log10(data_range ** 2 / mse)


def _gaussian_window(device: torch.device) -> torch.Tensor:
    """The normalised 1-D Gaussian whose outer product with itself is the 2-D window (which is then normalised)."""
    coords = torch.arange(WINDOW_SIZE, dtype=torch.float64, device=device) - (WINDOW_SIZE - 1) / 2
    window = torch.exp(-coords.square() / (2 * WINDOW_SIGMA ** 2))
    return window / window.sum()


def ssim(reference: torch.Tensor, reconstruction: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """SSIM of Wang et al. 2004 per frame: (..., C, H, W) -> float64 (...).

    Local statistics by 'valid' (unpadded) Gaussian filtering, the SSIM map averaged over the valid region,
    per channel, then averaged over channels. Frames need H, W >= 11, the window's size.
    """
    _check_pair(reference, reconstruction, data_range)
    *leading, channels, height, width = reference.shape
    if height < WINDOW_SIZE or width < WINDOW_SIZE:
        raise ValueError(f"SSIM needs frames of at least {WINDOW_SIZE}x{WINDOW_SIZE} px, got {height}x{width}")
    planes = math.prod(leading) * channels
    x = reference.double().reshape(planes, 1, height, width)  # (F*C, 1, H, W)
    y = reconstruction.double().reshape(planes, 1, height, width)
    moments = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (F*C, 5, H, W)
    window = _gaussian_window(reference.device)
    # The separable window as a depthwise conv: along H, then along W.
    moments = F.conv2d(moments, window.view(1, 1, -1, 1).expand(5, 1, -1, 1), groups=5)
    moments = F.conv2d(moments, window.view(1, 1, 1, -1).expand(5, 1, 1, -1), groups=5)  # (F*C, 5, H-10, W-10)
    mu_x, mu_y, xx, yy, xy = moments.unbind(dim=1)  # (F*C, H-10, W-10) each
    var_x = xx - mu_x.square()
    var_y = yy - mu_y.square()
    cov_xy = xy - mu_x * mu_y
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
                / ((mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2)))
    return ssim_map.mean(dim=(-2, -1)).reshape(*leading, channels).mean(dim=-1)  # (...)
