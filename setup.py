"""Build script. Metadata lives in pyproject.toml; this file only adds the optional extension.

``slsam_kernels._C`` is an accelerator, never a requirement: when it cannot be built the
package installs without it and ``python -m slsam_kernels info`` says why.

Environment switches:
    SLSAM_NO_EXTENSION=1   skip the extension.
    SLSAM_CUDA_ARCH        CUDA architectures, e.g. "90" or "80;90a" (default "90").
"""

from __future__ import annotations

import glob
import os
import shutil
import sys

import setuptools
from setuptools import setup
from setuptools.command.build_ext import build_ext

CSRC = "csrc"
LICENSE = "Apache-2.0"
# Why the extension is missing, for `python -m slsam_kernels info` (read by backends/cpp/loader.py).
BUILD_STATUS = os.path.join("slsam_kernels", "_C_build_error.txt")
# -ffp-contract=off / --fmad=false: no fused multiply-add, so the kernels round like torch's
# reference ops (the SAM ascent matches it bit for bit). -fno-math-errno lets sqrt vectorise
# (torch builds with it too).
CXX_FLAGS = ["-O3", "-std=c++20", "-fopenmp", "-ffp-contract=off", "-fno-math-errno"]
NVCC_FLAGS = ["-O3", "-std=c++20", "--fmad=false"]


def _note(message: str) -> None:
    print(f"slsam_kernels: {message}", file=sys.stderr)


def _record_build_error(message: str, *package_roots: str) -> None:
    """Leave ``message`` beside the package sources (and in the build tree, for wheels)."""
    for root in (".", *package_roots):
        path = os.path.join(root, BUILD_STATUS)
        if os.path.isdir(os.path.dirname(path)):
            with open(path, "w") as f:
                f.write(message + "\n")


def _clear_build_error() -> None:
    if os.path.exists(BUILD_STATUS):
        os.remove(BUILD_STATUS)


def _cuda_arch_flags() -> list[str]:
    archs = os.environ.get("SLSAM_CUDA_ARCH", "90").replace(",", ";").split(";")
    return [f"-gencode=arch=compute_{a},code=sm_{a}" for a in (a.strip() for a in archs) if a]


def _extensions() -> tuple[list, dict]:
    if os.environ.get("SLSAM_NO_EXTENSION", "0") not in ("", "0"):
        _note("SLSAM_NO_EXTENSION is set: building without the C++/CUDA extension")
        _record_build_error("extension not built (SLSAM_NO_EXTENSION=1)")
        return [], {}
    try:
        import torch
        from torch.utils import cpp_extension
    except ImportError as exc:
        _note(f"torch is not importable ({exc}): building without the extension")
        _record_build_error(f"extension not built: torch was not importable at build time ({exc})")
        return [], {}
    sources = [os.path.join(CSRC, "bindings.cpp"), *sorted(glob.glob(f"{CSRC}/cpu/*.cpp"))]
    cuda_home = cpp_extension.CUDA_HOME
    nvcc = cuda_home and shutil.which("nvcc", path=os.path.join(cuda_home, "bin"))
    common = dict(name="slsam_kernels._C", extra_link_args=["-fopenmp"])
    if torch.version.cuda and nvcc:
        extension = cpp_extension.CUDAExtension(
            sources=sources + sorted(glob.glob(f"{CSRC}/cuda/*.cu")),
            define_macros=[("SLSAM_WITH_CUDA", None)],
            extra_compile_args={"cxx": CXX_FLAGS, "nvcc": NVCC_FLAGS + _cuda_arch_flags()},
            **common,
        )
    else:
        why = "torch is a CPU build" if not torch.version.cuda else "nvcc was not found"
        _note(f"{why}: building the CPU kernels only")
        extension = cpp_extension.CppExtension(
            sources=sources, extra_compile_args={"cxx": CXX_FLAGS}, **common
        )
    return [extension], {"build_ext": _optional(cpp_extension.BuildExtension)}


def _optional(command: type[build_ext]) -> type[build_ext]:
    """Wrap ``command`` so that a failed extension build leaves a working pure-Python install."""

    class OptionalBuildExt(command):
        def run(self) -> None:
            try:
                super().run()
            except Exception as exc:  # any build failure: install without the accelerator
                error = f"building the extension failed ({type(exc).__name__}: {exc})"
                _note(f"{error}; installing without it. See the compiler output above.")
                _record_build_error(
                    error + "; the compiler output is in the build log", self.build_lib
                )
            else:
                _clear_build_error()

    return OptionalBuildExt


def _license() -> dict[str, str]:
    """Apache-2.0 as an SPDX expression (PEP 639) where setuptools takes one (>= 77), else as
    the older free-text field: the GPU machine builds with whatever setuptools it has."""
    modern = int(setuptools.__version__.split(".")[0]) >= 77
    return {"license_expression" if modern else "license": LICENSE}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass, **_license())
