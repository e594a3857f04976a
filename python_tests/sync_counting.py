"""Count, on CPU tensors, what in an optimizer step would make the host wait for a GPU.

On a GPU the host blocks when it needs a value the device computes (``.item()``, ``bool()``,
``float()``, ``.tolist()``, ``.cpu()``: a device -> host copy) and when a tensor it built from
Python data reaches a device op without an explicit asynchronous upload (``torch.tensor(list)``
then ``.to(device)``, or a device tensor indexed with a Python list: torch copies the index
with ``non_blocking=False``, which waits for the stream). On the CPU all of this is free and
invisible, so :class:`HostSyncCounter` models the device: every tensor carries a mark.

* DEVICE: the tensors the test declares (parameters, gradients, optimizer state, ...), and
  everything an op computes from, or writes with, a DEVICE tensor (a Triton kernel launch
  counts as one op over all its tensor arguments).
* HOST: tensors built from Python data (``aten::lift_fresh``: ``torch.tensor(...)``, list
  indices) or copied to the host (``.cpu()``, ``.to("cpu")`` of a DEVICE tensor), and what is
  computed from HOST tensors alone.
* unmarked: fresh factory tensors (``torch.zeros``/``empty``/``full``/``rand`` ...) that no op
  has touched yet; they live wherever the code asked, so they count as neither.

Recorded as host syncs (:attr:`HostSyncCounter.syncs`):

* ``aten::_local_scalar_dense`` of a DEVICE tensor (``.item()``, ``bool()``, ``float()``,
  ``int()``, a tensor in an ``if``);
* ``.tolist()``, ``.numpy()``, ``.cpu()``, ``.to("cpu")`` of a DEVICE tensor;
* a HOST tensor of one or more dimensions read by an op (or a kernel) together with DEVICE
  tensors: on a GPU it needed a blocking host -> device copy. (0-dim CPU tensors are not
  counted: CUDA ops take them as scalars, without a copy.)

``.to(device, non_blocking=True)`` of a HOST tensor is an asynchronous upload: not a sync,
listed in :attr:`HostSyncCounter.uploads`. Whether ``.to(d)`` means "to the host" cannot be
seen on the CPU when ``d`` is a ``torch.device``; only the string ``"cpu"`` is read as the
host (the package writes host copies that way). Work inside :meth:`HostSyncCounter.paused`
(the user's closure: forward and backward) is not counted.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

DEVICE, HOST = "device", "host"
_HOST_READS = ("tolist", "numpy", "cpu")


def _storage_key(t: torch.Tensor) -> int | None:
    ptr = t.untyped_storage().data_ptr()
    return ptr or None  # an empty storage holds no data to copy


def _where() -> str:
    """The innermost package frame that asked for the op."""
    for frame in reversed(traceback.extract_stack()):
        if "slsam_kernels" in frame.filename and "python_tests" not in frame.filename:
            return f"{frame.filename.rsplit('slsam_kernels', 1)[-1]}:{frame.lineno} {frame.line}"
    return "(outside slsam_kernels)"


class HostSyncCounter:
    """Use as ``with HostSyncCounter(device_tensors) as counter: opt.step(closure)``; then
    :attr:`syncs` lists ``(what, where)`` of each host sync (see the module docstring)."""

    def __init__(self, device_tensors: Iterable[torch.Tensor]) -> None:
        self.syncs: list[tuple[str, str]] = []
        self.uploads: list[str] = []
        self._marks: dict[int, tuple[str, torch.Tensor]] = {}
        self._paused = 0
        for t in device_tensors:
            self.mark(t, DEVICE)
        self._modes = (_FunctionMode(self), _DispatchMode(self))
        self._patches = contextlib.ExitStack()

    def mark(self, t: torch.Tensor, kind: str) -> None:
        key = _storage_key(t)
        if key is not None:
            self._marks[key] = (kind, t)  # the reference keeps the storage (and key) alive

    def kind(self, t: torch.Tensor) -> str | None:
        key = _storage_key(t)
        entry = None if key is None else self._marks.get(key)
        return None if entry is None else entry[0]

    def record(self, what: str) -> None:
        self.syncs.append((what, _where()))

    @property
    def counting(self) -> bool:
        return self._paused == 0

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Nothing inside is counted (the user's forward and backward)."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    def wrap_closure(self, closure: Any, declare: Any = None) -> Any:
        """``closure`` run uncounted; afterwards the tensors ``declare()`` returns (the new
        gradients) are marked DEVICE."""

        def run() -> Any:
            with self.paused():
                result = closure()
            for t in declare() if declare is not None else ():
                self.mark(t, DEVICE)
            return result

        return run

    def launch(self, tensors: list[torch.Tensor]) -> None:
        """A kernel launch over ``tensors``: host data among device tensors is a sync; after
        it, every argument is on the device."""
        self.op(tensors, tensors, "a kernel launch", reads_written=True)

    def op(
        self,
        inputs: list[torch.Tensor],
        written: list[torch.Tensor],
        name: str,
        reads_written: bool = False,
    ) -> str | None:
        """Check one op's inputs (``written``: those it writes, which it reads too only with
        ``reads_written``); returns the mark of its outputs."""
        kinds = [self.kind(t) for t in inputs]
        if DEVICE in kinds:
            written_keys = set() if reads_written else {_storage_key(t) for t in written}
            for t, kind in zip(inputs, kinds):
                if kind == HOST and t.dim() > 0 and _storage_key(t) not in written_keys:
                    self.record(f"host tensor {tuple(t.shape)} read by {name}")
            out = DEVICE
        else:
            out = HOST if HOST in kinds else None
        if out is not None:
            for t in written:
                self.mark(t, out)
        return out

    def __enter__(self) -> HostSyncCounter:
        self._patches.enter_context(_patched_triton_launch(self))
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(*exc)
        self._patches.close()


def _tensors(tree: Any) -> list[torch.Tensor]:
    return [t for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]


class _DispatchMode(TorchDispatchMode):
    def __init__(self, counter: HostSyncCounter) -> None:
        super().__init__()
        self.counter = counter

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        counter = self.counter
        if not counter.counting:
            return out
        inputs = _tensors((args, kwargs))
        if func is torch.ops.aten.lift_fresh.default:
            counter.mark(out, HOST)
            return out
        if func is torch.ops.aten._local_scalar_dense.default:
            if counter.kind(args[0]) == DEVICE:
                counter.record("a device value read on the host (.item(), bool(), float())")
            return out
        written = [
            value
            for arg, value in _schema_values(func, args, kwargs)
            if arg.alias_info is not None and arg.alias_info.is_write
        ]
        mark = counter.op(inputs, _tensors(written), str(func))
        if mark is not None:
            for t in _tensors(out):
                counter.mark(t, mark)
        return out


def _schema_values(func: Any, args: tuple, kwargs: dict) -> list[tuple[Any, Any]]:
    pairs = []
    for i, arg in enumerate(func._schema.arguments):
        if i < len(args):
            pairs.append((arg, args[i]))
        elif arg.name in kwargs:
            pairs.append((arg, kwargs[arg.name]))
    return pairs


class _FunctionMode(TorchFunctionMode):
    """The host reads the dispatcher does not see (``tolist``, ``cpu``, ``to``)."""

    def __init__(self, counter: HostSyncCounter) -> None:
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        counter = self.counter
        name = getattr(func, "__name__", "")
        if not counter.counting or name not in (*_HOST_READS, "to"):
            return out
        source = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if source is None:
            return out
        kind = counter.kind(source)
        if name in _HOST_READS or _to_host_string(args, kwargs):
            if kind == DEVICE:
                counter.record(f".{name}() of a device tensor")
                return _remarked(counter, out, source, HOST)
            return out
        if name == "to" and kind == HOST and kwargs.get("non_blocking", False):
            counter.uploads.append(_where())
            return _remarked(counter, out, source, DEVICE)
        return out


def _to_host_string(args: tuple, kwargs: dict) -> bool:
    target = kwargs.get("device", args[1] if len(args) > 1 else None)
    return target == "cpu" and isinstance(target, str)


def _remarked(counter: HostSyncCounter, out: Any, source: torch.Tensor, kind: str) -> Any:
    """``out`` marked ``kind``; on the CPU ``.cpu()``/``.to()`` may return ``source`` itself,
    so a copy stands for the tensor on the other side."""
    if not isinstance(out, torch.Tensor):
        return out
    if _storage_key(out) == _storage_key(source):
        with counter.paused():
            out = out.clone()
    counter.mark(out, kind)
    return out


@contextlib.contextmanager
def _patched_triton_launch(counter: HostSyncCounter) -> Iterator[None]:
    """Under ``TRITON_INTERPRET=1`` a launch copies its arguments around on the host; that
    is the interpreter's work, not the step's: count it as one kernel launch."""
    try:
        from triton.runtime import interpreter
    except ImportError:
        yield
        return
    original = interpreter.GridExecutor.__call__

    def launch(self, *args: Any, **kwargs: Any) -> Any:
        tensors = _tensors((args, kwargs))
        if counter.counting:
            counter.launch(tensors)
        with counter.paused():
            return original(self, *args, **kwargs)

    interpreter.GridExecutor.__call__ = launch
    try:
        yield
    finally:
        interpreter.GridExecutor.__call__ = original
