"""print(opt) shows the base optimizer's class and the wrapper's settings, then torch's listing
of the param groups."""

from __future__ import annotations

import torch
from bar_testing import make_lora_net
from builders import make_model

from slsam_kernels import BAR, RST, SAM, SLSAM, schedules


def settings_of(opt) -> list[str]:
    lines = repr(opt).splitlines()
    assert lines[:2] == [f"{type(opt).__name__} (", "Settings"]
    end = lines.index("Parameter Group 0")
    assert lines[-1] == ")"
    return [line.strip() for line in lines[2:end]]


def test_sam_shows_its_base_optimizer_and_each_groups_rho_and_adaptive():
    opt = SAM(make_model().parameters(), torch.optim.AdamW, rho=0.1, adaptive=True, lr=1e-2)
    assert settings_of(opt) == [
        "base_optimizer: AdamW",
        f"backend: {opt.backend}",
        "max_grad_norm: None",
        "ascent: global",
    ]
    for line in ("    rho: 0.1", "    adaptive: True", "    lr: 0.01", "    betas: (0.9, 0.999)"):
        assert line in repr(opt).splitlines()


def test_slsam_shows_its_arms_bandit_and_seed():
    model = make_model()
    opt = SLSAM(
        model.parameters(),
        torch.optim.SGD,
        sample_ratio=0.25,
        bandit="robust",
        seed=7,
        always_active=model.fc3,
        max_grad_norm=1.0,
        lr=0.1,
    )
    assert settings_of(opt) == [
        "base_optimizer: SGD",
        f"backend: {opt.backend}",
        "max_grad_norm: 1.0",
        "ascent: global",
        "arms: 5",
        "sample_ratio: 0.25",
        "bandit: robust",
        "bandit_lr: 0.05",
        "p_min: 0.001",
        "seed: 7",
        "exploration: 0.1",
        "always_active: 2 tensors",
    ]
    opt.release()
    assert settings_of(opt)[-1] == "released: True"


def test_rst_shows_its_sam_prob_schedule_and_seed():
    schedule = schedules.linear(100, start=0.2, end=0.8)
    opt = RST(make_model().parameters(), torch.optim.AdamW, sam_prob=schedule, seed=3, lr=1e-2)
    assert settings_of(opt)[-2:] == [
        "sam_prob: linear(total_steps=100, start=0.2, end=0.8)",
        "seed: 3",
    ]


def test_bar_shows_its_pairs_mu_variant_and_schedule():
    model = make_lora_net()
    opt = BAR(model.parameters(), torch.optim.AdamW, model.pairs(), mu=0.3, variant="obar", lr=1)
    assert settings_of(opt) == [
        "base_optimizer: AdamW",
        f"backend: {opt.backend}",
        "max_grad_norm: None",
        "pairs: 2",
        "mu: 0.3",
        "variant: obar",
        "schedule: constant(value=1.0)",
    ]
