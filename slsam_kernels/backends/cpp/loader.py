"""Import ``slsam_kernels._C`` once and record why it is missing, if it is."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

EXTENSION = "slsam_kernels._C"
# Written by setup.py when it skipped the extension or its build failed.
BUILD_ERROR_FILE = Path(__file__).parents[2] / "_C_build_error.txt"
BUILD_HINT = (
    "build it with `pip install --no-build-isolation -e .` or "
    "`python setup.py build_ext --inplace` (the build prints its error)"
)


def _load() -> tuple[ModuleType | None, str]:
    try:
        return importlib.import_module(EXTENSION), ""
    except ModuleNotFoundError as exc:
        if exc.name == EXTENSION:
            return None, f"{_build_error()}; {BUILD_HINT}"
        return None, f"extension failed to load: {exc}"
    except ImportError as exc:  # built, but does not load (e.g. built against another torch)
        return None, f"extension failed to load: {exc}"


def _build_error() -> str:
    if BUILD_ERROR_FILE.is_file():
        return BUILD_ERROR_FILE.read_text().strip()
    return "extension not built"


C, LOAD_ERROR = _load()
