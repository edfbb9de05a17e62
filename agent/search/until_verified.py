"""Sample until verified: rounds of n until a change passes, the rounds run out or the budget
is spent. A round draws only what it can also afford to verify."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import SearchConfig, SearchContext


def run(ctx: SearchContext, config: SearchConfig) -> None:
    from . import affordable

    for r in range(max(1, config.rounds)):
        if ctx.passed():
            break
        k = min(config.n, ctx.ledger.affordable_samples(verify_each=True))
        if k < 1:
            break
        cands = ctx.draw(k, r)
        if cands is None:
            break
        ctx.verify(cands, affordable(ctx, config))
