"""The kernel rows: per-tensor norms, bandit update + sample, perturb + backup, restore and
fused restore + AdamW / SGD, each against the reference path, torch ``_foreach_*`` grouped by
dtype, torch's fused optimizers and the peers' per-tensor loops."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from slsam_kernels import ops
from slsam_kernels.backends import reference
from slsam_kernels.ops import registry

from .cases import Case, Method, tolerance_for
from .peers import numpy_bandit_update, numpy_sample
from .workload import Workload, adam_eps, with_fraction

SCALE = 1e-3  # the ascent scale rho / ||g||; any small value


def our_backends(device: torch.device) -> list[str]:
    """The fast backends that run on ``device`` here (the reference excluded)."""
    names = []
    for name in ("cpp", "triton", "cuda"):
        status = registry.status(name)
        if status.available and device.type in status.device_types:
            names.append(name)
    return names


def by_dtype(tensors: Sequence[torch.Tensor]) -> dict[torch.dtype, list[int]]:
    groups: dict[torch.dtype, list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault(t.dtype, []).append(i)
    return groups


def _case(w: Workload, op: str, streams: float | None, methods, reset, **kw: Any) -> Case:
    return Case(
        op=op,
        workload=w.label,
        dtype=w.dtype,
        fraction=w.fraction,
        active_numel_fraction=w.active_numel_fraction,
        num_tensors=len(w.active),
        numel=sum(w.params[i].numel() for i in w.active),
        bytes_moved=None if streams is None else streams * w.active_bytes(),
        methods=methods,
        reset=reset,
        tolerance=tolerance_for(w.dtype),
        **kw,
    )


def _fixed(fn: Callable[[], Any], outputs: Callable[[Any], list[torch.Tensor]]):
    return lambda: (fn, outputs)


def norms_case(w: Workload, device: torch.device, adaptive: bool = False) -> Case:
    """``||g_i||^2``, or with ``adaptive`` ASAM's ``||w_i * g_i||^2``."""
    grads = w.active_grads
    weights = [p.detach() for p in w.active_params] if adaptive else None
    groups = by_dtype(grads)

    def operands(idx: list[int]) -> list[torch.Tensor]:
        gs = [grads[i] for i in idx]
        return torch._foreach_mul(gs, [weights[i] for i in idx]) if weights else gs

    def foreach() -> torch.Tensor:
        out = torch.empty(len(grads), dtype=torch.float32, device=device)
        for idx in groups.values():
            out[idx] = torch.stack(torch._foreach_norm(operands(idx))).float() ** 2
        return out

    def loop() -> torch.Tensor:
        xs = [g * weights[i] if weights else g for i, g in enumerate(grads)]
        return torch.stack([x.norm(p=2).float() for x in xs]) ** 2

    def as_list(r: torch.Tensor) -> list[torch.Tensor]:
        return [r]

    methods = [
        Method(
            "reference",
            "reference",
            _fixed(lambda: reference.grad_sqnorms(grads, weights), as_list),
        )
    ]
    for name in our_backends(device):
        bound = ops.bind(name, device)
        methods.append(
            Method(
                f"ours:{name}",
                "ours",
                _fixed(lambda b=bound: b.grad_sqnorms(grads, weights), as_list),
            )
        )
    methods += [
        Method("torch foreach", "baseline", _fixed(foreach, as_list)),
        Method("per-tensor loop", "baseline", _fixed(loop, as_list)),
    ]
    op = "grad_sqnorms |w*g| (ASAM)" if adaptive else "grad_sqnorms"
    case = _case(w, op, 2 if adaptive else 1, methods, lambda: None)
    if w.dtype == "fp32":
        # torch's Tensor.norm / _foreach_norm accumulate a 16M-element fp32 tensor with up to
        # 1.3e-3 relative error in the square (measured on huge_and_tiny); the reference sums
        # (x * x) with torch's cascade sum.
        case.tolerance = (5e-3, 1e-6)
    return case


