"""Which gradients were written since a moment: how ``step(closure)`` tells a first pass the
caller ran from none at all."""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch


class GradMarks:
    """Remembers each parameter's ``.grad`` (a weak reference and its version counter) at
    :meth:`record`; :meth:`written_since` is True once any of them was replaced, set from None
    or changed in place (a backward, an in-place zeroing). Holds no gradient alive.

    :meth:`watch` adds a second, narrower signal: :attr:`backward_ran` turns True when autograd
    accumulates into a watched parameter's gradient, which an in-place zeroing never does."""

    def __init__(self) -> None:
        self._marks: list[tuple[weakref.ref | None, int]] | None = None
        self.backward_ran = False

    def watch(self, params: Sequence[torch.Tensor]) -> None:
        """Set :attr:`backward_ran` from every later backward that reaches one of ``params``
        (those that require grad now)."""
        # A closure over a weak reference: deep-copying a model copies its parameters' hooks,
        # and a function is copied by reference, so no copy of these marks comes along.
        marks = weakref.ref(self)

        def on_accumulate(_param: torch.Tensor) -> None:
            alive = marks()
            if alive is not None:
                alive.backward_ran = True

        for p in params:
            if p.requires_grad:
                p.register_post_accumulate_grad_hook(on_accumulate)

    def record(self, params: Sequence[torch.Tensor]) -> None:
        """Remember the gradients as they are now (and clear :attr:`backward_ran`)."""
        self.backward_ran = False
        self._marks = [
            (None, 0) if p.grad is None else (weakref.ref(p.grad), p.grad._version) for p in params
        ]

    def written_since(self, params: Sequence[torch.Tensor]) -> bool:
        """True when some gradient differs from the one recorded (with nothing recorded yet:
        when some gradient exists)."""
        if self._marks is None or len(self._marks) != len(params):
            return any(p.grad is not None for p in params)
        for p, (ref, version) in zip(params, self._marks, strict=True):
            if p.grad is None:
                continue  # set to None since: nothing written
            if ref is None or ref() is not p.grad or p.grad._version != version:
                return True
        return False
