"""An estimate of an evaluation's runtime from measured per-step costs (an estimate only).

Per-step costs, measured on this project's 2-core CPU machines:
* image (EfficientNet-Lite0, 32x32, batch 32): SGD 0.111 s, SAM 0.228 s, SL-SAM(s=0.5)
  0.193 s per step (the README's demo table, 2026-11-26); at batch 16 (2026-12-06, AMD EPYC,
  6 runs of 600 steps) SGD 0.081 s and SAM 0.164 s, so a step is taken as a fixed 0.051 s plus
  0.001875 s per example (the line through the two SGD figures), not as linear in the batch,
  and SAM as 2.05 of them;
* text (all-MiniLM-L6-v2, AdamW): 0.245 s per step at batch 8 and 32 tokens, 0.764 s at 16 x
  64, 1.295 s at 16 x 128, AdamW's step alone 0.07-0.10 s (2026-12-06, AMD EPYC, medians of 8
  steps), so a step is taken as a fixed 0.095 s (the optimizer, which SAM also runs once) plus
  0.586 ms per token of the batch (the line through the first and last figures; 9% under the
  middle one), and SAM as that plus one more forward and backward pass (1.61 steps at 8 x 32;
  the frontier run measured 1.56);
* lora (the text model, frozen, with LoRA adapters): a guess, not yet measured, of 0.7 text base
  steps (the backward still runs through every layer for the input gradients, but computes
  no weight gradient of the frozen encoder), SAM as 2.05 of them.
Method costs relative to the base step, SAM's cost S as above: RST(p) 1 + (S - 1) p, SL-SAM(s)
1 + (S - 1)(0.43 + 0.62 s) / 1.05 (the line through the measured image s=0.5 point and SAM at
s=1). Evaluation, measured on 2026-12-06 (AMD EPYC, batches of 256): 0.6 ms per image (3,000
in 1.8-1.9 s, 10,000 in 6.0 s) and 4.6 ms per article at 32 tokens (1,000 in 4.6 s), taken as
linear in the tokens (the LoRA model's forward pass is the text model's); each run 0.5 s
(image) or 1 s (text) to build the model; each setting 10 s to load data plus a warm-up step of
every method. An equal-time variant continues each run until it has spent SAM's time
(``budget_seconds``): the extra steps cost ``S - its cost`` base steps per equal-steps step,
plus one more test. BAR steps cost one base step; each BAR variant adds one tuning run per
entry of the task's ``bar_grid``. SLSAM's options (from the pass counts): ``descent="all"``
runs one sparse and one full pass, half SL-SAM's step and half SAM's; a plain step
(``sam_prob``) costs one base step with ``descent="all"``, half an SL-SAM step otherwise; the
late-phase schedule takes SAM steps on a quarter of the steps. Each variant with ``tune_rho``
adds one tuning run per entry of ``sparse_rho_grid`` (none when it shares another's rho,
``shares_rho_of``); a curve evaluates the validation split every ``curve_every`` steps (of the
run continued to SAM's time, where it is). With ``tune_once`` only a task's first noise level
pays for tuning; a side variant runs its seeds only, untuned and not continued (at the first
noise level only with ``side_variants_once``).
"""

from __future__ import annotations

from dataclasses import dataclass

from slsam_kernels.apps.demo.tasks import TEXT_MAX_TOKENS
from slsam_kernels.apps.demo.train import LATE_PHASE_START
from slsam_kernels.apps.demo.variants import VARIANTS

from .config import EvalConfig, TaskSpec

SAM_COST = 2.05
SETTING_OVERHEAD_S = 10.0
BUILD_S = {"image": 0.5, "text": 1.0, "lora": 1.0}
IMAGE_STEP_FIXED_S = 0.051
IMAGE_STEP_PER_EXAMPLE_S = 0.001875
TEXT_STEP_FIXED_S = 0.095
TEXT_STEP_PER_TOKEN_S = 0.000586
LORA_STEP_IN_TEXT_STEPS = 0.7
IMAGE_EVAL_S = 0.0006
TEXT_EVAL_S_PER_TOKEN = 0.0046 / 32


def base_step_seconds(spec: TaskSpec) -> float:
    """The estimated base-optimizer step of ``spec``: a fixed part plus a part per example
    (image) or per token of the batch (text; LoRA a share of the text step)."""
    if spec.task == "image":
        return IMAGE_STEP_FIXED_S + IMAGE_STEP_PER_EXAMPLE_S * spec.batch_size
    tokens = _max_tokens(spec) * spec.batch_size
    text_step = TEXT_STEP_FIXED_S + TEXT_STEP_PER_TOKEN_S * tokens
    return text_step * (LORA_STEP_IN_TEXT_STEPS if spec.task == "lora" else 1.0)


