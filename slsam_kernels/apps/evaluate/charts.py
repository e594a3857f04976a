"""The evaluation's charts (PNG, matplotlib): accuracy against cost, the bandit's arms, and
LoRA pairs' balancedness."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from slsam_kernels.apps.demo.charts import draw_curves, pyplot

from .comparisons import rows_of
from .curves import curves_by_variant


def _grid(count: int) -> tuple[int, int]:
    cols = min(count, 2)
    return math.ceil(count / cols), cols


def accuracy_vs_cost(record: dict[str, Any], path: Path) -> Path:
    """One panel per task and noise level: mean test accuracy (error bar: sample std over
    seeds) against mean seconds per step, one point per method (equal steps)."""
    plt = pyplot()
    settings = record["settings"]
    rows, cols = _grid(len(settings))
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4 * rows), squeeze=False)
    for ax, setting in zip(axes.flat, settings, strict=False):
        for row in rows_of(setting, "steps"):
            ax.errorbar(
                row["seconds_per_step"], row["acc_mean"], yerr=row["acc_std"], fmt="o", capsize=3
            )
            ax.annotate(
                row["variant"],
                (row["seconds_per_step"], row["acc_mean"]),
                textcoords="offset points",
                xytext=(5, 4),
                fontsize=8,
            )
        ax.set_title(f"{setting['task']}, {setting['noise']:.0%} label noise")
        ax.set_xlabel("seconds per step")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(settings) :]:
        ax.set_visible(False)
    fig.suptitle(f"Evaluation '{record['config']['name']}' ({record['device']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _arm_panels(record: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(title, runs) per task, noise level and SL-SAM variant that recorded arms."""
    panels = []
    for setting in record["settings"]:
        by_variant: dict[str, list[dict[str, Any]]] = {}
        for run in setting["runs"]:
            if "arms" in run:
                by_variant.setdefault(run["variant"], []).append(run)
        for variant, runs in by_variant.items():
            title = f"{setting['task']}, {setting['noise']:.0%} noise, {variant}"
            panels.append((title, runs))
    return panels


def arm_distribution(record: dict[str, Any], path: Path) -> Path | None:
    """Per SL-SAM variant, task and noise level: a heat map of how often each arm (x, in
    parameter order) was active in each tenth of training (y), summed over seeds, as a
    fraction of that window's steps. None (no file) when no run recorded arms."""
    panels = _arm_panels(record)
    if not panels:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 2.6 * len(panels)), squeeze=False)
    for ax, (title, runs) in zip(axes[:, 0], panels, strict=True):
        arms = runs[0]["arms"]
        total = [[0.0] * len(arms["names"]) for _ in arms["window_counts"]]
        steps = sum(r["arms"]["steps"] for r in runs)
        per_window = steps / arms["windows"]
        for run in runs:
            for w, counts in enumerate(run["arms"]["window_counts"]):
                for a, c in enumerate(counts):
                    total[w][a] += c / per_window
        image = ax.imshow(total, aspect="auto", vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_title(f"{title}: fraction of steps each tensor was active", fontsize=9)
        ax.set_ylabel("tenth of training")
        ax.set_yticks(range(len(total)))
        counts = [sum(col) for col in zip(*total, strict=True)]
        top = sorted(range(len(counts)), key=counts.__getitem__, reverse=True)[:3]
        ax.set_xticks(top, [arms["names"][i] for i in top], fontsize=6, rotation=15)
        fig.colorbar(image, ax=ax, fraction=0.02)
    axes[-1, 0].set_xlabel("arm (parameter tensor, model order); ticks: the 3 most sampled")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def balancedness(record: dict[str, Any], path: Path) -> Path | None:
    """Per task and noise level with LoRA runs: the mean ``|B_t|`` over the adapter pairs
    against the step, one line per method (mean over seeds). None (no file) when no run
    recorded it."""
    settings = [s for s in record["settings"] if any("balancedness" in r for r in s["runs"])]
    if not settings:
        return None
    plt = pyplot()
    rows, cols = _grid(len(settings))
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4 * rows), squeeze=False)
    for ax, setting in zip(axes.flat, settings, strict=False):
        by_variant: dict[str, list[list[float]]] = {}
        for run in setting["runs"]:
            if "balancedness" in run:
                by_variant.setdefault(run["variant"], []).append(run["balancedness"])
        for variant, curves in by_variant.items():
            mean = [sum(values) / len(values) for values in zip(*curves, strict=True)]
            ax.plot(range(len(mean)), mean, label=variant)
        ax.set_title(f"{setting['task']}, {setting['noise']:.0%} label noise")
        ax.set_xlabel("step")
        ax.set_ylabel("mean |B| = |(||x||² - ||y||²) / 2| over LoRA pairs")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(settings) :]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def accuracy_vs_seconds(record: dict[str, Any], path: Path) -> Path | None:
    """One panel per task and noise level with curves: validation accuracy against cumulative
    timed training seconds, per method its seed mean (line) and the seeds' min-max (band),
    and SAM's target (its final accuracy minus the tolerance). None (no file) when no run
    recorded a curve."""
    settings = [s for s in record["settings"] if curves_by_variant(s)]
    if not settings:
        return None
    plt = pyplot()
    rows, cols = _grid(len(settings))
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4.5 * rows), squeeze=False)
    for ax, setting in zip(axes.flat, settings, strict=False):
        draw_curves(
            ax,
            curves_by_variant(setting),
            "validation accuracy",
            "timed training seconds (seed mean)",
        )
        ax.set_title(f"{setting['task']}, {setting['noise']:.0%} label noise")
    for ax in list(axes.flat)[len(settings) :]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
