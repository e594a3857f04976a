"""Checkpoints name their kind and base optimizer: one of another kind or base optimizer is
refused with both names, changing nothing; a plain base-optimizer state dict loads the base
state only, with a warning that names what was kept; checkpoints saved before the kind was
recorded still load."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from bar_testing import lora_batches, lora_loss, make_lora_net
from builders import loss_of, make_batches, make_model, snapshot, train

from slsam_kernels import BAR, RST, SAM, SLSAM


def build(kind, model, base=torch.optim.AdamW, **kwargs):
    if kind is BAR:
        return BAR(model.parameters(), base, model.pairs(), lr=1e-2, **kwargs)
    seeded = {} if kind is SAM else {"seed": 0}
    return kind(model.parameters(), base, lr=1e-2, **seeded, **kwargs)


def trained(kind, base=torch.optim.AdamW, seed=0, **kwargs):
    """A model and its optimizer after two steps (BAR on a LoRA-shaped model)."""
    if kind is BAR:
        model = make_lora_net(seed)
        opt = build(kind, model, base, **kwargs)
        for batch in lora_batches(2, seed=seed + 1):
            lora_loss(model, batch).backward()
            opt.step()
            opt.zero_grad()
        return model, opt
    model = make_model(seed)
    opt = build(kind, model, base, **kwargs)
    train(model, opt, make_batches(2, seed=seed + 1))
    return model, opt


def own_state(opt) -> dict:
    return copy.deepcopy(opt.state_dict()["sharpness_aware"])


def assert_same_own_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, b[key]), key
        else:
            assert value == b[key], key


def assert_nothing_changed(model, opt, before, own_before) -> None:
    params, state = snapshot(model, opt)
    for p, q in zip(params, before[0], strict=True):
        assert torch.equal(p, q)
    assert state.keys() == before[1].keys()
    for index, buffers in before[1].items():
        for key, value in buffers.items():
            assert torch.equal(torch.as_tensor(state[index][key]), torch.as_tensor(value))
    assert_same_own_state(own_state(opt), own_before)


@pytest.mark.parametrize("kind", [SAM, SLSAM, RST, BAR], ids=lambda k: k.__name__)
def test_a_checkpoint_names_its_kind_and_base_optimizer(kind):
    _, opt = trained(kind)
    wrapper = opt.state_dict()["sharpness_aware"]
    assert (wrapper["kind"], wrapper["base_optimizer"]) == (kind.__name__, "AdamW")


@pytest.mark.parametrize(
    ("saved", "loader", "words"),
    [
        (SLSAM, SAM, r"from an SLSAM \(base AdamW\), this optimizer is a SAM \(base AdamW\)"),
        (RST, SAM, r"from an RST \(base AdamW\), this optimizer is a SAM \(base AdamW\)"),
        (SAM, SLSAM, r"from a SAM \(base AdamW\), this optimizer is an SLSAM \(base AdamW\)"),
        (SAM, RST, r"from a SAM \(base AdamW\), this optimizer is an RST \(base AdamW\)"),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_a_checkpoint_of_another_kind_is_refused_naming_both(saved, loader, words):
    _, source = trained(saved, seed=1)
    model, opt = trained(loader)
    before, own_before = snapshot(model, opt), own_state(opt)
    with pytest.raises(ValueError, match=words + r": build an? \w+ \(base AdamW\) to resume it"):
        opt.load_state_dict(source.state_dict())
    assert_nothing_changed(model, opt, before, own_before)


def test_a_bar_checkpoint_is_refused_by_an_optimizer_of_another_kind():
    _, bar = trained(BAR)
    model = make_lora_net()
    sam = SAM(model.parameters(), torch.optim.AdamW, lr=1e-2)
    with pytest.raises(ValueError, match=r"from a BAR \(base AdamW\), this optimizer is a SAM"):
        sam.load_state_dict(bar.state_dict())


@pytest.mark.parametrize("plain", [False, True], ids=["slsam-sgd", "plain-sgd"])
def test_state_of_another_base_optimizer_is_refused_before_torch_sees_it(plain):
    """Today's torch raises a bare ``KeyError: 'step'`` inside AdamW.load_state_dict."""
    source_model, source = trained(SLSAM, torch.optim.SGD, seed=1, momentum=0.9)
    if plain:
        source = torch.optim.SGD(source_model.parameters(), lr=0.1, momentum=0.9)
        loss_of(source_model, make_batches(1)[0]).backward()
        source.step()
    model, opt = trained(SLSAM)
    before, own_before = snapshot(model, opt), own_state(opt)
    words = (
        r"no 'betas', 'eps', which AdamW steps with: it was saved by another base optimizer"
        if plain
        else r"from an SLSAM \(base SGD\), this optimizer is an SLSAM \(base AdamW\)"
    )
    with pytest.raises(ValueError, match=words):
        opt.load_state_dict(source.state_dict())
    assert_nothing_changed(model, opt, before, own_before)


