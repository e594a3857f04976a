"""max_grad_norm clips the descent gradient (the second pass), never the ascent."""

import pytest
import torch
from builders import loss_of, make_batches, make_model

from slsam_kernels import RST, SAM, SLSAM

MAX_NORM = 0.05  # the first batches' gradient norms are ~0.5: clipping must bite


def build(optimizer, model, **kwargs):
    extra = {"seed": 0} if optimizer is not SAM else {}
    return optimizer(model.parameters(), torch.optim.SGD, lr=0.5, **extra, **kwargs)


def total_norm(model):
    return torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None]).norm()


@pytest.mark.parametrize("optimizer", [SAM, SLSAM], ids=["SAM", "SLSAM"])
def test_clips_the_second_pass_like_clip_grad_norm_and_not_the_first(optimizer):
    batch = make_batches(1)[0]
    clipped_model, manual_model = make_model(), make_model()
    clipped = build(optimizer, clipped_model, max_grad_norm=MAX_NORM)
    manual = build(optimizer, manual_model)
    for model, opt in ((clipped_model, clipped), (manual_model, manual)):
        loss_of(model, batch).backward()
        assert total_norm(model) > 5 * MAX_NORM
        opt.first_step(zero_grad=True)
    # The ascent used the unclipped gradient: both perturbed the same way.
    for a, b in zip(clipped_model.parameters(), manual_model.parameters()):
        assert torch.equal(a, b)
    for model in (clipped_model, manual_model):
        loss_of(model, batch).backward()
    torch.nn.utils.clip_grad_norm_(manual_model.parameters(), MAX_NORM)
    clipped.second_step()
    manual.second_step()
    if optimizer is SAM:  # SL-SAM's next draw drops the grads of arms turned off
        assert total_norm(clipped_model) == pytest.approx(MAX_NORM, rel=1e-5)
    for a, b in zip(clipped_model.parameters(), manual_model.parameters()):
        torch.testing.assert_close(a, b)


def test_small_gradients_are_left_alone():
    batch = make_batches(1)[0]
    models = make_model(), make_model()
    opts = build(SAM, models[0], max_grad_norm=1e3), build(SAM, models[1])
    for model, opt in zip(models, opts):
        loss_of(model, batch).backward()
        opt.step(lambda model=model: loss_of(model, batch).backward())
    for a, b in zip(*(m.parameters() for m in models)):
        assert torch.equal(a, b)


def test_rst_plain_step_is_clipped_too():
    model, reference = make_model(), make_model()
    opt = build(RST, model, sam_prob=0.0, max_grad_norm=MAX_NORM)
    base = torch.optim.SGD(reference.parameters(), lr=0.5)
    batch = make_batches(1)[0]
    loss_of(model, batch).backward()
    opt.step(lambda: pytest.fail("a plain step runs no closure"))
    loss_of(reference, batch).backward()
    torch.nn.utils.clip_grad_norm_(reference.parameters(), MAX_NORM)
    base.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("optimizer", [SAM, SLSAM, RST], ids=["SAM", "SLSAM", "RST"])
@pytest.mark.parametrize(
    "value, error, words",
    [
        pytest.param(0.0, ValueError, "pass None to turn clipping off", id="zero"),
        pytest.param(-1.0, ValueError, "max_grad_norm must be finite and >= 0", id="negative"),
        pytest.param(float("nan"), ValueError, "max_grad_norm must be finite", id="nan"),
        pytest.param("1", TypeError, "max_grad_norm must be a float", id="str"),
    ],
)
def test_bad_max_grad_norm(optimizer, value, error, words):
    model = make_model()
    with pytest.raises(error, match=words):
        build(optimizer, model, max_grad_norm=value)
    assert all(p.requires_grad for p in model.parameters())
