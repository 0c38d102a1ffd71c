"""Text-to-video end to end: captions through training and the latent cache, prompts through every sampling path."""
import numpy as np
import pytest
import torch

from datasets import build_config_dataset, build_dataset
from datasets.bouncing import HELD_OUT_COMBINATIONS, parse_caption
from diffusion import create_diffusion, vtv
from sample import sampling
from sample.config import load_config as load_sample_config
from tests.test_text import TEXT_DIM, random_text, tiny_text_model
from tests.test_train import read_metrics, run_trainer

TEXT_TRAINING = ["dataset=bouncing_captions", "text_encoder=minilm", "text_max_length=12", "text_adaln=true",
                 "prediction_type=v", "min_snr_gamma=5",
                 "ckpt_every=3", "max_train_steps=6", "ema_decay=0.9"]


def test_captioned_training_clips_never_show_a_held_out_pair():
    dataset = build_dataset("bouncing_captions", split="train", num_frames=8, frame_interval=2, image_size=32,
                            length=300)
    pairs = {parse_caption(caption)[:2] for index in range(len(dataset)) for caption in dataset[index]["captions"]}
    assert not pairs & set(HELD_OUT_COMBINATIONS) and len(pairs) == 24 - len(HELD_OUT_COMBINATIONS)


def test_text_cfg_is_uncond_plus_scale_times_the_difference():
    model = tiny_text_model()
    x, t = torch.randn(2, 4, 3, 16, 16), torch.randint(0, 1000, (2, 4))
    text, mask = random_text(frames=4)
    with torch.no_grad():
        cond = model(x, t, text=text, text_mask=mask)[:, :, :3]
        uncond = model(x, t, text=text, text_mask=mask, drop_text=torch.ones(2, dtype=torch.bool))[:, :, :3]
        guided = sampling.sampling_model_fn(model, cfg_scale=3.0)(x, t, text=text, text_mask=mask)
        plain = sampling.sampling_model_fn(model, cfg_scale=1.0)(x, t, text=text, text_mask=mask)
    torch.testing.assert_close(guided[:, :, :3], uncond + 3.0 * (cond - uncond), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(plain[:, :, :3], cond, atol=1e-5, rtol=1e-5)
    assert (cond - uncond).abs().max() > 1e-3  # the prompt matters, so the check could fail


class Recorder(torch.nn.Module):
    """Wraps a model and records the text each call receives."""

    def __init__(self, model):
        super().__init__()
        self.model, self.texts = model, []

    def forward(self, x, t, **kwargs):
        self.texts.append(kwargs["text"])
        return self.model(x, t, **kwargs)


def test_long_video_windows_see_their_own_frames_prompts():
    model = Recorder(tiny_text_model())
    diffusion = create_diffusion("2")
    length, context = 10, 2
    text, mask = random_text(batch=1, frames=length, valid=(4,))
    _, chunks = vtv.sample_video(diffusion, model, "long", (1, 4, 3, 16, 16), options={"length": length,
                                 "context_frames": context}, frame_kwargs={"text": text, "text_mask": mask})
    assert sum(chunk.shape[1] for chunk in chunks) == length
    windows = vtv.plan_long_video(4, context, length)
    assert len(model.texts) == 2 * len(windows)  # two steps per window
    for (start, num_context, new), seen in zip(windows, model.texts[::2]):
        torch.testing.assert_close(seen, text[:, start:start + num_context + new])
    with pytest.raises(ValueError, match="diagonal .*one prompt"):
        vtv.sample_video(diffusion, model, "diagonal", (1, 4, 3, 16, 16), options={"length": length},
                         frame_kwargs={"text": text, "text_mask": mask})
    with pytest.raises(ValueError, match="'text' must hold 1 or 4 frames"):
        vtv.sample_video(diffusion, model, "i2v", (1, 4, 3, 16, 16), frame_kwargs={"text": text, "text_mask": mask})


def test_prompts_per_frame_and_prompt_schedule_expand_to_the_output():
    cfg = load_sample_config(None, ["preset=long", "length=6", "prompt_schedule={0: a, 4: b}"])
    assert sampling.output_prompts(cfg, 6) == ["a", "a", "a", "a", "b", "b"]
    with pytest.raises(ValueError, match="'prompt_schedule'.*must include 0"):
        sampling.output_prompts(load_sample_config(None, ["prompt_schedule={1: a}"]), 6)
    with pytest.raises(ValueError, match="'prompts' holds 2 prompts, but preset 'standard' writes 4"):
        sampling.output_prompts(load_sample_config(None, ["prompts=[a, b]"]), 4)
    with pytest.raises(ValueError, match="prompt_schedule.*not \\['prompt', 'prompt_schedule'\\]"):
        load_sample_config(None, ["prompt=a", "prompt_schedule={0: b}"])


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """A tiny text model trained 6 steps on bouncing_captions without a break: (run dir, metrics)."""
    tmp_path = tmp_path_factory.mktemp("text_run")
    run_trainer([*TEXT_TRAINING, "experiment_name=text"], tmp_path)
    return tmp_path / "text", read_metrics(tmp_path / "text")


def test_a_text_run_resumes_exactly(tmp_path, text_run):
    run_dir, straight = text_run
    run_trainer([*TEXT_TRAINING, "max_train_steps=3", "experiment_name=text"], tmp_path)
    run_trainer([*TEXT_TRAINING, "experiment_name=text", "resume_from_checkpoint=auto"], tmp_path)  # from step 3
    resumed = read_metrics(tmp_path / "text")
    assert [r["step"] for r in resumed] == list(range(1, 7))
    for a, b in zip(straight, resumed):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("preset,prompt_keys", [
    ("standard", ["prompt=a red circle moving right"]),
    ("i2v", ["prompts=[a red circle moving right, a red circle moving right, a blue square moving up, "
             "a blue square moving up]"]),
    ("long", ["length=7", "prompt_schedule={0: a red circle moving right, 5: a green diamond moving down}"]),
    ("diagonal", ["length=5", "num_sampling_steps=4", "prompt=a red circle moving right"]),
])
def test_a_trained_text_model_samples_every_kind_of_preset_with_prompts(text_run, preset, prompt_keys):
    run_dir, _ = text_run
    cfg = load_sample_config(None, [f"ckpt={run_dir / 'checkpoints'}", f"preset={preset}", "num_sampling_steps=3",
                                    "cfg_scale=2.0", "history_guidance=1.5", "progress=false", *prompt_keys])
    model, _, settings = sampling.load_model_for_sampling(cfg)
    assert settings["text_encoder"].dim == 384 and model.text_dim == 384
    assert model.text_embedder.pooled_mlp is not None  # text_adaln read from the checkpoint's weights
    diffusion = sampling.create_sampling_diffusion(cfg, settings)
    assert settings["prediction_type"] == "v" and diffusion.model_mean_type.name == "VELOCITY"  # the run's
    ((_, _, chunks),) = sampling.sampled_batches(cfg, model, diffusion, settings, [[0, 1]], [], "cpu")
    video = torch.cat(list(chunks), dim=1)
    assert video.shape[:2] == (2, vtv.output_length(preset, 4, sampling.preset_options(cfg)))
    assert torch.isfinite(video).all()


def test_text_models_need_prompts_and_others_refuse_them(text_run, tmp_path):
    run_dir, _ = text_run
    model_and_settings = sampling.load_model_for_sampling(load_sample_config(None, [f"ckpt={run_dir / 'checkpoints'}"]))
    cfg = load_sample_config(None, [f"ckpt={run_dir / 'checkpoints'}"])
    with pytest.raises(ValueError, match="text model: give config key prompt"):
        sampling.config_text(cfg, model_and_settings[2], 1, 4)
    plain = load_sample_config(None, ["model=Latte-T/8", "image_size=16", "num_frames=4", "num_classes=0",
                                      "learn_sigma=true", "prompt=a red circle moving right"])
    _, _, settings = sampling.load_model_for_sampling(plain)
    with pytest.raises(ValueError, match="need a text model"):
        sampling.config_text(plain, settings, 1, 4)


def test_latent_cache_round_trips_captions(tmp_path, tiny_vae_dir):
    from datasets.latent_cache import LatentCacheDataset
    from tools.encode_latents import encode_dataset
    from training.config import load_config

    vae_dir = tiny_vae_dir(tmp_path / "vae")
    cfg = load_config(None, ["dataset=bouncing_captions", "dataset_length=5", "image_size=32", "num_frames=4",
                             f"vae={vae_dir}", "mixed_precision=no"])
    encode_dataset(cfg, tmp_path / "cache", batch_size=2, num_workers=0, mixed_precision="no")
    cache = LatentCacheDataset(tmp_path / "cache")
    pixels = build_config_dataset(cfg, random_flip=False)
    assert [cache[i]["captions"] for i in range(5)] == [pixels[i]["captions"] for i in range(5)]
    with pytest.raises(ValueError, match="random_flip=false"):
        LatentCacheDataset(tmp_path / "cache", random_flip=True)
    assert np.isfinite(cache[0]["latents"].numpy()).all()
