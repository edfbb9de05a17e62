"""Best-of-N: one request for n samples (the engine shares the prompt's prefix), every
distinct change verified once, then ranking picks."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import SearchConfig, SearchContext


def run(ctx: SearchContext, config: SearchConfig) -> None:
    cands = ctx.draw(config.n, 0)
    if cands:
        ctx.verify(cands)
