"""Instructions per element of each C++ (``cpp`` backend) kernel and dtype, counted by
valgrind's callgrind, and a check against the committed baseline.

Timings on shared machines move by 30%; instruction counts of the same binary on the same input
do not, so a loop that silently loses its eight-lane form shows up here as 2-8x the
instructions. Each kernel runs under callgrind (one OpenMP thread) on N1 and then N2 elements;
callgrind collects only inside the kernel's C++ entry function (``--toggle-collect``, so the
Python around the call costs nothing) and a client request dumps the count after each call.
``(Ir(N2) - Ir(N1)) / (N2 - N1)`` cancels the fixed costs (argument checks, the output
allocation, the first call's lazy set-up: each size is warmed once first).

    python -m benchmarks.instruction_counts             # check (exit 1: a kernel is >10% over)
    python -m benchmarks.instruction_counts --no-vec8   # the same with the eight-lane loops off
    python -m benchmarks.instruction_counts --update    # rewrite the baseline (intended changes)

Needs valgrind (with its ``valgrind/callgrind.h``) and a C compiler for the client-request
helper. Counts depend on the compiler and the code path the CPU picks (see ``skip_reason``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

BASELINE_FILE = Path(__file__).with_name("instruction_baselines.json")
TOLERANCE = 0.10  # fail above baseline * (1 + TOLERANCE)
SIZES = (65536, 131072)  # elements (arms for the bandit); multiples of 64: no loop tails
BANDIT_SIZES = (1024, 2048)
DTYPES = ("fp32", "bf16", "fp16")
# case -> the C++ entry function (slsam::cpu::NAME) whose instructions are counted; a [variant]
# takes another loop of the same kernel
KERNELS = {
    "grad_sqnorms": "grad_sqnorms",
    "grad_sqnorms[weighted]": "grad_sqnorms",  # ||w * g||^2, ASAM's norms
    "perturb_": "perturb_",
    "perturb_[adaptive]": "perturb_",  # ASAM's w^2 * g
    "restore_": "restore_",
    "adam_restore_step_": "adam_restore_step_",  # AdamW from a backup (SAM's second step)
    "adam_restore_step_[bar]": "adam_restore_step_",  # in place with a prescale (BAR's step)
    "sgd_restore_step_": "sgd_restore_step_",  # momentum 0.9, from a backup
    "bandit_update": "bandit_update",  # per arm, paper rule, 20% of the arms active
}
# x86-64-v3's flags (/proc/cpuinfo names): the eight-lane loops need avx2, fma and f16c, and the
# portable loops' target clones (csrc/cpu/kernels.cpp) pick their x86-64-v3 form on all of these.
X86_64_V3_FLAGS = ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave")
PASSES = {"vec8": True, "portable": False}  # pass name -> _C.use_vec8_kernels argument
CALLGRIND_HEADER = Path("/usr/include/valgrind/callgrind.h")  # Debian's valgrind package has it

_HELPER_SOURCE = """
#include <valgrind/callgrind.h>
void start(void) { CALLGRIND_START_INSTRUMENTATION; }
void zero(void) { CALLGRIND_ZERO_STATS; }
void dump(const char* label) { CALLGRIND_DUMP_STATS_AT(label); }
"""

Counts = dict[str, dict[str, float]]  # kernel -> dtype -> instructions per element


# --- inside valgrind --------------------------------------------------------------------------


def _kernel_calls(kernel: str, dtype_name: str, n: int) -> Callable[[], object]:
    """A call of ``kernel`` on ``n`` elements (arms) of ``dtype_name``, through the public
    ``slsam_kernels.ops`` entry points with ``backend="cpp"``; inputs seeded."""
    import torch

    from slsam_kernels import ops

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
    gen = torch.Generator().manual_seed(n)

    def rand() -> torch.Tensor:
        return torch.randn(n, generator=gen).to(dtype)

    if kernel == "bandit_update":
        probs = torch.full((n,), 0.2)
        active = torch.randperm(n, generator=gen)[: n // 5].sort().values
        norms = torch.rand(active.numel(), generator=gen)
        return lambda: ops.bandit_update(probs, norms, active, 0.2 * n, backend="cpp")
    w, g, backup = rand(), rand(), rand()
    if kernel.startswith("grad_sqnorms"):
        weights = [w] if kernel.endswith("[weighted]") else None
        return lambda: ops.grad_sqnorms([g], weights, backend="cpp")
    if kernel.startswith("perturb_"):
        scales, adaptive = torch.tensor([1e-3]), kernel.endswith("[adaptive]")
        return lambda: ops.perturb_([w], [g], [backup], scales, adaptive, backend="cpp")
    if kernel == "restore_":
        return lambda: ops.restore_([w], [backup], backend="cpp")
    param = torch.nn.Parameter(w)
    param.grad = g
    if kernel.startswith("adam_restore_step_"):
        opt = torch.optim.AdamW([param], lr=0.05, weight_decay=0.01, eps=1e-4)
    else:
        opt = torch.optim.SGD([param], lr=0.05, momentum=0.9)
    bound = ops.bind("cpp", torch.device("cpu"))
    # BAR's step: the params are their own backups, scaled by their factor first
    backups, prescales = ([param], [1.01]) if kernel.endswith("[bar]") else ([backup], None)

    def step() -> None:
        if not bound.fused_restore_step(opt, [param], backups, prescales):
            raise RuntimeError(f"the cpp backend declined the fused {kernel}")

    return step


def _cases() -> list[tuple[str, str, tuple[int, int]]]:
    cases = [(k, d, SIZES) for k in KERNELS if k != "bandit_update" for d in DTYPES]
    return [*cases, ("bandit_update", "fp32", BANDIT_SIZES)]


def run_inside(helper: str, passes: list[str], meta_out: str) -> None:
    """Run every case of ``passes`` (warm each size, then dump its count) under callgrind."""
    import ctypes
    import importlib

    import torch

    torch.set_num_threads(1)
    C = importlib.import_module("slsam_kernels._C")
    client = ctypes.CDLL(helper)
    default = C.use_vec8_kernels(True)  # the setting before: the CPU's default
    client.start()
    for name in passes:
        C.use_vec8_kernels(PASSES[name])
        for kernel, dtype, sizes in _cases():
            calls = [_kernel_calls(kernel, dtype, n) for n in sizes]
            for call in calls:
                call()  # first-call set-up (optimizer state, lazy binding), not counted
            for call, n in zip(calls, sizes):
                client.zero()
                call()
                client.dump(f"{name}/{kernel}/{dtype}/{n}".encode())
    C.use_vec8_kernels(default)
    Path(meta_out).write_text(json.dumps({"vec8_default": default, "torch": torch.__version__}))


# --- outside: launch, parse, compare ----------------------------------------------------------


def _extension_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("slsam_kernels._C")
    if spec is None or spec.origin is None:
        raise RuntimeError("slsam_kernels._C is not built")
    return Path(spec.origin)


def compiler_of_extension() -> str:
    """The compiler identification strings the extension's ``.comment`` section carries."""
    found = set(re.findall(rb"(?:GCC|clang version)[: ][^\x00]*", _extension_path().read_bytes()))
    return "; ".join(sorted(s.decode(errors="replace").strip() for s in found)) or "unknown"


