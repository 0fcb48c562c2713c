"""torchrun / DistributedDataParallel context (gloo on CPU, nccl on CUDA)."""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    reduce_device: str = "cpu"  # nccl reduces CUDA tensors only

    @property
    def enabled(self):
        return self.world_size > 1

    @property
    def is_main(self):
        return self.rank == 0

    @classmethod
    def from_env(cls, device):
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        cuda = str(device).startswith("cuda")
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        return cls(dist.get_rank(), world, str(device) if cuda else "cpu")

    def all_sum(self, values):
        """Sum a list of floats across ranks."""
        tensor = torch.tensor(values, dtype=torch.float64, device=self.reduce_device)
        if self.enabled:
            dist.all_reduce(tensor)
        return tensor.tolist()

    def any(self, flag):
        """True on every rank when `flag` is true on at least one (ranks agree, e.g. on stopping)."""
        return self.all_sum([1.0 if flag else 0.0])[0] > 0

    def barrier(self):
        if self.enabled:
            dist.barrier()

    def close(self):
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()
