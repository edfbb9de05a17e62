"""Reproduction tests the model writes from the issue alone: the prompt, the parse, and which
ones a baseline run keeps.

Most issues arrive without a failing test. Following Agentless and CodeMonkeys, the model is
asked for M pytest files that reproduce the issue; each runs on the unpatched code, and only
those that fail *for a reason that matches the issue* are kept as the verifier's target tests.

What "matches the issue" means here (:func:`classify_failure`), decided per test function from
its outcome and the type of the exception it raised on the unpatched code:

- an ``AssertionError`` (or ``pytest.fail``) in the test's body: kept. That is the test saying
  "the behaviour the issue describes is wrong".
- an exception the issue text names (``ValueError`` where the issue shows
  ``ValueError: ...``): kept. The issue is about that crash.
- a mistake in the test itself: ``SyntaxError``, ``NameError``, ``ImportError`` (unless the
  issue names it), a fixture that does not exist, an error while setting the test up:
  discarded, with the reason.
- any other exception the issue does not name (``TypeError`` from calling the API wrongly):
  discarded as "fails for a reason the issue does not name".
- a test that passes on the unpatched code does not reproduce anything: discarded.
- a ``pytest.raises(E)`` that fails because nothing was raised counts only where the issue
  names ``E``: a test expecting an exception the issue never mentions has made up the
  behaviour it checks.
- a test that uses numbers the issue never states (when it states some; small integers
  aside) has made up its example, and with it usually a wrong expected value: discarded
  (:func:`unstated_numbers`).

A test function with several ``assert`` statements at its top level is split into one
function per assertion (:func:`split_asserts`), each keeping every other statement: a small
model often gets one expected value of five wrong, and that one should not sink the four that
are right. A file is kept when at least one of its functions is kept; its kept functions are
one *reproduction* (one independent vote in ranking, however many functions it has).
"""

from __future__ import annotations

import ast
import copy
import re
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Any

from . import pyast
from .prompts import SYSTEM

REPRO_INSTRUCTIONS = (
    "Do not fix the issue. Write a new pytest test file that reproduces it: one or two test "
    "functions (`def test_...():`) that import the repository's code as its existing tests "
    "do and call it with the inputs the issue shows. Assert only the results the issue itself "
    "states as expected (or the exception it says should be raised): do not work out other "
    "expected values yourself, and do not repeat the existing tests. The tests must fail on "
    "the code as it is now (because of the bug) and pass once the issue is fixed. They run "
    "from the repository's root, without network, and must finish within seconds. Answer "
    "with the test file in a single ```python block and nothing else."
)
EXAMPLE_CHARS = 4000
"""At most this much of the existing tests is shown as an example of the project's style."""

ALWAYS_BROKEN = frozenset({
    "SyntaxError", "IndentationError", "TabError", "NameError", "UnboundLocalError",
})
"""Exceptions that mean the test itself is wrong, whatever the issue says."""
BROKEN_UNLESS_NAMED = frozenset({"ImportError", "ModuleNotFoundError"})
"""Exceptions that usually mean the test imports the wrong thing; kept only where the issue
names them."""
ASSERTIONS = frozenset({"AssertionError", "Failed"})
"""``Failed``: what ``pytest.fail`` raises."""

KEPT = "reproduces"


def repro_messages(issue: str, files: dict[str, str],
                   example_tests: dict[str, str] | None = None) -> list[dict[str, str]]:
    """The chat messages asking for a reproduction test file.

    They start as the repair prompt does (the same system message, issue and files), so an
    engine with prefix caching computes the shared part once. The issue stays inside its
    ``<issue>`` tags as data: whatever it asks, the answer is parsed as a test file and run
    only in the sandbox, like any candidate."""
    shown = "\n\n".join(f"{p}\n```python\n{t.rstrip()}\n```" for p, t in files.items())
    user = ("Here is an issue reported in a repository.\n\n"
            f"<issue>\n{issue.strip()}\n</issue>\n\n"
            f"These files from the repository are relevant:\n\n{shown}\n\n")
    examples = _examples_text(example_tests or {})
    if examples:
        user += ("The repository's existing tests look like this (write yours in the same "
                 f"style, importing the code the same way):\n\n{examples}\n\n")
    user += REPRO_INSTRUCTIONS
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def _examples_text(tests: dict[str, str]) -> str:
    out, left = [], EXAMPLE_CHARS
    for path, text in tests.items():
        if left <= 200:
            break
        cut = text if len(text) <= left else text[:left].rsplit("\n", 1)[0] + "\n# ..."
        out.append(f"{path}\n```python\n{cut.rstrip()}\n```")
        left -= len(cut)
    return "\n\n".join(out)