def cpu_flags() -> list[str]:
    """Which of ``X86_64_V3_FLAGS`` this CPU reports (Linux ``/proc/cpuinfo``)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = re.search(r"^flags\s*:(.*)$", text, re.M)
    flags = set(line.group(1).split()) if line else set()
    return [f for f in X86_64_V3_FLAGS if f in flags]


def _build_helper(directory: Path) -> Path:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc) for the callgrind client-request helper")
    source, library = directory / "client.c", directory / "client.so"
    source.write_text(_HELPER_SOURCE)
    subprocess.run(
        [compiler, "-O1", "-shared", "-fPIC", "-o", str(library), str(source)],
        check=True,
        capture_output=True,
    )
    return library


def _parse_dumps(directory: Path) -> dict[str, int]:
    counts = {}
    for part in directory.glob("callgrind.out.*"):
        text = part.read_text()
        label = re.search(r"^desc: Trigger: Client Request: (.*)$", text, re.M)
        total = re.search(r"^totals: (\d+)", text, re.M)
        if label and total:
            counts[label.group(1)] = int(total.group(1))
    return counts


def measure(passes: list[str]) -> tuple[dict[str, Counts], dict]:
    """Instructions per element of every kernel and dtype, for each pass of ``passes``
    (``"vec8"``: the CPU's default dispatch; ``"portable"``: the eight-lane loops off), and
    the run's details (which path the CPU takes by default, versions)."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        helper = _build_helper(directory)
        meta_file = directory / "meta.json"
        toggles = [f"--toggle-collect=slsam::cpu::{f}(*" for f in sorted(set(KERNELS.values()))]
        command = [
            "valgrind", "--tool=callgrind", "--instr-atstart=no", "--collect-atstart=no",
            *toggles, f"--callgrind-out-file={directory / 'callgrind.out'}",
            sys.executable, "-m", "benchmarks.instruction_counts",
            "--inside", str(helper), "--passes", ",".join(passes), "--meta-out", str(meta_file),
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1", "SLSAM_BACKEND": ""}
        root = Path(__file__).resolve().parent.parent
        result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"the callgrind run failed:\n{result.stderr[-4000:]}")
        raw = _parse_dumps(directory)
        meta = json.loads(meta_file.read_text())
    counts: dict[str, Counts] = {}
    for name in passes:
        for kernel, dtype, (n1, n2) in _cases():
            label = f"{name}/{kernel}/{dtype}"
            ir1, ir2 = raw[f"{label}/{n1}"], raw[f"{label}/{n2}"]
            if ir2 <= ir1:
                raise RuntimeError(f"{label}: no per-element count ({ir1} -> {ir2} Ir)")
            counts.setdefault(name, {}).setdefault(kernel, {})[dtype] = round(
                (ir2 - ir1) / (n2 - n1), 3
            )
    return counts, meta


def details(meta: dict) -> dict:
    """What the counts depend on, for the baseline file."""
    version = subprocess.run(["valgrind", "--version"], capture_output=True, text=True)
    return {
        "path": "vec8" if meta["vec8_default"] else "portable",
        "cpu_flags": cpu_flags(),
        "compiler": compiler_of_extension(),
        "valgrind": version.stdout.strip(),
        "torch": meta["torch"],
        "sizes": {"elements": list(SIZES), "bandit_arms": list(BANDIT_SIZES)},
        "omp_threads": 1,
        "tolerance": TOLERANCE,
    }


def load_baseline(path: Path = BASELINE_FILE) -> dict:
    return json.loads(path.read_text())


def skip_reason(baseline: dict) -> str | None:
    """Why the check cannot run here, or None. Counts are only comparable for the same
    compiler and the same dispatch path as the baseline's."""
    if shutil.which("valgrind") is None:
        return "valgrind is not installed (apt-get install valgrind)"
    if not CALLGRIND_HEADER.is_file():
        return f"{CALLGRIND_HEADER} is missing (the client-request helper includes it)"
    try:
        compiler = compiler_of_extension()
    except RuntimeError as exc:
        return str(exc)
    meta = baseline["meta"]
    if cpu_flags() != meta["cpu_flags"]:
        return (
            f"the baseline was taken on a CPU with {', '.join(meta['cpu_flags']) or 'none'} of "
            f"x86-64-v3's {', '.join(X86_64_V3_FLAGS)}; this one has "
            f"{', '.join(cpu_flags()) or 'none'}"
        )
    if compiler != meta["compiler"]:
        return (
            f"the baseline was taken with {meta['compiler']!r}, the extension is built with "
            f"{compiler!r}: regenerate it with `python -m benchmarks.instruction_counts --update`"
        )
    return None


def path_mismatch(meta: dict, baseline: dict) -> str | None:
    """Why counts from a run with ``meta`` (from :func:`measure`) cannot be compared with
    ``baseline``'s: the CPU, as valgrind presents it, picks another default path."""
    path = "vec8" if meta["vec8_default"] else "portable"
    if path != baseline["meta"]["path"]:
        return f"the baseline's default path is {baseline['meta']['path']}, this run's is {path}"
    return None


class Failure(NamedTuple):
    kernel: str
    dtype: str
    message: str


def compare(measured: Counts, baseline: Counts, tolerance: float = TOLERANCE) -> list[Failure]:
    """Each kernel and dtype that needs more than ``1 + tolerance`` times its baseline's
    instructions per element (or has no baseline)."""
    failures = []
    for kernel, by_dtype in measured.items():
        for dtype, count in by_dtype.items():
            base = baseline.get(kernel, {}).get(dtype)
            if base is None:
                failures.append(Failure(kernel, dtype, f"{count} Ir/element, no baseline"))
            elif count > base * (1 + tolerance):
                message = (
                    f"{count} Ir/element, baseline {base} "
                    f"({count / base:.2f}x, over the {tolerance:.0%} allowance)"
                )
                failures.append(Failure(kernel, dtype, message))
    return failures


def table(measured: Counts, baseline: Counts | None) -> str:
    lines = ["kernel                   dtype  Ir/element  baseline  ratio"]
    for kernel, by_dtype in measured.items():
        for dtype, count in by_dtype.items():
            base = (baseline or {}).get(kernel, {}).get(dtype)
            ratio = f"{count / base:.2f}" if base else "-"
            lines.append(f"{kernel:<24} {dtype:<6} {count:>10.3f} {base or '-':>9} {ratio:>6}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help="rewrite the baseline file")
    parser.add_argument(
        "--no-vec8",
        action="store_true",
        help="count with the eight-lane loops off (_C.use_vec8_kernels(False)): shows the "
        "check catching de-vectorised loops",
    )
    parser.add_argument("--baseline", type=Path, default=BASELINE_FILE, help="baseline JSON")
    parser.add_argument("--inside", help=argparse.SUPPRESS)
    parser.add_argument("--passes", default="vec8", help=argparse.SUPPRESS)
    parser.add_argument("--meta-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        run_inside(args.inside, args.passes.split(","), args.meta_out)
        return 0
    if args.update:
        measured, meta = measure(["vec8"])
        payload = {"meta": details(meta), "counts": measured["vec8"]}
        args.baseline.write_text(json.dumps(payload, indent=2) + "\n")
        print(table(measured["vec8"], None))
        print(f"wrote {args.baseline}")
        return 0
    baseline = load_baseline(args.baseline)
    reason = skip_reason(baseline)
    if reason:
        print(f"skipped: {reason}")
        return 0
    name = "portable" if args.no_vec8 else "vec8"
    measured, meta = measure([name])
    reason = path_mismatch(meta, baseline)
    if reason:
        print(f"skipped: {reason}")
        return 0
    print(table(measured[name], baseline["counts"]))
    failures = compare(measured[name], baseline["counts"])
    for kernel, dtype, message in failures:
        print(f"FAIL {kernel} {dtype}: {message}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
