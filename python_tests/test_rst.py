"""RST: a SAM step with probability sam_prob, else a plain base step without the closure."""

import io

import torch
from builders import loss_of, make_batches, make_model, train

from slsam_kernels import RST, SAM


def run_rst(model, batches, **kwargs):
    opt = RST(model.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9, **kwargs)
    calls, kinds = [], []
    for i, batch in enumerate(batches):
        loss_of(model, batch).backward()

        def closure(batch=batch, i=i):
            calls.append(i)
            return loss_of(model, batch).backward()

        opt.step(closure)
        kinds.append(opt.last_step_was_sam)
        opt.zero_grad()
    return opt, calls, kinds


def test_always_sam_equals_sam():
    batches = make_batches(4)
    sam_model, rst_model = make_model(), make_model()
    train(sam_model, SAM(sam_model.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9), batches)
    _, calls, _ = run_rst(rst_model, batches, sam_prob=1.0, seed=0)
    assert calls == [0, 1, 2, 3]
    for a, b in zip(sam_model.parameters(), rst_model.parameters()):
        assert torch.equal(a, b)


def test_never_sam_equals_the_base_optimizer_and_skips_the_closure():
    batches = make_batches(4)
    base_model, rst_model = make_model(), make_model()
    base = torch.optim.SGD(base_model.parameters(), lr=0.1, momentum=0.9)
    for batch in batches:
        loss_of(base_model, batch).backward()
        base.step()
        base.zero_grad()
    _, calls, kinds = run_rst(rst_model, batches, sam_prob=0.0, seed=0)
    assert calls == [] and kinds == [False] * 4
    for a, b in zip(base_model.parameters(), rst_model.parameters()):
        assert torch.equal(a, b)


def test_schedule_sees_the_step_index_and_coin_flips_are_seeded():
    seen = []

    def schedule(step):
        seen.append(step)
        return 0.5

    _, calls, kinds = run_rst(make_model(), make_batches(40), sam_prob=schedule, seed=7)
    _, calls_again, _ = run_rst(make_model(), make_batches(40), sam_prob=0.5, seed=7)
    assert seen == list(range(40))
    assert calls == calls_again == [i for i, sam in enumerate(kinds) if sam]
    assert 8 <= len(calls) <= 32


def test_state_dict_carries_the_coin_and_the_step_index():
    model = make_model()
    opt, _, _ = run_rst(model, make_batches(3), sam_prob=0.5, seed=1)
    saved = io.BytesIO()
    torch.save(opt.state_dict(), saved)
    flips = [torch.rand((), dtype=torch.float64, generator=opt._generator).item() for _ in range(5)]
    saved.seek(0)
    resumed = RST(model.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9, seed=99)
    resumed.load_state_dict(torch.load(saved))
    assert resumed.step_index == 3
    again = [
        torch.rand((), dtype=torch.float64, generator=resumed._generator).item() for _ in range(5)
    ]
    assert flips == again
