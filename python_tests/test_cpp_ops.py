"""What is cpp's own in grad_sqnorms / perturb_ / restore_: thread-count determinism, the
layouts its loops decline, every fp16 pattern, and the eight-lane forms (each op against the
reference: test_backend_contract.py)."""

from __future__ import annotations

import pytest
import torch
from cpp_testing import (
    FP16_FORMS,
    assert_bitwise_equal,
    bits,
    every_scale,
    fresh_generator,
    nan_like,
    randn,
    requires_extension,
    requires_vec8_kernels,
    vec8_kernels,
)

from slsam_kernels import ops
from slsam_kernels.backends import cpp, reference
from slsam_kernels.backends.cpp.loader import C

pytestmark = requires_extension


def test_auto_picks_the_extension_for_cpu_tensors():
    assert ops.bind("auto", torch.device("cpu")).name == "cpp"


def test_grad_sqnorms_is_deterministic_across_thread_counts():
    gen, _ = fresh_generator()
    grads = randn([3_000_001, 65537, 5], [torch.float32, torch.bfloat16], gen)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(cpp.grad_sqnorms(grads))
    finally:
        torch.set_num_threads(threads)
    for r in results[1:]:
        assert torch.equal(bits(r), bits(results[0]))


def test_perturb_names_scales_on_another_device_and_changes_nothing():
    gen, _ = fresh_generator()
    params = randn([7, 33], [torch.float32], gen)
    grads = randn([7, 33], [torch.float32], gen)
    originals = [p.clone() for p in params]
    backups = nan_like(params)
    scales = torch.rand(len(params), generator=gen).to("meta")
    with pytest.raises(ValueError, match=r"scales is on meta but the tensors are on cpu.*\.to"):
        C.perturb_(params, grads, backups, scales, False)
    assert_bitwise_equal(params, originals, "params")
    assert all(b.isnan().all() for b in backups)


def test_layouts_the_loops_do_not_take_are_declined_and_run_on_the_reference():
    gen, _ = fresh_generator()
    param = torch.randn(4, 6, 5, 5, generator=gen).to(memory_format=torch.channels_last)
    grad = torch.randn(4, 6, 5, 5, generator=gen)
    backup = torch.full((4, 6, 5, 5), float("nan"))  # contiguous: laid out unlike the param
    scales = torch.tensor([0.5])
    expected, original = param.clone(), param.clone()
    assert list(cpp.perturb_([param], [grad], [backup], scales)) == [0]
    assert torch.equal(param, original) and backup.isnan().all(), "a declined call wrote"
    reference.perturb_([expected], [grad], [torch.empty_like(param)], scales)
    bound = ops.bind("cpp", torch.device("cpu"))
    bound.perturb_([param], [grad], [backup], scales)
    assert torch.equal(param, expected) and torch.equal(backup, original)
    param.fill_(float("nan"))
    assert list(cpp.restore_([param], [backup])) == [0]
    assert param.isnan().all(), "a declined restore wrote"
    bound.restore_([param], [backup])
    assert torch.equal(param, original)


def _every_half() -> torch.Tensor:
    """All 65,536 fp16 bit patterns: zeros, subnormals, normals, infinities and NaNs."""
    return torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(torch.float16)


@pytest.mark.parametrize("eight_lanes", FP16_FORMS)
def test_every_fp16_value_converts_as_torch_converts_it(eight_lanes):
    """The loops' own fp16 <-> fp32 conversion (portable or F16C), through perturb_: with
    scale 0 every pattern goes to fp32 and back; with the finite patterns as gradients and
    several scales, fp32 results land everywhere fp16 rounds (halfway cases, subnormals,
    overflow to inf)."""
    every = _every_half()
    finite = every[every.isfinite()]
    cases = [(every.clone(), torch.zeros_like(every), 0.0)]
    for scale in (1.0, 1.0 + 2**-11, 0.75, 3.0e-4, 1.0e-7, 1.7e4, 65519.0 / 65504.0):
        cases.append((torch.zeros_like(finite), finite.clone(), scale))
        cases.append((finite.flip(0).clone(), finite.clone(), scale))
    for w, g, scale in cases:
        scales = torch.tensor([scale])
        expected = [w.clone()]
        reference.perturb_(expected, [g], [torch.empty_like(w)], scales)
        got, backup = [w.clone()], [torch.empty_like(w)]
        with vec8_kernels(eight_lanes):
            assert C.perturb_(got, [g], backup, scales, False)
        assert_bitwise_equal(got, expected, f"scale {scale}")
        assert_bitwise_equal(backup, [w], f"backup, scale {scale}")


@requires_vec8_kernels
@pytest.mark.parametrize("adaptive", [False, True], ids=["sam", "asam"])
def test_eight_lane_fp16_norms_and_perturbation_equal_the_portable_loops(adaptive):
    """The F16C forms of grad_sqnorms (plain and weighted) and perturb_ against the portable
    loops, bit for bit, over fp16 values at every scale; backups poisoned before each run."""
    gen, seed = fresh_generator()
    weights, grads = every_scale(gen), every_scale(gen)
    scales = torch.rand(len(weights), generator=gen) * 4
    results = []
    for eight_lanes in (True, False):
        with vec8_kernels(eight_lanes):
            norms = [C.grad_sqnorms(grads, None), C.grad_sqnorms(grads, weights)]
            ws = [w.clone() for w in weights]
            backups = nan_like(weights)
            assert C.perturb_(ws, grads, backups, scales, adaptive)
        assert_bitwise_equal(backups, weights, f"backups, seed {seed}")
        results.append(norms + ws)
    assert not torch.equal(results[0][-2], weights[-2])  # the perturbation moved the weights
    assert_bitwise_equal(results[0], results[1], f"seed {seed}")
