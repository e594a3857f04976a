"""Named schedules: callables of the step index ``t`` (steps taken before this one, from 0).

BAR's ``schedule=`` takes one (its coefficient is ``mu * s(t)``) or a name; RST's ``sam_prob=``
takes one as the probability of a SAM step at step ``t``. Each is a small frozen dataclass,
so it pickles and prints its parameters::

    from slsam_kernels import RST, schedules
    opt = RST(params, torch.optim.SGD, sam_prob=schedules.linear(1000, start=0.2, end=0.8))
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: What a schedule is: the step index to a value.
Schedule = Callable[[int], float]


def _check_total_steps(total_steps: object) -> int:
    if isinstance(total_steps, bool) or not isinstance(total_steps, int):
        raise TypeError(
            f"total_steps must be an int (the steps of the whole run), got {total_steps!r}"
        )
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0, got {total_steps}")
    return total_steps


def _check_value(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


@dataclass(frozen=True)
class constant:  # lower case: used like a function, schedules.constant(0.5)
    """``s(t) = value``."""

    value: float = 1.0

    def __post_init__(self) -> None:
        _check_value("value", self.value)

    def __call__(self, t: int) -> float:
        return float(self.value)


@dataclass(frozen=True)
class piecewise:
    """``s(t) = values[k]`` where ``k`` is the number of ``boundaries`` at or below ``t``:
    ``values[0]`` before ``boundaries[0]``, ``values[1]`` from there to ``boundaries[1]``, ...
    (``len(values) == len(boundaries) + 1``, boundaries increasing). RST's piecewise schedule
    with probability ``p`` switching at step ``b``: ``piecewise([b], [p, 1 - p])``."""

    boundaries: Sequence[int]
    values: Sequence[float]

    def __post_init__(self) -> None:
        boundaries, values = tuple(self.boundaries), tuple(self.values)
        if len(values) != len(boundaries) + 1:
            raise ValueError(
                f"piecewise needs one more value than boundaries, got {len(values)} values "
                f"for {len(boundaries)} boundaries"
            )
        for b in boundaries:
            if isinstance(b, bool) or not isinstance(b, int):
                raise TypeError(f"boundaries must be ints (step indices), got {b!r}")
        if any(b >= c for b, c in itertools.pairwise(boundaries)):
            raise ValueError(f"boundaries must increase, got {list(boundaries)}")
        for v in values:
            _check_value("each value", v)
        object.__setattr__(self, "boundaries", boundaries)
        object.__setattr__(self, "values", tuple(float(v) for v in values))

    def __call__(self, t: int) -> float:
        return self.values[bisect.bisect_right(self.boundaries, t)]


@dataclass(frozen=True)
class _OverSteps:
    """A schedule from ``start`` at ``t = 0`` to ``end`` at ``total_steps``, flat after it."""

    total_steps: int
    start: float = 1.0
    end: float = 0.0

    def __post_init__(self) -> None:
        _check_total_steps(self.total_steps)
        _check_value("start", self.start)
        _check_value("end", self.end)

    def _progress(self, t: int) -> float:
        return min(t, self.total_steps) / self.total_steps


@dataclass(frozen=True)
class linear(_OverSteps):  # lower case: used like a function
    """``s(t) = start + (end - start) * min(t, T) / T`` with ``T = total_steps``: from
    ``start`` at ``t = 0`` to ``end`` at ``T`` and after (BAR's ``"linear"``: ``1 - t/T``)."""

    def __call__(self, t: int) -> float:
        return self.start + (self.end - self.start) * self._progress(t)


@dataclass(frozen=True)
class cosine(_OverSteps):  # lower case: used like a function
    """``s(t) = end + (start - end) * (1 + cos(pi * min(t, T) / T)) / 2`` with
    ``T = total_steps`` (BAR's ``"cosine"``: ``(1 + cos(pi t / T)) / 2``). With ``start=1``,
    ``end=0`` this is also RST's trigonometric schedule."""

    def __call__(self, t: int) -> float:
        return self.end + (self.start - self.end) * (1 + math.cos(math.pi * self._progress(t))) / 2


#: The names BAR's ``schedule=`` takes; the decaying ones need ``total_steps``.
NAMED = ("constant", "linear", "cosine")


def named(name: str, total_steps: int | None) -> Schedule:
    """The schedule ``name`` from 1 (at ``t = 0``) down to 0 (at ``total_steps``):
    ``"constant"`` (1 throughout), ``"linear"`` or ``"cosine"``."""
    if name not in NAMED:
        raise ValueError(
            f"unknown schedule {name!r}; choose from {', '.join(NAMED)} or pass a callable of "
            "the step index"
        )
    if name == "constant":
        return constant(1.0)
    if total_steps is None:
        raise ValueError(
            f"schedule {name!r} decays over the run: pass total_steps (the number of steps)"
        )
    return (linear if name == "linear" else cosine)(_check_total_steps(total_steps))
