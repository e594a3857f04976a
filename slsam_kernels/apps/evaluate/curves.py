"""Validation accuracy against timed training seconds: the curve a run records every N steps,
and from the curves, each method's time to SAM's accuracy."""

from __future__ import annotations

import statistics
from typing import Any

from torch import nn

from slsam_kernels.apps.demo.data import Split
from slsam_kernels.apps.demo.train import METER_EVERY, accuracy

#: "Reaching SAM's accuracy": within this much of SAM's final validation accuracy.
TOLERANCE = 0.005


class CurveRecorder:
    """A ``train_and_test`` ``after_step``: keeps every step's seconds and, every ``every``
    steps, the validation accuracy (untimed). Steps run under the memory meter are slowed by
    it, so :meth:`points` charges each the mean of the counted steps within ``METER_EVERY`` of
    it (of all counted steps if none is that near; its own time if none counts)."""

    def __init__(self, split: Split, every: int) -> None:
        if every < 1:
            raise ValueError(f"a curve needs every >= 1 step, got {every}")
        self.split, self.every = split, every
        self._seconds: list[float] = []
        self._counted: list[bool] = []
        self._val_acc: dict[int, float] = {}

    def __call__(self, model: nn.Module, seconds: float, counted: bool) -> None:
        self._seconds.append(seconds)
        self._counted.append(counted)
        if len(self._seconds) % self.every == 0:
            self._val_acc[len(self._seconds)] = accuracy(model, self.split)

    def points(self) -> list[dict[str, float]]:
        """``{"step", "seconds", "val_acc"}`` every ``every`` steps, ``seconds`` the
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


def mean_curve(runs: list[dict[str, Any]]) -> list[dict[str, float]]:
    """The seed mean of the runs' curves, point by point over the steps every run has:
    ``{"step", "seconds", "val_acc", "lo", "hi"}`` (lo/hi: the seeds' min and max)."""
    curves = [r["curve"] for r in runs if r.get("curve")]
    if not curves:
        return []
    length = min(len(c) for c in curves)
    out = []
    for i in range(length):
        points = [c[i] for c in curves]
        accs = [p["val_acc"] for p in points]
        out.append(
            {
                "step": points[0]["step"],
                "seconds": statistics.fmean(p["seconds"] for p in points),
                "val_acc": statistics.fmean(accs),
                "lo": min(accs),
                "hi": max(accs),
            }
        )
    return out


def curves_by_variant(setting: dict[str, Any]) -> dict[str, list[dict[str, float]]]:
    """Each variant's seed-mean curve (from its equal-steps records, which carry the curve of
    the whole run, a continued one included), in run order."""
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for run in setting["runs"]:
        if run["budget"] == "steps" and run.get("curve"):
            by_variant.setdefault(run["variant"], []).append(run)
    return {name: mean_curve(runs) for name, runs in by_variant.items()}


def time_to_sam(setting: dict[str, Any]) -> dict[str, Any] | None:
    """SAM's target (its final seed-mean validation accuracy minus ``TOLERANCE``), its total
    time, and per variant the first seed-mean timed second at which the seed-mean validation
    accuracy reaches the target, as a multiple of SAM's time (None: never); None without a
    SAM curve."""
    curves = curves_by_variant(setting)
    sam = curves.get("sam")
    if not sam:
        return None
    target, sam_seconds = sam[-1]["val_acc"] - TOLERANCE, sam[-1]["seconds"]
    reached = {}
    for name, curve in curves.items():
        first = next((p for p in curve if p["val_acc"] >= target), None)
        reached[name] = None if first is None else first["seconds"] / sam_seconds
    return {"target": target, "sam_seconds": sam_seconds, "ratio": reached}


def at_seconds(curve: list[dict[str, float]], seconds: float) -> dict[str, float] | None:
    """The last point of ``curve`` at or before ``seconds`` (None if none is)."""
    before = [p for p in curve if p["seconds"] <= seconds]
    return before[-1] if before else None


def time_to_sam_lines(setting: dict[str, Any]) -> list[str]:
    """The Markdown table of each variant's time to SAM's accuracy and its validation accuracy
    at its last step and at SAM's time (seed means; the spread is the seeds' min-max)."""
    found = time_to_sam(setting)
    if found is None:
        return []
    curves = curves_by_variant(setting)
    lines = [
        f"Time to SAM's accuracy (validation, seed means): SAM ends at "
        f"{found['target'] + TOLERANCE:.3f} after {found['sam_seconds']:.0f} s; the target is "
        f"{found['target']:.3f}.",
        "",
        "| method | time to SAM's accuracy (x SAM's time) | val acc at SAM's time (min-max) | "
        "val acc at the end (min-max) | its time (x SAM's) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, curve in curves.items():
        ratio = found["ratio"][name]
        at_sam = at_seconds(curve, found["sam_seconds"] * (1 + 1e-9))
        end = curve[-1]
        cell = "never" if ratio is None else f"{ratio:.2f}x"
        sam_cell = "n/a" if at_sam is None else _acc(at_sam)
        if at_sam is not None and end["seconds"] < 0.99 * found["sam_seconds"]:
            sam_cell += " (its run ended earlier)"
        lines.append(
            f"| {name} | {cell} | {sam_cell} | {_acc(end)} | "
            f"{end['seconds'] / found['sam_seconds']:.2f} |"
        )
    return lines


def _acc(point: dict[str, float]) -> str:
    return f"{point['val_acc']:.3f} ({point['lo']:.3f}-{point['hi']:.3f})"
