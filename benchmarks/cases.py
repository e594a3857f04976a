"""What a benchmark case is, and how one is run: every method verified against the first
(the reference) once from the same state, then its launches counted and timed."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .measure import Timing, count_launches, peak_extra_mib, time_interleaved

# (rtol, atol) per dtype: summation order (fp32); in bf16/fp16 a fused kernel may round once
# where torch's for-loop rounds twice, one unit in the last place of operands up to ~4 in
# magnitude. The optimizer rows use lr 0.05 so that an update (0.05) exceeds these.
TOLERANCES = {
    torch.float32: (1e-4, 1e-6),
    torch.bfloat16: (2e-2, 3e-2),
    torch.float16: (2e-3, 4e-3),
}

Outputs = Callable[[Any], list[torch.Tensor]]


@dataclass
class Method:
    """One way to run a case. ``setup()`` builds the method's fresh state (after the case's
    reset) and returns the timed callable and a function from its result to the outputs to
    compare. ``role``: "reference", "ours" or "baseline". ``nbytes`` overrides the case's
    bytes per call (SL-SAM steps, whose active set varies)."""

    name: str
    role: str
    setup: Callable[[], tuple[Callable[[], Any], Outputs]]
    nbytes: Callable[[], float] | None = None
    #: False for a baseline that computes something else (the cost it is compared with,
    #: e.g. AdamW alone beside BAR + AdamW): timed, not verified; its row reads "n/a".
    comparable: bool = True


@dataclass
class Case:
    """One row group: an operation on one tensor list, dtype and active fraction."""

    op: str
    workload: str
    dtype: str
    fraction: float
    active_numel_fraction: float
    num_tensors: int
    numel: int
    bytes_moved: float | None  # the bytes the operation must move per call; None: not a stream
    methods: list[Method]
    reset: Callable[[], None]
    tolerance: tuple[float, float]
    interleave: bool = True  # False: methods share flags (requires_grad) and run one at a time
    last_tolerance: tuple[float, float] | None = None  # for the last output, when it differs
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class VerificationError(AssertionError):
    pass


def tolerance_for(dtype: str) -> tuple[float, float]:
    from .workload import DTYPES

    return TOLERANCES[torch.bfloat16 if dtype == "mixed" else DTYPES[dtype]]


def check_outputs(
    name: str,
    got: list[torch.Tensor],
    want: list[torch.Tensor],
    tol: tuple[float, float],
    last_tol: tuple[float, float] | None = None,
) -> None:
    if len(got) != len(want):
        raise VerificationError(f"{name}: {len(got)} outputs, the reference gave {len(want)}")
    for i, (g, w) in enumerate(zip(got, want)):
        rtol, atol = last_tol if last_tol is not None and i == len(got) - 1 else tol
        if g.dtype == torch.bool or w.dtype == torch.bool:
            same = torch.equal(g.cpu(), w.cpu())
            if not same:
                raise VerificationError(f"{name}: output {i} (a mask) differs from the reference")
            continue
        # On the outputs' device: on a GPU, copying a 1.3B-element list to the host and
        # comparing it there takes seconds per method.
        g, w = g.detach().float(), w.detach().float().to(g.device)
        if g.shape != w.shape:
            raise VerificationError(
                f"{name}: output {i} has shape {tuple(g.shape)}, the reference {tuple(w.shape)}"
            )
        bad = ~torch.isclose(g, w, rtol=rtol, atol=atol, equal_nan=True)
        if bool(bad.any()):
            worst = float((g - w).abs().nan_to_num(nan=float("inf"))[bad].max())
            raise VerificationError(
                f"{name}: output {i} differs from the reference in {int(bad.sum())} of "
                f"{g.numel()} elements, by up to {worst:.3g} (allowed {atol:g} + {rtol:g} x |ref|)"
            )


def run_case(case: Case, rounds: int, device: torch.device) -> list[dict[str, Any]]:
    """Verify, count and time every method of ``case``; one row dict per method."""
    rows: dict[str, dict[str, Any]] = {}
    fns: dict[str, Callable[[], Any]] = {}
    timings: dict[str, Timing] = {}
    reference: list[torch.Tensor] | None = None
    for method in case.methods:
        row = rows[method.name] = {"method": method.name, "role": method.role, "error": ""}
        try:
            case.reset()
            fn, outputs = method.setup()
            result: list[Any] = []
            row["extra_peak_mib"] = peak_extra_mib(
                lambda fn=fn, out=result: out.append(fn()), device
            )
            got = [t.detach().clone() for t in outputs(result[0])]
            if reference is None:
                reference = got
            elif method.comparable:
                check_outputs(method.name, got, reference, case.tolerance, case.last_tolerance)
            row["verified"] = True if method.comparable else "n/a"
            row["launches"] = count_launches(fn, device)
            if case.interleave:
                fns[method.name] = fn
            else:
                timings[method.name] = time_interleaved({method.name: fn}, rounds, device)[
                    method.name
                ]
        except Exception as exc:  # a failing method is reported in its row, not fatal
            row["verified"] = False
            row["error"] = f"{type(exc).__name__}: {exc}"
            # a disagreement is a finding, listed in one line at the end of the run; any
            # other exception is a crash, shown whole
            if not isinstance(exc, VerificationError):
                traceback.print_exc()
            if reference is None:
                break  # no reference, nothing to verify against
    if fns:
        timings.update(time_interleaved(fns, rounds, device))
    case.reset()  # leave the shared tensors as the case found them, for the next case
    out = []
    for method in case.methods:
        row = rows.get(method.name)
        if row is None:
            continue
        timing = timings.get(method.name)
        nbytes = method.nbytes() if method.nbytes is not None else case.bytes_moved
        row.update(
            op=case.op,
            workload=case.workload,
            dtype=case.dtype,
            fraction=case.fraction,
            active_numel_fraction=case.active_numel_fraction,
            num_tensors=case.num_tensors,
            numel=case.numel,
            bytes_moved=nbytes,
            notes=case.notes,
            **case.extra,
        )
        if timing is not None:
            row.update(
                median_s=timing.median,
                p25_s=timing.p25,
                p75_s=timing.p75,
                min_s=timing.min,
                max_s=timing.max,
                samples=timing.samples,
                gb_per_s=None if not nbytes else nbytes / timing.median / 1e9,
            )
        out.append(row)
    return out
