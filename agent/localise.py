"""Localisation: rank a repository's source files by how much an issue is about them.

BM25 between the issue and each file's path and identifiers is the base signal; on real
repositories it alone finds the edited file for fewer than half of SWE-bench Lite's issues,
because issues name *things* (``QuerySet.bulk_create``, ``latex()``, a traceback line) rather
than repeating a file's vocabulary. So a file also earns points, each independent of BM25, for:

- a path the issue names, whole or as a suffix (``db/models/query.py``), or a traceback frame
  (``File ".../query.py", line 10``);
- a dotted module the issue names (``sympy.physics.units``, ``from sklearn.utils import x``);
- *defining* a name the issue mentions (``def bulk_create``, ``class QuerySet``), weighted by
  how rare that definition is across the repository (a name defined once is strong evidence,
  ``__init__`` is none);
- its stem being a word of the issue or a module the failing tests import.

Examples, documentation, benchmarks and vendored code are held back (scored at a fraction)
unless the issue names their folder: they share the library's vocabulary without being what a
fix edits. Everything here is a pure function of the texts it is given.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from rank_bm25 import BM25Okapi

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_DEF = re.compile(r"^[ \t]*(?:async[ \t]+)?(?:def|class)[ \t]+([A-Za-z_]\w*)", re.M)
_ASSIGN = re.compile(r"^([A-Za-z_]\w*)[ \t]*(?::[^=\n]*)?=[^=]", re.M)
_PATH = re.compile(r"(?:[\w.-]+/)+[\w.-]+\.py\b|\b[\w-]+\.py\b")
_DOTTED = re.compile(r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+\b")
_CODE_SPAN = re.compile(r"`([^`\n]{1,120})`")

SIDELINED = frozenset({
    "examples", "example", "docs", "doc", "documentation", "benchmarks", "benchmark",
    "asv_bench", "bench", "scripts", "tools", "ci", "extern", "externals", "vendor",
    "_vendor", "vendored", "third_party", "thirdparty", "build", "dist", "site-packages",
    "tutorial", "tutorials", "sandbox", "contrib_examples", "testing", "testutils",
})
"""Folder names whose files a fix rarely edits; such a file scores at ``SIDELINE_FACTOR`` of
its score unless the issue names one of these folders on its path."""
SIDELINE_FACTOR = 0.25
COMMON_NAMES = frozenset({
    "__init__", "__call__", "__str__", "__repr__", "__eq__", "__hash__", "main", "setup",
    "run", "get", "set", "test", "self", "cls", "none", "true", "false", "name", "value",
    "data", "args", "kwargs", "result", "error", "object", "type", "list", "dict", "str",
    "int", "float", "python", "file", "path", "default", "example", "return", "import",
})
"""Names too common to point at a file when the issue mentions them."""

W_BM25 = 1.0
W_PATH = 6.0
W_MODULE = 4.0
W_DEFINES = 1.2
W_STEM = 1.0
W_SIZE = 0.0
BM25_B = 0.75
"""BM25's length normalisation; a fix edits large files more often than their share of the
vocabulary suggests."""


def tokens(text: str) -> list[str]:
    """Identifiers, split on snake and camel case, lower-cased; whole identifiers kept too."""
    out: list[str] = []
    for word in _WORD.findall(text):
        low = word.lower()
        out.append(low)
        parts = [p for p in _CAMEL.sub("_", word).lower().split("_") if p]
        if len(parts) > 1:
            out.extend(parts)
    return out


def is_test_file(path: str) -> bool:
    p = PurePosixPath(path)
    return (
        p.name.startswith("test_")
        or p.name.endswith("_test.py")
        or "tests" in p.parts
        or "test" in p.parts
        or p.name == "conftest.py"
    )


def defined_names(source: str) -> set[str]:
    """Names a file defines: functions, classes (at any depth) and module-level assignments."""
    return set(_DEF.findall(source)) | set(_ASSIGN.findall(source))


@dataclass
class FileFacts:
    """What the ranking needs of one file; cheap to keep per blob across many issues."""

    path: str
    size: int
    words: list[str]
    defines: frozenset[str]

    @classmethod
    def of(cls, path: str, text: str) -> FileFacts:
        return cls(path, len(text),
                   tokens(path.replace("/", " ").removesuffix(".py")) * 3 + tokens(text),
                   frozenset(defined_names(text)))


@dataclass
class IssueSignals:
    """What an issue names: file paths, dotted modules, code names and plain words."""

    paths: list[str] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)
    names: set[str] = field(default_factory=set)
    words: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, text: str) -> IssueSignals:
        sig = cls(words=tokens(text))
        sig.paths = [p.lstrip("./") for p in _PATH.findall(text)]
        for dotted in _DOTTED.findall(text):
            parts = dotted.split(".")
            if parts[-1] in ("py", "txt", "rst", "md", "com", "org", "html"):
                continue
            sig.modules.append(dotted)
            sig.names.update(parts)
        for span in _CODE_SPAN.findall(text):
            sig.names.update(_WORD.findall(span))
        for word in _WORD.findall(text):
            if "_" in word.strip("_") or _CAMEL.search(word) or word.startswith("__"):
                sig.names.add(word)
        for m in re.finditer(r"\b([A-Za-z_]\w*)\(", text):
            sig.names.add(m.group(1))
        sig.names = {n for n in sig.names if len(n) > 2 and n.lower() not in COMMON_NAMES}
        return sig


def _path_hits(path: str, sig: IssueSignals) -> bool:
    """A path the issue names, either way round: ``query.py`` or ``db/models/query.py`` name
    ``django/db/models/query.py``; so does a traceback's ``/usr/lib/.../django/db/...``."""
    return any(path == p or path.endswith("/" + p) or ("/" in path and p.endswith("/" + path))
               for p in sig.paths)


