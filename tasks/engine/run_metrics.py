"""Coverage and pass@k read from run folders as the run store writes them.

``candidates.jsonl`` and ``verdicts.jsonl`` in each problem's folder: a sample passes when its
group's verdict is ``passed``. The arithmetic is :mod:`patchswarm.agent.metrics`'; this module
only reads the files, so any finished (or running) run can be measured and plotted.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from patchswarm.agent.metrics import coverage, coverage_curve, plot_coverage
from patchswarm.tasks.engine.store import read_jsonl


def problem_counts(problem_dir: Path) -> tuple[int, int]:
    """(samples, passing samples) of one problem's run folder. A sample passes when its
    normalised-patch key has a ``passed`` verdict; a sample with no patch fails."""
    seen: dict[str, dict[str, Any]] = {}
    for c in read_jsonl(problem_dir / "candidates.jsonl"):
        seen.setdefault(c["id"], c)
    status = {}
    for v in read_jsonl(problem_dir / "verdicts.jsonl"):
        status.setdefault(v["key"], v.get("status"))
    n = len(seen)
    c = sum(1 for cand in seen.values()
            if cand.get("key") and status.get(cand["key"]) == "passed")
    return n, c


def run_counts(run_dir: Path) -> dict[str, tuple[int, int]]:
    """Problem id → (n, c) for a run folder: either one problem's folder, or a folder holding
    one folder per problem (as ``patchswarm demo`` writes)."""
    run_dir = Path(run_dir)
    if (run_dir / "candidates.jsonl").exists():
        return {run_dir.name: problem_counts(run_dir)}
    out = {}
    for sub in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        if (sub / "candidates.jsonl").exists():
            out[sub.name] = problem_counts(sub)
    return out


def coverage_plot(run_dirs: Sequence[Path | str], out_png: Path | str,
                  ks: Sequence[int] | None = None) -> dict[str, Any]:
    """Plot coverage against k for each run folder (one line each) and return the numbers:
    ``{label: {"problems": …, "coverage": …, "curve": [[k, pass@k], …]}}``."""
    curves: dict[str, list[tuple[int, float]]] = {}
    summary: dict[str, Any] = {}
    for rd in run_dirs:
        rd = Path(rd)
        counts = list(run_counts(rd).values())
        label = rd.name
        while label in curves:
            label += "'"
        curve = coverage_curve(counts, ks)
        curves[label] = curve
        summary[label] = {"problems": len(counts), "coverage": coverage(counts),
                          "curve": [[k, round(v, 4)] for k, v in curve]}
    plot_coverage(curves, Path(out_png))
    return summary
