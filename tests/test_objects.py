"""The bouncing demo's object check (tools/metrics/objects.py): real clips pass it, everything else fails it."""
import dataclasses
import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from datasets.bouncing import BACKGROUND, PALETTE, SHAPE_EXTENT, SHAPES, BouncingShapes, object_centers, render_scene
from tools.metrics.objects import (MAX_COLOUR_DRIFT, fit_bouncing_axis, object_statistics, read_frame, scene_truth,
                                   task_scores)
from tools.object_metrics import main as object_metrics_main
from tools.object_metrics import box_downsample, read_video_folders, real_videos
from tools.runtime import video_to_uint8

GREY = round(float(BACKGROUND) * 255)
VIDEO_SCORES = ("videos_keep_object", "videos_keep_colour", "videos_keep_shape", "videos_move_plausibly",
                "videos_all_checks")


def held_out(count, num_frames=8, image_size=16, frame_interval=2):
    dataset = BouncingShapes(num_frames=num_frames, frame_interval=frame_interval, image_size=image_size,
                             split="test", length=count)
    return dataset, [dataset.scene(index) for index in range(count)]


def render(scene, times):
    return video_to_uint8(render_scene(scene, times))  # (N, H, W, 3)


@pytest.mark.parametrize("image_size, frame_interval", [(16, 2), (32, 3), (64, 2)])
def test_real_clips_pass_every_check_and_are_read_exactly(image_size, frame_interval):
    real = real_videos(24, 8, image_size, frame_interval)
    stats = object_statistics(real, frame_interval)
    for check in ("shows_object", "one_part", "plausible_area", "palette_colour", "recognised_shape", *VIDEO_SCORES):
        assert stats[check] == 1.0, check
    assert stats["track_residual"] < 0.1
    _, scenes = held_out(24, image_size=image_size, frame_interval=frame_interval)
    for video, scene in zip(real, scenes):
        centres, colour, shape = scene_truth(scene, frame_interval * np.arange(8))
        readings = [read_frame(frame) for frame in video]
        assert all(r.colour == colour and r.shape == shape for r in readings)
        assert np.abs(np.stack([r.centre for r in readings]) - centres).max() < 0.1  # pixels


def two_object_videos(count):
    """Two whole objects of real sizes per frame, in opposite corners, apart (two foreground parts)."""
    _, scenes = held_out(200)
    videos = []
    for first, second in zip(scenes[::2], scenes[1::2]):
        objects = tuple(dataclasses.replace(obj, position=np.full(2, where), velocity=np.zeros(2))
                        for obj, where in ((first.objects[0], first.objects[0].extent),
                                           (second.objects[0], 16 - second.objects[0].extent)))
        video = render(dataclasses.replace(first, objects=objects), np.arange(8))
        if ndimage.label(np.abs(video[0] / 255 - BACKGROUND).max(-1) > 0.25, structure=np.ones((3, 3)))[1] == 2:
            videos.append(video)
    assert len(videos) >= count
    return np.stack(videos[:count])


def flat_object_frame(inside, image_size=64):
    """A uint8 frame: the palette's first colour where inside(dy, dx) holds (offsets from the centre, in pixels)."""
    grid = np.arange(image_size) + 0.5 - image_size / 2
    mask = inside(grid[:, None], grid[None, :])  # (H, W)
    frame = np.where(mask[..., None], PALETTE[0], BACKGROUND)  # (H, W, 3) in [0, 1]
    return np.rint(frame * 255).astype(np.uint8)


