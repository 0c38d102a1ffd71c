"""Measure what timm, torchvision and accelerate would change here, so README's Dependencies section rests on numbers.

    python tools/benchmark_libraries.py --threads 1                     # every part
    python tools/benchmark_libraries.py --parts timm --models Latte-S/2:2:16:32 --dtypes bf16 --threads 1 --steps 7
    python tools/benchmark_libraries.py --parts imports,torchvision,memory,launch

Parts:
  timm         our Latte against copies with timm's Mlp + PatchEmbed, timm's Attention in the spatial blocks, and
               timm's layers everywhere: state-dict keys, max |difference| of outputs and gradients with the same
               weights, and training-step seconds (variants interleaved, medians) in fp32 and bf16 autocast
  imports      seconds to import each library in a fresh process, over `import torch` (paid by every script)
  torchvision  transforms.v2.functional resize + center_crop + horizontal_flip against datasets.video_io on random
               uint8 clips: output size, crop offset, max |difference|, seconds per clip
  memory       bytes per GPU of fp32 weights + gradients + AdamW moments + EMA for every model size, replicated
               (DDP) and sharded (ZeRO-2 / FSDP SHARD_GRAD_OP, ZeRO-3 / FSDP FULL_SHARD)
  launch       RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT that torchrun and `accelerate launch` give a script
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from copy import deepcopy
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from diffusion import create_diffusion, sample_frame_timesteps
from models import create_model
from models.latte import MODEL_SIZES

REPO = Path(__file__).resolve().parents[1]
TIMM_VARIANTS = ("ours", "timm Mlp+PatchEmbed", "timm spatial Attention", "timm all")


# ----------------------------------------------------------------------------------------------------- timm

def timm_attention(dim, num_heads, temporal):
    """timm's Attention (qkv, proj: our keys) on (B, N, T, D) tokens: spatial blocks flatten (B, N) for free,
    temporal blocks need a transpose each way, since timm attends over dim 1 of (B, L, D)."""
    from timm.layers import Attention

    class TokenLayoutAttention(Attention):
        def forward(self, x):  # (B, N, T, D)
            if temporal:
                out = super().forward(rearrange(x, "b n t d -> (b t) n d"))
                return rearrange(out, "(b t) n d -> b n t d", b=x.shape[0])
            return super().forward(x.flatten(0, 1)).view(x.shape)

    return TokenLayoutAttention(dim, num_heads, qkv_bias=True)


def with_timm_layers(model, variant):
    """A copy of model with timm's layers where variant says, holding the same weights (loaded strictly)."""
    from timm.layers import Mlp, PatchEmbed

    copy = deepcopy(model)
    dim, heads = model.hidden_size, model.spatial_blocks[0].attn.num_heads
    blocks = [*copy.spatial_blocks, *copy.temporal_blocks]
    if variant in ("timm Mlp+PatchEmbed", "timm all"):
        copy.x_embedder = PatchEmbed(model.input_size, model.patch_size, model.in_channels, dim)
        for block in blocks:
            block.mlp = Mlp(dim, block.mlp.fc1.out_features, act_layer=partial(nn.GELU, approximate="tanh"))
    if variant in ("timm spatial Attention", "timm all"):
        for block in copy.spatial_blocks:
            block.attn = timm_attention(dim, heads, temporal=False)
    if variant == "timm all":
        for block in copy.temporal_blocks:
            block.attn = timm_attention(dim, heads, temporal=True)
    copy.load_state_dict(model.state_dict())  # strict: raises on any missing or unexpected key
    return copy


