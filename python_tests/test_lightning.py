"""PyTorch Lightning, automatic optimization, with SAM / SL-SAM / RST through the
SharpnessAwareMixin: each run must equal the plain two-pass loop over the large batch
(accumulation, clipping of the descent only, LR schedulers, bf16 and fp16 with a GradScaler),
BatchNorm's running statistics come from the first pass, checkpoints resume bit-identically.
BAR is not in the package yet, so it is not tested here."""

import pytest
import torch

try:
    import lightning.pytorch  # noqa: F401
except ImportError:
    pytest.importorskip(
        "pytorch_lightning", reason="needs Lightning: pip install 'slsam_kernels[lightning]'"
    )

from lightning_testing import (
    MICRO,
    LitNet,
    dataset,
    large_batches,
    loader,
    loss_of,
    make_net,
    pl,
    reference,
    trainer,
)

from slsam_kernels import RST, SAM, SLSAM
from slsam_kernels.integrations.lightning import SharpnessAwareMixin
from slsam_kernels.optim.sharpness_aware import SharpnessAwareOptimizer

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

ACCUMULATION, CLIP = 2, 0.05
SGD = {"lr": 0.1, "momentum": 0.9}
OPTIMIZERS = {
    "SAM": lambda ps: SAM(ps, torch.optim.SGD, **SGD),
    "SLSAM": lambda ps: SLSAM(ps, torch.optim.SGD, sample_ratio=0.5, seed=0, **SGD),
    "RST": lambda ps: RST(ps, torch.optim.SGD, sam_prob=0.5, seed=0, **SGD),
}


def precision_options(precision):
    """On the CPU, Lightning turns ``precision="16-mixed"`` into bf16: its float16 plugin (the
    one ``"16-mixed"`` picks on a GPU, with its GradScaler) is passed as a plugin instead."""
    if precision == "16-mixed":
        return {"plugins": [pl.plugins.precision.MixedPrecision("16-mixed", "cpu")]}
    return {"precision": precision}


def step_lr(opt):
    return torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.8)


def fit_accumulated(build, **kwargs):
    module = LitNet(build, scheduler=step_lr)
    trainer(accumulate_grad_batches=ACCUMULATION, gradient_clip_val=CLIP, **kwargs).fit(
        module, loader(dataset())
    )
    return module


