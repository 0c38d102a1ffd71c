"""Benchmark: training step and sampling step (one model call) against the machine's own matmul limit.

For each (mode, dtype) one fresh process builds one model per variant (attention backend x compile) and times
their steps interleaved, scalar and per-frame timesteps alternating, so a busy machine slows all alike. It prints
seconds per step, the step's FLOPs (torch's FlopCounterMode), the FLOP/s achieved, the matmul FLOP/s this machine
measures for the dtype, and their ratio (the model FLOPs utilisation, MFU). Peak memory is the process's (max RSS
on CPU, max allocated on GPU) over all its variants: give one variant to read it for that one alone.

    python tools/benchmark.py --model Latte-S/2 --batch_size 2 --num_frames 16 --input_size 32
    python tools/benchmark.py --attention auto,sdpa,matmul --compile none,blocks --dtypes bf16
    python tools/benchmark.py --attention_table   # each attention kernel per shape and dtype, and auto's pick
"""
import argparse
import multiprocessing as mp
import resource
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from diffusion import create_diffusion, sample_frame_timesteps
from models import create_model
from models.latte import attention, attention_backend

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def peak_memory_mib(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn, device, repeats, warmup=1):
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def matmul_flops_per_second(device, dtype, tokens, width):
    """The best of a large square GEMM and the model's own MLP GEMM (tokens x width @ width x 4 width)."""
    best = 0.0
    square = 8192 if device.type == "cuda" else 4096
    for m, k, n in [(square, square, square), (tokens, width, 4 * width)]:
        a = torch.randn(m, k, device=device, dtype=dtype)
        b = torch.randn(k, n, device=device, dtype=dtype)
        best = max(best, 2 * m * k * n / median_seconds(lambda: a @ b, device, repeats=5))
    return best


