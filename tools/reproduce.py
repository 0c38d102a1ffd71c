"""Reproduce the paper's two claims at small scale on the built-in bouncing shapes (a benchmark, not a test).

(a) PTSS with p = 0.2 beats p = 0 (plain Latte) on standard generation (paper, FaceForensics: FVD 74.31 vs 82.28).
(b) One model does image-to-video, interpolation, next-frame prediction and long video zero-shot.

The same small model (configs/demo/demo_train.yaml with 16-frame clips; bf16 autocast where the CPU has it)
is trained by training.train (what train_video.py runs) for every PTSS p, with identical seeds, data and steps,
then scored against held-out clips (split "test"):
    standard       FVD (16 frames, I3D) of unconditional samples, beside the real-vs-real floor (train vs test clips)
    i2v            frame 0 given                 } conditioned on other held-out clips: FVD, and MSE per frame
    interpolation  frames 0 and 15 given         } against those clips' own frames; every model with VTV, and
    next_frame     frames 0-7 given, 8-15 new    } the p = 0 model also with the scalar-timestep "replacement" method
    long           the standard samples continued to long_length frames, 8 context frames per window: FVD of the
                   first and last 16 frames (does quality drift?)
Training runs live in results/reproduce/<budget>/p<p>/ (a rerun resumes or skips them); the report goes to docs/
(smoke: to its results folder): reproduce.md, reproduce_results.json, reproduce_fvd_vs_p.png,
reproduce_task_error.png.

    python tools/reproduce.py --budget smoke     # 2 minutes: checks the plumbing, the numbers mean nothing
    python tools/reproduce.py --budget cpu60     # the full run (about half an hour on 2 CPU cores)
    python tools/reproduce.py --budget gpu       # the same scaled up, on cuda
    python tools/reproduce.py --budget cpu60 --ptss 0 0.2 0.5 1 --num_eval 128     # flags override the budget
"""
import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

import training  # noqa: E402
from datasets.bouncing import BouncingShapes  # noqa: E402
from diffusion import vtv  # noqa: E402
from sample import sampling  # noqa: E402
from sample.config import load_config as load_sample_config  # noqa: E402
from tools.metrics import feature_statistics, frechet_distance, i3d_clip_features, load_i3d  # noqa: E402
from tools.runtime import autocast_dtype, video_to_uint8  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BASE_CONFIG = REPO / "configs" / "demo" / "demo_train.yaml"
# The study keeps the demo's earlier pixel-space setting (16 px, 10000 clips), in which docs/reproduce.md was
# measured; the demo itself now trains at 64 px in its autoencoder's latent space.
PIXEL_SPACE = ["vae=null", "latent_cache_dir=null", "image_size=16", "dataset_length=10000"]
DEMO = training.load_config(BASE_CONFIG, PIXEL_SPACE)  # model, image_size and frame_interval of every run and clip
NUM_FRAMES = 16  # the I3D FVD protocol scores 16-frame clips
CONTEXT_FRAMES = 8  # next_frame context, and the frames each long-video window carries over
# task -> (VTV preset, build_plan options); standard is plain sampling, the others condition on held-out frames
TASKS = {
    "standard": ("standard", {}),
    "i2v": ("i2v", {"cond_frame": 0}),
    "interpolation": ("interpolation", {"keyframes": [0, NUM_FRAMES - 1]}),
    "next_frame": ("next_frame", {"context_frames": CONTEXT_FRAMES, "predict_frames": NUM_FRAMES - CONTEXT_FRAMES}),
}
COND_TASKS = ("i2v", "interpolation", "next_frame")
NEAREST = "nearest given frame"  # the trivial predictor of the conditioned tasks
BOOTSTRAP_ROUNDS = 50


