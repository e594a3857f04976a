"""Shared by the accelerate tests and their two-rank worker: the data, the accelerate loop
with SAMWindow, and the plain loop over the large batches it must equal."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from builders import loss_of, make_model
from distributed_testing import free_port

from slsam_kernels.integrations.accelerate import SAMWindow

LARGE = 16  # samples per optimizer step, over all micro-batches (and all ranks)
WINDOWS = 3  # optimizer steps
PORT_ATTEMPTS = 3
PORT_TAKEN = "EADDRINUSE"  # what gloo's TCPStore says when its port is taken


def dataset(windows: int = WINDOWS) -> torch.utils.data.TensorDataset:
    generator = torch.Generator().manual_seed(1)
    n = windows * LARGE
    return torch.utils.data.TensorDataset(
        torch.randn(n, 5, generator=generator), torch.randint(0, 3, (n,), generator=generator)
    )


def large_batches(data: torch.utils.data.TensorDataset) -> list[tuple[torch.Tensor, ...]]:
    """The samples of each optimizer step, in one batch."""
    x, y = data.tensors
    return list(zip(x.split(LARGE), y.split(LARGE)))


def scheduler_of(opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)


def accelerate_loop(
    accelerator: Any,
    build: Callable[[Any], torch.optim.Optimizer],
    data: torch.utils.data.TensorDataset,
    micro_batch: int,
    schedule: bool = True,
    watch_dtypes: list[torch.dtype] | None = None,
) -> dict[str, Any]:
    """The loop of examples/accelerate_slsam.py over ``data``: the model prepared first (DDP
    registers only tensors that require grad, and SL-SAM freezes some), then the optimizer,
    the data loader and (with ``schedule``) the LR scheduler. ``watch_dtypes`` collects the
    dtype of the first layer's output in every forward. Returns the weights, whether each
    micro-batch changed them, the learning rates after each micro-batch and the optimizer."""
    model = accelerator.prepare(make_model())
    if watch_dtypes is not None:
        accelerator.unwrap_model(model).fc1.register_forward_hook(
            lambda _module, _inputs, output: watch_dtypes.append(output.dtype)
        )
    opt = build(model.parameters())
    loader = torch.utils.data.DataLoader(data, batch_size=micro_batch)
    opt, loader = accelerator.prepare(opt, loader)
    scheduler = accelerator.prepare(scheduler_of(opt)) if schedule else None
    window = SAMWindow(accelerator, model, lambda batch: loss_of(model, batch))
    changed, lrs = [], []
    for batch in loader:
        before = [p.detach().clone() for p in model.parameters()]
        with accelerator.accumulate(model):
            window.backward(batch)
            opt.step(window.replay)
            if scheduler is not None:
                scheduler.step()
            opt.zero_grad()
        changed.append(any(not torch.equal(a, b) for a, b in zip(before, model.parameters())))
        lrs.append(opt.param_groups[0]["lr"])
    weights = [p.detach().clone() for p in accelerator.unwrap_model(model).parameters()]
    return {"weights": weights, "changed": changed, "lrs": lrs, "opt": opt.optimizer}


def micro_batch_loop(
    build: Callable[[Any], torch.optim.Optimizer],
    batches: list[tuple[torch.Tensor, ...]],
    micro: int = 1,
    autocast: bool = False,
    lr_steps: int = 1,
) -> dict[str, Any]:
    """One process, no accelerate: per large batch, the first pass over its ``micro``
    micro-batches (each loss divided by ``micro``), ``step`` replaying them, the LR scheduler,
    ``zero_grad``; with ``autocast``, every forward under bf16 autocast. The LR scheduler
    steps ``lr_steps`` times per step (accelerate's steps once per process)."""
    model = make_model()
    opt = build(model.parameters())
    scheduler = scheduler_of(opt)

    def backward(batch: tuple[torch.Tensor, ...]) -> None:
        for chunk in zip(*(t.chunk(micro) for t in batch)):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = loss_of(model, chunk)
            (loss / micro).backward()

    for batch in batches:
        backward(batch)
        opt.step(lambda batch=batch: backward(batch))
        for _ in range(lr_steps):
            scheduler.step()
        opt.zero_grad()
    return {"weights": [p.detach().clone() for p in model.parameters()], "opt": opt}


def launch_ranks(script: Path, out: Path, world: int, timeout_s: float) -> None:
    """Run ``script out`` as ``world`` gloo ranks (the environment ``accelerate launch``
    sets) and raise unless every rank exits with status 0, naming each rank's status and
    output. The ranks run in one new process group, killed if they outlive ``timeout_s``.
    A launch whose port another process took first (between choosing and binding it) is
    retried on a new port."""
    for _ in range(PORT_ATTEMPTS):
        results = _run_ranks(script, out, world, timeout_s)
        if not any(PORT_TAKEN in output for _, output in results):
            break
    failed = []
    for rank, (code, output) in enumerate(results):
        if code != 0:
            status = "was killed at the timeout" if code is None else f"exited with {code}"
            failed.append(f"rank {rank} {status}:\n{output[-3000:]}")
    assert not failed, "\n".join(failed)


def _run_ranks(
    script: Path, out: Path, world: int, timeout_s: float
) -> list[tuple[int | None, str]]:
    """Each rank's exit status (None: killed at the timeout) and output."""
    root = str(script.resolve().parents[1])  # this checkout's slsam_kernels, not another
    path = os.pathsep.join(filter(None, [root, str(script.parent), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    env.update(WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world), OMP_NUM_THREADS="1")
    logs = [out / f"rank{rank}.log" for rank in range(world)]
    procs: list[subprocess.Popen] = []
    deadline = time.monotonic() + timeout_s
    try:
        for rank, log in enumerate(logs):
            with log.open("w") as stream:  # a file, not a pipe: a full pipe would block a rank
                procs.append(
                    subprocess.Popen(
                        [sys.executable, str(script), str(out)],
                        env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                        process_group=0 if rank == 0 else procs[0].pid,
                        stdout=stream,
                        stderr=subprocess.STDOUT,
                    )
                )
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        late = [proc.poll() is None for proc in procs]
    finally:
        if procs and any(proc.poll() is None for proc in procs):
            os.killpg(procs[0].pid, signal.SIGKILL)
            for proc in procs:
                proc.wait()
    return [
        (None if killed else proc.returncode, log.read_text(errors="replace"))
        for proc, killed, log in zip(procs, late, logs)
    ]
