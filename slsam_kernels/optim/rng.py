"""Seeded host generators whose state travels in checkpoints."""

from __future__ import annotations

import torch


def make_generator(seed: int | None) -> torch.Generator:
    """A CPU generator seeded with ``seed``, or non-deterministically when it is None (the
    global torch RNG is left alone either way)."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator
