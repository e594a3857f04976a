"""The check the fused optimizer steps share: state buffers laid out like their parameter."""

from __future__ import annotations

from typing import Any

import torch


def like_param(p: torch.Tensor, buffer: Any) -> bool:
    """True when ``buffer`` is a contiguous tensor of ``p``'s shape, dtype and device."""
    return (
        isinstance(buffer, torch.Tensor)
        and buffer.shape == p.shape
        and buffer.dtype == p.dtype
        and buffer.device == p.device
        and buffer.is_contiguous()
    )
