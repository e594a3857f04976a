"""The SL-SAM bandit: EXP3-style probability update with capped projection, and sampling.

Computed on the host in float64, step by step as ``shared/ALGORITHM.md`` (step 5) states it.
"""

from __future__ import annotations

import torch

PROB_FLOOR = 1e-8
SUFFIX_SUM_FLOOR = 1e-5


def bandit_update(
    probs: torch.Tensor,
    active_norms: torch.Tensor,
    active_idx: torch.Tensor,
    budget: float,
    lr: float = 1e-3,
    p_min: float = 1e-3,
) -> torch.Tensor:
    """Return the updated keep-probabilities (fp32, same device as ``probs``).

    Args:
        probs: current probabilities, one per arm.
        active_norms: first-pass gradient norms ``n_i`` of the active arms, in ``active_idx``
            order.
        active_idx: indices of the active arms (int64).
        budget: ``B = sample_ratio * N``, the sum the projection restores.
        lr: the bandit learning rate ``alpha``.
        p_min: the probability floor in the reward's constant term.
    """
    p = probs.detach().to("cpu", torch.float64)
    idx = active_idx.detach().to("cpu", torch.int64)
    n = active_norms.detach().to("cpu", torch.float64)
    p_active = p[idx]
    largest = n.max()
    reward = -((n / p_active) ** 2) + (largest / p_min) ** 2
    loss = reward - reward.min()
    v = p.clone()
    v[idx] = p_active * torch.exp(-lr * loss / p_active)
    return capped_projection(v, budget).clamp_(PROB_FLOOR, 1.0).to(probs.device, torch.float32)


def capped_projection(v: torch.Tensor, budget: float) -> torch.Tensor:
    """Project ``v`` onto ``sum = budget`` with every entry capped at 1 (Exp3.M style).

    Arms are visited in descending order of ``v``; an arm whose share ``v * b / S`` would exceed
    1 is set to 1 and leaves the remaining budget ``b`` one smaller; the rest are scaled by
    ``b / S``, where ``S`` is the sum of the values not yet visited.
    """
    order = torch.argsort(v, descending=True, stable=True)
    v_sorted = v[order]
    suffix_sums = v_sorted.flip(0).cumsum(0).flip(0)
    out = v.clone()
    remaining = float(budget)
    for j in range(len(v_sorted)):
        suffix = max(float(suffix_sums[j]), SUFFIX_SUM_FLOOR)
        if float(v_sorted[j]) * remaining <= suffix:
            out[order[j:]] = v_sorted[j:] * remaining / suffix
            break
        out[order[j]] = 1.0
        remaining -= 1.0
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
