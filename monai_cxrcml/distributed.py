"""``torch.distributed`` helpers: rank queries, row gathers that allow a different row count per rank, broadcasts.

Every function is a no-op (returns its input) outside a process group or with one process, so the same code runs
single-process and under ``torchrun``. Gathers concatenate the ranks' rows in rank order, so every rank ends with
the same tensor.

Host tensors (and row counts, host integers) travel on a CPU (gloo) group: the default group when it is gloo, else
one made over the same ranks. NCCL cannot move host tensors, and sending host integers through it would copy them to
the GPU and back, a host synchronisation per call. Device tensors use the default group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from monai.utils import convert_to_tensor

__all__ = [
    "get_world_size", "get_rank", "is_main_process", "gather_counts", "all_gather_rows", "broadcast_object",
    "broadcast_tensor", "all_reduce_max",
]

_CPU_GROUPS: dict[int, Any] = {}


def get_world_size() -> int:
    """Number of processes of the default group; 1 without one."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def get_rank() -> int:
    """Rank of this process in the default group; 0 without one."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main_process() -> bool:
    """True on rank 0 (and without a process group)."""
    return get_rank() == 0


def _group_for(tensor: torch.Tensor) -> Any:
    """The CPU group for host tensors, the default group (None) for device tensors."""
    return _cpu_group() if tensor.device.type == "cpu" else None


def _cpu_group() -> Any:
    """The default group when it is gloo, else a gloo group over the same ranks (made once per default group)."""
    default = dist.group.WORLD
    if dist.get_backend() == dist.Backend.GLOO:
        return default
    key = id(default)
    if key not in _CPU_GROUPS:  # every rank reaches the first gather at the same point, as new_group requires
        _CPU_GROUPS.clear()
        _CPU_GROUPS[key] = dist.new_group(backend="gloo")
    return _CPU_GROUPS[key]


def gather_counts(count: int) -> list[int]:
    """Every rank's ``count`` (a host integer), in rank order, without touching an accelerator."""
    if get_world_size() == 1:
        return [int(count)]
    counts = [torch.zeros(1, dtype=torch.int64) for _ in range(get_world_size())]
    dist.all_gather(counts, torch.tensor([int(count)], dtype=torch.int64), group=_cpu_group())
    return [int(c) for c in counts]


def all_gather_rows(tensor: torch.Tensor, counts: Sequence[int] | None = None, with_grad: bool = False) -> torch.Tensor:
    """Concatenate every rank's ``tensor`` ``[n_r, ...]`` along dim 0, in rank order: ``[sum_r n_r, ...]``.

    Parameters
    ----------
    tensor
        This rank's rows; every rank passes the same trailing shape, dtype and device type.
    counts
        ``n_r`` of every rank when already known (e.g. from :func:`gather_counts`); None exchanges them.
    with_grad
        Let gradients flow back to each rank's own rows (``torch.distributed.nn`` gather: the gradient of a row is
        the sum over ranks of the gradients its copies received).

    Returns
    -------
    torch.Tensor
        ``[sum_r n_r, ...]``, identical on every rank.
    """
    world = get_world_size()
    if world == 1:
        return tensor
    tensor = convert_to_tensor(tensor, track_meta=False)  # a batched MetaTensor would treat slices as decollation
    counts = list(counts) if counts is not None else gather_counts(tensor.shape[0])
    if len(counts) != world or counts[get_rank()] != tensor.shape[0]:
        raise ValueError(f"counts {counts} do not match {world} ranks with {tensor.shape[0]} rows on this one.")
    longest = max(counts)
    padded = tensor.contiguous()
    if tensor.shape[0] < longest:
        padded = torch.cat([padded, padded.new_zeros((longest - tensor.shape[0], *tensor.shape[1:]))])
    group = _group_for(padded)
    if with_grad:
        parts = dist_nn.all_gather(padded, group=dist.group.WORLD if group is None else group)
    else:
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded, group=group)
    return torch.cat([part[:n] for part, n in zip(parts, counts)])


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (pickled; for small metadata)."""
    if get_world_size() == 1:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src, group=_cpu_group())
    return holder[0]


def broadcast_tensor(tensor: torch.Tensor | None, shape: Sequence[int], dtype: torch.dtype, device: torch.device | str,
                     src: int = 0) -> torch.Tensor:
    """Rank ``src``'s ``tensor`` on every rank; the others pass None (or anything) and the expected shape/dtype."""
    if get_world_size() == 1:
        return tensor
    if get_rank() != src:
        tensor = torch.empty(tuple(shape), dtype=dtype, device=device)
    tensor = tensor.contiguous()
    dist.broadcast(tensor, src=src, group=_group_for(tensor))
    return tensor


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum over ranks (in place, asynchronous on the device; returns ``tensor``)."""
    if get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=_group_for(tensor))
    return tensor
