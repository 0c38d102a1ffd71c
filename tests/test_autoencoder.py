"""Stage 1 (tools/train_autoencoder.py, training/autoencoder.py): config errors, exact resume (one process and
2-process gloo DDP), reconstruction that improves with training, the latent scale measured, saved and used, `vae=`
loading our folder, and a latent cache of our VAE that round-trips into FVDM training. Tiny models at 32 px."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets import BouncingShapes, LatentCacheDataset
from models.vae import decode_latents, encode_video, load_vae, model_geometry
from tools.encode_latents import encode_dataset
from training import load_config, train
from training.autoencoder import AutoencoderLoss, create_initial_autoencoder, train_autoencoder
from training.autoencoder_config import load_autoencoder_config

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "dataset=bouncing", "dataset_length=16", "image_size=32", "num_frames=2", "frame_interval=2",
    "block_out_channels=[8,16]", "norm_num_groups=4", "local_batch_size=2", "num_workers=0", "log_every=1",
    "eval_every=0", "preview_every=0", "eval_num_clips=4", "latent_stat_clips=16", "mixed_precision=no",
    "learning_rate=3e-3", "lr_warmup_steps=2",
]
METRIC_KEYS = ("step", "epoch", "loss", "reconstruction", "kl", "grad_norm", "lr")


def autoencoder_config(tmp_path, *overrides):
    return load_autoencoder_config(None, [*TINY, f"results_dir={tmp_path}", *overrides])


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def training_records(run_dir):
    return [record for record in read_metrics(run_dir) if "loss" in record]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny autoencoder trained 40 steps: its run folder."""
    root = tmp_path_factory.mktemp("autoencoder")
    train_autoencoder(autoencoder_config(root, "max_train_steps=40", "ckpt_every=40", "experiment_name=run",
                                         "preview_every=40"))
    return root / "run"


@pytest.mark.parametrize("override, key", [
    ("block_out_channels=[8,10]", "block_out_channels"),  # 10 is not a multiple of norm_num_groups=4
    ("image_size=31", "image_size"),  # not a multiple of the /2 downsampling
    ("reconstruction_loss=lpips", "reconstruction_loss"),
    ("ema_decay=1.0", "ema_decay"),
    ("crop_size=7", "crop_size"),  # not a multiple of the /2 downsampling
    ("adam_betas=[0.9]", "adam_betas"),
    ("decoder_noise_std=-0.1", "decoder_noise_std"),
    ("decoder_finetune_steps=-1", "decoder_finetune_steps"),
    ("decoder_finetune_noise_std=-0.1", "decoder_finetune_noise_std"),
])
def test_bad_values_name_their_key(tmp_path, override, key):
    with pytest.raises(ValueError, match=f"'{key}'"):
        autoencoder_config(tmp_path, override)
    with pytest.raises(ValueError, match="unknown config key 'vae_size'"):
        autoencoder_config(tmp_path, "vae_size=4")


@pytest.mark.parametrize("latent_gain", [1.0, 10.0])
def test_decoder_noise_is_in_units_of_the_latent_std(tmp_path, latent_gain):
    """The decoder sees posterior sample + std * sigma * noise; an encoder with 10x larger latents gets 10x noise."""
    vae = create_initial_autoencoder(autoencoder_config(tmp_path))
    with torch.no_grad():
        vae.quant_conv.weight.mul_(latent_gain)
        vae.quant_conv.bias[:vae.config.latent_channels].mul_(latent_gain)
    seen = []
    decode = vae.decode
    vae.decode = lambda latents: seen.append(latents) or decode(latents)
    frames = torch.rand(4, 3, 32, 32) * 2 - 1
    torch.manual_seed(0)
    AutoencoderLoss(vae, "l1", 1e-6, decoder_noise_std=0.0)(frames)
    torch.manual_seed(0)
    AutoencoderLoss(vae, "l1", 1e-6, decoder_noise_std=0.3)(frames)
    clean, noisy = seen
    torch.manual_seed(0)
    torch.randn_like(clean)  # the posterior sample's draw
    expected_noise = 0.3 * clean.std() * torch.randn_like(clean)
    torch.testing.assert_close(noisy - clean, expected_noise, rtol=1e-4, atol=1e-5)
    assert (noisy - clean).std() > 0.25 * clean.std()