@pytest.mark.parametrize("name", ["superellipse", "lumpy circle", "rounded square"])
def test_a_blob_between_shapes_is_not_a_recognised_shape(name):
    radius = 0.28 * 64  # a real circle's size
    outlines = {
        # |x|^3 + |y|^3 <= r^3: halfway between the circle and the square
        "superellipse": lambda dy, dx: np.abs(dy) ** 3 + np.abs(dx) ** 3 <= radius ** 3,
        "lumpy circle": lambda dy, dx: np.hypot(dy, dx) <= radius * (1 + 0.12 * np.sin(5 * np.arctan2(dy, dx))),
        # corners rounded with 70% of the half-size (at 50% it still reads as a square: IoU 0.95, lead 0.065)
        "rounded square": lambda dy, dx: np.hypot(np.clip(np.abs(dy) - 0.3 * radius, 0, None),
                                                  np.clip(np.abs(dx) - 0.3 * radius, 0, None)) <= 0.7 * radius,
    }
    blob = read_frame(flat_object_frame(outlines[name]))
    assert blob.one_part and blob.plausible_area and blob.palette_colour
    assert not blob.recognised_shape and not blob.shows_object
    circle = read_frame(flat_object_frame(lambda dy, dx: np.hypot(dy, dx) <= radius))
    assert circle.shows_object and SHAPES[circle.shape] == "circle"


