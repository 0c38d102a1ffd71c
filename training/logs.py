"""What a run reports: log.txt, metrics.jsonl + TensorBoard, the loss sums behind them, and skipped videos."""
import json
import logging
import math
from dataclasses import dataclass

import torch
import torch.distributed as dist

from datasets.video_datasets import skipped_files
from models.checkpoint import atomic_write

from .state import all_gather


def create_logger(run_dir):
    """Rank 0 logs to stderr and run_dir/log.txt; other ranks stay silent."""
    logger = logging.getLogger("train_video")
    logger.handlers.clear()
    logger.propagate = False
    if run_dir is None:
        logger.addHandler(logging.NullHandler())
        return logger
    logger.setLevel(logging.INFO)
    formatter = logging.Formatter("[%(asctime)s] %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    for handler in (logging.StreamHandler(), logging.FileHandler(run_dir / "log.txt")):
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    return logger


@dataclass
class LossSums:
    """This rank's sums since the last metrics record: each micro-batch adds its mean losses / accumulation
    steps, each optimizer step its gradient norm and 1 to `steps`. Checkpoints keep them (as_list), so a resumed
    run's first record averages over the same steps as an uninterrupted one."""
    loss: float = 0.0
    mse: float = 0.0
    vb: float = 0.0
    grad_norm: float = 0.0
    steps: int = 0

    def add_micro_batch(self, losses, accum):
        self.loss += losses["loss"].mean().item() / accum
        self.mse += losses["mse"].mean().item() / accum
        self.vb += losses["vb"].mean().item() / accum if "vb" in losses else 0.0

    def add_step(self, grad_norm):
        self.grad_norm += grad_norm
        self.steps += 1

    def as_list(self):
        """[loss, mse, vb, grad_norm, steps]: the checkpoint's rank_states[r]["window"]; LossSums(*it) reads it."""
        return [self.loss, self.mse, self.vb, self.grad_norm, self.steps]

    def means(self, world_size, device):
        """{loss, mse, vb, grad_norm} averaged over the steps of every rank (an all-reduce: all ranks call it)."""
        sums = torch.tensor(self.as_list()[:4], dtype=torch.float64, device=device)
        if world_size > 1:
            dist.all_reduce(sums)
        return dict(zip(("loss", "mse", "vb", "grad_norm"), (sums / (world_size * self.steps)).tolist()))


class MetricsLog:
    """metrics.jsonl + TensorBoard on rank 0. On resume, records after the checkpoint's step are dropped."""

    def __init__(self, run_dir, resume_step):
        from torch.utils.tensorboard import SummaryWriter

        self.path = run_dir / "metrics.jsonl"
        if resume_step is None:
            atomic_write(self.path, lambda tmp: tmp.write_text(""))
        elif self.path.exists():
            kept = []
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a kill
                    continue
                if record.get("step", math.inf) <= resume_step:
                    kept.append(line)
            # Atomic: a kill mid-rewrite must not lose the records up to the resumed step.
            atomic_write(self.path, lambda tmp: tmp.write_text("".join(line + "\n" for line in kept)))
        purge_step = None if resume_step is None else resume_step + 1
        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge_step)

    def write(self, record):
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if key not in ("step", "epoch") and value is not None:
                self.writer.add_scalar(f"train/{key}", value, record["step"])
        self.writer.flush()

    def close(self):
        self.writer.close()


class SkippedVideoLog:
    """Names each video the dataset skipped once per run (DataLoader workers meet a bad one every epoch), and
    counts each epoch's distinct skipped videos over all ranks."""

    def __init__(self, logger):
        self.logger = logger
        self.reported = set()
        self.epoch_skipped = {}  # path -> reason, of this rank's items in this epoch

    def add_batch(self, batch):
        batch_skipped = skipped_files(batch)
        self._name_new(batch_skipped)
        self.epoch_skipped.update(batch_skipped)

    def end_epoch(self, epoch, world_size):
        skipped = self.epoch_skipped
        if world_size > 1:  # count each video once over all ranks; name those only other ranks met
            skipped = {path: reason for rank_skipped in all_gather(skipped, world_size)
                       for path, reason in rank_skipped.items()}
            self._name_new(skipped)
        if skipped:
            self.logger.warning(f"epoch {epoch}: {len(skipped)} video(s) were skipped as unreadable or too short")
        self.epoch_skipped = {}

    def _name_new(self, skipped):
        for path in sorted(skipped.keys() - self.reported):
            self.logger.warning(f"skipped video {path}: {skipped[path]}")
        self.reported.update(skipped)
