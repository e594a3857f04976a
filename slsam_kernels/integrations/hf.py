"""Hugging Face ``Trainer`` with SAM, SL-SAM or RST: one line to switch a Trainer script."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch

try:
    from transformers import Trainer
except ImportError as error:
    raise ImportError(
        "slsam_kernels.integrations.hf needs transformers: pip install transformers"
    ) from error

from ..optim import SLSAM, SharpnessAwareOptimizer

_ADAM_LIKE = (torch.optim.Adam, torch.optim.AdamW)


class SAMTrainer(Trainer):
    """A ``transformers.Trainer`` whose optimizer is sharpness-aware::

        trainer = SAMTrainer(model=model, args=args, train_dataset=dataset,
                             sam_optimizer=SLSAM, sam_kwargs={"sample_ratio": 0.2})

    Every optimizer step takes two passes over the accumulation window: the Trainer's own
    ``training_step`` (its ``compute_loss``, its loss scaling for gradient accumulation, its
    ``accelerator.backward``) over each micro-batch, the ascent, the same micro-batches again
    at the perturbed weights, then the descent. ``args.max_grad_norm`` clips the descent
    gradient (the optimizer's ``max_grad_norm``); the first pass is left unclipped, because
    the ascent is normalised anyway and SL-SAM's bandit needs the true gradient norms.

    Args:
        sam_optimizer: :class:`~slsam_kernels.SAM`, :class:`~slsam_kernels.SLSAM` (default) or
            :class:`~slsam_kernels.RST`.
        sam_kwargs: its arguments. ``base_optimizer`` defaults to ``torch.optim.AdamW``; ``lr``,
            the weight decay (not on biases and norms, as ``Trainer`` does), Adam's betas and
            eps, and ``max_grad_norm`` default to the ``TrainingArguments``.
        *args, **kwargs: as for ``Trainer``. Mixed precision: ``bf16=True``, or ``fp16=True``:
            accelerate's GradScaler then unscales both passes inside the optimizer's step (the
            optimizer tells the scaler it handles scaling itself, so the scaler neither unscales
            the first pass early nor skips the step; a non-finite gradient in either pass skips
            it and lowers the scale). The logged ``grad_norm`` is the first pass's, unscaled.
    """

    def __init__(
        self,
        *args: Any,
        sam_optimizer: type[SharpnessAwareOptimizer] = SLSAM,
        sam_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not (
            isinstance(sam_optimizer, type) and issubclass(sam_optimizer, SharpnessAwareOptimizer)
        ):
            raise TypeError(
                f"sam_optimizer must be SAM, SLSAM or RST (the class), got {sam_optimizer!r}"
            )
        if sam_kwargs is not None and not isinstance(sam_kwargs, dict):
            raise TypeError("sam_kwargs must be a dict of the optimizer's keyword arguments")
        self.sam_optimizer = sam_optimizer
        self.sam_kwargs = dict(sam_kwargs or {})
        self._window: list[tuple[torch.nn.Module, dict[str, Any], Any]] = []
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        """Build the sharpness-aware optimizer over the trainable parameters."""
        if self.optimizer is None:
            self.optimizer = self._build_optimizer(model if model is not None else self.model)
        if not isinstance(self.optimizer, SharpnessAwareOptimizer):
            raise TypeError(
                "SAMTrainer needs a SAM, SLSAM or RST optimizer: leave optimizers= out and "
                "pass sam_optimizer= and sam_kwargs= instead"
            )
        self._feed_second_pass(self.optimizer)
        return self.optimizer

    def _build_optimizer(self, model: torch.nn.Module) -> SharpnessAwareOptimizer:
        kwargs = dict(self.sam_kwargs)
        base = kwargs.pop("base_optimizer", torch.optim.AdamW)
        decay = set(self.get_decay_parameter_names(model))
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        groups = [
            {"params": [p for n, p in named if n in decay], "weight_decay": self.args.weight_decay},
            {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0},
        ]
        defaults: dict[str, Any] = {"lr": self.args.learning_rate}
        if isinstance(base, type) and issubclass(base, _ADAM_LIKE):
            defaults["betas"] = (self.args.adam_beta1, self.args.adam_beta2)
            defaults["eps"] = self.args.adam_epsilon
        if self.args.max_grad_norm and self.args.max_grad_norm > 0:
            defaults["max_grad_norm"] = float(self.args.max_grad_norm)
        groups = [g for g in groups if g["params"]]
        return self.sam_optimizer(groups, base, **{**defaults, **kwargs})

    def _feed_second_pass(self, optimizer: SharpnessAwareOptimizer) -> None:
        # Trainer (through accelerate) calls optimizer.step() with no closure; this instance's
        # step gets the second pass as its closure, and with fp16 accelerate's GradScaler.
        step = optimizer.step
        if getattr(step, "second_pass_of", None) is self:
            return
        # torch's GradScaler.step then calls step() as it is, leaving unscaling and skipping
        # to the optimizer (torch.amp.GradScaler's contract for such optimizers).
        optimizer._step_supports_amp_scaling = self.accelerator.scaler is not None

        def step_with_second_pass(
            closure: Callable[[], Any] | None = None, scaler: Any = None
        ) -> Any:
            scaler = scaler if scaler is not None else self.accelerator.scaler
            try:
                return step(closure if closure is not None else self._second_pass, scaler)
            finally:
                self._window = []  # RST's plain steps do not call the closure

        step_with_second_pass.second_pass_of = self  # type: ignore[attr-defined]
        optimizer.step = step_with_second_pass  # type: ignore[method-assign]

    def training_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        num_items_in_batch: Any = None,
    ) -> torch.Tensor:
        """The first pass over one micro-batch, kept for the second pass."""
        # A copy: compute_loss may pop "labels" from the dict it gets.
        self._window.append((model, dict(inputs), num_items_in_batch))
        return super().training_step(model, inputs, num_items_in_batch)

    def _second_pass(self) -> None:
        for i, (model, inputs, num_items_in_batch) in enumerate(self._window):
            last = i == len(self._window) - 1
            with nullcontext() if last else self.accelerator.no_sync(model):
                super().training_step(model, dict(inputs), num_items_in_batch)

    # Trainer's private hooks, overridden: its clipping (and norm logging) would clip the
    # first pass and, with fp16, unscale it through accelerate before the optimizer can.
    def _clip_grad_norm(self, model: torch.nn.Module) -> torch.Tensor:
        # The optimizer clips the descent; this only measures the first pass.
        return self._first_pass_norm(model)

    def _get_grad_norm(self, model: torch.nn.Module, grad_norm: Any = None) -> Any:
        return grad_norm if grad_norm is not None else self._first_pass_norm(model)

    def _first_pass_norm(self, model: torch.nn.Module) -> torch.Tensor:
        """The first pass's total gradient norm, unscaled, leaving the scaler untouched."""
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
        scaler = self.accelerator.scaler
        return norm / scaler.get_scale() if scaler is not None else norm
