"""Per-tensor squared L2 norms, accumulated in fp32."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def grad_sqnorms(
    grads: Sequence[torch.Tensor], weights: Sequence[torch.Tensor] | None = None
) -> torch.Tensor:
    """Return ``[||g_i||^2]`` (or ``[||w_i * g_i||^2]`` when ``weights`` is given) as fp32.

    The result lives on the tensors' device; an empty list gives an empty tensor on the CPU.
    """
    if not grads:
        return torch.zeros(0, dtype=torch.float32)
    out = torch.empty(len(grads), dtype=torch.float32, device=grads[0].device)
    for i, g in enumerate(grads):
        x = g.float()
        if weights is not None:
            x = x * weights[i].float()
        out[i] = (x * x).sum()
    return out
