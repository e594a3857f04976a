"""Triton backend: every per-step operation as fused multi-tensor kernels.

Runs on CUDA tensors, and on CPU tensors only under ``TRITON_INTERPRET=1`` (triton's
interpreter: exact but slow, meant for tests). Imports without triton installed; then
``UNAVAILABLE_REASON`` says why the backend cannot run.

The SL-SAM draw takes a fresh seed from the optimizer's host generator for ``tl.rand`` (a host
draw, no sync), so the checkpointed generator state stays the whole RNG state and a seeded run
repeats; the bandit update and the
draw are two small launches, one per protocol function (``bandit_update``, ``sample_active``);
fusing them would need a combined protocol entry to save one launch per step.
"""

from __future__ import annotations

import os
from types import ModuleType

import torch


def _interpreting(triton: ModuleType) -> bool:
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _unavailable_reason() -> str:
    try:
        import triton
    except ImportError:
        return "triton is not installed (pip install 'slsam_kernels[triton]')"
    if _interpreting(triton) or torch.cuda.is_available():
        return ""
    return (
        "no CUDA device, and TRITON_INTERPRET is not 1 (triton runs CPU tensors only in its "
        "interpreter, which is slow and meant for tests)"
    )


UNAVAILABLE_REASON = _unavailable_reason()
DEVICE_TYPES: tuple[str, ...] = ()
PROBS_ON_DEVICE = True

if not UNAVAILABLE_REASON:
    import triton

    DEVICE_TYPES = ("cuda", "cpu") if _interpreting(triton) else ("cuda",)

    from .bandit import bandit_update, sample_active
    from .fused import launch_fused
    from .norms import grad_sqnorms
    from .perturb import perturb_
    from .restore import restore_

    __all__ = [
        "DEVICE_TYPES",
        "PROBS_ON_DEVICE",
        "UNAVAILABLE_REASON",
        "bandit_update",
        "grad_sqnorms",
        "launch_fused",
        "perturb_",
        "restore_",
        "sample_active",
    ]
