"""torch.compile per block with one SL-SAM arm per block: few graphs, no recompile storm,
the eager trajectory. (A whole-model compile sees up to 2^N requires_grad patterns and hits
Dynamo's recompile limit: benchmarks/compile_recompiles.py measures it.)"""

import logging

import pytest
import torch
from torch._dynamo.utils import counters

from slsam_kernels import SLSAM

pytestmark = pytest.mark.compile

STEPS = 12


def blocks_model():
    torch.manual_seed(0)
    blocks = [torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh()) for _ in range(4)]
    return torch.nn.Sequential(torch.nn.Linear(5, 8), *blocks, torch.nn.Linear(8, 3))


def run(compiled):
    model = blocks_model()
    opt = SLSAM(
        model.parameters(), torch.optim.SGD, lr=0.1, seed=0, sample_ratio=0.5, arms=list(model)
    )
    if compiled:
        for i, block in enumerate(model):
            model[i] = torch.compile(block, backend="aot_eager")
    gen = torch.Generator().manual_seed(1)
    for _ in range(STEPS):
        x, y = torch.randn(16, 5, generator=gen), torch.randint(0, 3, (16,), generator=gen)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step(lambda x=x, y=y: torch.nn.functional.cross_entropy(model(x), y).backward())
        opt.zero_grad()
    return model


def test_per_block_compile_with_block_arms_compiles_a_few_graphs(caplog):
    torch._dynamo.reset()
    counters.clear()
    with caplog.at_level(logging.WARNING, logger="torch._dynamo"):
        compiled = run(compiled=True)
    graphs = counters["stats"]["unique_graphs"]
    # A block sees at most 4 variants (its arm on/off x its input requiring grad or not) and
    # the 4 middle blocks share them: 8 graphs measured. Per-tensor arms hit the limit here.
    assert 0 < graphs <= 12
    assert "recompile_limit" not in caplog.text
    eager = run(compiled=False)
    for a, b in zip(compiled.parameters(), eager.parameters()):
        torch.testing.assert_close(a, b)
