"""The one list of backends the tests run over: each backend with the device its tests use,
skipped with its own reason (``registry.status``) where it cannot run here."""

from __future__ import annotations

import pytest
import torch
from _pytest.mark import ParameterSet

from slsam_kernels.ops import registry

#: Triton runs CUDA tensors, and CPU tensors under its interpreter (set by conftest).
TRITON_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
_DEVICES = {"reference": "cpu", "cpp": "cpu", "triton": TRITON_DEVICE, "cuda": "cuda"}
# the pytest marks `-m` selects by (pyproject's markers)
_MARKS = {"triton": [pytest.mark.triton], "cuda": [pytest.mark.cuda]}
FAST = ("cpp", "triton", "cuda")


def device_of(name: str) -> str:
    """The device backend ``name``'s tests run on."""
    return _DEVICES[name]


def unavailable_reason(name: str) -> str:
    """Why backend ``name`` cannot run here; empty when it can."""
    status = registry.status(name)
    return "" if status.available else f"backend {name!r} is unavailable: {status.reason}"


def skip_unless_available(name: str) -> list[pytest.MarkDecorator]:
    """Backend ``name``'s marks, with a skip naming why it cannot run here."""
    reason = unavailable_reason(name)
    return [*_MARKS.get(name, []), pytest.mark.skipif(bool(reason), reason=reason)]


def backend_params(*names: str, device: bool = True, cpu_only: bool = False) -> list[ParameterSet]:
    """One pytest param per backend in ``names`` (every backend when empty), ids the names:
    ``(name, device)`` pairs with ``device``, else the name alone. ``cpu_only`` keeps the
    backends whose tests run on CPU tensors."""
    chosen = names or registry.backend_names()
    params = []
    for name in chosen:
        if cpu_only and device_of(name) != "cpu":
            continue
        values = (name, device_of(name)) if device else (name,)
        params.append(pytest.param(*values, id=name, marks=skip_unless_available(name)))
    return params
