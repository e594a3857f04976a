"""Without CUDA, Triton kernels run in triton's interpreter; it must be on before triton is
imported, which is why this is set at collection time rather than in a fixture."""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
