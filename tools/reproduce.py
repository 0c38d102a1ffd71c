"""Retest the paper's claims at small scale, through the demo's latent path (a benchmark, not a test).

(a) PTSS with p = 0.2 beats p = 0 (plain Latte) on standard generation (paper, FaceForensics: FVD 74.31 vs 82.28).
(b) One model does image-to-video, interpolation, next-frame prediction and long video zero-shot, better than a
    scalar-timestep model conditioned by replacement.
(c) History guidance (the Diffusion Forcing line) improves the conditioned tasks and keeps long videos from drifting.

Stage 1 is the demo's: its autoencoder (configs/demo/demo_autoencoder.yaml; --autoencoder reuses a trained one) and
the training clips encoded once. Then the demo's FVDM (configs/demo/demo_train.yaml on 4 x 16 x 16 latents of 64-px
bouncing shapes, with the budget's model: Latte-T/4 on cpu, a quarter of the demo's T/2 tokens) is trained by
training.train for every PTSS p and training seed, with the same data, steps and seeds across p. Every model is
scored by the object measure (tools/metrics/objects.py):
    standard      num_eval samples: frames that show the object, videos that keep it (and FVD beside its floor)
    i2v, interpolation, next_frame, long
                  num_eval held-out clips (tools/object_tasks.py), by VTV, by replacement and by VTV with history
                  guidance, beside the real clips (through the autoencoder) and copying the nearest given frame;
                  the long video window by window
Each claim is read from the spread over training seeds: a paired t-interval of the difference (seeds pair the
models, which share data order and noise; held-out clips and sampling noise are the same for every model).
Runs live in <results_dir>/ (a rerun resumes or skips every finished part); the report goes to docs/ (smoke: to its
results folder): reproduce.md, reproduce_results.json and three plots.

    python tools/reproduce.py --budget smoke   # a minute: checks the plumbing, the numbers mean nothing (the test)
    python tools/reproduce.py --budget cpu     # the study on a 2-core CPU (47.6 min on 2 AMX cores: docs/reproduce.md)
    python tools/reproduce.py --budget gpu     # the same scaled up, on cuda
    python tools/reproduce.py --budget cpu --autoencoder results/demo_autoencoder/vae --seeds 5   # flags override
"""
import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import stats  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

import training  # noqa: E402
from datasets.bouncing import BouncingShapes  # noqa: E402
from models.vae import load_vae  # noqa: E402
from sample import sampling  # noqa: E402
from sample.config import load_config as load_sample_config  # noqa: E402
from tools import object_tasks  # noqa: E402
from tools.encode_latents import encode_dataset  # noqa: E402
from tools.metrics import feature_statistics, frechet_distance, i3d_clip_features, load_i3d  # noqa: E402
from tools.metrics.objects import object_statistics  # noqa: E402
from tools.runtime import autocast_dtype, video_to_uint8  # noqa: E402
from training.autoencoder import train_autoencoder  # noqa: E402
from training.autoencoder_config import autoencoder_run_dir, load_autoencoder_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO_AUTOENCODER = REPO / "configs" / "demo" / "demo_autoencoder.yaml"
DEMO_TRAIN = REPO / "configs" / "demo" / "demo_train.yaml"
DEMO_SAMPLE = REPO / "configs" / "demo" / "demo_sample.yaml"
DEMO = training.load_config(DEMO_TRAIN)  # clip length, frame size and frame interval of every run
FVD_FRAMES = 16  # the I3D protocol scores 16-frame clips: the 8-frame samples are continued once (long preset)
METHODS = ("VTV", "replacement", "VTV + history guidance")  # how each model conditions the tasks
REAL, COPY = object_tasks.REAL, object_tasks.COPY
CONFIDENCE = 0.95  # of the paired t-intervals