def sam_cost(spec: TaskSpec) -> float:
    """SAM's estimated step in base steps: the text task's runs AdamW's fixed part once."""
    if spec.task != "text":
        return SAM_COST
    step = base_step_seconds(spec)
    return 1.0 + (step - TEXT_STEP_FIXED_S) / step


def eval_seconds(spec: TaskSpec) -> float:
    """The measured seconds to evaluate one example of ``spec``."""
    if spec.task == "image":
        return IMAGE_EVAL_S
    return TEXT_EVAL_S_PER_TOKEN * _max_tokens(spec)


def _max_tokens(spec: TaskSpec) -> int:
    """The tokens per article of a text or LoRA task: its option, or the tasks' default."""
    return spec.prepare_options.get("max_tokens", TEXT_MAX_TOKENS)


def relative_cost(variant: str, sam: float = SAM_COST) -> float:
    """A variant's step cost in base steps, SAM's being ``sam``."""
    v = VARIANTS[variant]
    sam_share = 1.0 - LATE_PHASE_START if v.sam_schedule == "late" else None
    if v.method in ("sam", "asam"):
        return sam
    if v.method == "rst":
        return 1.0 + (sam - 1.0) * (v.sample_ratio if sam_share is None else sam_share)
    if v.method == "slsam":
        sparse = 1.0 + (sam - 1.0) * (0.43 + 0.62 * v.sample_ratio) / (SAM_COST - 1.0)
        sam_step = sparse if v.descent == "sampled" else (sparse + sam) / 2
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
        costs = _Costs(step, sam_cost(spec), build, eval_seconds(spec))
        tuning = _tuning_seconds(spec, config, costs)
        for index, noise in enumerate(spec.noises):
            first = index == 0
            runs = _runs_seconds(spec, config, config.variants_at(first), costs)
            tuned_here = first or not config.tune_once
            out[f"{spec.task}@{noise:g}"] = runs + (tuning if tuned_here else 0.0)
    out["total"] = sum(out.values())
    return out


@dataclass(frozen=True)
class _Costs:
    """A task's estimated seconds: base step, SAM's step in base steps, a model's build and
    an evaluated example."""

    step: float
    sam: float
    build: float
    eval_example: float


def _tuning_seconds(spec: TaskSpec, config: EvalConfig, costs: _Costs) -> float:
    """One setting's tuning runs on the validation split."""
    bar_variants = sum(VARIANTS[v].method in ("nbar", "obar") for v in config.variants)
    bar_tuning = bar_variants * len(spec.bar_grid) if len(spec.bar_grid) > 1 else 0
    tune_runs = len(spec.lr_grid) + (len(spec.rho_grid) if len(spec.rho_grid) > 1 else 0)
    tune_runs += bar_tuning
    tune_steps = len(spec.lr_grid) + costs.sam * (len(spec.rho_grid) > 1) * len(spec.rho_grid)
    tune_steps += bar_tuning
    rho_tuned = config.rho_tuned_variants
    if len(spec.sparse_rho_grid) > 1:
        tune_runs += len(rho_tuned) * len(spec.sparse_rho_grid)
        tune_steps += len(spec.sparse_rho_grid) * sum(
            relative_cost(v, costs.sam) for v in rho_tuned
        )
    per_run = spec.val_size * costs.eval_example + costs.build
    return tune_steps * spec.steps * costs.step + tune_runs * per_run


def _runs_seconds(
    spec: TaskSpec,
    config: EvalConfig,
    variants: tuple[str, ...],
    costs: _Costs,
) -> float:
    """One setting's runs of ``variants`` on the test split (continued to SAM's time where
    they are), their curves, the data loading and the warm-up."""
    warm_up = sum(relative_cost(v, costs.sam) for v in config.variants)
    seconds = SETTING_OVERHEAD_S + costs.step * warm_up
    for v in variants:
        seeds = len(config.seeds_of(v))
        continued = v in config.equal_time_variants
        cost = relative_cost(v, costs.sam)
        steps = spec.steps * (max(cost, costs.sam) if continued else cost)
        examples = spec.test_size * (2 if continued else 1)
        if spec.curve_every is not None:
            # each run's points; a continued run's reach SAM's time
            run_steps = spec.steps * (costs.sam / cost if continued else 1)
            examples += run_steps / spec.curve_every * spec.val_size
        seconds += seeds * (steps * costs.step + examples * costs.eval_example + costs.build)
    return seconds
