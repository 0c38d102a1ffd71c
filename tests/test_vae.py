"""models/vae.py against diffusers' own AutoencoderKL calls, with a tiny random-init VAE saved to disk."""
import pytest
import torch

from models.vae import decode_latents, encode_video, load_vae


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory, tiny_vae_dir):
    return tiny_vae_dir(tmp_path_factory.mktemp("vae"))  # conftest.py: width 32, the /8 geometry of sd-vae-ft-ema


def test_load_vae_matches_saved_weights(vae_dir, tiny_vae):
    vae = load_vae(vae_dir)
    reference = tiny_vae().state_dict()
    loaded = vae.state_dict()
    assert reference.keys() == loaded.keys()
    assert all(torch.equal(reference[k], loaded[k]) for k in reference)
    assert not any(p.requires_grad for p in vae.parameters())
    assert not vae.training


def test_load_vae_accepts_pipeline_layout(tmp_path, tiny_vae_dir):
    tiny_vae_dir(tmp_path / "vae")
    vae = load_vae(tmp_path)
    assert vae.config.latent_channels == 4


def test_load_vae_missing_path_names_it(tmp_path):
    missing = tmp_path / "no_such_vae"
    with pytest.raises(FileNotFoundError, match="no_such_vae"):
        load_vae(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_vae(empty)


def test_encode_video_equals_per_frame_posterior_mean(vae_dir):
    vae = load_vae(vae_dir)
    video = torch.rand(2, 3, 3, 32, 32) * 2 - 1
    latents = encode_video(vae, video, chunk_size=4)
    assert latents.shape == (2, 3, 4, 4, 4)
    with torch.no_grad():
        for b in range(2):
            for n in range(3):
                frame_latent = vae.encode(video[b, n : n + 1]).latent_dist.mean[0] * 0.18215
                torch.testing.assert_close(latents[b, n], frame_latent, rtol=1e-4, atol=1e-5)
    assert vae.config.scaling_factor == 0.18215  # sd-vae-ft-ema's, diffusers' default: the tiny VAE keeps it


def test_chunk_size_does_not_change_results(vae_dir):
    vae = load_vae(vae_dir)
    video = torch.rand(1, 5, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(encode_video(vae, video, chunk_size=1), encode_video(vae, video, chunk_size=5))
    latents = torch.randn(1, 5, 4, 4, 4)
    torch.testing.assert_close(decode_latents(vae, latents, chunk_size=2), decode_latents(vae, latents, chunk_size=7))


def test_decode_latents_matches_diffusers(vae_dir):
    vae = load_vae(vae_dir)
    latents = torch.randn(2, 2, 4, 4, 4)
    video = decode_latents(vae, latents)
    assert video.shape == (2, 2, 3, 32, 32)
    assert video.min() >= -1 and video.max() <= 1
    with torch.no_grad():
        expected = vae.decode(latents[1, 0:1] / 0.18215).sample[0].clamp(-1, 1)
    torch.testing.assert_close(video[1, 0], expected, rtol=1e-4, atol=1e-5)


def test_bad_shapes_are_rejected(vae_dir):
    vae = load_vae(vae_dir)
    with pytest.raises(ValueError, match=r"\(B, N, 3, H, W\)"):
        encode_video(vae, torch.zeros(1, 4, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, N, 4, H, W\)"):
        decode_latents(vae, torch.zeros(1, 2, 3, 4, 4))
