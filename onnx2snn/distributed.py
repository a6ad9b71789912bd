"""Running under ``torchrun`` (``torch.distributed``): the same command on N processes, one per GPU
(or CPU process), splitting the evaluation.

* Rank 0 converts, calibrates and verifies once, then broadcasts the written ``.snn.onnx`` (its
  bytes) and the resolved config to the other ranks, which build the same network from it: every
  rank simulates a byte-identical SNN, and no rank reads a half-written output folder.
* The evaluation set is split by batches: rank r simulates batches r, r+N, r+2N, … of the same
  batch size as a single process would, so each batch (and its Poisson spikes, seeded per batch)
  is exactly what one process computes; the per-step correct counts, spike counts and synaptic
  events are summed across ranks (``all_reduce``), the outputs gathered in order.
* Only rank 0 prints, shows the progress bar and writes the output folder. An error on rank 0
  is sent to the others, which exit with status 1 without a message of their own.

Backends: NCCL where the device is CUDA (each rank on ``cuda:LOCAL_RANK``), gloo on CPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, List, Optional

import numpy as np


@dataclass
class Group:
    rank: int
    world: int
    local_rank: int
    backend: str

    @property
    def leader(self) -> bool:
        return self.rank == 0


def from_environment() -> Optional[Group]:
    """The torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK) when there is more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None
    rank = int(os.environ.get("RANK", "0"))
    return Group(rank, world, int(os.environ.get("LOCAL_RANK", rank)), backend="")


def start(group: Group, device: Optional[str]) -> str:
    """Initialise the process group; return the device this rank simulates on."""
    import torch
    import torch.distributed as dist
    cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    group.backend = "nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(group.local_rank)
        device = f"cuda:{group.local_rank}"
    else:
        device = "cpu"
    if not dist.is_initialized():
        dist.init_process_group(group.backend)
    return device


def stop() -> None:
    import torch.distributed as dist
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    import torch.distributed as dist
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(array: np.ndarray) -> np.ndarray:
    """The element-wise sum over ranks (float64 or int64: exact for counts)."""
    import torch
    import torch.distributed as dist
    t = torch.as_tensor(np.ascontiguousarray(array))
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return t.cpu().numpy()


def all_gather(value: Any) -> List[Any]:
    import torch.distributed as dist
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out
