"""The instruction-count guard of the C++ kernels (benchmarks/instruction_counts.py): this build
stays within 10% of the committed baseline, and the guard catches de-vectorised loops (the
eight-lane path turned off makes the fp16 kernels fail it). One callgrind run (94 s of
CPU time on a 2-core machine) counts both passes."""

from __future__ import annotations

import pytest

from benchmarks import instruction_counts as ic

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def counted():
    baseline = ic.load_baseline()
    reason = ic.skip_reason(baseline)
    if reason:
        pytest.skip(reason)
    measured, meta = ic.measure(["vec8", "portable"])
    reason = ic.path_mismatch(meta, baseline)
    if reason:
        pytest.skip(reason)
    return measured, baseline["counts"]


def test_every_kernel_and_dtype_has_a_baseline():
    counts = ic.load_baseline()["counts"]
    assert set(counts) == set(ic.KERNELS)
    for kernel in ic.KERNELS:
        expected = {"fp32"} if kernel == "bandit_update" else set(ic.DTYPES)
        assert set(counts[kernel]) == expected, kernel
        assert all(v > 0 for v in counts[kernel].values()), kernel


def test_this_build_is_within_the_baseline(counted):
    measured, baseline = counted
    assert ic.compare(measured["vec8"], baseline) == []


def test_the_check_fails_with_the_eight_lane_loops_off(counted):
    measured, baseline = counted
    failures = ic.compare(measured["portable"], baseline)
    failed = {(f.kernel, f.dtype) for f in failures}
    fp16 = {(k, "fp16") for k in ic.KERNELS if k not in ("bandit_update", "restore_")}
    assert fp16 <= failed, failures
    # the scalar loops the eight lanes replace need several times the instructions
    assert all(measured["portable"][k][d] > 2 * baseline[k][d] for k, d in fp16)


def test_compare_flags_only_growth_beyond_the_tolerance():
    baseline = {"restore_": {"fp32": 4.0, "fp16": 2.0}}
    assert ic.compare({"restore_": {"fp32": 4.4, "fp16": 1.0}}, baseline) == []
    [failure] = ic.compare({"restore_": {"fp32": 4.41, "fp16": 2.0}}, baseline)
    assert failure[:2] == ("restore_", "fp32")
    assert failure.message.startswith("4.41 Ir/element, baseline 4.0 (1.10x")
    [failure] = ic.compare({"sgd_restore_step_": {"fp32": 1.0}}, baseline)
    assert "no baseline" in failure.message


@pytest.fixture
def tools_present(monkeypatch, tmp_path):
    """valgrind and its header present, whatever this machine has."""
    header = tmp_path / "callgrind.h"
    header.write_text("")
    monkeypatch.setattr(ic.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(ic, "CALLGRIND_HEADER", header)
    baseline = ic.load_baseline()
    monkeypatch.setattr(ic, "cpu_flags", lambda: baseline["meta"]["cpu_flags"])
    monkeypatch.setattr(ic, "compiler_of_extension", lambda: baseline["meta"]["compiler"])
    return baseline


def test_the_check_runs_where_the_baseline_was_taken(tools_present):
    assert ic.skip_reason(tools_present) is None


def test_the_check_skips_without_valgrind(tools_present, monkeypatch):
    monkeypatch.setattr(ic.shutil, "which", lambda name: None)
    assert "valgrind is not installed" in ic.skip_reason(tools_present)


def test_the_check_skips_on_a_cpu_without_the_baselines_flags(tools_present, monkeypatch):
    monkeypatch.setattr(ic, "cpu_flags", lambda: ["avx"])
    reason = ic.skip_reason(tools_present)
    assert "this one has avx" in reason and "f16c" in reason


def test_the_check_skips_for_another_compiler_and_names_the_update(tools_present, monkeypatch):
    monkeypatch.setattr(ic, "compiler_of_extension", lambda: "GCC: (other) 99.1")
    reason = ic.skip_reason(tools_present)
    assert "GCC: (other) 99.1" in reason and "--update" in reason


def test_a_run_on_another_default_path_is_not_compared(tools_present):
    assert ic.path_mismatch({"vec8_default": True}, tools_present) is None
    assert "this run's is portable" in ic.path_mismatch({"vec8_default": False}, tools_present)
