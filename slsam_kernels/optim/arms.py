"""Arms: the units SL-SAM samples. One tensor each by default (the paper); groups of tensors
when the caller wants a whole module toggled together (fewer ``requires_grad`` patterns, so
``torch.compile`` sees few variants)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

ArmSpec = torch.nn.Module | torch.Tensor | Iterable[torch.Tensor]


def arms_by_module(model: torch.nn.Module) -> list[list[torch.Tensor]]:
    """One arm per module that directly owns trainable parameters (a ``Linear``'s weight and
    bias together; a LoRA adapter's ``lora_A`` and ``lora_B`` apart), in ``model.modules()``
    order. Frozen tensors are left out, so a frozen base model contributes no arm."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"arms_by_module() takes an nn.Module, got {type(model).__name__}")
    seen: set[torch.Tensor] = set()
    arms = []
    for module in model.modules():
        owned = [p for p in module.parameters(recurse=False) if p.requires_grad and p not in seen]
        seen.update(owned)
        if owned:
            arms.append(owned)
    return arms


def resolve_arms(
    specs: Sequence[ArmSpec], trainable: Sequence[torch.Tensor]
) -> list[tuple[torch.Tensor, ...]]:
    """Turn the caller's arm specs (modules, tensors or iterables of tensors) into tuples of
    tensors that partition ``trainable``. Frozen tensors are dropped, and with them arms that
    hold nothing trainable."""
    if isinstance(specs, (torch.Tensor, torch.nn.Module)) or not isinstance(specs, Sequence):
        raise TypeError(
            "arms must be a list whose entries are modules, tensors or lists of tensors, e.g. "
            "arms=arms_by_module(model) or arms=list(model.encoder.layer)"
        )
    trainable_set = set(trainable)
    owner: dict[torch.Tensor, int] = {}
    arms = []
    for i, spec in enumerate(specs):
        members = tuple(p for p in _tensors_of(spec, i) if p.requires_grad)
        for p in members:
            if p not in trainable_set:
                raise ValueError(
                    f"arm {i} holds a tensor the optimizer was not given: build the arms from "
                    "the same parameters as the optimizer"
                )
            if p in owner:
                raise ValueError(f"a tensor is in arms {owner[p]} and {i}: put it in one arm")
            owner[p] = i
        if members:
            arms.append(members)
    missing = sum(p not in owner for p in trainable)
    if missing:
        raise ValueError(
            f"{missing} trainable tensor(s) belong to no arm: add them to an arm, or freeze "
            "them (requires_grad_(False)) before building the optimizer"
        )
    return arms


#: ``always_active="auto"``: every trainable tensor with at most this many dims (biases,
#: normalisation weights) is kept active.
AUTO = "auto"
AUTO_MAX_NDIM = 1


def auto_always_active(params: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """The tensors ``always_active="auto"`` keeps active: the trainable ones with
    ``ndim <= 1`` (biases, normalisation weights, per-channel scales)."""
    return [p for p in params if p.requires_grad and p.ndim <= AUTO_MAX_NDIM]


def auto_always_active_fraction(model: torch.nn.Module | Iterable[torch.Tensor]) -> float:
    """The fraction of ``model``'s trainable elements (or of the trainable tensors given) that
    ``always_active="auto"`` keeps active every step; 0.0 when nothing is trainable."""
    params = model.parameters() if isinstance(model, torch.nn.Module) else model
    trainable = [p for p in params if p.requires_grad]
    total = sum(p.numel() for p in trainable)
    return sum(p.numel() for p in auto_always_active(trainable)) / total if total else 0.0


def resolve_always_active(
    spec: ArmSpec | str | Sequence[ArmSpec | str] | None, trainable: Sequence[torch.Tensor]
) -> set[torch.Tensor]:
    """The trainable tensors of ``always_active`` (a module, a tensor, ``"auto"``, or a list
    of modules, tensors and ``"auto"``; frozen tensors are skipped); each must be one the
    optimizer trains, and at least one arm must remain."""
    if spec is None:
        return set()
    specs = [spec] if isinstance(spec, (torch.Tensor, torch.nn.Module, str)) else spec
    if not isinstance(specs, Iterable):
        raise TypeError(
            'always_active must be a module, a tensor, "auto" or a list of them, e.g. '
            'always_active=("auto", model.head)'
        )
    specs = list(specs)
    trainable_set = set(trainable)
    chosen: set[torch.Tensor] = set()
    for i, item in enumerate(specs):
        if isinstance(item, str):
            if item != AUTO:
                raise ValueError(
                    f"always_active entry {i} is the string {item!r}; the one string taken is "
                    '"auto" (every tensor with ndim <= 1)'
                )
            chosen.update(auto_always_active(trainable))
            continue
        for p in _tensors_of(item, i, "always_active entry"):
            if not p.requires_grad:
                continue
            if p not in trainable_set:
                raise ValueError(
                    "always_active holds a tensor the optimizer does not train: pass "
                    "parameters that are in the optimizer's groups and require grad"
                )
            chosen.add(p)
    if len(chosen) == len(trainable_set):
        raise ValueError(
            "always_active covers every trainable tensor, so SL-SAM has no arm left to sample: "
            "use SAM instead, or leave some tensors to the bandit"
        )
    return chosen


def _tensors_of(spec: ArmSpec, index: int, what: str = "arm") -> list[torch.Tensor]:
    if isinstance(spec, torch.nn.Module):
        return list(spec.parameters())
    if isinstance(spec, torch.Tensor):
        return [spec]
    if isinstance(spec, Iterable):
        tensors = list(spec)
        if all(isinstance(p, torch.Tensor) for p in tensors):
            return tensors
    raise TypeError(f"{what} {index} must be a module, a tensor or a list of tensors")