def perturb_case(w: Workload, device: torch.device) -> Case:
    params, grads = w.active_params, w.active_grads
    snapshot = [p.detach().clone() for p in params]
    backups = [torch.zeros_like(p) for p in params]
    scales = torch.full((len(params),), SCALE, device=device)
    scale = torch.tensor(SCALE, device=device)
    groups = by_dtype(params)
    data = [p.data for p in params]

    def reset() -> None:
        for d, s, b in zip(data, snapshot, backups):
            d.copy_(s)
            b.zero_()

    def outputs(result: Any) -> list[torch.Tensor]:
        # the per-tensor loop returns its clones; the others fill ``backups`` (the reference
        # returns the positions it declined: none)
        return [*data, *(result or backups)]

    def foreach() -> None:
        for idx in groups.values():
            ps = [data[i] for i in idx]
            torch._foreach_copy_([backups[i] for i in idx], ps)
            torch._foreach_add_(ps, torch._foreach_mul([grads[i] for i in idx], scale))

    def loop() -> list[torch.Tensor]:
        # davda54/sam: old_p = p.data.clone(); p.add_(g * scale)
        old = []
        for p, g in zip(data, grads):
            old.append(p.clone())
            p.add_(g * scale.to(p))
        return old

    methods = [
        Method(
            "reference",
            "reference",
            _fixed(lambda: reference.perturb_(data, grads, backups, scales), outputs),
        )
    ]
    for name in our_backends(device):
        bound = ops.bind(name, device)
        methods.append(
            Method(
                f"ours:{name}",
                "ours",
                _fixed(lambda b=bound: b.perturb_(data, grads, backups, scales, False), outputs),
            )
        )
    methods += [
        Method("torch foreach", "baseline", _fixed(foreach, outputs)),
        Method("per-tensor loop (clone)", "baseline", _fixed(loop, outputs)),
    ]
    return _case(w, "perturb_+backup", 4, methods, reset)


def restore_case(w: Workload, device: torch.device) -> Case:
    data = [p.data for p in w.active_params]
    backups = [w.grads2[i] for i in w.active]  # any other values: restore copies them back
    snapshot = [d.clone() for d in data]
    groups = by_dtype(data)

    def reset() -> None:
        for d, s in zip(data, snapshot):
            d.copy_(s)

    def outputs(_: Any) -> list[torch.Tensor]:
        return data

    def foreach() -> None:
        for idx in groups.values():
            torch._foreach_copy_([data[i] for i in idx], [backups[i] for i in idx])

    def loop() -> None:
        for d, b in zip(data, backups):
            d.copy_(b)

    methods = [
        Method("reference", "reference", _fixed(lambda: reference.restore_(data, backups), outputs))
    ]
    for name in our_backends(device):
        bound = ops.bind(name, device)
        methods.append(
            Method(
                f"ours:{name}", "ours", _fixed(lambda b=bound: b.restore_(data, backups), outputs)
            )
        )
    methods += [
        Method("torch foreach", "baseline", _fixed(foreach, outputs)),
        Method("per-tensor loop", "baseline", _fixed(loop, outputs)),
    ]
    case = _case(w, "restore_", 2, methods, reset)
    case.tolerance = (0.0, 0.0)  # bit-exact
    return case


OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any], int]] = {
    # name -> (class, options, streams): AdamW reads w~, g, m, v and writes w, m, v; SGD with
    # momentum reads w~, g, buf and writes w, buf.
    "AdamW": (torch.optim.AdamW, {"lr": 0.05, "weight_decay": 0.01}, 7),
    "SGD": (torch.optim.SGD, {"lr": 0.05, "momentum": 0.9}, 5),
}


