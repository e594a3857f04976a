"""Shared pieces of the Triton tests: the marks that skip them where triton cannot run, and the
device they run on."""

from __future__ import annotations

import pytest
import torch

from slsam_kernels.backends import triton_kernels as triton_backend

TRITON_MARKS = [
    pytest.mark.triton,
    pytest.mark.skipif(
        bool(triton_backend.UNAVAILABLE_REASON),
        reason=f"needs triton with CUDA or TRITON_INTERPRET=1: {triton_backend.UNAVAILABLE_REASON}",
    ),
]

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
