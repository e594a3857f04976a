"""The evaluation's outputs: a JSON record of every run and a Markdown table of the summary."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from slsam_kernels._version import __version__
from slsam_kernels.apps.measure.provenance import cpu_name, git_revision

from .comparisons import (
    active_fraction_lines,
    equal_time_lines,
    goal_lines,
    rows_of,
    side_variants,
)
from .config import SIDE_SEEDS, EvalConfig
from .curves import time_to_sam_lines
from .frontier_goal import frontier_goal_lines
from .protocol import Setting


def summarize(setting: Setting) -> list[dict[str, Any]]:
    """One row per variant and budget (``"steps"``, ``"time"``), in run order: accuracy mean,
    sample standard deviation, min and max over seeds; means of steps, training seconds,
    seconds per step, active fraction and peak memory."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for run in setting.runs:
        key = (run["variant"], run["budget"])
        row = rows.setdefault(key, {"variant": key[0], "budget": key[1], "runs": []})
        row["runs"].append(run)
    out = []
    for row in rows.values():
        runs = row.pop("runs")
        acc = [r["accuracy"] for r in runs]
        peaks = [r["peak_mib"] for r in runs if not math.isnan(r["peak_mib"])]
        out.append(
            {
                **row,
                "method": runs[0]["method"],
                "seeds": len(runs),
                "acc_mean": statistics.fmean(acc),
                "acc_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
                "acc_se": statistics.stdev(acc) / math.sqrt(len(acc)) if len(acc) > 1 else 0.0,
                "acc_min": min(acc),
                "acc_max": max(acc),
                "steps": statistics.fmean(r["steps"] for r in runs),
                "train_seconds": statistics.fmean(r["seconds_per_step"] * r["steps"] for r in runs),
                "seconds_per_step": statistics.fmean(r["seconds_per_step"] for r in runs),
                "active_fraction": statistics.fmean(r["active_fraction"] for r in runs),
                "peak_mib": statistics.fmean(peaks) if peaks else math.nan,
                "memory_kind": runs[0]["memory_kind"],
            }
        )
    return out


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, where the platform has them."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine() -> dict[str, Any]:
    """Where it ran: platform, CPU count, torch threads, load average at the time, device."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": load_average(),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def versions() -> dict[str, str]:
    """Versions of Python, torch, transformers and this package."""
    found = {"python": platform.python_version(), "torch": torch.__version__}
    try:
        import transformers

        found["transformers"] = transformers.__version__
    except ImportError:
        found["transformers"] = "not installed"
    found["slsam_kernels"] = __version__
    return found


#: What a record made before records named the CPU model says in its place.
UNRECORDED_CPU = "CPU model not recorded"


def code_revision() -> str:
    """The git revision of the checkout this package runs from."""
    return git_revision(Path(__file__).parent)


def to_json(
    config: EvalConfig,
    settings: list[Setting],
    device: str,
    seconds: float,
    load_at_start: list[float] | None = None,
    revision: str | None = None,
) -> dict[str, Any]:
    """The whole evaluation as a JSON-ready dict (NaN written as null); ``revision``: the git
    revision of the code that ran, read at its start (None: read now)."""
    record = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "total_seconds": round(seconds, 1),
        "device": device,
        "git_revision": revision or code_revision(),
        "machine": {**machine(), "load_average_at_start": load_at_start},
        "versions": versions(),
        "config": asdict(config),
        "settings": [{**asdict(s), "summary": summarize(s)} for s in settings],
    }
    return _nan_to_none(record)


def merge(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One record of several evaluations of one configuration (its settings run one at a time,
    say): their settings in order, the first's configuration and machine, the total of their
    seconds, and each one's provenance under ``parts``."""
    names = sorted({r["config"]["name"] for r in records})
    if len(names) != 1:
        raise ValueError(f"records of one configuration merge, these are of {', '.join(names)}")
    parts = [
        {
            "settings": [f"{s['task']} {s['noise']:.0%}" for s in r["settings"]],
            "created": r["created"],
            "git_revision": r["git_revision"],
            "cpu": r["machine"].get("cpu", UNRECORDED_CPU),
            "total_seconds": r["total_seconds"],
            "load_average_at_start": r["machine"]["load_average_at_start"],
            "load_average": r["machine"]["load_average"],
        }
        for r in records
    ]
    return {
        **records[0],
        "total_seconds": round(sum(r["total_seconds"] for r in records), 1),
        "settings": [s for r in records for s in r["settings"]],
        "parts": parts,
    }


