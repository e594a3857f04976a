"""Restore + base-optimizer step in one pass, for ``torch.optim.Adam``/``AdamW`` and ``SGD``.

The Python side does what torch's own ``step()`` does around the arithmetic: it reads the
hyperparameters of each param group, creates missing state lazily in torch's format (``step``
as a CPU fp32 tensor, ``exp_avg``, ``exp_avg_sq``, ``momentum_buffer``) and computes each
tensor's scalars in double, as torch's for-loop implementation does. The extension runs the
per-tensor loops, reading ``w`` from the backup. The optimizer's ``state_dict`` stays torch's,
so a run can switch backends at any step.

Anything else, including options this path does not implement (amsgrad, maximize, capturable,
differentiable, fused, tensor hyperparameters, step hooks, a patched ``step``, a stepped tensor
without a backup), returns False having changed nothing; the caller then restores and calls
``optimizer.step()`` itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .. import reference
from ..ops.fusable import plain_numbers, step_is_plain
from .loader import C

_ADAM_TYPES = (torch.optim.Adam, torch.optim.AdamW)
_SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_OFF_FLAGS = ("amsgrad", "maximize", "capturable", "differentiable", "fused")

# (group, param, grad, backup) for each tensor the step updates.
_Stepped = list[tuple[dict[str, Any], torch.Tensor, torch.Tensor, torch.Tensor]]


def fused_restore_step(
    optimizer: torch.optim.Optimizer,
    params: Sequence[torch.Tensor],
    backups: Sequence[torch.Tensor],
) -> bool:
    """Restore ``params`` from ``backups`` and take ``optimizer``'s step in one pass.

    Returns True when done, False (with nothing changed) when this configuration is not
    supported; see the module docstring.
    """
    if type(optimizer) not in (*_ADAM_TYPES, torch.optim.SGD) or not step_is_plain(optimizer):
        return False
    split = _split(optimizer, params, backups)
    if split is None:
        return False
    stepped, restore_only = split
    if not stepped:
        took_step = True
    elif type(optimizer) is torch.optim.SGD:
        took_step = _sgd_step(optimizer, stepped)
    else:
        took_step = _adam_step(optimizer, stepped)
    if took_step and restore_only:
        untouched = [p for p, _ in restore_only]
        their_backups = [b for _, b in restore_only]
        if not C.restore_(untouched, their_backups):
            reference.restore_(untouched, their_backups)
    return took_step


def _split(
    optimizer: torch.optim.Optimizer,
    params: Sequence[torch.Tensor],
    backups: Sequence[torch.Tensor],
) -> tuple[_Stepped, list[tuple[torch.Tensor, torch.Tensor]]] | None:
    """The tensors ``optimizer.step()`` would update, each with its backup, and the backed-up
    tensors it would leave alone (no grad); None when a stepped tensor is unsupported."""
    backup_of = dict(zip(params, backups, strict=True))
    stepped: _Stepped = []
    for group in optimizer.param_groups:
        if any(group.get(flag) for flag in _OFF_FLAGS):
            return None
        for p in group["params"]:
            grad = p.grad
            if grad is None:
                continue
            backup = backup_of.pop(p, None)
            if backup is None or not _supported(p, grad):
                return None
            stepped.append((group, p, grad, backup))
    return stepped, list(backup_of.items())


def _supported(p: torch.Tensor, grad: torch.Tensor) -> bool:
    return (
        p.dtype in _SUPPORTED_DTYPES
        and grad.dtype == p.dtype
        and grad.layout == torch.strided
        and grad.device == p.device
    )


def _scalar_dtype() -> torch.dtype:
    """The dtype torch gives a new ``step`` tensor (``torch.optim.optimizer._get_scalar_dtype``)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _adam_rows(group: dict[str, Any]) -> Callable[[float], tuple[float, ...]] | None:
    """The kernel's scalars (``AdamScalars`` in csrc/common/elementwise.h) of a tensor in
    ``group`` at a given step, computed as torch's ``_single_tensor_adam`` does; None when the
    group holds a hyperparameter this path does not take (a tensor lr or beta)."""
    lr, (beta1, beta2), eps, weight_decay = (
        group["lr"],
        group["betas"],
        group["eps"],
        group["weight_decay"],
    )
    if not plain_numbers(lr, beta1, beta2, eps, weight_decay):
        return None
    decoupled = bool(group.get("decoupled_weight_decay", False))
    decay = 1 - lr * weight_decay if decoupled else 1.0
    l2 = 0.0 if decoupled else weight_decay

    @functools.cache
    def rows(step: float) -> tuple[float, ...]:
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = lr / bias_correction1
        return (decay, l2, 1 - beta1, beta2, 1 - beta2, bias_correction2**0.5, eps, -step_size)

    return rows


