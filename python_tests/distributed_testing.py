"""Shared by the distributed tests: a bounded two-process gloo launcher that reports how each
rank ended instead of raising, the model, the data and the training loop that the spawned
ranks and the single-process reference both run."""

from __future__ import annotations

import datetime
import gc
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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
        gc.collect()  # the DDP and FSDP2 modules of ``fn``, in reference cycles
        dist.destroy_process_group()
    leave_without_finalizing()


def leave_without_finalizing() -> None:
    """End a rank that saved its results, skipping Python's finalization.

    With torch 2.13, ``destroy_process_group()`` after a DDP or FSDP2 model does not free the
    gloo group: building a DDP leaves 10 references to it that outlive the model and a
    ``gc.collect()``, and its worker threads (``pt_gloo_runloop``) are still running when
    the rank returns. A worker marks a collective done before dropping its last reference
    to it; when that drop comes late, the freed tensors take the GIL while Python finalizes,
    Python ends the thread inside a ``noexcept`` destructor, and the rank dies with
    "terminate called without an active exception" (SIGABRT). Only a late worker does it,
    so it struck on loaded machines. ``os._exit`` ends the process before finalization."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@dataclass
class Launch:
    """How the ranks of one launch ended: each rank's exit code (None: killed at the
    deadline) and the error text the launcher saw."""

    exitcodes: list[int | None]
    error: str

    @property
    def clean(self) -> bool:
        return not self.error and all(code == 0 for code in self.exitcodes)


def spawn(
    fn: Callable[..., None], *args: Any, world_size: int = 2, timeout_s: float = 90
) -> Launch:
    """Run ``fn(rank, *args)`` on ``world_size`` gloo ranks over loopback, at most
    ``timeout_s`` seconds (then they are killed); returns how they ended, never raises for
    a failed rank, so that a crash fails only the tests whose results it took."""
    context = mp.start_processes(
        _entry,
        args=(fn, world_size, free_port(), args),
        nprocs=world_size,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + timeout_s
    error = ""
    try:
        while not context.join(timeout=max(0.1, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                error = f"the {world_size} ranks did not finish in {timeout_s} s"
                break
    except Exception as exc:  # a rank failed: the context says which and how
        error = f"{type(exc).__name__}: {exc}"
    for process in context.processes:
        if process.is_alive():
            process.kill()
        process.join()
    return Launch([process.exitcode for process in context.processes], error)


def save_result(out_dir: str, rank: int, name: str, result: Any) -> None:
    """One scenario's result on one rank, saved as soon as it is known."""
    torch.save(result, Path(out_dir) / f"{name}.rank{rank}.pt")


def load_results(out_dir: str, name: str, launch: Launch, world_size: int = 2) -> list[Any]:
    """Every rank's result of scenario ``name``; raises (failing only the test that asked)
    when a rank did not save it, with how the launch ended."""
    paths = [Path(out_dir) / f"{name}.rank{rank}.pt" for rank in range(world_size)]
    missing = [str(path.name) for path in paths if not path.exists()]
    if missing:
        raise AssertionError(
            f"no result {missing} from the launch (exit codes {launch.exitcodes}): "
            f"{launch.error or 'no error reported'}"
        )
    return [torch.load(path) for path in paths]


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
