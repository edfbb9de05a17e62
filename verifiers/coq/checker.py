"""The checker file, and reading what ``coqc`` prints.

The verdict rests on a file the candidate never touches, compiled after the candidate's
library, in a fresh folder, from copies of the compiled libraries alone::

    <the problem's preamble>                        (its own Require/Open lines)
    Theorem ref_N <the problem's statement>. Proof. Admitted.
    Definition goal_N := ltac:(let t := type of ref_N in exact t).
    Require Lib.Cand.                               (loads, imports nothing)
    Set Guard Checking. Set Positivity Checking. Set Universe Checking.
    Definition check_N : goal_N := @Lib.Cand.<name>.
    Redirect "assumptions" Print Assumptions check_N.
    Redirect "allowedI" About <each allowed axiom>.

The statement is elaborated (and the only tactics run) before anything of the candidate's is
loaded. ``Require`` without ``Import`` activates none of the candidate's notations, tactic
notations or coercions, but it does apply its ``Global`` options (``Global Unset Guard
Checking`` reaches the requiring file): the kernel checks are switched back on after it.
``Lib`` is a random name, so ``Lib.Cand.<name>`` is the candidate library's top-level
constant, never one inside a module of the candidate's. ``Print Assumptions`` runs on the
very constant whose type was checked, ``check_N``; it covers ``Lib.Cand.<name>`` and
everything it rests on. Each name it prints is matched to an allowed axiom's full path through
``About`` in the same file, so a candidate's own ``Classical_Prop.classic`` cannot pass for the
standard one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .problem import CoqProblem

KERNEL_FLAGS = ("Set Guard Checking.", "Set Positivity Checking.", "Set Universe Checking.",
                "Unset Definitional UIP.")


@dataclass
class CheckerFile:
    source: str
    statement_lines: int
    """Lines up to the reference statement's definition: an error there is the problem's."""
    check_line: int
    """The line of ``Definition check_N``: an error there means another statement."""
    goal: str
    check: str


def checker_source(problem: CoqProblem, lib: str, problem_lib: str, nonce: str,
                   allowed: list[str]) -> CheckerFile:
    """The checker file for ``problem`` against the candidate library ``lib.Cand``."""
    ref, goal, check = f"ref_{nonce}", f"goal_{nonce}", f"check_{nonce}"
    head = (problem.shared_preamble(problem_lib)
            + f"\n{problem.statement_renamed(ref)}\nProof.\nAdmitted.\n"
            + f"Definition {goal} := ltac:(let t := type of {ref} in exact t).\n")
    statement_lines = head.count("\n")
    tail = [f"Require {lib}.Cand.", *KERNEL_FLAGS]
    check_line = statement_lines + len(tail) + 1
    tail.append(f"Definition {check} : {goal} := @{lib}.Cand.{problem.name}.")
    tail.append(f'Redirect "assumptions" Print Assumptions {check}.')
    tail += [f'Redirect "allowed{i}" About {a}.' for i, a in enumerate(allowed)]
    return CheckerFile(head + "\n".join(tail) + "\n", statement_lines, check_line, goal, check)


# --------------------------------------------------------------------------------------------
# Reading coqc's output


_ERROR_LOC = re.compile(r'File "[^"]*", line (\d+), characters \d+-\d+:')


def first_error(log: str) -> tuple[int | None, str]:
    """The line number and message of coqc's first error (warnings carry locations too)."""
    found = list(_ERROR_LOC.finditer(log))
    for m in found:
        if log[m.end():].lstrip().startswith("Error"):
            break
    else:
        if not found:
            lines = [ln for ln in log.strip().splitlines() if ln.strip()]
            errors = [ln for ln in lines if ln.startswith("Error")]
            return None, " ".join((errors or lines)[:3])[:500]
        m = found[-1]
    after = log[m.end():]
    nxt = _ERROR_LOC.search(after)
    body = after[: nxt.start()] if nxt else after
    message = " ".join(ln.strip() for ln in body.strip().splitlines()[:8] if ln.strip())
    return int(m.group(1)), message[:500]


_NAME_LINE = re.compile(r"^([^\s:]+)(?: : .*)?$")


def parse_assumptions(output: str) -> tuple[list[str], list[str]]:
    """``(axioms, other)``: axiom names listed by ``Print Assumptions``, and anything else it
    reports (section variables, unguarded fixpoints, type-in-type, lines it cannot read).

    Fails closed: whatever is not "Closed under the global context" or a plain axiom name
    under ``Axioms:`` lands in ``other``.
    """
    text = output.strip()
    if text.startswith("Closed under the global context"):
        return [], []
    if not text:
        return [], ["Print Assumptions printed nothing"]
    axioms: list[str] = []
    other: list[str] = []
    section: str | None = None
    for line in text.splitlines():
        if not line.strip() or line[0].isspace():
            continue  # blank, or the type of the item above
        if line.rstrip().endswith(":") and " : " not in line:
            section = line.strip()
            if section != "Axioms:":
                other.append(section)
            continue
        m = _NAME_LINE.match(line.rstrip())
        if section == "Axioms:" and m:
            axioms.append(m.group(1))
        else:
            other.append(line.strip() if section is None else f"{section} {line.strip()}")
    return axioms, other


_EXPANDS = re.compile(r"Expands to:\s+Constant\s+(\S+)")


def about_name(output: str, full: str) -> str | None:
    """The name ``About <full>`` printed the object under, if it is that constant."""
    m = _EXPANDS.search(output)
    if not m or m.group(1) != full:
        return None
    first = output.strip().split(None, 1)
    return first[0] if first else None
