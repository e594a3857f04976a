"""``make gpu-check``: the first run of the Triton and CUDA code on a GPU, prepared to fit
8 minutes on one H100/H200 (16 cores): versions, the extension's build, the GPU tests and a
benchmark subset, each step under its own time limit, every step's output written as it comes
(test outcomes and benchmark rows as they finish), all in one folder.

    python -m benchmarks.gpu_check --out DIR          # on the GPU machine (make gpu-check OUT=DIR)
    python -m benchmarks.gpu_check --dry-run          # the plan and its limits, runs nothing
    python -m benchmarks.gpu_check --rehearse         # the same steps on a CPU, CUDA parts left out
    python -m benchmarks.gpu_check --out DIR --steps bench --limit bench=30

Uses the interpreter running it (the GPU machine's ``python3``, not a venv) for every step.
Exits 1 when a step failed or ran out of time; later steps still run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

from . import pytest_outcomes, report
from .timed_steps import MAX_FILE_BYTES, Outcome, Step, run_step, summary, tail

ROOT = Path(__file__).resolve().parent.parent
# summary.md, the four steps' .log files, tests.jsonl, and bench.{json,md} (a finished bench)
# or bench.{jsonl,md} (a stopped one: the rows so far and their table)
MAX_FILES = 8
CUDA_ARCH = "90a"  # H100/H200
E2E_METHODS = "AdamW,SAM,SL-SAM s=0.2,SL-SAM s=0.5"

# Only what runs on the GPU: the `triton` and `cuda` marks (the Triton kernels, the CUDA
# extension, and the GPU rows of the fused-step contract and the robust bandit), and the
# unmarked test of how the backends import and which one `auto` picks. The C++ (CPU) tests
# are CI's.
TESTS_MARKS = "triton or cuda"
IMPORT_TESTS = "python_tests/test_triton_import.py"

# --no-index: the GPU machine has no package registry; -v shows the compiler output.
PIP_INSTALL = (
    "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-v", "-e", ".",
)  # fmt: skip
PYTEST = ("-m", "pytest", "-v", "-rfEs", "--durations=25", "-p", "no:cacheprovider")

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


def require_backends(names: tuple[str, ...]) -> str:
    """Code for ``python -c`` that fails unless the backends ``names`` load (a failed build
    still installs the package, without the extension)."""
    return (
        "from slsam_kernels.ops import registry as b; "
        f"bad = [s.name + ': ' + s.reason for s in b.all_status() "
        f"if s.name in {names!r} and not s.available]; "
        "raise SystemExit('; '.join(bad) or 0)"
    )


def bench_output(out: Path) -> list[str]:
    """benchmarks.run's flags that put its files into ``out`` as ``bench.*``: rows in
    bench.jsonl as they finish, then bench.json and bench.md (no chart: the file count is
    limited, and ``report.draw_chart`` draws it from bench.json later)."""
    return ["--out", str(out), "--stem", "bench", "--label", "gpu-check", "--no-chart"]


def plan(out: Path, rehearse: bool = False) -> list[Step]:
    """The four steps, their commands and time limits (8 minutes in all). ``rehearse``: the
    same steps on a CPU without the CUDA parts (no nvidia-smi or nvcc, no build, the tests'
    Triton kernels in its interpreter, the benchmark at tiny sizes without Triton)."""
    py = sys.executable
    jobs = str(os.cpu_count() or 1)
    outcomes = ["-p", "benchmarks.pytest_outcomes", "--outcomes-jsonl", str(out / "tests.jsonl")]
    # on the GPU the kernels must compile, not be interpreted (timed_steps drops the variable)
    triton_env = {"TRITON_INTERPRET": "1"} if rehearse else {}
    cuda_only = [] if rehearse else [["nvidia-smi"], ["nvcc", "--version"]]
    build = [] if rehearse else [[py, *PIP_INSTALL]]
    needed = ("triton",) if rehearse else ("cuda", "triton")
    bench = TINY_BENCH if rehearse else GPU_BENCH
    return [
        Step(
            "info",
            20,
            "nvidia-smi, nvcc --version and one Python start importing torch: a few seconds",
            [*cuda_only, [py, "-m", "benchmarks.versions"]],
        ),
        Step(
            "build",
            140,
            "8 translation units (5 C++ with the ATen headers, 3 .cu for sm_90a); with ninja and "
            f"MAX_JOBS={jobs} they compile in parallel, so about the slowest nvcc unit (~1 min) "
            "plus pip and the link; without ninja they compile one at a time and may not fit",
            [*build, [py, "-m", "slsam_kernels", "info"], [py, "-c", require_backends(needed)]],
            {"SLSAM_CUDA_ARCH": CUDA_ARCH, "MAX_JOBS": jobs, **triton_env},
        ),
        Step(
            "tests",
            150,
            f"the import test, then -m '{TESTS_MARKS}' (about 200 tests, most well under a "
            "second; each Triton specialisation compiles once, about a second each, cached for "
            "the benchmark); each outcome lands in tests.jsonl as it is known, so the counts "
            "survive a kill",
            [
                [py, *PYTEST, *outcomes, IMPORT_TESTS],
                [py, *PYTEST, *outcomes, "-m", TESTS_MARKS, "python_tests"],
            ],
            {"PYTHONPATH": str(ROOT), **triton_env},
        ),
        Step(
            "bench",
            160,
            "GPT-2 124M and 1.3B lists x fp32, bf16 x 9 cases x ~5 methods, each verified, "
            "profiled once and timed by do_bench (>= 125 ms): ~0.5 s a method, ~100 s; then "
            "GPT-2 small end to end (6 model builds, 4 methods x 13 steps): ~30 s. Each case's "
            "rows land in bench.jsonl as it ends",
            [[py, "-m", "benchmarks.run", "--quick", *bench, *bench_output(out)]],
            {"PYTHONPATH": str(ROOT)},  # rehearsed without the interpreter's Triton rows: slow
        ),
    ]


def describe(steps: list[Step]) -> str:
    """The dry run's text: each step's limit, why, and commands."""
    lines = []
    for i, step in enumerate(steps, 1):
        env = " ".join(f"{k}={v}" for k, v in step.env.items())
        lines.append(f"{i}. {step.name}: budget {step.budget_s} s ({step.why})")
        lines += [f"     {env + ' ' if env else ''}{shlex.join(c)}" for c in step.commands]
    total = sum(s.budget_s for s in steps)
    lines.append(f"total budget: {total} s ({total / 60:.1f} min)")
    return "\n".join(lines)


def tests_result(out: Path) -> str:
    """The test counts from tests.jsonl, however the step ended."""
    return pytest_outcomes.describe(out / "tests.jsonl")


def bench_result(out: Path) -> str:
    """What the benchmark left; for a stopped run, bench.md is made from bench.jsonl."""
    finished = out / "bench.json"
    if finished.exists():
        run = json.loads(finished.read_text())
        return f"{len(run['kernel_rows'])} kernel rows, {len(run['e2e'])} end-to-end models"
    partial = report.partial_path(out, "bench")
    if not partial.exists():
        return "no rows"
    run = report.read_partial(partial)
    if run["meta"] is None:
        return "no rows (stopped before the first measurement)"
    run["meta"]["label"] = "gpu-check, stopped part-way: the rows that finished"
    (out / "bench.md").write_text(report.markdown(run))
    return (
        f"stopped: {len(run['kernel_rows'])} kernel rows, {len(run['e2e'])} end-to-end models "
        "in bench.jsonl (table in bench.md)"
    )


RESULTS = {"tests": tests_result, "bench": bench_result}


def _limits_report(out: Path) -> list[str]:
    """Lines naming what breaks the output limits (file count, file size), if anything."""
    files = [p for p in out.rglob("*") if p.is_file()]
    problems = [
        f"{p.name}: {p.stat().st_size} bytes" for p in files if p.stat().st_size > MAX_FILE_BYTES
    ]
    if len(files) > MAX_FILES:
        problems.append(f"{len(files)} files in {out}, more than {MAX_FILES}")
    return problems


def _limit(text: str) -> tuple[str, int]:
    name, _, seconds = text.partition("=")
    if not seconds.isdigit():
        raise argparse.ArgumentTypeError(f"--limit takes STEP=SECONDS, got {text!r}")
    return name, int(seconds)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="the folder for every output (required to run)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and limits, run nothing")
    p.add_argument(
        "--rehearse",
        action="store_true",
        help="the same steps on this CPU, CUDA parts left out (default --out: a new temp folder)",
    )
    p.add_argument("--steps", default="info,build,tests,bench", help="comma-separated subset")
    p.add_argument(
        "--limit",
        type=_limit,
        action="append",
        default=[],
        metavar="STEP=SECONDS",
        help="another time limit for a step (repeatable)",
    )
    args = p.parse_args(argv)
    if args.out is None and args.rehearse and not args.dry_run:
        args.out = Path(tempfile.mkdtemp(prefix="gpu-check-rehearsal-"))
    if not args.dry_run and args.out is None:
        p.error("--out DIR is required (make gpu-check OUT=DIR)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run (or with ``--dry-run`` describe) the chosen steps; 1 when any is not ok."""
    args = parse_args(argv)
    out = args.out.resolve() if args.out else Path("$OUT")
    wanted = [s for s in args.steps.split(",") if s]
    steps = {s.name: s for s in plan(out, args.rehearse)}
    unknown = [s for s in wanted + [name for name, _ in args.limit] if s not in steps]
    if unknown:
        raise SystemExit(f"unknown steps {unknown}: choose from {', '.join(steps)}")
    limits = dict(args.limit)
    chosen = [
        dataclasses.replace(steps[s], budget_s=limits[s]) if s in limits else steps[s]
        for s in wanted
    ]
    if args.dry_run:
        print(describe(chosen))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    (out / "tests.jsonl").unlink(missing_ok=True)  # the tests step's pytest runs append to it
    print(f"output: {out}", flush=True)
    outcomes: list[Outcome] = []
    for i, step in enumerate(chosen, 1):
        print(f"[{i}/{len(chosen)}] {step.name} (budget {step.budget_s} s)", flush=True)
        outcome = run_step(step, out / f"{step.name}.log", ROOT)
        if step.name in RESULTS:
            outcome.result = RESULTS[step.name](out)
        outcomes.append(outcome)
        print(f"      {outcome.status} in {outcome.seconds:.1f} s; {outcome.result}", flush=True)
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