@dataclass(frozen=True)
class Budget:
    """Every number that sets the cost of a run; a command-line flag of the same name overrides one."""

    model: str  # the FVDM (the demo's is Latte-T/2; the cpu study was measured with T/4, a quarter of the tokens)
    autoencoder_steps: int  # stage 1 optimizer steps (the demo's: 1200)
    dataset_length: int  # training clips (bouncing), encoded once
    train_steps: int  # FVDM optimizer steps per model
    batch_size: int  # FVDM training clips per step
    seeds: int  # training seeds per PTSS p (the first is --seed, then --seed + 1, ...)
    num_eval: int  # standard samples, and held-out clips per task
    long_length: int  # frames of each long video (windows of the model's 8 frames, half carried over)
    history_guidance: float  # w of the "VTV + history guidance" method (top-level history)
    sample_method: str  # "ddpm" (ancestral) or "ddim"
    sampling_steps: int  # respaced sampler steps
    sample_batch: int  # videos sampled together
    fvd_clips: int  # standard samples continued to 16 frames for FVD, and real clips per side (0: no FVD)
    i3d_batch: int  # clips per I3D call
    num_workers: int  # training data-loader workers
    device: str  # sampling and I3D; training takes train_video.py's device (cuda when available)


BUDGETS = {
    "smoke": Budget(model="Latte-T/4", autoencoder_steps=10, dataset_length=8, train_steps=6, batch_size=2, seeds=2,
                    num_eval=2, long_length=12, history_guidance=2.0, sample_method="ddpm", sampling_steps=3,
                    sample_batch=2, fvd_clips=0, i3d_batch=2, num_workers=0, device="cpu"),
    "cpu": Budget(model="Latte-T/4", autoencoder_steps=1200, dataset_length=4000, train_steps=1500, batch_size=4,
                  seeds=3, num_eval=16, long_length=16, history_guidance=2.0, sample_method="ddpm", sampling_steps=25,
                  sample_batch=16, fvd_clips=16, i3d_batch=8, num_workers=0, device="cpu"),
    "gpu": Budget(model="Latte-T/2", autoencoder_steps=5000, dataset_length=20_000, train_steps=20_000,
                  batch_size=32, seeds=3, num_eval=256, long_length=48, history_guidance=2.0, sample_method="ddpm",
                  sampling_steps=50, sample_batch=128, fvd_clips=256, i3d_batch=32, num_workers=4, device="cuda"),
}
SMOKE_AUTOENCODER = ["eval_num_clips=2", "latent_stat_clips=2", "local_batch_size=2",
                     "block_out_channels=[8,16,32]", "norm_num_groups=4"]


def p_label(p):
    return f"p={p:g}"


def method_specs(budget):
    """{object_tasks method string: METHODS entry} of the budget."""
    specs = ("vtv", "replacement", f"vtv:history_guidance={budget.history_guidance:g}")
    return dict(zip(specs, METHODS, strict=True))


#################################################################################
#                          Stage 1 and training                                 #
#################################################################################


def stage_one(budget, args):
    """(VAE folder, latent cache folder): the demo's autoencoder trained (or args.autoencoder) and the training clips
    encoded with it."""
    root = Path(args.results_dir)
    if args.autoencoder:
        vae_dir = Path(args.autoencoder)
    else:
        overrides = [f"results_dir={root}", "experiment_name=autoencoder",
                     f"max_train_steps={budget.autoencoder_steps}",
                     f"dataset_length={budget.dataset_length}", f"num_workers={budget.num_workers}", "preview_every=0",
                     f"eval_every={budget.autoencoder_steps}", f"ckpt_every={max(1, budget.autoencoder_steps // 3)}"]
        cfg = load_autoencoder_config(DEMO_AUTOENCODER, overrides + (SMOKE_AUTOENCODER if args.budget == "smoke"
                                                                     else []))
        train_autoencoder(cfg)
        vae_dir = autoencoder_run_dir(cfg) / "vae"
    latents = root / "latents"
    cfg = training.load_config(DEMO_TRAIN, [f"vae={vae_dir}", f"latent_cache_dir={latents}",
                                            f"dataset_length={budget.dataset_length}"])
    encode_dataset(cfg, latents, batch_size=32, num_workers=budget.num_workers, mixed_precision="auto")
    return vae_dir, latents


