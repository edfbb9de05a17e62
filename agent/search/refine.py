"""Refinement: rounds as in until-verified, and after a round with no passing change the
failing test output of its best change goes back into the next round's prompt."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import SearchConfig, SearchContext


def run(ctx: SearchContext, config: SearchConfig) -> None:
    from . import affordable

    feedback: str | None = None
    for r in range(max(1, config.rounds)):
        if ctx.passed():
            break
        k = min(config.n, ctx.ledger.affordable_samples(verify_each=True))
        if k < 1:
            break
        cands = ctx.draw(k, r, feedback)
        if cands is None:
            break
        ctx.verify(cands, affordable(ctx, config))
        if not ctx.passed():
            feedback = ctx.feedback(cands) or feedback