def test_plain_adamw_state_is_refused_by_an_sgd_base():
    plain_model = make_model(1)
    plain = torch.optim.AdamW(plain_model.parameters(), lr=1e-2)
    _, opt = trained(SAM, torch.optim.SGD, momentum=0.9)
    with pytest.raises(ValueError, match=r"no 'dampening', 'momentum', which SGD steps with"):
        opt.load_state_dict(plain.state_dict())


@pytest.mark.parametrize(
    ("kind", "kept"),
    [
        (
            SLSAM,
            "(bandit, probs, active_mask, generator, step_index, steps_held, next_is_sam, "
            "coin_generator, update_counts)",
        ),
        (RST, "(step_index, generator)"),
        (BAR, "(steps_taken)"),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_a_plain_base_state_dict_loads_the_base_state_and_names_what_is_kept(kind, kept):
    model, opt = trained(kind)
    plain = torch.optim.AdamW(model.parameters(), lr=3e-3)
    own_before = own_state(opt)
    with pytest.warns(UserWarning, match="plain AdamW state dict") as caught:
        opt.load_state_dict(plain.state_dict())
    message = str(caught[0].message)
    assert f"kept its own as it was {kept}" in message
    assert caught[0].filename == __file__
    assert opt.param_groups[0]["lr"] == 3e-3
    for key, value in opt.state_dict()["sharpness_aware"].items():
        expected = own_before[key]
        assert (
            torch.equal(value, expected) if isinstance(value, torch.Tensor) else value == expected
        )


def test_a_plain_base_state_dict_loads_into_sam_silently():
    """SAM has no state of its own, so nothing is kept that the user could miss."""
    model, opt = trained(SAM)
    plain = torch.optim.AdamW(model.parameters(), lr=3e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.load_state_dict(plain.state_dict())
    assert opt.param_groups[0]["lr"] == 3e-3


def without_kind(state_dict):
    """As saved before checkpoints recorded their kind."""
    state_dict = copy.deepcopy(state_dict)
    del state_dict["sharpness_aware"]["kind"], state_dict["sharpness_aware"]["base_optimizer"]
    return state_dict


@pytest.mark.parametrize("kind", [SAM, SLSAM, RST, BAR], ids=lambda k: k.__name__)
def test_a_checkpoint_saved_before_kinds_were_recorded_still_resumes(kind):
    _, opt = trained(kind)
    resumed = build(kind, make_lora_net() if kind is BAR else make_model())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed.load_state_dict(without_kind(opt.state_dict()))
    assert (
        opt.state_dict()["sharpness_aware"].keys() == resumed.state_dict()["sharpness_aware"].keys()
    )
    for key, value in opt.state_dict()["sharpness_aware"].items():
        other = resumed.state_dict()["sharpness_aware"][key]
        assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other


def test_an_old_sam_checkpoint_into_an_slsam_is_still_refused_by_its_contents():
    _, sam = trained(SAM, seed=1)
    _, opt = trained(SLSAM)
    with pytest.raises(ValueError, match="not from an SLSAM over the same 7 arms"):
        opt.load_state_dict(without_kind(sam.state_dict()))
