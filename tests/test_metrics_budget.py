"""Coverage, the unbiased pass@k estimator, selected accuracy, the coverage plot, and compute
accounting C(S, V) = S(1 + λV) with the compute-optimal split."""

from __future__ import annotations

import json
import math
from itertools import combinations
from pathlib import Path

import pytest

from patchswarm.agent.budget import (
    BudgetError,
    Ledger,
    compute_optimal_split,
    cost,
    samples_only,
)
from patchswarm.agent.metrics import (
    coverage,
    coverage_curve,
    mean_pass_at_k,
    pass_at_k,
    plot_coverage,
    selected_accuracy,
)
from patchswarm.agent.ranking import Group
from patchswarm.tasks.engine.run_metrics import coverage_plot, problem_counts


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of all k-subsets of n samples (c of them right) holding a right one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n,c,k", [(5, 0, 1), (5, 1, 1), (5, 2, 3), (8, 3, 2), (10, 9, 4),
                                   (10, 1, 10), (7, 7, 1), (12, 4, 5)])
def test_pass_at_k_matches_counting_every_subset(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_is_the_closed_form_and_stable_for_large_n():
    n, c, k = 200, 13, 50
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-12)
    # Far past where factorials overflow a float; the product form stays in [0, 1].
    big = pass_at_k(100_000, 3, 1000)
    assert big == pytest.approx(1 - math.comb(99_997, 1000) / math.comb(100_000, 1000),
                                rel=1e-9)
    assert 0.0 < big < 1.0
    assert pass_at_k(1, 1, 1) == 1.0 and pass_at_k(1, 0, 1) == 0.0
    # pass@1 is the plain success rate.
    assert pass_at_k(250, 10, 1) == pytest.approx(10 / 250)


def test_pass_at_k_refuses_bad_counts():
    with pytest.raises(ValueError, match="c <= n"):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError, match="more than"):
        pass_at_k(3, 1, 4)
    with pytest.raises(ValueError, match="at least 1"):
        pass_at_k(3, 1, 0)


def test_coverage_and_its_curve():
    counts = [(8, 0), (8, 1), (8, 4), (8, 8)]
    assert coverage(counts) == 0.75
    curve = dict(coverage_curve(counts))
    assert sorted(curve) == [1, 2, 4, 8]
    assert curve[1] == pytest.approx((0 + 1 / 8 + 4 / 8 + 1) / 4)
    assert curve[8] == pytest.approx(coverage(counts))
    values = [curve[k] for k in sorted(curve)]
    assert values == sorted(values)  # more samples never lower coverage
    assert mean_pass_at_k(counts, 2) == pytest.approx(curve[2])
    assert coverage([]) == 0.0 and coverage_curve([]) == []


def test_selected_accuracy_counts_random_tie_breaking_in_expectation():
    right = Group("right", "+a\n", members=["1", "2"], status="passed")
    wrong_tied = Group("wrong", "+b\n", members=["3", "4"], status="passed")
    loser = Group("loser", "+c\n", members=["5"], status="failed")
    # The two passing groups tie on votes and diff size: a random pick is right half the time.
    p1 = ([right, wrong_tied, loser], {"right"})
    # A clear winner by votes.
    more = Group("right", "+a\n", members=["1", "2", "3"], status="passed")
    fewer = Group("wrong", "+b\n", members=["4"], status="passed")
    p2 = ([more, fewer], {"right"})
    # Nothing passed: the top failing group is wrong.
    p3 = ([Group("x", "+x\n", members=["1"], status="failed")], set())
    assert selected_accuracy([p1]) == 0.5
    assert selected_accuracy([p1, p2, p3]) == pytest.approx((0.5 + 1 + 0) / 3)
    # A judge score breaks the tie: it is no longer counted as a coin flip.
    right.judge, wrong_tied.judge = 0.9, 0.2
    assert selected_accuracy([p1]) == 1.0


def _write_problem(folder: Path, outcomes: list[str | None]) -> None:
    """A problem folder as the run store writes it: outcomes per sample (None: no patch)."""
    folder.mkdir(parents=True)
    cands, verdicts = [], {}
    for i, o in enumerate(outcomes):
        key = None if o is None else f"{o}-{i % 3}"
        cands.append({"id": f"{folder.name}/0-{i}", "key": key})
        if key:
            verdicts[key] = "passed" if o == "ok" else "failed"
    lines = [json.dumps(c) for c in cands] + ['{"id": "cut short']  # a crash mid-line
    (folder / "candidates.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "verdicts.jsonl").write_text(
        "".join(json.dumps({"key": k, "status": s}) + "\n" for k, s in verdicts.items()))


def test_coverage_plot_reads_run_folders_and_writes_a_png(tmp_path):
    run_a = tmp_path / "demo-a"
    _write_problem(run_a / "p1", ["ok", "bad", None, "bad"])
    _write_problem(run_a / "p2", ["bad", "bad", None, None])
    single = tmp_path / "single"
    _write_problem(single, ["ok", "ok", "ok", "bad"])
    assert problem_counts(run_a / "p1") == (4, 1)
    out = tmp_path / "plots" / "coverage.png"
    summary = coverage_plot([run_a, single], out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    assert summary["demo-a"]["problems"] == 2 and summary["demo-a"]["coverage"] == 0.5
    assert summary["demo-a"]["curve"][0] == [1, pytest.approx((1 / 4 + 0) / 2, abs=1e-4)]
    assert summary["single"]["curve"][-1] == [4, 1.0]
    # A plot of hand-made curves too.
    png = plot_coverage({"x": [(1, 0.1), (2, 0.3)]}, tmp_path / "x.png")
    assert png.stat().st_size > 5000


def test_cost_and_compute_optimal_split():
    assert cost(10, 0, 0.5) == 10
    assert cost(10, 3, 0.5) == 25
    lam = 0.5
    smallest = compute_optimal_split(1 + lam, lam)
    assert (smallest.samples, smallest.verifications) == (1, 1)
    previous = smallest
    for budget in (4, 16, 64, 256, 1024, 4096):
        s = compute_optimal_split(budget, lam)
        # Never over the budget, and no whole sample left unused.
        assert s.cost <= budget + 1e-9
        assert budget - s.cost < 1 + lam * s.verifications
        assert s.samples >= previous.samples and s.verifications >= previous.verifications
        previous = s
    # The power laws hold for the unrounded values: S* ∝ C^0.57, V* ∝ C^0.39.
    a, b = compute_optimal_split(100, lam), compute_optimal_split(10_000, lam)
    assert math.log(b.samples_law / a.samples_law, 100) == pytest.approx(0.57)
    assert math.log(b.verifications_law / a.verifications_law, 100) == pytest.approx(0.39)
    # Sampling gets more of a growing budget than verifying does.
    assert b.samples / a.samples > b.verifications / a.verifications
    with pytest.raises(BudgetError, match="cannot sample and verify once"):
        compute_optimal_split(1.2, lam)
    with pytest.raises(BudgetError, match="λ must be positive"):
        compute_optimal_split(10, 0)
    assert samples_only(9.5).samples == 9


def test_ledger_counts_in_one_unit():
    led = Ledger(budget=10, lam=0.5)
    assert led.affordable_samples() == 6  # 6 × 1.5 = 9
    led.charge_samples(4, tokens=400)
    led.charge_verifications(3)
    assert led.spent == 5.5 and led.remaining == 4.5
    assert led.affordable_samples() == 3 and led.affordable_samples(verify_each=False) == 4
    assert led.can_verify(9) and not led.can_verify(10)
    assert led.to_dict()["sample_tokens"] == 400
    assert Ledger().remaining == math.inf
