"""Would SAM's first-pass gradient norms be cheaper inside the backward? Times, on a real
forward/backward, today's path (backward, then one multi-tensor ``grad_sqnorms`` launch over
every gradient) against norms taken in a post-accumulate-grad hook as each gradient becomes
final (one ``grad_sqnorms`` call per tensor, while its gradient is fresh in cache).

    PYTHONPATH=. python -m benchmarks.norms_in_backward [--model cpu-small] [--rounds 9]

The two forms alternate round by round in one process. Each times its norm work alone (the
launch after the backward; the hooks' own time inside it) beside the backward's: both read
each gradient once, so what the hooks can save is the re-read from memory of gradients that
left the cache, against one call per tensor.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from slsam_kernels.backends.cpp.kernels import grad_sqnorms

from . import e2e
from .run import machine


class _Forms:
    """The two ways to get the first pass's norms, each timing only its norm work."""

    def __init__(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> None:
        self.model, self.batch = model, batch
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.in_hook: list[torch.Tensor] = []
        self.hook_seconds = 0.0

    def _backward(self) -> float:
        self.model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        self.model(**self.batch).loss.backward()
        return time.perf_counter() - start

    def _record(self, p: torch.Tensor) -> None:
        start = time.perf_counter()
        self.in_hook.append(grad_sqnorms([p.grad]))
        self.hook_seconds += time.perf_counter() - start

    def after(self) -> tuple[torch.Tensor, float, float]:
        """(norms, backward seconds, norm seconds): one launch over every gradient."""
        backward = self._backward()
        start = time.perf_counter()
        norms = grad_sqnorms([p.grad for p in self.params])
        return norms, backward, time.perf_counter() - start

    def inside(self) -> tuple[torch.Tensor, float, float]:
        """(norms, backward seconds with the hooks, seconds spent in the hooks)."""
        self.in_hook.clear()
        self.hook_seconds = 0.0
        handles = [p.register_post_accumulate_grad_hook(self._record) for p in self.params]
        try:
            backward = self._backward()
        finally:
            for h in handles:
                h.remove()
        return torch.cat(self.in_hook), backward, self.hook_seconds


def measure(model_name: str, rounds: int) -> list[dict[str, float | str]]:
    """Median milliseconds of each form's backward and norm work over ``rounds`` rounds, the
    forms alternating (which goes first alternates too)."""
    cfg = e2e.CONFIGS[model_name]
    model = e2e.build_model(cfg, torch.device("cpu"))
    forms = _Forms(model, e2e.make_batch(cfg, torch.device("cpu")))
    after, inside = forms.after()[0], forms.inside()[0]
    if not torch.equal(after.sort().values, inside.sort().values):
        raise RuntimeError("the two forms' norms differ: the comparison would be meaningless")
    runs = {
        "norms after the backward (one launch)": forms.after,
        "norms in the backward's hooks": forms.inside,
    }
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for r in range(rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            _, backward, norms = runs[name]()
            samples[name].append((1e3 * backward, 1e3 * norms))
    grad_mib = sum(p.numel() * p.element_size() for p in forms.params) / 2**20
    return [
        {
            "form": name,
            "backward ms": statistics.median(b for b, _ in s),
            "norm ms": statistics.median(n for _, n in s),
            "norms read, MiB": grad_mib,
        }
        for name, s in samples.items()
    ]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="cpu-small", choices=sorted(e2e.CONFIGS))
    p.add_argument("--rounds", type=int, default=9)
    args = p.parse_args(argv)
    rows = measure(args.model, args.rounds)
    meta = machine(torch.device("cpu"))
    print(
        f"{meta['device_name']}, {meta['threads']} torch threads, torch "
        f"{meta['versions']['torch']}, git {meta['git_rev']}, load {meta['load_average']}; "
        f"{args.model}, {args.rounds} rounds"
    )
    print("| form | backward, median ms | norm work, median ms | gradients read, MiB |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['form']} | {r['backward ms']:.1f} | {r['norm ms']:.2f} | "
            f"{r['norms read, MiB']:.1f} |"
        )


if __name__ == "__main__":
    main()