def train(p, seed, stage, budget, args):
    """Train the model of PTSS p and training seed `seed` as train_video.py does (resumed, or skipped when
    finished); its training record."""
    vae_dir, latents = stage
    overrides = [
        f"vae={vae_dir}", f"latent_cache_dir={latents}", f"dataset_length={budget.dataset_length}", f"ptss_p={p}",
        f"model={budget.model}",
        f"max_train_steps={budget.train_steps}", f"local_batch_size={budget.batch_size}",
        f"num_workers={budget.num_workers}", f"global_seed={seed}", f"results_dir={args.results_dir}",
        f"experiment_name=p{p:g}_seed{seed}", "resume_from_checkpoint=auto", "preview_every=0",
        f"ckpt_every={max(1, budget.train_steps // 5)}",
    ]
    cfg = training.load_config(DEMO_TRAIN, overrides)
    training.train(cfg)
    run_dir = training.run_dir_of(cfg)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {"run_dir": str(run_dir), "steps": records[-1]["step"], "final_loss": records[-1]["loss"],
            "steps_per_sec": float(np.mean([r["steps_per_sec"] for r in records])), "config_overrides": overrides}


#################################################################################
#                                  Evaluation                                   #
#################################################################################


def real_clips(split, count, seed):
    """uint8 (count, 16, H, W, 3): the first bouncing clips of a split, at the demo's frame size and interval."""
    dataset = BouncingShapes(num_frames=FVD_FRAMES, frame_interval=DEMO.frame_interval, image_size=DEMO.image_size,
                             split=split, seed=seed, length=count)
    return np.stack([video_to_uint8(dataset[index]["video"]) for index in range(count)])


def sample_standard(cfg_overrides, model, vae, settings, budget, device):
    """uint8 (num_eval, frames, H, W, 3): standard samples, the first fvd_clips continued to 16 frames (long preset;
    its first window is the standard sample itself, so both sets share their first 8 frames)."""
    videos = []
    for count, length in ((budget.fvd_clips, FVD_FRAMES), (budget.num_eval - budget.fvd_clips, None)):
        if count <= 0:
            continue
        keys = ["preset=long", f"length={length}"] if length else ["preset=standard"]
        cfg = load_sample_config(DEMO_SAMPLE, [*cfg_overrides, *keys])
        diffusion = sampling.create_sampling_diffusion(cfg, settings)
        first = len(videos)
        batches = sampling.batches_of(list(range(first, first + count)), budget.sample_batch)
        for _, _, chunks in sampling.sampled_batches(cfg, model, diffusion, settings, batches, [], device):
            pixels = sampling.to_pixels(torch.cat(list(chunks), dim=1).to(device), vae).cpu()
            videos.extend(video_to_uint8(video) for video in pixels)
    return videos


def evaluate(run_dir, budget, args, held_out, real, i3d_reference):
    """Object statistics of the standard samples (and their FVD) and every task's scores by every method.

    held_out: object_tasks.held_out_set(...); real: those clips through the study's autoencoder."""
    overrides = [f"ckpt={run_dir}/checkpoints", f"sample_method={budget.sample_method}",
                 f"num_sampling_steps={budget.sampling_steps}", "mixed_precision=auto", f"seed={args.seed}",
                 f"device={budget.device}", "progress=false"]
    device = torch.device(budget.device)
    model, vae, settings = sampling.load_model_for_sampling(load_sample_config(DEMO_SAMPLE, overrides), device)
    videos = sample_standard(overrides, model, vae, settings, budget, device)
    standard = object_statistics(np.stack([video[:DEMO.num_frames] for video in videos]), DEMO.frame_interval)
    result = {"standard": standard, "tasks": {}}
    if budget.fvd_clips:
        result["fvd"] = i3d_reference.fvd(np.stack(videos[:budget.fvd_clips]), f"I3D {Path(run_dir).name}")
    specs = method_specs(budget)
    methods = {spec: object_tasks.method_overrides(spec) for spec in specs}
    for task in object_tasks.TASKS:
        scores, _, _, _ = object_tasks.evaluate_task(
            task, methods, config=DEMO_SAMPLE, overrides=overrides, model=model, vae=vae, settings=settings,
            held_out=held_out, real=real, length=budget.long_length, frame_interval=DEMO.frame_interval,
            batch_size=budget.sample_batch, device=device)
        result["tasks"][task] = {specs.get(row, row): row_scores for row, row_scores in scores.items()}
    return result


