"""Gradient accumulation: micro-batches in both passes give the large-batch step."""

import pytest
import torch
from builders import loss_of, make_batches, make_model

from slsam_kernels import RST, SAM, SLSAM

MICRO = 4  # micro-batches of 4 samples out of each batch of 16

OPTIMIZERS = [
    pytest.param(lambda ps: SAM(ps, torch.optim.AdamW, lr=1e-2), id="SAM"),
    pytest.param(lambda ps: SLSAM(ps, torch.optim.AdamW, lr=1e-2, seed=0), id="SLSAM"),
    pytest.param(lambda ps: RST(ps, torch.optim.AdamW, lr=1e-2, seed=0), id="RST"),
]


def accumulate(model, batch):
    """Backward over the micro-batches, each loss divided by their count (mean reduction)."""
    x, y = batch
    for xs, ys in zip(x.chunk(MICRO), y.chunk(MICRO)):
        (loss_of(model, (xs, ys)) / MICRO).backward()


@pytest.mark.parametrize("build", OPTIMIZERS)
def test_accumulated_steps_equal_large_batch_steps(build):
    batches = make_batches(4)
    big_model, micro_model = make_model(), make_model()
    big_opt, micro_opt = build(big_model.parameters()), build(micro_model.parameters())
    start = [p.detach().clone() for p in big_model.parameters()]
    for batch in batches:
        loss_of(big_model, batch).backward()
        big_opt.step(lambda batch=batch: loss_of(big_model, batch).backward())
        big_opt.zero_grad()
        accumulate(micro_model, batch)
        micro_opt.step(lambda batch=batch: accumulate(micro_model, batch))
        micro_opt.zero_grad()
    for a, b in zip(big_model.parameters(), micro_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(a, s) for a, s in zip(big_model.parameters(), start))


def test_manual_recipe_equals_the_large_batch_step():
    batch = make_batches(1)[0]
    big_model, micro_model = make_model(), make_model()
    big_opt = SAM(big_model.parameters(), torch.optim.SGD, lr=0.5)
    micro_opt = SAM(micro_model.parameters(), torch.optim.SGD, lr=0.5)
    loss_of(big_model, batch).backward()
    big_opt.first_step(zero_grad=True)
    loss_of(big_model, batch).backward()
    big_opt.second_step(zero_grad=True)
    accumulate(micro_model, batch)
    micro_opt.first_step(zero_grad=True)
    accumulate(micro_model, batch)
    micro_opt.second_step(zero_grad=True)
    for a, b in zip(big_model.parameters(), micro_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
