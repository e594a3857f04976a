"""Accuracy against timed training seconds: the curve a run records every N steps, and the
first point at which it reaches a target (SAM's accuracy)."""

from __future__ import annotations

import statistics
from typing import Any

from torch import nn

from .data import Split
from .train import METER_EVERY, accuracy

#: "Reaching SAM's accuracy": within this much of SAM's final accuracy (0.5 point).
TOLERANCE = 0.005
#: A curve: points ``{"step", "seconds", "val_acc"}`` (seed means add the seeds' ``"lo"`` and
#: ``"hi"``); ``val_acc`` is the accuracy on the split the recorder was given.
Curve = list[dict[str, float]]


class CurveRecorder:
    """A ``train_and_test`` ``after_step``: keeps every step's seconds and, every ``every``
    steps and at step ``also_at`` (the run's last, say), the accuracy on ``split`` (untimed).
    Steps run under the memory meter are slowed by it, so :meth:`points` charges each the mean
    of the counted steps within ``METER_EVERY`` of it (of all counted steps if none is that
    near; its own time if none counts)."""

    def __init__(self, split: Split, every: int, also_at: int | None = None) -> None:
        if every < 1:
            raise ValueError(f"a curve needs every >= 1 step, got {every}")
        self.split, self.every, self.also_at = split, every, also_at
        self._seconds: list[float] = []
        self._counted: list[bool] = []
        self._val_acc: dict[int, float] = {}

    def __call__(self, model: nn.Module, seconds: float, counted: bool) -> None:
        self._seconds.append(seconds)
        self._counted.append(counted)
        step = len(self._seconds)
        if step % self.every == 0 or step == self.also_at:
            self._val_acc[step] = accuracy(model, self.split)

    def points(self) -> Curve:
        """``{"step", "seconds", "val_acc"}`` at the recorded steps, ``seconds`` the
        cumulative training seconds up to and including that step."""
        counted = [s for s, c in zip(self._seconds, self._counted, strict=True) if c]
        overall = statistics.fmean(counted) if counted else None
        cumulative, total = [], 0.0
        for i, (seconds, is_counted) in enumerate(zip(self._seconds, self._counted, strict=True)):
            if not is_counted:
                lo, hi = max(0, i - METER_EVERY), i + METER_EVERY + 1
                near = [
                    s for s, c in zip(self._seconds[lo:hi], self._counted[lo:hi], strict=True) if c
                ]
                seconds = statistics.fmean(near) if near else (overall or seconds)
            total += seconds
            cumulative.append(total)
        return [
            {"step": step, "seconds": cumulative[step - 1], "val_acc": acc}
            for step, acc in sorted(self._val_acc.items())
        ]


def time_to_sam(curves: dict[str, Curve]) -> dict[str, Any] | None:
    """SAM's target (the last accuracy of ``curves["sam"]`` minus ``TOLERANCE``), its total
    time (that point's seconds), and per curve the seconds of its first point at or above the
    target, as a multiple of SAM's time (``ratio``; None: never); None without a SAM
    curve."""
    sam = curves.get("sam")
    if not sam:
        return None
    target, sam_seconds = sam[-1]["val_acc"] - TOLERANCE, sam[-1]["seconds"]
    ratio = {}
    for name, curve in curves.items():
        first = next((p for p in curve if p["val_acc"] >= target), None)
        ratio[name] = None if first is None else first["seconds"] / sam_seconds
    return {"target": target, "sam_seconds": sam_seconds, "ratio": ratio}


def ratio_cell(ratio: float | None) -> str:
    """A time to SAM's accuracy as a table cell: ``0.73x``, or ``never``."""
    return "never" if ratio is None else f"{ratio:.2f}x"
