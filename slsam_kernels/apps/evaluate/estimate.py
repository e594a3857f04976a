"""An estimate of an evaluation's runtime from measured per-step costs (an estimate only).

Per-step costs were measured on this project's 2-core CPU machine, 2026-11-26:
* image (EfficientNet-Lite0, 32x32, batch 32): SGD 0.111 s, SAM 0.228 s, SL-SAM(s=0.5)
  0.193 s per step (the README's demo table); at batch 16 (2026-12-06, AMD EPYC, 6 runs of
  600 steps) SGD 0.081 s and SAM 0.164 s, so a step is taken as a fixed 0.051 s plus
  0.001875 s per example (the line through the two SGD figures), not as linear in the batch;
* text (all-MiniLM-L6-v2, 128 tokens, batch 16): SAM about 2.35 s per step (the demo), so the
  base step is taken as 2.35 / 2.05 s (the image task's SAM/SGD ratio), scaled linearly with
  the sequence length;
* lora (the text model, frozen, with LoRA adapters): a guess, not yet measured, of 0.7 text base
  steps (the backward still runs through every layer for the input gradients, but computes
  no weight gradient of the frozen encoder).
Method costs relative to the base step: SAM and ASAM 2.05, RST(p) 1 + 1.05 p, SL-SAM(s)
1.43 + 0.62 s (the line through the measured s=0.5 point and SAM at s=1). Evaluation is
charged a third of a training step per example of a batch; each run 0.5 s (image) or 1 s (text)
to build the model; each setting 10 s to load data plus a warm-up step of every method. An
equal-time variant continues each run until it has spent SAM's time (``budget_seconds``): the extra
steps cost ``SAM - its cost`` base steps per equal-steps step, plus one more test. BAR steps
cost one base step; each BAR variant adds one tuning run per entry of the task's ``bar_grid``.
SLSAM's options (not measured yet; from the pass counts): ``descent="all"`` runs one sparse
and one full pass, half SL-SAM's step and half SAM's; a plain step (``sam_prob``) costs one
base step with ``descent="all"``, half an SL-SAM step otherwise; the late-phase schedule
takes SAM steps on a quarter of the steps. Each variant with ``tune_rho`` adds one tuning run
per entry of ``sparse_rho_grid``; a curve evaluates the validation split every
``curve_every`` steps (of the run continued to SAM's time, where it is). With ``tune_once`` only
a task's first noise level pays for tuning; a side variant runs its seeds only, untuned and
not continued. Against the frontier's measured runtimes of 2026-12-06 the estimate ran 1.1x
(image) to 1.3x (text) over before these two options (Intel Xeon, one setting at a time), and
after them, in one run on an AMD EPYC, 1.16x over for image, 0.83-0.88x (under) for text,
1.03x in all (123 minutes estimated, 119 measured).
"""

from __future__ import annotations

from slsam_kernels.apps.demo.train import LATE_PHASE_START
from slsam_kernels.apps.demo.variants import VARIANTS

from .config import EvalConfig, TaskSpec

SAM_COST = 2.05
SETTING_OVERHEAD_S = 10.0
BUILD_S = {"image": 0.5, "text": 1.0, "lora": 1.0}
IMAGE_STEP_FIXED_S = 0.051
IMAGE_STEP_PER_EXAMPLE_S = 0.001875
TEXT_SAM_STEP_S_AT_128 = 2.35
LORA_STEP_IN_TEXT_STEPS = 0.7


def base_step_seconds(spec: TaskSpec) -> float:
    """The estimated base-optimizer step of ``spec`` (a fixed part plus a part per example
    for the image task; the text task's scales linearly with batch and tokens)."""
    if spec.task == "image":
        return IMAGE_STEP_FIXED_S + IMAGE_STEP_PER_EXAMPLE_S * spec.batch_size
    tokens = spec.prepare_options.get("max_tokens", 128)
    text_step = TEXT_SAM_STEP_S_AT_128 / SAM_COST * tokens / 128 * spec.batch_size / 16
    return text_step * (LORA_STEP_IN_TEXT_STEPS if spec.task == "lora" else 1.0)


