"""sample/generate.py and sample/sample_ddp.py end to end on tiny models: every preset from the CLI, held frames
pixel-exact through files, checkpoint/config resolution, guidance, per-video seeds, resumable evaluation."""
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from diffusion import vtv
from models import create_model
from sample import config as sample_config
from sample import generate, sample_ddp, sampling

REPO = Path(__file__).resolve().parents[1]
MODEL_CONFIG = {"model": "Latte-T/4", "image_size": 8, "num_frames": 8, "num_classes": 0, "learn_sigma": True,
                "vae": None, "noise_schedule": "linear", "diffusion_steps": 1000}
RUN = ["num_sampling_steps=3", "num_samples=2", "batch_size=2", "progress=false", "length=12", "device=cpu"]


def random_latte(seed, **overrides):
    """A Latte-T whose zero-initialised (adaLN-Zero) weights are randomised, so its samples depend on it."""
    config = {**MODEL_CONFIG, **overrides}
    torch.manual_seed(seed)
    model = create_model(config["model"], input_size=config["image_size"] // (8 if config["vae"] else 1),
                         num_frames=config["num_frames"], in_channels=4 if config["vae"] else 3,
                         num_classes=config["num_classes"], learn_sigma=config["learn_sigma"])
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad and not param.any():
                param.normal_(0, 0.05)
    return model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A train_video.py-style checkpoint whose EMA and raw weights differ."""
    path = tmp_path_factory.mktemp("run") / "0000010.pt"
    torch.save({"model": random_latte(1).state_dict(), "ema": random_latte(2).state_dict(), "optimizer": {},
                "step": 10, "config": MODEL_CONFIG}, path)
    return path


def run_cli(tmp_path, *overrides, ckpt=None):
    argv = RUN + [f"save_dir={tmp_path}"] + list(overrides)
    if ckpt is None:
        argv += [f"{k}={'null' if v is None else v}" for k, v in MODEL_CONFIG.items() if k != "vae"]
    else:
        argv.append(f"ckpt={ckpt}")
    generate.main(argv)


def read_png(path):
    return np.asarray(Image.open(path).convert("RGB"))


def mp4_frames(path):
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


# ----------------------------------------------------------------------------- every preset from the CLI

PRESET_ARGS = {
    "standard": [], "i2v": ["cond_frame=-1"], "interpolation": ["keyframes=[0,3,7]"],
    "transition": ["frames_a=2", "frames_b=3"], "next_frame": ["context_frames=4", "predict_frames=2"],
    "progressive": ["progressive_c=0.3"], "reverse": [],
    "custom": ["expression=min(0.5*i*t,t)", "frame_expressions={0: clean}"],
    "long": ["context_frames=3"], "diagonal": ["num_sampling_steps=17"],  # 2 partitions by default
}
LENGTHS = {"next_frame": 6, "long": 12, "diagonal": 12}


@pytest.mark.parametrize("preset", vtv.PRESETS)
def test_every_preset_writes_every_output(tmp_path, preset):
    run_cli(tmp_path, f"preset={preset}", *PRESET_ARGS[preset])
    length = LENGTHS.get(preset, 8)
    for video in ("0000", "0001"):
        folder = tmp_path / preset / video
        assert sorted(p.name for p in folder.iterdir()) == [
            "contact_sheet.png", "frames", "schedule.png", "video.gif", "video.mp4"]
        assert sorted(p.name for p in (folder / "frames").iterdir()) == [f"{k:04d}.png" for k in range(length)]
        assert len(mp4_frames(folder / "video.mp4")) == length
        gif = Image.open(folder / "video.gif")
        assert gif.n_frames == length and gif.size == (128, 128)  # 8 px frames enlarged 16x for viewing
        assert Image.open(folder / "schedule.png").size[0] > 100


def test_preset_all_writes_what_each_preset_writes_alone(tmp_path, checkpoint):
    options = ["context_frames=3", "frames_a=2", "frames_b=2", "num_sampling_steps=8"]  # 8: diagonal's minimum
    run_cli(tmp_path / "all", "preset=all", *options, ckpt=checkpoint)
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == sorted(vtv.PRESETS)
    for preset in ("standard", "long", "i2v"):
        run_cli(tmp_path / "alone", f"preset={preset}", *options, ckpt=checkpoint)
        for video in ("0000", "0001"):
            frames = sorted((tmp_path / "all" / preset / video / "frames").iterdir())
            assert len(frames) == LENGTHS.get(preset, 8)
            for frame in frames:
                assert np.array_equal(read_png(frame), read_png(tmp_path / "alone" / preset / video / "frames" /
                                                               frame.name)), (preset, video, frame.name)
    with pytest.raises(ValueError, match="preset"):
        sample_config.load_eval_config(None, ["preset=all"])


def test_script_runs_as_a_command(tmp_path):
    config = tmp_path / "tiny.yaml"
    OmegaConf.save(OmegaConf.create({k: v for k, v in MODEL_CONFIG.items() if k != "vae"}), config)
    result = subprocess.run([sys.executable, "sample/generate.py", "--config", str(config), "preset=i2v",
                             f"save_dir={tmp_path}", *RUN], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "i2v" / "0001" / "frames" / "0007.png").is_file()


# ----------------------------------------------------------------------------- inputs held exactly

def test_i2v_and_interpolation_inputs_come_back_pixel_exact(tmp_path, checkpoint):
    rng = np.random.default_rng(0)
    images = [tmp_path / f"in{k}.png" for k in range(3)]
    for path in images:
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)
    run_cli(tmp_path, "preset=i2v", f"image={images[0]}", "cond_frame=3", ckpt=checkpoint)
    run_cli(tmp_path, "preset=interpolation", f"first_image={images[1]}", f"last_image={images[2]}", ckpt=checkpoint)
    run_cli(tmp_path / "keyframes", "preset=interpolation", "keyframes=[5,-1,2]",
            f"keyframe_images=[{images[0]},{images[1]},{images[2]}]", ckpt=checkpoint)
    for index, image in zip((5, 7, 2), images):
        frame = tmp_path / "keyframes" / "interpolation" / "0001" / "frames" / f"{index:04d}.png"
        assert np.array_equal(read_png(frame), read_png(image))
    for video in ("0000", "0001"):
        frames = tmp_path / "i2v" / video / "frames"
        assert np.array_equal(read_png(frames / "0003.png"), read_png(images[0]))
        assert not np.array_equal(read_png(frames / "0004.png"), read_png(images[0]))
        frames = tmp_path / "interpolation" / video / "frames"
        assert np.array_equal(read_png(frames / "0000.png"), read_png(images[1]))
        assert np.array_equal(read_png(frames / "0007.png"), read_png(images[2]))


def test_long_continues_a_given_video_and_transition_joins_two(tmp_path, checkpoint):
    rng = np.random.default_rng(1)
    clips = {}
    for name in ("a", "b"):
        clips[name] = rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
        folder = tmp_path / name
        folder.mkdir()
        for k, frame in enumerate(clips[name]):
            Image.fromarray(frame).save(folder / f"{k:03d}.png")
    run_cli(tmp_path, "preset=long", f"video={tmp_path / 'a'}", "length=20", "context_frames=3", ckpt=checkpoint)
    run_cli(tmp_path, "preset=transition", f"video_a={tmp_path / 'a'}", f"video_b={tmp_path / 'b'}",
            "video_start=1", "frames_a=2", "frames_b=2", ckpt=checkpoint)
    long_frames = tmp_path / "long" / "0000" / "frames"
    assert len(list(long_frames.iterdir())) == 20
    for k in range(8):  # the given clip is the first window, kept as it is
        assert np.array_equal(read_png(long_frames / f"{k:04d}.png"), clips["a"][k])
    transition = tmp_path / "transition" / "0001" / "frames"
    # window: frames 7-8 of A (its 8-frame clip starts at frame 1) | 4 generated | frames 1-2 of B
    assert np.array_equal(read_png(transition / "0000.png"), clips["a"][7])
    assert np.array_equal(read_png(transition / "0001.png"), clips["a"][8])
    assert np.array_equal(read_png(transition / "0006.png"), clips["b"][1])
    assert np.array_equal(read_png(transition / "0007.png"), clips["b"][2])


def test_latent_model_holds_the_encoded_frame_exactly(tmp_path, tiny_vae_dir):
    vae_dir = tiny_vae_dir(tmp_path / "vae")
    config = {**MODEL_CONFIG, "image_size": 32, "vae": str(vae_dir), "model": "Latte-T/2"}
    ckpt = tmp_path / "0000005.pt"
    torch.save({"ema": random_latte(3, **config).state_dict(), "config": config}, ckpt)
    image = tmp_path / "frame.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(image)
    cfg = sample_config.load_config(None, [f"ckpt={ckpt}", "preset=i2v", f"image={image}", "cond_frame=2",
                                    "num_sampling_steps=3", "progress=false"])
    model, vae, settings = sampling.load_model_for_sampling(cfg)
    assert vae is not None and model.in_channels == 4 and model.input_size == 4
    inputs = sampling.load_preset_inputs(cfg, settings, vae)
    diffusion = sampling.create_sampling_diffusion(cfg, settings)
    _, chunks = sampling.run_preset(model, diffusion, cfg, batch_size=2, clips=inputs)
    (latents,) = list(chunks)
    assert latents.shape == (2, 8, 4, 4, 4)
    assert torch.equal(latents[:, 2], inputs[0][:, 2].expand(2, -1, -1, -1))
    sampling.write_videos(*sampling.run_preset(model, diffusion, cfg, batch_size=1, clips=inputs),
                        [tmp_path / "out"], vae, "cpu", length=8)
    assert read_png(tmp_path / "out" / "frames" / "0002.png").shape == (32, 32, 3)


def test_pixel_models_clip_x0_estimates_by_default(checkpoint):
    """A pixel model's DDIM ends on a clamped x0 estimate, so its videos lie in [-1, 1]; unclamped they need not."""
    ranges = {}
    for clip in ("null", "false"):
        cfg = sample_config.load_config(None, [f"ckpt={checkpoint}", "num_sampling_steps=3", f"clip_denoised={clip}"])
        model, _, settings = sampling.load_model_for_sampling(cfg)
        torch.manual_seed(0)
        _, chunks = sampling.run_preset(model, sampling.create_sampling_diffusion(cfg, settings), cfg, batch_size=2)
        ranges[clip] = next(chunks).abs().max().item()
    assert ranges["null"] <= 1.0 < ranges["false"]


