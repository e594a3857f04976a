"""PEFT LoRA: only the adapters are arms; the frozen base is never unfrozen or changed."""

import pytest
import torch
from builders import loss_of, make_batches, make_model, train

peft = pytest.importorskip("peft", reason="needs peft: pip install peft")

from slsam_kernels import BAR, SLSAM, arms_by_module, lora_pairs  # noqa: E402


def lora_model():
    config = peft.LoraConfig(
        r=2, lora_alpha=4, target_modules=["fc1", "fc2"], init_lora_weights=False
    )
    return peft.get_peft_model(make_model(), config)


@pytest.mark.parametrize("by_module", [False, True], ids=["tensor-arms", "module-arms"])
def test_only_adapters_are_arms_and_the_base_stays_frozen(by_module):
    model = lora_model()
    named = dict(model.named_parameters())
    adapters = {n for n, p in named.items() if p.requires_grad}
    assert adapters and all("lora_" in n for n in adapters)
    base = {n: p.detach().clone() for n, p in named.items() if n not in adapters}
    arms = arms_by_module(model) if by_module else None
    opt = SLSAM(model.parameters(), torch.optim.AdamW, lr=1e-2, seed=0, sample_ratio=0.5, arms=arms)
    assert opt.num_arms == 4  # lora_A and lora_B of fc1 and fc2
    arm_tensors = {id(p) for arm in opt.arms for p in (arm if by_module else (arm,))}
    assert arm_tensors == {id(named[n]) for n in adapters}
    adapter_start = {n: named[n].detach().clone() for n in adapters}
    for _ in range(4):
        train(model, opt, make_batches(1))
        assert not any(named[n].requires_grad for n in base)
        active = {n for n in adapters if named[n].requires_grad}
        expected = sum(named[n].numel() for n in active) / sum(named[n].numel() for n in adapters)
        assert opt.active_param_fraction == pytest.approx(expected)
    assert all(torch.equal(named[n], w) for n, w in base.items())
    assert any(not torch.equal(named[n], w) for n, w in adapter_start.items())
    assert loss_of(model, make_batches(1)[0]).isfinite()


def test_lora_pairs_gives_b_and_a_of_each_adapted_module_and_bar_trains_them():
    model = lora_model()
    name_of = {id(p): n for n, p in model.named_parameters()}
    pairs = lora_pairs(model)
    prefix = "base_model.model"
    assert [(name_of[id(x)], name_of[id(y)]) for x, y in pairs] == [
        (f"{prefix}.{m}.lora_B.default.weight", f"{prefix}.{m}.lora_A.default.weight")
        for m in ("fc1", "fc2")
    ]
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    start = [(x.detach().clone(), y.detach().clone()) for x, y in pairs]
    opt = BAR(model.parameters(), torch.optim.AdamW, pairs, mu=1.0, lr=1e-2)
    for batch in make_batches(3):
        loss_of(model, batch).backward()
        opt.step()
        opt.zero_grad()
    named = dict(model.named_parameters())
    assert all(torch.equal(named[n], w) for n, w in frozen.items())
    assert all(not torch.equal(x, x0) for (x, _), (x0, _) in zip(pairs, start, strict=True))


def test_lora_pairs_leaves_out_a_frozen_adapter():
    model = lora_model()
    model.add_adapter("second", peft.LoraConfig(r=2, target_modules=["fc1"]))
    assert len(lora_pairs(model)) == 2  # the active adapter's; "second" is not trained
    for name, p in model.named_parameters():
        if ".second." in name:
            p.requires_grad_(True)
    assert len(lora_pairs(model)) == 3