def _parts_lines(record: dict[str, Any]) -> list[str]:
    """A line per merged evaluation: its settings, when and where it ran."""
    return [
        f"- {', '.join(part['settings'])}: {part['created']}, git {part['git_revision']}, "
        f"{part.get('cpu', UNRECORDED_CPU)}, {part['total_seconds']:.0f} s, "
        f"load average at the start {part['load_average_at_start']} and end "
        f"{part['load_average']}"
        for part in record.get("parts", [])
    ]


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(v) for v in value]
    return value


def _grid(values: list[float], scores: list[float | None]) -> str:
    if len(values) == 1:
        return f"{values[0]:g} (fixed)"
    return ", ".join(f"{v:g}: {s:.3f}" for v, s in zip(values, scores, strict=True))


def to_markdown(record: dict[str, Any]) -> str:
    """A Markdown report of a :func:`to_json` record: per setting, the tuning, the table at
    equal steps and (where run) at equal wall-clock; then SL-SAM's active fractions and the
    goal check."""
    m = record["machine"]
    lines = [
        f"# Evaluation `{record['config']['name']}`",
        "",
        f"{record['created']}, git {record['git_revision']}, {record['device']}, "
        f"{m.get('cpu', UNRECORDED_CPU)}, {m['cpu_count']} CPUs "
        f"({m['torch_threads']} torch threads), load average at the start "
        f"{m['load_average_at_start']} and end {m['load_average']}; "
        f"{record['total_seconds']:.0f} s in all. Test accuracy: "
        f"mean ± sample std over seeds {record['config']['seeds']} (min-max in the JSON)."
        + _side_note(record),
    ]
    if "parts" in record:
        lines += ["", "Merged from evaluations run apart (the header is the first's):", ""]
        lines += _parts_lines(record)
    for setting in record["settings"]:
        summary = rows_of(setting, "steps")
        kind = summary[0]["memory_kind"] if summary else ""
        lines += [
            "",
            f"## {setting['task']}, {setting['noise']:.0%} label noise",
            "",
            f"{_tuned_where(setting)}Validation accuracy (1 seed) by {setting['base']} lr: "
            f"{_grid(setting['lr_grid'], setting['val_acc_by_lr'])} -> lr {setting['lr']:g}; "
            f"by SAM rho: {_grid(setting['rho_grid'], setting['val_acc_by_rho'])} -> rho "
            f"{setting['rho']:g}; ASAM rho {setting['asam_rho']:g}.",
            *_bar_tuning(setting),
            *_rho_tuning(setting),
            "",
            f"Equal steps ({summary[0]['steps']:.0f} each):" if summary else "Equal steps:",
            "",
            f"| method | test acc | s/step | active | peak MiB ({kind}) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for row in summary:
            peak = "n/a" if row["peak_mib"] is None else f"{row['peak_mib']:.0f}"
            fewer = len(record["config"]["seeds"]) - row["seeds"]
            seeds = f", {row['seeds']} seeds" if fewer else ""
            lines.append(
                f"| {row['variant']} ({row['method']}{seeds}) | {row['acc_mean']:.3f} ± "
                f"{row['acc_std']:.3f} (SE {row['acc_se']:.3f}) | {row['seconds_per_step']:.3f} | "
                f"{row['active_fraction']:.3f} | {peak} |"
            )
        lines += _against_sam(summary)
        lines += _cost_over_base(summary)
        lines += equal_time_lines(setting)
        curve_lines = time_to_sam_lines(setting)
        lines += ["", *curve_lines] if curve_lines else []
        lines += _top_arms(setting["runs"])
    lines += active_fraction_lines(record)
    lines += goal_lines(record)
    lines += frontier_goal_lines(record)
    return "\n".join(lines) + "\n"


def _side_note(record: dict[str, Any]) -> str:
    """The header's words on the side variants (run with fewer seeds, never continued)."""
    side = side_variants(record)
    if not side:
        return ""
    once = (
        " at each task's first noise level only,"
        if record["config"].get("side_variants_once")
        else ""
    )
    return (
        f" Side variants, reported beside the goal and not judged on it: {', '.join(side)}, "
        f"seeds {record['config']['seeds'][:SIDE_SEEDS]},{once} rho untuned, not continued to "
        "SAM's time."
    )


def _tuned_where(setting: dict[str, Any]) -> str:
    """Where the setting's tuning ran, when at another noise level (``tune_once``)."""
    at = setting.get("tuned_at_noise")
    if at is None or at == setting["noise"]:
        return ""
    return f"Tuned at {at:.0%} label noise and reused here. "


def _top_arms(runs: list[dict[str, Any]], top: int = 5) -> list[str]:
    """A line per SL-SAM variant: its most sampled tensors, as fractions of steps (all seeds)."""
    totals: dict[str, tuple[list[str], list[int], int]] = {}
    for run in runs:
        if "arms" not in run:
            continue
        arms = run["arms"]
        names, counts, steps = totals.get(
            run["variant"], (arms["names"], [0] * len(arms["names"]), 0)
        )
        counts = [c + d for c, d in zip(counts, arms["counts"], strict=True)]
        totals[run["variant"]] = (names, counts, steps + arms["steps"])
    lines = []
    for variant, (names, counts, steps) in totals.items():
        order = sorted(range(len(counts)), key=counts.__getitem__, reverse=True)[:top]
        picks = ", ".join(f"`{names[i]}` {counts[i] / steps:.2f}" for i in order)
        lines.append(f"- {variant}, most sampled tensors (fraction of steps): {picks}")
    return ["", *lines] if lines else []


def _against_sam(summary: list[dict[str, Any]]) -> list[str]:
    """A line per SL-SAM variant: its mean accuracy minus SAM's, beside the seed spread."""
    sam = next((r for r in summary if r["variant"] == "sam"), None)
    if sam is None:
        return []
    lines = [
        f"- {r['variant']} minus SAM: {r['acc_mean'] - sam['acc_mean']:+.3f} test accuracy "
        f"(seed std {r['acc_std']:.3f} and {sam['acc_std']:.3f}), at "
        f"{r['seconds_per_step'] / sam['seconds_per_step']:.2f}x SAM's time per step"
        for r in summary
        if r["method"] == "slsam"
    ]
    return ["", *lines] if lines else []


def _bar_tuning(setting: dict[str, Any]) -> list[str]:
    """A line per BAR variant: its validation accuracy by (mu, schedule), and the choice."""
    return [
        f"{name} by (mu, schedule): "
        + ", ".join(
            f"({mu:g}, {schedule}): {score:.3f}"
            for (mu, schedule), score in zip(tuned["grid"], tuned["val_acc"], strict=True)
            if score is not None
        )
        + f" -> mu {tuned['mu']:g}, {tuned['schedule']}."
        for name, tuned in setting.get("bar", {}).items()
    ]


def _rho_tuning(setting: dict[str, Any]) -> list[str]:
    """A line per variant that tuned its own rho (validation accuracy by rho, the choice) or
    took another's."""
    return [
        f"{name} takes the rho chosen for {tuned['shared_from']}: rho {tuned['rho']:g}."
        if "shared_from" in tuned
        else f"{name} by rho: {_grid(tuned['grid'], tuned['val_acc'])} -> rho {tuned['rho']:g}."
        for name, tuned in setting.get("rho_by_variant", {}).items()
    ]


def _cost_over_base(summary: list[dict[str, Any]]) -> list[str]:
    """Each BAR variant's time per step over the base optimizer's (BAR's cost)."""
    base = next((r for r in summary if r["variant"] == "base"), None)
    if base is None:
        return []
    lines = [
        f"- {r['variant']}: {r['seconds_per_step'] / base['seconds_per_step']:.2f}x "
        f"{base['method']}'s time per step"
        for r in summary
        if r["method"] in ("nbar", "obar")
    ]
    return ["", *lines] if lines else []


#: The charts' file names (charts.py draws them).
CHART_NAMES = (
    "accuracy_vs_cost.png",
    "bandit_arms.png",
    "balancedness.png",
    "accuracy_vs_seconds.png",
)


def output_paths(out: Path) -> tuple[Path, ...]:
    """Every file an evaluation writes into ``out``."""
    return tuple(out / n for n in ("results.json", "results.md", *CHART_NAMES))


def write(record: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Write ``results.json`` and ``results.md`` into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = output_paths(out)[:2]
    json_path.write_text(json.dumps(record, indent=1) + "\n")
    md_path.write_text(to_markdown(record))
    return json_path, md_path