@dataclass
class ReproTest:
    """One sampled reproduction test file and what became of it."""

    index: int
    text: str
    """The model's raw completion."""
    source: str | None = None
    """The test file, or None when the completion gave none."""
    functions: list[str] = field(default_factory=list)
    """Top-level test function names in ``source``."""
    reason: str | None = None
    """Why it was discarded; None while it is (still) kept."""
    outcomes: dict[str, str] = field(default_factory=dict)
    """Test function → outcome on the unpatched code (with the exception type)."""
    kept: list[str] = field(default_factory=list)
    """Test ids that failed on the unpatched code for a reason that matches the issue."""
    seed: int | None = None
    completion_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReproTest:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


_FENCE = re.compile(r"```(?:python|py|python3)?[ \t]*\n(.*?)```", re.S)


def parse_repro_test(text: str, repo_modules: set[str]) -> tuple[str | None, list[str], str | None]:
    """(the test file, its test functions, why it is unusable) from a completion.

    Unusable: no code block, a file that does not parse, no top-level ``test_`` function, or
    one that imports nothing the repository has (``repo_modules``: its top-level module and
    package names) — such a test cannot be about this repository's code."""
    m = _FENCE.search(text)
    source = m.group(1) if m else None
    if not source or not source.strip():
        return None, [], "no code block found"
    try:
        tree = pyast.parse(source)
    except (SyntaxError, ValueError) as exc:
        return None, [], f"does not parse: {type(exc).__name__}"
    functions = [n.name for n in tree.body
                 if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                 and n.name.startswith("test")]
    if not functions:
        return None, [], "no test function"
    imported = {name.split(".")[0] for name in _imports(tree)}
    if repo_modules and not imported & repo_modules:
        return None, [], "imports nothing the repository has"
    return split_asserts(tree, functions)


def _imports(tree: ast.Module) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


def repo_modules(paths: list[str]) -> set[str]:
    """Top-level importable names of a repository's Python files: ``pkg`` for ``pkg/x.py``
    and ``src/pkg/x.py``, ``mod`` for ``mod.py``; test folders left out."""
    out: set[str] = set()
    for p in paths:
        parts = PurePosixPath(p).parts
        if not p.endswith(".py") or not parts:
            continue
        if parts[0] in ("src", "lib") and len(parts) > 1:
            parts = parts[1:]
        head = parts[0][:-3] if len(parts) == 1 else parts[0]
        if head.isidentifier() and head not in ("tests", "test", "testing", "conftest",
                                                "setup", "docs", "examples"):
            out.add(head)
    return out


def exception_named(issue: str, exc: str) -> bool:
    """Whether the issue text names the exception type ``exc`` as a word."""
    return bool(exc) and re.search(rf"\b{re.escape(exc)}\b", issue) is not None


def classify_failure(outcome: str, exc: str | None, issue: str) -> str:
    """:data:`KEPT` for a test that reproduces the issue on the unpatched code, else why it
    does not (see the module docstring)."""
    exc = exc or ""
    if outcome in ("PASSED", "XFAIL"):
        return "passes on the unpatched code: it does not reproduce the issue"
    if outcome == "SKIPPED":
        return "skipped on the unpatched code"
    if outcome == "ERROR":
        return f"errors before the test runs{': ' + exc if exc else ''} (a fixture or setup)"
    if outcome != "FAILED":
        return f"unexpected outcome {outcome}"
    if exc in ALWAYS_BROKEN:
        return f"broken test: {exc}"
    if exc in BROKEN_UNLESS_NAMED and not exception_named(issue, exc):
        return f"broken test: {exc} (the issue does not name it)"
    if exc in ASSERTIONS or exception_named(issue, exc):
        return KEPT
    if not exc:
        return "fails without an exception type to judge by"
    return f"fails with {exc}, which the issue does not name"


def judge_baseline(repro: ReproTest, test_path: str, tests: dict[str, str],
                   exceptions: dict[str, str], issue: str) -> ReproTest:
    """Fill ``outcomes``, ``kept`` and ``reason`` from one baseline run of the file at
    ``test_path`` (``tests``: node id → outcome; ``exceptions``: node id → exception type)."""
    kept, reasons = [], []
    for fn in repro.functions:
        nodeid = f"{test_path}::{fn}"
        outcome = tests.get(nodeid)
        if outcome is None:  # parametrised or collected under another id: take any match
            matches = [k for k in tests if k.startswith(nodeid + "[")]
            outcome = tests[matches[0]] if matches else "NOT RUN"
            nodeid = matches[0] if matches else nodeid
        exc = exceptions.get(nodeid)
        verdict = classify_failure(outcome, exc, issue) if outcome != "NOT RUN" \
            else "did not run"
        if verdict == KEPT and exc == "Failed":
            made_up = [e for e in expected_raises(repro.source or "", fn)
                       if not exception_named(issue, e)]
            if made_up:
                verdict = f"expects {made_up[0]}, which the issue does not name"
        if verdict == KEPT:
            unstated = unstated_numbers(repro.source or "", fn, issue)
            if unstated:
                verdict = ("uses numbers the issue does not state: "
                           f"{', '.join(unstated[:3])} (a made-up example)")
        repro.outcomes[fn] = f"{outcome} {exc}".strip() if exc else outcome
        if verdict == KEPT:
            kept.append(nodeid)
        else:
            reasons.append(verdict)
    repro.kept = kept
    repro.reason = None if kept else (reasons[0] if reasons else "no test ran")
    return repro


