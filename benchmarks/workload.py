"""Random tensors for a shape list: parameters, two gradients (first and second pass), the
dtype policy and the active subset."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .shapes import model_shapes

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def tensor_dtype(policy: str, shape: tuple[int, ...]) -> torch.dtype:
    """``mixed``: 1-D tensors (biases, norms) in fp32, the rest in bf16, as in a bf16 model
    that keeps its norms in fp32; otherwise the named dtype."""
    if policy == "mixed":
        return torch.float32 if len(shape) <= 1 else torch.bfloat16
    if policy not in DTYPES:
        raise ValueError(f"unknown dtype {policy!r}: use one of {', '.join(DTYPES)}, mixed")
    return DTYPES[policy]


def adam_eps(dtype: str) -> float:
    """Adam's eps for the workload: 1e-8 rounds to zero in fp16, where torch's for-loop Adam
    then divides 0 by 0 for a zero gradient (NaN), so fp16 lists use 1e-4."""
    return 1e-4 if dtype == "fp16" else 1e-8


@dataclass
class Workload:
    """The tensors one benchmark case works on. ``params`` are leaf ``Parameter`` s;
    ``active`` indexes the active subset (every tensor at 100%)."""

    label: str
    dtype: str
    fraction: float
    params: list[torch.nn.Parameter]
    grads: list[torch.Tensor]  # first-pass gradients
    grads2: list[torch.Tensor]  # second-pass gradients (at the perturbed point)
    active: list[int]

    @property
    def active_params(self) -> list[torch.nn.Parameter]:
        return [self.params[i] for i in self.active]

    @property
    def active_grads(self) -> list[torch.Tensor]:
        return [self.grads[i] for i in self.active]

    def active_bytes(self) -> int:
        """Bytes of one pass over the active tensors (one read or one write of each)."""
        return sum(self.params[i].numel() * self.params[i].element_size() for i in self.active)

    @property
    def numel(self) -> int:
        return sum(p.numel() for p in self.params)

    @property
    def active_numel_fraction(self) -> float:
        return sum(self.params[i].numel() for i in self.active) / max(self.numel, 1)


def build(
    label: str,
    dtype: str,
    fraction: float,
    device: torch.device,
    seed: int = 0,
    second_grads: bool = True,
) -> Workload:
    """Random N(0, 1) parameters and gradients for list ``label``, drawn on ``device``; the
    active subset is a seeded random ``fraction`` of the tensors (at least one).
    ``second_grads=False`` reuses the first-pass gradients for the second pass (saves one
    model-sized buffer on the 7B list)."""
    shapes = model_shapes(label)
    gen = torch.Generator(device=device).manual_seed(seed)
    params, grads, grads2 = [], [], []
    for _, shape in shapes:
        dt = tensor_dtype(dtype, shape)
        params.append(torch.nn.Parameter(_randn(shape, dt, device, gen)))
        grads.append(_randn(shape, dt, device, gen))
        grads2.append(_randn(shape, dt, device, gen) if second_grads else grads[-1])
    everything = list(range(len(shapes)))
    return with_fraction(Workload(label, dtype, 1.0, params, grads, grads2, everything), fraction)


def _randn(
    shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, gen: torch.Generator
) -> torch.Tensor:
    return torch.randn(shape, generator=gen, device=device).to(dtype)


def with_fraction(w: Workload, fraction: float, seed: int = 0) -> Workload:
    """The same tensors with a seeded random ``fraction`` of them active."""
    n = len(w.params)
    count = max(1, round(fraction * n))
    pick = torch.Generator().manual_seed(seed)
    active = sorted(torch.randperm(n, generator=pick)[:count].tolist())
    return Workload(w.label, w.dtype, fraction, w.params, w.grads, w.grads2, active)
