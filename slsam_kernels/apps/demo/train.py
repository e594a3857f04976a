"""Train one method on one task, then test it: accuracy, seconds per step, active fraction,
peak memory."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slsam_kernels import BAR, RST, SAM, SLSAM, arms_by_module, lora_pairs, schedules

from .data import LabelledData, Split
from .memory import PeakMemory
from .models import fresh_head
from .progress import StepProgress

#: The CPU memory meter sees every aten op from Python: it made an EfficientNet-Lite0 SGD step
#: about 10% slower here (0.27 vs 0.24 s, loaded 2-core machine), enough to skew the timings
#: and the equal wall-clock budgets. So it watches the first steps of a run (the optimizer
#: state and backups appear in the first one) and then every ``METER_EVERY``-th step, for the
#: whole run's peak (SL-SAM's varies with its active set); metered steps are not timed.
METERED_STEPS = 3
METER_EVERY = 25

#: Called with the optimizer before each training step (when its active set is the step's).
StepObserver = Callable[[torch.optim.Optimizer], None]
#: Called (untimed) after each training step with the model, the step's seconds and whether
#: they count (False for a step run under the memory meter, which slows it).
AfterStep = Callable[[nn.Module, float, bool], None]
#: ``sam_schedule="late"``: SAM steps only in the last quarter of the run (0, then 1).
LATE_PHASE_START = 0.75

BASE_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adamw": torch.optim.AdamW,
}
SHARPNESS_AWARE = ("sam", "asam", "slsam", "rst")
#: BAR's variants: one backward pass per step, on a LoRA model's adapter pairs.
BAR_METHODS = ("nbar", "obar")
METHODS = (*BASE_OPTIMIZERS, *SHARPNESS_AWARE, *BAR_METHODS)
EVAL_BATCH_SIZE = 256


@dataclass(frozen=True)
class OptimConfig:
    """Hyperparameters; ``base`` is the optimizer that the sharpness-aware methods wrap.

    ``sample_ratio`` is SL-SAM's expected fraction of tensors active and RST's probability of
    a SAM step; ASAM, whose perturbation is scaled by the weights, takes its own radius.
    ``bandit`` (the rule, ``"paper"`` or ``"robust"``), ``bandit_lr`` (None: the rule's
    default), ``head_always_active`` (the model's fresh head kept out of the bandit,
    updated every step) and ``module_arms`` (one arm per module, ``arms_by_module``) are
    SL-SAM's, as are ``descent``, ``auto_always_active`` (``always_active="auto"``, with the
    head when ``head_always_active``), ``resample_every`` and ``sam_prob`` (SLSAM's options).
    ``sam_schedule="late"`` replaces RST's and SL-SAM's probability of a SAM step with the
    late-phase schedule: 0, then 1 from ``LATE_PHASE_START`` of ``total_steps`` on.
    ``bar_mu``, ``bar_schedule`` and ``total_steps`` (the run's steps, which the decaying
    schedules need) are BAR's.
    """

    base: str
    lr: float
    momentum: float
    weight_decay: float
    rho: float
    asam_rho: float
    sample_ratio: float
    seed: int
    bandit: str = "paper"
    bandit_lr: float | None = None
    head_always_active: bool = False
    module_arms: bool = False
    bar_mu: float = 0.5
    bar_schedule: str = "constant"
    total_steps: int | None = None
    descent: str = "sampled"
    auto_always_active: bool = False
    resample_every: int = 1
    sam_prob: float = 1.0
    sam_schedule: str | None = None


@dataclass(frozen=True)
class RunConfig:
    """How long to train, on what, in which order."""

    steps: int
    batch_size: int
    seed: int
    device: torch.device
    progress: bool = True


@dataclass(frozen=True)
class MethodResult:
    """One row of the demo's table; ``extended``: the same run continued (see
    :func:`train_and_test`)."""

    method: str
    accuracy: float
    seconds_per_step: float
    active_fraction: float
    peak_mib: float
    memory_kind: str
    steps: int
    extended: MethodResult | None = None

    @property
    def training_seconds(self) -> float:
        """The run's timed training seconds (its metered steps counted at the mean cost)."""
        return self.seconds_per_step * self.steps


