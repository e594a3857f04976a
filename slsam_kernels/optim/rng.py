"""Seeded host generators whose state travels in checkpoints."""

from __future__ import annotations

from typing import Any

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


def check_generator_state(state: Any, owner: str) -> None:
    """A generator state must be a uint8 CPU tensor, as ``Generator.get_state()`` returns."""
    if not isinstance(state, torch.Tensor) or state.dtype != torch.uint8:
        raise ValueError(
            f"{owner} state dict has no valid generator state; was it saved by {owner}?"
        )
