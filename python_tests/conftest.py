"""Test-session set-up: Triton's interpreter on machines without CUDA, and one seed per test.

Without CUDA, Triton kernels run in triton's interpreter; it must be on before triton is
imported, which is why this is set at collection time rather than in a fixture.

Every test runs with Python's and torch's global random streams seeded from its own node id
(plus ``SLSAM_TEST_SEED``, default 0), so a run is repeatable test by test, whatever runs
before it; a failing test's report names its seed.
"""

import os
import random
import zlib

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

SEED_ENV = "SLSAM_TEST_SEED"
_SEED_KEY = pytest.StashKey[int]()


def seed_for(nodeid: str) -> int:
    """The seed of the test ``nodeid``: stable across runs, different for every test."""
    return (zlib.crc32(nodeid.encode()) + int(os.environ.get(SEED_ENV, "0"))) % 2**31


@pytest.fixture(autouse=True)
def test_seed(request: pytest.FixtureRequest) -> int:
    """Seed Python's ``random`` and torch's default generators for this test; the seed."""
    seed = seed_for(request.node.nodeid)
    request.node.stash[_SEED_KEY] = seed
    random.seed(seed)
    torch.manual_seed(seed)
    return seed


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed and _SEED_KEY in item.stash:
        report.sections.append(
            (
                "random seed",
                f"this test ran with seed {item.stash[_SEED_KEY]} "
                f"({SEED_ENV}={os.environ.get(SEED_ENV, '0')}); the same command reruns it",
            )
        )
    return report
