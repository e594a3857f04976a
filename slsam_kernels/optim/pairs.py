"""BAR's pairs: finding a PEFT LoRA model's, and checking the ones a caller passes."""

from __future__ import annotations

from typing import Any

import torch


def lora_pairs(
    model: torch.nn.Module, trainable_only: bool = True
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The ``(x, y)`` pairs of a PEFT LoRA model for :class:`~slsam_kernels.BAR`:
    ``(lora_B.weight, lora_A.weight)`` per adapted module and adapter (the update is
    ``x @ y``), and ``(lora_embedding_B, lora_embedding_A)`` for adapted embeddings, in module
    order. With ``trainable_only`` (the default), only pairs whose tensors both require grad
    (a frozen adapter is not trained)."""
    found: list[tuple[torch.Tensor, torch.Tensor]] = []
    for module in model.modules():
        for a_name, b_name in (("lora_A", "lora_B"), ("lora_embedding_A", "lora_embedding_B")):
            a_dict, b_dict = getattr(module, a_name, None), getattr(module, b_name, None)
            if not isinstance(a_dict, (torch.nn.ModuleDict, torch.nn.ParameterDict)):
                continue
            for adapter in a_dict:
                if adapter not in b_dict:
                    continue
                x, y = _weight(b_dict[adapter]), _weight(a_dict[adapter])
                if not trainable_only or (x.requires_grad and y.requires_grad):
                    found.append((x, y))
    return found


def _weight(entry: Any) -> torch.Tensor:
    return entry if isinstance(entry, torch.Tensor) else entry.weight


def check_pairs(
    pairs: Any, groups: list[dict[str, Any]]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``pairs`` as a list of ``(x, y)`` tuples, each tensor in ``groups``, in one pair only,
    the two shaped as a factorisation ``x @ y`` (or both vectors), in groups of one learning
    rate; else a ``TypeError``/``ValueError`` naming the fix."""
    if isinstance(pairs, torch.Tensor) or not hasattr(pairs, "__iter__"):
        raise TypeError(
            "pairs must be a list of (x, y) tensor pairs, e.g. slsam_kernels.lora_pairs(model)"
        )
    pairs = [tuple(pair) if isinstance(pair, (tuple, list)) else pair for pair in pairs]
    if not pairs:
        raise ValueError(
            "pairs is empty: BAR needs at least one (x, y) pair (slsam_kernels.lora_pairs(model) "
            "finds a PEFT model's); for no pairs use the base optimizer itself"
        )
    group_of = {p: i for i, g in enumerate(groups) for p in g["params"]}
    seen: dict[torch.Tensor, int] = {}
    for k, pair in enumerate(pairs):
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise TypeError(f"pair {k} must be an (x, y) tuple of two tensors, got {pair!r}")
        for t in pair:
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"pair {k} holds a {type(t).__name__}, not a tensor")
            if t not in group_of:
                raise ValueError(
                    f"pair {k} holds a tensor that is not in params: pass every paired tensor "
                    "in params (e.g. model.parameters())"
                )
            if t in seen:
                raise ValueError(
                    f"pair {k} holds a tensor already in pair {seen[t]}: each tensor may be in "
                    "one pair only"
                )
            seen[t] = k
        x, y = pair
        _check_shapes(k, x, y)
        lr_x, lr_y = (groups[group_of[t]].get("lr") for t in pair)
        if group_of[x] != group_of[y] and lr_x != lr_y:
            raise ValueError(
                f"pair {k}'s tensors are in param groups with different learning rates ({lr_x} "
                f"and {lr_y}): BAR scales both by one lr; put them in the same group"
            )
    return pairs


def _check_shapes(k: int, x: torch.Tensor, y: torch.Tensor) -> None:
    vectors = x.dim() == 1 and y.dim() == 1
    factors = x.dim() >= 2 and y.dim() >= 2 and x.shape[1] == y.shape[0]
    if not (vectors or factors):
        raise ValueError(
            f"pair {k} with shapes {tuple(x.shape)} and {tuple(y.shape)} is not a factorisation "
            "x @ y (x.shape[1] == y.shape[0], as (lora_B.weight, lora_A.weight)) nor two "
            "vectors"
        )