def _adam_step(optimizer: torch.optim.Optimizer, stepped: _Stepped) -> bool:
    new_states: dict[torch.Tensor, dict[str, torch.Tensor]] = {}
    exp_avgs, exp_avg_sqs, steps, row_makers = [], [], [], []
    makers: dict[int, Callable[[float], tuple[float, ...]] | None] = {}
    for group, p, _, _ in stepped:
        if id(group) not in makers:
            makers[id(group)] = _adam_rows(group)
        maker = makers[id(group)]
        if maker is None:
            return False
        state = optimizer.state.get(p)
        if not state:
            state = new_states[p] = {
                "step": torch.tensor(0.0, dtype=_scalar_dtype()),
                "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
            }
        exp_avgs.append(state.get("exp_avg"))
        exp_avg_sqs.append(state.get("exp_avg_sq"))
        steps.append(state.get("step"))
        row_makers.append(maker)
    if not all(isinstance(t, torch.Tensor) for t in (*exp_avgs, *exp_avg_sqs, *steps)):
        return False
    if not all(s.numel() == 1 and s.device.type == "cpu" for s in steps):
        return False
    # torch adds 1 to the step tensor, then reads it as a Python float (exact below 2**24).
    rows = [rows_at(s.item() + 1.0) for rows_at, s in zip(row_makers, steps, strict=True)]
    params, grads, backups = _columns(stepped)
    table = torch.tensor(rows, dtype=torch.float32)
    if not C.adam_restore_step_(params, grads, backups, exp_avgs, exp_avg_sqs, steps, table):
        return False
    for p, state in new_states.items():
        optimizer.state[p] = state
    return True


def _sgd_group_row(group: dict[str, Any]) -> tuple[float, ...] | None:
    """The kernel's scalars (``SgdScalars``) of ``group`` but the per-tensor first-step flag;
    None when the group holds a hyperparameter this path does not take (a tensor)."""
    lr, momentum, dampening, weight_decay = (
        group["lr"],
        group["momentum"],
        group["dampening"],
        group["weight_decay"],
    )
    if not plain_numbers(lr, momentum, dampening, weight_decay):
        return None
    return (weight_decay, momentum, 1 - dampening, -lr, float(bool(group["nesterov"])))


def _sgd_step(optimizer: torch.optim.Optimizer, stepped: _Stepped) -> bool:
    new_buffers: dict[torch.Tensor, torch.Tensor] = {}
    buffers: list[torch.Tensor | None] = []
    rows = []
    group_rows: dict[int, tuple[float, ...] | None] = {}
    for group, p, _, _ in stepped:
        if id(group) not in group_rows:
            group_rows[id(group)] = _sgd_group_row(group)
        row = group_rows[id(group)]
        if row is None:
            return False
        buffer, first_step = None, False
        if group["momentum"] != 0:
            buffer = optimizer.state.get(p, {}).get("momentum_buffer")
            if buffer is None:
                # torch's first step sets buf = d_p; the kernel writes it (first_step flag).
                buffer = new_buffers[p] = torch.empty_like(p, memory_format=torch.preserve_format)
                first_step = True
        buffers.append(buffer)
        rows.append((*row, float(first_step)))
    params, grads, backups = _columns(stepped)
    table = torch.tensor(rows, dtype=torch.float32)
    if not C.sgd_restore_step_(params, grads, backups, buffers, table):
        return False
    for p, buffer in new_buffers.items():
        optimizer.state[p]["momentum_buffer"] = buffer
    return True


def _columns(stepped: _Stepped) -> tuple[list[torch.Tensor], ...]:
    return (
        [p for _, p, _, _ in stepped],
        [g for _, _, g, _ in stepped],
        [b for _, _, _, b in stepped],
    )
