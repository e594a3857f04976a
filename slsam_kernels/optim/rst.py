"""RST: randomized sharpness-aware training (Zhao et al. 2022), the SL-SAM paper's baseline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from . import distributed
from .checkpoint import check_generator_state
from .checks import check_dense_grads, check_scaler, check_seed, check_unit_interval
from .rng import make_generator
from .sharpness_aware import SharpnessAwareOptimizer


class RST(SharpnessAwareOptimizer):
    """Each step is a full SAM step with probability ``sam_prob``, else a plain base step.

    Args:
        params, base_optimizer, rho, backend, max_grad_norm, **base_kwargs: as for
            :class:`SAM`.
        sam_prob: probability of a SAM step, or a callable ``step_index -> probability``
            (G-RST schedules); ``step_index`` counts calls of :meth:`step` from 0.
        seed: seeds the coin flips; None draws a fresh seed (under ``torch.distributed``, on
            the first rank, shared with the others, so every rank flips alike).

    On a plain step the closure is called only in the closure-only form (no first backward
    done; see :meth:`SharpnessAwareOptimizer.step`), for the gradient at ``w``, and
    :meth:`step` returns its result; otherwise it is not called and :meth:`step` returns None.
    ``last_step_was_sam`` tells which kind the last step was.
    """

    _checkpoint_kind = "RST"

    def __init__(
        self,
        params: Any,
        base_optimizer: type[torch.optim.Optimizer],
        rho: float = 0.05,
        sam_prob: float | Callable[[int], float] = 0.5,
        seed: int | None = None,
        backend: str = "auto",
        max_grad_norm: float | None = None,
        **base_kwargs: Any,
    ) -> None:
        if not callable(sam_prob):
            check_unit_interval("sam_prob", sam_prob, include_zero=True)
        check_seed(seed)
        super().__init__(
            params,
            base_optimizer,
            rho=rho,
            adaptive=False,
            backend=backend,
            max_grad_norm=max_grad_norm,
            **base_kwargs,
        )
        self.sam_prob = sam_prob
        #: The seed of the coin flips (None: a fresh one was drawn).
        self.seed = seed
        self.step_index = 0
        self.last_step_was_sam: bool | None = None
        self._generator = make_generator(distributed.agreed_seed(seed, None, self._device))

    def _settings(self) -> dict[str, Any]:
        return {**super()._settings(), "sam_prob": self.sam_prob, "seed": self.seed}

    def _current_sam_prob(self) -> float:
        if not callable(self.sam_prob):
            return float(self.sam_prob)
        value = self.sam_prob(self.step_index)
        check_unit_interval(f"sam_prob({self.step_index})", value, include_zero=True)
        return float(value)

    def step(  # type: ignore[override]
        self,
        closure: Callable[[], Any] | None = None,
        scaler: torch.amp.GradScaler | None = None,
    ) -> Any:
        """Flip the coin; on heads run a SAM step with ``closure``, else a plain base step
        (clipped to ``max_grad_norm``). ``scaler``: as for :meth:`SAM.step`."""
        if closure is None:
            return super().step(closure)
        check_scaler(scaler)
        sam_prob = self._current_sam_prob()
        # A step that fails leaves the coin where it was, so a retry flips the same coin.
        generator_before = self._generator.get_state()
        coin = torch.rand((), dtype=torch.float64, generator=self._generator).item()
        try:
            sam_step = coin < sam_prob
            loss = (
                self._two_pass_step(closure, scaler)
                if sam_step
                else self._plain_step(closure, scaler)
            )
        except BaseException:
            self._generator.set_state(generator_before)
            raise
        self.last_step_was_sam = sam_step
        self.step_index += 1
        return loss

    def _plain_step(self, closure: Callable[[], Any], scaler: torch.amp.GradScaler | None) -> Any:
        """The plain step, its first pass taken through ``closure`` if the caller did none."""
        loss = self._first_pass(closure) if self.first_pass_pending() else None
        self._base_step(scaler)
        self._marks.record(self._all_params())
        return loss

    @torch.no_grad()
    def _base_step(self, scaler: torch.amp.GradScaler | None) -> None:
        """The plain step: the base optimizer with the gradient at w (clipped, if asked),
        fused in place where the backend has the fused step."""
        check_dense_grads([p for g in self.param_groups for p in g["params"]])
        if scaler is not None:
            scaler.unscale_(self)
        if self._prepare_descent():
            self._step_in_place()

    def _wrapper_state(self) -> dict[str, Any]:
        return {"step_index": self.step_index, "generator": self._generator.get_state()}

    def _check_wrapper_state(self, wrapper_state: dict[str, Any]) -> None:
        step_index = wrapper_state.get("step_index")
        if isinstance(step_index, bool) or not isinstance(step_index, int) or step_index < 0:
            raise ValueError(
                f"RST state dict needs an int step_index >= 0, got {step_index!r}; was it "
                "saved by RST?"
            )
        check_generator_state(wrapper_state.get("generator"), "RST")

    def _load_wrapper_state(self, wrapper_state: dict[str, Any]) -> None:
        self.step_index = wrapper_state["step_index"]
        self._generator.set_state(wrapper_state["generator"].cpu())
