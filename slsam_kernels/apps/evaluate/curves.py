"""The evaluation's accuracy-vs-seconds curves: seed means, and from them each method's time
to SAM's accuracy."""

from __future__ import annotations

import statistics
from typing import Any

from slsam_kernels.apps.demo.curves import TOLERANCE, ratio_cell
from slsam_kernels.apps.demo.curves import time_to_sam as curves_time_to_sam


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
    """:func:`slsam_kernels.apps.demo.curves.time_to_sam` of the setting's seed-mean
    validation curves."""
    return curves_time_to_sam(curves_by_variant(setting))


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
        at_sam = at_seconds(curve, found["sam_seconds"] * (1 + 1e-9))
        end = curve[-1]
        cell = ratio_cell(found["ratio"][name])
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
