"""What a candidate patch may change: a pure check of a diff, before anything is applied.

A fix changes source files. Everything that decides *how* the tests run, or what the
interpreter loads before them, is out of its reach, so a patch that touches any of it is
rejected whole, with each path and the rule it broke. The rules (``POLICY_VERSION`` names
this set; verdict caches key on it):

- paths: no absolute path, no ``..`` component, nothing under a component named ``.git``
  (any case);
- kinds: no binary patch (``GIT binary patch``, ``Binary files … differ``, NUL bytes), no
  file mode but 100644 and 100755 (no symbolic link 120000, no submodule 160000);
- bytecode: no ``__pycache__`` component, no ``*.pyc`` / ``*.pyo``;
- installed-package metadata: no ``*.dist-info`` / ``*.egg-info`` / ``*.egg`` component, no
  ``*.egg-link``;
- interpreter start-up: no ``*.pth``, ``sitecustomize.py``, ``usercustomize.py``;
- test-runner configuration: no ``conftest.py`` anywhere, no ``pytest.ini``, ``.pytest.ini``,
  ``pytest.toml``, ``.pytest.toml``, ``tox.ini``, ``setup.cfg``, ``.gitignore``,
  ``.gitattributes``, ``.gitmodules``, nor a file the test command names; a
  ``pyproject.toml`` may change only where its ``tool.pytest`` table stays equal once parsed
  (checked on the applied file, failing closed when either version does not parse);
- tests: no new or changed test file (``test_*.py``, ``*_test.py``, ``tests.py``, anything
  under a ``tests``/``test``/``testing`` folder, the problem's protected files) unless the
  problem says ``"tests_may_change": true`` (the protected files are then still restored from
  the pristine copy before the tests run);
- after applying (see ``patching``): every path that differs from the pristine copy must be
  one the diff names (or a folder holding one), pass the rules above, and be a regular file
  or folder; a new top-level module (of the work tree or of ``src/``) may not take the name
  of the test runner or of a standard-library module.
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass, field

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

POLICY_VERSION = "change-policy/1"

ABSOLUTE = "absolute paths are not allowed"
ESCAPE = "a '..' component leaves the work tree"
GIT = "git metadata may not change"
BINARY = "binary patches are not allowed"
MODE = "symbolic links and special file modes are not allowed"
BYTECODE = "bytecode caches may not change"
METADATA = "installed-package metadata may not change"
STARTUP = "interpreter start-up files may not change"
CONFIG = "test-runner configuration may not change"
TESTS = "test files may not change in this problem"
SHADOW = "a new top-level module may not shadow the test runner or the standard library"
UNREADABLE = "the diff cannot be read"
UNDECLARED = "changed by applying the patch but not named in it"

CONTENT = "content"
"""Not a rule: the path may change if its test-runner section stays equal (pyproject.toml)."""

REJECTED = "patch rejected by the change policy: "

CONFIG_NAMES = frozenset({
    "conftest.py", "pytest.ini", ".pytest.ini", "pytest.toml", ".pytest.toml", "tox.ini",
    "setup.cfg", ".gitignore", ".gitattributes", ".gitmodules",
})
TEST_DIRS = frozenset({"tests", "test", "testing"})
REGULAR_MODES = frozenset({"100644", "100755"})
SHADOWED = frozenset({"pytest", "_pytest", "py", "pluggy", "iniconfig", "packaging",
                      "conftest", "sitecustomize", "usercustomize"}
                     | set(sys.stdlib_module_names))


@dataclass(frozen=True)
class Rules:
    """What the problem allows: plain data the verifier derives from the problem."""

    tests_may_change: bool = False
    protected: tuple[str, ...] = ()
    """The judged test files (exact paths)."""
    runner_files: tuple[str, ...] = ()
    """Files the test command names (a runner script): configuration too."""


@dataclass(frozen=True)
class Violation:
    path: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path} ({self.rule})"


@dataclass
class DiffCheck:
    paths: list[str] = field(default_factory=list)
    """Every path the diff names, normalised (old and new names of a rename)."""
    violations: list[Violation] = field(default_factory=list)
    content_checked: list[str] = field(default_factory=list)
    """Paths allowed only if their test-runner section stays equal after applying."""

    @property
    def ok(self) -> bool:
        return not self.violations


def reason(violations: list[Violation]) -> str:
    return REJECTED + "; ".join(str(v) for v in violations)


def _components(path: str) -> list[str]:
    return [c for c in path.split("/") if c not in ("", ".")]


def normalise(path: str) -> str:
    return "/".join(_components(path))


def check_path(path: str, rules: Rules = Rules(), added_top_level: bool = False) -> str | None:
    """The rule a change to ``path`` (relative to the work tree) breaks, ``CONTENT`` when it
    is allowed only if its test-runner section stays equal, or None."""
    if path.startswith("/"):
        return ABSOLUTE
    comps = _components(path)
    if not comps:
        return ESCAPE
    lower = [c.lower() for c in comps]
    name = lower[-1]
    if ".." in comps:
        return ESCAPE
    if ".git" in lower:
        return GIT
    if "__pycache__" in lower or name.endswith((".pyc", ".pyo")):
        return BYTECODE
    if any(c.endswith((".dist-info", ".egg-info", ".egg")) for c in lower) \
            or name.endswith(".egg-link"):
        return METADATA
    if name.endswith(".pth") or name in ("sitecustomize.py", "usercustomize.py"):
        return STARTUP
    norm = "/".join(comps)
    if name in CONFIG_NAMES or norm in {normalise(p) for p in rules.runner_files}:
        return CONFIG
    if added_top_level and (len(comps) == 1 or (len(comps) == 2 and lower[0] == "src")):
        stem = comps[-1][:-3] if comps[-1].endswith(".py") else comps[-1]
        if stem in SHADOWED:
            return SHADOW
    if not rules.tests_may_change and is_test_path(norm, rules.protected):
        return TESTS
    if name == "pyproject.toml":
        return CONTENT
    return None


def is_test_path(path: str, protected: tuple[str, ...] = ()) -> bool:
    comps = _components(path)
    if not comps:
        return False
    name = comps[-1]
    return (normalise(path) in {normalise(p) for p in protected}
            or any(c.lower() in TEST_DIRS for c in comps[:-1])
            or (name.startswith("test_") and name.endswith(".py"))
            or name.endswith("_test.py") or name == "tests.py")


def _unquote(name: str) -> str:
    """A git-quoted path (``"a/t\\303\\251st"``) as text; others unchanged."""
    if len(name) >= 2 and name[0] == '"' and name[-1] == '"':
        raw = name[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
        return raw.encode("latin-1", "replace").decode("utf-8", "replace")
    return name


def _header_name(text: str) -> str:
    """A ``---``/``+++``/``Index:`` name without its trailing timestamp."""
    text = text.rstrip("\n").split("\t", 1)[0].rstrip()
    return _unquote(text)


def _strip1(name: str) -> str:
    """The name as ``-p1`` reads it: the first component dropped."""
    return name.split("/", 1)[1] if "/" in name else name


_GIT_LINE = re.compile(r'^diff --git (?:"((?:[^"\\]|\\.)*)"|(\S+)) (?:"((?:[^"\\]|\\.)*)"|(\S+))$')
_NAMED = re.compile(r"^(rename from|rename to|copy from|copy to|Index:) ?(.*)$")
_MODE = re.compile(r"^(old mode|new mode|new file mode|deleted file mode) +(\S+)\s*$")
_BINARY = re.compile(r"^(GIT binary patch|Binary files .* differ|literal \d+|delta \d+)\s*$")


def _git_names(line: str) -> list[str]:
    m = _GIT_LINE.match(line)
    if m:
        a = _unquote(f'"{m.group(1)}"') if m.group(1) is not None else m.group(2)
        b = _unquote(f'"{m.group(3)}"') if m.group(3) is not None else m.group(4)
        return [a, b]
    rest = line[len("diff --git "):]
    half = (len(rest) - 1) // 2
    names = [rest]  # names with spaces: every way of reading it is checked
    if len(rest) % 2 == 1 and rest[half] == " ":
        names += [rest[:half], rest[half + 1:]]
    names += [rest[i + 1:] for i in range(len(rest)) if rest.startswith(" b/", i)]
    names += [rest[:i] for i in range(len(rest)) if rest.startswith(" b/", i)]
    return names


def check_diff(patch: str, rules: Rules = Rules()) -> DiffCheck:
    """Check every path and kind ``patch`` would change; nothing is applied.

    The diff is read twice: by ``unidiff`` (whose paths are the ones the tree check expects
    to change) and line by line for every header any applying tool could act on (``diff
    --git``, ``---``/``+++`` before a hunk, rename/copy lines, ``Index:``, modes, binary
    markers), so a header one reader skips still meets the rules.
    """
    out = DiffCheck()

    def flag(path: str, rule: str) -> None:
        if Violation(path, rule) not in out.violations:
            out.violations.append(Violation(path, rule))

    def name(raw: str, keep: bool = True, strip: bool = True) -> str:
        """Check one header name as given and as ``-p1`` reads it; return the latter."""
        if raw in ("/dev/null", ""):
            return ""
        stripped = _strip1(raw) if strip else raw
        shown = normalise(stripped) or raw
        for variant in dict.fromkeys([stripped, raw]):
            rule = check_path(variant, rules)
            if rule == CONTENT:
                if shown not in out.content_checked:
                    out.content_checked.append(shown)
            elif rule is not None:
                flag(variant if variant.startswith("/") else normalise(variant), rule)
                break
        if keep and shown not in out.paths:
            out.paths.append(shown)
        return shown

    if "\x00" in patch:
        flag("(diff)", BINARY)
    try:
        parsed = PatchSet(patch)
    except (UnidiffParseError, ValueError, IndexError) as exc:
        flag("(diff)", f"{UNREADABLE}: {exc}")
        return out
    if not len(parsed):
        flag("(diff)", f"{UNREADABLE}: it names no file")
        return out
    for pf in parsed:
        for raw in (pf.source_file, pf.target_file):
            name(_header_name(raw or ""))
        if pf.is_binary_file:
            flag(normalise(pf.path), BINARY)
    lines = patch.split("\n")
    current = "(diff)"
    for i, line in enumerate(lines):
        if line.startswith("diff --git "):
            names = _git_names(line)
            for n in names:
                name(n, keep=False)
            current = normalise(_strip1(names[-1])) or current
        elif (m := _NAMED.match(line)) and not line.startswith((" ", "+", "-")):
            shown = name(_header_name(m.group(2)), keep=m.group(1) != "Index:", strip=False)
            current = shown or current
        elif line.startswith("--- ") and i + 2 < len(lines) \
                and lines[i + 1].startswith("+++ ") and lines[i + 2].startswith("@@"):
            name(_header_name(line[4:]), keep=False)
            current = name(_header_name(lines[i + 1][4:]), keep=False) or current
        elif m := _MODE.match(line):
            if m.group(2) not in REGULAR_MODES:
                flag(current, MODE)
        elif _BINARY.match(line):
            flag(current, BINARY)
    return out


def pytest_table(path: str, data: bytes | None) -> object:
    """The test-runner section of a configuration file, as parsed data (None when absent).

    Raises ValueError when the file cannot be parsed: the caller fails closed."""
    if data is None:
        return None
    if normalise(path).rsplit("/", 1)[-1] != "pyproject.toml":
        raise ValueError(f"no section reader for {path}")
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path} does not parse: {exc}") from None
    tool = doc.get("tool")
    return tool.get("pytest") if isinstance(tool, dict) else None


def check_content(path: str, before: bytes | None, after: bytes | None) -> str | None:
    """The rule broken when ``path`` changed from ``before`` to ``after`` (None: fine)."""
    try:
        same = pytest_table(path, before) == pytest_table(path, after)
    except ValueError as exc:
        return f"{CONFIG}: {exc}"
    return None if same else f"{CONFIG}: its [tool.pytest] table differs"
