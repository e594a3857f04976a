"""``python -m slsam_kernels evaluate``: the accuracy evaluation, written to ``--out``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from slsam_kernels.apps.demo.cli import DefaultsHelpFormatter, comma_names
from slsam_kernels.apps.demo.deps import MissingDependencyError
from slsam_kernels.apps.demo.tasks import TASKS
from slsam_kernels.apps.demo.variants import VARIANTS
from slsam_kernels.apps.measure.outputs import refuse_to_overwrite, run_folder

from . import charts, report
from .config import CONFIGS, EvalConfig
from .estimate import estimate_seconds
from .protocol import run_evaluation


def _numbers(kind: type):
    def parse(text: str) -> list:
        try:
            return [kind(v) for v in text.split(",") if v.strip()]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the evaluation's options to ``parser``."""
    estimates = ", ".join(
        f"{name} ~{estimate_seconds(config)['total'] / 60:.0f} min"
        for name, config in sorted(CONFIGS.items())
    )
    parser.add_argument(
        "--config",
        choices=sorted(CONFIGS),
        default="reduced",
        help=f"the task set and budgets; estimated runtime on 2 idle CPU cores: {estimates} "
        "(--estimate prints a selection's)",
    )
    parser.add_argument(
        "--tasks",
        type=comma_names(sorted(TASKS)),
        default=None,
        help=f"comma-separated, from {', '.join(sorted(TASKS))} (default: the config's)",
    )
    parser.add_argument(
        "--methods",
        type=comma_names(list(VARIANTS)),
        default=None,
        help=f"comma-separated, from {', '.join(VARIANTS)} (default: the config's)",
    )
    parser.add_argument(
        "--seeds", type=_numbers(int), default=None, help="e.g. 0,1,2 (default: the config's)"
    )
    parser.add_argument(
        "--noise", type=_numbers(float), default=None, help="e.g. 0,0.4 (default: the config's)"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="replace every task's step budget (diagnostics)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: a new benchmarks/results/<UTC date-time>-eval-<config>)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite results already in --out")
    parser.add_argument(
        "--from-json",
        type=Path,
        nargs="+",
        default=None,
        help="train nothing: write results.md and the charts again from this results.json, "
        "into --out (default: the JSON's folder); several records of one configuration (its "
        "settings run one at a time) merge into one report in --out",
    )
    parser.add_argument(
        "--estimate", action="store_true", help="print the estimated runtime and exit"
    )
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")


def selected_config(args: argparse.Namespace) -> EvalConfig:
    """The named configuration restricted by the task/method/seed/noise options."""
    return CONFIGS[args.config].select(
        tasks=args.tasks,
        variants=args.methods,
        seeds=args.seeds,
        noises=args.noise,
        steps=args.steps,
    )


def write_outputs(record: dict, out: Path) -> list[Path]:
    """Write the record's JSON, Markdown and charts into ``out``; returns the paths written."""
    paths = [*report.write(record, out)]
    cost_chart, arms_chart, balance_chart, curve_chart = report.output_paths(out)[2:]
    paths.append(charts.accuracy_vs_cost(record, cost_chart))
    optional = [
        charts.arm_distribution(record, arms_chart),
        charts.balancedness(record, balance_chart),
        charts.accuracy_vs_seconds(record, curve_chart),
    ]
    return paths + [p for p in optional if p is not None]


def rewrite(sources: list[Path], out: Path | None) -> int:
    """Write the report and charts again from the results.json files at ``sources`` (merged
    when several)."""
    if len(sources) > 1 and out is None:
        print("error: name --out for the report merged from several records", file=sys.stderr)
        return 2
    try:
        records = [json.loads(source.read_text()) for source in sources]
    except (OSError, json.JSONDecodeError) as exc:
        print(f"error: cannot read the evaluation record: {exc}", file=sys.stderr)
        return 2
    try:
        record = records[0] if len(records) == 1 else report.merge(records)
        paths = write_outputs(record, out or sources[0].parent)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MissingDependencyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the evaluation (or print its estimate, or rewrite a report); returns the exit code."""
    if args.from_json is not None:
        return rewrite(args.from_json, args.out)
    try:
        config = selected_config(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    estimate = estimate_seconds(config)
    print(
        f"config {config.name}: estimated {estimate['total'] / 60:.0f} min on 2 idle CPU cores ("
        + ", ".join(f"{k} {v / 60:.1f}" for k, v in estimate.items() if k != "total")
        + " min; an estimate from measured per-step costs)",
        flush=True,
    )
    if args.estimate:
        return 0
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = args.out or run_folder(Path("benchmarks/results"), "eval", config.name)
    try:
        refuse_to_overwrite(report.output_paths(out), args.force)
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    started, load_at_start = time.perf_counter(), report.load_average()
    revision = report.code_revision()  # the code that runs, not what is checked out at the end
    try:
        settings = run_evaluation(config, device, log=lambda line: print(line, flush=True))
        seconds = time.perf_counter() - started
        record = report.to_json(config, settings, str(device), seconds, load_at_start, revision)
        paths = write_outputs(record, out)
    except MissingDependencyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(report.to_markdown(record))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the evaluation."""
    parser = argparse.ArgumentParser(
        prog="python -m slsam_kernels evaluate",
        formatter_class=DefaultsHelpFormatter,
        description="Tune the base optimizer on a validation split, then fine-tune every "
        "method with several seeds; write JSON, Markdown and charts.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
