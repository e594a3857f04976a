"""The demo: fine-tune a pretrained model with a base optimizer, SAM and SL-SAM, offline.

Run it as ``python -m slsam_kernels demo`` (options: ``--help``).
"""

from .cli import add_arguments, main, run

__all__ = ["add_arguments", "main", "run"]
