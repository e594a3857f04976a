"""The SL-SAM bandit on the device: the EXP3-style update (either rule of
:mod:`slsam_kernels.backends.reference.bandit`) with the capped projection and the exploration
mixture in one single-program launch, and the draw of the next active set in another; only the
mask reaches the host."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..reference.bandit import DEFAULT_LR, PAPER, PROB_FLOOR, ROBUST, SUFFIX_SUM_FLOOR
from . import _tables

# One program holds every arm in registers; past this the update is declined (the host
# reference runs it).
MAX_ARMS = 16384
_SAMPLE_BLOCK = 1024
# at least one element per thread of 4 warps, so tiny arm counts get an ordinary layout
_MIN_BANDIT_BLOCK = 128
# 512 arms per warp, up to a whole block of 1024 threads (16 warps of 64 on ROCm): at 16384
# arms 32 warps spill 268 bytes where 16 spilled 512, from 39% less PTX (ptxas -v for sm_90a)
_MAX_WARPS = 16 if torch.version.hip else 32


@triton.jit
def _exp(x):
    """``exp`` of fp32 ``x`` rounded to fp32 from double: on a GPU ``tl.exp`` of fp32 is
    ``ex2.approx`` of ``x * log2(e)`` (the product's rounding alone costs ``|x|`` ulps), the
    double exp is libdevice's, within an ulp of double; the interpreter's is numpy's, so
    both round the same value."""
    return tl.exp(x.to(tl.float64)).to(tl.float32)


# the active count changes every step: no == 1 / % 16 specialisations of the counts
@triton.jit(do_not_specialize=["num_arms", "num_active"])
def _bandit_kernel(
    probs,
    active_idx,
    active_norms,
    out,
    num_arms,
    num_active,
    budget,
    lr,
    exploration,
    SCALE_FREE: tl.constexpr,
    PROB_FLOOR: tl.constexpr,
    SUM_FLOOR: tl.constexpr,
    BLOCK: tl.constexpr,
):
    arm = tl.arange(0, BLOCK)
    in_range = arm < num_arms
    # v_i = p_i for the inactive arms
    tl.store(out + arm, tl.load(probs + arm, mask=in_range), mask=in_range)
    tl.debug_barrier()
    is_active = arm < num_active
    idx = tl.load(active_idx + arm, mask=is_active, other=0)
    p = tl.load(probs + idx, mask=is_active, other=1.0)
    ratio = tl.div_rn(tl.load(active_norms + arm, mask=is_active, other=0.0), p)
    if SCALE_FREE:
        # l_i = 1 - q_i / max q on the ratios themselves: q = ratio^2 could overflow fp32
        top = tl.max(ratio, axis=0)
        relative = tl.div_rn(ratio, tl.where(top > 0, top, 1.0))
        loss = tl.where(top > 0, 1.0 - relative * relative, 0.0)
    else:
        # l_i = max_j (n_j/p_j)^2 - (n_i/p_i)^2: the (L/p_min)^2 terms of r_i - min_j r_j
        # cancel exactly, and keeping them (up to 1e6 times larger) would cost all fp32
        # digits of l_i
        ratio_sq = ratio * ratio
        loss = tl.max(ratio_sq, axis=0) - ratio_sq
    tl.store(out + idx, p * _exp(tl.div_rn(-lr * loss, p)), mask=is_active)
    tl.debug_barrier()
    v = tl.load(out + arm, mask=in_range, other=float("inf"))
    # Capped projection, visiting arms in ascending order k (descending position
    # j = num_arms - 1 - k): S_j is the prefix sum up to k and b = budget - j. The last k
    # where v * b <= max(S, floor) is where the reference stops; arms above it are capped at 1.
    # Equal values never straddle that point (v * b <= S is then the same test for both).
    ascending = tl.sort(v)
    prefix = tl.cumsum(tl.where(in_range, ascending, 0.0), axis=0)
    suffix = tl.maximum(prefix, SUM_FLOOR)
    remaining = budget - (num_arms - 1 - arm).to(tl.float32)
    stops = in_range & (ascending * remaining <= suffix)
    stop = tl.max(tl.where(stops, arm, -1), axis=0)
    at_stop = arm == stop
    threshold = tl.sum(tl.where(at_stop, ascending, 0.0), axis=0)
    ratio_at_stop = tl.sum(tl.where(at_stop, tl.div_rn(remaining, suffix), 0.0), axis=0)
    capped = (stop < 0) | (v > threshold)
    new_p = tl.where(capped, 1.0, v * ratio_at_stop)
    new_p = (1.0 - exploration) * new_p + exploration * tl.div_rn(budget, num_arms.to(tl.float32))
    new_p = tl.minimum(tl.maximum(new_p, PROB_FLOOR), 1.0)
    tl.store(out + arm, new_p, mask=in_range)


# a fresh seed each draw: specialising on it (== 1, % 16) would compile up to three variants
@triton.jit(do_not_specialize=["seed"])
def _sample_kernel(probs, mask_out, num_arms, seed, BLOCK: tl.constexpr):
    arm = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    in_range = arm < num_arms
    u = tl.rand(seed, arm)
    p = tl.load(probs + arm, mask=in_range, other=0.0)
    tl.store(mask_out + arm, (u <= p).to(tl.int8), mask=in_range)


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
) -> torch.Tensor | None:
    """The updated keep-probabilities (fp32, on ``probs``' device), as
    :func:`slsam_kernels.backends.reference.bandit_update` computes them, in fp32 on the device.
    ``p_min`` cancels out of the update (see the kernel). Above ``MAX_ARMS`` arms: None
    (declined, nothing launched)."""
    if probs.numel() > MAX_ARMS:
        return None
    device = probs.device
    probs = probs.to(torch.float32).contiguous()
    idx = active_idx.to(device, torch.int64).contiguous()
    norms = active_norms.to(device, torch.float32).contiguous()
    out = torch.empty_like(probs)
    block = max(_MIN_BANDIT_BLOCK, triton.next_power_of_2(probs.numel()))
    with _tables.device_guard(probs):
        _bandit_kernel[(1,)](
            probs,
            idx,
            norms,
            out,
            probs.numel(),
            idx.numel(),
            float(budget),
            float(lr),
            float(exploration),
            SCALE_FREE=rule == ROBUST,
            PROB_FLOOR=PROB_FLOOR,
            SUM_FLOOR=SUFFIX_SUM_FLOOR,
            BLOCK=block,
            num_warps=min(_MAX_WARPS, max(4, block // 512)),
            # IEEE divides (tl.div_rn; "/" is div.full.f32, 2 ulps, on a GPU) and no FMA
            # contraction: the GPU rounds each step as the interpreter does (numpy, exact fp32)
            enable_fp_fusion=False,
        )
    return out


def sample_active(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Draw the active set on ``probs``' device: arm i is active iff ``u_i <= p_i`` with
    ``u = tl.rand(seed, i)``, the seed drawn from the host ``generator`` (so a seeded run
    repeats, and the generator's state is the whole RNG state). Draws again while no arm is
    active. Returns a bool mask on the CPU (the one device -> host copy of a step)."""
    probs = probs.to(torch.float32).contiguous()
    mask = torch.empty(probs.numel(), dtype=torch.int8, device=probs.device)
    grid = (triton.cdiv(probs.numel(), _SAMPLE_BLOCK),)
    while True:
        seed = int(torch.randint(0, 2**31 - 1, (), generator=generator))
        with _tables.device_guard(probs):
            _sample_kernel[grid](probs, mask, probs.numel(), seed, BLOCK=_SAMPLE_BLOCK)
        drawn = mask.cpu().bool()
        if bool(drawn.any()):
            return drawn
