"""Accuracy-vs-seconds charts (PNG, matplotlib): one panel of curves, and the demo's chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .curves import TOLERANCE, Curve
from .deps import require

MATPLOTLIB_INSTALL = "pip install matplotlib"


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend, or a MissingDependencyError."""
    matplotlib = require("matplotlib", MATPLOTLIB_INSTALL)
    matplotlib.use("Agg")
    return require("matplotlib.pyplot", MATPLOTLIB_INSTALL)


def draw_curves(ax: Any, curves: dict[str, Curve], ylabel: str, xlabel: str) -> None:
    """Each curve as a line (and its min-max band, where it has one) on ``ax``, with SAM's
    target (its final accuracy minus the tolerance) when ``curves`` has ``"sam"``."""
    for name, curve in curves.items():
        seconds = [p["seconds"] for p in curve]
        (line,) = ax.plot(seconds, [p["val_acc"] for p in curve], label=name, lw=1.2)
        if curve and "lo" in curve[0]:
            lo, hi = [p["lo"] for p in curve], [p["hi"] for p in curve]
            ax.fill_between(seconds, lo, hi, color=line.get_color(), alpha=0.12, lw=0)
    if curves.get("sam"):
        target = curves["sam"][-1]["val_acc"] - TOLERANCE
        ax.axhline(target, color="black", ls=":", lw=1, label="SAM's final - 0.5 pt")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def accuracy_vs_seconds(curves: dict[str, Curve], title: str, path: Path) -> Path:
    """The demo's chart: one run per method, test accuracy against timed training seconds."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    draw_curves(ax, curves, "test accuracy", "timed training seconds")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