class I3DReference:
    """FVD against held-out clips (test split), with the real-vs-real floor (training clips)."""

    def __init__(self, budget, seed):
        self.budget = budget
        self.i3d = load_i3d(device=budget.device)
        self.bf16 = autocast_dtype("auto", torch.device(budget.device).type) is not None
        self.reference = feature_statistics(self.features(real_clips("test", budget.fvd_clips, seed), "I3D reference"))
        self.floor = self.fvd(real_clips("train", budget.fvd_clips, seed), "I3D training clips (floor)")

    def features(self, clips, desc):
        return i3d_clip_features(clips, self.i3d, batch_size=self.budget.i3d_batch, device=self.budget.device,
                                 bf16=self.bf16, desc=desc)

    def fvd(self, clips, desc):
        return frechet_distance(*self.reference, *feature_statistics(self.features(clips, desc)))


#################################################################################
#                              Seeds and claims                                 #
#################################################################################


def per_seed(results, p, path):
    """The value at `path` (keys into one model's evaluation) for each seed of PTSS p, in seed order."""
    values = []
    for evaluation in results["models"][p_label(p)].values():
        for key in path:
            evaluation = evaluation[key]
        values.append(float(evaluation))
    return np.array(values)


def spread(values):
    """mean and sample std over seeds (std 0 for one seed)."""
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def paired_reading(a, b, higher_is_better):
    """How a stands to b over paired seeds: mean difference a - b, the half-width of its t-interval, and whether
    the claim "a is better than b" holds (interval on the better side of 0), fails (on the worse side) or stays
    undecided. With NaN in either (no frame to measure), undecided."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = len(diff)
    if n < 2 or np.isnan(diff).any():
        return {"difference": float(np.mean(diff)) if n else float("nan"), "half_width": float("nan"),
                "verdict": "undecided"}
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * np.std(diff, ddof=1) / np.sqrt(n))
    mean = float(np.mean(diff))
    better = mean if higher_is_better else -mean
    verdict = "holds" if better > half else "fails" if better < -half else "undecided"
    return {"difference": mean, "half_width": half, "verdict": verdict}


def claims(results, ps):
    """[(claim, measure, a label, b label, a values, b values, higher_is_better)] that the study can read."""
    rows = []
    if 0 in ps:
        for p in ps:
            if p != 0:
                rows.append((f"(a) PTSS {p_label(p)} beats p=0, standard generation", "frames showing the object",
                             p_label(p), "p=0", per_seed(results, p, ["standard", "shows_object"]),
                             per_seed(results, 0, ["standard", "shows_object"]), True))
        if "fvd" in next(iter(results["models"]["p=0"].values())) and 0.2 in ps:
            rows.append(("(a) PTSS p=0.2 beats p=0, standard generation", "FVD (16 frames)", "p=0.2", "p=0",
                         per_seed(results, 0.2, ["fvd"]), per_seed(results, 0, ["fvd"]), False))
    model = 0.2 if 0.2 in ps else max(ps)
    label = p_label(model)
    for task in object_tasks.TASKS:
        measures = [("shows_object", "frames showing the object", True)]
        measures.append(("videos_move_plausibly", "videos moving plausibly", True) if task == "i2v"
                        else ("centre_error", "centre error (px)", False))
        if task == "long":  # colour shift over long videos: the complaint users of long-video models raise most
            measures.append(("colour_drift", "colour drift (RGB distance to the given frames)", False))
        for key, measure, higher in measures:
            ours = per_seed(results, model, ["tasks", task, "VTV", key])
            if 0 in ps:
                rows.append((f"(b) {task}: {label} VTV beats p=0 replacement", measure, f"{label} VTV",
                             "p=0 replacement", ours, per_seed(results, 0, ["tasks", task, "replacement", key]),
                             higher))
            rows.append((f"(b) {task}: VTV beats replacement on the {label} model", measure, f"{label} VTV",
                         f"{label} replacement", ours, per_seed(results, model, ["tasks", task, "replacement", key]),
                         higher))
            rows.append((f"(c) {task}: history guidance helps the {label} model", measure,
                         f"{label} VTV + history guidance", f"{label} VTV",
                         per_seed(results, model, ["tasks", task, "VTV + history guidance", key]), ours, higher))
        if task != "i2v":
            rows.append((f"(b) {task}: {label} VTV beats copying the nearest given frame", "centre error (px)",
                         f"{label} VTV", COPY, per_seed(results, model, ["tasks", task, "VTV", "centre_error"]),
                         per_seed(results, model, ["tasks", task, COPY, "centre_error"]), False))
    for method in ("VTV", "VTV + history guidance"):
        first = per_seed(results, model, ["tasks", "long", method, "windows", 0, "shows_object"])
        last = per_seed(results, model, ["tasks", "long", method, "windows", -1, "shows_object"])
        rows.append((f"(c) long: the {label} model's last window keeps up with its first ({method})",
                     "frames showing the object", "last window", "first window", last, first, True))
    return rows


#################################################################################
#                                    Report                                     #
#################################################################################


def mean_cell(values, form="{:.0%}"):
    mean, std = spread(values)
    if np.isnan(mean):
        return "-"
    return f"{form.format(mean)} ± {form.format(std)}"


def task_rows(results, ps):
    """[(label, p, method)] of the task tables: every model and method, then the rows made without the model."""
    return [(f"{p_label(p)} {method}", p, method) for p in ps for method in METHODS] + [
        (REAL, ps[0], REAL), (COPY, ps[0], COPY)]


def plot_standard(results, ps, path):
    fig, axis = plt.subplots(figsize=(5, 4), constrained_layout=True)
    for index, p in enumerate(ps):
        values = per_seed(results, p, ["standard", "shows_object"])
        axis.scatter([p] * len(values), values, color="tab:blue", alpha=0.5, s=16)
        mean, std = spread(values)
        axis.errorbar([p], [mean], yerr=[std], marker="o", color="tab:blue", capsize=4,
                      label="mean ± std over seeds" if index == 0 else None)
    axis.set(xlabel="PTSS p", ylabel="frames showing the object", title="standard generation", ylim=(0, None))
    axis.set_xticks(ps)
    axis.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_tasks(results, ps, path):
    tasks = object_tasks.TASKS
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.8), constrained_layout=True, sharey=True)
    offsets = np.linspace(-0.02, 0.02, len(METHODS)) * (max(ps) - min(ps) or 1)
    for axis, task in zip(axes, tasks):
        for offset, method in zip(offsets, METHODS):
            means, stds = zip(*(spread(per_seed(results, p, ["tasks", task, method, "shows_object"])) for p in ps))
            axis.errorbar(np.array(ps) + offset, means, yerr=stds, marker="o", capsize=3, label=method)
        copy = spread(per_seed(results, ps[0], ["tasks", task, REAL, "shows_object"]))[0]
        axis.axhline(copy, color="gray", linestyle="--", label=REAL)
        axis.set(title=task, xlabel="PTSS p", ylim=(0, 1.05))
        axis.set_xticks(ps)
    axes[0].set_ylabel("generated frames showing the object")
    axes[0].legend(fontsize=7)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_long(results, ps, path):
    windows = results["long_windows"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for p in ps:
        for method, style in (("VTV", "-"), ("VTV + history guidance", "--")):
            shows, errors = ([spread(per_seed(results, p, ["tasks", "long", method, "windows", w, key]))[0]
                              for w in range(len(windows))] for key in ("shows_object", "centre_error"))
            left.plot(range(1, len(windows) + 1), shows, style, marker="o", label=f"{p_label(p)} {method}")
            right.plot(range(1, len(windows) + 1), errors, style, marker="o")
    copy = [spread(per_seed(results, ps[0], ["tasks", "long", COPY, "windows", w, "centre_error"]))[0]
            for w in range(len(windows))]
    right.plot(range(1, len(windows) + 1), copy, color="gray", linestyle=":", label=COPY)
    left.set(xlabel="window", ylabel="frames showing the object", ylim=(0, 1.05), title="long video, per window")
    right.set(xlabel="window", ylabel="centre error (px)", title="distance from the true trajectory")
    for axis in (left, right):
        axis.set_xticks(range(1, len(windows) + 1))
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    fig.savefig(path, dpi=120)
    plt.close(fig)


CAVEATS = """\
- {seeds} training seeds per p: an interval from so few seeds is wide, so "undecided" is the expected reading of a
  small effect; its half-width is the difference this budget could have told apart.
