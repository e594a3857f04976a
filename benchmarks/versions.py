"""Print what a GPU run depends on: Python, torch and its CUDA, the device, triton, the build
tools and the optional packages the tests and benchmarks use (``make gpu-check``'s first step).

    python -m benchmarks.versions
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil

# setuptools: pyproject.toml's license needs >= 77 unless setup.py's fallback applies
OPTIONAL = (
    "triton", "setuptools", "pytest", "numpy", "transformers", "pytorch-optimizer", "matplotlib",
)  # fmt: skip


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def lines() -> list[str]:
    """One ``name: value`` line per item; torch is imported here, not at module import."""
    import torch
    from torch.utils import cpp_extension

    cuda = torch.cuda.is_available()
    out = [
        f"python: {platform.python_version()} ({platform.machine()})",
        f"torch: {torch.__version__} (CUDA build: {torch.version.cuda or 'no'})",
        f"cuda available: {cuda}",
    ]
    if cuda:
        props = torch.cuda.get_device_properties(0)
        out += [
            f"device: {props.name}, compute capability {props.major}.{props.minor}, "
            f"{props.total_memory / 2**30:.0f} GiB, {torch.cuda.device_count()} device(s)",
            f"cudnn: {torch.backends.cudnn.version()}",
        ]
    out += [f"{dist}: {_version(dist)}" for dist in OPTIONAL]
    out += [
        "ninja: "
        + ("yes" if cpp_extension.is_ninja_available() else "no (files compile one at a time)"),
        f"CUDA_HOME: {cpp_extension.CUDA_HOME}; nvcc on PATH: {shutil.which('nvcc') or 'no'}",
        f"cpu count: {os.cpu_count()}",
        f"TRITON_INTERPRET: {os.environ.get('TRITON_INTERPRET', '(unset)')}",
    ]
    return out


if __name__ == "__main__":
    print("\n".join(lines()))