def assert_matches_the_large_batch_loop(build, module):
    expected = reference(
        build, large_batches(dataset(), MICRO * ACCUMULATION), step_lr, max_grad_norm=CLIP
    )
    start = list(make_net().parameters())
    for a, b, s in zip(module.net.parameters(), expected.parameters(), start):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert not torch.equal(a, s)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_accumulated_clipped_scheduled_run_equals_the_large_batch_loop(name):
    build = OPTIMIZERS[name]
    module = fit_accumulated(build)
    assert_matches_the_large_batch_loop(build, module)
    opt = module.trainer.optimizers[0]
    assert opt.max_grad_norm == CLIP
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.8 ** (len(dataset()) // 8))
    if name == "RST":
        assert opt.step_index == 4


def skip_second_pass(opt, closure, scaler=None, unproven_first_pass=False):
    opt.first_step(scaler=scaler)
    opt._restore()  # the descent takes the first pass's gradient
    opt.base_optimizer.step()


@pytest.mark.parametrize("fault", ["second pass skipped", "accumulation ignored"])
def test_the_match_fails_when_a_pass_goes_wrong(monkeypatch, fault):
    if fault == "second pass skipped":
        monkeypatch.setattr(SharpnessAwareOptimizer, "_sam_step", skip_second_pass)
    else:
        original = SharpnessAwareMixin._sam_replay
        monkeypatch.setattr(
            SharpnessAwareMixin,
            "_sam_replay",
            lambda self, window, sam: original(self, window[-1:], sam),
        )
    module = fit_accumulated(OPTIMIZERS["SAM"])
    monkeypatch.undo()
    with pytest.raises(AssertionError):
        assert_matches_the_large_batch_loop(OPTIMIZERS["SAM"], module)


def test_the_first_pass_is_not_clipped_and_the_descent_is(monkeypatch):
    seen = []
    original = SAM.second_step

    def spy(opt, *args, **kwargs):
        first = float(opt._perturbation.grad_sqnorms.sum().sqrt())
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        original(opt, *args, **kwargs)
        seen.append((first, float(torch.stack([g.norm() for g in grads]).norm())))

    monkeypatch.setattr(SAM, "second_step", spy)
    fit_accumulated(OPTIMIZERS["SAM"])
    assert len(seen) == len(dataset()) // (MICRO * ACCUMULATION)
    for first, descent in seen:
        assert first > 4 * CLIP
        assert descent == pytest.approx(CLIP, rel=1e-4)


def amp_reference(build, dtype):
    """The plain loop under autocast, with torch's GradScaler for float16."""
    net = make_net()
    opt = build(net.parameters())
    scaler = torch.amp.GradScaler("cpu") if dtype == torch.float16 else None
    scale = scaler.scale if scaler is not None else (lambda loss: loss)
    for x, y in large_batches(dataset(), MICRO):

        def closure(x=x, y=y):
            with torch.autocast("cpu", dtype=dtype, cache_enabled=False):
                loss = loss_of(net, x, y)
            scale(loss).backward()

        closure()
        opt.step(closure, scaler=scaler)
        if scaler is not None:
            scaler.update()
        opt.zero_grad()
    return net, scaler


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
@pytest.mark.parametrize("name", ["SAM", "SLSAM"])
def test_mixed_precision_equals_the_autocast_loop(name, precision):
    build = OPTIMIZERS[name]
    module = LitNet(build)
    fit = trainer(**precision_options(precision))
    fit.fit(module, loader(dataset()))
    dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
    expected, scaler = amp_reference(build, dtype)
    for a, b in zip(module.net.parameters(), expected.parameters()):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    if scaler is not None:
        assert fit.precision_plugin.scaler is not None
        assert fit.precision_plugin.scaler.get_scale() == scaler.get_scale()


def test_batchnorm_running_statistics_come_from_the_first_pass_only():
    module = LitNet(lambda ps: SAM(ps, torch.optim.SGD, lr=0.0, rho=0.5), batchnorm=True)
    trainer(max_steps=1).fit(module, loader(dataset()))
    bn = module.net[1]
    expected = make_net(batchnorm=True)
    expected(dataset().tensors[0][:MICRO])  # one forward at w, in training mode
    assert int(bn.num_batches_tracked) == 1
    torch.testing.assert_close(bn.running_mean, expected[1].running_mean)
    torch.testing.assert_close(bn.running_var, expected[1].running_var)


@pytest.mark.parametrize("name", ["SLSAM", "RST"])
def test_checkpoint_resume_is_bit_identical(tmp_path, name):
    build = OPTIMIZERS[name]
    options = dict(accumulate_grad_batches=ACCUMULATION, **precision_options("16-mixed"))
    straight = LitNet(build, scheduler=step_lr)
    trainer(max_epochs=2, **options).fit(straight, loader(dataset()))
    first = LitNet(build, scheduler=step_lr)
    half = trainer(max_epochs=1, **options)
    half.fit(first, loader(dataset()))
    half.save_checkpoint(tmp_path / "epoch1.ckpt")
    resumed = LitNet(build, scheduler=step_lr)
    trainer(max_epochs=2, **options).fit(
        resumed, loader(dataset()), ckpt_path=tmp_path / "epoch1.ckpt"
    )
    for a, b in zip(straight.net.parameters(), resumed.net.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(first.net.parameters(), resumed.net.parameters()):
        assert not torch.equal(a, b)
    sd_a = straight.trainer.optimizers[0].state_dict()["sharpness_aware"]
    sd_b = resumed.trainer.optimizers[0].state_dict()["sharpness_aware"]
    assert sd_a.keys() == sd_b.keys()
    for key, value in sd_a.items():
        same = torch.equal(value, sd_b[key]) if torch.is_tensor(value) else value == sd_b[key]
        assert same, key


def test_clipping_by_value_is_refused():
    with pytest.raises(ValueError, match="gradient_clip_algorithm='norm'"):
        trainer(gradient_clip_val=1.0, gradient_clip_algorithm="value").fit(
            LitNet(OPTIMIZERS["SAM"]), loader(dataset())
        )


def test_other_optimizers_step_as_lightning_does():
    module = LitNet(lambda ps: torch.optim.SGD(ps, lr=0.1))
    trainer(max_steps=2).fit(module, loader(dataset()))
    assert any(
        not torch.equal(a, b) for a, b in zip(module.net.parameters(), make_net().parameters())
    )


def test_fit_releases_its_slsam_so_the_module_is_trainable_and_fits_again():
    module = LitNet(OPTIMIZERS["SLSAM"])
    trainer(max_steps=2).fit(module, loader(dataset()))
    first = module.trainer.optimizers[0]
    assert first.released
    assert all(p.requires_grad for p in module.parameters())
    trainer(max_steps=2).fit(module, loader(dataset()))  # builds a new SLSAM over the module
    assert module.trainer.optimizers[0] is not first
