"""Runtime helpers every entry point shares: devices and torchrun, autocast, and float video -> uint8."""
import os

import numpy as np
import torch
import torch.distributed as dist

# config value of `mixed_precision` -> autocast dtype (None: full precision)
AUTOCAST_DTYPES = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}
MIXED_PRECISION = (*AUTOCAST_DTYPES, "auto")  # the values `mixed_precision` accepts; "auto" is resolved per device


def native_bf16(device_type):
    """Whether bf16 matmuls run in hardware: a CUDA GPU that supports bf16, or a CPU with AMX or AVX512-BF16.

    On other CPUs (AVX2 only, say) PyTorch emulates bf16, and a training step is about 30x slower than in fp32.
    A CPU whose kernels are capped below AVX512 (ATEN_CPU_CAPABILITY=avx2, with ONEDNN_MAX_CPU_ISA=AVX2 for the
    matmuls) counts as one without: that is how an AVX2-only machine's fp32 path is timed on a newer one.
    """
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        if torch.backends.cpu.get_cpu_capability() != "AVX512":
            return False
        return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    return False


def autocast_dtype(mixed_precision, device_type):
    """The autocast dtype for a `mixed_precision` config value on this device; "auto": bf16 where it is native."""
    if mixed_precision == "auto":
        return torch.bfloat16 if native_bf16(device_type) else None
    return AUTOCAST_DTYPES[mixed_precision]


def autocast_fn(fn, device_type, dtype):
    """fn under autocast (dtype None: off), its output in fp32: the diffusion maths (VLB logs, steps) stays fp32."""

    def wrapped(*args, **kwargs):
        with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
            return fn(*args, **kwargs).float()

    return wrapped


def allow_tf32(allowed):
    """TF32 matmuls and convolutions on Ampere+ GPUs (the config key `allow_tf32`)."""
    torch.backends.cuda.matmul.allow_tf32 = allowed
    torch.backends.cudnn.allow_tf32 = allowed


def default_device(name=None):
    """The named device, else cuda when available, else cpu."""
    return torch.device(name if name is not None else ("cuda" if torch.cuda.is_available() else "cpu"))


def setup_distributed(device_name=None):
    """(rank, world_size, device): joins torchrun's process group when WORLD_SIZE > 1 (NCCL on this rank's GPU, or
    gloo on the CPU when there is none or device_name is "cpu"); a plain `python` run is rank 0 of 1 on
    `device_name` (default: cuda when available)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, default_device(device_name)
    on_gpu = torch.cuda.is_available() and (device_name is None or str(device_name).startswith("cuda"))
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if on_gpu else None
    if not dist.is_initialized():
        if device is not None:
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return dist.get_rank(), world_size, device if device is not None else torch.device("cpu")


def video_to_uint8(video):
    """(N, C, H, W) float in [-1, 1] -> np.uint8 (N, H, W, C); inverts x = u / 127.5 - 1 exactly.

    In numpy: for the small clips of the metrics, torch's thread start-up costs more than the conversion.
    """
    if video.ndim != 4 or video.shape[1] not in (1, 3):
        raise ValueError(f"video_to_uint8 expects (N, C, H, W) with C = 1 or 3, got shape {tuple(video.shape)}")
    frames = np.rint((torch.as_tensor(video).detach().float().cpu().numpy().transpose(0, 2, 3, 1) + 1.0) * 127.5)
    return np.clip(frames, 0, 255).astype(np.uint8)  # (N, H, W, C)
