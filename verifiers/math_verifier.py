"""The math-answer verifier: is a candidate's final answer equivalent to the gold answer?

The problem is plain data, ``{"answer": "\\frac{1}{2}"}`` (or ``{"solution": text}`` whose last
``\\boxed{...}`` is the gold answer); the candidate is ``{"text": model output}``, whose final
answer is extracted, or ``{"answer": "0.5"}``, taken as it is. Equivalence is math-verify's,
gold first (see :mod:`.math_answer`), and runs in bounded worker processes on the host: the
check is pure Python and needs no sandbox, so ``sandbox`` may be None.

A candidate with no answer that can be found is a ``failed`` verdict with detail
``no answer``, never an error: the model produced nothing to check. An answer math-verify
cannot parse compares as not equivalent (``failed``). A comparison past ``timeout`` seconds
is a ``timeout`` verdict: it proves nothing either way.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from .math_answer import equivalent as _equivalent
from .math_answer import extract_answer, group_answers
from .math_answer import logger as _math_logger
from .verdict import ERROR, FAILED, PASSED, TIMEOUT, Verdict

NO_ANSWER = "no answer"


class _AbandonWatch(logging.Filter):
    """Tells a timed-out comparison from an unequal one.

    ``math_answer.equivalent`` returns False both for "not equivalent" and for "gave up at the
    time limit", and logs the second at INFO from the calling thread. A verdict must tell them
    apart (a timeout proves nothing), so while a thread compares, this filter (installed once
    on math_answer's logger) notes that record for it. The logger's level is lowered to INFO
    only while some thread is comparing, and records below the level it had are then dropped
    here, so what reaches handlers is unchanged.
    """

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()
        self.lock = threading.Lock()
        self.active = 0
        self.saved_level = logging.NOTSET
        self.effective = logging.WARNING

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(self.local, "watching", False) and "abandoned" in record.msg:
            self.local.reason = str(record.args[0]) if record.args else "abandoned"
        return record.levelno >= self.effective

    def __enter__(self) -> _AbandonWatch:
        with self.lock:
            if self.active == 0:
                self.saved_level = _math_logger.level
                self.effective = _math_logger.getEffectiveLevel()
                _math_logger.setLevel(min(self.effective, logging.INFO))
            self.active += 1
        self.local.watching, self.local.reason = True, None
        return self

    def __exit__(self, *exc: object) -> None:
        self.local.watching = False
        with self.lock:
            self.active -= 1
            if self.active == 0:
                _math_logger.setLevel(self.saved_level)
                self.effective = logging.NOTSET


_WATCH = _AbandonWatch()
_math_logger.addFilter(_WATCH)


def _compare(gold: str, answer: str, timeout: float) -> tuple[bool, str | None]:
    """(equivalent, why the comparison was abandoned, or None)."""
    with _WATCH:
        same = _equivalent(gold, answer, timeout)
        return same, _WATCH.local.reason


def gold_answer(problem: dict[str, Any]) -> str | None:
    """The gold answer of a problem: ``answer``, else the final answer of ``solution``."""
    answer = problem.get("answer")
    if answer is not None and str(answer).strip():
        return str(answer).strip()
    solution = problem.get("solution")
    if solution:
        return extract_answer(str(solution))
    return None


def candidate_answer(candidate: dict[str, Any]) -> str | None:
    """The final answer of a candidate: ``answer`` as given, else extracted from ``text``."""
    answer = candidate.get("answer")
    if answer is not None and str(answer).strip():
        return str(answer).strip()
    text = candidate.get("text")
    if text is None:
        return None
    return extract_answer(str(text))


class MathVerifier:
    """Final answers checked for equivalence with math-verify, in bounded worker processes."""

    name = "math"

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = float(timeout)
        """Seconds one equivalence check may take; past it the verdict is ``timeout``."""

    def settings(self) -> dict[str, Any]:
        return {"name": self.name, "timeout": self.timeout}

    def verify(self, problem: dict[str, Any], candidate: dict[str, Any],
               sandbox: Any = None) -> Verdict:
        start = time.monotonic()
        gold = gold_answer(problem)
        if gold is None:
            return Verdict(ERROR, "the problem has no gold answer (give 'answer' or a "
                           "'solution' with a \\boxed{} answer)", verifier=self.name,
                           seconds=time.monotonic() - start)
        answer = candidate_answer(candidate)
        extra: dict[str, Any] = {"gold": gold, "answer": answer}
        if answer is None:
            return Verdict(FAILED, NO_ANSWER, verifier=self.name, extra=extra,
                           seconds=time.monotonic() - start)
        try:
            same, abandoned = _compare(gold, answer, self.timeout)
        except RuntimeError as exc:  # math-verify missing in the worker
            return Verdict(ERROR, str(exc), verifier=self.name, extra=extra,
                           seconds=time.monotonic() - start)
        seconds = time.monotonic() - start
        if abandoned is not None:
            status = TIMEOUT if "timed out" in abandoned else ERROR
            return Verdict(status, f"equivalence of {answer} and {gold} not decided "
                           f"({abandoned}; limit {self.timeout:g}s)", verifier=self.name,
                           extra=extra, seconds=seconds)
        if same:
            return Verdict(PASSED, f"{answer} is equivalent to {gold}", verifier=self.name,
                           extra=extra, seconds=seconds)
        return Verdict(FAILED, f"{answer} is not equivalent to {gold}", verifier=self.name,
                       extra=extra, seconds=seconds)

    def group(self, texts: list[str]) -> list[list[int]]:
        """Equivalence classes of candidate outputs (by index), for voting across spellings.

        Each text's final answer is extracted first; outputs with no answer join no class.
        """
        return group_answers([extract_answer(t) if t else None for t in texts],
                             timeout=self.timeout)

    # Hooks for ``patchswarm verify``: plain files to plain data.

    def problem_from_file(self, text: str, path: str) -> dict[str, Any]:
        """A JSON object (``{"answer": ...}``) or the gold answer as plain text."""
        if text.lstrip().startswith("{"):
            try:
                data = json.loads(text)
            except ValueError:
                data = None
            if isinstance(data, dict):
                return data
        return {"answer": text.strip()}

    def candidate_from_file(self, text: str, path: str) -> dict[str, Any]:
        return {"text": text}
