"""Whether a sample gave a usable change, and if not, exactly one reason why.

Every sample is recorded, usable or not, and the budget counts the tokens of all of them; this
module names what went wrong with the ones that could not be used, from a fixed vocabulary
(:data:`REASONS`), so that a run's waste can be counted and compared:

``empty_completion``
    The model returned nothing but whitespace.
``truncated``
    The completion stopped at the token limit (finish reason ``length``) and gave no usable
    edit: a cut-off block or file.
``unparsable``
    No edit could be read: no edit block at all, a malformed or unterminated block, a hunk
    without context, or a whole-file answer that elides code ("# ... rest unchanged"), which
    is refused rather than allowed to delete the code it leaves out.
``no_path``
    An edit block that cannot be placed on a shown file: no file path while several files
    were shown, a path that names no shown file, a path that several shown files could be
    (``src/parse.py`` when two ``parse.py`` were shown), or a pathless block that does not
    resemble the one shown file.
``search_not_found``
    The SEARCH text (or a diff hunk's context) is not in the file, even after the tolerant
    passes of :mod:`patchswarm.agent.edits.matching`.
``ambiguous_match``
    The SEARCH text (or hunk context) fits several places and nothing tells them apart (see
    the ambiguity rules in :mod:`patchswarm.agent.edits.matching`).
``new_file_refused``
    The edit would create a file at an unsafe path (absolute, ``..``, ``.git``) or at the
    instructions' placeholder path (``path/to/...``).
``unchanged``
    The edit parses but changes nothing (the file given back as it was, or changed only in
    whitespace or comments).
``test_only``
    The edit changes only test files.

The reason is derived from what a candidate records anyway (its text, patch, parse error and
finish reason), so it is the same whether computed when the sample is made or later from a
run folder written before this module existed.
"""

from __future__ import annotations

import re

REASONS: dict[str, str] = {
    "empty_completion": "the model returned nothing",
    "truncated": "stopped at the token limit without a usable edit",
    "unparsable": "no edit block could be read (none, malformed, unterminated, or elided)",
    "no_path": "an edit block that names no shown file that it can be placed on",
    "search_not_found": "the search text or hunk context is not in the file",
    "ambiguous_match": "the search text or hunk context fits several places",
    "new_file_refused": "the edit would create a file at an unsafe or placeholder path",
    "unchanged": "the edit changes nothing",
    "test_only": "the edit changes only test files",
}
"""The fixed vocabulary: reason -> one-line meaning (the module docstring says more)."""

# Parse errors (as written by patchswarm.agent.edits and the candidate makers) -> reason. The
# first pattern that matches at the start of the error wins.
_ERROR_REASONS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), reason)
    for pattern, reason in (
        (r"edits only test files", "test_only"),
        (r"edit changes nothing|agent left no change", "unchanged"),
        (r"search text not found|hunk context not found", "search_not_found"),
        (r"search text is ambiguous|hunk context is ambiguous", "ambiguous_match"),
        (r"file path .* could name", "no_path"),
        (r"refusing to create file", "new_file_refused"),
        (r"no file path|unknown file|code block does not look like", "no_path"),
        (r"no edit block found|no SEARCH/REPLACE block found|no diff found|no code block found"
         r"|no file block found|malformed|unterminated|whole-file answer .* elides code"
         r"|hunk without context|could not parse edit", "unparsable"),
    )
)


def reason_of_error(error: str) -> str:
    """The reason for a parse error message; ``unparsable`` for one this module does not know
    (its text stays in the candidate's ``error``)."""
    for pattern, reason in _ERROR_REASONS:
        if pattern.match(error):
            return reason
    return "unparsable"


def unusable_reason(text: str, patch: str | None, error: str | None,
                    finish_reason: str | None = None) -> str | None:
    """Why a sample gave no usable change (one of :data:`REASONS`), or None when it did.

    A sample is usable when it has a patch and no error. Otherwise, in this order: nothing
    written is ``empty_completion``; a patch flagged by an error (edits only tests) takes the
    error's reason; a completion cut off at the token limit is ``truncated`` (whatever the
    parser then said, the cut is the cause); else the parse error decides.
    """
    if patch and not error:
        return None
    if not text.strip():
        return "empty_completion"
    if patch and error:
        return reason_of_error(error)
    if finish_reason == "length":
        return "truncated"
    return reason_of_error(error or "")


# --------------------------------------------------------------------------------------------
# Re-asking within the same budget


def reask_count(n: int, usable: int, asked: int, tokens_used: int, *, max_samples: int,
                max_tokens: int, token_budget: int | None = None) -> int:
    """How many more samples to ask for so that up to *n* are usable, within the budget.

    *usable* of the *asked* samples so far were usable; *tokens_used* completion tokens were
    spent on all of them, usable or not. The answer is never more than the samples still
    wanted (``n - usable``), never more than the sample budget left (``max_samples - asked``),
    and never more than the token budget left allows at the worst case of *max_tokens* per
    sample (``(token_budget - tokens_used) // max_tokens``), so the budget holds whatever the
    new samples turn out to cost. ``token_budget`` None: no token budget beyond the samples.
    """
    if min(n, usable, asked, tokens_used) < 0 or max_tokens < 1:
        raise ValueError("counts must be non-negative and max_tokens at least 1")
    room = min(n - usable, max_samples - asked)
    if token_budget is not None:
        room = min(room, (token_budget - tokens_used) // max_tokens)
    return max(0, room)


def same_budget(n: int, max_tokens: int, extra_share: float = 1.0) -> dict[str, int]:
    """The budget of a plain run of *n* samples, for :func:`reask_count`: its token ceiling
    (``n * max_tokens``, what *n* samples may cost at most) and, as the cap on requests,
    ``n`` plus ``extra_share * n`` re-asks. Re-asking then spends only tokens that the first
    *n* samples left unspent."""
    return {"max_samples": n + int(extra_share * n), "token_budget": n * max_tokens,
            "max_tokens": max_tokens}
