"""SL-SAM takes over its arms' ``requires_grad`` flags (it freezes the inactive arms every
step) and gives them back: when :meth:`SLSAM.release` is called, at the latest when the
optimizer is garbage-collected. While they are held, no optimizer here can be built over them:
it would see the sampled flags, not the ones the user set."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import torch

from .checks import positions

#: ``id(tensor) -> weak reference to it`` for every tensor whose flag a live SLSAM holds. An id
#: is not reused while it is here: the SLSAM holding the flag keeps its tensor alive.
_HELD: dict[int, weakref.ReferenceType[torch.Tensor]] = {}


def hold_flags(owner: object, tensors: list[torch.Tensor]) -> weakref.finalize:
    """Record that ``owner`` sets the ``requires_grad`` of ``tensors`` (each trainable now).
    Returns the finalizer that gives the flags back: calling it releases them (once; a second
    call does nothing), and it runs by itself when ``owner`` is collected. It holds no
    reference to ``owner``, so it does not keep the optimizer alive."""
    for p in tensors:
        _HELD[id(p)] = weakref.ref(p)
    finalizer = weakref.finalize(owner, _give_back, list(tensors))
    finalizer.atexit = False  # nothing to give back to at interpreter exit
    return finalizer


def _give_back(tensors: list[torch.Tensor]) -> None:
    """Every tensor requires grad again, as when it was taken; a frozen one loses any stale
    gradient."""
    for p in tensors:
        _HELD.pop(id(p), None)
        if not p.requires_grad:
            p.grad = None
            p.requires_grad_(True)


def check_flags_free(groups: list[dict[str, Any]], kind: str) -> None:
    """No tensor of ``groups`` has its flag held by a live SLSAM."""
    held = [(where, p) for where, p in positions(groups) if _is_held(p)]
    if held:
        # An SLSAM the user dropped may live on in a reference cycle (an optimizer whose step
        # a trainer wrapped, say) until the collector runs, which gives its flags back.
        gc.collect()
    for where, p in held:
        if _is_held(p):
            raise ValueError(
                f"{where} is an arm of a live SLSAM, which sets its requires_grad every step "
                "(it freezes the inactive arms): call that SLSAM's release() (or delete it) "
                f"before building this {kind}; release() makes every arm require grad again"
            )


def _is_held(p: torch.Tensor) -> bool:
    ref = _HELD.get(id(p))
    return ref is not None and ref() is p
