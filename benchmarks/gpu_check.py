"""``make gpu-check``: the first run of the Triton and CUDA code on a GPU, prepared to fit
about 8 minutes on one H100/H200 (16 cores): versions, the extension's build, the test suite on
CUDA and a benchmark subset, each step under its own time budget, all output in one folder.

    python -m benchmarks.gpu_check --out DIR          # on the GPU machine (make gpu-check OUT=DIR)
    python -m benchmarks.gpu_check --dry-run          # the plan and its budgets, runs nothing
    python -m benchmarks.gpu_check --out DIR --steps bench --tiny   # the benchmark, tiny sizes

Uses the interpreter running it (the GPU machine's ``python3``, not a venv) for every step.
Exits 1 when a step failed or ran out of time; later steps still run.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from .timed_steps import MAX_FILE_BYTES, Step, run_step, summary, tail

ROOT = Path(__file__).resolve().parent.parent
MAX_FILES = 8  # summary.md, the four steps' .log files, bench.{json,md,png}
CUDA_ARCH = "90a"  # H100/H200
E2E_METHODS = "AdamW,SAM,SL-SAM s=0.2,SL-SAM s=0.5"

# The files that exercise the GPU come first, so a timeout cuts CPU-only tests instead.
TESTS_FIRST = ("test_triton_", "test_backend_", "test_cpp_")
TESTS_LEFT_OUT = {
    "test_cpp_cuda_compile.py": "compile-only nvcc check of csrc/cuda; the build step compiles "
    "the same sources for real (saves about a minute of nvcc)",
}
# The `distributed` tests run two gloo ranks on the CPU: nothing in them touches CUDA, and the
# NCCL variant would need two GPUs.
TESTS_MARKS = "not distributed"

# --no-index: the GPU machine has no package registry; -v shows the compiler output.
PIP_INSTALL = (
    "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-v", "-e", ".",
)  # fmt: skip
PYTEST = (
    "-m", "pytest", "-v", "-rfEs", "--durations=25", "-p", "no:cacheprovider", "-m", TESTS_MARKS,
)  # fmt: skip

# Every preset field the subset depends on is set here, so the preset (--quick) only
# contributes `ops`: all of them.
GPU_BENCH = [
    "--lists", "gpt2_124m,llama_1b3", "--dtypes", "fp32,bf16", "--op-fractions", "1.0",
    "--step-fractions", "0.22", "--extra-lists", "", "--rounds", "100", "--copy-mib", "1024",
    "--e2e", "gpt2-small", "--e2e-methods", E2E_METHODS, "--e2e-warmup", "3", "--e2e-steps", "10",
]  # fmt: skip
TINY_BENCH = [
    "--lists", "grid:12x777", "--dtypes", "fp32,bf16", "--op-fractions", "1.0",
    "--step-fractions", "0.5", "--extra-lists", "", "--rounds", "2", "--copy-mib", "8",
    "--e2e", "tiny", "--e2e-methods", E2E_METHODS, "--e2e-warmup", "1", "--e2e-steps", "2",
    "--device", "cpu", "--threads", "1",
]  # fmt: skip

# Fails the build step when the extension or Triton cannot run on the GPU (a failed build
# still installs the package, without the extension).
REQUIRE_GPU_BACKENDS = (
    "from slsam_kernels.ops import registry as b; "
    'bad = [s.name + ": " + s.reason for s in b.all_status() '
    'if s.name in ("cuda", "triton") and not s.available]; '
    'raise SystemExit("; ".join(bad) or 0)'
)


def ordered_test_files() -> list[str]:
    """``python_tests/test_*.py`` less ``TESTS_LEFT_OUT``, the GPU-heavy files first."""
    names = sorted(p.name for p in (ROOT / "python_tests").glob("test_*.py"))
    names = [n for n in names if n not in TESTS_LEFT_OUT]
    first = [n for prefix in TESTS_FIRST for n in names if n.startswith(prefix)]
    return [f"python_tests/{n}" for n in first + [n for n in names if n not in first]]


def bench_output(out: Path) -> list[str]:
    """benchmarks.run's flags that put its three files into ``out`` as ``bench.*``."""
    return ["--out", str(out), "--stem", "bench", "--label", "gpu-check"]


