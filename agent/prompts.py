"""Prompts for repairing code: one shared prompt per problem, sampled n times."""

from __future__ import annotations

from .edits import format_instructions

SYSTEM = (
    "You are an expert software engineer. You fix bugs in code repositories with small, "
    "correct changes, and you answer exactly in the format you are asked for."
)


def choose_format(files: dict[str, str], fmt: str = "auto") -> str:
    """Whole files for small contexts (a small model follows that format best); search and
    replace blocks when the files are long enough that rewriting them costs too much."""
    if fmt != "auto":
        return fmt
    lines = sum(text.count("\n") + 1 for text in files.values())
    return "whole_file" if lines <= 250 else "search_replace"


def repair_messages(issue: str, files: dict[str, str], fmt: str,
                    feedback: str | None = None) -> list[dict[str, str]]:
    """The chat messages asking for a fix of ``issue`` given the ``files`` (path → text)."""
    shown = "\n\n".join(
        f"{path}\n```python\n{text.rstrip()}\n```" for path, text in files.items()
    )
    user = (
        "Here is an issue reported in a repository.\n\n"
        f"<issue>\n{issue.strip()}\n</issue>\n\n"
        f"These files from the repository are relevant:\n\n{shown}\n\n"
        "Fix the issue by editing the source files. Do not edit the tests.\n\n"
        f"{format_instructions(fmt)}"
    )
    if feedback:
        user += (
            "\n\nAn earlier attempt failed these tests; the output is below. "
            f"Take it into account.\n\n<test_output>\n{feedback.strip()}\n</test_output>"
        )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
