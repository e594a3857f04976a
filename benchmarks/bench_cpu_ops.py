"""CPU benchmark: the extension ("cpp") against the reference path and torch's ``_foreach_*``
ops (and torch's own fused AdamW/SGD for the optimizer step), one run, interleaved rounds.

    PYTHONPATH=. python benchmarks/bench_cpu_ops.py [--rounds 15] [--threads N] [--csv out.csv]

Each round times every method of a case once, in turn, so machine noise hits them alike; the
table shows medians, the spread (25th-75th percentile), GB/s from the bytes the operation must
move, and the speed-up of "cpp" over each other method.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from slsam_kernels import reference
from slsam_kernels.extension import cpu as cpp

GPT2_BLOCK_SHAPES = [  # one GPT-2-small transformer block
    (768,), (768,), (768, 2304), (2304,), (768, 768), (768,),
    (768,), (768,), (768, 3072), (3072,), (3072, 768), (768,),
]  # fmt: skip


def gpt2_like_shapes() -> list[tuple[int, ...]]:
    """GPT-2-small tensor shapes, cut to ~30M elements: a 10k-token embedding, positions and
    three blocks (the full model's 124M elements times five buffers would not fit here)."""
    return [(10_000, 768), (1024, 768), *GPT2_BLOCK_SHAPES * 3, (768,), (768,)]


def many_small_shapes(count: int = 3000) -> list[tuple[int, ...]]:
    """``count`` tensors of 64 to 2047 elements (~3M in all): per-tensor overhead dominates."""
    gen = torch.Generator().manual_seed(0)
    return [(int(n),) for n in torch.randint(64, 2048, (count,), generator=gen)]


@dataclass
class Case:
    name: str
    bytes_moved: int
    methods: dict[str, Callable[[], object]]


def make_cases(shapes: list[tuple[int, ...]], dtype: torch.dtype, label: str) -> list[Case]:
    gen = torch.Generator().manual_seed(1)
    params = [torch.randn(s, generator=gen).to(dtype) for s in shapes]
    grads = [torch.randn(s, generator=gen).to(dtype) for s in shapes]
    backups = [p.clone() for p in params]
    scales = torch.full((len(params),), 1e-3)
    scale_list = scales.tolist()
    numel = sum(p.numel() for p in params)
    size = numel * params[0].element_size()
    tag = f"{label} {str(dtype).removeprefix('torch.')}"

    def foreach_perturb() -> None:
        torch._foreach_copy_(backups, params)
        torch._foreach_add_(params, torch._foreach_mul(grads, scale_list))

    cases = [
        Case(
            f"grad_sqnorms {tag}",
            size,
            {
                "reference": lambda: reference.grad_sqnorms(grads),
                "foreach": lambda: torch.stack(torch._foreach_norm(grads)) ** 2,
                "cpp": lambda: cpp.grad_sqnorms(grads),
            },
        ),
        Case(
            f"grad_sqnorms |w*g| (ASAM) {tag}",
            2 * size,
            {
                "reference": lambda: reference.grad_sqnorms(grads, params),
                "foreach": lambda: (
                    torch.stack(torch._foreach_norm(torch._foreach_mul(grads, params))) ** 2
                ),
                "cpp": lambda: cpp.grad_sqnorms(grads, params),
            },
        ),
        Case(
            f"perturb_ {tag}",
            4 * size,
            {
                "reference": lambda: reference.perturb_(params, grads, backups, scales),
                "foreach": foreach_perturb,
                "cpp": lambda: cpp.perturb_(params, grads, backups, scales),
            },
        ),
        Case(
            f"restore_ {tag}",
            2 * size,
            {
                "reference": lambda: reference.restore_(params, backups),
                "foreach": lambda: torch._foreach_copy_(params, backups),
                "cpp": lambda: cpp.restore_(params, backups),
            },
        ),
    ]
    for optimizer, options, streams in (
        (torch.optim.AdamW, {"lr": 1e-6}, 7),  # reads w~, g, m, v; writes w, m, v
        (torch.optim.SGD, {"lr": 1e-6, "momentum": 0.9}, 5),  # reads w~, g, buf; writes w, buf
    ):
        cases.append(_step_case(optimizer, options, streams * size, tag, shapes, dtype))
    return cases


def _step_case(optimizer_class, options, bytes_moved, tag, shapes, dtype) -> Case:
    """Restore from the backup + base step: torch's for-loop, foreach and fused steps after a
    restore, against the extension's one-pass fused_restore_step."""
    gen = torch.Generator().manual_seed(2)
    methods = {}
    for name, flags in (
        ("reference", {"foreach": False}),
        ("foreach", {"foreach": True}),
        ("torch fused", {"fused": True}),
        ("cpp", {}),
    ):
        params = [torch.randn(s, generator=gen).to(dtype) for s in shapes]
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen).to(dtype)
        backups = [p.clone() for p in params]
        opt = optimizer_class(params, **options, **flags)
        if name == "cpp":
            methods[name] = lambda opt=opt, ps=params, bs=backups: _fused(opt, ps, bs)
        else:
            methods[name] = lambda opt=opt, ps=params, bs=backups: _restore_then_step(opt, ps, bs)
    return Case(f"restore + {optimizer_class.__name__} step {tag}", bytes_moved, methods)


def _restore_then_step(opt: torch.optim.Optimizer, params, backups) -> None:
    torch._foreach_copy_(params, backups)
    opt.step()


def _fused(opt: torch.optim.Optimizer, params, backups) -> None:
    if not cpp.fused_restore_step(opt, params, backups):
        raise RuntimeError("the fused step declined a supported configuration")


def measure(case: Case, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in case.methods}
    for fn in case.methods.values():
        fn()  # warm-up: lazy state, allocator
    for _ in range(rounds):
        for name, fn in case.methods.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def environment() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        rev = "unknown"
    return (
        f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"python {platform.python_version()}, git {rev}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--csv", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if cpp.UNAVAILABLE_REASON:
        print(f"the cpp backend is unavailable: {cpp.UNAVAILABLE_REASON}", file=sys.stderr)
        return 1
    if args.threads:
        torch.set_num_threads(args.threads)
    env = environment()
    print(f"# {env}\n")
    print("| case | method | median ms | p25-p75 ms | GB/s | cpp speed-up |")
    print("|---|---|---:|---:|---:|---:|")
    rows = []
    for shapes, label in (
        (gpt2_like_shapes(), "gpt2-like 30M"),
        (many_small_shapes(), "3000 small"),
    ):
        for dtype in (torch.float32, torch.bfloat16):
            for case in make_cases(shapes, dtype, label):
                times = measure(case, args.rounds)
                cpp_median = statistics.median(times["cpp"])
                for name, samples in times.items():
                    median = statistics.median(samples)
                    q = statistics.quantiles(samples, n=4)
                    speedup = "" if name == "cpp" else f"{median / cpp_median:.2f}x"
                    gbps = case.bytes_moved / median / 1e9
                    print(
                        f"| {case.name} | {name} | {median * 1e3:.2f} | "
                        f"{q[0] * 1e3:.2f}-{q[2] * 1e3:.2f} | {gbps:.1f} | {speedup} |"
                    )
                    rows.append([case.name, name, median, q[0], q[2], gbps, env])
    if args.csv:
        with args.csv.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["case", "method", "median_s", "p25_s", "p75_s", "gb_per_s", "env"])
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