# ----------------------------------------------------------------------------- checkpoints and config

def test_checkpoint_config_and_weights_selection(tmp_path, checkpoint):
    cfg = sample_config.load_config(None, [f"ckpt={checkpoint}"])
    model, vae, settings = sampling.load_model_for_sampling(cfg)
    assert vae is None and settings["model"] == "Latte-T/4" and settings["num_frames"] == 8
    ema = torch.load(checkpoint, weights_only=True)["ema"]
    raw = torch.load(checkpoint, weights_only=True)["model"]
    assert torch.equal(model.final_layer.linear.weight, ema["final_layer.linear.weight"])
    cfg = sample_config.load_config(None, [f"ckpt={checkpoint}", "weights=model"])
    model, _, _ = sampling.load_model_for_sampling(cfg)
    assert torch.equal(model.final_layer.linear.weight, raw["final_layer.linear.weight"])

    with pytest.raises(ValueError, match="'num_frames' = 16 contradicts the checkpoint's 8"):
        sampling.load_model_for_sampling(sample_config.load_config(None, [f"ckpt={checkpoint}", "num_frames=16"]))
    with pytest.raises(ValueError, match="'model' must be set: ckpt is null"):
        sampling.load_model_for_sampling(sample_config.load_config(None, []))
    with pytest.raises(FileNotFoundError, match="no_such.pt"):
        sampling.load_model_for_sampling(sample_config.load_config(None, [f"ckpt={tmp_path / 'no_such.pt'}"]))


