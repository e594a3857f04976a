"""Run the benchmark suite and write JSON, Markdown and a PNG chart into benchmarks/results/.
While it runs, every finished case is in ``DATE-DEVICE[-PRESET].jsonl`` (see ``report.RunLog``).

    PYTHONPATH=. python -m benchmarks.run            # default preset for this device
    PYTHONPATH=. python -m benchmarks.run --quick    # a smoke run (1-2 min on a CPU)
    PYTHONPATH=. python -m benchmarks.run --full     # every list, dtype and fraction

Presets differ per device (``PRESETS``); any of their fields can be overridden by a flag.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import gc
import importlib.metadata
import os
import platform
import re
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from slsam_kernels.apps.demo.cli import DefaultsHelpFormatter
from slsam_kernels.apps.measure.outputs import refuse_to_overwrite, run_folder
from slsam_kernels.apps.measure.provenance import cpu_name, git_revision

from . import e2e, memory_breakdown, report
from .cases import run_case
from .kernel_cases import KERNEL_OPS
from .measure import memory_method, stream_bandwidth
from .step_cases import bar_step_case, sam_step_case, slsam_step_case
from .workload import build, with_fraction

RESULTS = Path(__file__).parent / "results"
STEP_OPS = ("sam-step", "slsam-step", "bar-step")
ALL_OPS = (*KERNEL_OPS, *STEP_OPS)
# Only the kernels whose buffers fit next to a 7B bf16 model on an 80 GB GPU.
LLAMA_7B_OPS = ("grad_sqnorms", "bandit", "perturb", "restore")


def _grid(counts: tuple[int, ...], numels: tuple[int, ...], max_total: int) -> list[str]:
    return [f"grid:{c}x{n}" for c in counts for n in numels if c * n <= max_total]


@dataclass
class Preset:
    lists: list[str]  # model lists: every op, every dtype, every op fraction
    dtypes: list[str]
    op_fractions: list[float]
    step_fractions: list[float]  # SL-SAM step rows (the SAM step row is the 100% one)
    extra_lists: list[str]  # grid and adversarial lists: fp32, 100% active
    ops: list[str]
    e2e: list[str]
    rounds: int
    e2e_warmup: int
    e2e_steps: int
    copy_mib: int
    e2e_methods: list[str] = dataclasses.field(default_factory=lambda: list(e2e.METHODS))
    # models of the peak-memory breakdown (CPU only: the tensor meter counts CPU storages)
    memory_models: list[str] = dataclasses.field(
        default_factory=lambda: ["cpu-small", "efficientnet-lite0"]
    )
    # LoRA adapter lists (consecutive tensors are the pairs) for the BAR step rows
    bar_lists: list[str] = dataclasses.field(default_factory=lambda: ["roberta_base_lora"])


_GRID = ((10, 100, 1000, 10_000), (1024, 65_536, 2**20, 16 * 2**20))
_ADVERSARIAL = ["huge_and_tiny", "odd_sizes"]
PRESETS: dict[tuple[str, str], Preset] = {
    ("cpu", "quick"): Preset(
        ["grid:100x10000"], ["fp32", "bf16"], [1.0], [0.22], ["odd_sizes:300x4099"],
        list(ALL_OPS), ["tiny"], 5, 2, 5, 64, memory_models=["tiny"],
    ),
    ("cpu", "default"): Preset(
        ["resnet50", "gpt2_124m"], ["fp32", "bf16"], [1.0, 0.22], [0.05, 0.22, 0.5],
        ["grid:1000x1024", "grid:10x1048576", *_ADVERSARIAL], list(ALL_OPS),
        ["cpu-small"], 7, 3, 10, 256,
        memory_models=["cpu-small", "cpu-small+lora", "efficientnet-lite0"],
    ),
    ("cpu", "full"): Preset(
        ["resnet50", "vit_b16", "roberta_base", "gpt2_124m"], ["fp32", "bf16", "fp16", "mixed"],
        [1.0, 0.5, 0.22, 0.05], [0.05, 0.22, 0.5], [*_grid(*_GRID, 2**27), *_ADVERSARIAL],
        list(ALL_OPS), ["cpu-small", "cpu-base"], 9, 3, 15, 512,
    ),
    ("cuda", "quick"): Preset(
        ["gpt2_124m"], ["fp32", "bf16"], [1.0], [0.22], ["odd_sizes"], list(ALL_OPS),
        ["gpt2-medium"], 100, 3, 10, 1024, memory_models=[],
    ),
    ("cuda", "default"): Preset(
        ["resnet50", "vit_b16", "roberta_base", "gpt2_124m", "llama_1b3"], ["fp32", "bf16"],
        [1.0, 0.22], [0.05, 0.22, 0.5], [*_grid(*_GRID, 2**30), *_ADVERSARIAL], list(ALL_OPS),
        ["gpt2-medium", "gpt-1b3"], 100, 5, 20, 2048, memory_models=[],
    ),
    ("cuda", "full"): Preset(
        ["resnet50", "vit_b16", "roberta_base", "gpt2_124m", "llama_1b3", "llama_7b"],
        ["fp32", "bf16", "fp16", "mixed"], [1.0, 0.5, 0.22, 0.05], [0.05, 0.22, 0.5],
        [*_grid(*_GRID, 2**30), *_ADVERSARIAL], list(ALL_OPS), ["gpt2-medium", "gpt-1b3"],
        100, 5, 30, 4096, memory_models=[],
    ),
}  # fmt: skip


def _csv(kind: type) -> Any:
    return lambda text: [kind(x) for x in text.split(",") if x]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__.splitlines()[0],
        formatter_class=DefaultsHelpFormatter,
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a smoke run")
    size.add_argument("--full", action="store_true", help="every list, dtype and fraction")
    p.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="the torch device to benchmark on, e.g. cuda:1 (default: cuda if available, else cpu)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: a new benchmarks/results/<UTC date-time>-<device>-<preset>)",
    )
    p.add_argument("--force", action="store_true", help="overwrite files already in --out")
    p.add_argument("--stem", default=None, help="output file name without suffix")
    p.add_argument("--label", default="", help="a line printed under the title, e.g. 'smoke'")
    for field in dataclasses.fields(Preset):
        flag = "--" + field.name.replace("_", "-")
        kind = {"list[str]": str, "list[float]": float}.get(str(field.type))
        what = "comma-separated, " if kind else ""
        help_text = f"override the preset's {field.name} ({what}see PRESETS in run.py)"
        if field.name == "ops":
            help_text = f"override the preset's ops, from: {', '.join(ALL_OPS)}"
        if field.name == "e2e_methods":
            help_text = f"the end-to-end methods (default all), from: {', '.join(e2e.METHODS)}"
        p.add_argument(flag, type=_csv(kind) if kind else int, default=None, help=help_text)
    p.add_argument("--no-kernels", action="store_true", help="skip the kernel and step rows")
    p.add_argument("--no-e2e", action="store_true", help="skip the end-to-end rows")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory breakdown")
    p.add_argument(
        "--no-chart",
        action="store_true",
        help="skip the PNG (report.draw_chart draws it from the .json)",
    )
    return p.parse_args(argv)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine(device: torch.device) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    with contextlib.suppress(OSError):
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "device": str(device),
        "device_name": name,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "ram_gib": round(mem_kib / 2**20, 1) if "mem_kib" in locals() else None,
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "platform": platform.platform(),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            **{
                d: _version(d)
                for d in ("slsam_kernels", "triton", "transformers", "pytorch-optimizer", "numpy")
            },
        },
        "git_rev": git_revision(Path(__file__).parent, short=True),
    }


def _device_tag(name: str, device: torch.device) -> str:
    if device.type == "cpu":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def kernel_rows(
    preset: Preset, device: torch.device, log, finished: Callable[[list[dict[str, Any]]], None]
) -> list[dict[str, Any]]:
    """Every case's rows; ``finished`` gets each case's rows as soon as they are measured."""
    rows: list[dict[str, Any]] = []
    plan = [(label, preset.dtypes, True) for label in preset.lists]
    plan += [(label, ["fp32"], False) for label in preset.extra_lists]
    for label, dtypes, with_fractions in plan:
        for dtype in dtypes:
            if label == "llama_7b" and dtype != "bf16":
                continue
            ops = [op for op in preset.ops if label != "llama_7b" or op in LLAMA_7B_OPS]
            start = time.perf_counter()
            full = build(label, dtype, 1.0, device, second_grads=label != "llama_7b")
            big = full.numel * full.params[0].element_size() > 4 * 2**30
            fractions = preset.op_fractions if with_fractions else [1.0]
            cases = []
            for fraction in fractions:
                w = with_fraction(full, fraction)
                # the bandit at 100% runs at s = 0.22 (see bandit_case): once is enough
                skip = {"bandit"} if fraction == 1.0 and min(fractions) < 1.0 else set()
                cases += [(op, w) for op in ops if op in KERNEL_OPS and op not in skip]
                if fraction == 1.0 and "sam-step" in ops:
                    cases.append(("sam-step", w))
            if "slsam-step" in ops:
                cases += [("slsam-step", with_fraction(full, f)) for f in preset.step_fractions]
            for op, w in cases:
                if op == "sam-step":
                    case = sam_step_case(w, device)
                elif op == "slsam-step":
                    case = slsam_step_case(w, device)
                else:
                    case = KERNEL_OPS[op](w, device)
                case.interleave = case.interleave and not big
                case_rows = run_case(case, preset.rounds, device)
                finished(case_rows)
                rows += case_rows
                del case
                _free(device)
            log(f"{label} {dtype}: {len(cases)} cases in {time.perf_counter() - start:.0f} s")
            del full
            _free(device)
    if "bar-step" in preset.ops:
        for label in preset.bar_lists:
            for dtype in preset.dtypes:
                w = build(label, dtype, 1.0, device)
                case_rows = run_case(bar_step_case(w, device), preset.rounds, device)
                finished(case_rows)
                rows += case_rows
                del w
                _free(device)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _run(args, device, argv)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace, device: torch.device, argv: list[str] | None) -> int:
    name = "quick" if args.quick else "full" if args.full else "default"
    preset = dataclasses.replace(
        PRESETS[(device.type, name)],
        **{
            f.name: getattr(args, f.name)
            for f in dataclasses.fields(Preset)
            if getattr(args, f.name) is not None
        },
    )
    unknown = set(preset.ops) - set(ALL_OPS)
    if unknown:
        raise SystemExit(f"unknown ops {sorted(unknown)}: choose from {', '.join(ALL_OPS)}")
    unknown = set(preset.e2e_methods) - set(e2e.METHODS)
    if unknown:
        raise SystemExit(
            f"unknown e2e methods {sorted(unknown)}: choose from {', '.join(e2e.METHODS)}"
        )

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.perf_counter()
    meta = machine(device)
    meta.update(
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        started_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        preset=name,
        label=args.label,
        command="python -m benchmarks.run "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        settings=dataclasses.asdict(preset),
        copy_mib=preset.copy_mib,
        memory_method=memory_method(device),
        launch_method=(
            "CUDA kernels recorded by torch.profiler"
            if device.type == "cuda"
            else "top-level torch ops recorded by torch.profiler + calls into the C++ extension"
        ),
    )
    stem = args.stem or "-".join(
        [meta["date"], _device_tag(meta["device_name"], device)]
        + ([] if name == "default" else [name])
    )
    out = args.out or run_folder(RESULTS, _device_tag(meta["device_name"], device), name)
    try:
        refuse_to_overwrite(
            [*report.output_paths(out, stem), report.partial_path(out, stem)], args.force
        )
    except FileExistsError as exc:
        raise SystemExit(f"error: {exc}") from None
    bandwidth = stream_bandwidth(device, preset.copy_mib * 2**20)
    meta["copy_gbps"] = bandwidth["copy"] / 1e9
    meta["triad_gbps"] = bandwidth["triad"] / 1e9
    log(f"copy_ {meta['copy_gbps']:.1f} GB/s, triad {meta['triad_gbps']:.1f} GB/s; {preset}")
    partial = report.RunLog(report.partial_path(out, stem))
    partial.add("meta", meta)

    def finished(case_rows: list[dict[str, Any]]) -> None:
        report.add_speedups(case_rows, meta["copy_gbps"])  # per case, as the rows are
        for row in case_rows:
            partial.add("kernel_row", row)

    rows = [] if args.no_kernels else kernel_rows(preset, device, log, finished)
    results = []
    if not args.no_e2e:
        for config in preset.e2e:
            results.append(
                e2e.run(
                    config,
                    device,
                    preset.e2e_warmup,
                    preset.e2e_steps,
                    tuple(preset.e2e_methods),
                    log=log,
                )
            )
            partial.add("e2e", results[-1])
    memory = []
    if not args.no_memory and device.type == "cpu":
        memory = memory_breakdown.run(preset.memory_models, device, log=log)
        partial.add("memory", memory)
    meta["seconds"] = round(time.perf_counter() - started, 1)
    run = {"meta": meta, "kernel_rows": rows, "e2e": results, "memory": memory}
    for path in report.write(run, out, stem, chart=not args.no_chart):
        log(f"wrote {path}")
    partial.finish()
    failed = [r for r in rows if not r.get("verified")]  # "n/a" rows were never compared
    for r in failed:
        log(f"not verified, untimed: {r['op']} {r['workload']} {r['dtype']}: {r['error']}")
    # A baseline that disagrees with the reference is a finding (reported, not timed); ours
    # or the reference failing is a bug.
    return 1 if any(r["role"] != "baseline" for r in failed) else 0


if __name__ == "__main__":
    sys.exit(main())
