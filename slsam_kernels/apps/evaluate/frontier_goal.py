"""The frontier's goal check: which method reaches SAM's final test accuracy (within 0.5 point,
mean over seeds) in at most 0.75x SAM's training time, where SAM beats the base optimizer by
more than the seed noise (Markdown lines from a JSON record)."""

from __future__ import annotations

import math
from typing import Any

from slsam_kernels.apps.demo.curves import TOLERANCE, ratio_cell

from .comparisons import rows_of, side_variants
from .curves import time_to_sam

#: The goal's time, as a multiple of SAM's training time, and the moonshot's.
GOAL_TIME = 0.75
MOONSHOT_TIME = 0.6
#: A difference of two seed means counts as beyond the noise above this many standard errors
#: of the difference (about a 95% interval).
NOISE_SE = 2.0


def noise_of(a: dict[str, Any], b: dict[str, Any]) -> float:
    """``NOISE_SE`` standard errors of the difference of two rows' mean test accuracies."""
    return NOISE_SE * math.hypot(a["acc_se"], b["acc_se"])


def goal_cell(row: dict[str, Any], sam: dict[str, Any], val: str, side: bool = False) -> str:
    """One method's cell: test accuracy minus SAM's (its noise), its time over SAM's, its time
    to SAM's validation accuracy (``val``, already written out) and the verdict (none for a
    side variant, which the goal is not judged on)."""
    gap, time = row["acc_mean"] - sam["acc_mean"], row["train_seconds"] / sam["train_seconds"]
    reached = gap >= -TOLERANCE and time <= GOAL_TIME
    verdict = "no"
    if side:
        verdict = f"side variant, {row['seeds']} seeds, not judged"
    elif reached:
        verdict = "**moonshot**" if time <= MOONSHOT_TIME else "**yes**"
    inside = " (inside noise)" if abs(gap) <= noise_of(row, sam) else ""
    return f"{100 * gap:+.1f} pt{inside} at {time:.2f}x; val {val}: {verdict}"


def frontier_goal_lines(record: dict[str, Any]) -> list[str]:
    """The goal table: a row per method, a column per setting; empty without SAM and base."""
    judged: list[tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, Any]]] = []
    for setting in record["settings"]:
        rows = {r["variant"]: r for r in rows_of(setting, "steps")}
        if "sam" in rows and "base" in rows:
            found = time_to_sam(setting)
            judged.append((setting, rows, found["ratio"] if found is not None else {}))
    if not judged:
        return []
    labels = [f"{s['task']} {s['noise']:.0%}" for s, _, _ in judged]
    sam_rows = []
    for _, rows, _ in judged:
        sam, base = rows["sam"], rows["base"]
        diff, noise = sam["acc_mean"] - base["acc_mean"], noise_of(sam, base)
        beyond = "judged" if diff > noise else "**not judged**: inside the seed noise"
        sam_rows.append(f"{100 * diff:+.1f} pt (noise {100 * noise:.1f}): {beyond}")
    lines = [
        "",
        "## Goal check: SAM's accuracy in at most "
        f"{GOAL_TIME:g}x SAM's time (moonshot {MOONSHOT_TIME:g}x)",
        "",
        f"Per cell: mean test accuracy minus SAM's at the end of the run (`inside noise` when "
        f"within {NOISE_SE:g} standard errors of the difference), the run's training time over "
        f"SAM's, and the time to SAM's validation accuracy from the curves (x SAM's time). "
        f"`yes` when the run ends at most {100 * TOLERANCE:g} point below SAM in at most "
        f"{GOAL_TIME:g}x its time. A setting is judged only where SAM beats the base optimizer "
        "by more than the seed noise.",
        "",
        "| method | " + " | ".join(labels) + " |",
        "| --- |" + " --- |" * len(labels),
        "| SAM minus base | " + " | ".join(sam_rows) + " |",
    ]
    side = side_variants(record)
    for name in judged[0][1]:
        if name == "sam":
            continue
        cells = [
            goal_cell(rows[name], rows["sam"], _val_time(ratios, name), name in side)
            if name in rows
            else ""
            for _, rows, ratios in judged
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _val_time(ratios: dict[str, float | None], name: str) -> str:
    """A method's time to SAM's validation accuracy, as written in a cell (n/a: no curve)."""
    return ratio_cell(ratios[name]) if name in ratios else "n/a"