def test_prediction_type_comes_from_the_checkpoint(tmp_path, checkpoint):
    """A v-prediction run samples as one; a checkpoint from before the key existed is an epsilon model."""
    from diffusion.gaussian_diffusion import ModelMeanType

    v_path = tmp_path / "0000010.pt"
    torch.save({**torch.load(checkpoint, weights_only=True), "config": {**MODEL_CONFIG, "prediction_type": "v"}},
               v_path)
    for path, expected in ((checkpoint, ModelMeanType.EPSILON), (v_path, ModelMeanType.VELOCITY)):
        cfg = sample_config.load_config(None, [f"ckpt={path}"])
        _, _, settings = sampling.load_model_for_sampling(cfg)
        assert sampling.create_sampling_diffusion(cfg, settings).model_mean_type == expected
    with pytest.raises(ValueError, match="'prediction_type' = 'epsilon' contradicts the checkpoint's 'v'"):
        sampling.load_model_for_sampling(sample_config.load_config(None, [f"ckpt={v_path}",
                                                                          "prediction_type=epsilon"]))


def test_checkpoint_folder_picks_newest_and_reads_safetensors_metadata(tmp_path, checkpoint):
    from safetensors.torch import save_file

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "0000010.pt").write_bytes(checkpoint.read_bytes())
    (folder / "0000020.pt").write_bytes(checkpoint.read_bytes())
    ema = random_latte(7).state_dict()
    save_file(ema, str(folder / "0000020-ema.safetensors"), metadata={"config": json.dumps(MODEL_CONFIG)})
    assert sampling.read_sampling_checkpoint(folder)[0].name == "0000020-ema.safetensors"
    model, _, settings = sampling.load_model_for_sampling(sample_config.load_config(None, [f"ckpt={folder}"]))
    assert settings["ckpt"].endswith("0000020-ema.safetensors")
    assert torch.equal(model.final_layer.linear.weight, ema["final_layer.linear.weight"])

    # weights=model passes over the EMA export, which holds no raw weights, and refuses it by name.
    raw = torch.load(folder / "0000020.pt", weights_only=True)["model"]
    model, _, settings = sampling.load_model_for_sampling(
        sample_config.load_config(None, [f"ckpt={folder}", "weights=model"]))
    assert settings["ckpt"].endswith("0000020.pt")
    assert torch.equal(model.final_layer.linear.weight, raw["final_layer.linear.weight"])
    with pytest.raises(ValueError, match="'weights' = 'model', but .*0000020-ema.safetensors is an EMA export"):
        sampling.load_model_for_sampling(sample_config.load_config(
            None, [f"ckpt={folder / '0000020-ema.safetensors'}", "weights=model"]))


