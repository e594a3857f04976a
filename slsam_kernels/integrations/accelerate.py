"""Hugging Face ``accelerate`` loops ("no trainer" scripts) with SAM, SL-SAM or RST.

Under ``accelerator.accumulate(model)`` the optimizer steps once per accumulation window, and
the second pass must run every micro-batch of that window again, at the perturbed weights.
:class:`SAMWindow` keeps the window's micro-batches and replays them as the step's closure. It
takes the ``Accelerator`` as it is and imports no ``accelerate`` itself."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch

from ..optim import SLSAM, SharpnessAwareOptimizer
from ..utils.batchnorm import frozen_bn_stats


class SAMWindow:
    """The first pass of each micro-batch, kept for the second pass::

        window = SAMWindow(accelerator, model, lambda batch: model(**batch).loss)
        for batch in train_dataloader:
            with accelerator.accumulate(model):
                loss = window.backward(batch)   # the first pass: loss, accelerator.backward
                optimizer.step(window.replay)   # on sync steps: ascent, replay, descent
                lr_scheduler.step()
                optimizer.zero_grad()

    ``optimizer`` is the prepared (``AcceleratedOptimizer``) SAM, SLSAM or RST: it steps
    only on the window's last micro-batch, where :meth:`replay` runs every micro-batch of the
    window through ``loss_fn`` and ``accelerator.backward`` at the perturbed weights. With each
    loss divided by the accumulation steps (``accelerator.backward`` does it) the step equals
    one step on the window's large batch. The replay leaves BatchNorm's running statistics
    alone and, under DistributedDataParallel, syncs the gradients on its last micro-batch only.

    Build it after ``accelerator.prepare``: under DistributedDataParallel it raises a
    ``ValueError`` if DDP was built after SLSAM froze its inactive tensors (prepare the model
    first, then build SLSAM), since DDP would never sync them.

    Mixed precision: ``mixed_precision="bf16"`` needs nothing; with ``"fp16"`` accelerate's
    GradScaler unscales the first pass (and skips the step if it holds inf or NaN), the replay
    unscales the second (a non-finite one skips the descent), and ``scaler.update()`` sees
    both.

    Clip with the optimizer's ``max_grad_norm``, not ``accelerator.clip_grad_norm_``: called
    between the backward and the step, the latter would clip the first pass (the ascent is
    normalised, but SL-SAM's bandit would see the clipped norms) and leave the descent
    unclipped.

    Args:
        accelerator: the ``accelerate.Accelerator`` that prepared ``model``.
        model: the prepared model.
        loss_fn: ``loss_fn(batch)`` runs the forward on one micro-batch and returns the loss.
    """

    def __init__(
        self,
        accelerator: Any,
        model: torch.nn.Module,
        loss_fn: Callable[[Any], torch.Tensor],
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be the prepared nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError("loss_fn must be a callable: loss_fn(batch) returns the loss")
        _check_ddp_syncs_every_arm(accelerator, model)
        self.accelerator = accelerator
        self.model = model
        self.loss_fn = loss_fn
        self._batches: list[Any] = []
        self._window_closed = True

    def backward(self, batch: Any) -> torch.Tensor:
        """The first pass on ``batch`` (``accelerator.backward(loss_fn(batch))``), kept for
        the replay; returns the loss, detached. The first micro-batch after a sync step
        starts a new window."""
        if self._window_closed:
            self._batches = []
        loss = self.loss_fn(batch)
        self.accelerator.backward(loss)
        self._batches.append(batch)
        self._window_closed = bool(self.accelerator.sync_gradients)
        return loss.detach()

    def replay(self) -> torch.Tensor:
        """The step's closure: the window's micro-batches again, at the perturbed weights;
        returns the mean of their losses, detached."""
        if not self._batches:
            raise RuntimeError(
                "SAMWindow.replay() has no micro-batch to replay: run window.backward(batch) "
                "for each micro-batch before optimizer.step(window.replay)"
            )
        if not self.accelerator.sync_gradients:
            raise RuntimeError(
                "the optimizer stepped inside an accumulation window, before its last "
                "micro-batch: pass the optimizer through accelerator.prepare, whose step waits "
                "for the window's end (the weights are as before this step)"
            )
        scaler = self.accelerator.scaler
        stepping = self._stepping_optimizer() if scaler is not None else None
        losses = []
        with frozen_bn_stats(self.model):
            for i, batch in enumerate(self._batches):
                last = i == len(self._batches) - 1
                with nullcontext() if last else self.accelerator.no_sync(self.model):
                    loss = self.loss_fn(batch)
                    self.accelerator.backward(loss)
                losses.append(loss.detach())
        if stepping is not None:
            # accelerate's GradScaler unscaled the first pass before calling the step; a
            # scaler unscales an optimizer once per update, so the second pass goes through
            # the base optimizer (same tensors), and scaler.update() sees both passes' infs.
            scaler.unscale_(stepping.base_optimizer)
        return torch.stack(losses).mean()

    def _stepping_optimizer(self) -> SharpnessAwareOptimizer:
        """The prepared sharpness-aware optimizer whose step is running this replay."""
        for prepared in getattr(self.accelerator, "_optimizers", []):
            optimizer = getattr(prepared, "optimizer", None)
            if isinstance(optimizer, SharpnessAwareOptimizer) and optimizer.is_perturbed:
                return optimizer
        raise RuntimeError(
            "with fp16, SAMWindow.replay() must run inside the step of a SAM, SLSAM or RST "
            "optimizer prepared by this accelerator: optimizer.step(window.replay)"
        )


def _check_ddp_syncs_every_arm(accelerator: Any, model: torch.nn.Module) -> None:
    """Refuse a DistributedDataParallel model built after a prepared SLSAM froze its inactive
    tensors: DDP registers only the tensors that require grad when it is built, so it would
    never sync those and the ranks would drift apart."""
    logging_data = getattr(model, "_get_ddp_logging_data", None)
    if logging_data is None:
        return  # not DDP
    registered = logging_data().get("num_parameter_tensors")
    arms = {
        id(t)
        for prepared in getattr(accelerator, "_optimizers", [])
        if isinstance(getattr(prepared, "optimizer", None), SLSAM)
        for arm in prepared.optimizer.arms
        for t in (arm if isinstance(arm, tuple) else (arm,))
    }
    ignored = getattr(model, "parameters_to_ignore", set())
    trainable = [
        p
        for name, p in model.module.named_parameters()
        if name not in ignored and (p.requires_grad or id(p) in arms)
    ]
    if isinstance(registered, int) and registered < len(trainable):
        raise ValueError(
            f"DistributedDataParallel syncs {registered} of the model's {len(trainable)} "
            "trainable tensors: it was built after SLSAM froze its inactive ones, so those "
            "would never be synced. Prepare the model first (model = accelerator.prepare("
            "model)), then build SLSAM over its parameters, then prepare the optimizer, data "
            "loaders and LR scheduler"
        )
