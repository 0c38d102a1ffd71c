"""The training data order: one seeded shuffle per epoch, dealt to the ranks, resumable at any global sample."""
import torch
from torch.utils.data import Sampler


class EpochShardSampler(Sampler):
    """A (seed, epoch)-shuffled order cut into global batches, dealt round-robin to ranks, startable mid-epoch.

    Position is counted in global samples, so a resumed run (even on another number of ranks) continues the
    same epoch order without repeating or skipping clips.
    """

    def __init__(self, dataset_size, rank, world_size, seed, local_batch_size):
        global_batch = local_batch_size * world_size
        if dataset_size < global_batch:
            raise ValueError(f"dataset has {dataset_size} clips, fewer than one global batch "
                             f"({local_batch_size} per rank x {world_size} ranks)")
        self.dataset_size, self.rank, self.world_size, self.seed = dataset_size, rank, world_size, seed
        self.samples_per_epoch = dataset_size // global_batch * global_batch  # drop the ragged tail
        self.epoch, self.start = 0, 0

    def set_position(self, epoch, start):
        self.epoch, self.start = epoch, start

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.dataset_size, generator=generator)[: self.samples_per_epoch]
        return iter(order[self.start + self.rank :: self.world_size].tolist())

    def __len__(self):
        return len(range(self.start + self.rank, self.samples_per_epoch, self.world_size))
