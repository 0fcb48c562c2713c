"""torchrun / DistributedDataParallel context (gloo on CPU, nccl on CUDA)."""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1

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
        if not dist.is_initialized():
            dist.init_process_group("nccl" if str(device).startswith("cuda") else "gloo")
        return cls(dist.get_rank(), world)

    def all_sum(self, values):
        """Sum a list of floats across ranks."""
        tensor = torch.tensor(values, dtype=torch.float64)
        if self.enabled:
            dist.all_reduce(tensor)
        return tensor.tolist()

    def barrier(self):
        if self.enabled:
            dist.barrier()

    def close(self):
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()