@dataclass(frozen=True)
class Budget:
    """Every number that sets the cost of a run; a command-line flag of the same name overrides one."""

    train_steps: int  # optimizer steps per PTSS p
    batch_size: int  # training clips per step
    num_eval: int  # clips per FVD set (generated and real) = conditioning clips per task
    num_long: int  # long videos: the first num_long standard samples continued (0: no long video)
    long_length: int  # frames per long video (windows of 16 carrying 8 frames over)
    sample_method: str  # "ddpm" (ancestral) or "ddim" (eta 0)
    sampling_steps: int  # respaced sampler steps
    sample_batch: int  # videos sampled together
    i3d_batch: int  # clips per I3D call
    num_workers: int  # training data-loader workers
    device: str  # sampling and I3D; training takes train_video.py's device (cuda when available)


# cpu60 timings: docs/reproduce.md.
BUDGETS = {
    "smoke": Budget(train_steps=10, batch_size=4, num_eval=4, num_long=4, long_length=32, sample_method="ddpm",
                    sampling_steps=4, sample_batch=4, i3d_batch=4, num_workers=0, device="cpu"),
    "cpu60": Budget(train_steps=2500, batch_size=4, num_eval=32, num_long=16, long_length=64, sample_method="ddpm",
                    sampling_steps=50, sample_batch=16, i3d_batch=8, num_workers=0, device="cpu"),
    "gpu": Budget(train_steps=20_000, batch_size=32, num_eval=512, num_long=256, long_length=128,
                  sample_method="ddpm", sampling_steps=100, sample_batch=128, i3d_batch=32, num_workers=4,
                  device="cuda"),
}


#################################################################################
#                                    Training                                   #
#################################################################################


def p_label(p):
    return f"p={p:g}"


def row_label(p, task, method):
    """The model alone where nothing is given (standard, long), else the model and its conditioning method."""
    return f"{p_label(p)} {'VTV' if method == 'vtv' else 'replacement'}" if task in COND_TASKS else p_label(p)


def train(p, budget, args):
    """Train the model of PTSS p with training.train, as train_video.py does (resumed, or skipped when finished);
    its training record."""
    overrides = [
        *PIXEL_SPACE, f"num_frames={NUM_FRAMES}", f"ptss_p={p}", f"max_train_steps={budget.train_steps}",
        f"local_batch_size={budget.batch_size}", f"num_workers={budget.num_workers}", f"global_seed={args.seed}",
        f"results_dir={args.results_dir}", f"experiment_name=p{p:g}", "resume_from_checkpoint=auto",
        "preview_every=0", f"ckpt_every={max(1, budget.train_steps // 5)}",
        "timestep_distribution=uniform",  # the paper's timesteps, not the demo's mid-noise focus
    ]
    cfg = training.load_config(BASE_CONFIG, overrides)
    training.train(cfg)
    run_dir = training.run_dir_of(cfg)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {
        "run_dir": str(run_dir), "steps": records[-1]["step"], "final_loss": records[-1]["loss"],
        "steps_per_sec": float(np.mean([r["steps_per_sec"] for r in records])),
        "config_overrides": overrides,
    }


#################################################################################
#                                    Sampling                                   #
#################################################################################


def held_out_clips(split, first, count, seed):
    """float (count, 16, 3, H, W) in [-1, 1]: bouncing clips first..first+count-1 of a split, as in training."""
    dataset = BouncingShapes(num_frames=NUM_FRAMES, frame_interval=DEMO.frame_interval, image_size=DEMO.image_size,
                             split=split, seed=seed, length=first + count)
    return torch.stack([dataset[index]["video"] for index in range(first, first + count)])


def to_uint8(videos):
    """(B, N, 3, H, W) in [-1, 1] -> uint8 (B, N, H, W, 3), as tools/dump_clips.py writes real clips."""
    return np.stack([video_to_uint8(video) for video in videos])


