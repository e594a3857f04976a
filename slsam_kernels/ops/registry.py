"""The backend registry and the one rule that picks a backend.

Rule: an explicit ``backend=`` argument wins; ``"auto"`` takes ``$SLSAM_BACKEND`` when it is
set, and otherwise the first available backend in ``AUTO_ORDER`` for the tensors' device type.
A backend that was asked for by name but is unavailable raises with the reason.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType

import torch

ENV_VAR = "SLSAM_BACKEND"

# name -> (module path, device types it runs on)
_REGISTRY: dict[str, tuple[str, tuple[str, ...]]] = {
    "reference": ("slsam_kernels.backends.reference", ("cpu", "cuda", "mps", "xpu")),
    # cpu only under TRITON_INTERPRET=1; the module narrows this with its DEVICE_TYPES
    "triton": ("slsam_kernels.backends.triton_kernels", ("cuda", "cpu")),
    "cpp": ("slsam_kernels.backends.cpp", ("cpu",)),
    "cuda": ("slsam_kernels.backends.cpp.cuda", ("cuda",)),
}

# Triton first on CUDA: its multi-tensor kernels compile to vector loads (checked in the PTX),
# the CUDA extension's use scalar loads. Neither has been timed on a GPU yet.
AUTO_ORDER: dict[str, tuple[str, ...]] = {
    "cuda": ("triton", "cuda", "reference"),
    "cpu": ("cpp", "reference"),
}


@dataclass(frozen=True)
class BackendStatus:
    """Whether a backend can run here, and if not, why."""

    name: str
    available: bool
    reason: str
    device_types: tuple[str, ...]


def backend_names() -> tuple[str, ...]:
    """Every backend name ``backend=`` accepts, ``"auto"`` excluded."""
    return tuple(_REGISTRY)


def _load(name: str) -> ModuleType:
    return importlib.import_module(_REGISTRY[name][0])


def status(name: str) -> BackendStatus:
    """Try to load backend ``name`` and report the outcome (the import error when it fails)."""
    device_types = _REGISTRY[name][1]
    try:
        module = _load(name)
    except Exception as exc:  # any import failure makes the backend unavailable, with its reason
        return BackendStatus(name, False, f"{type(exc).__name__}: {exc}", device_types)
    reason = getattr(module, "UNAVAILABLE_REASON", "")
    device_types = getattr(module, "DEVICE_TYPES", None) or device_types
    return BackendStatus(name, not reason, reason or "ok", device_types)


def all_status() -> list[BackendStatus]:
    """The status of every registered backend."""
    return [status(name) for name in _REGISTRY]


def resolve(backend: str, device: torch.device) -> str:
    """Return the name of the backend that runs ops on ``device`` (see the module docstring)."""
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, got {type(backend).__name__}")
    requested = backend
    if requested == "auto":
        requested = os.environ.get(ENV_VAR, "auto") or "auto"
    if requested == "auto":
        for name in AUTO_ORDER.get(device.type, ("reference",)):
            info = status(name)
            if info.available and device.type in info.device_types:
                return name
        return "reference"
    if requested not in _REGISTRY:
        choices = ", ".join(("auto", *_REGISTRY))
        raise ValueError(f"unknown backend {requested!r}: choose one of {choices}")
    info = status(requested)
    if not info.available:
        raise ValueError(
            f"backend {requested!r} is unavailable: {info.reason}. "
            f"Use backend='auto' or see `python -m slsam_kernels info`."
        )
    if device.type not in info.device_types:
        raise ValueError(
            f"backend {requested!r} runs on {', '.join(info.device_types)} tensors, "
            f"not {device.type}; use backend='auto' or 'reference'"
        )
    return requested


def module(name: str) -> ModuleType:
    """The implementation module of an available backend."""
    return _load(name)
