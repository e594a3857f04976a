"""The run's outputs: a JSON file (machine, versions, git revision, every row), a Markdown
table and a PNG chart, named ``DATE-DEVICE[-PRESET]``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from . import memory_breakdown
from .e2e import per_step_s

MEMORY_HEAD = (
    "### Peak tensor memory of one warm step, MiB (CPU)\n\n"
    "Live tensor bytes after every aten op (forward, backward, optimizer), "
    "`slsam_kernels.apps.measure.memory_breakdown.MemoryBreakdown`; AdamW base, lr 1e-4, wd 0.01; "
    "3 unmeasured steps, then 5 measured: the row is the step with the highest peak above "
    "its start, split into what each storage served as (weights, backups, state, gradients, "
    "saved for the backward, the rest), plus the mean over the 5 steps. The start holds the "
    "weights, the optimizer state and the backup buffers kept from earlier steps. "
    "`x SAM` compares the means."
)


def _ms(x: float | None) -> str:
    return "" if x is None else f"{x * 1e3:.3f}"


def _num(x: float | None, fmt: str = "{:.2f}") -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def add_speedups(rows: list[dict[str, Any]], copy_gbps: float) -> None:
    """Per case: ``ours_speedup`` = this method's median / our fastest backend's median (the
    reference where no fast backend runs the op, e.g. the bandit on the CPU), and the
    achieved bandwidth as a percentage of the copy bandwidth."""
    cases: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        key = (row["op"], row["workload"], row["dtype"], row["fraction"])
        cases.setdefault(key, []).append(row)
    for group in cases.values():
        timed = [r for r in group if r.get("median_s") is not None]
        ours = [r for r in timed if r["role"] == "ours"] or [
            r for r in timed if r["role"] == "reference"
        ]
        best = min((r["median_s"] for r in ours), default=None)
        for r in group:
            if r.get("gb_per_s") is not None:
                r["pct_copy_bw"] = 100 * r["gb_per_s"] / copy_gbps
            if best is not None and r.get("median_s") is not None:
                r["ours_speedup"] = r["median_s"] / best


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def kernel_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| op | list | dtype | active tensors / elements | method | median ms | p25-p75 ms "
        "| GB/s | % copy BW | launches | extra peak MiB | ours vs this | verified |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        active = f"{r['fraction']:.0%} / {r['active_numel_fraction']:.0%}"
        spread = (
            f"{_ms(r.get('p25_s'))}-{_ms(r.get('p75_s'))}" if r.get("p25_s") is not None else ""
        )
        verified = {True: "yes", "n/a": "n/a (another computation)"}.get(
            r.get("verified"), f"NO: {_cell(r.get('error', '')[:80])}"
        )
        lines.append(
            f"| {_cell(r['op'])} | {r['workload']} | {r['dtype']} | {active} | {r['method']} | "
            f"{_ms(r.get('median_s'))} | {spread} | {_num(r.get('gb_per_s'), '{:.1f}')} | "
            f"{_num(r.get('pct_copy_bw'), '{:.0f}')} | {r.get('launches', '')} | "
            f"{_num(r.get('extra_peak_mib'), '{:.1f}')} | {_num(r.get('ours_speedup'))}x | "
            f"{verified} |"
        )
    return "\n".join(lines)


def e2e_table(result: dict[str, Any]) -> str:
    parts = result["backprop_parts_s"]
    m = result["model"]
    head = (
        f"### End to end: `{result['config']}` ({result['params'] / 1e6:.1f}M parameters: "
        f"GPT-2-style, {m['layers']} layers, width {m['hidden']}, vocab {m['vocab']}, batch "
        f"{m['batch']} x {m['seq']} tokens, {m['dtype']} weights)\n\n"
        f"forward {parts['forward'] * 1e3:.1f} ms, input-gradient "
        f"backward {parts['backward_input'] * 1e3:.1f} ms, full backward "
        f"{parts['backward_full'] * 1e3:.1f} ms (medians; the floor's inputs)\n"
    )
    lines = [
        "| method | s/step (median; RST: mean) | p25-p75 s | x AdamW | x SAM | floor x AdamW "
        "| active | peak MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        if "median_s" not in r:
            lines.append(f"| {r['method']} | failed: {r.get('error', '')[:80]} | | | | | | |")
            continue
        lines.append(
            f"| {r['method']} | {per_step_s(r):.4f} | {r['p25_s']:.4f}-{r['p75_s']:.4f} | "
            f"{_num(r.get('ratio_to_adamw'))} | {_num(r.get('ratio_to_sam'))} | "
            f"{_num(r.get('floor_ratio_to_adamw'))} | {r['active_fraction']:.3f} | "
            f"{_num(r.get('peak_mib'), '{:.0f}')} |"
        )
    return head + "\n" + "\n".join(lines)


def markdown(run: dict[str, Any]) -> str:
    meta = run["meta"]
    out = [
        f"# Benchmarks, {meta['date']} on {meta['device_name']} (preset `{meta['preset']}`)",
        "",
        f"`{meta['command']}`; {meta['cpu']}, {meta['threads']} threads; torch "
        f"{meta['versions']['torch']}, python {meta['versions']['python']}, git "
        f"{meta['git_rev']}; load average at the start {meta['load_average']}.",
        "",
        f"Copy bandwidth measured in this process: {meta['copy_gbps']:.1f} GB/s (read + write "
        f"of a {meta['copy_mib']} MiB `copy_`; the triad `a.add_(b, alpha=2)` reached "
        f"{meta['triad_gbps']:.1f} GB/s, so fused kernels can exceed 100% of `copy_`). "
        "GB/s counts the bytes each operation must "
        "move (streams x active bytes; see `benchmarks/README.md`). Launches: "
        f"{meta['launch_method']}. Extra peak memory: {meta['memory_method']}, during the "
        'first call from a fresh state. "ours vs this": this row\'s median over our fastest '
        "backend's median. Every row was checked against the reference once before timing.",
    ]
    if meta.get("label"):
        out += ["", f"**{meta['label']}**"]
    if run["kernel_rows"]:
        out += ["", "## Kernels and optimizer steps", "", kernel_table(run["kernel_rows"])]
    for result in run["e2e"]:
        out += ["", e2e_table(result)]
    if run.get("memory"):
        out += ["", MEMORY_HEAD, "", memory_breakdown.table(run["memory"])]
    return "\n".join(out) + "\n"


def draw_chart(run: dict[str, Any], path: Path) -> bool:
    """Time per step per method (end to end) and GB/s per kernel against the copy floor.
    Returns False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 5.5))
    for result in run["e2e"][:1]:
        rows = [r for r in result["rows"] if "median_s" in r]
        ax1.bar([r["method"] for r in rows], [r["median_s"] for r in rows])
        ax1.set_ylabel("s / step (median)")
        ax1.set_title(f"end to end: {result['config']}")
        ax1.tick_params(axis="x", rotation=45)
        for label in ax1.get_xticklabels():
            label.set_horizontalalignment("right")
    streams = [r for r in run["kernel_rows"] if r.get("gb_per_s") and r["op"] != "SL-SAM step"]
    if streams:
        first = streams[0]
        pick = [
            r
            for r in streams
            if (r["workload"], r["dtype"], r["fraction"])
            == (first["workload"], first["dtype"], first["fraction"])
        ]
        ops = list(dict.fromkeys(r["op"] for r in pick))
        methods = list(dict.fromkeys(r["method"] for r in pick))
        width = 0.8 / max(len(methods), 1)
        for j, method in enumerate(methods):
            xs, ys = [], []
            for i, op in enumerate(ops):
                match = [r for r in pick if r["op"] == op and r["method"] == method]
                if match:
                    xs.append(i + j * width)
                    ys.append(match[0]["gb_per_s"])
            ax2.bar(xs, ys, width, label=method)
        ax2.axhline(run["meta"]["copy_gbps"], color="k", linestyle="--", label="copy_ bandwidth")
        ax2.set_xticks([i + 0.4 - width / 2 for i in range(len(ops))], ops, rotation=30)
        ax2.set_ylabel("GB/s (bytes the op must move)")
        ax2.set_title(f"kernels: {first['workload']} {first['dtype']} {first['fraction']:.0%}")
        ax2.legend(fontsize=7)
    fig.suptitle(f"{run['meta']['device_name']}, {run['meta']['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def partial_path(directory: Path, stem: str) -> Path:
    """The JSON-lines file that holds a run's records while it runs (see ``RunLog``)."""
    return directory / f"{stem}.jsonl"


class RunLog:
    """The run so far, one JSON line per record the moment it is measured: ``{"meta": ...}``,
    then ``{"kernel_row": ...}`` per method of each case, ``{"e2e": ...}`` per end-to-end model
    and ``{"memory": [...]}``. A run killed part-way keeps every case it finished
    (``read_partial`` reads them back); a finished run's .json holds all of it, so ``finish``
    removes the file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("w", buffering=1)  # line-buffered: each record lands at once

    def add(self, kind: str, data: Any) -> None:
        self._file.write(json.dumps({kind: data}, default=str) + "\n")

    def finish(self) -> None:
        self._file.close()
        self.path.unlink()


def read_partial(path: Path) -> dict[str, Any]:
    """The run dict (as ``write`` takes it) of what a ``RunLog`` holds; a last line cut short
    by a kill is left out."""
    run: dict[str, Any] = {"meta": None, "kernel_rows": [], "e2e": [], "memory": []}
    for line in path.read_text().splitlines():
        try:
            [(kind, data)] = json.loads(line).items()
        except ValueError:
            continue
        if kind == "kernel_row":
            run["kernel_rows"].append(data)
        elif kind == "e2e":
            run["e2e"].append(data)
        else:
            run[kind] = data
    return run


def output_paths(directory: Path, stem: str) -> list[Path]:
    """The JSON, Markdown and PNG files a run writes."""
    return [directory / f"{stem}.{suffix}" for suffix in ("json", "md", "png")]


def write(run: dict[str, Any], directory: Path, stem: str, chart: bool = True) -> list[Path]:
    """Write the run's JSON, Markdown and (``chart``, matplotlib installed) PNG; their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = output_paths(directory, stem)
    png = paths.pop()
    paths[0].write_text(json.dumps(run, indent=1, default=str) + "\n")
    paths[1].write_text(markdown(run))
    if chart and draw_chart(run, png):
        paths.append(png)
    return paths
