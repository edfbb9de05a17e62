"""The candidate: one sampled answer and where it came from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .usable import unusable_reason


@dataclass
class Candidate:
    id: str
    """``<problem>/<round>-<index>``: stable across resumes."""
    problem_id: str
    index: int
    text: str
    """The model's raw completion."""
    patch: str | None = None
    """The clean unified diff the completion turned into, or None when it had no usable edit."""
    error: str | None = None
    """Why the completion gave no patch."""
    key: str | None = None
    """Normalised-patch key: candidates with equal keys are the same change and vote together."""
    model: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    round: int = 0
    reason: str | None = None
    """Why the sample gave no usable change, one of :data:`patchswarm.agent.usable.REASONS`;
    None when it is usable. Derived from the fields above when not given (old records too)."""

    def __post_init__(self) -> None:
        if self.reason is None:
            self.reason = unusable_reason(self.text, self.patch, self.error, self.finish_reason)

    @property
    def usable(self) -> bool:
        return self.reason is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Candidate:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
