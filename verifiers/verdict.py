"""The verdict: what one verifier said of one candidate, as a small serialisable record."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PASSED = "passed"
FAILED = "failed"
ERROR = "error"
TIMEOUT = "timeout"
STATUSES = (PASSED, FAILED, ERROR, TIMEOUT)


@dataclass
class Verdict:
    status: str
    """One of passed / failed / error / timeout."""
    detail: str = ""
    """One line a person reads: why it passed or what went wrong."""
    tests: dict[str, str] = field(default_factory=dict)
    """Per-test outcome: PASSED, FAILED, ERROR, SKIPPED, XFAIL, FLAKY."""
    log: str = ""
    seconds: float = 0.0
    verifier: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    """Verifier-specific facts: which patch step applied, tampered files, grading report."""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown verdict status {self.status!r}")

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
