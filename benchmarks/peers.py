"""The peers as their users run them, written here from their published behaviour (never
copied): a davda54/sam-style SAM (per-tensor loop: clone, add, rebind ``p.data``) and the
SL-SAM paper authors'-style step (per-tensor loop, a clone of every tensor, the bandit in
numpy on the host), following docs/algorithms.md. ``pytorch-optimizer``'s SAM is used
as installed (:func:`pytorch_optimizer_sam`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

PROB_FLOOR = 1e-8
SUFFIX_SUM_FLOOR = 1e-5


def pytorch_optimizer_sam() -> type[torch.optim.Optimizer] | None:
    """``pytorch_optimizer.SAM``, or None when the package is not installed."""
    try:
        from pytorch_optimizer import SAM
    except ImportError:
        return None
    return SAM


class LoopSAM(torch.optim.Optimizer):
    """SAM the way davda54/sam computes it: one norm per tensor, stacked; ``old_p`` cloned per
    tensor; restored by rebinding ``p.data``."""

    def __init__(self, params: Any, base_optimizer: type, rho: float = 0.05, **kwargs: Any):
        super().__init__(params, dict(rho=rho, **kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups

    def _with_grad(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"] if p.grad is not None]

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        with_grad = self._with_grad()
        grad_norm = torch.norm(torch.stack([p.grad.norm(p=2) for p in with_grad]), p=2)
        for group in self.param_groups:
            scale = group["rho"] / (grad_norm + 1e-12)
            for p in group["params"]:
                if p.grad is None:
                    continue
                self.state[p]["old_p"] = p.data.clone()
                p.add_(p.grad * scale.to(p))
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        for p in self._with_grad():
            p.data = self.state[p]["old_p"]
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()


def numpy_bandit_update(
    probs: np.ndarray,
    active_idx: np.ndarray,
    norms: np.ndarray,
    budget: float,
    lr: float = 1e-3,
    p_min: float = 1e-3,
) -> np.ndarray:
    """The paper's bandit update (docs/algorithms.md) in float64 numpy: EXP3 weights, capped
    projection, clip."""
    p = probs.astype(np.float64)
    n = norms.astype(np.float64)
    p_active = p[active_idx]
    reward = -((n / p_active) ** 2) + (n.max() / p_min) ** 2
    loss = reward - reward.min()
    v = p.copy()
    v[active_idx] = p_active * np.exp(-lr * loss / p_active)
    order = np.argsort(-v, kind="stable")
    v_sorted = v[order]
    suffix = np.cumsum(v_sorted[::-1])[::-1]
    out = v.copy()
    remaining = float(budget)
    for j in range(len(v_sorted)):
        s = max(float(suffix[j]), SUFFIX_SUM_FLOOR)
        if v_sorted[j] * remaining <= s:
            out[order[j:]] = v_sorted[j:] * remaining / s
            break
        out[order[j]] = 1.0
        remaining -= 1.0
    return np.clip(out, PROB_FLOOR, 1.0)


def numpy_sample(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Arm i is active iff ``u_i <= p_i``; draw again while none is."""
    while True:
        mask = rng.random(len(probs)) <= probs
        if mask.any():
            return mask


class AuthorsSLSAM(torch.optim.Optimizer):
    """The SL-SAM step as the paper's code organises it: per-tensor loops, a clone of every
    tensor in the ascent (active or not), probabilities in numpy on the host, one
    device-to-host copy of the norms per step. ``mask`` imposes the first active set."""

    def __init__(
        self,
        params: Any,
        base_optimizer: type,
        rho: float = 0.05,
        sample_ratio: float = 0.5,
        bandit_lr: float = 1e-3,
        p_min: float = 1e-3,
        seed: int = 0,
        mask: np.ndarray | None = None,
        **kwargs: Any,
    ):
        super().__init__(params, dict(rho=rho, **kwargs))
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.arms = [p for g in self.param_groups for p in g["params"] if p.requires_grad]
        self.probs = np.full(len(self.arms), sample_ratio, dtype=np.float64)
        self.budget = sample_ratio * len(self.arms)
        self.bandit_lr, self.p_min = bandit_lr, p_min
        self.rng = np.random.default_rng(seed)
        self._norms = np.zeros(0)
        self._apply(numpy_sample(self.probs, self.rng) if mask is None else mask)

    def _apply(self, mask: np.ndarray) -> None:
        self.mask = np.asarray(mask, dtype=bool)
        for p, on in zip(self.arms, self.mask.tolist()):
            p.requires_grad_(on)
            if not on:
                p.grad = None

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        active = [p for p, on in zip(self.arms, self.mask.tolist()) if on]
        # fp32 accumulation, as docs/algorithms.md states the norms, in any parameter dtype
        norms = torch.stack([torch.linalg.vector_norm(p.grad, dtype=torch.float32) for p in active])
        self._norms = norms.cpu().numpy()
        grad_norm = torch.norm(norms, p=2)
        for group in self.param_groups:
            scale = group["rho"] / (grad_norm + 1e-12)
            for p in group["params"]:
                self.state[p]["old_p"] = p.data.clone()
                if p.grad is not None and p.requires_grad:
                    p.add_(p.grad * scale.to(p))
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.data = self.state[p]["old_p"]
        self.base_optimizer.step()
        active_idx = np.flatnonzero(self.mask)
        self.probs = numpy_bandit_update(
            self.probs, active_idx, self._norms, self.budget, self.bandit_lr, self.p_min
        )
        self._apply(numpy_sample(self.probs, self.rng))
        if zero_grad:
            self.zero_grad()
