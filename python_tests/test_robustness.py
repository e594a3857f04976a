"""Bad input and failed steps leave everything as it was, with an error that names the fix:
duplicated and odd parameters, checkpoints, ops inputs, seeds, closures."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from backend_testing import backend_params
from builders import loss_of, make_batches, make_model, snapshot, train

from slsam_kernels import RST, SAM, SLSAM, ops

OPTIMIZERS = [pytest.param(c, id=c.__name__) for c in (SAM, SLSAM, RST)]
CPU_BACKENDS = backend_params(device=False, cpu_only=True)


def build(optimizer, params, **kwargs):
    return optimizer(params, torch.optim.AdamW, lr=1e-2, **kwargs)


def same(a, b) -> bool:
    if isinstance(b, torch.Tensor):
        return torch.equal(torch.as_tensor(a), b)
    return a == b


def assert_unchanged(model, opt, before) -> None:
    params, state = snapshot(model, opt)
    for p, q in zip(params, before[0]):
        assert torch.equal(p, q)
    assert state.keys() == before[1].keys()
    for index, buffers in before[1].items():
        for key, value in buffers.items():
            assert torch.equal(torch.as_tensor(state[index][key]), torch.as_tensor(value))


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_a_tensor_listed_twice_is_refused_with_its_positions(optimizer):
    model = make_model()
    params = list(model.parameters())
    with pytest.raises(
        ValueError, match="parameter 3 of group 0 is the same tensor as parameter 1"
    ):
        build(optimizer, [*params[:3], params[1]])
    with pytest.raises(
        ValueError, match="parameter 0 of group 1 is the same tensor as parameter 2 of group 0"
    ):
        build(optimizer, [{"params": params[:3]}, {"params": [params[2], params[4]]}])
    assert all(p.requires_grad for p in params)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_complex_and_integer_parameters_are_refused_up_front(optimizer, backend):
    complex_weight = torch.nn.Parameter(torch.randn(4, dtype=torch.complex64))
    with pytest.raises(TypeError, match=r"parameter 1 of group 0 is complex .*view_as_real"):
        build(optimizer, [torch.nn.Parameter(torch.randn(3)), complex_weight], backend=backend)
    with pytest.raises(TypeError, match="floating point"):
        build(optimizer, [torch.zeros(3, dtype=torch.int64)], backend=backend)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_sparse_gradients_are_refused_at_the_first_step(optimizer, backend):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4, sparse=True), torch.nn.Linear(4, 2))
    extra = {"sam_prob": 1.0} if optimizer is RST else {}
    extra |= {"sample_ratio": 1.0} if optimizer is SLSAM else {}
    opt = build(optimizer, model.parameters(), backend=backend, **extra)
    idx = torch.tensor([1, 2, 3])

    def closure():
        model(idx).sum().backward()

    closure()
    before = snapshot(model, opt)
    with pytest.raises(TypeError, match=r"sparse.*nn\.Embedding\(\.\.\., sparse=False\)"):
        opt.step(closure)
    assert_unchanged(model, opt, before)


def test_rst_plain_steps_refuse_sparse_gradients_too():
    model = torch.nn.Embedding(10, 4, sparse=True)
    opt = RST(model.parameters(), torch.optim.SGD, sam_prob=0.0, lr=0.1)
    model(torch.tensor([1, 2])).sum().backward()
    before = model.weight.detach().clone()
    with pytest.raises(TypeError, match="sparse"):
        opt.step(lambda: None)
    assert torch.equal(model.weight, before) and opt.step_index == 0


# ---- checkpoints ----------------------------------------------------------------------------


def trained(optimizer, seed: int = 0, **kwargs):
    model = make_model(seed)
    seeded = {} if optimizer is SAM else {"seed": seed}
    opt = build(optimizer, model.parameters(), **seeded, **kwargs)
    train(model, opt, make_batches(3, seed=seed + 1))
    return model, opt


def corrupt(state_dict, edit):
    state_dict = copy.deepcopy(state_dict)
    edit(state_dict)
    return state_dict


def set_probs(values):
    def edit(sd):
        sd["sharpness_aware"]["probs"] = torch.tensor(values, dtype=torch.float32)

    return edit


def drop(*keys):
    def edit(sd):
        target = sd
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]

    return edit


def set_generator(sd):
    sd["sharpness_aware"]["generator"] = torch.zeros(7, dtype=torch.uint8)


def reshape_first_moment(sd):
    first = next(iter(sd["state"]))
    sd["state"][first]["exp_avg"] = sd["state"][first]["exp_avg"].reshape(-1)[:-1]


BAD_CHECKPOINTS = [
    pytest.param(SAM, drop("param_groups"), ValueError, "no valid 'param_groups'", id="no-groups"),
    pytest.param(SAM, drop("state"), ValueError, "no valid 'state'", id="no-state"),
    pytest.param(
        RST, drop("sharpness_aware", "step_index"), ValueError, "step_index", id="rst-step"
    ),
    pytest.param(RST, set_generator, ValueError, "corrupt generator", id="rst-generator"),
    pytest.param(SLSAM, set_generator, ValueError, "corrupt generator", id="slsam-generator"),
    pytest.param(SAM, reshape_first_moment, ValueError, "has shape .* another model", id="shapes"),
]


@pytest.mark.parametrize(("optimizer", "edit", "error", "words"), BAD_CHECKPOINTS)
def test_a_bad_checkpoint_is_refused_and_nothing_is_loaded(optimizer, edit, error, words):
    _, source = trained(optimizer, seed=1)
    model, opt = trained(optimizer, seed=0)
    before = snapshot(model, opt)
    lr = opt.param_groups[0]["lr"]
    wrapper_before = copy.deepcopy(opt.state_dict()["sharpness_aware"])
    with pytest.raises(error, match=words):
        opt.load_state_dict(corrupt(source.state_dict(), edit))
    assert_unchanged(model, opt, before)
    assert opt.param_groups[0]["lr"] == lr
    wrapper_after = opt.state_dict()["sharpness_aware"]
    for key, value in wrapper_before.items():
        assert same(wrapper_after[key], value), key


@pytest.mark.parametrize(
    "probs",
    [
        pytest.param("nan", id="nan"),
        pytest.param([3.0, -1.0, 0.5, 0.5], id="out-of-range"),
        pytest.param("half-budget", id="wrong-sum"),
    ],
)
def test_bad_bandit_probabilities_are_refused(probs):
    _, opt = trained(SLSAM, sample_ratio=0.5)
    n = opt.num_arms
    if probs == "nan":
        values = [math.nan] + [0.5] * (n - 1)
    elif probs == "half-budget":
        values = [0.25] * n
    else:
        values = probs + [0.5] * (n - len(probs))
    sd = corrupt(opt.state_dict(), set_probs(values))
    before_probs = opt.probs
    with pytest.raises(ValueError, match="probabilities"):
        opt.load_state_dict(sd)
    assert torch.equal(opt.probs, before_probs)


def test_a_path_instead_of_a_state_dict_names_torch_load():
    _, opt = trained(SAM)
    with pytest.raises(TypeError, match=r"got a str; for a file, pass torch.load\(path\)"):
        opt.load_state_dict("checkpoint.pt")


def test_a_model_with_other_tensor_counts_is_refused():
    _, opt = trained(SAM)
    other = build(SAM, list(make_model().parameters())[:3])
    with pytest.raises(ValueError, match="lists 7 tensors, this optimizer's 3"):
        other.load_state_dict(opt.state_dict())


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_a_plain_base_optimizer_checkpoint_loads_the_base_state_only(optimizer):
    _, opt = trained(optimizer)
    plain_model = make_model(5)
    plain = torch.optim.AdamW(plain_model.parameters(), lr=3e-3)
    for batch in make_batches(2):
        loss_of(plain_model, batch).backward()
        plain.step()
    wrapper_before = opt.state_dict()["sharpness_aware"]
    opt.load_state_dict(plain.state_dict())
    assert opt.param_groups[0]["lr"] == 3e-3
    loaded = opt.state_dict()
    for index, buffers in plain.state_dict()["state"].items():
        for key, value in buffers.items():
            assert torch.equal(loaded["state"][index][key], value)
    for key, value in wrapper_before.items():
        assert same(loaded["sharpness_aware"][key], value), key


# ---- ops inputs -----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize(
    "probs",
    [
        pytest.param([math.nan, 0.5], id="nan"),
        pytest.param([0.0, 0.0, 0.0], id="all-zero"),
        pytest.param([1.5, 0.5], id="above-one"),
    ],
)
def test_sample_active_refuses_probabilities_that_could_hang_it(backend, probs):
    with pytest.raises(ValueError, match=r"probs must be finite|every probability is 0"):
        ops.sample_active(torch.tensor(probs), torch.Generator(), backend=backend)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize(
    ("norms", "idx", "words"),
    [
        pytest.param([1.0, 2.0], [0, 5], r"active_idx must lie in \[0, 4\)", id="index-range"),
        pytest.param([1.0, 2.0], [-1, 2], r"active_idx must lie in", id="negative-index"),
        pytest.param([1.0, 2.0], [1, 1], "lists an arm twice", id="repeated-index"),
        pytest.param([math.nan, 2.0], [0, 1], "active_norms must be finite", id="nan-norm"),
        pytest.param([-1.0, 2.0], [0, 1], "active_norms must be finite and >= 0", id="negative"),
    ],
)
def test_bandit_update_refuses_bad_inputs(backend, norms, idx, words):
    probs = torch.full((4,), 0.5)
    with pytest.raises(ValueError, match=words):
        ops.bandit_update(probs, torch.tensor(norms), torch.tensor(idx), 2.0, backend=backend)


def test_a_nan_first_pass_skips_the_step_and_the_bandit_update():
    model = make_model()
    opt = SLSAM(model.parameters(), torch.optim.AdamW, lr=1e-2, sample_ratio=1.0, seed=0)
    batch = make_batches(1)[0]
    loss_of(model, batch).backward()
    next(iter(model.parameters())).grad[0] = math.nan
    probs = opt.probs
    with pytest.warns(RuntimeWarning, match="inf or NaN, so this step was skipped"):
        opt.step(lambda: loss_of(model, batch).backward())
    assert torch.equal(opt.probs, probs)


# ---- seeds, closures, failed steps ------------------------------------------------------------


@pytest.mark.parametrize("optimizer", [SLSAM, RST])
@pytest.mark.parametrize("seed", [2**70, -(2**64)])
def test_a_seed_out_of_range_names_the_range(optimizer, seed):
    with pytest.raises(ValueError, match=r"seed must be in \[-2\*\*63, 2\*\*64 - 1\]"):
        build(optimizer, make_model().parameters(), seed=seed)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_a_closure_without_backward_raises_and_undoes_the_step(optimizer):
    model = make_model()
    extra = {"sam_prob": 1.0} if optimizer is RST else {}
    opt = build(optimizer, model.parameters(), **extra)
    batch = make_batches(1)[0]
    loss_of(model, batch).backward()
    before = snapshot(model, opt)
    with pytest.raises(RuntimeError, match=r"left every gradient empty.*loss\.backward"):
        opt.step(lambda: loss_of(model, batch))
    assert_unchanged(model, opt, before)


def test_a_failed_rst_step_leaves_the_coin_where_it_was():
    def fresh():
        model = make_model()
        return model, RST(model.parameters(), torch.optim.SGD, sam_prob=0.5, seed=3, lr=0.1)

    batches = make_batches(6)
    model, opt = fresh()
    expected = []
    for batch in batches:
        loss_of(model, batch).backward()
        opt.step(lambda batch=batch: loss_of(model, batch).backward())
        opt.zero_grad()
        expected.append(opt.last_step_was_sam)
    assert True in expected and False in expected

    def interrupted():
        raise KeyboardInterrupt

    model, opt = fresh()
    flips = []
    for batch in batches:
        loss_of(model, batch).backward()
        try:
            opt.step(interrupted)  # a plain step never calls the closure: it succeeds
        except KeyboardInterrupt:  # a SAM step fails: retry it, from a new first pass
            opt.zero_grad()
            loss_of(model, batch).backward()
            opt.step(lambda batch=batch: loss_of(model, batch).backward())
        opt.zero_grad()
        flips.append(opt.last_step_was_sam)
    assert flips == expected and opt.step_index == len(batches)


@pytest.mark.parametrize("form", ["closure", "manual", "rst-plain"])
def test_the_skipped_step_warning_names_the_callers_line(form):
    model = make_model()
    batch = make_batches(1)[0]
    if form == "rst-plain":
        opt = RST(model.parameters(), torch.optim.SGD, sam_prob=0.0, lr=0.1)
    else:
        opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    loss_of(model, batch).backward()
    next(iter(model.parameters())).grad[0] = math.nan
    with pytest.warns(RuntimeWarning, match="this step was skipped") as caught:
        if form == "manual":
            opt.first_step(zero_grad=True)
            loss_of(model, batch).backward()
            opt.second_step()
        else:
            opt.step(lambda: loss_of(model, batch).backward())
    assert caught[0].filename == __file__
