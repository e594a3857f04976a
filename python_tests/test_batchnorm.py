"""frozen_bn_stats: BatchNorm running statistics come from the first pass only."""

import pytest
import torch

from slsam_kernels import SAM
from slsam_kernels.utils import frozen_bn_stats


def bn_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(5, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
    )


def stats(model):
    bn = model[1]
    return [t.clone() for t in (bn.running_mean, bn.running_var, bn.num_batches_tracked)]


def test_running_stats_change_in_the_first_pass_only():
    model = bn_model()
    opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    loss_fn = torch.nn.functional.cross_entropy
    before = stats(model)
    loss_fn(model(x), y).backward()
    after_first = stats(model)
    assert all(not torch.equal(a, b) for a, b in zip(before, after_first))

    seen = {}

    def closure():
        with frozen_bn_stats(model):
            out = model(x)
            seen["frozen"] = out.detach()
            loss_fn(out, y).backward()

    opt.step(closure)
    assert all(torch.equal(a, b) for a, b in zip(after_first, stats(model)))
    assert model[1].track_running_stats
    # Inside the block the layer normalised with the batch statistics, as in training.
    bn = model[1]
    h = model[0](x)
    manual = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + bn.eps)
    with torch.no_grad(), frozen_bn_stats(model):
        torch.testing.assert_close(bn(h), manual * bn.weight + bn.bias)


def test_flags_are_restored_after_an_error_and_untracked_layers_stay_untracked():
    model = torch.nn.Sequential(
        torch.nn.BatchNorm1d(4), torch.nn.BatchNorm2d(4, track_running_stats=False)
    )
    with pytest.raises(RuntimeError, match="boom"), frozen_bn_stats(model):
        assert not model[0].track_running_stats
        raise RuntimeError("boom")
    assert model[0].track_running_stats and not model[1].track_running_stats


def test_rejects_a_non_module():
    with pytest.raises(TypeError, match=r"takes an nn\.Module"), frozen_bn_stats([1, 2]):
        pass
