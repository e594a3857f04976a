"""When may a backend's fused restore + step replace ``optimizer.step()``? The checks every
backend's ``fused_restore_step`` shares, so that no backend fuses where another declines."""

from __future__ import annotations

from typing import Any

import torch
from torch.optim import optimizer as torch_optimizer


def step_is_plain(optimizer: torch.optim.Optimizer) -> bool:
    """True when ``optimizer.step()`` would do nothing but the update: no step hooks (its own or
    global), no instance-level ``step`` wrapper, no grad-scaler tensors (``grad_scale``,
    ``found_inf``) that a fused step would ignore."""
    hooks = (
        getattr(optimizer, "_optimizer_step_pre_hooks", None),
        getattr(optimizer, "_optimizer_step_post_hooks", None),
        getattr(torch_optimizer, "_global_optimizer_pre_hooks", None),
        getattr(torch_optimizer, "_global_optimizer_post_hooks", None),
    )
    return (
        not any(hooks)
        and "step" not in vars(optimizer)
        and getattr(optimizer, "grad_scale", None) is None
        and getattr(optimizer, "found_inf", None) is None
    )


def plain_numbers(*values: Any) -> bool:
    """True when every value is a Python int or float (not a bool, not a tensor lr or beta)."""
    # A type test, not isinstance(Real): the ABC check costs ~1 us, per tensor per step.
    return all(type(v) in (float, int) for v in values)
