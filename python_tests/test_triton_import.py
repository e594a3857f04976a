"""The package and its triton backend import, and explain themselves, without triton."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return result.stdout.strip()


def test_backend_without_triton_is_unavailable_with_a_reason() -> None:
    out = _run(
        "import sys; sys.modules['triton'] = None\n"
        "import torch, slsam_kernels\n"
        "from slsam_kernels.ops import registry\n"
        "s = registry.status('triton')\n"
        "print(s.available, '|', s.reason, '|', registry.resolve('auto', torch.device('cuda')),"
        " '|', registry.status('cuda').available)"
    )
    available, reason, picked, cuda_built = (part.strip() for part in out.split("|"))
    assert available == "False"
    assert "triton is not installed" in reason
    # auto on CUDA tensors: the first available of AUTO_ORDER["cuda"] once triton drops out,
    # the CUDA extension where it built and a device is present, else the reference
    assert picked == ("cuda" if cuda_built == "True" else "reference")


def test_cpu_without_interpreter_is_not_picked() -> None:
    out = _run(
        "import os; os.environ.pop('TRITON_INTERPRET', None)\n"
        "import torch\n"
        "from slsam_kernels.ops import registry\n"
        "s = registry.status('triton')\n"
        "print(torch.cuda.is_available(), s.available,"
        " registry.resolve('auto', torch.device('cpu')))"
    )
    cuda, available, picked = out.split()
    assert picked in ("cpp", "reference")
    assert available == cuda
