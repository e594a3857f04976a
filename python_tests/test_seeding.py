"""Every test starts from a seed of its own, and a failing test's report names it."""

import random

import torch
from conftest import SEED_ENV, seed_for

pytest_plugins = ["pytester"]


def test_each_test_starts_from_the_seed_of_its_node_id(test_seed, request):
    assert test_seed == seed_for(request.node.nodeid)
    assert random.random() == random.Random(test_seed).random()
    expected = torch.rand(3, generator=torch.Generator().manual_seed(test_seed))
    assert torch.equal(torch.rand(3), expected)


def test_seeds_differ_between_tests_and_follow_the_environment(monkeypatch):
    assert seed_for("a.py::test_one") != seed_for("a.py::test_two")
    before = seed_for("a.py::test_one")
    monkeypatch.setenv(SEED_ENV, "5")
    assert seed_for("a.py::test_one") == (before + 5) % 2**31


def test_a_failing_test_reports_its_seed(pytester):
    pytester.makeconftest((__import__("pathlib").Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(
        test_draw="import random\ndef test_draw():\n    assert random.random() > 2\n"
    )
    result = pytester.runpytest_subprocess("-q")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*this test ran with seed * (SLSAM_TEST_SEED=0)*"])
