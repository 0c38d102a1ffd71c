"""train_video.py and training.train: config errors, data sharding, exact kill-and-resume, 2-process DDP,
pretrained Latte weights, the latent cache. Runs tiny models on the built-in bouncing data; the subprocess runs
dominate the time."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from datasets.sampler import EpochShardSampler
import models.checkpoint as checkpoint_io
from models import create_model
from models.checkpoint import atomic_write, export_ema_safetensors
from models.vae import model_geometry
from tools.runtime import autocast_dtype
from training import load_config, train
from training.logs import MetricsLog
from training.state import learning_rate_at

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "dataset=bouncing", "dataset_length=24", "model=Latte-T/8", "image_size=16", "num_frames=4",
    "frame_interval=2", "local_batch_size=2", "num_workers=0", "log_every=1", "mixed_precision=no",
]
METRIC_KEYS = ("step", "epoch", "loss", "mse", "vb", "lr", "grad_norm")


def run_trainer(args, tmp_path, nproc=1, wait=True):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    command = (launcher if nproc > 1 else [sys.executable]) + [str(REPO / "train_video.py"), *TINY,
                                                                f"results_dir={tmp_path}", *args]
    if not wait:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- config


def test_unknown_or_mistyped_keys_are_named(tmp_path):
    with pytest.raises(ValueError, match="learning_rat"):
        load_config(None, ["learning_rat=1e-4"])
    with pytest.raises(ValueError, match="local_batch_size"):
        load_config(None, ["local_batch_size=two"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(None, ["ptss_p"])
    config_file = tmp_path / "bad.yaml"
    config_file.write_text("model: Latte-T/4\nptss_q: 0.2\n")
    with pytest.raises(ValueError, match=r"bad\.yaml.*ptss_q"):
        load_config(config_file)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("overrides, key", [
    (["mixed_precision=fp8"], "mixed_precision"),
    (["lr_schedule=linear"], "lr_schedule"),
    (["min_snr_gamma=0"], "min_snr_gamma"),
    (["timestep_distribution=lognormal"], "timestep_distribution"),
    (["timestep_distribution=logit_normal", "timestep_logit_std=0"], "timestep_logit_std"),
    (["text_adaln=true"], "text_adaln"),  # without a text_encoder
    (["prediction_type=sample"], "prediction_type"),
])
def test_bad_values_name_their_key(overrides, key):
    with pytest.raises(ValueError, match=key):
        load_config(None, overrides)


def test_defaults_are_the_paper_settings():
    cfg = load_config()
    assert (cfg.learning_rate, cfg.weight_decay, cfg.ema_decay, cfg.ptss_p) == (1e-4, 0.0, 0.9999, 0.2)
    assert (cfg.clip_max_norm, cfg.global_seed, cfg.diffusion_steps, cfg.noise_schedule) == (0.1, 3407, 1000, "linear")
    assert cfg.learn_sigma and cfg.num_frames == 16 and cfg.frame_interval == 3
    assert (cfg.lr_schedule, cfg.min_snr_gamma, cfg.timestep_distribution) == ("constant", None, "uniform")


def test_learning_rate_warmup_then_cosine():
    constant = load_config(None, ["learning_rate=1e-3", "lr_warmup_steps=10", "max_train_steps=110"])
    cosine = load_config(None, ["learning_rate=1e-3", "lr_warmup_steps=10", "max_train_steps=110",
                                "lr_schedule=cosine"])
    for cfg in (constant, cosine):
        assert [learning_rate_at(cfg, s) for s in (0, 4, 9)] == pytest.approx([1e-4, 5e-4, 1e-3])
    assert learning_rate_at(constant, 109) == 1e-3
    # After warmup: 1e-3 * (1 + cos(pi * k / 100)) / 2 at step 10 + k.
    assert [learning_rate_at(cosine, 10 + k) for k in (0, 25, 50, 99)] == pytest.approx(
        [1e-3, 1e-3 * (1 + 2**-0.5) / 2, 5e-4, 1e-3 * (1 + math.cos(math.pi * 0.99)) / 2])


@pytest.mark.parametrize("dataset, model, num_classes, batch, start_clip", [
    ("ffs", "Latte-B/2", 0, 3, 20_000), ("sky", "Latte-XL/2", 0, 2, 20_000),
    ("taichi", "Latte-XL/2", 0, 2, 500_000), ("ucf101", "Latte-XL/2", 101, 2, 100_000),
])
def test_dataset_configs_follow_the_reference(dataset, model, num_classes, batch, start_clip, sd_vae_config_dir):
    cfg = load_config(REPO / "configs" / dataset / f"{dataset}_train.yaml")
    assert (cfg.dataset, cfg.model, cfg.num_classes, cfg.local_batch_size) == (dataset, model, num_classes, batch)
    assert (cfg.num_frames, cfg.image_size, cfg.frame_interval, cfg.start_clip_iter) == (16, 256, 3, start_clip)
    assert (cfg.learning_rate, cfg.ema_decay, cfg.ptss_p, cfg.vae is not None) == (1e-4, 0.9999, 0.2, True)
    assert model_geometry(cfg.image_size, sd_vae_config_dir) == (4, 32)


def test_demo_config_trains_on_the_demo_autoencoders_latents_with_bf16_where_native():
    from training.autoencoder_config import autoencoder_run_dir, load_autoencoder_config

    cfg = load_config(REPO / "configs" / "demo" / "demo_train.yaml")
    stage1 = load_autoencoder_config(REPO / "configs" / "demo" / "demo_autoencoder.yaml")
    assert cfg.dataset == stage1.dataset == "bouncing" and cfg.mixed_precision == stage1.mixed_precision == "auto"
    assert (cfg.image_size, cfg.num_frames, cfg.frame_interval) == (64, 8, 2)
    assert (stage1.image_size, stage1.frame_interval, stage1.dataset_length) == (64, 2, cfg.dataset_length)
    assert cfg.vae == str(autoencoder_run_dir(stage1) / "vae") and cfg.latent_cache_dir is not None
    # The FVDM sees 4 x 16 x 16 latents: /4 (three levels), 4 channels, so Latte-T/2 has 64 tokens per frame.
    assert (len(stage1.block_out_channels), stage1.latent_channels, cfg.model) == (3, 4, "Latte-T/2")


@pytest.mark.parametrize("capability, amx, avx512_bf16, expected", [
    ("AVX512", True, False, torch.bfloat16), ("AVX512", False, True, torch.bfloat16), ("AVX512", False, False, None),
    ("AVX2", True, True, None),  # kernels capped with ATEN_CPU_CAPABILITY=avx2: the fp32 path of an AVX2 machine
])
def test_auto_mixed_precision_uses_bf16_only_where_the_cpu_has_it(monkeypatch, capability, amx, avx512_bf16,
                                                                 expected):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    assert autocast_dtype("auto", "cpu") is expected
    assert autocast_dtype("bf16", "cpu") is torch.bfloat16 and autocast_dtype("no", "cpu") is None


# ---------------------------------------------------------------- data order


def test_sampler_shards_and_resumes_mid_epoch():
    size, batch, seed, epoch = 23, 2, 5, 3
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    expected = order[:20]  # 5 global batches of 2 x 2
    shards = []
    for rank in range(2):
        sampler = EpochShardSampler(size, rank, 2, seed, batch)
        sampler.set_position(epoch, 0)
        shards.append(list(sampler))
        assert len(sampler) == 10
    assert sorted(shards[0] + shards[1]) == sorted(expected)  # disjoint, ragged tail of 3 dropped
    assert shards[0] == expected[0::2] and shards[1] == expected[1::2]
    # Resume after 2 global batches of 4 samples on 2 ranks, continuing on 1 rank: the rest of the same epoch.
    sampler = EpochShardSampler(size, 0, 1, seed, batch)
    sampler.set_position(epoch, 8)
    assert list(sampler) == order[8:22]
    with pytest.raises(ValueError, match="fewer than one global batch"):
        EpochShardSampler(3, 0, 2, seed, 2)


# ---------------------------------------------------------------- resume


def test_kill_and_resume_equals_uninterrupted_run(tmp_path):
    # The demo's logit-normal timesteps: their draws come from the saved RNG state too.
    common = ["max_train_steps=10", "ckpt_every=3", "keep_last_checkpoints=2", "ema_decay=0.9",
              "timestep_distribution=logit_normal", "timestep_logit_mean=-0.3"]
    # Only the uninterrupted run writes (ancestral-sampling) previews: they must not touch the training RNG.
    preview = ["preview_every=4", "preview_sampling=3", "preview_num_samples=1"]
    run_trainer([*common, *preview, "experiment_name=straight"], tmp_path)
    assert (tmp_path / "straight" / "preview" / "0000008_0.gif").is_file()
    straight = read_metrics(tmp_path / "straight")
    assert [r["step"] for r in straight] == list(range(1, 11))
    # The same run, killed hard after its 5th logged step (so after the checkpoint at step 3, maybe at 6).
    killed_dir = tmp_path / "killed"
    process = run_trainer([*common[1:], "max_train_steps=1000", "experiment_name=killed"], tmp_path, wait=False)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        metrics = killed_dir / "metrics.jsonl"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 5:
            break
        time.sleep(0.02)
    assert process.poll() is None, process.stderr.read().decode()[-3000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
    kept = sorted(p.name for p in (killed_dir / "checkpoints").glob("*.pt"))
    assert kept and len(kept) <= 2, kept
    # A truncated newest checkpoint (as a kill mid-copy would leave) must be skipped, not crash the resume.
    newest = killed_dir / "checkpoints" / kept[-1]
    (killed_dir / "checkpoints" / "0000999.pt").write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])

    run_trainer([*common, "experiment_name=killed", "resume_from_checkpoint=auto"], tmp_path)
    resumed = read_metrics(killed_dir)
    assert "skipping unreadable checkpoint" in (killed_dir / "log.txt").read_text()
    assert [r["step"] for r in resumed] == list(range(1, 11))
    for a, b in zip(straight, resumed):
        assert {k: a[k] for k in METRIC_KEYS} == {k: b[k] for k in METRIC_KEYS}

    # Checkpoints are plain weights_only pickles; the EMA export carries the config for the sampler.
    checkpoint = torch.load(killed_dir / "checkpoints" / "0000010.pt", map_location="cpu", weights_only=True)
    assert checkpoint["step"] == 10 and checkpoint["config"]["model"] == "Latte-T/8"
    assert isinstance(checkpoint["rank_states"][0]["rng"]["numpy"]["keys"], torch.Tensor)
    straight_ckpt = torch.load(tmp_path / "straight" / "checkpoints" / "0000010.pt", weights_only=True)
    for key, value in straight_ckpt["ema"].items():
        assert torch.equal(value, checkpoint["ema"][key]), key
    ema_path = killed_dir / "checkpoints" / "0000010-ema.safetensors"
    exported = load_file(ema_path)
    assert all(torch.equal(exported[k], checkpoint["ema"][k]) for k in checkpoint["ema"])
    from safetensors import safe_open

    with safe_open(str(ema_path), framework="pt") as handle:
        assert json.loads(handle.metadata()["config"])["num_frames"] == 4


def test_fresh_start_refuses_a_run_dir_with_checkpoints(tmp_path):
    ckpt_dir = tmp_path / "taken" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    (ckpt_dir / "0000005.pt").write_bytes(b"")
    cfg = load_config(None, [*TINY, f"results_dir={tmp_path}", "experiment_name=taken", "max_train_steps=1"])
    with pytest.raises(FileExistsError, match="resume_from_checkpoint=auto"):
        train(cfg)


# ---------------------------------------------------------------- DDP


def test_two_process_gloo_ddp_resumes_exactly(tmp_path):
    common = ["max_train_steps=4", "ckpt_every=2", "keep_last_checkpoints=5"]
    run_trainer([*common, "experiment_name=ddp"], tmp_path, nproc=2)
    straight = read_metrics(tmp_path / "ddp")
    assert [r["step"] for r in straight] == [1, 2, 3, 4]
    checkpoint = torch.load(tmp_path / "ddp" / "checkpoints" / "0000002.pt", weights_only=True)
    assert checkpoint["world_size"] == 2 and len(checkpoint["rank_states"]) == 2
    # Ranks draw different noise: their RNG states must differ (seed + rank).
    assert not torch.equal(checkpoint["rank_states"][0]["rng"]["torch"], checkpoint["rank_states"][1]["rng"]["torch"])
    # Resuming both ranks from step 2 in a fresh run dir reproduces steps 3 and 4 exactly.
    resume = tmp_path / "ddp" / "checkpoints" / "0000002.pt"
    run_trainer([*common, "experiment_name=ddp_resumed", f"resume_from_checkpoint={resume}"], tmp_path, nproc=2)
    resumed = read_metrics(tmp_path / "ddp_resumed")
    assert [r["step"] for r in resumed] == [3, 4]
    for a, b in zip(straight[2:], resumed):
        assert {k: a[k] for k in METRIC_KEYS} == {k: b[k] for k in METRIC_KEYS}


# ---------------------------------------------------------------- pretrained


def test_pretrained_from_released_latte_layout(tmp_path):
    torch.manual_seed(1)
    source = create_model("Latte-T/8", input_size=16, num_frames=4, in_channels=3)
    with torch.no_grad():
        for param in source.parameters():
            if param.requires_grad:  # the fixed sin-cos tables stay; adaLN layers stop being zero
                param.normal_(std=0.02)
    latte_state = {}
    for key, value in source.state_dict().items():  # ours -> Latte's interleaved `blocks.k`
        parts = key.split(".")
        if parts[0] in ("spatial_blocks", "temporal_blocks"):
            k = 2 * int(parts[1]) + (parts[0] == "temporal_blocks")
            key = ".".join(["blocks", str(k), *parts[2:]])
        latte_state["module." + key] = value
    assert any(k.startswith("module.blocks.5.") for k in latte_state)  # T: 6 blocks, the last one temporal
    path = tmp_path / "latte_release.pt"
    torch.save({"ema": latte_state}, path)

    # ema_decay=1 keeps the EMA at the initial weights, so the exported EMA must be the pretrained weights.
    cfg = load_config(None, [*TINY, f"results_dir={tmp_path}", "experiment_name=finetune", "max_train_steps=1",
                             f"pretrained={path}", "ema_decay=1.0"])
    train(cfg)
    exported = load_file(tmp_path / "finetune" / "checkpoints" / "0000001-ema.safetensors")
    for key, value in source.state_dict().items():
        assert torch.equal(exported[key], value), key


# ---------------------------------------------------------------- latent cache


def test_latent_cache_matches_on_the_fly_encoding_and_trains(tmp_path, tiny_vae_dir):
    from datasets import build_dataset
    from datasets.latent_cache import LatentCacheDataset
    from models.vae import encode_video, load_vae
    from tools.encode_latents import encode_dataset

    vae_dir = tiny_vae_dir(tmp_path / "vae", width=16, sample_size=16)
    overrides = [*TINY, "dataset_length=6", f"vae={vae_dir}", f"results_dir={tmp_path}", "image_size=32"]
    cfg = load_config(None, overrides)
    cache_dir = tmp_path / "cache"
    encode_dataset(cfg, cache_dir, clips_per_video=2, flip=True, batch_size=4, num_workers=0, dtype="float32")

    vae = load_vae(vae_dir)
    pixels = build_dataset("bouncing", num_frames=4, frame_interval=2, image_size=32, seed=cfg.global_seed,
                           length=6)
    cache = LatentCacheDataset(cache_dir, random_flip=True, seed=0)
    cache.check_matches(cfg)
    latents = np.load(cache_dir / "latents.npy")
    assert latents.shape == (6, 2, 2, 4, 4, 4, 4)
    for index in (0, 5):
        video = pixels[index]["video"][None]
        torch.testing.assert_close(torch.from_numpy(latents[index, 1, 0]), encode_video(vae, video)[0])
        torch.testing.assert_close(torch.from_numpy(latents[index, 1, 1]), encode_video(vae, video.flip(-1))[0])
    orientations = set()
    for epoch in range(6):
        cache.set_epoch(epoch)
        item = cache[3]["latents"]
        match = [o for o in range(2) if torch.equal(item, torch.from_numpy(latents[3, epoch % 2, o]))]
        assert len(match) == 1
        orientations.add(match[0])
    assert orientations == {0, 1}

    # An interrupted encode resumes: forget some clips, rerun, same content.
    done = np.load(cache_dir / "done.npy")
    done[2:, 1] = False
    np.save(cache_dir / "done.npy", done)
    with pytest.raises(ValueError, match="incomplete"):
        LatentCacheDataset(cache_dir)
    encode_dataset(cfg, cache_dir, clips_per_video=2, flip=True, batch_size=4, num_workers=0, dtype="float32")
    np.testing.assert_array_equal(np.load(cache_dir / "latents.npy"), latents)
    with pytest.raises(ValueError, match="differing keys"):
        encode_dataset(cfg, cache_dir, clips_per_video=3, flip=True, num_workers=0, dtype="float32")
    with pytest.raises(ValueError, match="num_frames"):
        cache.check_matches(load_config(None, [*overrides, "num_frames=8"]))

    # The trainer reads the cache, and its preview decodes through the VAE.
    train_cfg = load_config(None, [*overrides, f"latent_cache_dir={cache_dir}", "experiment_name=cached",
                                   "model=Latte-T/2", "max_train_steps=2", "preview_every=2",
                                   "preview_sampling=ddim2", "random_flip=true"])
    train(train_cfg)
    run_dir = tmp_path / "cached"
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2]
    assert (run_dir / "preview" / "0000002_0.gif").is_file()
    from PIL import Image

    assert Image.open(run_dir / "preview" / "0000002.png").size == (4 * 32, 2 * 32)


# ---------------------------------------------------------------- corrupt checkpoints, finishing, file modes


def truncate(path):
    """Cut a file to half its size, as a full disk leaves it."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.fixture(scope="module")
