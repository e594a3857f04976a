"""Command line: ``python -m slsam_kernels {info,demo}``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse the sub-command and run it."""
    parser = argparse.ArgumentParser(prog="python -m slsam_kernels")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="versions and available backends")
    try:
        from .demo import cli as demo_cli
    except ModuleNotFoundError as exc:  # `info` must work in a checkout without the demo
        if exc.name != f"{__package__}.demo":
            raise
        demo_cli = None
    if demo_cli is not None:
        demo_parser = commands.add_parser(
            "demo", help="fine-tune a pretrained model with SAM/SL-SAM"
        )
        demo_cli.add_arguments(demo_parser)
    args = parser.parse_args(argv)
    if args.command == "info":
        from .info import report

        print(report())
        return 0
    return demo_cli.run(args)


if __name__ == "__main__":
    sys.exit(main())
