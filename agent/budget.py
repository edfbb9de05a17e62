"""Compute in one unit for sampling and verifying.

Following "When To Solve, When To Verify" (Singhi et al., 2025), the cost of S sampled
solutions each verified V times is

    C(S, V) = S · (1 + λ·V)

in units of one solution's generation cost, where λ is what one verification costs relative
to one solution (for a generative verifier, its tokens over a solution's tokens; for tests in a
sandbox, their seconds over a sample's seconds).

The paper fits the compute-optimal split as S_opt ∝ C^0.57 and V_opt ∝ C^0.39. A power law
needs an anchor; ours is the smallest budget that both samples and verifies, C₀ = 1 + λ, where
S = V = 1. So

    S*(C) = (C / C₀)^0.57,    V*(C) = (C / C₀)^0.39.

The exponents sum to 0.96, not 1, so S*·(1 + λ·V*) drifts below C as C grows. The integer plan
keeps V from the law (rounded, at least 1) and gives S the whole rest of the budget,
``S = floor(C / (1 + λ·V))``: the plan never spends more than C and never leaves a whole
sample's worth unused.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass
from typing import Any

S_EXPONENT = 0.57
V_EXPONENT = 0.39


class BudgetError(ValueError):
    """A budget or cost ratio that cannot be planned with."""


def cost(samples: int, verifications: int, lam: float) -> float:
    """C(S, V) = S·(1 + λ·V)."""
    if samples < 0 or verifications < 0 or lam < 0:
        raise BudgetError("samples, verifications and λ must not be negative")
    return samples * (1.0 + lam * verifications)


@dataclass(frozen=True)
class Split:
    budget: float
    lam: float
    samples: int
    """S: solutions to sample."""
    verifications: int
    """V: verifications per solution."""
    samples_law: float
    """S*(C) before rounding."""
    verifications_law: float
    """V*(C) before rounding."""

    @property
    def cost(self) -> float:
        return cost(self.samples, self.verifications, self.lam)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cost": self.cost}


def compute_optimal_split(budget: float, lam: float) -> Split:
    """Split ``budget`` (units of one solution) between sampling and verifying, as the
    module docstring explains. A budget below 1 + λ cannot verify: it is refused."""
    if lam <= 0:
        raise BudgetError("λ must be positive: with free verification, verify every sample "
                          "(use plain best-of-N with S = budget)")
    c0 = 1.0 + lam
    if budget < c0:
        raise BudgetError(f"a budget of {budget:g} cannot sample and verify once "
                          f"(that costs 1 + λ = {c0:g}); raise it or drop verification")
    s_law = (budget / c0) ** S_EXPONENT
    v_law = (budget / c0) ** V_EXPONENT
    v = max(1, round(v_law))
    s = max(1, math.floor(budget / (1.0 + lam * v) + 1e-9))
    return Split(budget, lam, s, v, s_law, v_law)


def samples_only(budget: float) -> Split:
    """All of the budget to sampling (verification is free or not used): S = floor(C)."""
    if budget < 1:
        raise BudgetError(f"a budget of {budget:g} cannot buy one sample")
    return Split(budget, 0.0, math.floor(budget + 1e-9), 0, budget, 0.0)


class Ledger:
    """What a strategy has spent, in solution units; thread-safe.

    ``budget=None`` means no limit (the ledger only counts)."""

    def __init__(self, budget: float | None = None, lam: float = 0.0) -> None:
        if lam < 0:
            raise BudgetError("λ must not be negative")
        self.budget = budget
        self.lam = lam
        self.samples = 0
        self.verifications = 0
        self.sample_tokens = 0
        self._lock = threading.Lock()

    @property
    def spent(self) -> float:
        return self.samples + self.lam * self.verifications

    @property
    def remaining(self) -> float:
        return math.inf if self.budget is None else max(0.0, self.budget - self.spent)

    def affordable_samples(self, verify_each: bool = True) -> int:
        """How many more samples fit, each verified once if ``verify_each``."""
        if self.budget is None:
            return 1 << 30
        unit = 1.0 + (self.lam if verify_each else 0.0)
        return max(0, math.floor(self.remaining / unit + 1e-9))

    def can_verify(self, k: int = 1) -> bool:
        return self.budget is None or self.lam * k <= self.remaining + 1e-9

    def charge_samples(self, k: int, tokens: int = 0) -> None:
        with self._lock:
            self.samples += k
            self.sample_tokens += tokens

    def charge_verifications(self, k: int = 1) -> None:
        with self._lock:
            self.verifications += k

    def to_dict(self) -> dict[str, Any]:
        return {"budget": self.budget, "lam": self.lam, "samples": self.samples,
                "verifications": self.verifications, "spent": self.spent,
                "sample_tokens": self.sample_tokens}


def account(fix_samples: int, repro_samples: int, verifications: int,
            lam: float) -> dict[str, Any]:
    """What one repair spent, in solution units: the fixes and the reproduction tests (issue-
    only repair: a verification budget paid in samples, in the spirit of the paper's split
    between solutions and verifications) are counted apart, then the sandbox checks at λ
    each. ``cost`` is C = S·(1 + λ·V) with S the samples of both kinds and V the
    verifications per sample, which equals S + λ·(all verifications)."""
    if min(fix_samples, repro_samples, verifications) < 0 or lam < 0:
        raise BudgetError("counts and λ must not be negative")
    samples = fix_samples + repro_samples
    return {"fix_samples": fix_samples, "repro_samples": repro_samples,
            "verifications": verifications, "lam": round(lam, 6),
            "fix_share": round(fix_samples / samples, 4) if samples else None,
            "cost": round(samples + lam * verifications, 4)}
