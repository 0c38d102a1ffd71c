"""Training an FVDM: the config schema (config.py), the loop (loop.py) and what it keeps and writes beside it."""
from .config import TrainConfig, load_config, run_dir_of, validate_config
from .loop import train

__all__ = ["TrainConfig", "load_config", "run_dir_of", "train", "validate_config"]
