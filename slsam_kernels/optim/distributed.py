"""What the optimizers need from ``torch.distributed``: sharded (FSDP2 DTensor) parameters
seen as their local shards with norms summed over the shards, the active set agreed across
ranks, and the per-rank ascent (m-sharpness) option. Nothing here runs a collective unless
the process group has more than one rank or the parameters are sharded."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

ASCENTS = ("global", "per_rank")


def is_sharded(params: Sequence[torch.Tensor]) -> bool:
    """True when the parameters are DTensors (``fully_shard``); then they must all share one
    mesh and placements, which is how FSDP2 shards a model."""
    # A DTensor exists only once its module is imported; importing it here would cost
    # 0.8 s (loaded 2-core machine) on every import of this package.
    dtensor_module = sys.modules.get("torch.distributed.tensor")
    if dtensor_module is None:
        return False
    DTensor = dtensor_module.DTensor
    if not any(isinstance(p, DTensor) for p in params):
        return False
    layouts = {(p.device_mesh, p.placements) for p in params if isinstance(p, DTensor)}
    if len(layouts) != 1 or not all(isinstance(p, DTensor) for p in params):
        raise ValueError(
            "the parameters mix plain tensors and DTensors, or DTensors on different meshes: "
            "apply fully_shard to the whole model (one mesh) before building the optimizer"
        )
    return True


def local(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The local shard of each DTensor; it shares storage, so in-place writes reach the
    DTensor."""
    return [t.to_local() for t in tensors]


def sum_over_shards(local_values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Sum per-shard partial values (e.g. squared norms of local shards) over the mesh dims
    that ``like`` (a DTensor parameter) is sharded on: one all-reduce."""
    from torch.distributed.tensor import DTensor, Partial, Replicate, Shard

    placements = [Partial() if isinstance(pl, Shard) else Replicate() for pl in like.placements]
    partial = DTensor.from_local(local_values, like.device_mesh, placements, run_check=False)
    return partial.full_tensor()


def world_size(group: Any) -> int:
    """Ranks in ``group`` (None: the default group); 1 when torch.distributed is not in use."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def check_ascent(ascent: Any, group: Any, sharded: bool) -> None:
    """``ascent="per_rank"`` needs more than one rank and replicated (DDP) parameters."""
    if ascent not in ASCENTS:
        raise ValueError(f"ascent must be one of {ASCENTS}, got {ascent!r}")
    if ascent == "per_rank" and world_size(group) < 2:
        raise ValueError(
            'ascent="per_rank" (m-sharpness) needs torch.distributed initialised with 2 or '
            'more ranks and a DistributedDataParallel model; use ascent="global" otherwise'
        )
    if ascent == "per_rank" and sharded:
        raise ValueError(
            'ascent="per_rank" works with DistributedDataParallel, not with fully_shard: a '
            'rank holds only a shard of each gradient; use ascent="global"'
        )


def first_pass_context(ascent: str, model: Any) -> contextlib.AbstractContextManager:
    """The context to run the first (ascent) backward in: ``model.no_sync()`` for the
    per-rank ascent, nothing for the global one."""
    if ascent == "global":
        return contextlib.nullcontext()
    if not isinstance(model, torch.nn.parallel.DistributedDataParallel):
        raise TypeError(
            'ascent="per_rank" needs the DistributedDataParallel-wrapped model here, got '
            f"{type(model).__name__}"
        )
    return model.no_sync()


def mean_over_ranks(values: torch.Tensor, group: Any, device: torch.device) -> torch.Tensor:
    """``values`` averaged over the ranks of ``group``, reduced via ``device`` (one
    all-reduce)."""
    summed = values.to(device, copy=True)
    dist.all_reduce(summed, group=group)
    return summed.div_(dist.get_world_size(group)).to(values.device)


def broadcast_from_rank0(tensor: torch.Tensor, group: Any, device: torch.device) -> torch.Tensor:
    """``tensor`` as the first rank of ``group`` holds it, sent via ``device`` (the
    parameters' device, which the backend supports: CUDA for NCCL)."""
    sent = tensor.to(device, copy=True)
    src = dist.get_global_rank(group, 0) if group is not None else 0
    dist.broadcast(sent, src=src, group=group)
    return sent.to(tensor.device)


def agreed_seed(seed: int | None, group: Any, device: torch.device) -> int | None:
    """``seed``, or when it is None and there are several ranks, one fresh seed drawn on the
    first rank and shared, so every rank's generator starts alike."""
    if seed is not None or world_size(group) < 2:
        return seed
    drawn = torch.tensor([torch.Generator().seed() % 2**62], dtype=torch.int64)
    return int(broadcast_from_rank0(drawn, group, device))
