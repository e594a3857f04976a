"""``python -m slsam_kernels info``: versions and which backends can run here, and why not."""

from __future__ import annotations

import argparse
import platform

import torch

from .._version import __version__
from ..ops import registry


def _version_of(module_name: str) -> str:
    try:
        module = __import__(module_name)
    except Exception as exc:  # a broken optional install is reported, not raised
        return f"not importable ({type(exc).__name__}: {exc})"
    return getattr(module, "__version__", "unknown")


def report() -> str:
    """The info report as text."""
    cuda = torch.cuda.is_available()
    lines = [
        f"slsam_kernels {__version__}",
        f"python        {platform.python_version()} ({platform.machine()})",
        f"torch         {torch.__version__} (CUDA build: {torch.version.cuda or 'no'})",
        f"triton        {_version_of('triton')}",
        f"cuda device   {torch.cuda.get_device_name() if cuda else 'none'}",
        f"{registry.ENV_VAR:<13} {__import__('os').environ.get(registry.ENV_VAR, '(unset)')}",
        "",
        "backends:",
    ]
    for s in registry.all_status():
        mark = "available  " if s.available else "unavailable"
        lines.append(f"  {s.name:<10} {mark} [{', '.join(s.device_types)}] {s.reason}")
    lines.append("")
    lines.append("auto picks:")
    for device_type in ("cpu", "cuda"):
        lines.append(f"  {device_type:<5} -> {registry.resolve('auto', torch.device(device_type))}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the report (``argv`` takes no options but ``--help``)."""
    argparse.ArgumentParser(
        prog="python -m slsam_kernels info",
        description="Versions, which backends can run here (and why not), and what "
        "backend='auto' picks per device.",
    ).parse_args(argv)
    print(report())
    return 0
