"""How often torch.compile recompiles under SL-SAM's requires_grad toggling, and the step time.

    PYTHONPATH=. python benchmarks/compile_recompiles.py [--backend inductor] [--steps 50]

Each setting trains a 6-block MLP for ``--steps`` SL-SAM steps (sample_ratio 0.5) and prints
the graphs Dynamo compiled, how often a frame hit the recompile limit (it runs eagerly after
that), the first step's time (compiles) and the step time over the last half of the steps.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import torch
from torch._dynamo.utils import counters

from slsam_kernels import SLSAM, arms_by_module


def make_model() -> torch.nn.Sequential:
    torch.manual_seed(0)
    blocks = [torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.GELU()) for _ in range(6)]
    return torch.nn.Sequential(*blocks, torch.nn.Linear(256, 10))


class _LimitHits(logging.Handler):
    """Counts Dynamo's "hit config.recompile_limit" messages: that frame runs eagerly after."""

    count = 0

    def emit(self, record: logging.LogRecord) -> None:
        _LimitHits.count += "recompile_limit" in record.getMessage()


def run(setting: str, backend: str, steps: int) -> None:
    torch._dynamo.reset()
    counters.clear()
    _LimitHits.count = 0
    model = make_model()
    arms = None if "tensor" in setting else arms_by_module(model)
    if "whole" in setting:
        forward = torch.compile(model, backend=backend)
    elif "block" in setting:
        # torch.compile(block), not block.compile(): the latter leaves Dynamo's counters empty.
        for i, block in enumerate(model):
            model[i] = torch.compile(block, backend=backend)
        forward = model
    else:
        forward = model
    opt = SLSAM(model.parameters(), torch.optim.AdamW, sample_ratio=0.5, seed=0, arms=arms)
    gen = torch.Generator().manual_seed(1)
    times = []
    for _ in range(steps):
        x, y = torch.randn(64, 256, generator=gen), torch.randint(0, 10, (64,), generator=gen)
        start = time.perf_counter()
        torch.nn.functional.cross_entropy(forward(x), y).backward()
        opt.step(lambda x=x, y=y: torch.nn.functional.cross_entropy(forward(x), y).backward())
        opt.zero_grad()
        times.append(time.perf_counter() - start)
    tail = [1e3 * t for t in times[steps // 2 :]]
    print(
        f"{setting:26s} graphs={counters['stats']['unique_graphs']:3d} "
        f"recompile_limit_hits={_LimitHits.count} first_step={1e3 * times[0]:6.0f} ms "
        f"step median={statistics.median(tail):6.1f} ms min={min(tail):6.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default="aot_eager")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--settings", nargs="*", default=SETTINGS)
    args = parser.parse_args()
    logging.getLogger("torch._dynamo").addHandler(_LimitHits())
    print(f"torch {torch.__version__}, backend {args.backend}, {args.steps} steps")
    for setting in args.settings:
        run(setting, args.backend, args.steps)


SETTINGS = [
    "eager, tensor arms",
    "eager, module arms",
    "whole model, tensor arms",
    "whole model, module arms",
    "per block, tensor arms",
    "per block, module arms",
]

if __name__ == "__main__":
    main()
