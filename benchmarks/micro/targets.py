"""Where each backend is timed: (device, backend) pairs, and why one cannot run here."""

from __future__ import annotations

import torch

from slsam_kernels.ops import registry

TARGETS = (
    ("cpu", "reference"),
    ("cpu", "cpp"),
    ("cpu", "triton"),
    ("cuda", "reference"),
    ("cuda", "triton"),
    ("cuda", "cuda"),
)

# Elements per tensor list (bandit: arms). CPU sizes stay modest; a GPU needs more to fill it.
SIZES = {
    "cpu": {"small": 1 << 16, "large": 1 << 22},
    "cuda": {"small": 1 << 16, "large": 1 << 26},
}
BANDIT_ARMS = {"small": 64, "large": 4096}
TENSORS = 8  # tensors per list, of unequal sizes that are not multiples of 8 (loop tails run)


def skip_reason(device: str, backend: str) -> str | None:
    """Why ``backend`` is not timed on ``device`` here, or None."""
    if device == "cuda" and not torch.cuda.is_available():
        return "no CUDA device"
    if device == "cpu" and backend == "triton":
        return (
            "Triton on the CPU runs in its interpreter (TRITON_INTERPRET=1), far too slow to "
            "time; it is timed on CUDA"
        )
    status = registry.status(backend)
    if not status.available:
        return f"backend {backend!r} is unavailable: {status.reason}"
    if device not in status.device_types:
        return f"backend {backend!r} does not run on {device}"
    return None


def numels(total: int) -> list[int]:
    """``TENSORS`` sizes that add up to ``total``."""
    first = [total // TENSORS + 3 + 2 * i for i in range(TENSORS - 1)]
    return [*first, total - sum(first)]