class Evaluator:
    """One trained model with the sampler settings every task shares: the budget's sampler, the demo's autocast,
    and x0 estimates clipped to [-1, 1] in pixel space, as sample.py does. Video k of every task starts from the
    noise of seed + k, whatever the model or method, so models and methods are compared on the same draws."""

    def __init__(self, run_dir, budget, seed):
        overrides = [f"ckpt={run_dir}/checkpoints", f"sample_method={budget.sample_method}",
                     f"num_sampling_steps={budget.sampling_steps}",
                     "mixed_precision=auto", f"seed={seed}", f"device={budget.device}", "progress=false"]
        self.cfg = load_sample_config(None, overrides)
        self.device = torch.device(budget.device)
        self.model, self.vae, settings = sampling.load_model_for_sampling(self.cfg, self.device)
        self.diffusion = sampling.create_sampling_diffusion(self.cfg, settings)
        self.model_fn = sampling.sampling_model_fn(self.model, 1.0, self.cfg.mixed_precision)
        self.frame_shape = (self.model.in_channels, self.model.input_size, self.model.input_size)
        self.clip_denoised = vtv.default_clip_denoised(self.model.in_channels)

    def generators(self, indices):
        return sampling.video_generators(self.cfg, indices, self.device)

    def run_task(self, task, method, indices, clips=None, generators=None):
        """Videos (B, 16, C, h, w) in model space: `task` for videos `indices`, conditioned (method "vtv" or
        "replacement") on the frames of `clips` (B, 16, 3, H, W) that the task's plan marks as given."""
        preset, options = TASKS[task]
        generators = generators if generators is not None else self.generators(indices)
        shape = (len(indices), NUM_FRAMES, *self.frame_shape)
        noise_fn = vtv.frame_noise(len(indices), self.frame_shape, self.device, generators)
        cond_frames = sampling.to_model_space(clips.to(self.device), self.vae) if clips is not None else None
        sampler = dict(noise_fn=noise_fn, device=self.device, generator=generators, clip_denoised=self.clip_denoised,
                       method=self.cfg.sample_method)
        if method == "vtv":
            _, (video,) = vtv.sample_video(self.diffusion, self.model_fn, preset, shape, options=options,
                                           clips=[cond_frames] if cond_frames is not None else [], **sampler)
            return video.to(self.device)
        plan = vtv.build_plan(preset, self.diffusion.sampling_timesteps, NUM_FRAMES, **options)
        sampler["noise"] = sampler.pop("noise_fn")(plan.num_frames)
        return vtv.replacement_sample(self.diffusion, self.model_fn, (len(indices), plan.num_frames, *self.frame_shape),
                                      cond_frames, plan.cond_mask, **sampler)

    def long_video_tail(self, given, length, generators):
        """The last 16 of `length` frames: `given` (B, 16, C, h, w) continued window by window with VTV, each
        window holding the last 8 frames so far clean (the long preset)."""
        shape = (len(given), NUM_FRAMES, *self.frame_shape)
        _, chunks = vtv.sample_video(
            self.diffusion, self.model_fn, "long", shape, options={"length": length, "context_frames": CONTEXT_FRAMES},
            clips=[given], noise_fn=vtv.frame_noise(len(given), self.frame_shape, self.device, generators),
            device=self.device, generator=generators, clip_denoised=self.clip_denoised, method=self.cfg.sample_method)
        tail = next(chunks)  # the given frames come back first
        for chunk in chunks:
            tail = torch.cat([tail, chunk], dim=1)[:, -NUM_FRAMES:]  # (B, 16, C, h, w)
        return tail

    def pixels(self, videos):
        return to_uint8(sampling.to_pixels(videos.to(self.device), self.vae).cpu())


