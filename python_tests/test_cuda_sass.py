"""The CUDA element-wise kernels' main loops, as ptxas compiles them for sm_90 (compile-only: no
GPU runs them here).

Each kernel must walk its chunk in 16-byte global accesses (LDG.E.128 / STG.E.128) and load
nothing per element but its data: a loop that re-read the launch table's pointers or the
Adam/SGD scalars (the stores might alias them) would show as 64-bit and 32-bit loads beside
the data's, and as more loads per iteration than the kernel has input streams times the
accesses each thread keeps in flight.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sass_testing import access_bits, kernels, loads, loops, stores

CUDA_SOURCES = Path(__file__).resolve().parent.parent / "csrc" / "cuda"
SCRIPT = CUDA_SOURCES / "check_compile.sh"

# Kernel (its functor's name in the mangled symbol) -> the .cu that defines it and how many
# streams each element reads: Adam backup, g, m, v; SGD backup, g, momentum buffer; perturb w,
# g; restore the backup; the norms g (and the weights).
KERNELS = {
    "AdamStep": ("optimizer_steps.cu", 4),
    "SgdStep": ("optimizer_steps.cu", 3),
    "Perturb": ("perturb.cu", 2),
    "CopyBits": ("perturb.cu", 1),
    "chunk_sqnorm_kernel": ("sqnorms.cu", 2),
}
# Accesses each thread keeps in flight per stream: multi_tensor.cuh's kAccessesInFlight (16
# bytes each) and kScalarsInFlight (one element each, where streams are not alike aligned).
ACCESSES_IN_FLIGHT = {128: 2, "element": 4}
# Itanium codes of the element types the kernels are instantiated for, and their widths.
ELEMENT_BITS = {
    "f": 32,
    "d": 64,
    "N3c104HalfE": 16,
    "N3c108BFloat16E": 16,
    "t": 16,
    "j": 32,
    "m": 64,
}


def _cuobjdump() -> str | None:
    """cuobjdump from PATH, else the copy that Triton's NVIDIA backend ships."""
    found = shutil.which("cuobjdump")
    if found:
        return found
    triton = importlib.util.find_spec("triton")
    if triton is None or not triton.submodule_search_locations:
        return None
    bundled = Path(next(iter(triton.submodule_search_locations))) / "backends/nvidia/bin/cuobjdump"
    return str(bundled) if bundled.is_file() else None


CUOBJDUMP = _cuobjdump()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("nvcc") is None,
        reason="nvcc not found: install the CUDA toolkit (or put nvcc on PATH) to check the "
        "CUDA kernels' SASS",
    ),
    pytest.mark.skipif(
        CUOBJDUMP is None,
        reason="cuobjdump not found: install the CUDA toolkit or triton (which ships one)",
    ),
]


@pytest.fixture(scope="module")
def sass(tmp_path_factory) -> dict[str, dict]:
    """Source file -> {mangled kernel name: instructions}, compiled for sm_90 only."""
    out = tmp_path_factory.mktemp("cubins")
    sources = sorted({source for source, _ in KERNELS.values()})
    result = subprocess.run(
        ["bash", str(SCRIPT), str(out), *(str(CUDA_SOURCES / s) for s in sources)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
        env={
            **os.environ,
            "PYTHON": sys.executable,
            "SLSAM_CUDA_OUTPUT": "cubin",
            "SLSAM_CUDA_ARCH": "90",
        },
    )
    assert result.returncode == 0, result.stderr[-6000:]
    dumped = {}
    for source in sources:
        cubin = out / source.replace(".cu", ".cubin")
        listing = subprocess.run(
            [CUOBJDUMP, "-sass", str(cubin)], capture_output=True, text=True, check=True
        ).stdout
        dumped[source] = kernels(listing)
    return dumped


def _instances(sass: dict[str, dict], kernel: str) -> dict[str, tuple[int, list]]:
    """Mangled name -> (element bits, instructions) of every instantiation of `kernel`."""
    source, _ = KERNELS[kernel]
    pattern = re.compile(rf"\d+{kernel}I({'|'.join(map(re.escape, ELEMENT_BITS))})")
    found = {}
    for name, code in sass[source].items():
        match = pattern.search(name)
        if match:
            found[name] = (ELEMENT_BITS[match.group(1)], code)
    return found


def test_every_element_type_is_found(sass):
    for kernel in KERNELS:
        widths = Counter(bits for bits, _ in _instances(sass, kernel).values())
        assert widths, f"no {kernel} kernel in the SASS"
        assert set(widths) == ({16, 32, 64}), (kernel, widths)


def _is_global_16_bytes(opcode: str) -> bool:
    return opcode.startswith(("LDG.", "STG.")) and access_bits(opcode) == 128


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_main_loops_move_16_bytes_per_access(sass, kernel):
    for name, (_, code) in _instances(sass, kernel).items():
        loading = [body for body in loops(code) if loads(body)]
        vector_loops = [
            body for body in loading if all(_is_global_16_bytes(op) for op in loads(body))
        ]
        assert vector_loops, (
            f"{name}: no loop loads in 16-byte global accesses only; its loops load "
            f"{[dict(Counter(loads(body))) for body in loading]}"
        )
        for body in vector_loops:
            written = stores(body)  # none in the norms' loops
            assert all(_is_global_16_bytes(op) for op in written), (name, written)


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_loops_load_only_their_data(sass, kernel):
    """Every load in a loop has the element's width or 16 bytes, and there are no more of them
    than the input streams times the accesses a thread keeps in flight: a reload of the
    table's pointers or the scalars per element breaks one bound or the other."""
    _, streams = KERNELS[kernel]
    for name, (element_bits, code) in _instances(sass, kernel).items():
        for body in loops(code):
            loaded = Counter(loads(body))
            widths = Counter()
            for opcode, count in loaded.items():
                widths[access_bits(opcode)] += count
            assert set(widths) <= {element_bits, 128}, (
                f"{name}: a loop loads {dict(loaded)}; only {element_bits}-bit elements and "
                "16-byte accesses belong there"
            )
            assert widths[128] <= streams * ACCESSES_IN_FLIGHT[128], (name, dict(loaded))
            assert widths[element_bits] <= streams * ACCESSES_IN_FLIGHT["element"], (
                f"{name}: {widths[element_bits]} loads per iteration for {streams} streams "
                f"({dict(loaded)}): per-element reloads of the table or scalars?"
            )
