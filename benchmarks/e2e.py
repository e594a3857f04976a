"""End-to-end fine-tuning steps (forward + backward + optimizer) of a GPT-2-style language
model with random weights, for AdamW, SAM, SL-SAM, RST and the peers, next to the floor that
sparse backpropagation allows."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from slsam_kernels import RST, SAM, SLSAM
from slsam_kernels.apps.demo.memory import PeakMemory

from .measure import synchronize
from .peers import AuthorsSLSAM, pytorch_optimizer_sam


@dataclass(frozen=True)
class ModelConfig:
    """A GPT-2-style config and its batch. ``dtype``: the weights' dtype."""

    layers: int
    hidden: int
    heads: int
    vocab: int
    batch: int
    seq: int
    dtype: str = "fp32"
    gpu_only: bool = False


CONFIGS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(2, 64, 2, 512, 2, 32),
    "cpu-small": ModelConfig(4, 256, 4, 8192, 8, 128),
    "cpu-base": ModelConfig(6, 512, 8, 16384, 8, 128),
    # GPU only: GPT-2 small (124M, `make gpu-check`), GPT-2-medium size and a ~1.3B config,
    # bf16 weights.
    "gpt2-small": ModelConfig(12, 768, 12, 50257, 8, 1024, "bf16", True),
    "gpt2-medium": ModelConfig(24, 1024, 16, 50257, 8, 1024, "bf16", True),
    "gpt-1b3": ModelConfig(24, 2048, 16, 50257, 4, 1024, "bf16", True),
}

BASE_OPTIONS = {"lr": 1e-4, "weight_decay": 0.01}
METHODS = (
    "AdamW",
    "SAM",
    "SL-SAM s=0.2",
    "SL-SAM s=0.5",
    "RST p=0.5",
    "pytorch-optimizer SAM",
    "authors-style SL-SAM s=0.2",
)


def _gpt2(cfg: ModelConfig) -> torch.nn.Module:
    import transformers

    config = transformers.GPT2Config(
        n_layer=cfg.layers,
        n_embd=cfg.hidden,
        n_head=cfg.heads,
        vocab_size=cfg.vocab,
        n_positions=cfg.seq,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return transformers.GPT2LMHeadModel(config)


def param_count(cfg: ModelConfig) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in _gpt2(cfg).parameters())


def build_model(cfg: ModelConfig, device: torch.device) -> torch.nn.Module:
    """The model with seeded random weights, in ``cfg.dtype`` on ``device``."""
    torch.manual_seed(0)
    model = _gpt2(cfg)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[cfg.dtype]
    return model.to(device=device, dtype=dtype).train()


def _stepper(method: str, model: torch.nn.Module, batch: dict[str, torch.Tensor]):
    """Returns (step, active_fraction) for ``method``: one full training step each call."""
    params = list(model.parameters())

    def loss_backward() -> torch.Tensor:
        loss = model(**batch).loss
        loss.backward()
        return loss

    numel = sum(p.numel() for p in params)
    if method == "AdamW":
        opt = torch.optim.AdamW(params, **BASE_OPTIONS)

        def step() -> None:
            loss_backward()
            opt.step()
            opt.zero_grad()

        return step, lambda: 1.0
    if method in ("SAM", "RST p=0.5") or method.startswith("SL-SAM"):
        if method == "SAM":
            opt = SAM(params, torch.optim.AdamW, **BASE_OPTIONS)
        elif method.startswith("RST"):
            opt = RST(params, torch.optim.AdamW, sam_prob=0.5, seed=0, **BASE_OPTIONS)
        else:
            s = float(method.split("=")[1])
            opt = SLSAM(params, torch.optim.AdamW, sample_ratio=s, seed=0, **BASE_OPTIONS)

        def step() -> None:
            loss_backward()
            opt.step(loss_backward)
            opt.zero_grad()

        fraction = getattr(opt, "active_param_fraction", None)
        return step, (lambda: opt.active_param_fraction) if fraction is not None else lambda: 1.0
    if method == "pytorch-optimizer SAM":
        peer = pytorch_optimizer_sam()
        if peer is None:
            raise RuntimeError("pytorch-optimizer is not installed")
        opt = peer(params, torch.optim.AdamW, **BASE_OPTIONS)

        def step() -> None:
            loss_backward()
            opt.step(loss_backward)
            opt.zero_grad()

        return step, lambda: 1.0
    if method.startswith("authors-style SL-SAM"):
        s = float(method.split("=")[1])
        opt = AuthorsSLSAM(params, torch.optim.AdamW, sample_ratio=s, seed=0, **BASE_OPTIONS)
        sizes = torch.tensor([p.numel() for p in opt.arms], dtype=torch.float64)

        def step() -> None:
            loss_backward()
            opt.first_step(zero_grad=True)
            loss_backward()
            opt.second_step(zero_grad=True)

        return step, lambda: float(sizes[torch.from_numpy(opt.mask)].sum() / numel)
    raise ValueError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")


