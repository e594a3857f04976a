"""The CUDA kernels compile (nvcc, sm_90 or $SLSAM_CUDA_ARCH). Compile-only: nothing here runs
them, and a CPU build of torch cannot load them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CUDA_SOURCES = Path(__file__).resolve().parent.parent / "csrc" / "cuda"
SCRIPT = CUDA_SOURCES / "check_compile.sh"

requires_nvcc = pytest.mark.skipif(
    shutil.which("nvcc") is None,
    reason="nvcc not found: install the CUDA toolkit (or put nvcc on PATH) to compile-check "
    "csrc/cuda",
)


def run_script(out_dir: Path, python: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), str(out_dir)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
        env={**os.environ, "PYTHON": python},
    )


@pytest.mark.slow
@requires_nvcc
def test_every_cuda_source_compiles_to_object_code(tmp_path):
    result = run_script(tmp_path, sys.executable)
    assert result.returncode == 0, result.stderr[-6000:]
    objects = sorted(p.name for p in tmp_path.glob("*.o"))
    assert objects == sorted(f"{s.stem}.o" for s in CUDA_SOURCES.glob("*.cu"))


@requires_nvcc
def test_an_interpreter_without_torch_is_named_in_one_line(tmp_path):
    no_torch = tmp_path / "python-without-torch"
    no_torch.write_text("#!/bin/sh\necho \"No module named 'torch'\" >&2\nexit 1\n")
    no_torch.chmod(0o755)
    result = run_script(tmp_path, str(no_torch))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot import torch" in lines[0] and str(no_torch) in lines[0]
    assert "set PYTHON" in lines[0]