def _module_hits(path: str, sig: IssueSignals) -> bool:
    """Whether a dotted name of the issue names this file's module: ``pkg.mod``,
    ``pkg.mod.Class.method`` or a tail of it such as ``mod.Class`` (two parts at least, so
    ``self.x`` or ``np.array`` never count)."""
    mod = "." + path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    for m in sig.modules:
        parts = m.split(".")
        for i in range(len(parts), 1, -1):
            if mod.endswith("." + ".".join(parts[:i])):
                return True
    return False


def _sidelined(path: str, issue_words: set[str]) -> bool:
    parts = {p.lower() for p in PurePosixPath(path).parts[:-1]}
    held = parts & SIDELINED
    return bool(held) and not (held & issue_words)


def rank_files(issue: str, facts: Iterable[FileFacts], tests_text: str = "",
               ) -> list[tuple[str, float]]:
    """Source files (tests excluded) with their scores, best first."""
    facts = [f for f in facts if f.path.endswith(".py") and not is_test_file(f.path)]
    if not facts:
        return []
    sig = IssueSignals.of(issue)
    query = sig.words + tokens(tests_text)
    raw = (BM25Okapi([f.words for f in facts], b=BM25_B).get_scores(query) if query
           else [0.0] * len(facts))
    top = max(raw) if len(raw) and max(raw) > 0 else 1.0
    bm25 = [s / top for s in raw]
    df = Counter(n for f in facts for n in f.defines & sig.names)
    idf = {n: math.log(1 + len(facts) / c) / math.log(1 + len(facts)) for n, c in df.items()}
    wanted = imported_modules(tests_text) | {w.lower() for w in sig.words}
    issue_words = {w.lower() for w in sig.words} | {p.lower() for p in sig.paths}
    scored = []
    for f, b in zip(facts, bm25, strict=True):
        s = W_BM25 * b
        if _path_hits(f.path, sig):
            s += W_PATH
        if _module_hits(f.path, sig):
            s += W_MODULE / (2 if f.path.endswith("__init__.py") else 1)
        hits = sorted((idf[n] for n in f.defines & sig.names), reverse=True)
        # The rarest name counts whole, the others less and less: a file that defines many
        # of an issue's common names (sympy's Symbol, symbols, S) is not thereby the one.
        s += W_DEFINES * sum(h / (1 + i) for i, h in enumerate(hits))
        stem = PurePosixPath(f.path).stem.lower()
        if stem != "__init__" and stem in wanted:
            s += W_STEM
        s += W_SIZE * math.log1p(f.size / 1000)
        if _sidelined(f.path, issue_words):
            s *= SIDELINE_FACTOR
        scored.append((f.path, s))
    scored.sort(key=lambda ps: (-ps[1], ps[0]))
    return scored


def imported_modules(source: str) -> set[str]:
    """The names of the modules a source imports, each dotted part on its own."""
    mods = set()
    for m in re.finditer(r"^\s*(?:from\s+([\w.]+)\s+import|import\s+([\w.]+))", source, re.M):
        mods.update((m.group(1) or m.group(2)).split("."))
    return mods
