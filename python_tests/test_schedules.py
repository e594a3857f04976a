"""The named schedules: their formulas at the ends, in the middle and past the end, their
checks, and RST's sam_prob taking one."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from builders import make_batches, make_model, train

from slsam_kernels import RST, schedules


def test_constant():
    assert [schedules.constant(0.3)(t) for t in (0, 7, 10**6)] == [0.3, 0.3, 0.3]
    assert schedules.constant()(5) == 1.0


def test_linear_from_start_to_end_then_flat():
    s = schedules.linear(10, start=1.0, end=0.2)
    assert s(0) == 1.0
    assert s(5) == pytest.approx(0.6)
    assert s(10) == pytest.approx(0.2) and s(25) == pytest.approx(0.2)
    assert schedules.linear(4)(1) == pytest.approx(0.75)  # BAR's 1 - t/T


def test_cosine_from_start_to_end_then_flat():
    s = schedules.cosine(8)
    assert s(0) == 1.0
    assert s(2) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    assert s(4) == pytest.approx(0.5)
    assert s(8) == pytest.approx(0.0, abs=1e-15) and s(9) == s(8)
    assert schedules.cosine(8, start=0.2, end=0.8)(4) == pytest.approx(0.5)


def test_piecewise_switches_at_each_boundary():
    s = schedules.piecewise([3, 6], [0.1, 0.5, 0.9])
    assert [s(t) for t in range(8)] == [0.1, 0.1, 0.1, 0.5, 0.5, 0.5, 0.9, 0.9]


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: schedules.linear(0), ValueError, "total_steps must be > 0"),
        (lambda: schedules.cosine(2.5), TypeError, "total_steps must be an int"),
        (lambda: schedules.linear(5, start=float("nan")), ValueError, "start must be finite"),
        (lambda: schedules.constant("1"), TypeError, "value must be a float"),
        (lambda: schedules.piecewise([3], [0.1]), ValueError, "one more value"),
        (lambda: schedules.piecewise([5, 3], [0.1, 0.2, 0.3]), ValueError, "must increase"),
        (lambda: schedules.piecewise([1.5], [0.1, 0.2]), TypeError, "ints"),
        (lambda: schedules.named("step", 5), ValueError, "unknown schedule"),
        (lambda: schedules.named("cosine", None), ValueError, "pass total_steps"),
    ],
)
def test_bad_schedules_are_refused(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_schedules_pickle_and_print_their_parameters():
    s = schedules.cosine(100, start=0.9, end=0.1)
    assert pickle.loads(pickle.dumps(s)) == s
    assert repr(s) == "cosine(total_steps=100, start=0.9, end=0.1)"


def test_rst_takes_a_schedule_as_its_sam_probability():
    """A piecewise 0-then-1 schedule: plain steps first, SAM steps after the boundary."""
    model = make_model()
    opt = RST(
        model.parameters(), torch.optim.SGD, sam_prob=schedules.piecewise([2], [0.0, 1.0]), lr=0.1
    )
    kinds = []
    for batch in make_batches(4):
        train(model, opt, [batch])
        kinds.append(opt.last_step_was_sam)
    assert kinds == [False, False, True, True]