- The model is tiny ({model}, {train_steps} steps, 4 x 16 x 16 latents of 64-px frames) and sampled with
  {sampling_steps} {sample_method} steps; the paper trains for hundreds of thousands of steps, so an effect that
  needs long training cannot show here. The real-clip rows are the most a model decoded by this autoencoder scores.
- Every task scores {num_eval} held-out clips; the object measure reads each generated frame (shape, colour, size,
  one part) and its centre against the clip's closed-form trajectory. Image-to-video fixes no velocity, so its
  motion is judged by plausibility (straight flight at a real speed, mirrored at the walls), not by the truth.
- FVD (16-frame clips: the 8-frame samples continued once) from {fvd_clips} clips is biased upwards; compare it with
  the real floor only, and never with the paper's 2048-clip FVDs.
"""


def write_markdown(results, ps, path):
    s, wall = results["settings"], results["wall_time_s"]
    out = [
        "# Retesting the paper's claims at small scale",
        "",
        "Written by `tools/reproduce.py` (every number also in `reproduce_results.json`). Claims: (a) PTSS with "
        "p = 0.2 beats p = 0 (plain Latte) on standard generation (paper, FaceForensics: FVD 74.31 vs 82.28); (b) one "
        "model does image-to-video, interpolation, next-frame prediction and long video zero-shot, better than a "
        "scalar-timestep model conditioned by replacement; (c) history guidance helps the conditioned tasks and the "
        "long video.",
        "",
        f"- **Command**: `{results['command']}`",
        f"- **Commit**: {results['commit']}",
        f"- **Wall time**: {wall['total'] / 60:.1f} min (stage 1 {wall['stage_one'] / 60:.1f}, training "
        f"{wall['train'] / 60:.1f}, evaluation {wall['evaluate'] / 60:.1f})",
        f"- **Machine**: {results['machine']['description']}",
        "- **Settings**: " + ", ".join(f"{key} {value}" for key, value in s.items()) + ".",
        f"- **Models**: `configs/demo/demo_train.yaml` ({s['model']}, {s['image_size']}-px frames in the demo "
        f"autoencoder's latent space, {s['num_frames']}-frame clips, frame_interval {s['frame_interval']}) for every "
        f"p, trained with seeds {s['seed_list']}; the same seed means the same data order and noise for every p. "
        f"EMA weights sampled with {s['sample_method']}-{s['sampling_steps']}; video k of every model and method "
        "starts from the same noise. Cells are mean ± std over the seeds.",
        "",
        "## Standard generation", "",
        "| model | frames showing the object | videos keeping it | FVD | train steps/s | final loss |",
        "|---|---|---|---|---|---|",
    ]
    for p in ps:
        fvd = mean_cell(per_seed(results, p, ["fvd"]), "{:.0f}") if s["fvd_clips"] else "-"
        steps = [record["steps_per_sec"] for record in results["training"][p_label(p)].values()]
        losses = [record["final_loss"] for record in results["training"][p_label(p)].values()]
        out.append(f"| {p_label(p)} | {mean_cell(per_seed(results, p, ['standard', 'shows_object']))} | "
                   f"{mean_cell(per_seed(results, p, ['standard', 'videos_keep_object']))} | {fvd} | "
                   f"{np.mean(steps):.2f} | {np.mean(losses):.4f} |")
    if s["fvd_clips"]:
        out.append(f"| real floor (training vs held-out clips) | | | {results['fvd_floor']:.0f} | | |")
    out += ["", "![standard generation](reproduce_standard.png)", "", "## Zero-shot conditioned tasks", "",
            "Given frames: i2v frame 0, interpolation the first and last, next_frame and long the first half. "
            "Replacement: every frame at one t, the given ones forward-noised to it at each step (how a "
            "scalar-timestep model conditions); history guidance: w = "
            f"{s['history_guidance']:g}, the branch without the given frames seeing them at the top level.", ""]
    columns = object_tasks.FRAME_COLUMNS + object_tasks.VIDEO_COLUMNS
    for task in object_tasks.TASKS:
        out += [f"### {task}", "", "| model / method | " + " | ".join(h for _, h, _ in columns) + " |",
                "|---|" + "---|" * len(columns)]
        for label, p, method in task_rows(results, ps):
            cells = [mean_cell(per_seed(results, p, ["tasks", task, method, key]), form)
                     for key, _, form in columns]
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append("")
    windows = results["long_windows"]
    out += ["### long, window by window", "",
            f"Frames showing the object, the centre error (px) and the colour drift of the frames each window "
            f"generates ({', '.join(f'{w[0]}-{w[-1]}' for w in windows)}).", "",
            "| model / method | " + " | ".join(f"window {k + 1}" for k in range(len(windows))) + " |",
            "|---|" + "---|" * len(windows)]
    for label, p, method in task_rows(results, ps):
        def window(w, key, form):
            return mean_cell(per_seed(results, p, ["tasks", "long", method, "windows", w, key]), form)

        cells = [f"{window(w, 'shows_object', '{:.0%}')}, {window(w, 'centre_error', '{:.2f}')}, "
                 f"drift {window(w, 'colour_drift', '{:.3f}')}" for w in range(len(windows))]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out += ["", "![tasks](reproduce_tasks.png)", "", "![long video](reproduce_long.png)", "",
            "## The claims", "",
            f"Difference a - b over paired seeds with the half-width of its {CONFIDENCE:.0%} t-interval: a claim "
            "holds when the interval lies on its side of zero, fails when it lies on the other, and is undecided "
            "otherwise; the half-width is about the smallest difference this budget detects.", "",
            "| claim | measure | a | b | a - b | verdict |", "|---|---|---|---|---|---|"]
    for reading in results["claims"]:
        form = ("{:.3f}" if "drift" in reading["measure"] else
                "{:.2f}" if "px" in reading["measure"] or "FVD" in reading["measure"] else "{:.1%}")
        out.append(f"| {reading['claim']} | {reading['measure']} | {reading['a']}: {form.format(reading['mean_a'])} "
                   f"| {reading['b']}: {form.format(reading['mean_b'])} | {form.format(reading['difference'])} ± "
                   f"{form.format(reading['half_width'])} | **{reading['verdict']}** |")
    counts = {verdict: sum(r["verdict"] == verdict for r in results["claims"])
              for verdict in ("holds", "fails", "undecided")}
    out += ["", f"Of {len(results['claims'])} readings: {counts['holds']} hold, {counts['fails']} fail, "
            f"{counts['undecided']} are undecided at this scale.", "", "Caveats:", "", CAVEATS.format(**s)]
    path.write_text("\n".join(out))


#################################################################################
#                                      Main                                     #
#################################################################################


def machine_description(device):
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
               platform.machine())
    flags = [flag for flag in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if f" {flag}" in cpuinfo]
    cpu += f" ({', '.join(flags)})" if flags else ""
    gpu = f"{torch.cuda.get_device_name(0)}, " if device.startswith("cuda") and torch.cuda.is_available() else ""
    return (f"{gpu}{cpu}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}, Python {platform.python_version()}, {platform.system()}")


def current_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu", help="a preset of the numbers below")
    for field in dataclasses.fields(Budget):
        parser.add_argument(f"--{field.name}", type=field.type, default=None, help="overrides the budget's value")
    parser.add_argument("--ptss", type=float, nargs="+", default=[0.0, 0.2, 0.5, 1.0],
                        help="PTSS p of each model (0 must be among them: the scalar-timestep baseline)")
    parser.add_argument("--seed", type=int, default=3407, help="first training seed, and the sampling seed")
    parser.add_argument("--autoencoder", default=None, help="a trained VAE folder (e.g. results/demo_autoencoder/"
                        "vae) instead of training stage 1")
    parser.add_argument("--results_dir", default=None, help="default results/reproduce/<budget>")
    parser.add_argument("--docs_dir", default=None, help="where the report, JSON and plots go (default docs/; for "
                        "the smoke budget its results_dir, so a plumbing check never overwrites the real report)")
    args = parser.parse_args(argv)
    args.results_dir = args.results_dir or f"results/reproduce/{args.budget}"
    args.docs_dir = args.docs_dir or (args.results_dir if args.budget == "smoke" else "docs")
    if 0 not in args.ptss:
        parser.error("--ptss must include 0: the p = 0 model is the scalar-timestep baseline")
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Budget) if getattr(args, f.name) is not None}
    budget = dataclasses.replace(BUDGETS[args.budget], **overrides)
    if budget.seeds < 1 or budget.num_eval < 1:
        parser.error("need at least one seed and one clip (seeds >= 2 for any verdict)")
    if budget.fvd_clips and not 2 <= budget.fvd_clips <= budget.num_eval:
        parser.error("fvd_clips must be 0 or in [2, num_eval]")
    if budget.sample_method not in ("ddpm", "ddim"):  # checked here, not after the first model has trained
        parser.error(f"sample_method must be ddpm or ddim, got {budget.sample_method!r}")
    if budget.long_length <= DEMO.num_frames:
        parser.error(f"long_length must exceed the model's {DEMO.num_frames} frames")
    return args, budget


def main(argv=None):
    args, budget = parse_args(argv)
    ps = sorted(set(args.ptss))
    seeds = [args.seed + k for k in range(budget.seeds)]
    start = time.time()
    wall = {}

    stage = stage_one(budget, args)
    wall["stage_one"] = time.time() - start
    train_start = time.time()
    records = {p_label(p): {str(seed): train(p, seed, stage, budget, args) for seed in seeds} for p in ps}
    wall["train"] = time.time() - train_start

    evaluate_start = time.time()
    held_out = object_tasks.held_out_set(budget.num_eval, budget.long_length, DEMO.frame_interval, DEMO.image_size)
    real = object_tasks.through_autoencoder(held_out[0], load_vae(stage[0], device=budget.device),
                                            budget.sample_batch, torch.device(budget.device))
    i3d_reference = I3DReference(budget, args.seed) if budget.fvd_clips else None
    models = {}
    progress = tqdm(total=len(ps) * len(seeds), desc="evaluating models", unit="model")
    for p in ps:
        for seed in seeds:
            progress.set_postfix_str(f"{p_label(p)} seed {seed}")
            models.setdefault(p_label(p), {})[str(seed)] = evaluate(
                records[p_label(p)][str(seed)]["run_dir"], budget, args, held_out, real, i3d_reference)
            progress.update()
    progress.close()
    wall["evaluate"] = time.time() - evaluate_start
    wall["total"] = time.time() - start

    command = "python tools/reproduce.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results = {
        "command": command.strip(), "commit": current_commit(),
        "settings": {"budget": args.budget, "model": budget.model, "image_size": DEMO.image_size,
                     "num_frames": DEMO.num_frames, "frame_interval": DEMO.frame_interval,
                     **dataclasses.asdict(budget), "ptss": ps, "seed_list": seeds,
                     "autoencoder": str(stage[0])},
        "machine": {"description": machine_description(budget.device), "platform": platform.platform(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
        "wall_time_s": {key: round(value, 1) for key, value in wall.items()},
        "training": records, "models": models,
        "long_windows": [np.flatnonzero(mask).tolist()
                         for mask in object_tasks.long_windows(DEMO.num_frames, budget.long_length)],
    }
    if i3d_reference is not None:
        results["fvd_floor"] = i3d_reference.floor
        results["i3d"] = {"weights": i3d_reference.i3d.weights_path, "weights_sha256": i3d_reference.i3d.weights_sha256,
                          "bf16": i3d_reference.bf16}
    results["claims"] = [
        {"claim": claim, "measure": measure, "a": a, "b": b, "values_a": list(values_a), "values_b": list(values_b),
         "mean_a": float(np.mean(values_a)), "mean_b": float(np.mean(values_b)),
         **paired_reading(values_a, values_b, higher)}
        for claim, measure, a, b, values_a, values_b, higher in claims(results, ps)]
    docs = Path(args.docs_dir)
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "reproduce_results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot_standard(results, ps, docs / "reproduce_standard.png")
    plot_tasks(results, ps, docs / "reproduce_tasks.png")
    plot_long(results, ps, docs / "reproduce_long.png")
    write_markdown(results, ps, docs / "reproduce.md")
    print(f"done in {wall['total'] / 60:.1f} min: {docs / 'reproduce.md'}")


if __name__ == "__main__":
    main()