def straight_ten(tmp_path_factory):
    """An uninterrupted 10-step run (checkpoints at 4, 8, 10): the losses every resumed run must reproduce."""
    root = tmp_path_factory.mktemp("straight_ten")
    run_trainer(["max_train_steps=10", "ckpt_every=4", "keep_last_checkpoints=3", "ema_decay=0.9",
                 "experiment_name=straight"], root)
    return root / "straight"


def test_auto_resume_sets_a_corrupt_newest_checkpoint_aside_and_prunes_good_files(tmp_path, straight_ten):
    run_dir, ckpt_dir = tmp_path / "corrupt", tmp_path / "corrupt" / "checkpoints"
    common = ["ema_decay=0.9", "keep_last_checkpoints=3", "experiment_name=corrupt"]
    run_trainer([*common, "max_train_steps=6", "ckpt_every=2"], tmp_path)
    assert sorted(p.name for p in ckpt_dir.iterdir()) == [
        "0000002.pt", "0000004.pt", "0000006-ema.safetensors", "0000006.pt"]
    truncate(ckpt_dir / "0000006.pt")
    truncate(ckpt_dir / "0000006-ema.safetensors")  # the export of the same step, cut short too

    # Checkpoints every 5 steps now: step 5 is saved while the corrupt step 6 would still outrank it.
    run_trainer([*common, "max_train_steps=10", "ckpt_every=5", "resume_from_checkpoint=auto"], tmp_path)
    log = (run_dir / "log.txt").read_text()
    assert "skipping unreadable checkpoint" in log and "0000004.pt (step 4)" in log
    resumed = read_metrics(run_dir)
    assert [r["step"] for r in resumed] == list(range(1, 11))
    for a, b in zip(read_metrics(straight_ten), resumed):
        assert {k: a[k] for k in METRIC_KEYS} == {k: b[k] for k in METRIC_KEYS}
    # The corrupt files were moved aside, never counted as kept: the 3 newest good checkpoints remain.
    assert sorted(p.name for p in ckpt_dir.iterdir()) == [
        "0000004.pt", "0000005.pt", "0000006-ema.safetensors.corrupt", "0000006.pt.corrupt",
        "0000010-ema.safetensors", "0000010.pt"]


