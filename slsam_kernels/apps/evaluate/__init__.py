"""The accuracy evaluation: base optimizer, SAM, ASAM, RST and SL-SAM fine-tuned with several
seeds after tuning on a validation split. Run it as ``python -m slsam_kernels evaluate``."""

from .cli import add_arguments, main, run

__all__ = ["add_arguments", "main", "run"]
