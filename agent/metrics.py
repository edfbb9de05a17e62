"""How well repeated sampling did: coverage, pass@k, selected accuracy, and a coverage plot.

- coverage: the share of problems for which at least one of the samples passes;
- pass@k: the unbiased estimate, from n samples of which c passed, of the chance that k
  samples drawn without replacement hold at least one that passes (Chen et al., 2021):
  ``1 - C(n-c, k) / C(n, k)``, computed as a product so it never overflows;
- selected accuracy: the share of problems where the candidate the ranking picked is right,
  with ties at the top broken at random and counted in expectation, never the best case.

``plot_coverage`` draws curves; reading them from run folders is the run store's business
(``patchswarm.tasks.engine.run_metrics``), so this module stays a leaf.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from .ranking import Group, expected_score


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` passed.

    ``1 - C(n-c, k)/C(n, k) = 1 - prod_{i=n-c+1}^{n} (1 - k/i)``: a product of c terms in
    [0, 1], stable for any n (no factorials)."""
    if n < 0 or c < 0 or c > n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if k > n:
        raise ValueError(f"k={k} is more than the n={n} samples drawn")
    if c == 0:
        return 0.0
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float:
    """pass@k averaged over problems, each given as (n, c). A problem with fewer than k
    samples is an error: its estimate would be biased."""
    counts = list(counts)
    if not counts:
        return 0.0
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts)


def coverage(counts: Iterable[tuple[int, int]]) -> float:
    """Share of problems with at least one passing sample, each problem given as (n, c)."""
    counts = list(counts)
    if not counts:
        return 0.0
    return sum(1 for _, c in counts if c > 0) / len(counts)


def coverage_curve(counts: Sequence[tuple[int, int]],
                   ks: Sequence[int] | None = None) -> list[tuple[int, float]]:
    """(k, mean pass@k) for each k up to the smallest n among the problems (default: powers
    of two and that smallest n)."""
    if not counts:
        return []
    n_min = min(n for n, _ in counts)
    if n_min < 1:
        return []
    if ks is None:
        ks = sorted({2 ** i for i in range(int(math.log2(n_min)) + 1)} | {n_min})
    return [(k, mean_pass_at_k(counts, k)) for k in ks if 1 <= k <= n_min]


def selected_accuracy(problems: Iterable[tuple[list[Group], set[str]]]) -> float:
    """Mean over problems of the expected correctness of the ranked pick, ties broken at
    random. Each problem is (its groups, with status/judge filled in; the keys that are
    right). A problem with no group scores 0."""
    problems = list(problems)
    if not problems:
        return 0.0
    return sum(expected_score(groups, correct) for groups, correct in problems) / len(problems)


def plot_coverage(curves: dict[str, Sequence[tuple[int, float]]], out_png: Path,
                  title: str = "coverage against samples") -> Path:
    """Write a PNG of coverage (pass@k) against k, one line per label, log-scaled k."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    try:
        for label, points in curves.items():
            if not points:
                continue
            ks, ys = zip(*points, strict=True)
            ax.plot(ks, ys, marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("k (samples)")
        ax.set_ylabel("coverage (unbiased pass@k)")
        ax.set_ylim(0, 1.02)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        if any(curves.values()):
            ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(out_png)
    finally:
        plt.close(fig)
    return out_png