def test_metrics_rewrite_on_resume_is_atomic(tmp_path, monkeypatch):
    lines = [json.dumps({"step": s, "loss": 0.5}) for s in (1, 2, 3)] + ['{"step": 4, "lo']  # cut by a kill
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n".join(lines))
    MetricsLog(tmp_path, 2).close()
    assert metrics.read_text() == "".join(line + "\n" for line in lines[:2])

    def fail(*args):
        raise OSError("disk full")

    metrics.write_text("\n".join(lines))
    monkeypatch.setattr(checkpoint_io.os, "replace", fail)  # atomic_write's rename
    with pytest.raises(OSError, match="disk full"):
        MetricsLog(tmp_path, 2)
    assert metrics.read_text() == "\n".join(lines)  # a failed rewrite leaves the old file whole


def test_resumed_finished_run_writes_a_missing_or_truncated_export_and_prunes(tmp_path):
    run_dir, ckpt_dir = tmp_path / "finished", tmp_path / "finished" / "checkpoints"
    common = ["max_train_steps=4", "ckpt_every=2", "experiment_name=finished", "resume_from_checkpoint=auto"]
    run_trainer([*common, "keep_last_checkpoints=3"], tmp_path)
    ema_path = ckpt_dir / "0000004-ema.safetensors"
    expected = torch.load(ckpt_dir / "0000004.pt", map_location="cpu", weights_only=True)["ema"]
    for damage in ("killed mid-write", "truncated"):
        if damage == "killed mid-write":  # only the half-written .tmp is left
            ema_path.unlink()
            (ckpt_dir / "0000004-ema.safetensors.tmp").write_bytes(b"partial")
        else:
            truncate(ema_path)
        run_trainer([*common, "keep_last_checkpoints=1"], tmp_path)
        exported = load_file(ema_path)
        assert exported.keys() == expected.keys(), damage
        assert all(torch.equal(exported[k], expected[k]) for k in expected), damage
        assert [p.name for p in sorted(ckpt_dir.glob("*.pt"))] == ["0000004.pt"], damage  # pruned to 1
        last_line = (run_dir / "log.txt").read_text().splitlines()[-1]
        assert Path(last_line.split("EMA weights in ")[1]) == ema_path, last_line
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2, 3, 4]


