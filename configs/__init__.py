"""Config loading shared by train_video.py and sample/: a dataclass schema, then a YAML file, then key=value.

The schema is where every key is documented, next to its default; an unknown or mistyped key is an error
that names the key and where it came from.
"""
from pathlib import Path

import torch
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

# config value of `mixed_precision` -> autocast dtype (None: full precision)
AUTOCAST_DTYPES = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}
MIXED_PRECISION = (*AUTOCAST_DTYPES, "auto")  # the values `mixed_precision` accepts; "auto" is resolved per device


def native_bf16(device_type):
    """Whether bf16 matmuls run in hardware: a CUDA GPU that supports bf16, or a CPU with AMX or AVX512-BF16.

    On other CPUs (AVX2 only, say) PyTorch emulates bf16, and a training step is about 30x slower than in fp32.
    """
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    return False


def autocast_dtype(mixed_precision, device_type):
    """The autocast dtype for a `mixed_precision` config value on this device; "auto": bf16 where it is native."""
    if mixed_precision == "auto":
        return torch.bfloat16 if native_bf16(device_type) else None
    return AUTOCAST_DTYPES[mixed_precision]


def merge_config(schema, config_path=None, overrides=()):
    """Schema defaults <- YAML file <- key=value overrides; raises ValueError naming a bad key."""
    cfg = OmegaConf.structured(schema)
    sources = []
    if config_path is not None:
        if not Path(config_path).is_file():
            raise FileNotFoundError(f"config file not found: {config_path}")
        sources.append((f"config file {config_path}", OmegaConf.load(config_path)))
    malformed = [item for item in overrides if "=" not in item]
    if malformed:
        raise ValueError(f"command-line overrides must look like key=value, got {malformed}")
    sources.append(("command line", OmegaConf.from_dotlist(list(overrides))))
    for source, values in sources:
        try:
            cfg = OmegaConf.merge(cfg, values)
        except ConfigKeyError as error:
            raise ValueError(f"{source}: unknown config key {error.full_key!r}") from None
        except ValidationError as error:
            raise ValueError(f"{source}: bad value for config key {error.full_key!r}: {error.msg}") from None
    if "mixed_precision" in cfg and cfg.mixed_precision in ("False", "false"):
        cfg.mixed_precision = "no"  # YAML reads an unquoted `no` (and Latte's `False`) as a boolean
    return cfg
