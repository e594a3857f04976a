"""The report's comparisons with SAM: equal wall-clock tables, SL-SAM's active fraction of
elements beside the paper's, and the goal check (Markdown lines from a JSON record)."""

from __future__ import annotations

from typing import Any

#: The SL-SAM paper's (arXiv 2602.09395) fraction of parameter elements active at s = 0.2:
#: 47% on its vision models, 22% on RoBERTa; compared with the image and the text task.
PAPER_ACTIVE = {"image": 0.47, "text": 0.22}
PAPER_SAMPLE_RATIO = 0.2
#: The goal: at most this fraction of elements active (mean over steps), ...
GOAL_ACTIVE = 0.5
#: ... and at most this far below SAM's mean test accuracy at equal steps (at least SAM's at
#: equal wall-clock).
GOAL_GAP = 0.01


def rows_of(setting: dict[str, Any], budget: str) -> list[dict[str, Any]]:
    """The setting's summary rows of one budget, ``"steps"`` or ``"time"``."""
    return [r for r in setting["summary"] if r["budget"] == budget]


def _sam(setting: dict[str, Any]) -> dict[str, Any] | None:
    return next((r for r in rows_of(setting, "steps") if r["variant"] == "sam"), None)


def equal_time_lines(setting: dict[str, Any]) -> list[str]:
    """The equal wall-clock table of a setting: SAM (its equal-steps runs, the budgets) and
    every method continued to SAM's training time, with the steps each got."""
    timed, sam = rows_of(setting, "time"), _sam(setting)
    if not timed or sam is None:
        return []
    lines = [
        "",
        f"Equal wall-clock: each run continued to the training seconds of SAM's run with the "
        f"same seed (mean {sam['train_seconds']:.0f} s for {sam['steps']:.0f} steps).",
        "",
        "| method | steps (mean) | test acc | minus SAM | time / SAM's | active |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| sam (sam) | {sam['steps']:.0f} | {sam['acc_mean']:.3f} ± {sam['acc_std']:.3f} | "
        f"+0.000 | 1.00 | {sam['active_fraction']:.3f} |",
    ]
    for row in timed:
        lines.append(
            f"| {row['variant']} ({row['method']}) | {row['steps']:.0f} | {row['acc_mean']:.3f} "
            f"± {row['acc_std']:.3f} | {row['acc_mean'] - sam['acc_mean']:+.3f} | "
            f"{row['train_seconds'] / sam['train_seconds']:.2f} | "
            f"{row['active_fraction']:.3f} |"
        )
    return lines


def _label(setting: dict[str, Any]) -> str:
    return f"{setting['task']} {setting['noise']:.0%}"


def _slsam_rows(record: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """SL-SAM's equal-steps rows: variant -> setting label -> row."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for setting in record["settings"]:
        for row in rows_of(setting, "steps"):
            if row["method"] == "slsam":
                table.setdefault(row["variant"], {})[_label(setting)] = row
    return table


def active_fraction_lines(record: dict[str, Any]) -> list[str]:
    """A table of SL-SAM's active fraction of parameter elements (mean over steps and
    seeds, equal steps) per variant and setting, beside the paper's at s = 0.2."""
    table = _slsam_rows(record)
    if not table:
        return []
    labels = [_label(s) for s in record["settings"]]
    paper = [
        f"{PAPER_ACTIVE[s['task']]:.0%}" if s["task"] in PAPER_ACTIVE else "n/a"
        for s in record["settings"]
    ]
    lines = [
        "",
        "## Active fraction of parameter elements",
        "",
        f"Mean over steps and seeds (equal steps). The paper at s = {PAPER_SAMPLE_RATIO:g}: "
        f"{PAPER_ACTIVE['image']:.0%} (vision), {PAPER_ACTIVE['text']:.0%} (RoBERTa).",
        "",
        "| variant | " + " | ".join(labels) + " |",
        "| --- |" + " --- |" * len(labels),
        f"| paper, s = {PAPER_SAMPLE_RATIO:g} | " + " | ".join(paper) + " |",
    ]
    for variant, by_label in table.items():
        cells = [f"{by_label[k]['active_fraction']:.3f}" if k in by_label else "" for k in labels]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return lines


def side_variants(record: dict[str, Any]) -> tuple[str, ...]:
    """The record's side variants, in its configuration's order (none in records from before
    the option, or without a configuration)."""
    return tuple(record.get("config", {}).get("side_variants") or ())


def goal_lines(record: dict[str, Any]) -> list[str]:
    """The goal check per SL-SAM variant and setting: active fraction at most
    :data:`GOAL_ACTIVE`, mean test accuracy at most :data:`GOAL_GAP` below SAM's at equal
    steps, and at least SAM's at equal wall-clock (where it ran)."""
    table = _slsam_rows(record)
    if not table:
        return []
    labels = [_label(s) for s in record["settings"]]
    side = side_variants(record)
    cells: dict[str, dict[str, str]] = {v: {} for v in table}
    for setting in record["settings"]:
        sam, label = _sam(setting), _label(setting)
        if sam is None:
            continue
        timed = {r["variant"]: r for r in rows_of(setting, "time")}
        for variant, by_label in table.items():
            if label in by_label:
                cells[variant][label] = _goal_cell(
                    by_label[label], timed.get(variant), sam, variant in side
                )
    lines = [
        "",
        "## Goal check: SL-SAM near SAM with at most half the elements active",
        "",
        f"Per cell: active fraction; test accuracy minus SAM's at equal steps; at equal "
        f"wall-clock. `yes` when active <= {GOAL_ACTIVE:g}, equal steps >= -{GOAL_GAP:g} "
        "and equal wall-clock >= 0 (means over seeds).",
        "",
        "| variant | " + " | ".join(labels) + " |",
        "| --- |" + " --- |" * len(labels),
    ]
    for variant, by_label in cells.items():
        lines.append(f"| {variant} | " + " | ".join(by_label.get(k, "") for k in labels) + " |")
    return lines


def _goal_cell(
    steps: dict[str, Any], timed: dict[str, Any] | None, sam: dict[str, Any], side: bool
) -> str:
    """A variant's cell; a side variant's carries no verdict (the goal is not judged on it)."""
    gap = steps["acc_mean"] - sam["acc_mean"]
    met = steps["active_fraction"] <= GOAL_ACTIVE and gap >= -GOAL_GAP
    text = f"{steps['active_fraction']:.2f}; {gap:+.3f}"
    if timed is not None:
        timed_gap = timed["acc_mean"] - sam["acc_mean"]
        met = met and timed_gap >= 0
        text += f"; {timed_gap:+.3f}"
    if side:
        return f"{text}: side variant, not judged"
    return f"{text}: {'yes' if met else 'no'}"
