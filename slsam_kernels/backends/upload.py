"""Host -> device copies that never make the host wait for the device."""

from __future__ import annotations

import torch


def upload(host: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``host`` (a CPU tensor the host just built) on ``device``, copied asynchronously.

    On CUDA the data is pinned first: a copy from pageable memory may wait for the stream,
    and a blocking one (``.to(device)``, ``torch.tensor(..., device=...)``, indexing a device
    tensor with a Python list) always does. The pinned block is reused only once the copy
    has run (torch's host allocator records the copy's event). On the CPU it is ``host``."""
    if device.type == "cuda":
        host = host.pin_memory()
    return host.to(device, non_blocking=True)
