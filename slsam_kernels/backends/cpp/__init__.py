"""The ``"cpp"`` backend: multi-threaded C++ loops for CPU tensors, from the compiled extension
``slsam_kernels._C`` (whose CUDA kernels are the ``"cuda"`` backend, :mod:`.cuda`). Importing this
package never fails: when the extension is missing, :data:`~.loader.LOAD_ERROR` says why and both
backends report it as their reason."""

from __future__ import annotations

from .kernels import (
    bandit_update,
    fused_restore_step,
    grad_sqnorms,
    perturb_,
    restore_,
    sample_active,
)
from .loader import LOAD_ERROR

UNAVAILABLE_REASON = LOAD_ERROR

__all__ = [
    "UNAVAILABLE_REASON",
    "bandit_update",
    "fused_restore_step",
    "grad_sqnorms",
    "perturb_",
    "restore_",
    "sample_active",
]
