"""BAR: balancedness-aware regularization (Li, Zhang, He, NeurIPS 2024, arXiv 2410.14802)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .. import schedules
from .checks import check_dense_grads, check_nonnegative_finite, check_scaler
from .pairs import check_pairs
from .wrapped import WrappedOptimizer

VARIANTS = ("nbar", "obar")


class BAR(WrappedOptimizer):
    """SAM's balancing of LoRA pairs, done explicitly: one backward pass per step.

    SAM drives each pair ``W + x @ y`` toward balancedness ``B = (||x||^2 - ||y||^2) / 2 = 0``;
    BAR rescales each pair toward it before the base optimizer's step, decoupled from the
    gradient as AdamW's weight decay is. With ``a = mu * s(t)`` (``t`` = steps taken before
    this one) and ``eta`` the learning rate of the pair's param group at this step:

    * ``"nbar"``: if ``||g_x|| >= ||g_y||``: ``x *= 1 + a*eta``, ``y *= 1 - a*eta``; else the
      reverse (the factor with the smaller gradient, the larger one, shrinks);
    * ``"obar"``: if ``||x|| >= ||y||``: ``x *= 1 - a*eta``, ``y *= 1 + a*eta``; else the
      reverse.

    Then the base optimizer steps with the gradients as they were. Tensors in no pair are
    stepped by the base optimizer alone; a pair whose tensors do not both have a gradient is
    not rescaled. Use it like any optimizer::

        opt = BAR(model.parameters(), torch.optim.AdamW, lora_pairs(model), mu=0.5, lr=1e-4)
        loss.backward(); opt.step(); opt.zero_grad()

    Args:
        params: tensors or param groups; schedulers attach to this optimizer.
        base_optimizer: the optimizer class that steps, e.g. ``torch.optim.AdamW``.
        pairs: ``(x, y)`` tensor pairs, every tensor in ``params`` and in one pair, shaped
            as ``x @ y`` (:func:`~slsam_kernels.lora_pairs` gives a PEFT model's); the two
            tensors of a pair must share a learning rate.
        mu: the coefficient ``mu >= 0`` (the paper's ``mu_0``; it searched 0.2 to 2).
        variant: ``"nbar"`` (gradient norms decide) or ``"obar"`` (weight norms decide).
        schedule: ``s(t)``: ``"constant"`` (1), ``"linear"`` (``1 - t/T``), ``"cosine"``
            (``(1 + cos(pi t/T)) / 2``), or any callable of ``t`` (see
            :mod:`slsam_kernels.schedules`).
        total_steps: ``T``, required by ``"linear"`` and ``"cosine"``.
        backend: ``"auto"`` or a backend name; on the fused backends the rescale is a
            per-tensor factor inside the fused AdamW/Adam/SGD step, so BAR adds only the norms.
        max_grad_norm: clip the gradients to this total norm before the step (None: no clip).
        **base_kwargs: passed to ``base_optimizer``.

    ``step(closure=None, scaler=None)``: call it after ``backward()``, as any optimizer's
    (``closure``, if given, recomputes the loss and calls ``backward()``; its loss is
    returned). A gradient with inf or NaN skips the step, rescale included, with a warning.
    With fp16 and a ``GradScaler``, call ``step(scaler=scaler)`` (the norms are compared
    unscaled) or ``scaler.step(opt)``, then ``scaler.update()``.
    """

    _checkpoint_kind = "BAR"

    def __init__(
        self,
        params: Any,
        base_optimizer: type[torch.optim.Optimizer],
        pairs: Any,
        mu: float = 0.5,
        variant: str = "nbar",
        schedule: str | Callable[[int], float] = "constant",
        total_steps: int | None = None,
        backend: str = "auto",
        max_grad_norm: float | None = None,
        **base_kwargs: Any,
    ) -> None:
        check_nonnegative_finite("mu", mu)
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
        if isinstance(schedule, str):
            resolved = schedules.named(schedule, total_steps)
        elif callable(schedule):
            resolved = schedule
        else:
            raise TypeError(
                f"schedule must be a name ({', '.join(schedules.NAMED)}) or a callable of the "
                f"step index, got {type(schedule).__name__}"
            )
        super().__init__(
            params,
            base_optimizer,
            backend=backend,
            max_grad_norm=max_grad_norm,
            defaults={},
            **base_kwargs,
        )
        self.pairs = check_pairs(pairs, self.param_groups)
        self.mu = float(mu)
        self.variant = variant
        self.schedule = resolved
        #: Steps taken (skipped ones not counted): the schedule's ``t`` for the next step.
        self.steps_taken = 0

    def _settings(self) -> dict[str, Any]:
        return {
            **super()._settings(),
            "pairs": len(self.pairs),
            "mu": self.mu,
            "variant": self.variant,
            "schedule": self.schedule,
        }

    def coefficient(self) -> float:
        """``a = mu * s(t)`` for the next step."""
        value = self.schedule(self.steps_taken)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"schedule({self.steps_taken}) must return a float, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"schedule({self.steps_taken}) must be finite and >= 0, got {value}")
        return self.mu * float(value)

    @torch.no_grad()
    def step(  # type: ignore[override]
        self,
        closure: Callable[[], Any] | None = None,
        scaler: torch.amp.GradScaler | None = None,
    ) -> Any:
        """Rescale every pair by its rule, then step the base optimizer (see the class)."""
        check_scaler(scaler)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = [p for p in self._all_params() if p.grad is not None]
        check_dense_grads(params)
        if not params:
            return loss
        a = self.coefficient()
        if scaler is not None:
            scaler.unscale_(self)
        grads = [p.grad for p in params]
        grad_sq = self._grad_sqnorms(grads, None)
        pairs = [(x, y) for x, y in self.pairs if x.grad is not None and y.grad is not None]
        descent_sq = grad_sq.sum()
        deciding, order = self._deciding_sqnorms(pairs, params, grad_sq)
        host = torch.cat([descent_sq.reshape(1), deciding]).tolist()  # the one host sync
        self._opt_called = True  # torch's LR schedulers check this flag, set by step()
        if not self._record_finite(math.isfinite(host[0])):
            return loss
        self._clip_(grads, descent_sq)
        factors = self._factors(pairs, [host[1 + i] for i in order], a)
        prescales = [factors.get(p, 1.0) for p in params]
        fused = not self._sharded and self._ops.fused_restore_step(
            self.base_optimizer, params, params, prescales
        )
        if not fused:
            scaled = [p for p in params if p in factors]
            if scaled:
                torch._foreach_mul_(self._local(scaled), [factors[p] for p in scaled])
            self.base_optimizer.step()
        self.steps_taken += 1
        return loss

    def _deciding_sqnorms(
        self,
        pairs: list[tuple[torch.Tensor, torch.Tensor]],
        params: list[torch.Tensor],
        grad_sq: torch.Tensor,
    ) -> tuple[torch.Tensor, list[int]]:
        """Squared norms and the positions in them of ``x_0, y_0, x_1, ...``: of the weights
        (oBAR, one more launch) or of the gradients (nBAR: the descent's own per-tensor norms,
        picked on the host after the one copy there; an index built here would be a blocking
        copy the other way)."""
        flat = [t for pair in pairs for t in pair]
        if self.variant == "obar" and flat:
            return self._grad_sqnorms(flat, None), list(range(len(flat)))
        position = {p: i for i, p in enumerate(params)}
        return grad_sq, [position[t] for t in flat]

    def _factors(
        self, pairs: list[tuple[torch.Tensor, torch.Tensor]], sqnorms: list[float], a: float
    ) -> dict[torch.Tensor, float]:
        """Each paired tensor's factor ``1 +- a * eta``."""
        factors: dict[torch.Tensor, float] = {}
        if a == 0:
            return factors
        lr_of = {p: g["lr"] for g in self.param_groups for p in g["params"]}
        for k, (x, y) in enumerate(pairs):
            step = a * float(lr_of[x])
            x_larger = sqnorms[2 * k] >= sqnorms[2 * k + 1]
            # nBAR grows the factor with the larger gradient; oBAR shrinks the larger factor
            grow_x = x_larger if self.variant == "nbar" else not x_larger
            factors[x], factors[y] = (1 + step, 1 - step) if grow_x else (1 - step, 1 + step)
        return factors

    def _wrapper_state(self) -> dict[str, Any]:
        return {"steps_taken": self.steps_taken}

    def _check_wrapper_state(self, wrapper_state: dict[str, Any]) -> None:
        steps = wrapper_state.get("steps_taken")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(
                f"BAR state dict needs an int steps_taken >= 0, got {steps!r}; was it saved by BAR?"
            )

    def _load_wrapper_state(self, wrapper_state: dict[str, Any]) -> None:
        self.steps_taken = wrapper_state["steps_taken"]
