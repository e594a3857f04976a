"""``python -m slsam_kernels demo``: fine-tune a pretrained model per method, print a table."""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import torch

from . import charts
from .curves import TOLERANCE, CurveRecorder, ratio_cell, time_to_sam
from .deps import MissingDependencyError
from .tasks import TASKS
from .train import (
    BASE_OPTIMIZERS,
    METHODS,
    MethodResult,
    OptimConfig,
    RunConfig,
    train_and_test,
    warm_up,
)
from .variants import RECOMMENDED, VARIANTS

#: What ``--methods`` takes: the methods with the options given, and the named variants.
CHOICES = (*METHODS, *(name for name in VARIANTS if name not in METHODS))
DEFAULT_CHART = Path("demo-results") / "accuracy_vs_seconds.png"
#: Curve points per run when ``--curve-every`` is left out.
CURVE_POINTS = 10


def comma_names(choices: Sequence[str]) -> Callable[[str], list[str]]:
    """An argparse ``type`` for a comma-separated list of names, each one of ``choices``."""

    def parse(text: str) -> list[str]:
        names = [name.strip().lower() for name in text.split(",") if name.strip()]
        unknown = sorted(set(names) - set(choices))
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown name(s) {', '.join(unknown) or '(none given)'}; choose from "
                f"{', '.join(choices)}"
            )
        return names

    return parse


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help where X is a real value (not None or
    False, which mean "the config's" or "off", nor an empty string, which means none)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        unset = any(action.default is v for v in (None, False, argparse.SUPPRESS))
        shown = not unset and action.default != ""
        if shown and "default" not in help_text:
            help_text += " (default: %(default)s)"
        return help_text


