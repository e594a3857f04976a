"""The CUDA kernels compile (nvcc, sm_90 or $SLSAM_CUDA_ARCH). Compile-only: nothing here runs
them, and a CPU build of torch cannot load them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CUDA_SOURCES = Path(__file__).resolve().parent.parent / "csrc" / "cuda"


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("nvcc") is None,
    reason="nvcc not found: install the CUDA toolkit (or put nvcc on PATH) to compile-check "
    "csrc/cuda",
)
def test_every_cuda_source_compiles_to_object_code(tmp_path):
    result = subprocess.run(
        ["bash", str(CUDA_SOURCES / "check_compile.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-6000:]
    objects = sorted(p.name for p in tmp_path.glob("*.o"))
    assert objects == sorted(f"{s.stem}.o" for s in CUDA_SOURCES.glob("*.cu"))
