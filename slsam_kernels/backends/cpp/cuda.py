"""The ``"cuda"`` backend: the extension's multi-tensor CUDA kernels for CUDA tensors."""

from __future__ import annotations

import torch

from ..reference import bandit_update, sample_active
from .kernels import grad_sqnorms, launch_fused, perturb_, restore_
from .loader import LOAD_ERROR, C


def _unavailable_reason() -> str:
    if LOAD_ERROR:
        return LOAD_ERROR
    if not C.built_with_cuda:
        return (
            "extension built without CUDA kernels (needs a CUDA build of torch and nvcc at "
            "build time; set SLSAM_CUDA_ARCH to pick architectures)"
        )
    if not torch.cuda.is_available():
        return "no CUDA device"
    return ""


UNAVAILABLE_REASON = _unavailable_reason()
# No bandit kernels here: the reference's runs on the host, the probabilities live on the CPU.
PROBS_ON_DEVICE = False

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
