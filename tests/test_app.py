"""tools/app.py: the functions that turn page inputs into pipeline calls and output files, then the page itself
served from a random-init model folder and driven in a headless Chromium (Debian's /usr/bin/chromium)."""
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch
from PIL import Image

from models import create_model
from sample.pipeline import FVDMPipeline
from tools import app

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
# Headless on a closed network: no sandbox (root), no GPU, and none of Chromium's own calls home.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
TRAINING_CONFIG = {"model": "Latte-T/4", "image_size": 16, "num_frames": 4, "num_classes": 0, "learn_sigma": True,
                   "noise_schedule": "linear", "diffusion_steps": 1000, "vae": None}
NO_UPLOADS = dict.fromkeys(app.UPLOADS)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny pixel-space model folder whose adaLN-Zero weights are randomised, so its videos are not constant."""
    model = create_model("Latte-T/4", input_size=16, num_frames=4, in_channels=3)
    torch.manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder, training_config=TRAINING_CONFIG)
    return folder


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    """A 64x64 PNG: a colour gradient with a dark disc (the pipeline resizes it to the model's 16 px)."""
    y, x = np.mgrid[:64, :64]
    pixels = np.stack([x * 4, y * 4, np.full_like(x, 160)], axis=-1)
    pixels[(x - 40) ** 2 + (y - 24) ** 2 < 144] = 20
    path = tmp_path_factory.mktemp("inputs") / "first.png"
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def test_missing_input_is_named():
    cases = {"i2v": "for image$", "interpolation": r"for first_image and last_image \(or video\)",
             "transition": "for video_a and video_b", "next_frame": "for video$"}
    for preset, message in cases.items():
        with pytest.raises(app.MissingInput, match=message):
            app.pipeline_kwargs(preset, NO_UPLOADS, 3, "ddim", 0)
    with pytest.raises(app.MissingInput, match="for video_b"):
        app.pipeline_kwargs("transition", {**NO_UPLOADS, "video": "a.mp4"}, 3, "ddim", 0)
    with pytest.raises(app.MissingInput, match="needs a prompt"):
        app.generate(SimpleNamespace(settings={"text_encoder": object()}), {"preset": "standard"}, "unused")
    app.pipeline_kwargs("interpolation", {**NO_UPLOADS, "video": "clip.mp4"}, 3, "ddim", 0)  # the alternative


def test_pipeline_kwargs_per_preset():
    uploads = {"image": "first.png", "last_image": "last.png", "video": "clip.mp4", "video_b": "b.mp4"}
    common = {"num_inference_steps": 3, "sample_method": "ddpm", "seed": 7, "cfg_scale": 1.0}
    assert app.pipeline_kwargs("i2v", uploads, 3.0, "ddpm", 7.0, length=20) == {
        "preset": "i2v", **common, "image": "first.png"}
    assert app.pipeline_kwargs("long", uploads, 3, "ddpm", 7, length=20) == {
        "preset": "long", **common, "video": "clip.mp4", "num_frames": 20}
    assert app.pipeline_kwargs("standard", uploads, 3, "ddpm", 7, length=20, prompt="") == {
        "preset": "standard", **common}
    assert app.pipeline_kwargs("transition", uploads, 3, "ddpm", 7, cfg_scale=4, prompt="a dog", class_label=2) == {
        "preset": "transition", **common, "cfg_scale": 4.0, "video_a": "clip.mp4", "video_b": "b.mp4",
        "prompt": "a dog", "class_labels": [2]}


def test_visible_fields_follow_the_preset_and_the_model():
    unconditional = {"text_encoder": None, "num_classes": 0}
    assert app.visible_fields("standard", unconditional) == dict.fromkeys(
        [*app.UPLOADS, "length", "prompt", "class_label"])
    assert app.visible_fields("interpolation", unconditional)["image"] == "first_image"
    fields = app.visible_fields("transition", {"text_encoder": object(), "num_classes": 0})
    assert (fields["image"], fields["video"], fields["video_b"], fields["prompt"]) == (None, "video_a", "video_b",
                                                                                       "prompt")
    fields = app.visible_fields("diagonal", {"text_encoder": None, "num_classes": 5})
    assert fields["length"] == "output frames" and fields["class_label"].startswith("class (0-4")


def test_generate_writes_a_run_folder(model_dir, image_path, tmp_path):
    pipe = FVDMPipeline.from_pretrained(model_dir, device="cpu", progress=False)
    runs = [("i2v", {**NO_UPLOADS, "image": str(image_path)}, 4), ("long", NO_UPLOADS, 6)]
    for index, (preset, uploads, frames) in enumerate(runs):
        video, heatmap = app.generate(pipe, app.pipeline_kwargs(preset, uploads, 3, "ddim", 0, length=6), tmp_path)
        folder = tmp_path / f"{index:04d}-{preset}"
        assert video == folder / "video.mp4" and heatmap == folder / "schedule.png"
        assert len(list((folder / "frames").glob("*.png"))) == frames
        assert (folder / "video.gif").is_file() and (folder / "contact_sheet.png").is_file()
        with av.open(str(video)) as container:
            assert sum(1 for _ in container.decode(video=0)) == frames
        assert Image.open(heatmap).size[0] > 100
    held = np.asarray(Image.open(tmp_path / "0000-i2v" / "frames" / "0000.png"), dtype=np.float64)
    given = np.asarray(Image.open(image_path).resize((16, 16), Image.BICUBIC), dtype=np.float64)
    assert np.abs(held - given).mean() < 5  # frame 0 is the uploaded image, held clean (resized to 16 px)


# ---------------------------------------------------------------- the page in a browser
def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    """`python tools/app.py` on a free port, serving model_dir: (url, runs: its out_dir). Stopped at the end."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no {CHROMIUM}: tests/run_tests.sh installs Debian's chromium when run as root with apt-get "
                    "(its log: /tmp/chromium-install.log)")
    logs = tmp_path_factory.mktemp("server")
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(logs / "gradio"),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "NO_PROXY": "127.0.0.1,localhost"}
    with open(logs / "server.log", "w") as log:
        process = subprocess.Popen([sys.executable, str(REPO / "tools" / "app.py"), "--model", str(model_dir),
                                    "--port", str(port), "--device", "cpu", "--out_dir", str(logs / "runs")],
                                   cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"the app exited:\n{(logs / 'server.log').read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no page at {url}:\n{(logs / 'server.log').read_text()[-3000:]}"
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        yield SimpleNamespace(url=url, runs=logs / "runs")
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def choose_preset(page, name):
    page.get_by_label("preset").click()
    page.get_by_role("option", name=name, exact=True).click()


def generate_and_wait(page, expect, previous_heatmap=None):
    """Click Generate; the heatmap's src once it is a new one (each schedule is a new file)."""
    page.locator("#generate").click()
    heatmap = page.locator("#heatmap img")
    expect(heatmap).to_be_visible(timeout=90_000)
    page.wait_for_function("previous => { const img = document.querySelector('#heatmap img');"
                           " return img && img.src !== previous && img.complete && img.naturalWidth > 0; }",
                           arg=previous_heatmap, timeout=90_000)
    video = page.locator("#result video")
    expect(video).to_be_visible()
    page.wait_for_function("() => { const v = document.querySelector('#result video');"
                           " return v && v.readyState >= 2 && v.videoWidth > 0; }", timeout=30_000)  # decoded
    return heatmap.get_attribute("src"), video.get_attribute("src")


@pytest.mark.slow
def test_page_runs_presets_in_a_browser(server, image_path, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            outside = []
            page.on("request", lambda request: outside.append(request.url)
                    if not request.url.startswith((server.url, "data:", "blob:")) else None)
            page.goto(server.url)
            expect(page.get_by_text("FVDMPipeline(")).to_be_visible(timeout=30_000)  # the model summary

            choose_preset(page, "i2v")
            page.locator("#generate").click()
            error = page.get_by_text("preset 'i2v' needs an upload for image")
            expect(error).to_be_visible(timeout=30_000)
            page.get_by_role("button", name="Close", exact=True).click()  # the error toast, out of the screenshot
            expect(error).to_be_hidden()

            page.locator("#image input[type=file]").set_input_files(str(image_path))
            expect(page.locator("#image img")).to_be_visible(timeout=30_000)
            steps = page.locator("#steps input[type=number]")
            steps.fill("3")
            steps.press("Enter")
            heatmap_src, video_src = generate_and_wait(page, expect)
            assert video_src.endswith("video.mp4") and heatmap_src.endswith("schedule.png")
            page.screenshot(path=tmp_path / "app.png")

            choose_preset(page, "standard")
            expect(page.locator("#image")).to_be_hidden()
            heatmap_src, _ = generate_and_wait(page, expect, heatmap_src)

            choose_preset(page, "long")  # continue the i2v video, uploaded back through the video field
            page.locator("#video input[type=file]").set_input_files(str(server.runs / "0000-i2v" / "video.mp4"))
            expect(page.locator("#video video")).to_be_visible(timeout=30_000)
            generate_and_wait(page, expect, heatmap_src)
            page.screenshot(path=tmp_path / "app-long.png")
            assert not outside, f"the page fetched from outside the app: {outside}"
        finally:
            browser.close()
    assert sorted(path.name for path in server.runs.iterdir()) == ["0000-i2v", "0001-standard", "0002-long"]
    assert len(list((server.runs / "0002-long" / "frames").glob("*.png"))) == 4 * 4  # the page's default length
