"""Shared by the distributed tests: a bounded two-process gloo launcher, the model, the data
and the training loop that the spawned ranks and the single-process reference both run."""

from __future__ import annotations

import datetime
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

BATCH = 4  # per rank
STEPS = 4
INIT_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _entry(rank: int, fn: Callable[..., None], world_size: int, port: int, args: tuple) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group(
        "gloo",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=INIT_TIMEOUT_S),
    )
    try:
        fn(rank, *args)
    finally:
        dist.destroy_process_group()


def spawn(fn: Callable[..., None], *args: Any, world_size: int = 2, timeout_s: float = 90) -> None:
    """Run ``fn(rank, *args)`` on ``world_size`` gloo ranks over loopback; raise if a rank
    fails or they are not all done within ``timeout_s`` (then they are killed)."""
    context = mp.start_processes(
        _entry,
        args=(fn, world_size, free_port(), args),
        nprocs=world_size,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + timeout_s
    while not context.join(timeout=max(0.1, deadline - time.monotonic())):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            raise TimeoutError(f"the {world_size} ranks did not finish in {timeout_s} s")


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 16),
        torch.nn.Tanh(),
        torch.nn.Linear(16, 16),
        torch.nn.Tanh(),
        torch.nn.Linear(16, 3),
    )


def batches(world_size: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The whole batch of every step: ``BATCH * world_size`` rows, rank r takes the r-th
    slice."""
    generator = torch.Generator().manual_seed(1)
    n = BATCH * world_size
    return [
        (torch.randn(n, 6, generator=generator), torch.randn(n, 3, generator=generator))
        for _ in range(STEPS)
    ]


def shard(batch: tuple[torch.Tensor, torch.Tensor], rank: int) -> tuple[torch.Tensor, ...]:
    return tuple(t[rank * BATCH : (rank + 1) * BATCH] for t in batch)


def loss_of(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.mse_loss(model(x), y)


def train(
    model: torch.nn.Module,
    opt: Any,
    data: list[tuple[torch.Tensor, ...]],
    ascent_model: torch.nn.Module | None = None,
) -> list[torch.Tensor]:
    """The two-pass loop, the first backward in ``opt.first_pass(ascent_model)`` when given
    (BAR: one backward and ``step()``); returns the active mask after each step (SL-SAM) or
    nothing."""
    masks = []
    for x, y in data:
        if not hasattr(opt, "first_step"):
            loss_of(model, x, y).backward()
            opt.step()
            opt.zero_grad()
            continue
        if ascent_model is None:
            loss_of(model, x, y).backward()
        else:
            with opt.first_pass(ascent_model):
                loss_of(model, x, y).backward()
        opt.first_step(zero_grad=True)
        loss_of(model, x, y).backward()
        opt.second_step(zero_grad=True)
        if hasattr(opt, "active_mask"):
            masks.append(opt.active_mask)
    return masks


def full_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    """Plain copies of the weights (gathered, for sharded ones)."""
    out = []
    for p in model.parameters():
        full = p.full_tensor() if hasattr(p, "full_tensor") else p
        out.append(full.detach().clone())
    return out
