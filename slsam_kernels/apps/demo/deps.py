"""Optional dependencies of the demo: import them, or fail naming the command that installs them."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingDependencyError(RuntimeError):
    """A package the chosen demo task needs is not installed; the message says how to install it."""


def require(module: str, install: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingDependencyError` naming ``install``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"the demo needs the Python module '{module}', which is not installed; "
            f"install it with: {install}"
        ) from exc
