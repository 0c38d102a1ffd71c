"""Fixtures shared by the test files."""
import pytest
import torch


def make_tiny_vae(width=32, sample_size=32):
    """A tiny random-init diffusers AutoencoderKL, the same weights on every call (seed 0), in eval mode.

    Four levels -> three 2x downsamplings: the same /8 geometry and 4 latent channels as sd-vae-ft-ema, at a
    width of `width` channels per level. `sample_size` is only the config value diffusers stores.
    """
    from diffusers.models import AutoencoderKL  # imported here: diffusers is slow to import, most tests need none

    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(width,) * 4,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=sample_size,
    ).eval()


def save_tiny_vae(path, width=32, sample_size=32):
    """make_tiny_vae(width, sample_size) saved with save_pretrained to the folder `path` (created); returns path."""
    make_tiny_vae(width, sample_size).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_vae():
    """The function make_tiny_vae(width=32, sample_size=32) -> AutoencoderKL."""
    return make_tiny_vae


@pytest.fixture(scope="session")
def tiny_vae_dir():
    """The function save_tiny_vae(path, width=32, sample_size=32) -> path: a tiny VAE saved to the folder `path`."""
    return save_tiny_vae


# sd-vae-ft-ema's config.json (stabilityai/sd-vae-ft-ema), the keys that matter here: 4 levels (/8), 4 channels.
SD_VAE_CONFIG = {
    "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4, "in_channels": 3,
    "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "sample_size": 256,
    "scaling_factor": 0.18215,
}


@pytest.fixture
def sd_vae_config_dir(tmp_path):
    """A folder holding only sd-vae-ft-ema's config.json (no weights): what geometry checks read."""
    import json

    folder = tmp_path / "sd-vae-ft-ema"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(SD_VAE_CONFIG))
    return folder
