"""Error bounds from a float64 oracle, for comparisons of a fast path with torch's own.

A fixed atol/rtol is either loose enough to hide a wrong rounding or tight enough to flake on
one unlucky element. Instead, both results are measured against the same computation in
float64 (flash-attention bounds its kernels this way): the fast path's largest error may be at
most twice torch's own largest error, plus one epsilon of the dtype. Errors are taken relative
to ``max(|truth|, 1)`` per element, so large and small entries weigh alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def relative_error(result: torch.Tensor, truth: torch.Tensor) -> float:
    """The largest ``|result - truth| / max(|truth|, 1)`` over the elements, in float64."""
    truth = truth.detach().to("cpu", torch.float64)
    scale = truth.abs().clamp_min(1.0)
    return float(((result.detach().to("cpu", torch.float64) - truth) / scale).abs().max())


def assert_error_bounded_by_torchs(
    ours: torch.Tensor, theirs: torch.Tensor, truth: torch.Tensor, what: str
) -> None:
    """``ours``' error against ``truth`` is at most 2x ``theirs``' plus one epsilon of
    ``ours``' dtype. 0-dim tensors (step counters) must be equal."""
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape == truth.shape, what
    if truth.dim() == 0:
        assert torch.equal(ours.cpu(), theirs.cpu()), what
        return
    if truth.numel() == 0:
        return
    ours_err, torch_err = relative_error(ours, truth), relative_error(theirs, truth)
    bound = 2 * torch_err + torch.finfo(ours.dtype).eps
    assert ours_err <= bound, f"{what}: error {ours_err:.3g} > 2 x torch's {torch_err:.3g} + eps"


def assert_states_bounded_by_torchs(
    ours: torch.optim.Optimizer,
    theirs: torch.optim.Optimizer,
    truth: torch.optim.Optimizer,
) -> None:
    """Every state tensor of ``ours`` against ``theirs`` and the float64 ``truth`` (the three
    optimizers hold their params in the same order); the param groups must be equal."""
    ours_sd, theirs_sd, truth_sd = ours.state_dict(), theirs.state_dict(), truth.state_dict()
    assert ours_sd["param_groups"] == theirs_sd["param_groups"]
    assert ours_sd["state"].keys() == theirs_sd["state"].keys() == truth_sd["state"].keys()
    for index, expected in theirs_sd["state"].items():
        actual = ours_sd["state"][index]
        assert actual.keys() == expected.keys(), f"state of param {index}"
        for key, value in expected.items():
            where = f"state[{index}][{key!r}]"
            assert (actual[key].dtype, actual[key].device) == (value.dtype, value.device), where
            assert_error_bounded_by_torchs(actual[key], value, truth_sd["state"][index][key], where)


def float64_oracle(
    make_optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    start: Sequence[torch.Tensor],
    grads_per_step: Sequence[Sequence[torch.Tensor]],
) -> tuple[list[torch.Tensor], torch.optim.Optimizer]:
    """torch's own optimizer stepped in float64 from ``start`` with the recorded gradients
    (each cast up exactly from the dtype the fast path saw)."""
    params = [w.detach().to(torch.float64).clone() for w in start]
    optimizer = make_optimizer(params)
    for grads in grads_per_step:
        for w, g in zip(params, grads, strict=True):
            w.grad = None if g is None else g.detach().to(torch.float64).clone()
        optimizer.step()
    return params, optimizer
