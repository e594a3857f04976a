"""The whole optimizer overhead of one SAM, SL-SAM and BAR step, without forward or backward:
the gradients of both passes are prebuilt tensors attached to ``.grad`` (a pointer swap, the
same for every method), so the rows time first_step + second_step alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from slsam_kernels import BAR, SAM, SLSAM

from .cases import Case, Method, tolerance_for
from .kernel_cases import our_backends
from .peers import AuthorsSLSAM, LoopSAM, pytorch_optimizer_sam
from .workload import Workload, adam_eps

BASE = torch.optim.AdamW
# lr 0.05: an update larger than one bf16 unit in the last place, so verification sees it.
BASE_OPTIONS = {"lr": 0.05, "weight_decay": 0.01}
# Bytes a SAM step must move per active element: norms read g (1), perturb reads w, g and
# writes backup, w (4), restore + AdamW reads backup, g, m, v and writes w, m, v (7).
STEP_STREAMS = 12


class _ActiveBytes:
    """Counts the active bytes of each step (SL-SAM's active set changes every step)."""

    def __init__(self) -> None:
        self.calls = 0
        self.total = 0

    def mean(self) -> float:
        return STEP_STREAMS * self.total / max(self.calls, 1)


def _two_pass_step(opt: Any, w: Workload, stats: _ActiveBytes | None) -> Callable[[], None]:
    params, grads, grads2 = w.params, w.grads, w.grads2
    nbytes = [p.numel() * p.element_size() for p in params]

    def step() -> None:
        active = 0
        for p, g, size in zip(params, grads, nbytes):
            if p.requires_grad:
                p.grad = g
                active += size
        opt.first_step(zero_grad=True)
        for p, g in zip(params, grads2):
            if p.requires_grad:
                p.grad = g
        opt.second_step(zero_grad=True)
        if stats is not None:
            stats.calls += 1
            stats.total += active

    return step


def _one_pass_setup(
    make: Callable[[], torch.optim.Optimizer], w: Workload, grads: list[torch.Tensor]
) -> Callable[[], tuple[Callable[[], None], Callable[[Any], list[torch.Tensor]]]]:
    """A method's setup: an optimizer from ``make`` stepping once per call with ``grads``
    attached (the base optimizers alone, BAR)."""

    def setup():
        opt = make()

        def step() -> None:
            for p, g in zip(w.params, grads):
                p.grad = g
            opt.step()
            opt.zero_grad()

        return step, _params_out(w)

    return setup


def _reset(w: Workload, snapshot: list[torch.Tensor]) -> Callable[[], None]:
    def reset() -> None:
        with torch.no_grad():
            for p, s in zip(w.params, snapshot):
                p.data = s.clone()
                p.requires_grad_(True)
                p.grad = None

    return reset


def _params_out(w: Workload) -> Callable[[Any], list[torch.Tensor]]:
    return lambda _: [p.data for p in w.params]


def _case(w: Workload, op: str, methods: list[Method], reset, interleave: bool) -> Case:
    return Case(
        op=op,
        workload=w.label,
        dtype=w.dtype,
        fraction=w.fraction,
        active_numel_fraction=w.active_numel_fraction,
        num_tensors=len(w.params),
        numel=w.numel,
        bytes_moved=STEP_STREAMS * sum(p.numel() * p.element_size() for p in w.params),
        methods=methods,
        reset=reset,
        tolerance=tolerance_for(w.dtype),
        interleave=interleave,
    )


def sam_step_case(w: Workload, device: torch.device) -> Case:
    """One SAM + AdamW step over every tensor: ours, the peers, and AdamW alone (no SAM)
    for the base cost. With the second-pass gradients fixed, all end at the same weights."""
    snapshot = [p.detach().clone() for p in w.params]
    outputs = _params_out(w)
    options = {**BASE_OPTIONS, "eps": adam_eps(w.dtype)}

    def wrapper(make: Callable[[], Any]):
        def setup():
            return _two_pass_step(make(), w, None), outputs

        return setup

    # AdamW alone reads w, g, m, v and writes w, m, v.
    base_bytes = 7 * sum(p.numel() * p.element_size() for p in w.params)

    def base_only(flags: dict[str, Any]):
        return _one_pass_setup(lambda: BASE(w.params, **options, **flags), w, w.grads2)

    methods = [
        Method(
            "reference",
            "reference",
            wrapper(lambda: SAM(w.params, BASE, backend="reference", **options)),
        )
    ]
    for name in our_backends(device):
        methods.append(
            Method(
                f"ours:{name}",
                "ours",
                wrapper(lambda name=name: SAM(w.params, BASE, backend=name, **options)),
            )
        )
        if device.type == "cpu":
            # the base optimizer's fused=True numerics (rounded at the stores)
            methods.append(
                Method(
                    f"ours:{name} fused=True",
                    "ours",
                    wrapper(
                        lambda name=name: SAM(w.params, BASE, backend=name, fused=True, **options)
                    ),
                )
            )
    peer = pytorch_optimizer_sam()
    if peer is not None:
        methods.append(
            Method(
                "pytorch-optimizer SAM",
                "baseline",
                wrapper(lambda: peer(w.params, BASE, **options)),
            )
        )
    methods += [
        Method(
            "davda54-style loop",
            "baseline",
            wrapper(lambda: LoopSAM(w.params, BASE, **options)),
        ),
        Method("AdamW alone (no SAM)", "baseline", base_only({}), lambda: base_bytes),
        Method(
            "AdamW fused alone (no SAM)", "baseline", base_only({"fused": True}), lambda: base_bytes
        ),
    ]
    # pytorch-optimizer's SAM and the loop rebind p.data, so the reset rebinds too.
    return _case(w, "SAM step", methods, _reset(w, snapshot), interleave=True)


def slsam_step_case(w: Workload, device: torch.device) -> Case:
    """One SL-SAM + AdamW step at ``sample_ratio = w.fraction``: ours against the authors'
    style. Verified from the same imposed active set (``w.active``); timed with each method
    drawing its own sets, one method at a time (they toggle the same requires_grad flags)."""
    snapshot = [p.detach().clone() for p in w.params]
    mask = torch.zeros(len(w.params), dtype=torch.bool)
    mask[w.active] = True
    s = w.fraction
    options = {**BASE_OPTIONS, "eps": adam_eps(w.dtype)}
    built: list[SLSAM] = []  # an SLSAM holds the flags until the next method's reset

    def reset() -> None:
        while built:
            built.pop().release()
        _reset(w, snapshot)()

    def ours(backend: str, stats: _ActiveBytes):
        def setup():
            opt = SLSAM(w.params, BASE, sample_ratio=s, seed=0, backend=backend, **options)
            built.append(opt)
            opt.sample(mask)
            return _two_pass_step(opt, w, stats), lambda _: [
                *(p.data for p in w.params),
                opt.probs,
            ]

        return setup

    def authors(stats: _ActiveBytes):
        def setup():
            opt = AuthorsSLSAM(w.params, BASE, sample_ratio=s, seed=0, mask=mask.numpy(), **options)
            return _two_pass_step(opt, w, stats), lambda _: [
                *(p.data for p in w.params),
                torch.from_numpy(opt.probs).float(),
            ]

        return setup

    methods = []
    for name, role in [("reference", "reference")] + [(b, "ours") for b in our_backends(device)]:
        stats = _ActiveBytes()
        label = name if role == "reference" else f"ours:{name}"
        methods.append(Method(label, role, ours(name, stats), stats.mean))
    stats = _ActiveBytes()
    methods.append(Method("authors-style SL-SAM", "baseline", authors(stats), stats.mean))
    case = _case(w, "SL-SAM step", methods, reset, interleave=False)
    case.notes = "bytes from the mean active set of the timed steps"
    # The bandit amplifies norm rounding: the reward's (n / p)^2 terms are ~1e5 here, so a
    # 1e-7 relative change in a norm (summation order) moves a probability by ~1e-4.
    case.last_tolerance = (1e-3, 1e-6)
    return case


# BAR + AdamW reads g for the norms (1) and then runs AdamW's 7 streams with the rescale inside.
BAR_STREAMS = 8
BAR_MU = 0.5


def bar_step_case(w: Workload, device: torch.device) -> Case:
    """One BAR (nBAR) + AdamW step over a LoRA list whose consecutive tensors are the pairs,
    against AdamW alone (torch's default and ``fused=True``): what BAR adds to a step."""
    snapshot = [p.detach().clone() for p in w.params]
    options = {**BASE_OPTIONS, "eps": adam_eps(w.dtype)}
    pairs = list(zip(w.params[0::2], w.params[1::2], strict=True))
    tensor_bytes = sum(p.numel() * p.element_size() for p in w.params)

    def stepping(make: Callable[[], torch.optim.Optimizer]):
        return _one_pass_setup(make, w, w.grads)

    def bar(backend: str):
        return stepping(lambda: BAR(w.params, BASE, pairs, mu=BAR_MU, backend=backend, **options))

    methods = [Method("reference", "reference", bar("reference"))]
    methods += [Method(f"ours:{name}", "ours", bar(name)) for name in our_backends(device)]
    for label, flags in (("AdamW alone (no BAR)", {}), ("AdamW fused alone", {"fused": True})):
        methods.append(
            Method(
                label,
                "baseline",
                stepping(lambda flags=flags: BASE(w.params, **options, **flags)),
                lambda: 7 * tensor_bytes,
                comparable=False,
            )
        )
    case = _case(w, "BAR step", methods, _reset(w, snapshot), interleave=True)
    case.bytes_moved = BAR_STREAMS * tensor_bytes
    case.notes = f"nBAR, mu {BAR_MU}, constant schedule; pairs: consecutive tensors"
    return case
