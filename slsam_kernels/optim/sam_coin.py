"""SL-SAM's options beyond the paper that decide what a step computes: which tensors the
descent updates (``descent``), how long a draw is held (``resample_every``) and whether a step
is sharpness-aware at all (``sam_prob``, a seeded coin whose state travels in checkpoints)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .checkpoint import check_generator_state
from .checks import check_unit_interval
from .rng import make_generator

DESCENTS = ("sampled", "all")
# Offsets the coin's seed from the draws' seed, so the two streams differ (golden ratio, 64 bit).
_COIN_SEED_OFFSET = 0x9E3779B97F4A7C15

SamProb = float | Callable[[int], float]


def check_descent(descent: Any) -> None:
    """``descent`` is ``"sampled"`` (the paper's) or ``"all"``."""
    if descent not in DESCENTS:
        raise ValueError(
            f"descent must be 'sampled' (the paper's: only the sampled arms are updated) or "
            f"'all' (every trainable tensor is updated with the gradient at w + e), got "
            f"{descent!r}"
        )


def check_resample_every(resample_every: Any) -> None:
    """``resample_every`` is an int >= 1."""
    if isinstance(resample_every, bool) or not isinstance(resample_every, int):
        raise TypeError(
            f"resample_every must be an int (steps a draw is held; 1 redraws every step, as "
            f"the paper), got {type(resample_every).__name__}"
        )
    if resample_every < 1:
        raise ValueError(
            f"resample_every must be >= 1 (1 redraws every step), got {resample_every}"
        )


def check_sam_prob(sam_prob: Any) -> None:
    """``sam_prob`` is a probability in [0, 1] or a callable ``step_index -> probability``."""
    if callable(sam_prob):
        return
    if isinstance(sam_prob, bool) or not isinstance(sam_prob, (int, float)):
        raise TypeError(
            f"sam_prob must be a probability in [0, 1] or a schedule step_index -> probability "
            f"(e.g. from slsam_kernels.schedules), got {type(sam_prob).__name__}"
        )
    check_unit_interval("sam_prob", sam_prob, include_zero=True)


class SamCoin:
    """Whether each step is sharpness-aware: heads with probability ``sam_prob(step_index)``.

    A constant probability of 1 (the default) or 0 decides without a draw, so the default
    consumes no random numbers. ``seed``: the optimizer's seed (None: a fresh one)."""

    def __init__(self, sam_prob: SamProb, seed: int | None) -> None:
        check_sam_prob(sam_prob)
        self.sam_prob = sam_prob
        self._generator = make_generator(
            None if seed is None else (seed + _COIN_SEED_OFFSET) % 2**64
        )

    def probability(self, step_index: int) -> float:
        """``sam_prob`` at ``step_index``, checked."""
        if not callable(self.sam_prob):
            return float(self.sam_prob)
        value = self.sam_prob(step_index)
        check_unit_interval(f"sam_prob({step_index})", value, include_zero=True)
        return float(value)

    def flip(self, step_index: int) -> bool:
        """True when step ``step_index`` is a SAM step."""
        p = self.probability(step_index)
        if p >= 1.0 or p <= 0.0:
            return p >= 1.0
        return bool(torch.rand((), dtype=torch.float64, generator=self._generator) < p)

    def get_state(self) -> Any:
        """The generator state (a uint8 tensor)."""
        return self._generator.get_state()

    def set_state(self, state: Any) -> None:
        """Restore :meth:`get_state`'s result (from any device, as checkpoints are moved)."""
        self._generator.set_state(state.cpu())

    @staticmethod
    def check_state(state: Any) -> None:
        """Refuse what :meth:`set_state` cannot take."""
        check_generator_state(state, "SLSAM (sam_prob coin)")
