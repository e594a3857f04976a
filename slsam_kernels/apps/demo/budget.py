"""Equal wall-clock budgets: how many steps a method gets for SAM's training time.

SAM's run with seed ``k`` sets the budget of every equal-time run with seed ``k``: its timed
training seconds (forward, backward and optimizer steps; no evaluation, model building or
bandit bookkeeping outside the step). Another method first trains the equal-steps run, which
measures its own seconds per step over all of its steps; its step count at equal wall-clock
is then ``floor(SAM's seconds / its seconds per step)``, known before it trains on, and the
run continues from the equal-steps state to that count (``demo.train.train_and_test``'s
``extend``). The demo's learning rate is constant, so there is no schedule to stretch and the
continued run is exactly the run of that many steps; a decaying schedule would instead need a
fresh run over the new step count. A method at least as slow as SAM keeps its equal-steps
run (its time against SAM's, above 1, is in the report).
"""

from __future__ import annotations

import math

from .train import Extension, MethodResult


def equal_time_steps(budget_seconds: float, seconds_per_step: float, steps: int) -> int:
    """Steps that fit ``budget_seconds`` at ``seconds_per_step``, and never fewer than the
    ``steps`` already trained."""
    if budget_seconds < 0 or seconds_per_step <= 0:
        raise ValueError(
            f"need a budget >= 0 and seconds per step > 0, got {budget_seconds} and "
            f"{seconds_per_step}"
        )
    return max(steps, math.floor(budget_seconds / seconds_per_step))


def training_seconds(result: MethodResult) -> float:
    """The timed training seconds of a run."""
    return result.seconds_per_step * result.steps


def extension(budget_seconds: float) -> Extension:
    """A ``train_and_test`` extension that continues a run until ``budget_seconds`` are
    spent at the seconds per step it measured."""
    return lambda result: equal_time_steps(budget_seconds, result.seconds_per_step, result.steps)