def test_bare_state_dict_asks_for_the_model_keys_and_a_wrong_size_one_names_its_file(tmp_path):
    bare = tmp_path / "converted_latte.pt"
    torch.save(random_latte(3).state_dict(), bare)  # Latte-T/4 weights, no stored training config
    with pytest.raises(ValueError) as error:
        sampling.load_model_for_sampling(sample_config.load_config(None, [f"ckpt={bare}"]))
    assert str(error.value) == (
        f"config key 'model' must be set: checkpoint {bare} stores no training config (a bare state dict, e.g. a "
        "converted Latte/FVDM checkpoint); set the model keys model=... image_size=... num_frames=... "
        "num_classes=... learn_sigma=...")

    model_keys = [f"{k}={v}" for k, v in MODEL_CONFIG.items() if k in sampling.MODEL_KEYS]
    model, _, _ = sampling.load_model_for_sampling(sample_config.load_config(None, [f"ckpt={bare}", *model_keys]))
    saved = torch.load(bare, weights_only=True)
    assert torch.equal(model.final_layer.linear.weight, saved["final_layer.linear.weight"])
    with pytest.raises(RuntimeError, match=rf"checkpoint {bare} does not fit the model; shape mismatch in .*"
                                           r"x_embedder.proj.weight: checkpoint \(128, 3, 4, 4\) vs model "
                                           r"\(128, 3, 2, 2\)"):
        cfg = sample_config.load_config(None, [f"ckpt={bare}", *model_keys, "model=Latte-T/2"])
        sampling.load_model_for_sampling(cfg)


