"""Warnings that point at the caller's line, however deep inside this package and torch's
optimizer machinery they are raised."""

from __future__ import annotations

import os
import sys

import torch

# slsam_kernels' folder (this file's parent's parent) and torch's
_INTERNAL = tuple(
    os.path.dirname(path) + os.sep
    for path in (os.path.dirname(os.path.abspath(__file__)), torch.__file__)
    if path
)


def user_stacklevel() -> int:
    """The ``stacklevel`` for a ``warnings.warn`` made by the caller of this function that
    names the first frame outside slsam_kernels and torch (torch's ``no_grad`` wrapper and
    ``Optimizer.step`` hooks sit between the user and the step's code)."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        frame = frame.f_back
        level += 1
    return level
