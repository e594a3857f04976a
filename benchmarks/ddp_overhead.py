"""What DDP settings cost per step: the base optimizer, SAM, and SL-SAM (which needs
``find_unused_parameters=True``), on an MLP, interleaved rounds, median ms per step.

    PYTHONPATH=. torchrun --nproc_per_node 2 benchmarks/ddp_overhead.py [--rounds 10]

Runs on CPU with gloo (one thread per rank) or on GPUs with NCCL.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from slsam_kernels.optim import SAM, SLSAM

WIDTH, DEPTH, BATCH, STEPS_PER_ROUND = 512, 8, 64, 5


def _model(device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    layers = [m for _ in range(DEPTH) for m in (torch.nn.Linear(WIDTH, WIDTH), torch.nn.GELU())]
    return torch.nn.Sequential(*layers).to(device)


def _case(device: torch.device, kind: str, find_unused: bool, ascent: str = "global") -> Callable:
    """A function running ``STEPS_PER_ROUND`` steps of one configuration."""
    ddp = DDP(_model(device), find_unused_parameters=find_unused)
    params = ddp.parameters()
    if kind == "base":
        opt = torch.optim.AdamW(params, lr=1e-4)
    elif kind == "sam":
        opt = SAM(params, torch.optim.AdamW, lr=1e-4, ascent=ascent)
    else:
        opt = SLSAM(params, torch.optim.AdamW, lr=1e-4, seed=0, ascent=ascent)
    x = torch.randn(BATCH, WIDTH, device=device)

    def loss() -> torch.Tensor:
        return ddp(x).square().mean()

    def run() -> None:
        for _ in range(STEPS_PER_ROUND):
            if kind == "base":
                loss().backward()
                opt.step()
                opt.zero_grad()
                continue
            with opt.first_pass(ddp):
                loss().backward()
            opt.first_step(zero_grad=True)
            loss().backward()
            opt.second_step(zero_grad=True)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
    if not cuda:
        torch.set_num_threads(1)
    times = _measure(device, cuda, args.rounds)
    if dist.get_rank() == 0:
        world = dist.get_world_size()
        print(f"{world} ranks, {DEPTH}x Linear({WIDTH}), batch {BATCH} per rank, {device}")
        print(f"{'configuration':42s} {'ms/step':>8s}")
        for name, values in times.items():
            print(f"{name:42s} {statistics.median(values):8.2f}")
    # After _measure() has dropped its DDP models: a DDP reducer that outlives this call
    # destroys the process group later, holding the GIL, which can deadlock gloo's teardown
    # (see examples/ddp_slsam.py).
    dist.destroy_process_group()


def _measure(device: torch.device, cuda: bool, rounds: int) -> dict[str, list[float]]:
    """Milliseconds per step of each configuration, one value per round after the first."""
    cases = {
        "AdamW, DDP default": _case(device, "base", False),
        "AdamW, find_unused_parameters": _case(device, "base", True),
        "SAM, DDP default": _case(device, "sam", False),
        "SAM, find_unused_parameters": _case(device, "sam", True),
        "SL-SAM (s=0.5), find_unused_parameters": _case(device, "slsam", True),
        "SL-SAM (s=0.5), per-rank ascent": _case(device, "slsam", True, "per_rank"),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for round_index in range(rounds + 1):
        for name, run in cases.items():
            if cuda:
                torch.cuda.synchronize()
            dist.barrier()
            start = time.perf_counter()
            run()
            if cuda:
                torch.cuda.synchronize()
            if round_index:  # the first round warms up
                times[name].append((time.perf_counter() - start) / STEPS_PER_ROUND * 1e3)
    return times


if __name__ == "__main__":
    main()