def make_batch(cfg: ModelConfig, device: torch.device) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, cfg.vocab, (cfg.batch, cfg.seq), generator=gen).to(device)
    return {"input_ids": ids, "labels": ids}


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def run_method(
    method: str, cfg: ModelConfig, device: torch.device, warmup: int, steps: int
) -> dict[str, Any]:
    """Seconds per step (median, spread), peak memory above the model's own, the mean fraction
    of parameters active."""
    model = build_model(cfg, device)
    batch = make_batch(cfg, device)
    times, fractions = [], []
    with PeakMemory(device) as peak:
        step, active = _stepper(method, model, batch)
        for i in range(warmup + steps):
            fractions.append(active())
            seconds = _timed(step, device)
            if i >= warmup:
                times.append(seconds)
    q = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else [times[0]] * 3
    return {
        "method": method,
        "median_s": statistics.median(times),
        "mean_s": statistics.fmean(times),
        "p25_s": q[0],
        "p75_s": q[2],
        "min_s": min(times),
        "max_s": max(times),
        "steps": steps,
        "peak_mib": peak.peak_mib,
        "active_fraction": statistics.fmean(fractions),
    }


def per_step_s(row: dict[str, Any]) -> float:
    """The seconds a method costs per step: the median, except for RST, whose steps are a mix
    of plain and SAM steps (two modes), where the median is one of the two kinds (2026-11-26:
    10 timed steps, 6 of them SAM steps, gave SAM's mode, 0.92x SAM) and only the mean
    weighs them as a run does."""
    return row["mean_s"] if row["method"].startswith("RST") else row["median_s"]


def backprop_parts(cfg: ModelConfig, device: torch.device, reps: int) -> dict[str, float]:
    """Median seconds of the forward, the input-gradient-only backward (every weight frozen)
    and the full backward, all through ``inputs_embeds`` so the three see the same graph."""
    model = build_model(cfg, device)
    batch = make_batch(cfg, device)
    embeds = model.get_input_embeddings()(batch["input_ids"]).detach()
    parts: dict[str, list[float]] = {"forward": [], "backward_input": [], "backward_full": []}
    for weights_grad in (True, False):
        for p in model.parameters():
            p.requires_grad_(weights_grad)
        for _ in range(reps + 1):
            x = embeds.clone().requires_grad_(True)
            synchronize(device)
            start = time.perf_counter()
            loss = model(inputs_embeds=x, labels=batch["labels"]).loss
            synchronize(device)
            mid = time.perf_counter()
            loss.backward()
            synchronize(device)
            end = time.perf_counter()
            model.zero_grad(set_to_none=True)
            if _ == 0:
                continue  # warm-up
            if weights_grad:
                parts["forward"].append(mid - start)
                parts["backward_full"].append(end - mid)
            else:
                parts["backward_input"].append(end - mid)
    return {k: statistics.median(v) for k, v in parts.items()}


def floor_ratio(parts: dict[str, float], s_eff: float) -> float:
    """The sparse-backprop floor of a two-pass step over a plain step's forward + backward:
    ``2 (F + B_in + s_eff (B_full - B_in)) / (F + B_full)``."""
    f, b_full = parts["forward"], parts["backward_full"]
    # Timing noise can put the input-only backward above the full one; it cannot cost more,
    # and clamping it (not the difference) keeps a full step's floor at 2 exactly.
    b_in = min(parts["backward_input"], b_full)
    return 2 * (f + b_in + s_eff * (b_full - b_in)) / (f + b_full)


def run(
    config: str,
    device: torch.device,
    warmup: int,
    steps: int,
    methods: tuple[str, ...] = METHODS,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every method on ``config``; rows with their ratios to AdamW and SAM and the floor."""
    cfg = CONFIGS[config]
    if cfg.gpu_only and device.type != "cuda":
        raise ValueError(f"e2e config {config!r} runs on a CUDA device only")
    # One unmeasured AdamW step first, so the first measured method does not pay the process's
    # first-touch costs (allocator growth, lazy initialisation) alone.
    run_method("AdamW", cfg, device, 0, 1)
    rows = []
    for method in methods:
        try:
            row = run_method(method, cfg, device, warmup, steps)
        except Exception as exc:  # reported in the row
            row = {"method": method, "error": f"{type(exc).__name__}: {exc}"}
        rows.append(row)
        log(f"  e2e {config} {method}: {row.get('median_s', float('nan')):.4f} s/step")
    parts = backprop_parts(cfg, device, reps=max(3, steps // 2))
    by_name = {r["method"]: r for r in rows if "median_s" in r}
    adamw, sam = by_name.get("AdamW"), by_name.get("SAM")
    for row in rows:
        if "median_s" not in row:
            continue
        if adamw:
            row["ratio_to_adamw"] = per_step_s(row) / adamw["median_s"]
        if sam:
            row["ratio_to_sam"] = per_step_s(row) / sam["median_s"]
        two_pass = row["method"] != "AdamW"
        row["floor_ratio_to_adamw"] = (
            floor_ratio(parts, row["active_fraction"]) if two_pass else 1.0
        )
        if row["method"].startswith("RST"):
            # half the steps are plain: the floor averages a plain and a SAM step
            row["floor_ratio_to_adamw"] = 0.5 * (1.0 + floor_ratio(parts, 1.0))
    return {
        "config": config,
        "model": cfg.__dict__,
        "params": param_count(cfg),
        "backprop_parts_s": parts,
        "rows": rows,
    }
