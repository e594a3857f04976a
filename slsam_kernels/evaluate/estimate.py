"""An estimate of an evaluation's runtime from measured per-step costs (an estimate only).

Per-step costs were measured on this project's 2-core CPU machine, 2026-11-26:
* image (EfficientNet-Lite0, 32x32, batch 32): SGD 0.111 s, SAM 0.228 s, SL-SAM(s=0.5)
  0.193 s per step (the README's demo table);
* text (all-MiniLM-L6-v2, 128 tokens, batch 16): SAM about 2.35 s per step (the demo), so the
  base step is taken as 2.35 / 2.05 s (the image task's SAM/SGD ratio), scaled linearly with
  the sequence length.
Method costs relative to the base step: SAM and ASAM 2.05, RST(p) 1 + 1.05 p, SL-SAM(s)
1.43 + 0.62 s (the line through the measured s=0.5 point and SAM at s=1). Evaluation is
charged a third of a training step per example of a batch; each run 0.5 s (image) or 1 s (text)
to build the model; each setting 10 s to load data plus a warm-up step of every method. An
equal-time variant continues each run until it has spent SAM's time (``budget.py``): the extra
steps cost ``SAM - its cost`` base steps per equal-steps step, plus one more test.
"""

from __future__ import annotations

from .config import VARIANTS, EvalConfig, TaskSpec

SAM_COST = 2.05
SETTING_OVERHEAD_S = 10.0
BUILD_S = {"image": 0.5, "text": 1.0}
TEXT_SAM_STEP_S_AT_128 = 2.35


def base_step_seconds(spec: TaskSpec) -> float:
    """The estimated base-optimizer step of ``spec`` (its batch size scales it linearly)."""
    if spec.task == "image":
        return 0.111 * spec.batch_size / 32
    tokens = spec.prepare_options.get("max_tokens", 128)
    return TEXT_SAM_STEP_S_AT_128 / SAM_COST * tokens / 128 * spec.batch_size / 16


def relative_cost(variant: str) -> float:
    """A variant's step cost in base steps."""
    v = VARIANTS[variant]
    if v.method in ("sam", "asam"):
        return SAM_COST
    if v.method == "rst":
        return 1.0 + (SAM_COST - 1.0) * v.sample_ratio
    if v.method == "slsam":
        return 1.43 + 0.62 * v.sample_ratio
    return 1.0


def estimate_seconds(config: EvalConfig) -> dict[str, float]:
    """Estimated seconds per ``task@noise`` setting, and ``total``."""
    out: dict[str, float] = {}
    seeds = len(config.seeds)
    for spec in config.tasks:
        step = base_step_seconds(spec)
        tune_runs = len(spec.lr_grid) + (len(spec.rho_grid) if len(spec.rho_grid) > 1 else 0)
        tune_steps = len(spec.lr_grid) + SAM_COST * (len(spec.rho_grid) > 1) * len(spec.rho_grid)
        train_steps = seeds * sum(relative_cost(v) for v in config.variants)
        runs = tune_runs + seeds * len(config.variants)
        eval_examples = tune_runs * spec.val_size + seeds * len(config.variants) * spec.test_size
        warm_up = sum(relative_cost(v) for v in config.variants)
        extra_steps = seeds * sum(
            max(0.0, SAM_COST - relative_cost(v)) for v in config.equal_time_variants
        )
        eval_examples += seeds * len(config.equal_time_variants) * spec.test_size
        seconds = (
            (tune_steps + train_steps + extra_steps) * spec.steps * step
            + eval_examples * step / spec.batch_size / 3
            + runs * BUILD_S.get(spec.task, 1.0)
            + SETTING_OVERHEAD_S
            + warm_up * step
        )
        for noise in spec.noises:
            out[f"{spec.task}@{noise:g}"] = seconds
    out["total"] = sum(out.values())
    return out
