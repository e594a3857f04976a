"""The ``"cpp"`` backend: multi-threaded C++ loops for CPU tensors, from the compiled extension
``slsam_kernels._C`` (whose CUDA kernels are the ``"cuda"`` backend, :mod:`.cuda`). Importing this
package never fails: when the extension is missing, :data:`~.loader.LOAD_ERROR` says why and both
backends report it as their reason."""

from __future__ import annotations

from ..reference import sample_active
from .kernels import bandit_update, grad_sqnorms, launch_fused, perturb_, restore_
from .loader import LOAD_ERROR

UNAVAILABLE_REASON = LOAD_ERROR
# The extension's bandit runs on the host, where CPU tensors live; the draw is the reference's.
PROBS_ON_DEVICE = True

__all__ = [
    "PROBS_ON_DEVICE",
    "UNAVAILABLE_REASON",
    "bandit_update",
    "grad_sqnorms",
    "launch_fused",
    "perturb_",
    "restore_",
    "sample_active",
]