def sample_model(p, run_dir, budget, args, cond_clips, methods):
    """uint8 videos (num_eval, 16, H, W, 3) of every task this model runs, keyed (task, method), plus
    ("long_last16", "vtv"): the last frames of the long videos that continue the first num_long standard samples."""
    evaluator = Evaluator(run_dir, budget, args.seed)
    batches = [list(range(start, min(start + budget.sample_batch, budget.num_eval)))
               for start in range(0, budget.num_eval, budget.sample_batch)]
    jobs = [(task, method) for task in COND_TASKS for method in methods]
    num_long_batches = sum(batch[0] < budget.num_long for batch in batches)
    progress = tqdm(total=len(batches) * (1 + len(jobs)) + num_long_batches, desc=f"sampling {p_label(p)}",
                    unit="job")
    videos = {}

    def keep(key, samples):
        videos.setdefault(key, []).append(evaluator.pixels(samples))
        progress.update()

    with torch.no_grad():
        for indices in batches:
            generators = evaluator.generators(indices)
            progress.set_postfix_str("standard")
            standard = evaluator.run_task("standard", "vtv", indices, generators=generators)
            keep(("standard", "vtv"), standard)
            continued = sum(index < budget.num_long for index in indices)
            if continued:  # the generators go on with the standard samples' noise streams
                progress.set_postfix_str(f"long video, {budget.long_length} frames")
                keep(("long_last16", "vtv"), evaluator.long_video_tail(
                    standard[:continued], budget.long_length, generators[:continued]))
            for task, method in jobs:
                progress.set_postfix_str(f"{task} {method}")
                keep((task, method), evaluator.run_task(task, method, indices, cond_clips[indices]))
    progress.close()
    return {key: np.concatenate(parts) for key, parts in videos.items()}


#################################################################################
#                                    Metrics                                    #
#################################################################################


def fvd(real_stats, features):
    return frechet_distance(*real_stats, *feature_statistics(features))


def bootstrap_fvd_std(real_stats, features, seed):
    """Spread of the FVD over resamplings of the generated clips (real set fixed): the metric's own noise at
    this clip count, not the spread over training seeds."""
    rng = np.random.default_rng(seed)
    values = [fvd(real_stats, features[rng.integers(0, len(features), len(features))])
              for _ in range(BOOTSTRAP_ROUNDS)]
    return float(np.std(values))


def frame_mse(videos, truth):
    """Mean over videos of the per-frame MSE, pixels scaled to [0, 1]: (16,)."""
    diff = videos.astype(np.float64) / 255 - truth.astype(np.float64) / 255
    return (diff**2).mean(axis=(0, 2, 3, 4))


def nearest_known_frame(truth, known):
    """The trivial predictor: every frame is a copy of the closest given frame (ties: the earlier one)."""
    known_indices = np.flatnonzero(known)
    nearest = [known_indices[np.argmin(np.abs(known_indices - frame))] for frame in range(truth.shape[1])]
    return truth[:, nearest]


def psnr(mse):
    return float(10 * np.log10(1.0 / mse))


def task_known_frames(task):
    preset, options = TASKS[task]
    return vtv.build_plan(preset, [0], NUM_FRAMES, **options).cond_mask.numpy()


#################################################################################
#                                 Report: plots                                 #
#################################################################################


def plot_fvd_vs_p(results, path):
    ps, fvds = results["settings"]["ptss"], results["fvd"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)

    def draw(axis, entries, **style):
        return axis.errorbar(ps, [e["value"] for e in entries], yerr=[e["bootstrap_std"] for e in entries],
                             marker="o", capsize=4, **style)

    draw(left, [fvds["standard"][p_label(p)] for p in ps], label="generated vs held-out")
    left.set(title="standard generation")
    beside = -0.03 * (max(ps) - min(ps) or 1)  # the replacement baseline is drawn just left of p = 0's VTV point
    for task in COND_TASKS:
        line = draw(right, [fvds[task][f"{p_label(p)} VTV"] for p in ps], label=f"{task}, VTV")
        baseline = fvds[task]["p=0 replacement"]
        right.errorbar([beside], [baseline["value"]], yerr=[baseline["bootstrap_std"]], marker="x", markersize=9,
                       capsize=4, linestyle="none", color=line[0].get_color(), label=f"{task}, p=0 replacement")
    right.set(title="zero-shot conditioned tasks")
    for axis in (left, right):
        axis.axhline(fvds["real_floor"]["value"], color="gray", linestyle="--", label="real floor (train vs held-out)")
        axis.set(xlabel="PTSS p", ylabel=f"FVD (16 frames, {results['settings']['num_eval']} clips)", ylim=(0, None))
        axis.set_xticks(ps)
        axis.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_task_error(results, path):
    fig, axes = plt.subplots(1, len(COND_TASKS), figsize=(5 * len(COND_TASKS), 4), constrained_layout=True,
                             sharey=True)
    for axis, task in zip(axes, COND_TASKS):
        for label, curve in results["frame_mse"][task].items():
            style = dict(color="gray", linestyle="--") if label == NEAREST else dict(marker=".")
            axis.plot(range(NUM_FRAMES), curve, label=label, **style)
        for frame in np.flatnonzero(task_known_frames(task)):
            axis.axvspan(frame - 0.5, frame + 0.5, color="tab:green", alpha=0.12, linewidth=0)
        axis.set(title=f"{task} (shaded: given frames)", xlabel="frame index")
        axis.set_xticks(range(0, NUM_FRAMES, 2))
    axes[0].set_ylabel("MSE vs ground truth (pixels in [0, 1])")
    axes[0].legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