def repro_path(test_dir: str, index: int) -> str:
    """Where reproduction test ``index`` is written in the sandbox (beside the project's own
    tests, so its conftest and import conventions apply)."""
    name = f"test_patchswarm_repro_{index}.py"
    return f"{test_dir.rstrip('/')}/{name}" if test_dir else name


def test_dir_of(test_ids: list[str], paths: list[str]) -> str:
    """The folder of the project's tests: the most common folder of the tests that ran, else
    of the repository's test files, else ``tests``."""
    from collections import Counter

    from .localise import is_test_file

    folders = Counter(str(PurePosixPath(t.split("::")[0]).parent) for t in test_ids
                      if t.split("::")[0].endswith(".py"))
    if not folders:
        folders = Counter(str(PurePosixPath(p).parent) for p in paths
                          if p.endswith(".py") and is_test_file(p))
    if not folders:
        return "tests"
    folder = folders.most_common(1)[0][0]
    return "" if folder == "." else folder


def expected_raises(source: str, function: str) -> list[str]:
    """The exception names ``function`` in ``source`` expects through ``pytest.raises``."""
    try:
        tree = pyast.parse(source)
    except (SyntaxError, ValueError):
        return []
    out: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function:
            for call in ast.walk(node):
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                        and call.func.attr == "raises" and call.args):
                    arg = call.args[0]
                    names = arg.elts if isinstance(arg, ast.Tuple) else [arg]
                    out += [n.id if isinstance(n, ast.Name) else n.attr for n in names
                            if isinstance(n, ast.Name | ast.Attribute)]
    return out


SMALL = 10
"""Integers up to this size are incidental (indexes, counts, sizes) and never checked."""
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w])")


def unstated_numbers(source: str, function: str, issue: str) -> list[str]:
    """The numbers in ``function`` that the issue text never states, when the issue states
    numbers at all: a test whose inputs or expected values are not the issue's own example
    has made them up, and a small model's made-up expected values are often wrong (an
    average of 88, 89 and 90 "is" 89.3). Integers up to :data:`SMALL` are not checked."""
    stated = {float(m) for m in _NUMBER.findall(issue)}
    if not stated:
        return []
    try:
        tree = pyast.parse(source)
    except (SyntaxError, ValueError):
        return []
    out: list[str] = []
    for node in tree.body:
        if not (isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and node.name == function):
            continue
        for c in ast.walk(node):
            v = c.value if isinstance(c, ast.Constant) else None
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue
            if isinstance(v, int) and abs(v) <= SMALL:
                continue
            if float(v) not in stated and -float(v) not in stated and repr(v) not in out:
                out.append(repr(v))
    return out


def only_functions(source: str, keep: list[str]) -> str:
    """``source`` without its top-level test functions other than ``keep`` (imports, helpers
    and fixtures stay)."""
    tree = pyast.parse(source)
    tree.body = [n for n in tree.body
                 if not (isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                         and n.name.startswith("test") and n.name not in keep)]
    return pyast.unparse(tree).rstrip() + "\n"


def split_asserts(tree: ast.Module, functions: list[str]
                  ) -> tuple[str | None, list[str], str | None]:
    """(the test file, its test functions, None) with every test function that has several
    top-level ``assert`` statements replaced by one function per assertion, named
    ``<name>__<i>``: each keeps all the other statements, in order, and only its own assert."""
    body: list[ast.stmt] = []
    names: list[str] = []
    for node in tree.body:
        asserts = ([i for i, st in enumerate(node.body) if isinstance(st, ast.Assert)]
                   if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                   and node.name in functions else [])
        if len(asserts) < 2:
            body.append(node)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) \
                    and node.name in functions:
                names.append(node.name)
            continue
        for k, keep in enumerate(asserts, 1):
            variant = copy.deepcopy(node)
            variant.name = f"{node.name}__{k}"
            variant.body = [st for i, st in enumerate(node.body)
                            if i == keep or i not in asserts]
            body.append(variant)
            names.append(variant.name)
    tree.body = body
    return pyast.unparse(ast.fix_missing_locations(tree)).rstrip() + "\n", names, None
