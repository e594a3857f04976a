"""The machinery every sharpness-aware optimizer here shares: the wrapped base optimizer, the
ascent (first step), the exact restore and descent (second step), and checkpoints."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from . import distributed
from .backup import BackupArena
from .checks import check_dense_grads, check_nonnegative_finite, check_scaler
from .grad_marks import GradMarks
from .wrapped import WrappedOptimizer

NORM_EPS = 1e-12


@dataclass
class Perturbation:
    """What first_step changed, kept until second_step undoes it."""

    params: list[torch.Tensor]
    shards: list[torch.Tensor]  # what perturb_/restore_ write: ``params``, or their local shards
    backups: list[torch.Tensor]
    grad_sqnorms: torch.Tensor  # first-pass ||g_i||^2 of ``params`` (fp32, on device)
    ascent_norm: torch.Tensor  # G, the norm the ascent was normalised by
    scaler: torch.amp.GradScaler | None  # the scaler that unscaled the first pass
    # step(closure) was given a first pass it did not run, and no backward was seen writing it
    unproven_first_pass: bool = False


class SharpnessAwareOptimizer(WrappedOptimizer):
    """Base class: wraps ``base_optimizer`` around the same param groups and adds the SAM
    ascent. Subclasses choose which tensors take part (``_ascent_params``) and what happens
    after the descent (``_after_descent``)."""

    def __init__(
        self,
        params: Any,
        base_optimizer: type[torch.optim.Optimizer],
        *,
        rho: float,
        adaptive: bool,
        backend: str,
        max_grad_norm: float | None = None,
        ascent: str = "global",
        process_group: Any = None,
        **base_kwargs: Any,
    ) -> None:
        check_nonnegative_finite("rho", rho)
        if not isinstance(adaptive, bool):
            raise TypeError(f"adaptive must be True or False, got {adaptive!r}")
        self._rho_default = rho
        self._ascent_args = (ascent, process_group)
        super().__init__(
            params,
            base_optimizer,
            backend=backend,
            max_grad_norm=max_grad_norm,
            defaults=dict(rho=rho, adaptive=adaptive),
            **base_kwargs,
        )
        #: "global" (both passes averaged over ranks) or "per_rank" (m-sharpness).
        self.ascent = ascent
        self._group = process_group
        self._backups = BackupArena()
        self._perturbation: Perturbation | None = None
        self._marks = GradMarks()
        self._marks.watch(self._all_params())

    @property
    def backup_nbytes(self) -> int:
        """Bytes held for weight backups (grows to the largest set perturbed so far)."""
        return self._backups.nbytes

    @property
    def is_perturbed(self) -> bool:
        """True between :meth:`first_step` and :meth:`second_step`: a closure called now runs
        the second pass (wrap it in :func:`~slsam_kernels.utils.frozen_bn_stats`)."""
        return self._perturbation is not None

    @property
    def backup_buffers(self) -> list[torch.Tensor]:
        """The flat buffers the weight backups live in (for memory accounting)."""
        return self._backups.buffers

    def _settings(self) -> dict[str, Any]:
        return {**super()._settings(), "ascent": self.ascent}

    def _check_groups(self, groups: list[dict[str, Any]]) -> None:
        """Each group's ``rho`` and the ascent mode; subclasses add their own checks."""
        for group in groups:
            check_nonnegative_finite("rho", group.get("rho", self._rho_default))
        distributed.check_ascent(*self._ascent_args, self._sharded)

    def first_pass(self, model: torch.nn.Module) -> Any:
        """The context to run the first (ascent) backward in: ``model.no_sync()`` with
        ``ascent="per_rank"`` (``model`` the DistributedDataParallel module), else a no-op."""
        return distributed.first_pass_context(self.ascent, model)

    def _ascent_params(self) -> list[tuple[torch.Tensor, dict[str, Any]]]:
        """The (tensor, group) pairs the ascent perturbs: here, every tensor with a gradient."""
        return [(p, g) for g in self.param_groups for p in g["params"] if p.grad is not None]

    @torch.no_grad()
    def first_step(
        self, zero_grad: bool = False, scaler: torch.amp.GradScaler | None = None
    ) -> None:
        """Perturb the weights uphill, ``w <- w + rho * g / ||g||``, keeping an exact backup.

        With ``scaler`` (the ``GradScaler`` that scaled this pass's loss) the gradients are
        unscaled first; pass the same scaler to :meth:`second_step`, then call
        ``scaler.update()``."""
        if self._perturbation is not None:
            raise RuntimeError("first_step() was called twice: call second_step() in between")
        check_scaler(scaler)
        pairs = self._ascent_params()
        if not pairs:
            raise ValueError(
                "no parameter has a gradient: call loss.backward() before first_step()"
            )
        check_dense_grads([p for p, _ in pairs])
        if scaler is not None:
            scaler.unscale_(self)
        params = [p for p, _ in pairs]
        grads = [p.grad for p in params]
        adaptive = [bool(g["adaptive"]) for _, g in pairs]
        grad_sq = self._grad_sqnorms(grads, None)
        ascent_norm = self._ascent_sqnorms(grads, params, adaptive, grad_sq).sum().sqrt()
        denominator = ascent_norm + NORM_EPS
        rhos = [float(g["rho"]) for _, g in pairs]
        shards, grads = self._local(params), self._local(grads)
        backups = self._backups.views(shards)
        for flag in (False, True):
            idx = [i for i, a in enumerate(adaptive) if a == flag]
            if idx:
                self._ops.perturb_(
                    [shards[i] for i in idx],
                    [grads[i] for i in idx],
                    [backups[i] for i in idx],
                    _scales([rhos[i] for i in idx], denominator),
                    flag,
                )
        self._perturbation = Perturbation(params, shards, backups, grad_sq, ascent_norm, scaler)
        if zero_grad:
            self.zero_grad()

    def _ascent_sqnorms(
        self,
        grads: list[torch.Tensor],
        params: list[torch.Tensor],
        adaptive: list[bool],
        grad_sq: torch.Tensor,
    ) -> torch.Tensor:
        """The per-tensor squared norms the ascent is normalised by: ``grad_sq``, with ASAM's
        ``||w * g||^2`` for the adaptive tensors. Put together from slices of runs of equally
        flagged tensors (param groups come in runs): an index list would be a blocking host ->
        device copy."""
        if not any(adaptive):
            return grad_sq
        pieces, start = [], 0
        for flag, run in itertools.groupby(adaptive):
            end = start + len(list(run))
            pieces.append(
                self._grad_sqnorms(grads[start:end], params[start:end])
                if flag
                else grad_sq[start:end]
            )
            start = end
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)

    @torch.no_grad()
    def second_step(
        self, zero_grad: bool = False, scaler: torch.amp.GradScaler | None = None
    ) -> None:
        """Restore the weights exactly, then let the base optimizer step with the gradient
        taken at the perturbed point, clipped to ``max_grad_norm``. A non-finite gradient in
        either pass skips the step. ``scaler``: the one given to :meth:`first_step`."""
        perturbation = self._perturbation
        if perturbation is None:
            raise RuntimeError("second_step() needs a first_step() before it")
        if scaler is not perturbation.scaler:
            raise ValueError(
                "second_step() got a different scaler than first_step(): pass the same "
                "GradScaler (or None) to both"
            )
        if scaler is not None:
            # The scaler records one unscale per optimizer between updates: the second pass
            # goes through the base optimizer (same parameters), so scaler.update() sees the
            # inf checks of both passes.
            scaler.unscale_(self.base_optimizer)
        took_step = self._prepare_descent(
            perturbation.ascent_norm, refuse_zero_ascent=perturbation.unproven_first_pass
        )
        # The fused kernels take plain tensors, and the base optimizer's state is keyed by
        # the DTensor parameters: sharded parameters restore, then step on their own.
        fused = (
            took_step
            and not self._sharded
            and self._ops.fused_restore_step(
                self.base_optimizer, *self._descent_pairs(perturbation)
            )
        )
        if not fused:
            self._restore()
            if took_step:
                self.base_optimizer.step()
        self._perturbation = None
        # torch's LR schedulers warn unless this flag is set, and only step() sets it; the
        # manual first_step/second_step path takes a step too.
        self._opt_called = True
        self._after_descent(perturbation, took_step)
        if zero_grad:
            self.zero_grad()
        self._marks.record(self._all_params())

    def _descent_pairs(
        self, perturbation: Perturbation
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The (params, backups) the fused restore + step takes: the perturbed tensors and
        their backups. A subclass whose descent also steps unperturbed tensors adds them as
        their own backups (stepped in place, as the restore leaves them)."""
        return perturbation.params, perturbation.backups

    @torch.no_grad()
    def _step_in_place(self) -> None:
        """The base optimizer's step on the current gradients, fused in place (each param its
        own backup) when the backend takes it, as restore-free as ``base_optimizer.step()``."""
        params = [p for p in self._all_params() if p.grad is not None]
        if self._sharded or not self._ops.fused_restore_step(self.base_optimizer, params, params):
            self.base_optimizer.step()

    def _restore(self) -> None:
        if self._perturbation is not None:
            self._ops.restore_(self._perturbation.shards, self._perturbation.backups)
            self._perturbation = None

    def _after_descent(self, perturbation: Perturbation, took_step: bool) -> None:
        """Hook for subclasses, run after every second_step."""

    def _prepare_descent(
        self, ascent_norm: torch.Tensor | None = None, refuse_zero_ascent: bool = False
    ) -> bool:
        """True when every gradient (and the ascent norm) is finite, after clipping the
        gradients to ``max_grad_norm``; else warn, record a skipped step and leave them.
        ``refuse_zero_ascent``: raise (undoing the step) if the ascent norm is 0. One host
        sync."""
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        descent_sq = self._grad_sqnorms(grads, None).sum() if grads else None
        took_step = self._gradients_finite(descent_sq, ascent_norm, refuse_zero_ascent)
        if took_step:
            self._clip_(grads, descent_sq)
        return took_step

    def _gradients_finite(
        self,
        descent_sq: torch.Tensor | None,
        ascent_norm: torch.Tensor | None,
        refuse_zero_ascent: bool = False,
    ) -> bool:
        """True when the descent ``sum ||g_i||^2`` (and the ascent norm) are finite; else warn
        and record a skipped step. ``refuse_zero_ascent``: a zero ascent norm raises."""
        finite = None if descent_sq is None else torch.isfinite(descent_sq)
        if ascent_norm is not None:
            ascent_ok = torch.isfinite(ascent_norm)
            finite = ascent_ok if finite is None else finite & ascent_ok
        if refuse_zero_ascent and ascent_norm is not None:
            # Folded into the one host sync: [finite, zero ascent].
            finite_flag, zero = torch.stack([finite, ascent_norm == 0]).tolist()
            if zero:
                self._restore()
                raise ValueError(
                    "step(closure): the gradients were written since this optimizer's last "
                    "step() or zero_grad(), so they were taken for the first pass, but they are "
                    "zero everywhere: zeroed in place by something else (e.g. "
                    "model.zero_grad(set_to_none=False)) or a first pass with no gradient. "
                    "Call this optimizer's zero_grad() to let step(closure) run both passes, "
                    "or use first_step()/second_step() (the step was undone)"
                )
            finite = torch.tensor(finite_flag)
        return self._record_finite(finite is None or bool(finite))

    def step(  # type: ignore[override]
        self,
        closure: Callable[[], Any] | None = None,
        scaler: torch.amp.GradScaler | None = None,
    ) -> Any:
        """One full step; ``closure`` recomputes the loss and calls ``backward()``. Two forms:

        * the caller did the first backward (at ``w``): the closure runs once, at the
          perturbed weights; returns its result (davda54/sam's form);
        * closure-only (no gradient written since this optimizer's last ``step()`` or
          ``zero_grad()``): the closure runs at ``w`` too, first; returns that result.

        They are told apart by whether a gradient was written since this optimizer last
        stepped or zeroed them (see :meth:`first_pass_pending`). Gradients written since but
        zero everywhere (zeroed in place by something else) are ambiguous and raise.

        Mixed precision: backpropagate ``scaler.scale(loss)`` in both passes, pass the scaler
        here and call ``scaler.update()`` after the step."""
        if closure is None:
            raise ValueError(
                f"{type(self).__name__}.step() needs a closure that recomputes the loss and "
                "calls loss.backward(); or call first_step() and second_step() yourself"
            )
        return self._two_pass_step(closure, scaler)

    def _two_pass_step(
        self, closure: Callable[[], Any], scaler: torch.amp.GradScaler | None
    ) -> Any:
        """The SAM step in whichever form the gradients call for."""
        if not self.first_pass_pending():
            # Zero gradients that a backward wrote are a true first pass (the ascent is then
            # zero, as SAM's rho g / ||g|| gives); without a backward seen they may be an
            # in-place zeroing by someone else, and a zero ascent is refused.
            unproven = not self._marks.backward_ran
            return self._sam_step(closure, scaler, unproven_first_pass=unproven)
        loss = self._first_pass(closure)
        self._sam_step(closure, scaler)
        return loss

    def first_pass_pending(self) -> bool:
        """True when no gradient was written since this optimizer's last ``step()`` or
        ``zero_grad()`` (each ``.grad`` is None, or the very tensor left then, unchanged):
        ``step(closure)`` then runs the first pass through the closure too."""
        return not self._marks.written_since(self._all_params())

    def _first_pass(self, closure: Callable[[], Any]) -> Any:
        """Run ``closure`` at ``w`` on empty gradients; refuse one that writes none."""
        self.zero_grad()  # the gradients left by the last step are stale
        with torch.enable_grad():
            loss = closure()
        if self.first_pass_pending():
            raise RuntimeError(
                "step(closure) ran the closure for the first pass and it wrote no gradient: it "
                "must recompute the loss and call loss.backward()"
            )
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """As ``torch.optim.Optimizer.zero_grad``; afterwards ``step(closure)`` takes the
        first pass through the closure."""
        super().zero_grad(set_to_none=set_to_none)
        self._marks.record(self._all_params())

    def _sam_step(
        self,
        closure: Callable[[], Any],
        scaler: torch.amp.GradScaler | None = None,
        unproven_first_pass: bool = False,
    ) -> Any:
        self.first_step(zero_grad=True, scaler=scaler)
        self._perturbation.unproven_first_pass = unproven_first_pass
        try:
            with torch.enable_grad():
                loss = closure()
            if all(p.grad is None for p in self._perturbation.params):
                raise RuntimeError(
                    "the closure left every gradient empty: it must recompute the loss and "
                    "call loss.backward() (the step was undone, the weights are as before)"
                )
        except BaseException:
            self._restore()
            raise
        self.second_step(scaler=scaler)
        return loss

    def _check_loadable(self) -> None:
        if self._perturbation is not None:
            raise RuntimeError("load_state_dict() between first_step() and second_step()")


def _scales(rhos: list[float], denominator: torch.Tensor) -> torch.Tensor:
    """``rho_i / denominator``, fp32 on the denominator's device, filled there run by run of
    equal ``rho`` (one fill for one param group): a tensor made from the list would be a host
    -> device copy every step."""
    runs = [(rho, len(list(run))) for rho, run in itertools.groupby(rhos)]
    filled = [
        torch.full((count,), rho, dtype=torch.float32, device=denominator.device)
        for rho, count in runs
    ]
    return (filled[0] if len(filled) == 1 else torch.cat(filled)).div_(denominator)