#################################################################################
#                               Report: markdown                                #
#################################################################################


def compare(a, b):
    """How FVD entry a stands to b: beyond twice their combined bootstrap noise, or within it."""
    noise = math.hypot(a["bootstrap_std"], b["bootstrap_std"])
    if a["value"] < b["value"] - 2 * noise:
        return "lower than"
    if a["value"] > b["value"] + 2 * noise:
        return "higher than"
    return "within noise of"


def reading(results):
    """Sentences computed from the numbers (the caveats follow them in the report)."""
    ps, fvds, psnrs = results["settings"]["ptss"], results["fvd"], results["generated_psnr"]
    lines = []
    floor = fvds["real_floor"]["value"]
    standard = [fvds["standard"][p_label(p)]["value"] for p in ps]
    lines.append(f"- Standard-generation FVDs are {min(standard) / floor:.1f} to {max(standard) / floor:.1f} times the "
                 "real floor: the further above it, the less the samples look like the data, and the less a "
                 "difference between models says about the claims.")
    if 0 in ps and 0.2 in ps:
        a, b = fvds["standard"]["p=0.2"], fvds["standard"]["p=0"]
        verdict = {"lower than": "holds here", "higher than": "is reversed here",
                   "within noise of": "is not resolved at this scale"}[compare(a, b)]
        lines.append(f"- **Claim (a)** {verdict}: standard-generation FVD {a['value']:.1f} for p=0.2 against "
                     f"{b['value']:.1f} for p=0 (difference {a['value'] - b['value']:+.1f}, bootstrap noise of the "
                     f"difference {math.hypot(a['bootstrap_std'], b['bootstrap_std']):.1f}; real floor {floor:.1f}).")
    for task in COND_TASKS:
        vtv_rows = [f"{p_label(p)} VTV" for p in ps]
        model = "p=0.2 VTV" if 0.2 in ps else max(vtv_rows, key=psnrs[task].get)
        ours, baseline, copy = psnrs[task][model], psnrs[task]["p=0 replacement"], psnrs[task][NEAREST]
        fvd_verdict = compare(fvds[task][model], fvds[task]["p=0 replacement"])
        lines.append(f"- **{task}**: {model} reaches {ours:.2f} dB PSNR on the generated frames against "
                     f"{baseline:.2f} dB for p=0 with replacement ({ours - baseline:+.2f} dB); its FVD is "
                     f"{fvd_verdict} the replacement baseline's. It {'beats' if ours > copy else 'does not beat'} "
                     f"copying the nearest given frame ({copy:.2f} dB).")
    if "long_last16" in fvds:
        drift = {"higher than": "worse", "lower than": "better", "within noise of": "within noise"}
        ends = "; ".join(f"{label} {fvds['long_first16'][label]['value']:.1f} -> {last['value']:.1f} "
                         f"({drift[compare(last, fvds['long_first16'][label])]})"
                         for label, last in fvds["long_last16"].items())
        lines.append(f"- **Long video**, FVD of frames 1-16 -> the last 16 of {results['settings']['long_length']}: "
                     f"{ends}.")
    return lines