def test_resume_and_sample_from_a_folder_whose_newest_files_are_truncated(tmp_path, straight_ten, capsys):
    import shutil

    from sample.config import load_config as load_sample_config
    from sample.sampling import load_model_for_sampling, read_sampling_checkpoint

    folder = tmp_path / "source"
    shutil.copytree(straight_ten / "checkpoints", folder)
    assert sorted(p.name for p in folder.iterdir()) == [
        "0000004.pt", "0000008.pt", "0000010-ema.safetensors", "0000010.pt"]
    truncate(folder / "0000010.pt")
    truncate(folder / "0000010-ema.safetensors")

    assert read_sampling_checkpoint(folder)[0] == folder / "0000008.pt"
    skipped = capsys.readouterr().err
    assert "0000010-ema.safetensors" in skipped and "0000010.pt" in skipped
    model, _, settings = load_model_for_sampling(load_sample_config(None, [f"ckpt={folder}"]))
    ema = torch.load(folder / "0000008.pt", map_location="cpu", weights_only=True)["ema"]
    assert torch.equal(model.final_layer.linear.weight, ema["final_layer.linear.weight"])

    run_trainer(["max_train_steps=10", "ema_decay=0.9", "experiment_name=from_folder",
                 f"resume_from_checkpoint={folder}"], tmp_path)
    assert "0000008.pt (step 8)" in (tmp_path / "from_folder" / "log.txt").read_text()
    resumed = read_metrics(tmp_path / "from_folder")
    assert [r["step"] for r in resumed] == [9, 10]
    for a, b in zip(read_metrics(straight_ten)[8:], resumed):
        assert {k: a[k] for k in METRIC_KEYS} == {k: b[k] for k in METRIC_KEYS}
    assert (folder / "0000010.pt").is_file()  # another run's folder: its bad files are skipped, not moved
    (tmp_path / "nothing").mkdir()
    with pytest.raises(FileNotFoundError, match="resume_from_checkpoint.*nothing.*no readable"):
        train(load_config(None, [*TINY, f"results_dir={tmp_path}", "experiment_name=empty",
                                 f"resume_from_checkpoint={tmp_path / 'nothing'}"]))


