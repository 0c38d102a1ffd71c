"""Benchmark: training step (forward + backward + AdamW) and DDIM step time and peak memory.

Prints per-frame vs scalar timestep overhead and bf16 vs fp32 as ratios measured in this run. Scalar and
per-frame steps alternate within one process, so a busy machine slows both alike; each (mode, dtype) case runs
in a fresh process so the CPU peak-memory figure (max RSS) belongs to that case alone.

    python tools/benchmark.py --model Latte-S/2 --batch_size 2 --num_frames 16 --input_size 32
"""
import argparse
import multiprocessing as mp
import resource
import time

import torch

from diffusion import create_diffusion, sample_frame_timesteps
from models import create_model


def peak_memory_mib(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(args, mode, dtype_name, queue):
    torch.manual_seed(0)
    torch.set_num_threads(args.threads or torch.get_num_threads())
    device = torch.device(args.device)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
    model = create_model(args.model, input_size=args.input_size, num_frames=args.num_frames,
                         in_channels=args.channels, gradient_checkpointing=args.gradient_checkpointing).to(device)
    diffusion = create_diffusion("")
    shape = (args.batch_size, args.num_frames, args.channels, args.input_size, args.input_size)
    x = torch.randn(shape, device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    baseline = peak_memory_mib(device) if device.type != "cuda" else 0.0

    def frame_timesteps(kind):
        if kind == "per-frame":
            return sample_frame_timesteps(shape[0], shape[1], 1.0, device=device)
        return torch.randint(0, 1000, (shape[0],), device=device)

    def train_step(kind):
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = diffusion.training_losses(model, x, frame_timesteps(kind))["loss"].mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def ddim_step(kind):
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            model(x, frame_timesteps(kind))

    step = train_step if mode == "train" else ddim_step
    model.train(mode == "train")
    for _ in range(args.warmup):
        step("per-frame")
    synchronize(device)
    times = {"scalar": [], "per-frame": []}
    for _ in range(args.steps):
        for kind in times:
            start = time.perf_counter()
            step(kind)
            synchronize(device)
            times[kind].append(time.perf_counter() - start)
    medians = {kind: sorted(values)[len(values) // 2] for kind, values in times.items()}
    queue.put((medians, peak_memory_mib(device) - baseline))


def measure(args, mode, dtype_name):
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=run_case, args=(args, mode, dtype_name, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="Latte-S/2")
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--num_frames", type=int, default=16)
    parser.add_argument("--input_size", type=int, default=32, help="latent (or pixel) height = width")
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--dtypes", default="fp32,bf16", help="comma list of fp32, bf16, fp16")
    parser.add_argument("--modes", default="train,ddim")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per case (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default)")
    parser.add_argument("--gradient_checkpointing", action="store_true")
    args = parser.parse_args()

    print(f"{args.model}, batch {args.batch_size}, {args.num_frames}x{args.channels}x{args.input_size}x"
          f"{args.input_size}, device {args.device}, torch {torch.__version__}, median of {args.steps} steps")
    print(f"{'mode':<6} {'dtype':<5} {'timesteps':<10} {'sec/step':>9} {'steps/s':>8} {'peak MiB':>9}")
    results = {}
    for mode in args.modes.split(","):
        for dtype_name in args.dtypes.split(","):
            medians, memory = measure(args, mode, dtype_name)
            for timesteps, seconds in medians.items():
                results[mode, dtype_name, timesteps] = seconds
                print(f"{mode:<6} {dtype_name:<5} {timesteps:<10} {seconds:>9.4f} {1 / seconds:>8.2f} {memory:>9.0f}")
    print("ratios (measured in this run):")
    for mode in args.modes.split(","):
        for dtype_name in args.dtypes.split(","):
            ratio = results[mode, dtype_name, "per-frame"] / results[mode, dtype_name, "scalar"]
            print(f"  {mode} {dtype_name}: per-frame / scalar timestep time = {ratio:.3f}")
        dtypes = args.dtypes.split(",")
        for dtype_name in dtypes[1:]:
            ratio = results[mode, dtypes[0], "per-frame"] / results[mode, dtype_name, "per-frame"]
            print(f"  {mode}: {dtypes[0]} / {dtype_name} time = {ratio:.2f}x speed-up")


if __name__ == "__main__":
    main()