def relative_cost(variant: str) -> float:
    """A variant's step cost in base steps."""
    v = VARIANTS[variant]
    sam_share = 1.0 - LATE_PHASE_START if v.sam_schedule == "late" else None
    if v.method in ("sam", "asam"):
        return SAM_COST
    if v.method == "rst":
        return 1.0 + (SAM_COST - 1.0) * (v.sample_ratio if sam_share is None else sam_share)
    if v.method == "slsam":
        sparse = 1.43 + 0.62 * v.sample_ratio
        sam_step = sparse if v.descent == "sampled" else (sparse + SAM_COST) / 2
        plain_step = sparse / 2 if v.descent == "sampled" else 1.0
        p = v.sam_prob if sam_share is None else sam_share
        return p * sam_step + (1.0 - p) * plain_step
    return 1.0


def estimate_seconds(config: EvalConfig) -> dict[str, float]:
    """Estimated seconds per ``task@noise`` setting, and ``total``."""
    out: dict[str, float] = {}
    for spec in config.tasks:
        step = base_step_seconds(spec)
        build = BUILD_S.get(spec.task, 1.0)
        eval_step = step / spec.batch_size / 3  # per example evaluated
        tuning = _tuning_seconds(spec, config, step, build, eval_step)
        runs = _runs_seconds(spec, config, step, build, eval_step)
        for index, noise in enumerate(spec.noises):
            tuned_here = index == 0 or not config.tune_once
            out[f"{spec.task}@{noise:g}"] = runs + (tuning if tuned_here else 0.0)
    out["total"] = sum(out.values())
    return out


def _tuning_seconds(
    spec: TaskSpec, config: EvalConfig, step: float, build: float, eval_step: float
) -> float:
    """One setting's tuning runs on the validation split."""
    bar_variants = sum(VARIANTS[v].method in ("nbar", "obar") for v in config.variants)
    bar_tuning = bar_variants * len(spec.bar_grid) if len(spec.bar_grid) > 1 else 0
    tune_runs = len(spec.lr_grid) + (len(spec.rho_grid) if len(spec.rho_grid) > 1 else 0)
    tune_runs += bar_tuning
    tune_steps = len(spec.lr_grid) + SAM_COST * (len(spec.rho_grid) > 1) * len(spec.rho_grid)
    tune_steps += bar_tuning
    rho_tuned = config.rho_tuned_variants
    if len(spec.sparse_rho_grid) > 1:
        tune_runs += len(rho_tuned) * len(spec.sparse_rho_grid)
        tune_steps += len(spec.sparse_rho_grid) * sum(relative_cost(v) for v in rho_tuned)
    return tune_steps * spec.steps * step + tune_runs * (spec.val_size * eval_step + build)


def _runs_seconds(
    spec: TaskSpec, config: EvalConfig, step: float, build: float, eval_step: float
) -> float:
    """One setting's runs on the test split (continued to SAM's time where they are), their
    curves, the data loading and the warm-up."""
    seconds = SETTING_OVERHEAD_S + step * sum(relative_cost(v) for v in config.variants)
    for v in config.variants:
        seeds = len(config.seeds_of(v))
        continued = v in config.equal_time_variants
        steps = spec.steps * relative_cost(v)
        if continued:
            steps += spec.steps * max(0.0, SAM_COST - relative_cost(v))
        examples = spec.test_size * (2 if continued else 1)
        if spec.curve_every is not None:
            # each run's points; a continued run's reach SAM's time
            run_steps = spec.steps * (SAM_COST / relative_cost(v) if continued else 1)
            examples += run_steps / spec.curve_every * spec.val_size
        seconds += seeds * (steps * step + examples * eval_step + build)
    return seconds