def _positive_int(text: str) -> int:
    """Parse a count that must be at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _noise_fraction(text: str) -> float:
    """Parse a label-noise fraction in [0, 1)."""
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's options to ``parser``; options left out take the task's defaults."""
    tasks = "; ".join(
        f"{name}: {task.description} (default steps {task.defaults.steps}, "
        f"batch {task.defaults.batch_size}, {task.defaults.base} lr {task.defaults.lr})"
        for name, task in TASKS.items()
    )
    parser.add_argument("--task", choices=sorted(TASKS), default="image", help=tasks)
    parser.add_argument(
        "--methods",
        type=comma_names(CHOICES),
        default=None,
        help=f"comma-separated, from {', '.join(CHOICES)}; sgd and adamw run plain, the "
        "others wrap --base; the named variants (slsam-0.2: the paper's SL-SAM at s = 0.2) "
        "set their own options and keep --rho "
        f"(default: BASE,sam,slsam-0.2,{RECOMMENDED})",
    )
    parser.add_argument(
        "--base",
        choices=sorted(BASE_OPTIMIZERS),
        default=None,
        help="the base optimizer the sharpness-aware methods wrap (default: per task)",
    )
    parser.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help="training steps per method (default: the task's)",
    )
    parser.add_argument(
        "--batch-size", type=_positive_int, default=None, help="(default: the task's)"
    )
    parser.add_argument(
        "--lr", type=float, default=None, help="learning rate (default: the task's)"
    )
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    parser.add_argument("--weight-decay", type=float, default=None, help="(default: the task's)")
    parser.add_argument(
        "--rho", type=float, default=None, help="SAM neighbourhood radius (default: the task's)"
    )
    parser.add_argument("--asam-rho", type=float, default=0.5, help="ASAM's radius (scaled by |w|)")
    parser.add_argument(
        "--sample-ratio",
        type=float,
        default=0.5,
        help="SL-SAM's expected fraction of parameter tensors active; RST's SAM probability",
    )
    parser.add_argument(
        "--bar-mu", type=float, default=0.5, help="BAR's coefficient mu (nbar, obar; lora task)"
    )
    parser.add_argument(
        "--bar-schedule",
        choices=("constant", "linear", "cosine"),
        default="constant",
        help="BAR's schedule of mu over the run",
    )
    parser.add_argument(
        "--noise",
        type=_noise_fraction,
        default=0.4,
        help="fraction of training labels replaced by a wrong class",
    )
    parser.add_argument(
        "--train-size", type=_positive_int, default=None, help="(default: the task's)"
    )
    parser.add_argument(
        "--test-size", type=_positive_int, default=None, help="(default: the task's)"
    )
    parser.add_argument(
        "--curve-every",
        type=_positive_int,
        default=None,
        help="test accuracy every this many steps (and at the last), untimed, for the "
        f"accuracy-vs-seconds chart (default: steps / {CURVE_POINTS})",
    )
    parser.add_argument(
        "--chart", type=Path, default=DEFAULT_CHART, help="where the chart is written"
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds the run")
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda if available, else cpu)"
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo with parsed ``args``; print the table to stdout. Returns the exit code."""
    task = TASKS[args.task]
    d = task.defaults
    base = args.base or d.base
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    optim = OptimConfig(
        base=base,
        lr=d.lr if args.lr is None else args.lr,
        momentum=args.momentum,
        weight_decay=d.weight_decay if args.weight_decay is None else args.weight_decay,
        rho=d.rho if args.rho is None else args.rho,
        asam_rho=args.asam_rho,
        sample_ratio=args.sample_ratio,
        seed=args.seed,
        bar_mu=args.bar_mu,
        bar_schedule=args.bar_schedule,
        total_steps=args.steps or d.steps,
    )
    steps = args.steps or d.steps
    batch_size = args.batch_size or d.batch_size
    train_size = args.train_size or d.train_size
    test_size = args.test_size or d.test_size
    methods = args.methods or [base, "sam", "slsam-0.2", RECOMMENDED]
    curve_every = args.curve_every or max(1, steps // CURVE_POINTS)
    started = time.perf_counter()
    try:
        prepared = task.prepare(train_size, test_size, args.noise, args.seed)
        print(
            f"{task.description}: {train_size} training examples with {args.noise:.0%} "
            f"label noise, {test_size} clean test examples; {steps} steps of batch "
            f"{batch_size} on {device}; base {base}, lr {optim.lr}, rho {optim.rho}",
            flush=True,
        )
        run_config = RunConfig(steps=steps, batch_size=batch_size, seed=args.seed, device=device)
        kinds = [_method_and_options(name, base, optim)[0] for name in methods]
        warm_up(kinds, prepared.build_model, prepared.data, optim, run_config)
        results, curves = {}, {}
        sam_seconds = None
        for name in sorted(methods, key=lambda m: m != "sam"):  # SAM's time is the budget
            method, options = _method_and_options(name, base, optim)
            if options.rho != optim.rho:
                print(f"{name}: rho {options.rho:g}, its own", flush=True)
            curve = CurveRecorder(prepared.data.test, curve_every, also_at=steps)
            result = train_and_test(
                method,
                prepared.build_model,
                prepared.data,
                options,
                run_config,
                budget_seconds=sam_seconds,
                after_step=curve,
            )
            if name == "sam":
                sam_seconds = result.training_seconds
            results[name] = replace(result, method=name)
            curves[name] = curve.points()
        title = f"{task.description}\n{args.noise:.0%} label noise, {steps} steps, seed {args.seed}"
        chart = charts.accuracy_vs_seconds(curves, title, args.chart)
    except MissingDependencyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    found = time_to_sam(curves)
    print(format_table([results[name] for name in methods], found))
    if found is not None:
        print(
            f"at SAM's time: each run cheaper than SAM continued to SAM's "
            f"{found['sam_seconds']:.0f} s of training (after @, its steps); to SAM's acc: "
            f"the timed seconds at which its test accuracy (every {curve_every} steps, "
            f"untimed) first reaches SAM's final {found['target'] + TOLERANCE:.3f} minus "
            f"{100 * TOLERANCE:g} point, over SAM's; one seed, one run"
        )
    print(f"accuracy-vs-seconds chart: {chart.resolve()}")
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


def _method_and_options(name: str, base: str, optim: OptimConfig) -> tuple[str, OptimConfig]:
    """The demo method that ``name`` runs and its options: a method takes ``optim`` as given,
    a named variant sets its own options on it."""
    if name in METHODS:
        return name, optim
    variant = VARIANTS[name]
    return variant.method_for(base), variant.options(optim)


def format_table(results: list[MethodResult], found: dict | None = None) -> str:
    """The results as a fixed-width text table, one row per method: at ``--steps``, then
    continued to SAM's training time (the cheaper methods), and with ``found``
    (:func:`time_to_sam` of the runs' curves) the time to SAM's accuracy as a multiple of
    SAM's time."""
    kind = results[0].memory_kind if results else ""
    header = ("method", "test acc", "s/step", "active", "at SAM's time", "to SAM's acc")
    header += (f"peak MiB ({kind}, above weights)",)
    rows = [
        (
            r.method,
            f"{r.accuracy:.3f}",
            f"{r.seconds_per_step:.3f}",
            f"{r.active_fraction:.3f}",
            _at_sams_time(r),
            _times_sam(r.method, found),
            "n/a" if math.isnan(r.peak_mib) else f"{r.peak_mib:.0f}",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _at_sams_time(result: MethodResult) -> str:
    """The test accuracy of the run continued to SAM's time, with its steps ("-": not
    continued: SAM's own run, or one at least as slow)."""
    more = result.extended
    return "-" if more is None else f"{more.accuracy:.3f}@{more.steps}"


def _times_sam(method: str, found: dict | None) -> str:
    """The method's time to SAM's accuracy as a cell: n/a without SAM."""
    return "n/a" if found is None else ratio_cell(found["ratio"][method])


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the demo."""
    parser = argparse.ArgumentParser(
        prog="python -m slsam_kernels demo",
        formatter_class=DefaultsHelpFormatter,
        description="Fine-tune a pretrained model on noisy labels with a base optimizer, SAM, "
        "the paper's SL-SAM and the configuration this package recommends; print test "
        "accuracy, seconds per step, time and time to SAM's accuracy, fraction of parameters "
        "active and peak memory for each, and write an accuracy-vs-seconds chart.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