CAVEATS = """\
- FVD from {num_eval} clips per set (long video: {num_long}) is biased upwards, a 400-d covariance estimated from
  so few clips; hence the real-vs-real floor. Only differences well beyond the bootstrap noise mean anything, and
  no number here is comparable with the paper's 2048-clip FVDs on 256 px FaceForensics.
- One training seed per p: the spread over training seeds is not measured and can exceed the bootstrap noise.
- The model is tiny ({model}, pixel space, {image_size} px), trained for {train_steps} steps and sampled with
  {sampling_steps} {sample_method} steps; the paper trains for hundreds of thousands of steps and samples with
  DDIM-50, so an effect that needs long training cannot show here.
- PSNR and MSE compare with the conditioning clip's own frames. Bouncing motion is fixed by two frames, so
  interpolation and next-frame prediction have a nearly unique answer; image-to-video (one frame, no velocity)
  does not, and a low i2v PSNR is expected even from a perfect model.
"""


def fvd_cell(entry):
    return f"{entry['value']:.1f} ± {entry['bootstrap_std']:.1f}"


def write_markdown(results, path):
    s, fvds, wall = results["settings"], results["fvd"], results["wall_time_s"]
    ps = s["ptss"]
    n = s["num_eval"]
    out = [
        "# Reproducing the paper's claims at small scale",
        "",
        "Written by `tools/reproduce.py` (all numbers also in `reproduce_results.json`). The claims: (a) PTSS with "
        "p = 0.2 beats p = 0 (plain Latte) on standard generation (paper, FaceForensics: FVD 74.31 vs 82.28); "
        "(b) one model does image-to-video, interpolation, next-frame prediction and long video zero-shot.",
        "",
        f"- **Command**: `{results['command']}`",
        f"- **Wall time**: {wall['total'] / 60:.1f} min (training {wall['train'] / 60:.1f}, sampling "
        f"{wall['sample'] / 60:.1f}, I3D features and metrics {wall['metrics'] / 60:.1f})",
        f"- **Machine**: {results['machine']['description']}",
        "- **Settings**: " + ", ".join(f"{key} {value}" for key, value in s.items()) + ".",
        f"- **Model and data**: `configs/demo/demo_train.yaml` with `num_frames={NUM_FRAMES}` ({s['model']}, "
        f"{s['image_size']} px pixel space, frame_interval {s['frame_interval']}), the same seed, data order and "
        f"steps for every p; the EMA weights are sampled with {s['sample_method']}-{s['sampling_steps']} (x0 clipped "
        "to [-1, 1]). FVD: I3D features of 16-frame clips, "
        f"float64 statistics, against held-out bouncing clips (split `test`, clips 0..{n - 1}); "
        f"the conditioning clips are test clips {n}..{2 * n - 1}; "
        f"the real floor scores training clips 0..{n - 1}. ± is the bootstrap std over the generated clips. "
        "Video k of every model and method starts from the same noise (seed + k).",
        "",
        "## Standard generation (claim a)",
        "",
        "| model | FVD | train steps/s | final train loss |",
        "|---|---|---|---|",
    ]
    for label in map(p_label, ps):
        record = results["training"][label]
        out.append(f"| {label} | {fvd_cell(fvds['standard'][label])} | {record['steps_per_sec']:.2f} | "
                   f"{record['final_loss']:.4f} |")
    out += [f"| real floor (train vs held-out clips) | {fvd_cell(fvds['real_floor'])} | | |", "",
            "![FVD vs p](reproduce_fvd_vs_p.png)", "",
            "## Zero-shot conditioned tasks (claim b)", "",
            "Given frames: i2v frame 0; interpolation frames 0 and 15; next_frame frames 0-7. FVD of the 16-frame "
            "outputs (given frames included); PSNR over the generated frames only, against the conditioning clip's "
            "own frames. Replacement: every frame at the same t, the given frames replaced by their forward-noised "
            "versions at every step, the way scalar-timestep models condition zero-shot.", "",
            "| model / method | " + " | ".join(f"{task} FVD | {task} PSNR (dB)" for task in COND_TASKS) + " |",
            "|---|" + "---|---|" * len(COND_TASKS)]
    for label in ["p=0 replacement"] + [f"{p_label(p)} VTV" for p in ps] + [NEAREST]:
        cells = []
        for task in COND_TASKS:
            cells.append(fvd_cell(fvds[task][label]) if label in fvds[task] else "")
            cells.append(f"{results['generated_psnr'][task][label]:.2f}")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out += ["", "![per-frame error](reproduce_task_error.png)", ""]
    if "long_last16" in fvds:
        length = s["long_length"]
        out += [f"## Long video ({length} frames, {CONTEXT_FRAMES} context frames per window)", "",
                f"The first {s['num_long']} standard samples, continued with VTV; both columns score those "
                f"{s['num_long']} videos.", "",
                f"| model | FVD frames 1-16 | FVD frames {length - 15}-{length} |", "|---|---|---|"]
        out += [f"| {label} | {fvd_cell(fvds['long_first16'][label])} | {fvd_cell(last)} |"
                for label, last in fvds["long_last16"].items()]
        out.append("")
    out += ["## Reading", ""] + reading(results) + ["", "Caveats:", "", CAVEATS.format(**s)]
    path.write_text("\n".join(out))