def plan(out: Path, tiny: bool = False) -> list[Step]:
    """The four steps, their commands and budgets (about 8 minutes in all)."""
    py = sys.executable
    jobs = str(os.cpu_count() or 1)
    bench = TINY_BENCH if tiny else GPU_BENCH
    return [
        Step(
            "info",
            20,
            "nvidia-smi, nvcc --version and one Python start importing torch: a few seconds",
            [["nvidia-smi"], ["nvcc", "--version"], [py, "-m", "benchmarks.versions"]],
        ),
        Step(
            "build",
            140,
            "8 translation units (5 C++ with the ATen headers, 3 .cu for sm_90a); with ninja and "
            f"MAX_JOBS={jobs} they compile in parallel, so about the slowest nvcc unit (~1 min) "
            "plus pip and the link; without ninja they compile one at a time and may not fit",
            [
                [py, *PIP_INSTALL],
                [py, "-m", "slsam_kernels", "info"],
                [py, "-c", REQUIRE_GPU_BACKENDS],
            ],
            {"SLSAM_CUDA_ARCH": CUDA_ARCH, "MAX_JOBS": jobs},
        ),
        Step(
            "tests",
            150,
            "~360 tests, most well under a second; each Triton kernel specialisation compiles "
            "once (about a second each, cached for the benchmark); the Triton and extension "
            f"files run first. Left out: -m '{TESTS_MARKS}' (gloo ranks on the CPU, NCCL would "
            + "need 2 GPUs); "
            + "; ".join(f"{k}: {v}" for k, v in TESTS_LEFT_OUT.items()),
            [[py, *PYTEST, *ordered_test_files()]],
            {"PYTHONPATH": str(ROOT)},
        ),
        Step(
            "bench",
            160,
            "GPT-2 124M and 1.3B lists x fp32, bf16 x 9 cases x ~5 methods, each verified, "
            "profiled once and timed by do_bench (>= 125 ms): ~0.5 s a method, ~100 s; then "
            "GPT-2 small end to end (6 model builds, 4 methods x 13 steps): ~30 s",
            [[py, "-m", "benchmarks.run", "--quick", *bench, *bench_output(out)]],
            {"PYTHONPATH": str(ROOT)},
        ),
    ]


def describe(steps: list[Step]) -> str:
    """The dry run's text: each step's budget, why, and commands."""
    lines = []
    for i, step in enumerate(steps, 1):
        env = " ".join(f"{k}={v}" for k, v in step.env.items())
        lines.append(f"{i}. {step.name}: budget {step.budget_s} s ({step.why})")
        lines += [f"     {env + ' ' if env else ''}{shlex.join(c)}" for c in step.commands]
    total = sum(s.budget_s for s in steps)
    lines.append(f"total budget: {total} s ({total / 60:.1f} min)")
    return "\n".join(lines)


def _limits_report(out: Path) -> list[str]:
    """Lines naming what breaks the output limits (file count, file size), if anything."""
    files = [p for p in out.rglob("*") if p.is_file()]
    problems = [
        f"{p.name}: {p.stat().st_size} bytes" for p in files if p.stat().st_size > MAX_FILE_BYTES
    ]
    if len(files) > MAX_FILES:
        problems.append(f"{len(files)} files in {out}, more than {MAX_FILES}")
    return problems


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="the folder for every output (required to run)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and budgets, run nothing")
    p.add_argument("--steps", default="info,build,tests,bench", help="comma-separated subset")
    p.add_argument("--tiny", action="store_true", help="the benchmark on the CPU, tiny sizes")
    args = p.parse_args(argv)
    if not args.dry_run and args.out is None:
        p.error("--out DIR is required (make gpu-check OUT=DIR)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run (or with ``--dry-run`` describe) the chosen steps; 1 when any is not ok."""
    args = parse_args(argv)
    out = args.out.resolve() if args.out else Path("$OUT")
    wanted = [s for s in args.steps.split(",") if s]
    steps = {s.name: s for s in plan(out, args.tiny)}
    unknown = [s for s in wanted if s not in steps]
    if unknown:
        raise SystemExit(f"unknown steps {unknown}: choose from {', '.join(steps)}")
    chosen = [steps[s] for s in wanted]
    if args.dry_run:
        print(describe(chosen))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for i, step in enumerate(chosen, 1):
        print(f"[{i}/{len(chosen)}] {step.name} (budget {step.budget_s} s)", flush=True)
        outcomes.append(run_step(step, out / f"{step.name}.log", ROOT))
        print(f"      {outcomes[-1].status} in {outcomes[-1].seconds:.1f} s", flush=True)
    table = summary(outcomes)
    (out / "summary.md").write_text(table + "\n")
    for o in outcomes:
        if o.status != "ok":
            print(f"\n--- {o.step.name}: {o.status}; the end of {o.log} ---\n{tail(o.log, 15)}")
    for problem in _limits_report(out):
        print(f"output limit: {problem}")
    print(f"\n{table}")
    return 0 if all(o.status == "ok" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