def _base_kwargs(name: str, cfg: OptimConfig) -> dict[str, float]:
    """The keyword arguments of base optimizer ``name``."""
    if name == "sgd":
        return {"lr": cfg.lr, "momentum": cfg.momentum, "weight_decay": cfg.weight_decay}
    return {"lr": cfg.lr, "weight_decay": cfg.weight_decay}


def build_optimizer(method: str, model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """A plain base optimizer (``sgd``, ``adamw``), or a sharpness-aware one around ``cfg.base``."""
    params = model.parameters()
    if method in BASE_OPTIMIZERS:
        return BASE_OPTIMIZERS[method](params, **_base_kwargs(method, cfg))
    base = BASE_OPTIMIZERS[cfg.base]
    kwargs = _base_kwargs(cfg.base, cfg)
    if method == "sam":
        return SAM(params, base, rho=cfg.rho, **kwargs)
    if method == "asam":
        return SAM(params, base, rho=cfg.asam_rho, adaptive=True, **kwargs)
    if method == "rst":
        sam_prob = _sam_prob(cfg, cfg.sample_ratio)
        return RST(params, base, rho=cfg.rho, sam_prob=sam_prob, seed=cfg.seed, **kwargs)
    if method in BAR_METHODS:
        pairs = lora_pairs(model)
        if not pairs:
            raise ValueError(f"{method} needs a LoRA model (the lora task): this one has no pairs")
        return BAR(
            params,
            base,
            pairs,
            mu=cfg.bar_mu,
            variant=method,
            schedule=cfg.bar_schedule,
            total_steps=cfg.total_steps,
            **kwargs,
        )
    if method == "slsam":
        head = fresh_head(model) if cfg.head_always_active else None
        always_active: list[Any] = [head] if head is not None else []
        if cfg.auto_always_active:
            always_active.append("auto")
        return SLSAM(
            params,
            base,
            rho=cfg.rho,
            sample_ratio=cfg.sample_ratio,
            bandit=cfg.bandit,
            bandit_lr=cfg.bandit_lr,
            seed=cfg.seed,
            arms=_module_arms(model, head) if cfg.module_arms else None,
            always_active=always_active or None,
            descent=cfg.descent,
            resample_every=cfg.resample_every,
            sam_prob=_sam_prob(cfg, cfg.sam_prob),
            **kwargs,
        )
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def _sam_prob(cfg: OptimConfig, constant: float) -> float | schedules.Schedule:
    """``constant``, or the late-phase schedule when ``cfg.sam_schedule == "late"``."""
    if cfg.sam_schedule is None:
        return constant
    if cfg.sam_schedule != "late" or cfg.total_steps is None:
        raise ValueError(
            f"sam_schedule must be None or 'late' (with total_steps set), got "
            f"{cfg.sam_schedule!r} with total_steps={cfg.total_steps}"
        )
    return schedules.piecewise([int(LATE_PHASE_START * cfg.total_steps)], [0.0, 1.0])


def _module_arms(model: nn.Module, head: nn.Module | None) -> list[list[torch.Tensor]]:
    """One arm per module (:func:`arms_by_module`), less the head's tensors when it is kept
    out of the bandit."""
    kept_out = set(head.parameters()) if head is not None else set()
    return [arm for arm in arms_by_module(model) if not kept_out.issuperset(arm)]


def batch_stream(num_examples: int, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless index batches from seeded reshuffled epochs, the same for every method; a
    longer run sees the batches of a shorter one first."""
    generator = torch.Generator().manual_seed(seed)
    pending = torch.empty(0, dtype=torch.long)
    while True:
        while len(pending) < batch_size:
            pending = torch.cat([pending, torch.randperm(num_examples, generator=generator)])
        yield pending[:batch_size]
        pending = pending[batch_size:]


def batch_order(
    num_examples: int, steps: int, batch_size: int, seed: int
) -> Iterator[torch.Tensor]:
    """The first ``steps`` batches of :func:`batch_stream`."""
    return itertools.islice(batch_stream(num_examples, batch_size, seed), steps)


@torch.no_grad()
def accuracy(model: nn.Module, split: Split) -> float:
    """Fraction of ``split`` the model (in eval mode) classifies correctly."""
    model.eval()
    correct = 0
    for start in range(0, len(split.labels), EVAL_BATCH_SIZE):
        logits = model(split.inputs[start : start + EVAL_BATCH_SIZE])
        correct += int((logits.argmax(1) == split.labels[start : start + EVAL_BATCH_SIZE]).sum())
    return correct / len(split.labels)


def _sync(device: torch.device) -> None:
    """Wait for queued CUDA work, so that wall-clock times cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _loss_and_backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy loss of one batch, with its gradients accumulated into ``.grad``."""
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return loss


def train_step(
    method: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
) -> torch.Tensor:
    """One optimizer step on batch ``(x, y)``; sharpness-aware methods get a closure that
    re-runs the batch (at the perturbed weights)."""
    loss = _loss_and_backward(model, x, y)
    if method in SHARPNESS_AWARE:
        optimizer.step(lambda: _loss_and_backward(model, x, y))
    else:
        optimizer.step()
    optimizer.zero_grad()
    return loss


def warm_up(
    methods: list[str],
    build_model: Callable[[], nn.Module],
    data: LabelledData,
    optim: OptimConfig,
    run: RunConfig,
) -> None:
    """One untimed step of every method on a throwaway model.

    The libraries' one-off initialisation costs seconds on the CPU, and the first run of each
    code path creates lazily initialised state: both are charged to no method.
    """
    model = build_model().to(run.device).train()
    x = data.train.inputs[: run.batch_size].to(run.device)
    y = data.train.labels[: run.batch_size].to(run.device)
    for method in methods:
        train_step(method, model, build_optimizer(method, model, optim), x, y)
        model.requires_grad_(True)  # SL-SAM leaves its inactive tensors frozen
    _sync(run.device)


def train_and_test(
    method: str,
    build_model: Callable[[], nn.Module],
    data: LabelledData,
    optim: OptimConfig,
    run: RunConfig,
    observer: Callable[[nn.Module, torch.optim.Optimizer], StepObserver | None] | None = None,
    budget_seconds: float | None = None,
    after_step: AfterStep | None = None,
) -> MethodResult:
    """Fine-tune a fresh model with ``method`` for ``run.steps`` steps, then test it on
    ``data.test`` (whichever held-out split the caller put there).

    The model (its head's initialisation included), dropout and the batch order are seeded
    with ``run.seed``, so every method starts from the same weights and sees the same batches.
    Seconds per step times forward, backward and optimizer step only (no evaluation); peak
    memory is the run's peak above the model's own weights, over the metered steps (the first
    ``METERED_STEPS`` and every ``METER_EVERY``-th after them, all untimed).
    ``observer(model, optimizer)``, if given, returns the callback that is called (untimed)
    before each of the ``run.steps`` steps. ``budget_seconds``, if given and above the run's
    ``training_seconds`` by at least a step at the mean cost, continues training on the same
    batch stream while the next step, at the cost of the last one, still fits the budget;
    the result of the whole run (tested again; its peak memory is the first part's) is
    ``extended``. The stop is on seconds, not on a step count from the mean cost, because a
    method's steps need not cost the same: a late-phase schedule's continued steps are all
    SAM steps. The learning rate is constant, so the continued run is the run of that many
    steps.
    ``after_step(model, seconds)``, if given, is called (untimed) after every step, the
    continued ones included.
    """
    torch.manual_seed(run.seed)
    model = build_model().to(run.device)
    train = Split(data.train.inputs.to(run.device), data.train.labels.to(run.device))
    test = Split(data.test.inputs.to(run.device), data.test.labels.to(run.device))
    batches = batch_stream(len(train.labels), run.batch_size, run.seed)
    progress = StepProgress(run.steps, f"{method:>6}", enabled=run.progress)
    metered = min(run.steps, METERED_STEPS)
    with PeakMemory(run.device) as memory:
        optimizer = build_optimizer(method, model, optim)
        on_step = observer(model, optimizer) if observer is not None else None
        metered_seconds, active = _train(
            method, model, optimizer, train, batches, metered, on_step, progress, after_step, True
        )
    peak_mib, seconds, timed_steps = memory.peak_mib, 0.0, 0
    while metered + timed_steps < run.steps:
        chunk = min(METER_EVERY - 1, run.steps - metered - timed_steps)
        chunk_seconds, chunk_active = _train(
            method, model, optimizer, train, batches, chunk, on_step, progress, after_step
        )
        seconds, timed_steps = seconds + chunk_seconds, timed_steps + chunk
        active += chunk_active
        if metered + timed_steps < run.steps:
            with PeakMemory(run.device) as sampled:
                _, one = _train(
                    method, model, optimizer, train, batches, 1, on_step, progress, after_step, True
                )
            metered, active = metered + 1, active + one
            peak_mib = max(peak_mib, sampled.peak_above_mib(memory.start_bytes))
    progress.close()
    if timed_steps == 0:  # a run no longer than the metered steps: time those
        seconds, timed_steps = metered_seconds, metered
    result = MethodResult(
        method=method,
        accuracy=accuracy(model, test),
        seconds_per_step=seconds / timed_steps,
        active_fraction=sum(active) / len(active),
        peak_mib=peak_mib,
        memory_kind=memory.description,
        steps=run.steps,
    )
    if budget_seconds is None:
        return result
    left = budget_seconds - result.training_seconds
    if left < result.seconds_per_step:  # not one more step at the mean cost
        return result
    more = StepProgress(int(left / result.seconds_per_step), f"{method:>6}", run.progress)
    extra_seconds, extra_active = _train(
        method, model, optimizer, train, batches, None, None, more, after_step, stop_before=left
    )
    more.close()
    active += extra_active
    extra_steps = len(extra_active)
    extended = replace(
        result,
        accuracy=accuracy(model, test),
        seconds_per_step=(result.training_seconds + extra_seconds) / (run.steps + extra_steps),
        active_fraction=sum(active) / len(active),
        steps=run.steps + extra_steps,
    )
    return replace(result, extended=extended)


def _train(
    method: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: Split,
    batches: Iterator[torch.Tensor],
    steps: int | None,
    on_step: StepObserver | None,
    progress: StepProgress,
    after_step: AfterStep | None = None,
    metered: bool = False,
    stop_before: float = math.inf,
) -> tuple[float, list[float]]:
    """The training loop over the next ``steps`` of ``batches`` (None: no limit), reported to
    ``progress``: returns the timed seconds and each step's active fraction. It stops early
    when one more step at the last step's cost would take the seconds past ``stop_before``.
    ``after_step`` gets each step's seconds, flagged as not counting when the steps run
    ``metered``."""
    model.train()
    active: list[float] = []
    seconds = 0.0
    for idx in itertools.islice(batches, steps):
        x, y = train.inputs[idx], train.labels[idx]
        active.append(getattr(optimizer, "active_param_fraction", 1.0))
        if on_step is not None:
            on_step(optimizer)
        _sync(train.inputs.device)
        start = time.perf_counter()
        loss = train_step(method, model, optimizer, x, y)
        _sync(train.inputs.device)
        step_seconds = time.perf_counter() - start
        seconds += step_seconds
        progress.update(progress.done, loss.detach())
        if after_step is not None:
            after_step(model, step_seconds, not metered)
            model.train()
        if seconds + step_seconds > stop_before:
            break
    return seconds, active