def same_state_dict_keys(a, b):
    """Whether two models' state dicts have the same keys with the same shapes (a checkpoint loads in either)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[key].shape == sb[key].shape for key in sa)


def perturbed_model(name, input_size, num_frames, channels):
    """A model whose adaLN-Zero layers are not zero, so outputs and gradients depend on every weight."""
    torch.manual_seed(0)
    model = create_model(name, input_size=input_size, num_frames=num_frames, in_channels=channels)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:  # the fixed sin-cos tables stay
                param.normal_(std=0.02)
    return model


def output_and_grad_difference(a, b, x, t):
    """Max |a - b| of the outputs and of the parameter gradients of sum(output ** 2), and the largest of each."""
    outputs, grads = [], []
    for model in (a, b):
        model.zero_grad(set_to_none=True)
        out = model(x, t)
        (out ** 2).sum().backward()
        outputs.append(out.detach())
        grads.append({key: p.grad for key, p in model.named_parameters() if p.grad is not None})
    grad_diff = max((grads[0][key] - grads[1][key]).abs().max().item() for key in grads[0])
    grad_scale = max(grad.abs().max().item() for grad in grads[0].values())
    return (outputs[0] - outputs[1]).abs().max().item(), outputs[0].abs().max().item(), grad_diff, grad_scale


def compare_timm(args, name, batch, num_frames, input_size):
    channels = 4
    print(f"\n{name}, batch {batch}, {num_frames}x{channels}x{input_size}x{input_size}")
    ours = perturbed_model(name, input_size, num_frames, channels)
    variants = {"ours": ours, **{v: with_timm_layers(ours, v) for v in TIMM_VARIANTS[1:]}}
    torch.manual_seed(1)
    x = torch.randn(batch, num_frames, channels, input_size, input_size)
    t = sample_frame_timesteps(batch, num_frames, 1.0)
    for variant, model in list(variants.items())[1:]:
        out_diff, out_scale, grad_diff, grad_scale = output_and_grad_difference(ours, model, x, t)
        print(f"  {variant:<24} keys identical: {same_state_dict_keys(ours, model)}; max |output diff| "
              f"{out_diff:.2e} (outputs up to {out_scale:.2f}), max |grad diff| {grad_diff:.2e} "
              f"(gradients up to {grad_scale:.2e})")

    diffusion = create_diffusion("")
    for dtype_name in args.dtypes.split(","):
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
        optimizers = {v: torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0, fused=True)
                      for v, m in variants.items()}

        def train_step(variant):
            model, optimizer = variants[variant], optimizers[variant]
            with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                loss = diffusion.training_losses(model, x, t)["loss"].mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        times = {v: [] for v in variants}
        names = list(variants)
        for repeat in range(args.warmup + args.steps):
            # interleaved, so background load hits every variant alike; rotated, so none always runs first
            for variant in names[repeat % len(names):] + names[: repeat % len(names)]:
                start = time.perf_counter()
                train_step(variant)
                if repeat >= args.warmup:
                    times[variant].append(time.perf_counter() - start)
        base = statistics.median(times["ours"])
        for variant, values in times.items():
            seconds = statistics.median(values)
            print(f"  train step {dtype_name:<4} {variant:<24} {seconds:8.3f} s  timm/ours {seconds / base:5.3f}  "
                  f"(min {min(values):.3f}, max {max(values):.3f}, {len(values)} steps)")


def time_imports(args):
    """Seconds to import each module in a fresh interpreter (median of args.import_repeats), and that over torch."""
    def seconds(code):
        values = []
        for _ in range(args.import_repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
            values.append(time.perf_counter() - start)
        return statistics.median(values)

    print(f"\nimport time, fresh process, median of {args.import_repeats} (includes interpreter start-up)")
    torch_seconds = seconds("import torch")
    print(f"  {'import torch':<45} {torch_seconds:6.2f} s")
    imports = {"timm": ("import timm", "from timm.layers import Mlp, PatchEmbed, Attention"),
               "torchvision": ("import torchvision", "from torchvision.transforms.v2 import functional"),
               "accelerate": ("import accelerate",), "training": ("import training",)}
    for code in (code for module, codes in imports.items() if _installed(module) for code in codes):
        total = seconds(f"import torch; {code}")
        print(f"  {code:<45} {total:6.2f} s  ({total - torch_seconds:+.2f} s over import torch)")
    loaded = subprocess.run([sys.executable, "-c", "import sys, training, sample, datasets, models; "
                             "print(sorted(m for m in ('timm', 'torchvision', 'accelerate') if m in sys.modules))"],
                            check=True, cwd=REPO, capture_output=True, text=True).stdout.strip()
    print(f"  of timm, torchvision, accelerate, `import training, sample, datasets, models` loads: {loaded}")


def _installed(module):
    import importlib.util
    return importlib.util.find_spec(module) is not None


# ----------------------------------------------------------------------------------------------- torchvision

def our_geometry(height, width, size):
    """datasets.video_io's resized (H, W), rounded, and its crop offset (top, left), floored."""
    scale = size / min(height, width)
    resized = (height, width) if scale == 1 else (max(size, round(height * scale)), max(size, round(width * scale)))
    return resized, ((resized[0] - size) // 2, (resized[1] - size) // 2)


def library_clip(frames, size, library, uint8, geometry):
    """uint8 (T, H, W, 3) -> (float (T, 3, size, size) in [-1, 1], resized (H, W), crop (top, left)).

    library "torchvision": transforms.v2.functional resize (bilinear, antialias) and crop; "torch": F.interpolate.
    uint8: resize the uint8 frames (torch's fixed-point kernel, rounded output) instead of their float copy.
    geometry "ours": our rounded size and floored offset; "torchvision": its truncated size, center_crop's offset.
    """
    from torchvision.transforms.v2 import InterpolationMode, functional as TF

    video = rearrange(torch.from_numpy(frames), "t h w c -> t c h w")  # channels-last strides, as ours
    video = video if uint8 else video.float()
    height, width = video.shape[-2:]
    resized, offset = our_geometry(height, width, size)
    if resized != (height, width):
        if library == "torch":
            video = F.interpolate(video, size=resized, mode="bilinear", antialias=True, align_corners=False)
        else:  # [size]: shorter side to size, the longer one truncated
            video = TF.resize(video, list(resized) if geometry == "ours" else [size],
                              interpolation=InterpolationMode.BILINEAR, antialias=True)
        video = video.clamp(0, 255)
    resized = tuple(video.shape[-2:])
    if geometry == "torchvision":  # center_crop's offset: round((H - size) / 2), half to even
        offset = (int(round((resized[0] - size) / 2)), int(round((resized[1] - size) / 2)))
        video = TF.center_crop(video, [size])
    else:
        video = TF.crop(video, *offset, size, size)
    return (video.float() / 127.5 - 1.0).contiguous(), resized, offset


CLIP_PATHS = {  # name: (library, uint8, geometry)
    "torchvision float": ("torchvision", False, "torchvision"),
    "torchvision uint8": ("torchvision", True, "torchvision"),
    "torchvision float, our geometry": ("torchvision", False, "ours"),
    "torchvision uint8, our geometry": ("torchvision", True, "ours"),
    "torch uint8, our geometry": ("torch", True, "ours"),
}


def compare_torchvision(args):
    from torchvision.transforms.v2 import functional as TF

    from datasets.video_io import resize_center_crop

    print(f"\ntorchvision {__import__('torchvision').__version__} v2.functional against datasets.video_io."
          f"resize_center_crop, {args.clip_frames}-frame random uint8 clips, seconds per clip: median of "
          f"{args.clip_repeats}, interleaved; levels = max |diff| in uint8 steps")
    print(f"  {'H x W:size':<13} {'path':<32} {'resized':<8} {'crop':<9} {'max |diff|':>10} {'levels':>7} "
          f"{'s/clip':>7} {'/ours':>6}")
    rng = np.random.default_rng(0)
    for case in args.clip_sizes.split(","):
        shape, size = case.split(":")
        height, width, size = *map(int, shape.split("x")), int(size)
        frames = rng.integers(0, 256, (args.clip_frames, height, width, 3), dtype=np.uint8)
        paths = {"ours": lambda: (resize_center_crop(frames, size), *our_geometry(height, width, size)),
                 **{name: partial(library_clip, frames, size, *spec) for name, spec in CLIP_PATHS.items()}}
        times = {path: [] for path in paths}
        outputs = {}
        for _ in range(args.clip_repeats):
            for path, fn in paths.items():  # interleaved
                start = time.perf_counter()
                outputs[path] = fn()
                times[path].append(time.perf_counter() - start)
        ours_seconds = statistics.median(times["ours"])
        for path, (video, resized, offset) in outputs.items():
            diff = (video - outputs["ours"][0]).abs().max().item()
            seconds = statistics.median(times[path])
            print(f"  {case:<13} {path:<32} {'x'.join(map(str, resized)):<8} {'%d,%d' % offset:<9} {diff:>10.2e} "
                  f"{diff * 127.5:>7.3f} {seconds:>7.4f} {seconds / ours_seconds:>6.2f}")
    video = torch.from_numpy(rng.integers(0, 256, (args.clip_frames, 3, 64, 85), dtype=np.uint8))
    print(f"  horizontal_flip(video) equals video.flip(-1), our flip: "
          f"{torch.equal(TF.horizontal_flip(video), video.flip(-1))}")


# -------------------------------------------------------------------------------------- accelerate: memory

def training_state_gib(args):
    """fp32 weights + gradients + AdamW's two moments + the EMA copy, per GPU, closed form (no activations)."""
    print("\ntraining state per GPU, GiB: fp32 weights 4P + grads 4P' + AdamW moments 8P' + EMA 4P "
          "(P all parameters, P' trainable; autocast keeps fp32 weights, so bf16 runs hold the same); "
          "activations come on top (gradient_checkpointing cuts those, sharding does not)")
    gpus = [int(g) for g in args.gpus.split(",")]
    header = "".join(f"{f'ZeRO-2 /{g}':>11}{f'ZeRO-3 /{g}':>11}" for g in gpus)
    print(f"  {'model':<12} {'params':>8} {'DDP':>8}{header}")
    for size in MODEL_SIZES:
        name = f"Latte-{size}/2"
        with torch.device("meta"):
            model = create_model(name, input_size=args.memory_input_size, num_frames=16,
                                 num_classes=args.memory_num_classes)
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        weights, ema, grads, moments = 4 * total, 4 * total, 4 * trainable, 8 * trainable
        row = f"  {name:<12} {total / 1e6:>7.1f}M {(weights + grads + moments + ema) / 2**30:>8.2f}"
        for g in gpus:
            zero2 = weights + ema + (grads + moments) / g  # gradients and optimizer state sharded
            zero3 = (weights + ema + grads + moments) / g  # everything sharded, the EMA too
            row += f"{zero2 / 2**30:>11.2f}{zero3 / 2**30:>11.2f}"
        print(row)


# -------------------------------------------------------------------------------------- accelerate: launch

ENV_SCRIPT = """import os
keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
print("   ", {key: os.environ.get(key) for key in keys}, flush=True)
"""


def compare_launchers(args):
    """What each launcher puts in a script's environment: setup_distributed needs WORLD_SIZE > 1 to join a group."""
    accelerate = shutil.which("accelerate")
    defaults = ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launchers = {"torchrun --standalone --nproc_per_node 2":
                     [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]}
    if accelerate:
        launchers["accelerate launch --cpu --num_processes 2"] = [accelerate, "launch", "--cpu",
                                                                   "--num_processes", "2", *defaults]
        launchers["accelerate launch --multi_gpu --num_processes 2"] = [accelerate, "launch", "--multi_gpu",
                                                                         "--num_processes", "2", *defaults]
    print("\nlauncher environment (each line is one process the launcher started)")
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "print_env.py"
        script.write_text(ENV_SCRIPT)
        for name, command in launchers.items():
            result = subprocess.run([*command, str(script)], capture_output=True, text=True, timeout=300,
                                    env={**os.environ, "OMP_NUM_THREADS": "1"})
            lines = [line for line in result.stdout.splitlines() if line.startswith("    {")]
            print(f"  {name}: exit {result.returncode}, {len(lines)} process(es)")
            print("\n".join(sorted(lines)) if lines else result.stderr[-500:])
    if not accelerate:
        print("  (accelerate is not installed: only torchrun shown)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="timm,imports,torchvision,memory,launch")
    parser.add_argument("--models", default="Latte-T/4:2:8:16,Latte-S/2:2:16:32",
                        help="comma list of name:batch:frames:latent size for the timm part")
    parser.add_argument("--dtypes", default="fp32,bf16", help="training-step dtypes of the timm part")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per variant (median)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default)")
    parser.add_argument("--import_repeats", type=int, default=5)
    parser.add_argument("--clip_sizes", default="240x320:64,256x256:256,480x640:256,210x380:64,720x1280:256",
                        help="comma list of HxW:size (frames H x W, output size x size)")
    parser.add_argument("--clip_frames", type=int, default=16)
    parser.add_argument("--clip_repeats", type=int, default=5)
    parser.add_argument("--gpus", default="2,8", help="GPU counts for the sharded columns of the memory part")
    parser.add_argument("--memory_input_size", type=int, default=32)
    parser.add_argument("--memory_num_classes", type=int, default=0, help="101 for UCF-101's class embedding")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    parts = args.parts.split(",")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, AMX {torch.cpu._is_amx_tile_supported()}, "
          f"AVX512-BF16 {torch.cpu._is_avx512_bf16_supported()}")
    if "timm" in parts:
        if _installed("timm"):
            print(f"timm {__import__('timm').__version__}")
            for spec in args.models.split(","):
                name, batch, frames, size = spec.split(":")
                compare_timm(args, name, int(batch), int(frames), int(size))
        else:
            print("timm is not installed: skipping the timm part")
    if "imports" in parts:
        time_imports(args)
    if "torchvision" in parts:
        if _installed("torchvision"):
            compare_torchvision(args)
        else:
            print("torchvision is not installed: skipping the torchvision part")
    if "memory" in parts:
        training_state_gib(args)
    if "launch" in parts:
        compare_launchers(args)


if __name__ == "__main__":
    main()
