"""Fused restore + base-optimizer step: read the backup instead of ``w``, update the
optimizer's state in place (torch's own format), write ``w``; one pass per dtype group.

Supported: ``torch.optim.AdamW`` (see :mod:`.adamw`) and ``torch.optim.SGD`` (see
:mod:`.sgd`). Anything else, or any configuration those modules reject, returns False before
anything changes, and the caller restores and calls ``optimizer.step()`` itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..ops.fusable import step_is_plain
from . import adamw, sgd
from .restore import restore_

_STEPPERS = {torch.optim.AdamW: adamw, torch.optim.SGD: sgd}
_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _kernel_ready(w: torch.Tensor, backup: torch.Tensor) -> bool:
    g = w.grad
    return (
        w.dtype in _DTYPES
        and w.is_contiguous()
        and backup.is_contiguous()
        and g is not None
        and g.layout == torch.strided
        and g.dtype == w.dtype
        and g.is_contiguous()
    )


@torch.no_grad()
def fused_restore_step(
    optimizer: torch.optim.Optimizer,
    params: Sequence[torch.Tensor],
    backups: Sequence[torch.Tensor],
) -> bool:
    """Restore ``params`` from ``backups`` and take ``optimizer``'s step in one pass; True if
    done. False, with nothing changed, for an unsupported optimizer or configuration: another
    optimizer type, anything ``step()`` would do besides the update
    (:func:`slsam_kernels.ops.fusable.step_is_plain`), a tensor with a gradient that is not in
    ``params``, a param not in the optimizer, or what the optimizer's module rejects. Params
    whose gradient is None are restored only, as torch would skip them."""
    stepper = _STEPPERS.get(type(optimizer))
    if stepper is None or not step_is_plain(optimizer):
        return False
    index = {id(p): i for i, p in enumerate(params)}
    stepping: list[tuple[int, dict[str, Any]]] = []
    restore_only: list[int] = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            i = index.pop(id(p), None)
            if i is None:
                if p.grad is not None:
                    return False
            elif p.grad is None:
                restore_only.append(i)
            elif _kernel_ready(p, backups[i]):
                stepping.append((i, group))
            else:
                return False
    if index or not stepper.supports(optimizer, [(params[i], g) for i, g in stepping]):
        return False
    restore_([params[i] for i in restore_only], [backups[i] for i in restore_only])
    stepper.step(optimizer, [(params[i], backups[i], g) for i, g in stepping])
    return True
