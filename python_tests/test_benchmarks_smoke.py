"""The benchmark suite runs end to end on tiny inputs, writes its three files, and refuses to
time a method whose output differs from the reference."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
import torch

pytest.importorskip("transformers")

from benchmarks import backup_sizing, e2e, host_bandit, memory_breakdown, norms_in_backward, run
from benchmarks.cases import Case, Method, run_case
from benchmarks.kernel_cases import our_backends

TINY = [
    "--lists", "grid:12x777", "--dtypes", "fp32,mixed", "--op-fractions", "1.0",
    "--step-fractions", "0.5", "--extra-lists", "odd_sizes:30x500", "--e2e", "tiny",
    "--rounds", "2", "--e2e-warmup", "1", "--e2e-steps", "2", "--copy-mib", "8",
    "--label", "smoke", "--threads", "1", "--bar-lists", "lora:16x40x2x3",
]  # fmt: skip


@pytest.mark.slow
def test_quick_run_writes_verified_rows(tmp_path):
    threads = torch.get_num_threads()
    assert (
        run.main(["--quick", "--device", "cpu", "--out", str(tmp_path), "--stem", "t", *TINY]) == 0
    )
    data = json.loads((tmp_path / "t.json").read_text())
    assert (tmp_path / "t.md").read_text().count("| grad_sqnorms |") >= 4
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "t.png").stat().st_size > 0
    rows = data["kernel_rows"]
    assert rows and all(r["verified"] for r in rows), [r["error"] for r in rows if r["error"]]
    ops = {r["op"] for r in rows}
    assert ops == {
        "grad_sqnorms", "grad_sqnorms |w*g| (ASAM)", "bandit_update+sample", "perturb_+backup",
        "restore_", "restore+AdamW", "restore+SGD", "SAM step", "SL-SAM step", "BAR step",
    }  # fmt: skip
    methods = {r["method"] for r in rows}
    assert {"reference", "torch foreach", "davda54-style loop", "authors-style SL-SAM"} <= methods
    for backend in our_backends(torch.device("cpu")):
        assert f"ours:{backend}" in methods
    timed = [r for r in rows if r["median_s"] > 0]
    assert len(timed) == len(rows)
    assert all(r["gb_per_s"] > 0 for r in rows if r["op"] != "bandit_update+sample")
    assert {r["dtype"] for r in rows} == {"fp32", "mixed"}
    assert {r["workload"] for r in rows} == {"grid:12x777", "odd_sizes:30x500", "lora:16x40x2x3"}
    bar_baselines = [r for r in rows if r["op"] == "BAR step" and r["role"] == "baseline"]
    assert bar_baselines and all(r["verified"] == "n/a" for r in bar_baselines)
    [result] = data["e2e"]
    assert [r["method"] for r in result["rows"]] == list(e2e.METHODS)
    by_method = {r["method"]: r for r in result["rows"]}
    assert all(r["median_s"] > 0 for r in result["rows"]), result["rows"]
    assert by_method["AdamW"]["ratio_to_adamw"] == 1.0
    assert 0 < by_method["SL-SAM s=0.2"]["active_fraction"] < 1
    assert by_method["SAM"]["floor_ratio_to_adamw"] == pytest.approx(2.0)
    assert data["meta"]["copy_gbps"] > 0 and data["meta"]["git_rev"]
    assert torch.get_num_threads() == threads  # --threads is undone
    assert [r["method"] for r in data["memory"]] == list(memory_breakdown.METHODS)
    assert "Peak tensor memory" in (tmp_path / "t.md").read_text()


def test_memory_breakdown_parts_add_up_to_the_peak():
    rows = memory_breakdown.run(["tiny"], torch.device("cpu"), warmup=1, steps=2, log=lambda _: 0)
    by_method = {r["method"]: r for r in rows}
    assert all("error" not in r for r in rows), rows
    for r in rows:
        parts = sum(r[p] for p in memory_breakdown.PARTS)
        assert parts == pytest.approx(r["peak"], abs=1e-6)
        assert 0 < r["peak above start"] <= r["peak"]
    weights = by_method["AdamW"]["weights"]
    assert by_method["AdamW"]["weight backups"] == 0
    assert by_method["SAM"]["weight backups"] >= weights
    assert by_method["SL-SAM s=0.2"]["weight backups"] < weights
    assert by_method["davda54-style SAM loop"]["weight backups"] >= weights
    assert "| tiny | SL-SAM s=0.2 |" in memory_breakdown.table(rows)


def test_memory_breakdown_on_lora_adapters_has_a_bar_row():
    rows = memory_breakdown.run(
        ["tiny+lora"], torch.device("cpu"), warmup=1, steps=1, log=lambda _: 0
    )
    by_method = {r["method"]: r for r in rows}
    assert list(by_method) == list(memory_breakdown.LORA_METHODS)
    assert all("error" not in r for r in rows), rows
    adamw, sam, bar = by_method["AdamW"], by_method["SAM"], by_method["BAR nbar mu=0.5"]
    # the frozen weights count as weights; backups and state cover the adapters only
    assert 0 < sam["weight backups"] < adamw["weights"] / 10
    assert bar["weight backups"] == 0 and bar["optimizer state"] > 0
    assert bar["gradients"] == pytest.approx(adamw["gradients"])


def test_a_second_run_refuses_to_overwrite_without_force(tmp_path):
    (tmp_path / "t.md").write_text("committed results")
    with pytest.raises(SystemExit, match=r"would overwrite .*t\.md.*pass --force"):
        run.main(["--quick", "--device", "cpu", "--out", str(tmp_path), "--stem", "t", *TINY])
    assert (tmp_path / "t.md").read_text() == "committed results"


def test_each_run_gets_a_folder_of_its_own():
    first = run.run_folder(run.RESULTS, "cpu", "quick")
    assert first.parent == run.RESULTS and first.name.endswith("-cpu-quick")
    assert not first.exists()


def test_a_disagreeing_baseline_is_one_line_not_a_traceback(capsys):
    x = torch.ones(10)
    methods = [
        Method("reference", "reference", lambda: (lambda: x * 2, lambda r: [r])),
        Method("torch fused", "baseline", lambda: (lambda: x * 2 + 1.0, lambda r: [r])),
    ]
    case = Case("op", "w", "fp32", 1.0, 1.0, 1, 10, 40.0, methods, lambda: None, (1e-4, 1e-6))
    _, baseline = run_case(case, 2, torch.device("cpu"))
    assert "Traceback" not in capsys.readouterr().err
    assert baseline["error"] == (
        "VerificationError: torch fused: output 0 differs from the reference in 10 of 10 "
        "elements, by up to 1 (allowed 1e-06 + 0.0001 x |ref|)"
    )


def test_a_wrong_method_is_not_timed():
    x = torch.ones(10)
    methods = [
        Method("reference", "reference", lambda: (lambda: x * 2, lambda r: [r])),
        Method("wrong", "ours", lambda: (lambda: x * 2 + 1e-3, lambda r: [r])),
    ]
    case = Case("op", "w", "fp32", 1.0, 1.0, 1, 10, 40.0, methods, lambda: None, (1e-4, 1e-6))
    ref, wrong = run_case(case, 2, torch.device("cpu"))
    assert ref["verified"] and ref["median_s"] > 0
    assert not wrong["verified"] and "median_s" not in wrong and "differs" in wrong["error"]


def test_floor_ratio():
    parts = {"forward": 1.0, "backward_input": 1.0, "backward_full": 3.0}
    assert e2e.floor_ratio(parts, 1.0) == pytest.approx(2.0)
    assert e2e.floor_ratio(parts, 0.0) == pytest.approx(1.0)
    assert e2e.floor_ratio(parts, 0.5) == pytest.approx(1.5)
    # an input-only backward timed slower than the full one counts as the full one
    noisy = {"forward": 1.0, "backward_input": 3.5, "backward_full": 3.0}
    assert e2e.floor_ratio(noisy, 1.0) == pytest.approx(2.0)
    assert e2e.floor_ratio(noisy, 0.0) == pytest.approx(2.0)


def test_norms_in_backward_times_both_forms_of_the_same_norms():
    rows = norms_in_backward.measure("tiny", rounds=2)
    assert [r["form"] for r in rows] == [
        "norms after the backward (one launch)",
        "norms in the backward's hooks",
    ]
    for r in rows:
        assert r["backward ms"] > 0 and r["norm ms"] > 0 and r["norms read, MiB"] > 0


def test_host_bandit_prints_both_backends_at_every_arm_count(capsys):
    assert host_bandit.main(["--arms", "10,30", "--rounds", "2"]) == 0
    table = capsys.readouterr().out
    for backend in ("auto", "reference"):
        assert table.count(f"| {backend} | ") == 4, table
    assert "| 10 arms | 30 arms |" in table


def test_backup_sizing_compares_both_forms_over_the_same_active_sets():
    rows = {
        f: backup_sizing.metered_run("tiny", f, steps=4, sample_ratio=0.2)
        for f in backup_sizing.FORMS
    }
    arena, per_step = rows.values()
    assert arena["backups needed, max MiB"] == per_step["backups needed, max MiB"] > 0
    assert arena["backups held at the end MiB"] >= arena["backups needed, max MiB"]
    assert per_step["backups held at the end MiB"] == 0
    times = backup_sizing.step_times("tiny", steps=2, sample_ratio=0.2)
    assert set(times) == set(backup_sizing.FORMS) and min(times.values()) > 0


def test_the_help_explains_every_option_and_shows_no_empty_default(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one line per option
    with pytest.raises(SystemExit) as exit_info:
        run.parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "(default: )" not in text
    assert re.search(r"--device DEVICE\s+the torch device to benchmark on", text)
    assert re.search(r"--label LABEL\s+a line printed under the title, e.g. 'smoke'\n", text)


def test_rst_rows_cost_their_mean_step():
    """RST's steps have two modes (plain, SAM): the median picks one, the mean weighs both."""
    rst = {"method": "RST p=0.5", "median_s": 0.54, "mean_s": 0.45}
    sam = {"method": "SAM", "median_s": 0.59, "mean_s": 0.6}
    assert e2e.per_step_s(rst) == 0.45 and e2e.per_step_s(sam) == 0.59