def test_resume_equals_uninterrupted_run(tmp_path):
    # Random crops and posterior samples draw from the RNG that checkpoints restore.
    common = ["lr_schedule=constant", "ckpt_every=3", "ema_decay=0.5", "crop_size=16"]
    train_autoencoder(autoencoder_config(tmp_path, *common, "max_train_steps=6", "experiment_name=straight"))
    train_autoencoder(autoencoder_config(tmp_path, *common, "max_train_steps=3", "experiment_name=resumed"))
    train_autoencoder(autoencoder_config(tmp_path, *common, "max_train_steps=6", "experiment_name=resumed"))
    straight, resumed = training_records(tmp_path / "straight"), training_records(tmp_path / "resumed")
    assert [r["step"] for r in resumed] == list(range(1, 7))
    assert [{k: r[k] for k in METRIC_KEYS} for r in straight] == [{k: r[k] for k in METRIC_KEYS} for r in resumed]
    a = torch.load(tmp_path / "straight" / "checkpoints" / "0000006.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "0000006.pt", weights_only=True)
    for part in ("model", "ema"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    exported = [load_vae(tmp_path / run / "vae").state_dict() for run in ("straight", "resumed")]
    assert all(torch.equal(exported[0][k], exported[1][k]) for k in exported[0])
    # The export is the EMA's weights. A finished run started again leaves its export alone (so latent caches of
    # it stay valid), unless the export was lost, e.g. to a kill during the finish.
    assert all(torch.equal(exported[0][k], a["ema"][k]) for k in exported[0])
    export = tmp_path / "resumed" / "vae" / "config.json"
    written = export.stat().st_mtime_ns
    train_autoencoder(autoencoder_config(tmp_path, *common, "max_train_steps=6", "experiment_name=resumed"))
    assert [r["step"] for r in training_records(tmp_path / "resumed")] == list(range(1, 7))
    assert export.stat().st_mtime_ns == written
    shutil.rmtree(tmp_path / "resumed" / "vae")
    train_autoencoder(autoencoder_config(tmp_path, *common, "max_train_steps=6", "experiment_name=resumed"))
    restored = load_vae(tmp_path / "resumed" / "vae").state_dict()
    assert all(torch.equal(restored[k], exported[1][k]) for k in restored)


def test_decoder_finetune_sees_noisy_posterior_means_and_trains_the_decoder_alone(tmp_path):
    vae = create_initial_autoencoder(autoencoder_config(tmp_path))
    seen = []
    decode = vae.decode
    vae.decode = lambda latents: seen.append(latents) or decode(latents)
    loss_module = AutoencoderLoss(vae, "l1", 1e-6, decoder_noise_std=0.3)
    loss_module.decoder_only_noise_std = 0.5
    frames = torch.rand(4, 3, 32, 32) * 2 - 1
    torch.manual_seed(0)
    loss_module(frames)[0].backward()
    mean = vae.encode(frames).latent_dist.mean.detach()
    torch.manual_seed(0)
    torch.testing.assert_close(seen[0] - mean, 0.5 * mean.std() * torch.randn_like(mean), rtol=1e-4, atol=1e-5)
    assert all(p.grad is None for p in [*vae.encoder.parameters(), *vae.quant_conv.parameters()])
    assert all(p.grad is not None for p in vae.decoder.parameters())


def test_decoder_finetune_freezes_the_encoder_and_resumes_exactly(tmp_path):
    """A finished run extended by a decoder fine-tune keeps its encoder bit for bit (so its latent scale and any
    latent cache of it stay valid), and a resume inside the fine-tune equals the uninterrupted run."""
    common = ["lr_schedule=constant", "ckpt_every=2", "keep_last_checkpoints=5", "ema_decay=0.5"]
    finetune = ["max_train_steps=6", "decoder_finetune_steps=3"]
    train_autoencoder(autoencoder_config(tmp_path, *common, "max_train_steps=3", "experiment_name=straight"))
    joint_scale = json.loads((tmp_path / "straight" / "vae" / "config.json").read_text())["scaling_factor"]
    train_autoencoder(autoencoder_config(tmp_path, *common, *finetune, "experiment_name=straight"))
    checkpoints = tmp_path / "straight" / "checkpoints"
    train_autoencoder(autoencoder_config(tmp_path, *common, *finetune, "experiment_name=resumed",
                                         f"resume_from_checkpoint={checkpoints / '0000004.pt'}"))
    joint, final = (torch.load(checkpoints / f"{step:07d}.pt", weights_only=True) for step in (3, 6))
    encoder = [k for k in final["model"] if k.startswith(("encoder.", "quant_conv."))]
    assert all(torch.equal(final[part][k], joint["ema"][k]) for part in ("model", "ema") for k in encoder)
    assert not torch.equal(final["model"]["decoder.conv_out.weight"], joint["model"]["decoder.conv_out.weight"])
    assert json.loads((tmp_path / "straight" / "vae" / "config.json").read_text())["scaling_factor"] == joint_scale
    straight, resumed = training_records(tmp_path / "straight"), training_records(tmp_path / "resumed")
    assert [r["step"] for r in resumed] == [5, 6]
    assert [{k: r[k] for k in METRIC_KEYS} for r in straight[4:]] == [{k: r[k] for k in METRIC_KEYS} for r in resumed]
    resumed_final = torch.load(tmp_path / "resumed" / "checkpoints" / "0000006.pt", weights_only=True)
    for part in ("model", "ema"):
        assert all(torch.equal(final[part][k], resumed_final[part][k]) for k in final[part]), part


def test_two_process_gloo_ddp_resumes_exactly(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                str(REPO / "tools" / "train_autoencoder.py"), *TINY, f"results_dir={tmp_path}", "ckpt_every=2",
                "max_train_steps=4", "keep_last_checkpoints=3", "lr_schedule=constant"]
    for args in (["experiment_name=ddp"],
                 ["experiment_name=ddp_resumed", f"resume_from_checkpoint={tmp_path}/ddp/checkpoints/0000002.pt"]):
        result = subprocess.run([*launcher, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = torch.load(tmp_path / "ddp" / "checkpoints" / "0000002.pt", weights_only=True)
    assert checkpoint["world_size"] == 2
    assert not torch.equal(checkpoint["rank_states"][0]["rng"]["torch"], checkpoint["rank_states"][1]["rng"]["torch"])
    straight, resumed = training_records(tmp_path / "ddp"), training_records(tmp_path / "ddp_resumed")
    assert [r["step"] for r in resumed] == [3, 4]
    assert [{k: r[k] for k in METRIC_KEYS} for r in straight[2:]] == [{k: r[k] for k in METRIC_KEYS} for r in resumed]


def test_reconstruction_improves_with_training(tmp_path, trained):
    untrained_cfg = autoencoder_config(tmp_path, "max_train_steps=1", "learning_rate=1e-12", "experiment_name=init")
    train_autoencoder(untrained_cfg)
    before = json.loads((tmp_path / "init" / "reconstruction.json").read_text())
    after = json.loads((trained / "reconstruction.json").read_text())
    assert after["num_frames"] == before["num_frames"] == 8  # 4 held-out clips x 2 frames
    assert len(after["psnr"]) == len(after["ssim"]) == 8
    assert after["psnr_mean"] > before["psnr_mean"] + 3, (before["psnr_mean"], after["psnr_mean"])
    assert after["ssim_mean"] > before["ssim_mean"]
    assert (trained / "preview" / "0000040.png").is_file()
    assert "held-out reconstruction" in (trained / "log.txt").read_text()


def test_latent_scale_is_measured_saved_and_used(trained):
    config = json.loads((trained / "vae" / "config.json").read_text())
    vae = load_vae(trained / "vae")
    # latent_stat_clips=16 = every training clip: their posterior means, measured here independently.
    clips = torch.stack([BouncingShapes(num_frames=2, frame_interval=2, image_size=32, seed=3407, length=16)[i]["video"]
                         for i in range(16)])  # (16, 2, 3, 32, 32)
    with torch.no_grad():
        raw = vae.encode(clips.flatten(0, 1)).latent_dist.mean.double()
    assert config["scaling_factor"] == pytest.approx(1 / raw.std().item(), rel=1e-4)
    assert config["shift_factor"] == pytest.approx(raw.mean().item(), rel=1e-4, abs=1e-6)
    assert config["scaling_factor"] != pytest.approx(0.18215, rel=0.01)
    latents = encode_video(vae, clips)  # the model's latents: zero mean, unit variance over the training clips
    assert latents.shape == (16, 2, 4, 16, 16)
    assert abs(latents.mean().item()) < 1e-4 and latents.std().item() == pytest.approx(1.0, rel=1e-4)
    with torch.no_grad():
        expected = vae.decode(vae.encode(clips[0]).latent_dist.mean).sample.clamp(-1, 1)
    torch.testing.assert_close(decode_latents(vae, latents[:1])[0], expected, rtol=1e-4, atol=1e-4)


def test_vae_path_accepts_our_folder_and_a_pipeline_folder(tmp_path, trained):
    pipeline = tmp_path / "pipeline"
    shutil.copytree(trained / "vae", pipeline / "vae")
    ours, nested = load_vae(trained / "vae"), load_vae(pipeline)
    assert all(torch.equal(value, nested.state_dict()[key]) for key, value in ours.state_dict().items())
    assert model_geometry(32, trained / "vae") == model_geometry(32, pipeline) == (4, 16)
    with pytest.raises(ValueError, match="multiple of 2"):
        model_geometry(33, pipeline)


def test_sd_vae_geometry_is_read_from_its_config(sd_vae_config_dir):
    assert model_geometry(256, sd_vae_config_dir) == (4, 32)
    assert model_geometry(256, None) == (3, 256)


def test_latent_cache_of_our_vae_round_trips_and_trains(tmp_path, trained):
    vae_dir = trained / "vae"
    overrides = ["dataset=bouncing", "dataset_length=6", "image_size=32", "num_frames=2", "frame_interval=2",
                 "model=Latte-T/8", "local_batch_size=2", "num_workers=0", "mixed_precision=no",
                 f"vae={vae_dir}", f"results_dir={tmp_path}", "max_train_steps=2", "log_every=1"]
    cfg = load_config(None, overrides)
    encode_dataset(cfg, tmp_path / "cache", batch_size=4, num_workers=0, dtype="float32")
    cache = LatentCacheDataset(tmp_path / "cache")
    cache.check_matches(cfg)
    vae = load_vae(vae_dir)
    clips = BouncingShapes(num_frames=2, frame_interval=2, image_size=32, seed=cfg.global_seed, length=6)
    for index in (0, 5):
        video = clips[index]["video"][None]  # (1, 2, 3, 32, 32)
        cached = cache[index]["latents"][None]
        torch.testing.assert_close(cached, encode_video(vae, video))
        round_trip = decode_latents(vae, cached)
        torch.testing.assert_close(round_trip, decode_latents(vae, encode_video(vae, video)))
    meta = json.loads((tmp_path / "cache" / "meta.json").read_text())
    assert meta["latent_scale"] == pytest.approx(vae.config.scaling_factor)
    assert meta["latent_shape"] == [2, 4, 16, 16] and meta["autocast"] is None
    # bf16 autocast (--mixed-precision) gives the same latents to bf16 rounding, and says so in the meta.
    encode_dataset(cfg, tmp_path / "cache_bf16", batch_size=4, num_workers=0, dtype="float32", mixed_precision="bf16")
    assert json.loads((tmp_path / "cache_bf16" / "meta.json").read_text())["autocast"] == "bfloat16"
    bf16_cache = LatentCacheDataset(tmp_path / "cache_bf16")
    for index in (0, 5):
        fp32, bf16 = cache[index]["latents"], bf16_cache[index]["latents"]
        assert not torch.equal(fp32, bf16)
        torch.testing.assert_close(bf16, fp32, rtol=0, atol=0.05 * fp32.abs().max().item())

    train(load_config(None, [*overrides, f"latent_cache_dir={tmp_path / 'cache'}", "experiment_name=fvdm"]))
    checkpoint = torch.load(tmp_path / "fvdm" / "checkpoints" / "0000002.pt", weights_only=True)
    assert checkpoint["model"]["x_embedder.proj.weight"].shape[1] == 4  # 4 latent channels in

    # A cache encoded by another VAE (here: another latent scale) is refused, naming the key.
    moved = tmp_path / "other_vae"
    shutil.copytree(vae_dir, moved)
    config = json.loads((moved / "config.json").read_text())
    (moved / "config.json").write_text(json.dumps({**config, "scaling_factor": config["scaling_factor"] * 2}))
    with pytest.raises(ValueError, match="config key 'vae'.*encode it again"):
        cache.check_matches(load_config(None, [*overrides, f"vae={moved}"]))



@pytest.mark.parametrize("dataset", ["ffs", "sky", "taichi", "ucf101"])
def test_dataset_autoencoder_configs_keep_the_fvdm_geometry(dataset):
    stage1 = load_autoencoder_config(REPO / "configs" / dataset / f"{dataset}_autoencoder.yaml")
    stage2 = load_config(REPO / "configs" / dataset / f"{dataset}_train.yaml")
    assert (stage1.dataset, stage1.data_path, stage1.image_size) == (stage2.dataset, stage2.data_path,
                                                                      stage2.image_size)
    # /8 and 4 channels, as sd-vae-ft-ema: the FVDM config's model sees the same 4 x 32 x 32 latents.
    assert (2 ** (len(stage1.block_out_channels) - 1), stage1.latent_channels) == (8, 4)


def test_object_check_scores_real_clips_through_the_autoencoder(trained):
    from tools.object_metrics import autoencoder_round_trip, real_videos
    from tools.runtime import video_to_uint8

    real = real_videos(2, 2, 32, 2)  # uint8 (2, 2, 32, 32, 3)
    round_trip = autoencoder_round_trip(real, trained / "vae")
    assert round_trip.shape == real.shape and round_trip.dtype == np.uint8
    vae = load_vae(trained / "vae")
    video = torch.from_numpy(real).permute(0, 1, 4, 2, 3).float() / 127.5 - 1.0
    expected = video_to_uint8(decode_latents(vae, encode_video(vae, video))[1])
    assert np.array_equal(round_trip[1], expected)
    assert not np.array_equal(round_trip, real)  # 40 steps of training do not make it exact


def test_object_metrics_scores_the_round_trip_at_the_score_size(tmp_path, trained):
    """--score_size with --vae: real clips go through the autoencoder at the generated size, then are averaged down."""
    from PIL import Image

    from tools.metrics.objects import object_statistics
    from tools.object_metrics import autoencoder_round_trip, box_downsample, real_videos
    from tools.object_metrics import main as object_metrics_main

    fake = tmp_path / "generated"
    for index, frames in enumerate(real_videos(2, 2, 32, 2)):
        (fake / f"{index:05d}").mkdir(parents=True)
        for number, frame in enumerate(frames):
            Image.fromarray(frame).save(fake / f"{index:05d}" / f"{number:04d}.png")
    object_metrics_main(["--fake", str(fake), "--vae", str(trained / "vae"), "--score_size", "16",
                         "--out", str(tmp_path / "objects.json")])
    results = json.loads((tmp_path / "objects.json").read_text())
    expected = object_statistics(box_downsample(autoencoder_round_trip(real_videos(2, 2, 32, 2), trained / "vae"), 16),
                                 frame_interval=2)
    assert results["score_size"] == 16
    assert results["real_through_autoencoder"]["recognised_shape"] == expected["recognised_shape"]
    assert results["real_through_autoencoder"]["one_part"] == expected["one_part"]
