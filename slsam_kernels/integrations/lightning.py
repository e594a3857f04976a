"""PyTorch Lightning, automatic optimization, with SAM, SL-SAM or RST: a LightningModule mixin.

It overrides the LightningModule hooks Lightning documents for this (``optimizer_step``,
``on_train_batch_start``, ``log``) and imports no Lightning itself, so it serves both
``lightning.pytorch`` and ``pytorch_lightning`` (tested: pytorch-lightning 2.6)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import nullcontext
from functools import partial
from typing import Any

import torch

from ..optim import SLSAM, SharpnessAwareOptimizer
from ..utils.batchnorm import frozen_bn_stats


class SharpnessAwareMixin:
    """Put it first among a ``LightningModule``'s bases and return :class:`~slsam_kernels.SAM`,
    :class:`~slsam_kernels.SLSAM` or :class:`~slsam_kernels.RST` from
    ``configure_optimizers`` (alone or with an LR scheduler)::

        class Model(SharpnessAwareMixin, L.LightningModule):
            def training_step(self, batch, batch_idx): ...
            def configure_optimizers(self):
                return SAM(self.parameters(), torch.optim.AdamW, lr=1e-3)

        L.Trainer(precision="16-mixed", accumulate_grad_batches=4, gradient_clip_val=1.0)

    Each optimizer step: Lightning runs the first pass over the accumulation window (its own
    ``training_step``, loss normalisation, gradient sync and loss scaling); then, at the
    perturbed weights, the same micro-batches go through ``training_step`` again, with
    BatchNorm's running statistics frozen and ``self.log`` muted (the logs are the first
    pass's); then the descent. ``gradient_clip_val`` clips the descent only (it becomes the
    optimizer's ``max_grad_norm``; ``gradient_clip_algorithm="value"`` is refused); the first
    pass is never clipped: the ascent is normalised and SL-SAM's bandit needs the true norms.
    ``precision="16-mixed"`` unscales both passes with Lightning's GradScaler; a non-finite
    gradient skips the step and lowers the scale. ``on_before_optimizer_step`` is not called
    for SAM optimizers (the step is not one ``optimizer.step()``). At the end of ``fit`` an
    SL-SAM is released: every arm requires grad again (``on_fit_end``; an override of it must
    call ``super().on_fit_end()``).
    """

    _sam_window: list[tuple[Any, int]]
    _sam_second_pass = False

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> Any:
        """Keep the micro-batches of the accumulation window for the second pass."""
        if batch_idx % self.trainer.accumulate_grad_batches == 0 or not hasattr(
            self, "_sam_window"
        ):
            self._sam_window = []
        self._sam_window.append((batch, batch_idx))
        return super().on_train_batch_start(batch, batch_idx)

    def optimizer_step(
        self,
        epoch: int,
        batch_idx: int,
        optimizer: Any,
        optimizer_closure: Callable[[], Any] | None = None,
    ) -> Any:
        """Lightning's step hook: the two passes and the descent for a sharpness-aware
        optimizer; any other optimizer steps as Lightning's default does."""
        sam = getattr(optimizer, "optimizer", optimizer)  # inside Lightning's LightningOptimizer
        if not isinstance(sam, SharpnessAwareOptimizer):
            return super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        window, self._sam_window = self._sam_window, []
        self._clip_descent_only(sam)
        if optimizer_closure() is None:
            return None  # training_step returned None: Lightning skips the step too
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        sam.step(partial(self._sam_replay, window, sam), scaler=scaler)
        if scaler is not None:
            scaler.update()
        return None

    def on_fit_end(self) -> None:
        """Give back the ``requires_grad`` flags of every SL-SAM this fit trained with
        (:meth:`~slsam_kernels.SLSAM.release`): the model leaves ``fit`` trainable as it came,
        and the next ``fit`` can build a new SLSAM over it."""
        for optimizer in self.trainer.optimizers:
            if isinstance(optimizer, SLSAM):
                optimizer.release()
        super().on_fit_end()

    def log(self, *args: Any, **kwargs: Any) -> None:
        """``LightningModule.log``, muted during the second pass."""
        if not self._sam_second_pass:
            super().log(*args, **kwargs)

    def _clip_descent_only(self, sam: SharpnessAwareOptimizer) -> None:
        clip = self.trainer.gradient_clip_val
        if not clip:
            return  # the optimizer's own max_grad_norm, if any
        if self.trainer.gradient_clip_algorithm not in (None, "norm"):
            raise ValueError(
                "SharpnessAwareMixin clips the descent by its norm: use "
                "gradient_clip_algorithm='norm' (the default)"
            )
        sam.max_grad_norm = float(clip)

    def _sam_replay(self, window: list[tuple[Any, int]], sam: torch.optim.Optimizer) -> None:
        """The second pass: every micro-batch of the window at the perturbed weights, the
        gradient sync on the last one only (as in the first pass)."""
        trainer = self.trainer
        strategy = trainer.strategy
        block_sync = getattr(strategy, "block_backward_sync", None)
        self._sam_second_pass = True
        try:
            with frozen_bn_stats(self):
                for i, (batch, batch_idx) in enumerate(window):
                    last = i == len(window) - 1
                    with nullcontext() if last or block_sync is None else block_sync():
                        output = strategy.training_step(batch, batch_idx)
                        loss = output["loss"] if isinstance(output, Mapping) else output
                        strategy.backward(loss / trainer.accumulate_grad_batches, sam)
        finally:
            self._sam_second_pass = False
