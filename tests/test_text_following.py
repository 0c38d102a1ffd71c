"""The text-following scores: real captioned clips score high, the caption-shuffled control near chance, noise 0."""
from dataclasses import replace

import numpy as np
import pytest

from datasets import build_dataset
from datasets.bouncing import CaptionedClip, caption, sample_captioned_clip
from tools.metrics.text_following import CHANCE, shuffled_prompts, text_following_scores
from tools.runtime import video_to_uint8


@pytest.fixture(scope="module")
def real_clips():
    dataset = build_dataset("bouncing_captions", split="test", num_frames=8, frame_interval=2, image_size=64,
                            length=48)
    items = [dataset[i] for i in range(len(dataset))]
    return np.stack([video_to_uint8(item["video"]) for item in items]), [list(item["captions"]) for item in items]


def test_real_clips_follow_their_captions_and_shuffled_captions_score_near_chance(real_clips):
    videos, prompts = real_clips
    real = text_following_scores(videos, prompts)
    assert real["shows_object"] > 0.97 and real["colour"] > 0.97 and real["shape"] > 0.9
    assert real["direction"] > 0.95 and real["switch_videos"] > 10
    assert real["switch_error"] < 0.3 and real["switch_followed"] > 0.9
    control = text_following_scores(videos, shuffled_prompts(prompts, seed=1))
    for key in ("colour", "shape", "direction"):
        assert control[key] < CHANCE[key] + 0.2, (key, control[key])
    assert control["switch_followed"] < 0.5
    assert real["colour_any"] > 0.97 and control["colour_any"] < CHANCE["colour"] + 0.2


def test_noise_and_blank_videos_follow_nothing(real_clips):
    videos, prompts = real_clips
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, videos.shape, dtype=np.uint8)
    for fake in (noise, np.zeros_like(videos)):
        scores = text_following_scores(fake, prompts)
        assert scores["colour"] == scores["shape"] == scores["direction"] == 0.0
    blank = text_following_scores(np.zeros_like(videos), prompts)
    assert blank["colour_any"] == blank["shape_any"] == blank["direction_any"] == 0.0
    loose = text_following_scores(noise, prompts)  # any foreground: noise reads as some colour, at chance
    assert loose["colour_any"] < CHANCE["colour"] + 0.15 and loose["direction_any"] < CHANCE["direction"] + 0.15


def test_a_late_switch_is_measured_in_frames():
    """A clip that turns square at frame 5, asked to at frame 3: the switch is read 2 frames late."""
    times = 2 * np.arange(8)
    clip = sample_captioned_clip(np.random.default_rng(3), times, 64, split="test", event_prob=0.0, colour="red",
                                 shape="circle", direction="right")
    circle = clip.objects[0]
    late = CaptionedClip(64, clip.times, (0, 5), (circle, replace(circle, shape="square")))
    directions = [direction for _, _, direction in late.frame_attributes()]
    asked = [caption("red", "circle" if frame < 3 else "square", directions[frame]) for frame in range(8)]
    scores = text_following_scores(video_to_uint8(late.render())[None], [asked])
    assert scores["switch_videos"] == 1 and scores["switch_error"] == 2.0 and scores["switch_followed"] == 0.0
    on_time = text_following_scores(video_to_uint8(late.render())[None], [late.captions()])
    assert on_time["switch_error"] == 0.0 and on_time["switch_followed"] == 1.0
