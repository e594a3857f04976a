"""The SL-SAM bandit: EXP3-style probability update with capped projection, and sampling.

Computed on the host in float64, step by step. Two update rules (``rule=``):

``"paper"``, the paper's: over the active arms ``A``, with ``q_i = (n_i / p_i)^2`` (the
importance-weighted squared gradient norm), the loss ``l_i = max_A q - q_i`` and
``v_i = p_i exp(-lr l_i / p_i)``; inactive arms keep ``v_i = p_i``; then the capped projection
onto ``sum = B`` and the clip to ``[PROB_FLOOR, 1]``. Its loss carries the units of the
squared gradients, so how fast the probabilities move depends on the scale of the loss: with
large gradients they reach the floor or 1 within a few steps, with small ones they never move.

``"robust"``, scale free: the same statistic, with the loss divided by its own scale,
``l_i = 1 - q_i / max_A q`` (0 for every arm when ``max_A q = 0``), which lies in ``[0, 1]``
and does not change when every gradient is multiplied by a constant; the same EXP3 update
(``lr`` is now EXP3's dimensionless ``eta``) and capped projection; then the exploration
mixture ``p = (1 - gamma) proj + gamma s`` (``s = B / N``, ``gamma = exploration``), which
keeps the sum at ``B`` and every ``p_i >= gamma s``, so no arm is starved (EXP3's ``gamma``,
as in Exp3.M, Uchiya et al. 2010); then the same clip.

Why ``max_A q`` and not the range ``max_A q - min_A q`` as the divisor: both make the loss
scale free and bounded, but the range amplifies differences that are only rounding (two arms
whose ``q`` differ in the last bit get losses 0 and 1, and fp32 and float64 disagree there),
and it jumps when ``q`` become equal; dividing by the maximum is continuous, keeps nearly
equal arms nearly equal, and is the paper's loss itself under a per-step learning rate
``lr / max_A q``. Scale-free bandits with an adaptive, cumulative step size (Putta & Agrawal,
ALT 2022, log-barrier FTRL; AdaHedge) have regret guarantees this per-step normaliser lacks,
but need state across steps and a normalisation solve, where this stays one small kernel.
"""

from __future__ import annotations

import torch

PROB_FLOOR = 1e-8
SUFFIX_SUM_FLOOR = 1e-5
PAPER, ROBUST = "paper", "robust"
RULES = (PAPER, ROBUST)
#: Each rule's learning rate when none is given: the paper's ``alpha``, and EXP3's ``eta``.
DEFAULT_LR = {PAPER: 1e-3, ROBUST: 0.05}
#: The robust rule's ``gamma`` when none is given.
DEFAULT_EXPLORATION = 0.1


def bandit_update(
    probs: torch.Tensor,
    active_norms: torch.Tensor,
    active_idx: torch.Tensor,
    budget: float,
    lr: float = DEFAULT_LR[PAPER],
    p_min: float = 1e-3,
    *,
    rule: str = PAPER,
    exploration: float = 0.0,
) -> torch.Tensor:
    """Return the updated keep-probabilities (fp32, same device as ``probs``).

    Args:
        probs: current probabilities, one per arm.
        active_norms: first-pass gradient norms ``n_i`` of the active arms, in ``active_idx``
            order.
        active_idx: indices of the active arms (int64).
        budget: ``B = sample_ratio * N``, the sum the projection restores.
        lr: the bandit learning rate (``alpha`` for ``"paper"``, ``eta`` for ``"robust"``).
        p_min: the probability floor in the paper's reward constant (it cancels out).
        rule: ``"paper"`` or ``"robust"`` (see the module docstring); callers validate it.
        exploration: the robust rule's ``gamma`` in ``[0, 1]``; 0 leaves the projection as
            it is, which the paper rule gets.
    """
    updated = bandit_update_float64(
        probs, active_norms, active_idx, budget, lr, rule=rule, exploration=exploration, p_min=p_min
    )
    return updated.to(probs.device, torch.float32)


def bandit_update_float64(
    probs: torch.Tensor,
    active_norms: torch.Tensor,
    active_idx: torch.Tensor,
    budget: float,
    lr: float = DEFAULT_LR[PAPER],
    p_min: float = 1e-3,
    *,
    rule: str = PAPER,
    exploration: float = 0.0,
) -> torch.Tensor:
    """:func:`bandit_update` before its final rounding: float64, on the CPU (the oracle the
    fp32 kernels are measured against)."""
    p = probs.detach().to("cpu", torch.float64)
    idx = active_idx.detach().to("cpu", torch.int64)
    n = active_norms.detach().to("cpu", torch.float64)
    p_active = p[idx]
    if rule == ROBUST:
        q = (n / p_active) ** 2
        top = q.max()
        loss = 1 - q / top if top > 0 else torch.zeros_like(q)
    else:
        largest = n.max()
        reward = -((n / p_active) ** 2) + (largest / p_min) ** 2
        loss = reward - reward.min()
    v = p.clone()
    v[idx] = p_active * torch.exp(-lr * loss / p_active)
    projected = capped_projection(v, budget)
    mixed = (1 - exploration) * projected + exploration * (budget / p.numel())
    return mixed.clamp_(PROB_FLOOR, 1.0)


def capped_projection(v: torch.Tensor, budget: float) -> torch.Tensor:
    """Project ``v`` onto ``sum = budget`` with every entry capped at 1 (Exp3.M style).

    Arms are visited in descending order of ``v``; an arm whose share ``v * b / S`` would exceed
    1 is set to 1 and leaves the remaining budget ``b`` one smaller; the rest are scaled by
    ``b / S``, where ``S`` is the sum of the values not yet visited.

    Computed for every position at once: at position ``j`` the remaining budget is
    ``budget - j`` (exactly what ``j`` subtractions of 1 leave, since each is exact), so the
    first position whose share fits is found without a loop over the arms.
    """
    order = torch.argsort(v, descending=True, stable=True)
    v_sorted = v[order]
    suffix = v_sorted.flip(0).cumsum(0).flip(0).clamp_min(SUFFIX_SUM_FLOOR)
    remaining = float(budget) - torch.arange(len(v), dtype=v.dtype)
    fits = v_sorted * remaining <= suffix
    first = int(fits.to(torch.uint8).argmax()) if bool(fits.any()) else len(v)
    out = v.clone()
    out[order[:first]] = 1.0
    if first < len(v):
        out[order[first:]] = v_sorted[first:] * float(remaining[first]) / float(suffix[first])
    return out


def sample_active(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Draw ``u_i ~ U[0, 1)`` on the generator's device; arm i is active iff ``u_i <= p_i``.

    Draws again while no arm is active. Returns a bool mask on the CPU.
    """
    p = probs.detach().to(generator.device, torch.float32)
    while True:
        mask = torch.rand(p.shape, generator=generator, device=generator.device) <= p
        if bool(mask.any()):
            return mask.cpu()