def test_frame_expressions_set_per_frame_on_the_command_line():
    cfg = sample_config.load_config(None, ["preset=custom", "frame_expressions.0=clean", "frame_expressions.-1=0",
                                    "frame_expressions.2=max(t - 10, 0)"])
    assert dict(cfg.frame_expressions) == {0: "clean", -1: "0", 2: "max(t - 10, 0)"}
    plan = vtv.build_plan("custom", vtv.descending_levels(range(0, 1000, 100)), 8, **sample_config.preset_options(cfg))
    assert plan.cond_mask.tolist() == [True] + [False] * 7
    assert plan.frame_schedule[-3].tolist() == [-1, 100, 90, 100, 100, 100, 100, 0]  # at t = 100
    with pytest.raises(ValueError, match=r"command line: config key 'frame_expressions.last': frame_expressions is "
                                         r"keyed by frame index, e.g. frame_expressions.0=clean"):
        sample_config.load_config(None, ["preset=custom", "frame_expressions.last=clean"])


@pytest.mark.parametrize("overrides,message", [
    (["no_such_key=1"], "unknown config key 'no_such_key'"),
    (["preset=spiral"], "'preset' = 'spiral': unknown preset"),
    (["image=a.png"], "'image' = 'a.png': is an input of preset\\(s\\) \\['i2v'\\]"),
    (["sample_method=euler"], "'sample_method'"),
    (["num_samples=0"], "'num_samples' = 0: must be >= 1"),
    (["preset=interpolation", "first_image=a.png"], "first_image and last_image go together"),
    (["length=abc"], "bad value for config key 'length'"),
    (["conditioning=scalar"], "'conditioning' = 'scalar': choose one of"),
    (["conditioning=replacement", "preset=diagonal"], "'conditioning' = 'replacement': 'replacement' needs one "
                                                      "shared timestep"),
    (["conditioning=replacement", "preset=i2v", "history_guidance=2"], "takes neither history_guidance"),
])
def test_bad_config_names_the_key(overrides, message):
    with pytest.raises(ValueError, match=message):
        sample_config.load_config(None, overrides)


def test_bad_inputs_name_the_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="config key 'image': no such image"):
        run_cli(tmp_path, "preset=i2v", f"image={tmp_path / 'missing.png'}")
    folder = tmp_path / "short"
    folder.mkdir()
    for k in range(3):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / f"{k}.png")
    with pytest.raises(ValueError, match="config key 'video'.* has 3 frames"):
        run_cli(tmp_path, "preset=next_frame", f"video={folder}")
    with pytest.raises(ValueError, match="class_labels"):
        run_cli(tmp_path, "class_labels=[1]")


