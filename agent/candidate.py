"""The candidate: one sampled answer and where it came from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .edits import parse_edits
from .localise import is_test_file
from .normalise import EMPTY_PATCH_KEY, patch_key
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


@dataclass
class Parsed:
    """What a completion turned into: a patch and its key, or why there is none."""

    patch: str | None
    key: str | None
    error: str | None


def parse_candidate(text: str, files: dict[str, str], fmt: str = "auto") -> Parsed:
    """The one rule that turns a completion into a candidate change, for every strategy and
    entry point: edits in format ``fmt`` against the shown ``files``, keyed by the normalised
    code they produce (:func:`~.normalise.patch_key`). An edit that changes nothing
    (``EMPTY_PATCH_KEY``) gives no patch; one that changes only test files keeps its patch for
    the record but no key, so it is never grouped, verified or delivered."""
    res = parse_edits(text, files, fmt)
    if not res.patch:
        return Parsed(None, None, res.error or "no edit found")
    key = patch_key(res.patch, files)
    if key == EMPTY_PATCH_KEY:
        return Parsed(None, None, "edit changes nothing")
    paths = [line[6:] for line in res.patch.splitlines() if line.startswith("+++ b/")]
    if paths and all(is_test_file(p) for p in paths):
        return Parsed(res.patch, None, "edits only test files")
    return Parsed(res.patch, key, None)
