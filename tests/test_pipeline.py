"""Model folders (Latte.save_pretrained / from_pretrained, tools/export_pretrained.py) and FVDMPipeline: a model
trained by train_video.py loads from its exported folder and samples through the pipeline exactly as the CLI."""
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from models import Latte, create_model
from models.checkpoint import CONFIG_FILE, TRAINING_CONFIG_FILE, WEIGHTS_FILE
from sample import generate
from sample.pipeline import FVDMPipeline
from tools import export_pretrained

REPO = Path(__file__).resolve().parents[1]
TRAIN = ["dataset=bouncing", "dataset_length=24", "model=Latte-T/8", "image_size=16", "num_frames=4",
         "frame_interval=2", "local_batch_size=2", "num_workers=0", "mixed_precision=no", "max_train_steps=6",
         "ckpt_every=3", "ema_decay=0.5", "experiment_name=run"]
SAMPLE = ["num_sampling_steps=4", "sample_method=ddpm", "num_samples=3", "batch_size=2", "progress=false",
          "device=cpu", "seed=5"]


def randomised(model, seed=0):
    """Fill the adaLN-Zero weights, which start at zero, so outputs depend on every weight."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.05)
    return model.eval()


def train(results_dir, *overrides):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(REPO / "train_video.py"), *TRAIN, f"results_dir={results_dir}",
                             *overrides], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return results_dir / "run"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train(tmp_path_factory.mktemp("results"))


def cli_frames(save_dir, preset, *overrides):
    """The PNG frames generate.py wrote for each video of `preset`: uint8 (T, H, W, 3) per video."""
    generate.main([*SAMPLE, f"save_dir={save_dir}", f"preset={preset}", *overrides])
    videos = sorted((Path(save_dir) / preset).iterdir())
    return [np.stack([np.asarray(Image.open(frame)) for frame in sorted((video / "frames").glob("*.png"))])
            for video in videos]


# ----------------------------------------------------------------------------- model folders

@pytest.mark.parametrize("kwargs", [dict(), dict(num_classes=5, learn_sigma=False), dict(text_dim=24)])
def test_save_and_from_pretrained_round_trip(tmp_path, kwargs):
    model = randomised(create_model("Latte-T/4", input_size=8, num_frames=4, in_channels=3, **kwargs))
    model.save_pretrained(tmp_path, training_config={"image_size": 8})
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    arguments = set(inspect.signature(Latte.__init__).parameters) - {"self"}
    assert config.pop("_class_name") == "Latte" and set(config) == arguments
    assert set(load_file(tmp_path / WEIGHTS_FILE)) == set(model.state_dict())
    assert json.loads((tmp_path / TRAINING_CONFIG_FILE).read_text()) == {"image_size": 8}

    loaded = Latte.from_pretrained(tmp_path, attention="matmul")
    assert not loaded.training and loaded.config == {**model.config, "attention": "matmul"}
    x, t = torch.randn(2, 4, 3, 8, 8), torch.randint(0, 1000, (2, 4))
    extra = {}
    if model.num_classes:
        extra["y"] = torch.tensor([1, 4])
    if model.text_dim:
        extra["text"] = torch.randn(2, 4, 3, 24)
    torch.testing.assert_close(loaded(x, t, **extra), model(x, t, **extra), rtol=0, atol=1e-5)


def test_model_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        Latte.from_pretrained(tmp_path)
    model = create_model("Latte-T/4", input_size=8, num_frames=4, in_channels=3)
    model.save_pretrained(tmp_path)
    with pytest.raises(TypeError, match="not Latte arguments"):
        Latte.from_pretrained(tmp_path, num_layers=3)
    with pytest.raises(RuntimeError, match="shape mismatch"):  # an architecture change cannot load the weights
        Latte.from_pretrained(tmp_path, hidden_size=64)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**config, "_class_name": "UNet3DConditionModel"}))
    with pytest.raises(ValueError, match="UNet3DConditionModel"):
        Latte.from_pretrained(tmp_path)


# ----------------------------------------------------------------------------- a trained run's folder

def test_training_exports_the_ema_weights_as_a_model_folder(run_dir, tmp_path):
    folder = run_dir / "pretrained"
    model = Latte.from_pretrained(folder)
    ema = load_file(run_dir / "checkpoints" / "0000006-ema.safetensors")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, ema[key], rtol=0, atol=0)
    training_config = json.loads((folder / TRAINING_CONFIG_FILE).read_text())
    assert training_config["step"] == 6 and training_config["model"] == "Latte-T/8"
    assert training_config["image_size"] == 16 and training_config["noise_schedule"] == "linear"

    # A finished run resumed with its folder gone writes it again; a longer run rewrites it at its new end.
    stamp = (folder / WEIGHTS_FILE).stat().st_mtime_ns
    (folder / CONFIG_FILE).unlink()
    train(run_dir.parent, "resume_from_checkpoint=auto")
    assert json.loads((folder / TRAINING_CONFIG_FILE).read_text())["step"] == 6
    assert (folder / WEIGHTS_FILE).stat().st_mtime_ns > stamp
    train(run_dir.parent, "resume_from_checkpoint=auto", "max_train_steps=9")
    assert json.loads((folder / TRAINING_CONFIG_FILE).read_text())["step"] == 9


@pytest.mark.parametrize("preset, overrides, pipe_kwargs", [
    ("standard", [], {}),
    ("long", ["length=7", "context_frames=2"], dict(num_frames=7, context_frames=2)),
    ("i2v", ["image={image}", "cond_frame=-1"], dict(image="{pil}", cond_frame=-1)),
])
def test_pipeline_matches_the_cli(run_dir, tmp_path, preset, overrides, pipe_kwargs):
    image = tmp_path / "frame.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(image)
    overrides = [item.format(image=image) for item in overrides]
    folder = run_dir / "pretrained"
    from_folder = cli_frames(tmp_path / "folder", preset, f"ckpt={folder}", *overrides)
    from_checkpoints = cli_frames(tmp_path / "checkpoints", preset, f"ckpt={run_dir / 'checkpoints'}", *overrides)
    assert len(from_folder) == 3
    for a, b in zip(from_folder, from_checkpoints):  # the folder holds the same model as the EMA export
        np.testing.assert_array_equal(a, b)

    pipe = FVDMPipeline.from_pretrained(folder, device="cpu", progress=False)
    kwargs = {key: Image.open(image) if value == "{pil}" else value for key, value in pipe_kwargs.items()}
    out = pipe(preset=preset, num_inference_steps=4, sample_method="ddpm", num_videos=3, batch_size=2, seed=5,
               **kwargs)
    assert len(out.videos) == 3 and out.schedule.shape[-1] == from_folder[0].shape[0]
    for video, expected in zip(out.videos, from_folder):
        np.testing.assert_array_equal(video, expected)


def test_pipeline_outputs_inputs_and_errors(run_dir):
    pipe = FVDMPipeline.from_pretrained(run_dir / "pretrained", device="cpu", progress=False)
    assert "Latte-T/8" in repr(pipe) and "pixel-space" in repr(pipe)
    common = dict(num_inference_steps=3, num_videos=2, seed=1)
    arrays = pipe(**common).videos
    assert arrays[0].dtype == np.uint8 and arrays[0].shape == (4, 16, 16, 3)
    tensors = pipe(output_type="pt", **common).videos
    assert tensors[0].shape == (4, 3, 16, 16) and tensors[0].abs().max() <= 1 + 1e-6
    pils = pipe(output_type="pil", **common).videos
    np.testing.assert_array_equal(np.asarray(pils[1][2]), arrays[1][2])
    # Video k comes from seed + k whatever the batching; a generator draws the seed.
    np.testing.assert_array_equal(pipe(**common, batch_size=1).videos[1], arrays[1])
    one = pipe(generator=torch.Generator().manual_seed(0), num_inference_steps=3).videos[0]
    again = pipe(generator=torch.Generator().manual_seed(0), num_inference_steps=3).videos[0]
    np.testing.assert_array_equal(one, again)

    # An in-memory clip continues exactly as the same frames from a file would; the held frames come back.
    clip = np.random.default_rng(1).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    long = pipe(preset="long", video=clip, num_frames=6, context_frames=2, **common).videos[0]
    np.testing.assert_array_equal(long[:2], clip[:2])

    with pytest.raises(ValueError, match="output_type"):
        pipe(output_type="latent")
    with pytest.raises(ValueError, match="num_frames=6"):
        pipe(preset="standard", num_frames=6)
    with pytest.raises(TypeError, match="generator"):
        pipe(generator=[torch.Generator()])
    with pytest.raises(ValueError, match="unknown config key 'strength'"):
        pipe(strength=0.5)
    with pytest.raises(ValueError, match="input 'image'"):
        pipe(preset="i2v", image=np.zeros((16, 16), dtype=np.uint8))


def test_export_tool_turns_a_released_latte_checkpoint_into_a_folder(tmp_path):
    """A released Latte checkpoint (blocks.k keys, no training config) exports with the model keys given, and the
    folder samples what the checkpoint samples."""
    model = randomised(create_model("Latte-T/4", input_size=8, num_frames=4, in_channels=3))
    released = {}
    for key, value in model.state_dict().items():
        kind, _, rest = key.partition(".")
        if kind in ("spatial_blocks", "temporal_blocks"):
            index, _, rest = rest.partition(".")
            key = f"blocks.{2 * int(index) + (kind == 'temporal_blocks')}.{rest}"
        released[key] = value
    checkpoint = tmp_path / "latte.pt"
    torch.save({"ema": released}, checkpoint)
    model_keys = ["model=Latte-T/4", "image_size=8", "num_frames=4", "num_classes=0", "learn_sigma=true"]
    export_pretrained.main(["--out", str(tmp_path / "folder"), f"ckpt={checkpoint}", *model_keys])
    loaded = Latte.from_pretrained(tmp_path / "folder")
    x, t = torch.randn(1, 4, 3, 8, 8), torch.randint(0, 1000, (1, 4))
    torch.testing.assert_close(loaded(x, t), model(x, t), rtol=0, atol=1e-5)

    from_checkpoint = cli_frames(tmp_path / "a", "standard", f"ckpt={checkpoint}", *model_keys)
    from_folder = cli_frames(tmp_path / "b", "standard", f"ckpt={tmp_path / 'folder'}")
    for a, b in zip(from_checkpoint, from_folder):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="'num_frames' = 8 contradicts"):
        cli_frames(tmp_path / "c", "standard", f"ckpt={tmp_path / 'folder'}", "num_frames=8")
    with pytest.raises(ValueError, match="'weights' = 'model'.*model folder"):
        cli_frames(tmp_path / "c", "standard", f"ckpt={tmp_path / 'folder'}", "weights=model")


def test_a_model_folder_refuses_a_text_encoder_of_another_width(tmp_path):
    model = create_model("Latte-T/4", input_size=8, num_frames=4, in_channels=3, text_dim=24)
    model.save_pretrained(tmp_path, training_config={"image_size": 8, "text_encoder": "minilm"})
    with pytest.raises(ValueError, match="384-wide tokens, but the model .* takes 24"):
        FVDMPipeline.from_pretrained(tmp_path, device="cpu")
