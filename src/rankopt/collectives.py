"""What training and evaluation share when they run over several processes (torch.distributed, any
backend): this process's place, contiguous shards, and gathering rows back into item order. Without a
process group everything is local (rank 0 of 1)."""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["world", "shard_bounds", "comm_device", "all_sizes", "gather_in_order"]


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_bounds(n: int, world_size: int, rank: int) -> tuple[int, int]:
    """[start, stop) of process ``rank``'s contiguous shard of n rows (shards differ by at most one)."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def comm_device(tensor: torch.Tensor) -> torch.device:
    """Where a collective on ``tensor`` runs: the current GPU under NCCL, else the tensor's device."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return tensor.device


def all_sizes(n: int, like: torch.Tensor) -> list[int]:
    """Every process's ``n``, in rank order."""
    dev = comm_device(like)
    sizes = [torch.zeros(1, dtype=torch.int64, device=dev) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([n], dtype=torch.int64, device=dev))
    return [int(s) for s in sizes]


def gather_in_order(values: torch.Tensor, index: torch.Tensor, total: int) -> torch.Tensor:
    """Rows held by every process (``values[i]`` is item ``index[i]``) put together in item order:
    (total, ...) on every process. Each item must be held exactly once."""
    _, size = world()
    if size == 1:
        parts_values, parts_index = [values], [index]
    else:
        dev = comm_device(values)
        width = max(all_sizes(values.shape[0], values))  # pad every part to the widest, padding marked -1
        padded = torch.zeros((width, *values.shape[1:]), dtype=values.dtype, device=dev)
        padded[: values.shape[0]] = values.to(dev)
        padded_index = torch.full((width,), -1, dtype=torch.int64, device=dev)
        padded_index[: index.shape[0]] = index.to(dev)
        parts_values = [torch.empty_like(padded) for _ in range(size)]
        parts_index = [torch.empty_like(padded_index) for _ in range(size)]
        dist.all_gather(parts_values, padded)
        dist.all_gather(parts_index, padded_index)
    all_values = torch.cat(parts_values).to(values.device)
    all_index = torch.cat(parts_index).to(values.device)
    keep = all_index >= 0
    all_values, all_index = all_values[keep], all_index[keep]
    counts = torch.bincount(all_index, minlength=total) if len(all_index) else torch.zeros(total, dtype=torch.int64)
    if len(counts) != total or bool((counts != 1).any()):
        missing = int((counts[:total] == 0).sum())
        raise ValueError(
            f"gathered shards do not cover the {total} items exactly once ({missing} missing, "
            f"{int((counts > 1).sum())} repeated)"
        )
    out = torch.empty((total, *values.shape[1:]), dtype=values.dtype, device=values.device)
    out[all_index] = all_values
    return out
