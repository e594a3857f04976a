"""The one planner behind every backend's fused restore + step: may it replace
``optimizer.step()``, and with which tensors, state and coefficients.

:func:`plan` returns a :class:`~slsam_kernels.backends.plan.FusedPlan`, or None for "decline,
change nothing"; :func:`slsam_kernels.ops.bound.fused_restore_step` hands the plan to the
backend's ``launch_fused``, then commits it and restores the pairs it only restores. The rules,
the same on every backend:

- The optimizer is exactly ``torch.optim.AdamW``, ``torch.optim.Adam`` (L2 weight decay,
  ``decoupled_weight_decay=False``, is fused too: one per-tensor ``l2`` coefficient) or
  ``torch.optim.SGD``, and its ``step()`` would do nothing but the update
  (:func:`step_is_plain`: no hooks, no patched ``step``, no grad-scaler tensors).
- Every param group (stepped or not) has plain-number hyperparameters (no tensor lr or
  betas) and none of amsgrad, maximize, capturable (Adam), differentiable, and for SGD
  fused. ``foreach`` does not matter. Adam's ``fused=True`` is taken for CPU tensors and
  changes the numerics as it does torch's: the kernels compute in fp32 and round only what
  they store (w, exp_avg, exp_avg_sq), where torch's for-loop step rounds each intermediate
  tensor to the param's dtype (the same in fp32; in bf16 and fp16 more accurate, and faster).
  On a GPU torch keeps such a group's ``step`` on the device, and the host-side coefficients
  would have to read it back, so a fused=True step there is declined.
- Every tensor in ``params`` belongs to the optimizer: a param outside it is declined, not
  restored-and-skipped, since returning True while leaving it unstepped would surprise.
- Every param with a gradient has a backup in ``params``; it is fp32, bf16 or fp16 (the
  kernels compute in fp32, so float64 is declined), dense, and its grad, backup and state
  buffers share its dtype, shape, strides and device; all stepped params share one device.
  Adam's existing ``step`` is a CPU scalar tensor (torch's layout without capturable/fused).
- A backed-up param without a gradient is restored only, as torch's step skips it.

``prescales`` (BAR's rescale) gives each stepped tensor a factor the kernels apply to the
weight they start from, ``w <- prescale * w`` rounded once to the param's dtype as torch's
``w.mul_(prescale)`` rounds, before the step (1 elsewhere, which is exact); BAR passes the
params themselves as their backups, so the fused step runs in place without a restore.

Missing state is created as torch's first step creates it (``step`` a CPU scalar of torch's
scalar dtype, zeroed ``exp_avg``/``exp_avg_sq``, SGD's ``momentum_buffer`` on the first
momentum step), but installed only by ``FusedPlan.commit``. Coefficients are computed per
tensor in double on the host, as torch's ``_single_tensor_adam``/``_single_tensor_sgd`` do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.optim import optimizer as torch_optimizer

from ..backends.plan import FusedPlan

DTYPES = (torch.float32, torch.bfloat16, torch.float16)

_OFF_FLAGS = {
    "adam": ("amsgrad", "maximize", "capturable", "differentiable"),
    "sgd": ("maximize", "differentiable", "fused"),
}
_KINDS = {torch.optim.AdamW: "adam", torch.optim.Adam: "adam", torch.optim.SGD: "sgd"}

_Rows = Callable[[Any], tuple[float, ...]]
# A stepped param as the checks leave it: (group, its row maker, param, grad, backup, state).
_Checked = tuple[dict[str, Any], _Rows, torch.Tensor, torch.Tensor, torch.Tensor, Any]


def plan(
    optimizer: torch.optim.Optimizer,
    params: Sequence[torch.Tensor],
    backups: Sequence[torch.Tensor],
    prescales: Sequence[float] | None = None,
) -> FusedPlan | None:
    """The fused restore + step of ``optimizer`` for ``params`` restored from ``backups``
    (each stepped one first scaled by its ``prescales`` entry, if given), or None when the
    rules of the module docstring decline it (nothing is changed either way)."""
    kind = _KINDS.get(type(optimizer))
    if kind is None or not step_is_plain(optimizer):
        return None
    backup_of = dict(zip(params, backups, strict=True))
    prescale_of = {} if prescales is None else dict(zip(params, prescales, strict=True))
    result = FusedPlan(kind, optimizer.state)
    checked: list[_Checked] = []
    device = None
    for group in optimizer.param_groups:
        rows = _group_rows(kind, group, type(optimizer) is torch.optim.AdamW)
        if rows is None:
            return None
        for p in group["params"]:
            backup = backup_of.pop(p, None)
            if p.grad is None:
                if backup is not None:
                    result.restore_params.append(p)
                    result.restore_backups.append(backup)
                continue
            if device is None:
                device = p.device
            state = optimizer.state.get(p)
            if (
                backup is None
                or p.device != device
                or (group.get("fused") and p.device.type != "cpu")
                or not _steppable(kind, group, p, backup, state)
            ):
                return None
            checked.append((group, rows, p, p.grad, backup, state))
    if backup_of:
        return None
    for group, rows, p, grad, backup, state in checked:
        result.params.append(p)
        result.grads.append(grad)
        result.backups.append(backup)
        prescale = float(prescale_of.get(p, 1.0))
        if kind == "adam":
            _add_adam(result, rows, p, state, prescale, bool(group.get("fused")))
        else:
            state = (state or {}) if group["momentum"] != 0 else None
            _add_sgd(result, rows, p, state, prescale)
    return result


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


def _group_rows(kind: str, group: dict[str, Any], decoupled_default: bool) -> _Rows | None:
    """``rows(x)``: the coefficient row of a tensor of ``group``, all but its prescale (Adam:
    ``x`` is the step count after the increment; SGD: ``x`` is the first-step flag); None when
    the group holds an option or a hyperparameter the kernels do not take."""
    if any(group.get(flag) for flag in _OFF_FLAGS[kind]):
        return None
    lr, weight_decay = group["lr"], group["weight_decay"]
    if kind == "sgd":
        momentum, dampening, nesterov = group["momentum"], group["dampening"], group["nesterov"]
        if not plain_numbers(lr, momentum, dampening, weight_decay):
            return None
        base = (weight_decay, momentum, 1 - dampening, -lr, float(bool(nesterov)))
        return lambda first_step: (*base, float(first_step))
    (beta1, beta2), eps = group["betas"], group["eps"]
    if not plain_numbers(lr, beta1, beta2, eps, weight_decay):
        return None
    decoupled = group.get("decoupled_weight_decay", decoupled_default)
    decay = 1 - lr * weight_decay if decoupled else 1.0
    l2 = 0.0 if decoupled else weight_decay
    cache: dict[float, tuple[float, ...]] = {}

    def adam_row(step: float) -> tuple[float, ...]:
        if step not in cache:
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            step_size = lr / bias_correction1
            cache[step] = (
                decay,
                l2,
                1 - beta1,
                beta2,
                1 - beta2,
                bias_correction2**0.5,
                eps,
                -step_size,
            )
        return cache[step]

    return adam_row


def _alike(p: torch.Tensor, t: Any) -> bool:
    """``t`` is a tensor with ``p``'s dtype, shape, strides and device (the kernels address
    every tensor of a param in the same memory order)."""
    return (
        isinstance(t, torch.Tensor)
        and t.dtype == p.dtype
        and t.shape == p.shape
        and t.stride() == p.stride()
        and t.device == p.device
    )


def _dense(t: torch.Tensor) -> bool:
    """``t``'s elements fill its memory without gaps or overlaps, in some order of its dims
    (contiguous or permuted, as channels_last), so a kernel may walk it linearly."""
    if t.is_contiguous():
        return True
    expected = 1
    for size, stride in sorted(zip(t.shape, t.stride(), strict=True), key=lambda d: d[1]):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True


def _steppable(
    kind: str, group: dict[str, Any], p: torch.Tensor, backup: torch.Tensor, state: Any
) -> bool:
    grad = p.grad
    if not (
        p.dtype in DTYPES
        and _dense(p)
        and grad.layout == torch.strided
        and _alike(p, grad)
        and _alike(p, backup)
    ):
        return False
    if not state:
        return True
    if kind == "sgd":
        buffer = state.get("momentum_buffer")
        return group["momentum"] == 0 or buffer is None or _alike(p, buffer)
    step = state.get("step")
    return (
        isinstance(step, torch.Tensor)
        and step.device.type == "cpu"
        and step.numel() == 1
        and step.dtype in (torch.float32, torch.float64)
        and not step.requires_grad
        and _alike(p, state.get("exp_avg"))
        and _alike(p, state.get("exp_avg_sq"))
    )


def _scalar_dtype(fused: bool) -> torch.dtype:
    """The dtype torch gives a new ``step`` (``torch.optim.optimizer._get_scalar_dtype``)."""
    if fused:
        return torch.float32
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _add_adam(
    result: FusedPlan, rows: _Rows, p: torch.Tensor, state: Any, prescale: float, fused: bool
) -> None:
    if not state:
        state = result.new_state[p] = {
            "step": torch.tensor(0.0, dtype=_scalar_dtype(fused)),
            "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
            "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
        }
    result.exp_avgs.append(state["exp_avg"])
    result.exp_avg_sqs.append(state["exp_avg_sq"])
    result.steps.append(state["step"])
    # torch adds 1 to the step tensor, then reads it as a Python float
    result.coefficients.append((*rows(state["step"].item() + 1.0), prescale, float(fused)))


def _add_sgd(result: FusedPlan, rows: _Rows, p: torch.Tensor, state: Any, prescale: float) -> None:
    """``state`` is None for a group without momentum (no buffer, none created)."""
    buffer = None if state is None else state.get("momentum_buffer")
    first_step = state is not None and buffer is None
    if first_step:
        # zeroed, not empty: a kernel may read it before its first-step rule discards it
        buffer = torch.zeros_like(p, memory_format=torch.preserve_format)
        result.new_state[p] = {"momentum_buffer": buffer}
    result.momentum_buffers.append(buffer)
    result.coefficients.append((*rows(first_step), prescale))
