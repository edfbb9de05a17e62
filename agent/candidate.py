"""The candidate: one sampled answer and where it came from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Candidate:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
