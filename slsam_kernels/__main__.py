"""Command line: ``python -m slsam_kernels {info,demo,evaluate}``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse the sub-command and run it."""
    parser = argparse.ArgumentParser(prog="python -m slsam_kernels")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="versions and available backends")
    demo_parser = commands.add_parser("demo", help="fine-tune a pretrained model with SAM/SL-SAM")
    from .demo import cli as demo_cli

    demo_cli.add_arguments(demo_parser)
    eval_parser = commands.add_parser(
        "evaluate", help="tuned, multi-seed accuracy evaluation of every method"
    )
    from .evaluate import cli as eval_cli

    eval_cli.add_arguments(eval_parser)
    args = parser.parse_args(argv)
    if args.command == "info":
        from .info import report

        print(report())
        return 0
    if args.command == "evaluate":
        return eval_cli.run(args)
    return demo_cli.run(args)


if __name__ == "__main__":
    sys.exit(main())
