"""The fused restore + step as data: what :func:`slsam_kernels.ops.fused_plan.plan` decides
and a backend's ``launch_fused`` launches (the planner's rules live in ``ops``; this is only
the layout the kernels read)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

# Column order of the coefficient table (``AdamScalars``/``SgdScalars`` in
# csrc/common/elementwise.h; the Triton kernels read the same layout).
ADAM_COLUMNS = (
    "decay",
    "l2",
    "lerp_weight",
    "beta2",
    "one_minus_beta2",
    "bias_correction2_sqrt",
    "eps",
    "neg_step_size",
    "prescale",
    "round_once",
)
SGD_COLUMNS = (
    "weight_decay",
    "momentum",
    "one_minus_dampening",
    "neg_lr",
    "nesterov",
    "first_step",
    "prescale",
)


@dataclass
class FusedPlan:
    """What a backend launches: the stepped tensors in kernel order, one coefficient row per
    stepped tensor (columns :data:`ADAM_COLUMNS` or :data:`SGD_COLUMNS`), and the pairs to
    restore only. Adam plans fill ``exp_avgs``, ``exp_avg_sqs`` and ``steps`` (the backend
    adds 1 to each step after the update); SGD plans fill ``momentum_buffers`` (None where the
    group has no momentum)."""

    kind: str
    state: dict[torch.Tensor, dict[str, Any]]
    params: list[torch.Tensor] = field(default_factory=list)
    grads: list[torch.Tensor] = field(default_factory=list)
    backups: list[torch.Tensor] = field(default_factory=list)
    coefficients: list[tuple[float, ...]] = field(default_factory=list)
    exp_avgs: list[torch.Tensor] = field(default_factory=list)
    exp_avg_sqs: list[torch.Tensor] = field(default_factory=list)
    steps: list[torch.Tensor] = field(default_factory=list)
    momentum_buffers: list[torch.Tensor | None] = field(default_factory=list)
    restore_params: list[torch.Tensor] = field(default_factory=list)
    restore_backups: list[torch.Tensor] = field(default_factory=list)
    new_state: dict[torch.Tensor, dict[str, torch.Tensor]] = field(default_factory=dict)

    def table(self) -> torch.Tensor:
        """The coefficients as a contiguous CPU fp32 ``[len(params), columns]`` tensor."""
        columns = len(ADAM_COLUMNS if self.kind == "adam" else SGD_COLUMNS)
        return torch.tensor(self.coefficients, dtype=torch.float32).reshape(-1, columns)

    def commit(self) -> None:
        """Install the state the plan created; call once the kernels have run."""
        for p, entries in self.new_state.items():
            self.state.setdefault(p, {}).update(entries)
