"""Command line: ``python -m slsam_kernels {info,demo,evaluate}``.

Each sub-command's module is imported only when that command runs, so ``info`` works with
torch alone (the demo needs its extra: tqdm, the models and data).
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: name -> (module with ``main(argv) -> int``, one-line help)
COMMANDS = {
    "info": ("slsam_kernels.apps.info", "versions and available backends"),
    "demo": ("slsam_kernels.apps.demo.cli", "fine-tune a pretrained model with SAM/SL-SAM"),
    "evaluate": (
        "slsam_kernels.apps.evaluate.cli",
        "tuned, multi-seed accuracy evaluation of every method",
    ),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m slsam_kernels",
        epilog="`python -m slsam_kernels COMMAND --help` shows a command's options.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        commands.add_parser(name, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the sub-command named first in ``argv`` (default: ``sys.argv[1:]``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        _parser().print_help()  # the commands, each with its one-line help
        return 0
    if argv[0] not in COMMANDS:
        _parser().parse_args(argv)  # prints the help or the usage error, and exits
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
