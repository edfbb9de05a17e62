"""Best-of-N sized by a compute budget C(S, V) = S(1 + λV).

``split="optimal"`` follows "When To Solve, When To Verify" (S ∝ C^0.57, V ∝ C^0.39; see
:mod:`patchswarm.agent.budget`): S samples, each distinct change verified V times (it passes
only if every run does, which guards against flaky tests). ``split="samples"`` verifies each
sample once and spends the rest on sampling."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..budget import BudgetError, Split, compute_optimal_split

if TYPE_CHECKING:
    from . import SearchConfig, SearchContext


def plan(budget: float, lam: float, split: str) -> Split:
    if split == "optimal":
        return compute_optimal_split(budget, lam)
    if split == "samples":
        if budget < 1 + lam:
            raise BudgetError(f"a budget of {budget:g} cannot sample and verify once")
        most = int(budget / (1 + lam) + 1e-9)
        return Split(budget, lam, most, 1, float(most), 1.0)
    raise ValueError(f"unknown split {split!r}: use 'optimal' or 'samples'")


def run(ctx: SearchContext, config: SearchConfig) -> None:
    if config.budget is None:
        raise BudgetError("the budgeted strategy needs a budget")
    p = plan(config.budget, config.lam, config.split)
    ctx.plan = p
    cands = ctx.draw(p.samples, 0)
    if cands:
        ctx.verify(cands, repeats=p.verifications)