def test_checkpoint_files_honour_the_umask(tmp_path):
    model = create_model("Latte-T/8", input_size=16, num_frames=4, in_channels=3)
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "0000001.pt", lambda tmp: torch.save(model.state_dict(), tmp))
        export_ema_safetensors(model, {}, 1, tmp_path / "0000001-ema.safetensors")
    finally:
        os.umask(old)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()}
    assert modes == {"0000001.pt": "0o640", "0000001-ema.safetensors": "0o640"}


def test_resuming_from_an_earlier_checkpoint_sets_later_ones_aside(tmp_path, straight_ten):
    ckpt_dir = tmp_path / "again" / "checkpoints"
    common = ["ema_decay=0.9", "keep_last_checkpoints=2", "ckpt_every=4", "experiment_name=again"]
    run_trainer([*common, "max_train_steps=10"], tmp_path)
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["0000008.pt", "0000010-ema.safetensors", "0000010.pt"]
    # Back to step 8, then on to 12: the abandoned step 10 must not outrank (and so prune) the new checkpoints.
    run_trainer([*common, "max_train_steps=12", f"resume_from_checkpoint={ckpt_dir / '0000008.pt'}"], tmp_path)
    assert sorted(p.name for p in ckpt_dir.iterdir()) == [
        "0000008.pt", "0000010-ema.safetensors.superseded", "0000010.pt.superseded", "0000012-ema.safetensors",
        "0000012.pt"]
    resumed = read_metrics(tmp_path / "again")
    assert [r["step"] for r in resumed] == list(range(1, 13))
    for a, b in zip(read_metrics(straight_ten)[:10], resumed):
        assert {k: a[k] for k in METRIC_KEYS} == {k: b[k] for k in METRIC_KEYS}
