"""The SAM ascent (perturb with an exact backup) and the exact restore."""

from __future__ import annotations

from collections.abc import Sequence

import torch


@torch.no_grad()
def perturb_(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    backups: Sequence[torch.Tensor],
    scales: torch.Tensor,
    adaptive: bool = False,
) -> tuple[()]:
    """Copy each ``w`` into its backup, then ``w <- w + scale * g`` in place; declines nothing
    (returns no positions).

    ``scales`` is an fp32 tensor with one entry per tensor, on the tensors' device. With
    ``adaptive`` (ASAM) the step is ``w <- w + scale * w^2 * g``. The update is computed in
    fp32 and rounded once to ``w``'s dtype.
    """
    for i, (w, g, backup) in enumerate(zip(params, grads, backups, strict=True)):
        backup.copy_(w)
        w32 = w.float()
        e = scales[i] * g.float()
        if adaptive:
            e = e * w32 * w32
        w.copy_(w32 + e)
    return ()


@torch.no_grad()
def restore_(params: Sequence[torch.Tensor], backups: Sequence[torch.Tensor]) -> tuple[()]:
    """Copy each backup back into its parameter, bit for bit; declines nothing (returns no
    positions)."""
    for w, backup in zip(params, backups, strict=True):
        w.copy_(backup)
    return ()
