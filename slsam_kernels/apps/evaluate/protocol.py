"""The protocol: carve a validation split, tune the base learning rate (and optionally rho) on
it with one seed (once per task with ``tune_once``), then train every method with its seeds and
test it once; the equal-time variants are then trained on to SAM's time with the same seed and
tested again."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from slsam_kernels.apps.demo import train as demo_train
from slsam_kernels.apps.demo.curves import CurveRecorder
from slsam_kernels.apps.demo.data import LabelledData, Split
from slsam_kernels.apps.demo.tasks import TASKS, Prepared
from slsam_kernels.apps.demo.variants import VARIANTS

from .arms import ArmRecorder, all_of, arm_recorders
from .balance import BalanceRecorder, balance_recorders
from .config import EvalConfig, TaskSpec

ARM_WINDOWS = 10
_CARVE_STREAM = 0x5EED_CA7E  # offsets the data seed for the validation carve-out
Log = Callable[[str], None]


@dataclass(frozen=True)
class Splits:
    """The three splits of one task and noise level, and which training rows fed which."""

    fit: LabelledData  # train = fitted rows, test = the test split
    tune: LabelledData  # train = fitted rows, test = the validation split
    fit_rows: torch.Tensor
    val_rows: torch.Tensor


@dataclass
class Setting:
    """The results of one task at one noise level; each run's ``budget`` is ``"steps"``
    (the task's step count) or ``"time"`` (SAM's training seconds with the same seed)."""

    task: str
    noise: float
    base: str
    lr_grid: list[float]
    val_acc_by_lr: list[float]
    lr: float
    rho_grid: list[float]
    val_acc_by_rho: list[float]
    rho: float
    asam_rho: float
    #: Per BAR variant: its (mu, schedule) grid, their validation accuracies, the choice.
    bar: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Per variant with ``tune_rho``: its rho grid, their validation accuracies, the choice.
    rho_by_variant: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    #: The noise level the tuning above ran at (another than ``noise`` with ``tune_once``).
    tuned_at_noise: float | None = None


def carve_validation(data: LabelledData, val_size: int, seed: int) -> Splits:
    """Split ``data.train`` into disjoint fitted and validation rows (seeded); the test split
    is kept for the final accuracies only. Validation labels carry the training noise, which
    under symmetric noise rescales expected accuracy without changing which setting ranks
    first."""
    total = len(data.train.labels)
    if not 0 < val_size < total:
        raise ValueError(f"val_size must be in (0, {total}), got {val_size}")
    # The label noise draws randperm(len(train)) from the same data seed: carving with that
    # stream would make the validation rows exactly the first noisy rows (found at 40% noise:
    # every validation label wrong, validation accuracy 0.04 on 10 classes).
    generator = torch.Generator().manual_seed(seed + _CARVE_STREAM)
    order = torch.randperm(total, generator=generator)
    val_rows, fit_rows = order[:val_size], order[val_size:]

    def rows(idx: torch.Tensor) -> Split:
        return Split(data.train.inputs[idx], data.train.labels[idx])

    fit = rows(fit_rows)
    return Splits(
        fit=LabelledData(train=fit, test=data.test, num_classes=data.num_classes),
        tune=LabelledData(train=fit, test=rows(val_rows), num_classes=data.num_classes),
        fit_rows=fit_rows,
        val_rows=val_rows,
    )


def _optim(spec: TaskSpec, base: str, lr: float, rho: float, seed: int) -> demo_train.OptimConfig:
    return demo_train.OptimConfig(
        base=base,
        lr=lr,
        momentum=0.9,
        weight_decay=TASKS[spec.task].defaults.weight_decay,
        rho=rho,
        asam_rho=spec.asam_rho,
        sample_ratio=0.5,
        seed=seed,
        total_steps=spec.steps,
    )


def _run_config(spec: TaskSpec, seed: int, device: torch.device) -> demo_train.RunConfig:
    return demo_train.RunConfig(
        steps=spec.steps, batch_size=spec.batch_size, seed=seed, device=device, progress=False
    )


def _grid_search(
    grid: tuple[Any, ...], score: Callable[[Any], float], log: Log, what: str
) -> tuple[list[float], Any]:
    """Scores of every grid value and the best value (the first on ties); a single value is
    taken as given, unscored (NaN)."""
    if len(grid) == 1:
        return [math.nan], grid[0]
    scores = []
    for value in grid:
        scores.append(score(value))
        label = f"{value:g}" if isinstance(value, float) else str(value)
        log(f"    {what} {label}: validation accuracy {scores[-1]:.3f}")
    return scores, grid[max(range(len(grid)), key=scores.__getitem__)]


def evaluate_setting(
    spec: TaskSpec,
    noise: float,
    prepared: Prepared,
    config: EvalConfig,
    device: torch.device,
    log: Log,
    tuned: Setting | None = None,
    first_noise: bool = True,
) -> Setting:
    """Tune on the validation split, or take the choices of ``tuned`` (another noise level's
    setting), then run every variant with its seeds on the test split (``first_noise``: this
    is the task's first noise level, see ``EvalConfig.variants_at``)."""
    splits = carve_validation(prepared.data, spec.val_size, config.data_seed)
    if tuned is None:
        setting = _tune(spec, noise, prepared, splits, config, device, log)
    else:
        setting = replace(
            tuned,
            noise=noise,
            runs=[],
            bar=copy.deepcopy(tuned.bar),
            rho_by_variant=copy.deepcopy(tuned.rho_by_variant),
        )
        own_rhos = "".join(
            f", {name} rho {chosen['rho']:g}" for name, chosen in tuned.rho_by_variant.items()
        )
        log(
            f"    tuned at {tuned.tuned_at_noise:.0%} label noise: lr {tuned.lr:g}, "
            f"rho {tuned.rho:g}{own_rhos}"
        )
    run_order = list(config.variants_at(first_noise))
    if config.equal_time_variants:
        run_order.sort(key=lambda v: v != "sam")  # SAM first: its times are the budgets
    sam_seconds: dict[int, float] = {}
    for name in run_order:
        for seed in config.seeds_of(name):
            budget = sam_seconds[seed] if name in config.equal_time_variants else None
            records = _train_variant(name, seed, budget, spec, setting, prepared, splits, device)
            for record in records:
                log(
                    f"    {name:<16} seed {seed}, {record['steps']:>4} steps: test acc "
                    f"{record['accuracy']:.3f}, {record['seconds_per_step']:.3f} s/step, active "
                    f"{record['active_fraction']:.3f}"
                )
            if name == "sam":
                sam_seconds[seed] = records[0]["seconds_per_step"] * records[0]["steps"]
            setting.runs += records
    order = {name: i for i, name in enumerate(config.variants)}
    setting.runs.sort(key=lambda r: (order[r["variant"]], r["budget"] == "time", r["seed"]))
    return setting


def _tune(
    spec: TaskSpec,
    noise: float,
    prepared: Prepared,
    splits: Splits,
    config: EvalConfig,
    device: torch.device,
    log: Log,
) -> Setting:
    """The setting's tuning on the validation split with the first seed: the base learning
    rate, SAM's rho, BAR's (mu, schedule) and the rho of the variants with ``tune_rho``."""
    base = TASKS[spec.task].defaults.base
    tune_seed = config.seeds[0]

    def val_accuracy(
        method: str,
        lr: float,
        rho: float,
        bar: tuple[float, str] | None = None,
        variant: str | None = None,
    ) -> float:
        optim = _optim(spec, base, lr, rho, tune_seed)
        if variant is not None:  # the rho tried, not the variant's own
            optim = replace(VARIANTS[variant].options(optim), rho=rho)
        if bar is not None:
            optim = replace(optim, bar_mu=bar[0], bar_schedule=bar[1])
        run = _run_config(spec, tune_seed, device)
        return demo_train.train_and_test(
            method, prepared.build_model, splits.tune, optim, run
        ).accuracy

    default_rho = spec.rho_grid[0]
    lr_scores, lr = _grid_search(
        spec.lr_grid, lambda v: val_accuracy(base, v, default_rho), log, f"{base} lr"
    )
    rho_scores, rho = _grid_search(spec.rho_grid, lambda v: val_accuracy("sam", lr, v), log, "rho")
    log(f"    chosen: lr {lr:g}, rho {rho:g} (asam rho {spec.asam_rho:g})")
    setting = Setting(
        task=spec.task,
        noise=noise,
        base=base,
        lr_grid=list(spec.lr_grid),
        val_acc_by_lr=lr_scores,
        lr=lr,
        rho_grid=list(spec.rho_grid),
        val_acc_by_rho=rho_scores,
        rho=rho,
        asam_rho=spec.asam_rho,
        tuned_at_noise=noise,
    )
    for name in config.variants:
        method = VARIANTS[name].method
        if method not in demo_train.BAR_METHODS:
            continue
        scores, (mu, schedule) = _grid_search(
            spec.bar_grid,
            lambda v, method=method: val_accuracy(method, lr, rho, bar=v),
            log,
            f"{name} (mu, schedule)",
        )
        setting.bar[name] = {
            "grid": [list(v) for v in spec.bar_grid],
            "val_acc": scores,
            "mu": mu,
            "schedule": schedule,
        }
        log(f"    chosen for {name}: mu {mu:g}, {schedule} schedule")
    for name in config.rho_tuned_variants if spec.sparse_rho_grid else ():
        variant = VARIANTS[name]
        scores, chosen = _grid_search(
            spec.sparse_rho_grid,
            lambda v, variant=variant, name=name: val_accuracy(variant.method, lr, v, variant=name),
            log,
            f"{name} rho",
        )
        setting.rho_by_variant[name] = {
            "grid": list(spec.sparse_rho_grid),
            "val_acc": scores,
            "rho": chosen,
        }
        log(f"    chosen for {name}: rho {chosen:g}")
    for name, source in config.rho_shared_variants.items() if spec.sparse_rho_grid else ():
        setting.rho_by_variant[name] = {**setting.rho_by_variant[source], "shared_from": source}
        log(f"    {name} takes the rho chosen for {source}")
    return setting


def _train_variant(
    name: str,
    seed: int,
    budget_seconds: float | None,
    spec: TaskSpec,
    setting: Setting,
    prepared: Prepared,
    splits: Splits,
    device: torch.device,
) -> list[dict[str, Any]]:
    """One seed of one variant on the test split: its equal-steps record (with the arms it
    sampled), then with a budget its equal-time record (the run continued)."""
    variant = VARIANTS[name]
    method = variant.method_for(setting.base)
    optim = variant.options(_optim(spec, setting.base, setting.lr, setting.rho, seed))
    if name in setting.rho_by_variant:  # tuned here: in place of the variant's own
        optim = replace(optim, rho=setting.rho_by_variant[name]["rho"])
    if name in setting.bar:
        chosen = setting.bar[name]
        optim = replace(optim, bar_mu=chosen["mu"], bar_schedule=chosen["schedule"])
    recorders: list[ArmRecorder] = []
    balances: list[BalanceRecorder] = []
    curve = (
        CurveRecorder(splits.tune.test, spec.curve_every) if spec.curve_every is not None else None
    )
    result = demo_train.train_and_test(
        method,
        prepared.build_model,
        splits.fit,
        optim,
        _run_config(spec, seed, device),
        observer=all_of(
            arm_recorders(spec.steps, ARM_WINDOWS, recorders), balance_recorders(balances)
        ),
        budget_seconds=budget_seconds,
        after_step=curve,
    )
    records = [{"variant": name, "seed": seed, "budget": "steps", **_fields(result)}]
    if curve is not None:
        # the whole run's curve, a continued run included (validation split, untimed)
        records[0]["curve"] = curve.points()
    if recorders:
        records[0]["arms"] = recorders[0].summary()
    if balances:
        records[0]["balancedness"] = [round(v, 6) for v in balances[0].values]
    if budget_seconds is not None:
        timed = result.extended or result
        records.append(
            {
                "variant": name,
                "seed": seed,
                "budget": "time",
                **_fields(timed),
                "budget_seconds": budget_seconds,
                "time_vs_budget": timed.training_seconds / budget_seconds,
            }
        )
    return records


def _fields(result: demo_train.MethodResult) -> dict[str, Any]:
    """A result's fields for the JSON record, without the continued run."""
    fields = asdict(result)
    del fields["extended"]
    return fields


def run_evaluation(config: EvalConfig, device: torch.device, log: Log = print) -> list[Setting]:
    """Every task and noise level of ``config``; prints progress through ``log``."""
    settings = []
    started = time.perf_counter()
    for spec in config.tasks:
        base = TASKS[spec.task].defaults.base
        methods = sorted({base, "sam"} | {VARIANTS[v].method for v in config.variants} - {"base"})
        tuned: Setting | None = None
        for noise in spec.noises:
            log(
                f"[{time.perf_counter() - started:6.0f} s] {spec.task}, {noise:.0%} label noise: "
                f"{spec.train_size - spec.val_size} fitted / {spec.val_size} validation / "
                f"{spec.test_size} test examples, {spec.steps} steps of batch {spec.batch_size}"
            )
            prepared = TASKS[spec.task].prepare(
                spec.train_size, spec.test_size, noise, config.data_seed, **spec.prepare_options
            )
            warm_optim = _optim(spec, base, spec.lr_grid[0], spec.rho_grid[0], config.seeds[0])
            demo_train.warm_up(
                methods,
                prepared.build_model,
                prepared.data,
                warm_optim,
                _run_config(spec, config.seeds[0], device),
            )
            first_noise = noise == spec.noises[0]
            setting = evaluate_setting(
                spec, noise, prepared, config, device, log, tuned, first_noise
            )
            if config.tune_once and tuned is None:
                tuned = setting
            settings.append(setting)
    log(f"[{time.perf_counter() - started:6.0f} s] done")
    return settings