#################################################################################
#                                      Main                                     #
#################################################################################


def machine_description(device):
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
               platform.machine())
    if " amx_bf16" in cpuinfo:
        cpu += " (AMX-BF16)"
    gpu = f"{torch.cuda.get_device_name(0)}, " if device.startswith("cuda") and torch.cuda.is_available() else ""
    return (f"{gpu}{cpu}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}, Python {platform.python_version()}, {platform.system()}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu60", help="a preset of the numbers below")
    for field in dataclasses.fields(Budget):
        parser.add_argument(f"--{field.name}", type=field.type, default=None,
                            help="overrides the budget's value")
    parser.add_argument("--ptss", type=float, nargs="+", default=[0.0, 0.2, 1.0], help="PTSS p of each model "
                        "(0 must be among them: it is the replacement baseline)")
    parser.add_argument("--seed", type=int, default=3407, help="training seed (every p) and first sampling seed")
    parser.add_argument("--results_dir", default=None, help="training runs go to <results_dir>/p<p>/ "
                        "(default results/reproduce/<budget>)")
    parser.add_argument("--docs_dir", default=None, help="where the report, JSON and plots go (default docs/; for "
                        "the smoke budget its results_dir, so a plumbing check never overwrites the real report)")
    args = parser.parse_args(argv)
    args.results_dir = args.results_dir or f"results/reproduce/{args.budget}"
    args.docs_dir = args.docs_dir or (args.results_dir if args.budget == "smoke" else "docs")
    if 0 not in args.ptss:
        parser.error("--ptss must include 0: the p = 0 model runs the replacement baseline")
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Budget) if getattr(args, f.name) is not None}
    budget = dataclasses.replace(BUDGETS[args.budget], **overrides)
    if budget.num_eval < 2 or budget.num_long == 1 or not 0 <= budget.num_long <= budget.num_eval:
        parser.error("need num_eval >= 2 clips per FVD set, and num_long 0 or in [2, num_eval]")
    if budget.sample_method not in ("ddpm", "ddim"):  # checked here, not after the first model has trained
        parser.error(f"sample_method must be ddpm or ddim, got {budget.sample_method!r}")
    if budget.num_long and budget.long_length <= NUM_FRAMES:
        parser.error(f"long_length must exceed {NUM_FRAMES} frames (or set num_long 0)")
    return args, budget


