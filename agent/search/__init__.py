"""Search strategies: how a run spends its samples and verifications. One module per
strategy, one interface, as search-and-learn keeps them.

A strategy is a function ``run(ctx, config)``. It asks the context for candidates
(``ctx.draw``), for verdicts (``ctx.verify``), whether anything passed (``ctx.passed``) and for
the failing output to feed back (``ctx.feedback``), and spends through ``ctx.ledger``. It never
sees where samples come from (the in-process engine, an HTTP server, Celery workers), where
verdicts are reached (a sandbox here, a worker elsewhere) or where they are kept: that is the
context's business. The repair runner (``tasks/runner.py``) gives a context backed by the run
store, the verdict cache and an executor (in process or Celery); :mod:`.memory` gives one in
memory over plain callables (a library call, or a test).

Math search (best-of-N with a scorer, majority, weighted, beam, DVTS) ranks answers with a
scorer instead of a verifier; it lives in :mod:`patchswarm.agent.math_search`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..budget import Ledger, Split
from ..candidate import Candidate
from . import best_of_n, budgeted, refine, until_verified


@dataclass
class SearchConfig:
    n: int = 8
    """Samples per round (the batch of one request)."""
    rounds: int = 1
    """At most this many rounds (until_verified, refine)."""
    budget: float | None = None
    """Solution units to spend at most (a sample costs 1, a verification λ); None: no cap."""
    lam: float = 1.0
    """λ: what one verification costs relative to one sample."""
    split: str = "optimal"
    """budgeted: ``optimal`` (S ∝ C^0.57, V ∝ C^0.39) or ``samples`` (verify each once)."""


class SearchContext(Protocol):
    """What a strategy may ask of the run it is part of."""

    ledger: Ledger
    plan: Split | None
    """The budget split a budgeted strategy chose (for the record)."""

    def draw(self, n: int, round_: int, feedback: str | None = None
             ) -> list[Candidate] | None:
        """``n`` new candidates for round ``round_`` (the prompt, with ``feedback`` when
        given); None when the sampler failed (the context records why)."""

    def verify(self, cands: list[Candidate], limit: int | None = None,
               repeats: int = 1) -> list[str]:
        """Verify the distinct changes among ``cands`` not verified yet (at most ``limit``),
        each ``repeats`` times; returns the keys verified now."""

    def passed(self) -> bool:
        """Whether some verified change passed."""

    def feedback(self, cands: list[Candidate]) -> str | None:
        """The failing output of the best failed change among ``cands``, for the next
        round's prompt."""


Strategy = Callable[[SearchContext, SearchConfig], None]

STRATEGIES: dict[str, Strategy] = {
    "best_of_n": best_of_n.run,
    "until_verified": until_verified.run,
    "refine": refine.run,
    "budgeted": budgeted.run,
}
"""Every strategy by name; the CLI's ``--strategy`` choices come from here."""


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose one of "
                         f"{', '.join(STRATEGIES)}") from None


def affordable(ctx: SearchContext, config: SearchConfig) -> int | None:
    """How many verifications the budget still allows (None: no cap)."""
    if config.budget is None or config.lam <= 0:
        return None
    return int(ctx.ledger.remaining / config.lam + 1e-9)
