"""Where benchmark and evaluation runs write: a new folder per run, nothing overwritten."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path


def run_folder(root: Path, *tags: str) -> Path:
    """``root/<UTC date>-<time>[-tag...]``: a folder of its own for each run."""
    stamp = f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    return root / "-".join([stamp, *(t for t in tags if t)])


def refuse_to_overwrite(paths: Iterable[Path], force: bool) -> None:
    """Raise ``FileExistsError`` naming the files that exist already, unless ``force``."""
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise FileExistsError(
            f"would overwrite {', '.join(existing)}: choose another --out, or pass --force"
        )
