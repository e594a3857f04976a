"""Each method's peak tensor memory in a warm training step, split into weights, gradients,
weight backups, optimizer state and saved activations (CPU, ``MemoryBreakdown``)."""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable
from typing import Any

import torch

from slsam_kernels import BAR, RST, SAM, SLSAM, lora_pairs
from slsam_kernels.apps.measure.memory_breakdown import PARTS, MemoryBreakdown

from . import e2e
from .peers import LoopSAM

BASE_OPTIONS = {"lr": 1e-4, "weight_decay": 0.01}
METHODS = (
    "AdamW",
    "SAM",
    "davda54-style SAM loop",
    "SL-SAM s=0.2",
    "SL-SAM s=0.5",
    "RST p=0.5",
)
#: On a ``+lora`` model (PEFT LoRA adapters on the attention, the rest frozen), where BAR applies.
LORA_METHODS = ("AdamW", "SAM", "SL-SAM s=0.2", "BAR nbar mu=0.5")
LORA_SUFFIX = "+lora"
IMAGE_BATCH, IMAGE_SIZE, IMAGE_CLASSES = 32, 32, 10  # the demo's image task


def workload(name: str, device: torch.device) -> tuple[torch.nn.Module, Callable[[], Any]]:
    """The model and a function that runs its forward and backward once."""
    if name.endswith(LORA_SUFFIX):
        import peft

        model, loss_backward = workload(name.removesuffix(LORA_SUFFIX), device)
        # r 8, alpha 16: the LoRA evaluation's adapters; get_peft_model adapts ``model`` in
        # place, so loss_backward runs through the adapters.
        config = peft.LoraConfig(r=8, lora_alpha=16, target_modules=["c_attn"], fan_in_fan_out=True)
        return peft.get_peft_model(model, config), loss_backward
    if name == "efficientnet-lite0":
        from slsam_kernels.apps.demo.models import efficientnet_lite0

        torch.manual_seed(0)
        model = efficientnet_lite0(IMAGE_CLASSES, IMAGE_SIZE).to(device).train()
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(IMAGE_BATCH, 3, IMAGE_SIZE, IMAGE_SIZE, generator=gen).to(device)
        y = torch.randint(0, IMAGE_CLASSES, (IMAGE_BATCH,), generator=gen).to(device)

        def image_loss() -> torch.Tensor:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss

        return model, image_loss
    cfg = e2e.CONFIGS[name]
    model = e2e.build_model(cfg, device)
    batch = e2e.make_batch(cfg, device)

    def lm_loss() -> torch.Tensor:
        loss = model(**batch).loss
        loss.backward()
        return loss

    return model, lm_loss


def _optimizer(method: str, model: torch.nn.Module) -> torch.optim.Optimizer:
    adamw = torch.optim.AdamW
    params = [p for p in model.parameters() if p.requires_grad]
    if method == "AdamW":
        return adamw(params, **BASE_OPTIONS)
    if method == "SAM":
        return SAM(params, adamw, **BASE_OPTIONS)
    if method == "davda54-style SAM loop":
        return LoopSAM(params, adamw, **BASE_OPTIONS)
    if method.startswith("SL-SAM"):
        s = float(method.split("=")[1])
        return SLSAM(params, adamw, sample_ratio=s, seed=0, **BASE_OPTIONS)
    if method.startswith("RST"):
        return RST(params, adamw, sam_prob=0.5, seed=0, **BASE_OPTIONS)
    if method.startswith("BAR"):
        return BAR(params, adamw, lora_pairs(model), mu=0.5, variant="nbar", **BASE_OPTIONS)
    known = ", ".join(dict.fromkeys(METHODS + LORA_METHODS))
    raise ValueError(f"unknown method {method!r}: use one of {known}")


def train_step(opt: torch.optim.Optimizer, loss_backward: Callable[[], Any]) -> None:
    """One training step of ``opt``, both passes for the SAM family, gradients zeroed after."""
    loss_backward()
    if isinstance(opt, LoopSAM):
        opt.first_step(zero_grad=True)
        loss_backward()
        opt.second_step()
    elif isinstance(opt, (torch.optim.AdamW, BAR)):
        opt.step()
    else:
        opt.step(loss_backward)
    opt.zero_grad()


def measure(
    name: str, method: str, device: torch.device, warmup: int, steps: int
) -> dict[str, Any]:
    """``warmup`` unmeasured steps, then ``steps`` measured ones; the row is the measured step
    with the highest peak above its start, with the mean of that figure over the steps."""
    model, loss_backward = workload(name, device)
    params = list(model.parameters())  # frozen ones too: they are weights
    opt = _optimizer(method, model)
    for _ in range(warmup):
        train_step(opt, loss_backward)
    rows = []
    for _ in range(steps):
        gc.collect()
        with MemoryBreakdown(params, opt) as breakdown:
            train_step(opt, loss_backward)
        rows.append(breakdown.table_row())
    worst = max(rows, key=lambda r: r["peak above start"])
    worst["mean peak above start"] = statistics.fmean(r["peak above start"] for r in rows)
    return {"model": name, "method": method, "steps": steps, **worst}


def run(
    names: list[str],
    device: torch.device,
    warmup: int = 3,
    steps: int = 5,
    methods: tuple[str, ...] | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Every method (default: :data:`METHODS`, :data:`LORA_METHODS` on ``+lora`` models) on
    every model; a failed one is reported in its row."""
    rows = []
    for name in names:
        default = LORA_METHODS if name.endswith(LORA_SUFFIX) else METHODS
        for method in methods or default:
            try:
                row = measure(name, method, device, warmup, steps)
            except Exception as exc:  # reported in the row
                row = {"model": name, "method": method, "error": f"{type(exc).__name__}: {exc}"}
            rows.append(row)
            log(f"  memory {name} {method}: {row.get('peak above start', float('nan')):.1f} MiB")
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: MiB per part at the peak, the peak, the peak above the step's start (worst
    and mean step) and that over SAM's."""
    cols = [*PARTS, "peak", "peak above start", "mean peak above start"]
    lines = [
        "| model | method | " + " | ".join(cols) + " | above start x SAM |",
        "|---|---|" + "---:|" * (len(cols) + 1),
    ]
    sam = {r["model"]: r["mean peak above start"] for r in rows if r["method"] == "SAM"}
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['method']} | failed: {r['error'][:80]} |")
            continue
        ratio = r["mean peak above start"] / sam[r["model"]] if r["model"] in sam else None
        cells = " | ".join(f"{r[c]:.1f}" for c in cols)
        lines.append(
            f"| {r['model']} | {r['method']} | {cells} | "
            f"{'' if ratio is None else f'{ratio:.2f}'} |"
        )
    return "\n".join(lines)
