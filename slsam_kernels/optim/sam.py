"""SAM and ASAM (Foret et al. 2021; Kwon et al. 2021)."""

from __future__ import annotations

from typing import Any

import torch

from .sharpness_aware import SharpnessAwareOptimizer


class SAM(SharpnessAwareOptimizer):
    """Sharpness-aware minimization around any ``torch.optim`` base optimizer.

    Drop-in for the davda54/sam interface::

        opt = SAM(model.parameters(), torch.optim.AdamW, rho=0.05, lr=1e-3)
        loss_fn(model(x), y).backward()
        opt.step(lambda: loss_fn(model(x), y).backward())   # or first_step / second_step
        opt.zero_grad()

    Args:
        params: tensors or param groups (a group may set its own ``rho`` and ``adaptive``).
        base_optimizer: the optimizer class that takes the descent step, e.g.
            ``torch.optim.AdamW``; it shares this optimizer's param groups, so LR schedulers
            can be attached to the wrapper.
        rho: the ascent radius.
        adaptive: ASAM: scale the ascent element-wise by ``w^2``.
        backend: ``"auto"`` or a backend name (see ``python -m slsam_kernels info``).
        max_grad_norm: clip the descent gradient (the second pass's) to this total L2 norm,
            as ``torch.nn.utils.clip_grad_norm_`` would; None does not clip. The ascent needs
            no clipping: it is normalised.
        ascent: under DistributedDataParallel, ``"global"`` (both passes' gradients averaged
            over the ranks, as one process with the whole batch) or ``"per_rank"``
            (m-sharpness: each rank ascends along its own gradient; run the first backward in
            :meth:`first_pass`). See README, "Distributed".
        **base_kwargs: passed to ``base_optimizer``.
    """

    _checkpoint_kind = "SAM"

    def __init__(
        self,
        params: Any,
        base_optimizer: type[torch.optim.Optimizer],
        rho: float = 0.05,
        adaptive: bool = False,
        backend: str = "auto",
        max_grad_norm: float | None = None,
        ascent: str = "global",
        **base_kwargs: Any,
    ) -> None:
        super().__init__(
            params,
            base_optimizer,
            rho=rho,
            adaptive=adaptive,
            backend=backend,
            max_grad_norm=max_grad_norm,
            ascent=ascent,
            **base_kwargs,
        )