def run_case(args, mode, dtype_name, queue):
    torch.set_num_threads(args.threads or torch.get_num_threads())
    device = torch.device(args.device)
    dtype = DTYPES[dtype_name]
    autocast = dtype != torch.float32
    diffusion = create_diffusion("")
    shape = (args.batch_size, args.num_frames, args.channels, args.input_size, args.input_size)
    x = torch.randn(shape, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    baseline = peak_memory_mib(device) if device.type != "cuda" else 0.0

    def build(backend, compile_mode):
        torch.manual_seed(0)
        model = create_model(args.model, input_size=args.input_size, num_frames=args.num_frames,
                             in_channels=args.channels, gradient_checkpointing=args.gradient_checkpointing,
                             attention=backend).to(device)
        model.train(mode == "train")
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0, fused=args.fused_adamw or None)
        if compile_mode == "blocks":
            model.compile_blocks()
        return model, optimizer

    def frame_timesteps(kind):
        if kind == "per-frame":
            return sample_frame_timesteps(shape[0], shape[1], 1.0, device=device)
        return torch.randint(0, 1000, (shape[0],), device=device)

    def step(model, optimizer, kind):
        if mode == "train":
            with torch.autocast(device.type, dtype=dtype, enabled=autocast):
                loss = diffusion.training_losses(model, x, frame_timesteps(kind))["loss"].mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        else:
            with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=autocast):
                model(x, frame_timesteps(kind))

    variants = {(backend, compile_mode): build(backend, compile_mode)
                for backend in args.attention.split(",") for compile_mode in args.compile.split(",")}
    first_step = {}
    for name, (model, optimizer) in variants.items():
        start = time.perf_counter()
        step(model, optimizer, "per-frame")
        synchronize(device)
        first_step[name] = time.perf_counter() - start
        for _ in range(args.warmup - 1):
            step(model, optimizer, "per-frame")
    synchronize(device)
    times = {(name, kind): [] for name in variants for kind in ("scalar", "per-frame")}
    for _ in range(args.steps):
        for (name, kind), values in times.items():
            start = time.perf_counter()
            step(*variants[name], kind)
            synchronize(device)
            values.append(time.perf_counter() - start)
    memory = peak_memory_mib(device) - baseline

    flop_model, flop_optimizer = build("matmul", "none")  # counted as bmm: the FLOPs of every kernel alike
    with FlopCounterMode(display=False) as counter:
        step(flop_model, flop_optimizer, "per-frame")
    tokens = args.batch_size * args.num_frames * flop_model.x_embedder.num_patches
    limit = matmul_flops_per_second(device, dtype, tokens, flop_model.hidden_size)
    medians = {key: sorted(values)[len(values) // 2] for key, values in times.items()}
    queue.put((medians, first_step, memory, counter.get_total_flops(), limit))


def measure(args, mode, dtype_name):
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=run_case, args=(args, mode, dtype_name, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def attention_table(args):
    """Forward and forward + backward of each kernel at the model's spatial and temporal attention shapes."""
    device = torch.device(args.device)
    with torch.device("meta"):
        model = create_model(args.model, input_size=args.input_size, num_frames=args.num_frames,
                             in_channels=args.channels)
    heads = model.spatial_blocks[0].attn.num_heads
    head_dim = model.hidden_size // heads
    patches = model.x_embedder.num_patches
    shapes = {"spatial": (args.batch_size * args.num_frames, heads, patches, head_dim),
              "temporal": (args.batch_size * patches, heads, args.num_frames, head_dim)}
    print(f"attention kernels, ms (median of {args.steps}); auto = the kernel models.latte picks")
    print(f"{'dtype':<5} {'blocks':<9} {'q shape':<20} {'kernel':<7} {'forward':>8} {'fwd+bwd':>8}  auto")
    for dtype_name in args.dtypes.split(","):
        dtype = DTYPES[dtype_name]
        for where, shape in shapes.items():
            q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
            grad = torch.randn(shape, device=device, dtype=dtype)
            rows = {}
            for backend in ("sdpa", "matmul"):
                def forward():
                    with torch.no_grad():
                        attention(q, k, v, backend)

                def forward_backward():
                    attention(q, k, v, backend).backward(grad)

                rows[backend] = [1000 * median_seconds(fn, device, args.steps) for fn in (forward, forward_backward)]
            pick = attention_backend(q)
            fastest = min(rows, key=lambda name: rows[name][1])
            for backend, (fwd_ms, train_ms) in rows.items():
                mark = ("<- auto" + ("" if backend == fastest else f" (fastest: {fastest})")) if backend == pick else ""
                print(f"{dtype_name:<5} {where:<9} {str(tuple(shape)):<20} {backend:<7} {fwd_ms:>8.1f} "
                      f"{train_ms:>8.1f}  {mark}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="Latte-S/2")
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--num_frames", type=int, default=16)
    parser.add_argument("--input_size", type=int, default=32, help="latent (or pixel) height = width")
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--dtypes", default="fp32,bf16", help="comma list of fp32, bf16, fp16 (autocast)")
    parser.add_argument("--modes", default="train,sample", help="train: forward + loss + backward + AdamW; "
                        "sample: one model call without grad (one DDIM step)")
    parser.add_argument("--attention", default="auto", help="comma list of auto, sdpa, matmul")
    parser.add_argument("--compile", default="none", help="comma list of none, blocks (Latte.compile_blocks)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per case (median reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default)")
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument("--fused_adamw", action=argparse.BooleanOptionalAction, default=True,
                        help="AdamW(fused=True), as the trainer uses")
    parser.add_argument("--attention_table", action="store_true", help="time the attention kernels only")
    args = parser.parse_args()

    print(f"{args.model}, batch {args.batch_size}, {args.num_frames}x{args.channels}x{args.input_size}x"
          f"{args.input_size}, device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}, median of {args.steps} steps")
    if args.attention_table:
        attention_table(args)
        return
    print(f"{'mode':<6} {'dtype':<5} {'attention':<9} {'compile':<7} {'timesteps':<10} {'sec/step':>9} "
          f"{'steps/s':>8} {'GFLOP':>7} {'TFLOP/s':>8} {'matmul':>7} {'MFU':>5} {'peak MiB':>9} {'1st step':>8}")
    for mode in args.modes.split(","):
        for dtype_name in args.dtypes.split(","):
            medians, first_step, memory, flops, limit = measure(args, mode, dtype_name)
            for ((backend, compile_mode), kind), seconds in medians.items():
                print(f"{mode:<6} {dtype_name:<5} {backend:<9} {compile_mode:<7} {kind:<10} {seconds:>9.4f} "
                      f"{1 / seconds:>8.2f} {flops / 1e9:>7.0f} {flops / seconds / 1e12:>8.3f} {limit / 1e12:>7.3f} "
                      f"{flops / seconds / limit:>5.0%} {memory:>9.0f} {first_step[backend, compile_mode]:>7.1f}s")
            for name in first_step:
                ratio = medians[name, "per-frame"] / medians[name, "scalar"]
                print(f"  {mode} {dtype_name} {'/'.join(name)}: per-frame / scalar timestep time = {ratio:.3f}")
    print("matmul = the dtype's measured matmul TFLOP/s here; MFU = achieved / matmul; peak MiB: per process")


if __name__ == "__main__":
    main()
