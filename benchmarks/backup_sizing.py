"""SL-SAM's weight backups: one arena that grows to the largest active set seen so far (what
the optimizers do) against buffers sized to each step's active set and freed after it.

    PYTHONPATH=. python -m benchmarks.backup_sizing [--model cpu-small] [--steps 60]

Both forms run from the same seed, so they draw the same active sets. A metered run per form
gives the whole run's peak of live tensor bytes (``TensorMemoryMeter``) and the backup bytes;
a second run, the two forms' steps interleaved, gives their median step times. Prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

import torch

from slsam_kernels import SLSAM
from slsam_kernels.apps.measure.tensor_memory import TensorMemoryMeter
from slsam_kernels.optim.backup import BackupArena

from . import memory_breakdown
from .run import machine

_MIB = 2**20
CPU = torch.device("cpu")


class PerStepBackups(BackupArena):
    """Backups sized to the current step's active set, freed once the step drops its views."""

    def views(self, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        self._buffers.clear()
        views = super().views(params)
        self._buffers.clear()  # the views alone keep this step's buffers alive
        return views


FORMS = {"arena (largest set so far)": BackupArena, "sized per step": PerStepBackups}


def _setup(model_name: str, form: str, sample_ratio: float):
    model, loss_backward = memory_breakdown.workload(model_name, CPU)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = SLSAM(
        params,
        torch.optim.AdamW,
        sample_ratio=sample_ratio,
        seed=0,
        **memory_breakdown.BASE_OPTIONS,
    )
    opt._backups = FORMS[form]()  # the one thing that differs between the forms
    return params, opt, loss_backward


def _active_bytes(params: list[torch.Tensor]) -> int:
    return sum(p.numel() * p.element_size() for p in params if p.requires_grad)


def metered_run(model_name: str, form: str, steps: int, sample_ratio: float) -> dict[str, float]:
    """The run's peak live tensor bytes and the backup bytes its steps needed, in MiB."""
    params, opt, loss_backward = _setup(model_name, form, sample_ratio)
    needed = []
    with TensorMemoryMeter() as meter:
        for _ in range(steps):
            needed.append(_active_bytes(params))
            memory_breakdown.train_step(opt, loss_backward)
    return {
        "run peak MiB": meter.peak_mib,
        "run peak above start MiB": meter.peak_above_start_mib,
        "backups needed, max MiB": max(needed) / _MIB,
        "backups needed, mean MiB": statistics.fmean(needed) / _MIB,
        "backups held at the end MiB": opt.backup_nbytes / _MIB,
    }


def step_times(model_name: str, steps: int, sample_ratio: float) -> dict[str, float]:
    """Median step ms of each form, the forms' steps interleaved (one model each)."""
    runs = {form: _setup(model_name, form, sample_ratio) for form in FORMS}
    samples: dict[str, list[float]] = {form: [] for form in FORMS}
    for _ in range(steps):
        for form, (_, opt, loss_backward) in runs.items():
            start = time.perf_counter()
            memory_breakdown.train_step(opt, loss_backward)
            samples[form].append(1e3 * (time.perf_counter() - start))
    return {form: statistics.median(s[1:] or s) for form, s in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="cpu-small")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--sample-ratio", type=float, default=0.2)
    args = parser.parse_args(argv)
    meta = machine(CPU)
    print(
        f"{args.model}, SL-SAM s = {args.sample_ratio} + AdamW, {args.steps} steps; "
        f"{meta['device_name']}, {meta['threads']} torch threads, torch "
        f"{meta['versions']['torch']}, git {meta['git_rev']}, load {meta['load_average']}"
    )
    print()
    rows = {form: metered_run(args.model, form, args.steps, args.sample_ratio) for form in FORMS}
    times = step_times(args.model, args.steps, args.sample_ratio)
    columns = [*next(iter(rows.values())), "median step ms"]
    print("| backups | " + " | ".join(columns) + " |")
    print("| --- |" + " ---: |" * len(columns))
    for form, row in rows.items():
        cells = [f"{row[c]:.1f}" for c in columns[:-1]] + [f"{times[form]:.1f}"]
        print(f"| {form} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
