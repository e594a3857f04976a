"""The ``"cuda"`` backend: the extension's multi-tensor CUDA kernels for CUDA tensors."""

from __future__ import annotations

import torch

from .kernels import fused_restore_step, grad_sqnorms, perturb_, restore_
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

__all__ = ["UNAVAILABLE_REASON", "fused_restore_step", "grad_sqnorms", "perturb_", "restore_"]
