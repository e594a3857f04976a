"""Where a measurement came from: the checkout's git revision and the CPU, for result
files."""

from __future__ import annotations

import contextlib
import platform
import subprocess
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else what ``platform`` knows."""
    with contextlib.suppress(OSError, StopIteration):
        return next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    return platform.processor() or platform.machine()


def git_revision(path: Path, short: bool = False) -> str:
    """The commit checked out at ``path``, with ``-dirty`` when tracked files have uncommitted
    changes; ``unknown`` outside a git checkout or without git."""
    rev_args = ["git", "rev-parse", *(["--short"] if short else []), "HEAD"]
    try:
        rev = _git(rev_args, path)
        dirty = _git(["git", "status", "--porcelain", "--untracked-files=no"], path)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("-dirty" if dirty else "")


def _git(args: list[str], cwd: Path) -> str:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