def test_classifier_free_guidance_combines_conditional_and_null_predictions():
    model = random_latte(4, num_classes=5).eval()
    x, t, y = torch.randn(2, 8, 3, 8, 8), torch.randint(0, 1000, (2, 8)), torch.tensor([1, 3])
    with torch.no_grad():
        guided = sampling.sampling_model_fn(model, cfg_scale=4.0)(x, t, y)
        cond = model(x, t, y)
        uncond = model(x, t, torch.full_like(y, 5))
    torch.testing.assert_close(guided[:, :, :3], uncond[:, :, :3] + 4.0 * (cond[:, :, :3] - uncond[:, :, :3]),
                               rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(guided[:, :, 3:], cond[:, :, 3:], rtol=1e-4, atol=1e-5)


def test_videos_do_not_depend_on_batching(tmp_path, checkpoint):
    run_cli(tmp_path / "together", "preset=i2v", "batch_size=2", ckpt=checkpoint)
    run_cli(tmp_path / "alone", "preset=i2v", "batch_size=1", ckpt=checkpoint)
    for video in ("0000", "0001"):
        for k in range(8):
            name = Path("i2v") / video / "frames" / f"{k:04d}.png"
            np.testing.assert_allclose(read_png(tmp_path / "together" / name),
                                       read_png(tmp_path / "alone" / name), atol=1)
    first = read_png(tmp_path / "alone" / "i2v" / "0000" / "frames" / "0005.png")
    second = read_png(tmp_path / "alone" / "i2v" / "0001" / "frames" / "0005.png")
    assert not np.array_equal(first, second)


# ----------------------------------------------------------------------------- evaluation sampling

def test_sample_ddp_layout_and_resume(tmp_path, checkpoint):
    eval_dir, mp4_dir = tmp_path / "eval", tmp_path / "mp4"
    argv = [f"ckpt={checkpoint}", "num_sampling_steps=3", "num_samples=3", "batch_size=2", f"eval_dir={eval_dir}",
            f"mp4_dir={mp4_dir}", "device=cpu"]
    sample_ddp.main(argv)
    assert sorted(p.name for p in eval_dir.iterdir()) == ["00000", "00001", "00002"]
    assert sorted(p.name for p in (eval_dir / "00001").iterdir()) == [f"{k:04d}.png" for k in range(8)]
    pngs = [read_png(eval_dir / "00001" / f"{k:04d}.png") for k in range(8)]
    assert all(np.array_equal(a, b) for a, b in zip(mp4_frames(mp4_dir / "00001.mp4"), pngs))  # lossless

    before = {p: p.stat().st_mtime_ns for p in eval_dir.rglob("*.png")}
    for path in (eval_dir / "00001").iterdir():
        path.unlink()
    (eval_dir / "00001").rmdir()
    (eval_dir / "00002.tmp").mkdir()  # debris of a killed run: ignored, since 00002 is complete
    sample_ddp.main(argv)
    assert sorted(p.name for p in eval_dir.iterdir()) == ["00000", "00001", "00002", "00002.tmp"]
    for path, mtime in before.items():
        if path.parent.name != "00001":
            assert path.stat().st_mtime_ns == mtime  # skipped, not rewritten
    again = [read_png(eval_dir / "00001" / f"{k:04d}.png") for k in range(8)]
    assert all(np.array_equal(a, b) for a, b in zip(again, pngs))  # seed per video: the same video


def test_sample_ddp_splits_videos_across_torchrun_ranks(tmp_path, checkpoint):
    eval_dir = tmp_path / "eval"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
         "sample/sample_ddp.py", f"ckpt={checkpoint}", "num_sampling_steps=2", "num_samples=3", "batch_size=1",
         f"eval_dir={eval_dir}", "device=cpu"], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in eval_dir.iterdir()) == ["00000", "00001", "00002"]
    assert "rank 0 of 2: 2 videos to sample" in result.stdout


@pytest.mark.parametrize("config", sorted((REPO / "configs").glob("*/*_sample.yaml")), ids=lambda p: p.parent.name)
def test_shipped_sample_configs_load(config):
    cfg = sample_config.load_config(config, ["preset=long"])
    if config.parent.name == "t2v":  # the text demo, by sample/t2v.sh: DDPM-50, guided by the prompt
        assert cfg.cfg_scale > 1 and cfg.sample_method == "ddpm" and cfg.prompt is None
        assert config.name in (REPO / "sample" / "t2v.sh").read_text()
        return
    assert cfg.cfg_scale == (7.0 if config.parent.name == "ucf101" else 1.0)
    if config.parent.name != "demo":  # the paper's sampler; the CPU demo samples with DDPM-25
        assert cfg.sample_method == "ddim" and cfg.eta == 0.0 and cfg.num_sampling_steps == 50
    assert config.parent.name in (REPO / "train_scripts" / "sample.sh").read_text()