def main(argv=None):
    args, budget = parse_args(argv)
    ps = sorted(set(args.ptss))
    start = time.time()
    wall = {}

    training = {p_label(p): train(p, budget, args) for p in ps}
    wall["train"] = time.time() - start

    # Reference (test 0..n-1), conditioning clips (test n..2n-1) and the floor's training clips (train 0..n-1).
    n = budget.num_eval
    reference = to_uint8(held_out_clips("test", 0, n, args.seed))
    cond_clips = held_out_clips("test", n, n, args.seed)
    cond_truth = to_uint8(cond_clips)
    train_clips = to_uint8(held_out_clips("train", 0, n, args.seed))

    sample_start = time.time()
    videos = {}  # (task, row label) -> uint8 (n, 16, H, W, 3)
    for p in ps:
        methods = ("vtv", "replacement") if p == 0 else ("vtv",)
        sampled = sample_model(p, training[p_label(p)]["run_dir"], budget, args, cond_clips, methods)
        for (task, method), clips in sampled.items():
            videos[task, row_label(p, task, method)] = clips
    wall["sample"] = time.time() - sample_start

    metrics_start = time.time()
    i3d = load_i3d(device=budget.device)
    bf16 = autocast_dtype("auto", torch.device(budget.device).type) is not None  # as train_scripts/demo.sh's FVD

    def features(clips, desc):
        return i3d_clip_features(clips, i3d, batch_size=budget.i3d_batch, device=budget.device, bf16=bf16, desc=desc)

    real_stats = feature_statistics(features(reference, "I3D held-out reference"))

    def scored(feats):
        return {"value": fvd(real_stats, feats), "bootstrap_std": bootstrap_fvd_std(real_stats, feats, args.seed)}

    fvds = {"real_floor": scored(features(train_clips, "I3D training clips (floor)"))}
    standard_features = {}
    for (task, label), clips in videos.items():
        feats = features(clips, f"I3D {task}, {label}")
        fvds.setdefault(task, {})[label] = scored(feats)
        if task == "standard":
            standard_features[label] = feats
    if budget.num_long:  # frames 1-16 of the long videos, scored at the same (biased) clip count as their ends
        fvds["long_first16"] = {label: scored(feats[:budget.num_long]) for label, feats in standard_features.items()}

    frame_errors, generated_mse, generated_psnr = {}, {}, {}
    for task in COND_TASKS:
        generated = ~task_known_frames(task)
        candidates = {label: videos[task, label] for label in ["p=0 replacement"] + [f"{p_label(p)} VTV" for p in ps]}
        candidates[NEAREST] = nearest_known_frame(cond_truth, task_known_frames(task))
        curves = {label: frame_mse(clips, cond_truth) for label, clips in candidates.items()}
        frame_errors[task] = {label: curve.tolist() for label, curve in curves.items()}
        generated_mse[task] = {label: float(curve[generated].mean()) for label, curve in curves.items()}
        generated_psnr[task] = {label: psnr(mse) for label, mse in generated_mse[task].items()}
    wall["metrics"] = time.time() - metrics_start
    wall["total"] = time.time() - start

    command = "python tools/reproduce.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results = {
        "command": command.strip(),
        "settings": {"budget": args.budget, "model": DEMO.model, "image_size": DEMO.image_size,
                     "frame_interval": DEMO.frame_interval, **dataclasses.asdict(budget), "ptss": ps,
                     "seed": args.seed},
        "machine": {"description": machine_description(budget.device), "platform": platform.platform(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "wall_time_s": {key: round(value, 1) for key, value in wall.items()},
        "training": training,
        "fvd": fvds,
        "frame_mse": frame_errors,
        "generated_mse": generated_mse,
        "generated_psnr": generated_psnr,
        "i3d": {"weights": i3d.weights_path, "weights_sha256": i3d.weights_sha256, "bf16": bf16,
                "protocol": "fvd2048_16f at reduced counts: 16 frames, stride 1 on both sides (clips are "
                            "already at the training frame_interval), I3D logits, float64 statistics"},
    }
    docs = Path(args.docs_dir)
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "reproduce_results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot_fvd_vs_p(results, docs / "reproduce_fvd_vs_p.png")
    plot_task_error(results, docs / "reproduce_task_error.png")
    write_markdown(results, docs / "reproduce.md")
    print(f"done in {wall['total'] / 60:.1f} min: {docs / 'reproduce.md'}")


if __name__ == "__main__":
    main()