def fused_step_case(w: Workload, device: torch.device, optimizer: str) -> Case:
    cls, options, streams = OPTIMIZERS[optimizer]
    if cls is torch.optim.AdamW:
        options = {**options, "eps": adam_eps(w.dtype)}
    params = w.active_params
    grads2 = [w.grads2[i] for i in w.active]
    backups = [w.grads[i] for i in w.active]  # the weights before the ascent: any values
    snapshot = [p.detach().clone() for p in params]
    groups = by_dtype(params)

    def reset() -> None:
        with torch.no_grad():
            for p, s, g in zip(params, snapshot, grads2):
                p.copy_(s)
                p.grad = g

    def outputs(_: Any) -> list[torch.Tensor]:
        return [p.data for p in params]

    def restore_then_step(flags: dict[str, Any], restore: Callable[[], None]):
        def setup():
            opt = cls(params, **options, **flags)

            def step() -> None:
                restore()
                opt.step()

            return step, outputs

        return setup

    def foreach_restore() -> None:
        for idx in groups.values():
            torch._foreach_copy_([params[i].data for i in idx], [backups[i] for i in idx])

    def ref_restore() -> None:
        reference.restore_([p.data for p in params], backups)

    def fused_setup(bound: ops.BoundOps, flags: dict[str, Any]):
        def setup():
            opt = cls(params, **options, **flags)

            def step() -> None:
                if not bound.fused_restore_step(opt, params, backups):
                    raise RuntimeError(f"{bound.name}: the fused step declined this configuration")

            return step, outputs

        return setup

    def fused_alone() -> tuple[Callable[[], Any], Callable[[Any], list[torch.Tensor]]]:
        # torch's fused step in place over tensors that already hold what the restore leaves
        stepped = [b.clone() for b in backups]
        for s, g in zip(stepped, grads2):
            s.grad = g
        return cls(stepped, **options, fused=True).step, lambda _: stepped

    methods = [Method("reference", "reference", restore_then_step({"foreach": False}, ref_restore))]
    for name in our_backends(device):
        bound = ops.bind(name, device)
        methods.append(Method(f"ours:{name}", "ours", fused_setup(bound, {})))
        if cls is torch.optim.AdamW and device.type == "cpu":
            # torch's fused=True numerics (rounded at the stores), beside torch's own
            methods.append(
                Method(f"ours:{name} fused=True", "ours", fused_setup(bound, {"fused": True}))
            )
    methods += [
        Method("torch foreach", "baseline", restore_then_step({"foreach": True}, foreach_restore)),
        Method("torch fused", "baseline", restore_then_step({"fused": True}, foreach_restore)),
        Method("torch fused alone (no restore)", "baseline", fused_alone),
    ]
    return _case(w, f"restore+{optimizer}", streams, methods, reset)


def bandit_case(w: Workload, device: torch.device) -> Case:
    if w.fraction >= 1.0:
        # At 100% the budget is every arm and the projection pins each probability to 1:
        # nothing to time. Use the paper's s = 0.2 (22% of the tensors active) instead.
        w = with_fraction(w, 0.22)
    n = len(w.params)
    active_idx = torch.tensor(w.active, dtype=torch.int64)
    norms = torch.stack([g.float().norm() for g in w.active_grads])
    budget = w.fraction * n

    def our_setup(bound):
        def setup():
            probs = torch.full((n,), w.fraction, dtype=torch.float32, device=bound.bandit_device)
            idx = active_idx.to(bound.bandit_device)
            gen = torch.Generator().manual_seed(0)  # a host generator, as SLSAM holds

            def step():
                new = bound.bandit_update(probs, norms.to(bound.bandit_device), idx, budget)
                return new, bound.sample_active(new, gen)

            return step, lambda r: [r[0].float().cpu()]

        return setup

    def numpy_setup():
        probs = np.full(n, w.fraction)
        rng = np.random.default_rng(0)
        idx = active_idx.numpy()

        def step():
            new = numpy_bandit_update(probs, idx, norms.cpu().numpy(), budget)
            return new, numpy_sample(new, rng)

        return step, lambda r: [torch.from_numpy(r[0]).float()]

    methods = [Method("reference", "reference", our_setup(ops.bind("reference", device)))]
    for name in our_backends(device):
        bound = ops.bind(name, device)
        if bound.bandit_update is not reference.bandit_update:  # its own kernels
            methods.append(Method(f"ours:{name}", "ours", our_setup(bound)))
    methods.append(Method("authors numpy", "baseline", numpy_setup))
    case = _case(w, "bandit_update+sample", None, methods, lambda: None)
    # fp32 on a device against float64 on the host: the reward's (n / p)^2 terms are large,
    # so their rounding moves a probability by up to ~1e-4 relative.
    case.tolerance = (1e-3, 1e-6)
    case.num_tensors = n
    return case


KERNEL_OPS: dict[str, Callable[[Workload, torch.device], Case]] = {
    "grad_sqnorms": norms_case,
    "grad_sqnorms_asam": lambda w, d: norms_case(w, d, adaptive=True),
    "bandit": bandit_case,
    "perturb": perturb_case,
    "restore": restore_case,
    "restore+AdamW": lambda w, d: fused_step_case(w, d, "AdamW"),
    "restore+SGD": lambda w, d: fused_step_case(w, d, "SGD"),
}
