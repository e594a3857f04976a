"""SL-SAM's host work per step at 100, 1,000 and 10,000 arms: the bandit update (index
bookkeeping, the rule, the capped projection), the draw, and the ``requires_grad`` flips.

    PYTHONPATH=. python -m benchmarks.host_bandit [--arms 100,1000,10000] [--rounds 50]

No forward or backward: tiny tensors stand in for the arms, so the rows time only what runs
on the host between the kernels, for the default backend (``auto``: the C++ bandit update
when the extension is built) and the reference's torch ops. Prints a Markdown table (median
ms per step).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from slsam_kernels import SLSAM

from .run import machine


def _median_ms(fn: Callable[[], object], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return 1e3 * statistics.median(samples)


def measure(arms: int, rounds: int, backend: str) -> dict[str, float]:
    """Median milliseconds of each piece of the host work for ``arms`` one-element-ish arms."""
    params = [torch.nn.Parameter(torch.randn(4)) for _ in range(arms)]
    opt = SLSAM(params, torch.optim.SGD, sample_ratio=0.2, seed=0, backend=backend, lr=0.1)
    gen = torch.Generator().manual_seed(1)

    for p in params:
        p.grad = torch.randn(4, generator=gen) if p.requires_grad else None
    opt.first_step()
    perturbation = opt._perturbation  # what second_step hands the bandit; only read by it
    opt._restore()
    mask = opt.active_mask

    def flips() -> None:
        for p, active in zip(params, mask.tolist(), strict=True):
            p.requires_grad_(active)

    rows = {
        "bandit update (norms to probabilities)": _median_ms(
            lambda: opt._update_bandit(perturbation), rounds
        ),
        "draw + requires_grad flips (sample)": _median_ms(opt.sample, rounds),
        "requires_grad flips alone": _median_ms(flips, rounds),
    }
    rows["host work per step (update + sample)"] = (
        rows["bandit update (norms to probabilities)"] + rows["draw + requires_grad flips (sample)"]
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.host_bandit", description=__doc__)
    parser.add_argument("--arms", default="100,1000,10000")
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args(argv)
    counts = [int(a) for a in args.arms.split(",")]
    meta = machine(torch.device("cpu"))
    print(
        f"{meta['device_name']}, {meta['threads']} torch threads, torch "
        f"{meta['versions']['torch']}, git {meta['git_rev']}, load {meta['load_average']}"
    )
    print()
    print("| backend | median ms per step | " + " | ".join(f"{n} arms" for n in counts) + " |")
    print("| --- | --- |" + " --- |" * len(counts))
    for backend in ("auto", "reference"):
        results = {n: measure(n, args.rounds, backend) for n in counts}
        for row in results[counts[0]]:
            cells = " | ".join(f"{results[n][row]:.3f}" for n in counts)
            print(f"| {backend} | {row} | {cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