def test_noise_blank_saturated_and_two_object_frames_score_near_zero():
    rng = np.random.default_rng(0)
    shape = (16, 8, 16, 16, 3)
    real = real_videos(16, 8, 16, 2)
    bad = {
        "uniform noise": rng.integers(0, 256, shape, dtype=np.uint8),
        "noise around the background": np.clip(GREY + rng.normal(0, 60, shape), 0, 255).astype(np.uint8),
        "saturated noise": (rng.random(shape) < 0.5).astype(np.uint8) * 255,
        "blank": np.full(shape, GREY, np.uint8),
        "white": np.full(shape, 255, np.uint8),
        "two objects": two_object_videos(16),
        "real object in a colour off the palette": np.where(real > GREY + 20, 255 - real // 2, real).astype(np.uint8),
    }
    for name, videos in bad.items():
        stats = object_statistics(videos, frame_interval=2)
        assert stats["shows_object"] <= 0.05, name
        assert stats["videos_keep_object"] == 0.0, name
    assert object_statistics(bad["two objects"], frame_interval=2)["one_part"] == 0.0


def test_a_random_init_model_scores_near_zero():
    from sample.config import load_config
    from sample.sampling import create_sampling_diffusion, load_model_for_sampling, run_preset

    cfg = load_config(None, ["model=Latte-T/4", "image_size=16", "num_frames=8", "num_classes=0", "learn_sigma=true",
                             "sample_method=ddpm", "num_sampling_steps=10", "progress=false"])
    model, _, settings = load_model_for_sampling(cfg)
    _, chunks = run_preset(model, create_sampling_diffusion(cfg, settings), cfg, batch_size=8)
    videos = np.stack([video_to_uint8(video) for video in next(chunks)])
    stats = object_statistics(videos, frame_interval=2)
    assert stats["shows_object"] <= 0.05 and stats["videos_keep_object"] == 0.0


def test_video_checks_catch_colour_shape_and_motion_changes():
    _, scenes = held_out(8)
    times = 2 * np.arange(8)
    real = np.stack([render(scene, times) for scene in scenes])
    assert all(object_statistics(real, 2)[score] == 1.0 for score in VIDEO_SCORES)

    def spliced(change):
        """Frames 4-7 from the same scene with one property changed."""
        videos = []
        for scene in scenes:
            obj = scene.objects[0]
            changed = dataclasses.replace(scene, objects=(dataclasses.replace(obj, **change(obj)),))
            videos.append(np.concatenate([render(scene, times[:4]), render(changed, times[4:])]))
        return np.stack(videos)

    recoloured = spliced(lambda obj: {"color": PALETTE[(np.abs(PALETTE - obj.color).sum(1).argmin() + 1) % 8]})
    stats = object_statistics(recoloured, 2)
    assert stats["videos_keep_object"] == 1.0 and stats["videos_keep_colour"] == 0.0
    assert stats["videos_keep_shape"] == 1.0 and stats["videos_all_checks"] == 0.0
    def next_shape(obj):
        shape = SHAPES[(SHAPES.index(obj.shape) + 1) % 3]
        return {"shape": shape, "extent": obj.extent / SHAPE_EXTENT[obj.shape] * SHAPE_EXTENT[shape]}  # same size

    reshaped = spliced(next_shape)
    stats = object_statistics(reshaped, 2)
    assert stats["videos_keep_colour"] == 1.0 and stats["videos_keep_shape"] == 0.0
    assert object_statistics(real[:, ::-1].copy(), 2)["videos_move_plausibly"] == 1.0  # played backwards: still real
    rng = np.random.default_rng(0)
    assert object_statistics(real[:, rng.permutation(8)], 2)["videos_move_plausibly"] == 0.0  # shuffled in time
    assert object_statistics(np.repeat(real[:, :1], 8, axis=1), 2)["videos_move_plausibly"] == 0.0  # frozen
    assert object_statistics(real, frame_interval=6)["videos_move_plausibly"] == 0.0  # a third of the real speed


def test_bouncing_fit_recovers_the_generators_velocity():
    _, scenes = held_out(12)
    for scene in scenes:
        obj = scene.objects[0]
        centres = object_centers(obj, 2 * np.arange(8), 16)  # (8, 2), bounces included
        for axis in range(2):
            residual, velocity = fit_bouncing_axis(centres[:, axis], obj.extent, 16 - obj.extent, max_speed=2.0)
            assert residual < 0.05
            assert velocity == pytest.approx(2 * obj.velocity[axis], abs=0.02)


def test_task_scores_measure_against_the_true_trajectory():
    _, scenes = held_out(8)
    times = 2 * np.arange(8)
    truth = np.stack([render(scene, times) for scene in scenes])
    given = np.zeros(8, dtype=bool)
    given[:4] = True
    perfect = task_scores(truth, scenes, times, given)
    assert perfect["shows_object"] == perfect["colour_match"] == perfect["shape_match"] == 1.0
    assert perfect["centre_error"] < 0.05 and perfect["generated_frames"] == 4
    # Copying the last given frame, read back from pixels, must score what the closed form says copying scores.
    copied = task_scores(np.repeat(truth[:, 3:4], 8, axis=1), scenes, times, given)
    assert copied["centre_error"] == pytest.approx(copied["copy_centre_error"], abs=0.05)
    expected = np.mean([np.linalg.norm(scene_truth(s, times)[0][4:] - scene_truth(s, times)[0][3], axis=1)
                        for s in scenes])
    assert copied["copy_centre_error"] == pytest.approx(expected)
    blank = task_scores(np.full_like(truth, GREY), scenes, times, given)
    assert blank["shows_object"] == blank["has_foreground"] == 0.0 and np.isnan(blank["centre_error"])
    assert np.isnan(blank["colour_drift"])


def first_half_given():
    given = np.zeros(8, dtype=bool)
    given[:4] = True
    return given


def test_mean_colour_is_the_objects_colour_and_nan_without_one():
    flat = read_frame(flat_object_frame(lambda dy, dx: np.hypot(dy, dx) <= 18))
    assert np.abs(flat.mean_colour - PALETTE[0]).max() <= 0.5 / 255  # a flat object: its colour, to uint8 rounding
    assert np.isnan(read_frame(np.full((16, 16, 3), GREY, np.uint8)).mean_colour).all()


# Measured over these 24 clips: 0.0056 (16 px), 0.0009 (64 px). Not 0: the edge pixels that erosion leaves inside
# a small object blend with the background, a little more or less as it moves.
@pytest.mark.parametrize("image_size, bound", [(16, 0.007), (64, 0.0015)])
def test_real_clips_scored_as_generated_keep_their_colour(image_size, bound):
    _, scenes = held_out(24, image_size=image_size)
    times = 2 * np.arange(8)
    truth = np.stack([render(scene, times) for scene in scenes])
    assert task_scores(truth, scenes, times, first_half_given())["colour_drift"] < bound


def test_colour_drift_of_a_recoloured_object_is_the_palette_distance():
    # 32 px: in 16-px frames blended edge pixels inside the object shrink the distance by up to 0.019.
    _, scenes = held_out(16, image_size=32)
    times = 2 * np.arange(8)
    for scene in scenes:
        colour = scene_truth(scene, times)[1]
        other = (colour + 1) % len(PALETTE)
        recoloured = dataclasses.replace(scene, objects=(dataclasses.replace(scene.objects[0], color=PALETTE[other]),))
        video = np.concatenate([render(scene, times[:4]), render(recoloured, times[4:])])  # (8, H, W, 3)
        drift = task_scores(video[None], [scene], times, first_half_given())["colour_drift"]
        assert drift == pytest.approx(np.linalg.norm(PALETTE[colour] - PALETTE[other]), abs=0.02)
        assert drift > MAX_COLOUR_DRIFT  # every other palette colour lies beyond the bound


def test_colour_drift_needs_given_frames_with_an_object():
    _, scenes = held_out(2)
    times = 2 * np.arange(8)
    truth = np.stack([render(scene, times) for scene in scenes])
    blank_given = truth.copy()
    blank_given[:, :4] = GREY
    assert np.isnan(task_scores(blank_given, scenes, times, first_half_given())["colour_drift"])
    # A video whose given frames show nothing counts for nothing beside one whose do.
    mixed = np.stack([blank_given[0], truth[1]])
    assert task_scores(mixed, scenes, times, first_half_given())["colour_drift"] == pytest.approx(
        task_scores(truth[1:], scenes[1:], times, first_half_given())["colour_drift"])


def test_max_colour_drift_is_half_the_closest_palette_distance():
    distances = [np.linalg.norm(PALETTE[i].astype(np.float64) - PALETTE[j])
                 for i in range(len(PALETTE)) for j in range(i + 1, len(PALETTE))]
    assert MAX_COLOUR_DRIFT == pytest.approx(min(distances) / 2)
    assert MAX_COLOUR_DRIFT == pytest.approx(0.1279, abs=1e-4)  # yellow and orange


def test_object_metrics_cli_scores_a_folder_beside_real_clips(tmp_path):
    fake = tmp_path / "generated"
    videos = np.concatenate([real_videos(2, 4, 16, 2), np.full((2, 4, 16, 16, 3), GREY, np.uint8)])
    for index, frames in enumerate(videos):  # sample_ddp.py's layout: <video>/<frame>.png
        (fake / f"{index:05d}").mkdir(parents=True)
        for number, frame in enumerate(frames):
            Image.fromarray(frame).save(fake / f"{index:05d}" / f"{number:04d}.png")
    assert read_video_folders(fake).shape == (4, 4, 16, 16, 3)
    object_metrics_main(["--fake", str(fake), "--out", str(tmp_path / "objects.json")])
    results = json.loads((tmp_path / "objects.json").read_text())
    assert results["generated"]["shows_object"] == 0.5 and results["generated"]["videos_keep_object"] == 0.5
    assert results["real"]["shows_object"] == 1.0


def test_real_64px_clips_averaged_down_to_16px_pass_as_16px_clips():
    real = real_videos(8, 8, 64, 2)
    small = box_downsample(real, 16)
    assert small.shape == (8, 8, 16, 16, 3)
    assert np.array_equal(box_downsample(real[:, :, ::4, ::4].repeat(4, 2).repeat(4, 3), 16), real[:, :, ::4, ::4])
    stats = object_statistics(small, frame_interval=2)
    for check in ("shows_object", "recognised_shape", "videos_keep_shape", "videos_move_plausibly"):
        assert stats[check] == 1.0, check
    for size in (24, 0):
        with pytest.raises(ValueError, match=f"--score_size {size} must divide"):
            box_downsample(real, size)


def test_object_tasks_cli_runs_every_task_of_a_random_init_model(tmp_path):
    from tools.object_tasks import main as object_tasks_main

    methods = ["vtv", "replacement", "vtv:history_guidance=2,history_noise_level=500"]
    object_tasks_main(["--num_videos", "2", "--batch_size", "2", "--length", "12", "--out_dir", str(tmp_path),
                       *[flag for method in methods for flag in ("--method", method)], "ckpt=null",
                       "model=Latte-T/4", "image_size=16", "num_frames=8", "num_classes=0", "learn_sigma=true",
                       "num_sampling_steps=3", "progress=false"])
    tasks = json.loads((tmp_path / "tasks.json").read_text())["tasks"]
    assert tasks["i2v"]["given_frames"] == [0] and tasks["interpolation"]["given_frames"] == [0, 7]
    assert tasks["long"]["generated_frames"] == 8 and [w["frames"] for w in tasks["long"]["windows"]] == [
        [4, 5, 6, 7], [8, 9, 10, 11]]
    for task in ("i2v", "interpolation", "next_frame", "long"):
        rows = tasks[task]["methods"]
        assert list(rows) == [*methods, "real clips", "copy nearest given frame"]
        for method in methods:  # a random-init model draws no object, only noise far from the given colour
            assert rows[method]["shows_object"] == 0.0 and rows[method]["videos_move_plausibly"] == 0.0
            assert rows[method]["colour_drift"] > MAX_COLOUR_DRIFT
        real, copy = rows["real clips"], rows["copy nearest given frame"]
        assert real["shows_object"] == real["colour_match"] == real["videos_move_plausibly"] == 1.0
        assert real["colour_drift"] < 0.03 and copy["colour_drift"] < 0.005  # 2 clips of 16 px: 0.011-0.014, <= 0.002
        assert real["centre_error"] < 0.05 and copy["shows_object"] == copy["colour_match"] == 1.0
        assert copy["centre_error"] == pytest.approx(copy["copy_centre_error"], abs=0.05) and copy["centre_error"] > 0
        assert copy["videos_move_plausibly"] == 0.0  # a frozen object is no bouncing one
        assert Image.open(tmp_path / f"{task}.png").size[0] > 0
    windows = tasks["long"]["methods"]["copy nearest given frame"]["windows"]
    assert windows[1]["centre_error"] > windows[0]["centre_error"]  # copying drifts further from the truth
    assert all(window["colour_drift"] < 0.005 for window in windows)  # ... but keeps the given colour
    tables = (tmp_path / "tasks.md").read_text()
    assert "### i2v" in tables and "| real clips | 100% |" in tables and "frames 8-11" in tables
    assert "| colour drift |" in tables and "px, drift 0.0" in tables


def test_object_tasks_method_names():
    from tools.object_tasks import method_overrides

    assert method_overrides("vtv") == ["conditioning=vtv"]
    assert method_overrides("replacement") == ["conditioning=replacement"]
    assert method_overrides("vtv:history_guidance=2,cond_noise_level=50") == [
        "conditioning=vtv", "history_guidance=2", "cond_noise_level=50"]
    with pytest.raises(ValueError, match="must start with 'vtv' or 'replacement'"):
        method_overrides("ddim")
    with pytest.raises(ValueError, match="is not key=value"):
        method_overrides("vtv:history_guidance")


def test_object_denoise_reads_where_a_random_init_model_fails(tmp_path):
    from tools.object_denoise import level_path
    from tools.object_denoise import main as object_denoise_main

    assert level_path(999, 4) == [999, 666, 333, 0, -1] and level_path(0, 25) == [0, -1]
    out = tmp_path / "denoise.json"
    object_denoise_main(["--levels", "0,999", "--num_videos", "3", "--out", str(out), "ckpt=null",
                         "model=Latte-T/4", "image_size=16", "num_frames=8", "num_classes=0", "learn_sigma=true",
                         "num_sampling_steps=3", "sample_method=ddpm"])
    levels = json.loads(out.read_text())["levels"]
    # The random-init model predicts no noise (adaLN-Zero): from level 0 the clips come back as they were (noise
    # of std 0.01), from level 999 only noise does.
    assert levels["0"]["shows_object"] == 1.0 and levels["0"]["videos_keep_object"] == 1.0
    assert levels["999"]["shows_object"] == 0.0
    with pytest.raises(ValueError, match=r"--levels \[1000\]"):
        object_denoise_main(["ckpt=null", "model=Latte-T/4", "image_size=16", "num_frames=8", "num_classes=0",
                             "learn_sigma=true", "--levels", "1000"])
