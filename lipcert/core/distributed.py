"""torch.distributed as lipcert uses it: the process group torchrun describes, and a deterministic shard.

Every command runs unchanged in one process; under ``torchrun --nproc_per_node N`` each process takes
one contiguous block of the images (no image twice, none padded in; blocks in rank order are the images
in order), the torchmetrics states are gathered at ``compute()``, and rank 0 writes the report.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

from .errors import LipcertError


def launched_by_torchrun() -> bool:
    """True when the environment describes a process group of more than one process (torchrun's variables)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(timeout_s: float = 1800.0) -> bool:
    """Join the process group torchrun describes (nccl with CUDA, gloo otherwise), once.

    Args:
        timeout_s: seconds a collective may wait for the other processes.

    Returns:
        True when running distributed (a group of more than one process exists after the call).

    Raises:
        LipcertError: torchrun's variables are incomplete or torch.distributed is unavailable.

    Examples:
        >>> init_from_env()  # a plain process: nothing to join
        False
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if not launched_by_torchrun():
        return False
    missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing or not dist.is_available():
        raise LipcertError(
            f"WORLD_SIZE={os.environ.get('WORLD_SIZE')} but {missing or 'torch.distributed'} is missing: "
            "launch with `torchrun --nproc_per_node N lipcert ...`."
        )
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":  # one GPU per local process: "cuda" then means this process's GPU
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return dist.get_world_size() > 1


def group_exists() -> bool:
    """True when a torch.distributed process group is initialised in this process.

    Examples:
        >>> group_exists()
        False
    """
    return dist.is_available() and dist.is_initialized()


def leave(wait: bool) -> None:
    """Leave the process group this process joined, if any (its background threads stop cleanly).

    Without it the gloo group's threads are torn down with the interpreter, which can abort a process
    after its work is done ("terminate called without an active exception").

    Args:
        wait: wait for the other processes first (a barrier), so that none is still in a collective;
            False after an error, when the others may never arrive.

    Examples:
        >>> leave(wait=True)  # a plain process: nothing to leave
    """
    if not group_exists():
        return
    if wait:
        dist.barrier()
    dist.destroy_process_group()


def rank_and_size() -> tuple[int, int]:
    """(this process's rank, the number of processes); (0, 1) outside a process group.

    Examples:
        >>> rank_and_size()
        (0, 1)
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """True on rank 0 (the process that writes reports and checkpoints), and outside a process group."""
    return rank_and_size()[0] == 0


def shard(n_items: int) -> range:
    """The items of this process: the ``rank``-th of ``world_size`` contiguous blocks of near-equal size.

    Every item is in exactly one block and the blocks, in rank order, are the items in order, so lists
    gathered in rank order are in item order; randomness seeded from an item's index is the same for any
    number of processes.

    Args:
        n_items: how many items the whole job has.

    Returns:
        The indices this process handles (every index exactly once over all processes).

    Raises:
        LipcertError: fewer items than processes (a process would have nothing to do).

    Examples:
        >>> list(shard(5))
        [0, 1, 2, 3, 4]
    """
    rank, size = rank_and_size()
    if n_items < size:
        raise LipcertError(f"Expected at least one item per process, but got {n_items} items for {size} processes.")
    return range(rank * n_items // size, (rank + 1) * n_items // size)


def gather_objects(obj) -> list:
    """Every process's ``obj``, in rank order (``[obj]`` outside a process group)."""
    rank, size = rank_and_size()
    if size == 1:
        return [obj]
    out = [None] * size
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over every process, in place (``tensor`` itself outside a process group)."""
    if rank_and_size()[1] > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    """Wait for every process (nothing outside a process group)."""
    if rank_and_size()[1] > 1:
        dist.barrier()
