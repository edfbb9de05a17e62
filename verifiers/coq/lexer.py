"""Coq text as Coq reads it: comments, strings, sentences, and the parts of a sentence.

The rules follow Coq's own lexer (``parsing/cLexer.ml``), so that what this module calls a
sentence is what ``coqc`` runs as one:

- comments ``(* ... *)`` nest, and a string inside a comment is read as a string, so
  ``(* "*)" *)`` is one comment;
- a string is ``"..."`` where ``""`` stands for one quote;
- a sentence ends at a ``.`` or ``...`` token followed by a blank (space, tab, newline,
  carriage return) or the end of the text. ``Nat.add``, ``x.(f)``, ``1.5``, ``[1 .. 2]`` and
  ``Qed.(* c *)`` end nothing (Coq reads ``.(`` there as a token of its own);
- between sentences, runs of ``-``, ``+``, ``*`` are bullets and ``{``, ``}`` braces: they
  are commands without a period, kept here as the sentence's ``bullets``;
- a sentence is ``[control prefixes] [attributes] command``: control prefixes are ``Time``,
  ``Instructions``, ``Timeout N``, ``Redirect "file"``, ``Fail`` and ``Succeed``; attributes
  are ``#[...]`` lists and the legacy words ``Local``, ``Global``, ``Polymorphic`` and the
  like.

Text that cannot be split (an unterminated comment or string) raises
:class:`CoqSyntaxError`: a caller must not guess there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

BLANKS = " \t\n\r"
"""What Coq accepts after a sentence's final period (``blank_or_eof`` in its lexer)."""

THEOREM_KEYWORDS = ("Theorem", "Lemma", "Fact", "Remark", "Corollary", "Proposition",
                    "Example", "Property")
LEGACY_ATTRIBUTES = ("Local", "Global", "Polymorphic", "Monomorphic", "Cumulative",
                     "NonCumulative", "Private", "Program")
CONTROL_WORDS = ("Time", "Instructions", "Fail", "Succeed")

_IDENT = re.compile(r"[A-Za-z_\u00c0-\uffff][A-Za-z0-9_'\u00c0-\uffff]*")


class CoqSyntaxError(ValueError):
    """The text cannot be split into Coq sentences (an unterminated comment or string)."""


def mask(text: str) -> tuple[str, str]:
    """``(code, bare)``: ``text`` with comments blanked, and with string contents blanked too.

    Both keep every offset and newline of ``text``. Raises :class:`CoqSyntaxError` on an
    unterminated comment or string.
    """
    code = list(text)
    bare = list(text)
    n = len(text)
    i = 0
    depth = 0
    comment_start = 0

    def blank(lst: list[str], a: int, b: int) -> None:
        for k in range(a, b):
            if lst[k] != "\n":
                lst[k] = " "

    while i < n:
        if text.startswith("(*", i):
            if depth == 0:
                comment_start = i
            depth += 1
            blank(code, i, i + 2)
            blank(bare, i, i + 2)
            i += 2
            continue
        if depth and text.startswith("*)", i):
            depth -= 1
            blank(code, i, i + 2)
            blank(bare, i, i + 2)
            i += 2
            continue
        if text[i] == '"':
            j = i + 1
            while True:
                if j >= n:
                    line = text.count("\n", 0, i) + 1
                    raise CoqSyntaxError(f"unterminated string starting on line {line}")
                if text[j] == '"':
                    if j + 1 < n and text[j + 1] == '"':
                        j += 2
                        continue
                    break
                j += 1
            if depth:
                blank(code, i, j + 1)
                blank(bare, i, j + 1)
            else:
                blank(bare, i + 1, j)
            i = j + 1
            continue
        if depth:
            blank(code, i, i + 1)
            blank(bare, i, i + 1)
        i += 1
    if depth:
        line = text.count("\n", 0, comment_start) + 1
        raise CoqSyntaxError(f"unterminated comment starting on line {line}")
    return "".join(code), "".join(bare)


@dataclass
class Sentence:
    start: int
    """Offset of the sentence's first non-blank character (bullets included)."""
    end: int
    """Offset just past its terminating period (or ``...``)."""
    code: str
    """Its text with comments removed (strings kept), bullets included."""
    bullets: str = ""
    """Bullets and braces before the command (``- ``, ``} {``), without blanks."""
    parts: Parts = field(init=False)

    def __post_init__(self) -> None:
        self.parts = parse_parts(self.head)

    @property
    def normal(self) -> str:
        return normalise(self.code)

    @property
    def head(self) -> str:
        """The sentence without leading bullets and braces (``- lia.`` → ``lia.``)."""
        return re.sub(r"^[\s\-+*{}]+", "", self.code)


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _terminator_end(text: str, bare: str, i: int) -> int | None:
    """Offset just past the sentence terminator starting at ``bare[i] == "."``, or None."""
    if i > 0 and bare[i - 1] == ".":
        return None  # inside a run of dots, judged from its first dot
    j = i
    while j < len(bare) and bare[j] == ".":
        j += 1
    run = j - i
    after = text[j] if j < len(text) else ""
    if run == 1 and after and (_IDENT.match(after) is not None):
        return None  # a field: Nat.add, x.y
    if run in (1, 3) and (after == "" or after in BLANKS):
        return j
    return None


def sentences(text: str) -> tuple[list[Sentence], str]:
    """The sentences of ``text`` and what is left after the last one (blank, or the text of
    an unterminated sentence, comments removed)."""
    code, bare = mask(text)
    out: list[Sentence] = []
    pos = 0
    i = bare.find(".")
    while i != -1:
        end = _terminator_end(text, bare, i)
        if end is None:
            i = bare.find(".", i + 1)
            continue
        chunk = bare[pos:end]
        start = pos + len(chunk) - len(chunk.lstrip())
        if start < end:
            body = code[start:end].strip()
            m = re.match(r"^[\s\-+*{}]+", body)
            bullets = re.sub(r"\s+", "", m.group(0)) if m else ""
            out.append(Sentence(start, end, body, bullets))
        pos = end
        i = bare.find(".", end)
    return out, code[pos:]


def normalise(code: str) -> str:
    """One spelling per sentence: whitespace runs become one space, and none is kept next to
    brackets and separators (``( x:R )`` and ``(x : R)`` compare equal)."""
    text = " ".join(code.split())
    return re.sub(r"\s*([()\[\]{},;:])\s*", r"\1", text)


@dataclass
class Parts:
    """A sentence taken apart the way Coq's grammar reads it."""

    controls: list[str]
    """Control prefixes, in order: ``Time``, ``Timeout 60``, ``Redirect "f"``, ``Fail`` ..."""
    attributes: list[str]
    """``#[...]`` lists (their inside) and legacy attribute words, in order."""
    command: str
    """The command's first word (``Qed``, ``Theorem``, ``intros``); empty when there is none."""
    rest: str
    """What follows the command word, final period included."""


_CONTROL = re.compile(r'(Time|Instructions|Fail|Succeed)\b\s*|Timeout\s+\d+\s*|'
                      r'Redirect\s*"(?:[^"]|"")*"\s*')


def _attribute_end(s: str, i: int) -> int | None:
    """Offset past the ``]`` closing the ``#[`` at ``i`` (brackets nest; strings count)."""
    depth = 0
    j = i + 1
    while j < len(s):
        c = s[j]
        if c == '"':
            k = s.find('"', j + 1)
            while k != -1 and s.startswith('""', k):
                k = s.find('"', k + 2)
            if k == -1:
                return None
            j = k + 1
            continue
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return None


def parse_parts(head: str) -> Parts:
    controls: list[str] = []
    attributes: list[str] = []
    s = head.strip()
    while True:
        m = _CONTROL.match(s)
        if m:
            controls.append(" ".join(m.group(0).split()))
            s = s[m.end():]
            continue
        if s.startswith("#["):
            end = _attribute_end(s, 0)
            if end is None:
                attributes.append(s[2:])
                return Parts(controls, attributes, "", "")
            attributes.append(" ".join(s[2:end - 1].split()))
            s = s[end:].lstrip()
            continue
        m = re.match(rf"({'|'.join(LEGACY_ATTRIBUTES)})\s+(?=[A-Z#])", s)
        if m:
            attributes.append(m.group(1))
            s = s[m.end():]
            continue
        break
    m = _IDENT.match(s)
    if not m:
        return Parts(controls, attributes, "", s)
    return Parts(controls, attributes, m.group(0), s[m.end():])


def theorem_name(sentence: Sentence) -> str | None:
    """The name a ``Theorem``/``Lemma``/... sentence states, else None."""
    p = sentence.parts
    if p.command not in THEOREM_KEYWORDS:
        return None
    m = re.match(r"\s*([^\s:(){}\[\].]+)", p.rest)
    return m.group(1) if m else None


_DECLARERS = (*THEOREM_KEYWORDS, "Definition", "Fixpoint", "CoFixpoint", "Let", "Instance",
              "Axiom", "Axioms", "Parameter", "Parameters", "Conjecture", "Conjectures",
              "Hypothesis", "Hypotheses", "Variable", "Variables", "Inductive", "CoInductive",
              "Variant", "Record", "Structure", "Class", "Function", "Equations", "Module",
              "Notation", "Canonical", "Coercion")


def declared_names(sentence: Sentence) -> list[str]:
    """Names a declaring sentence introduces at its own level (best effort: the scan is
    defence in depth; the checker file decides)."""
    p = sentence.parts
    if p.command not in _DECLARERS:
        return []
    rest = p.rest.strip()
    if p.command == "Module":
        rest = re.sub(r"^(Type|Import|Export)\s+", "", rest)
    if p.command == "Notation" and not _IDENT.match(rest):
        return []  # a notation with a string pattern declares no name
    if p.command in ("Axiom", "Axioms", "Parameter", "Parameters", "Conjecture",
                     "Conjectures", "Hypothesis", "Hypotheses", "Variable", "Variables"):
        return posit_names(rest)
    m = _IDENT.match(rest)
    return [m.group(0)] if m else []


def posit_names(rest: str) -> list[str]:
    """The names of ``Parameter a b : T`` or ``Parameters (a : T) (b : U)`` (text after the
    keyword)."""
    rest = rest.strip()
    if rest.startswith("("):
        return [w for grp in re.findall(r"\(([^:()]*):", rest) for w in grp.split()
                if _IDENT.fullmatch(w)]
    head = rest.split(":", 1)[0]
    return [w for w in head.split() if _IDENT.fullmatch(w)]


def block_change(sentence: Sentence) -> int:
    """+1 when the sentence opens a ``Module``/``Module Type``/``Section`` block, -1 when it
    is an ``End``, else 0 (a ``Module M := E.`` alias opens nothing)."""
    p = sentence.parts
    if p.command == "End":
        return -1
    if p.command == "Section":
        return 1
    if p.command in ("Module", "Functor"):
        return 0 if ":=" in p.rest else 1
    return 0


def identifiers(bare: str, start: int, end: int) -> list[tuple[int, str]]:
    """``(offset, word)`` for each identifier in ``bare[start:end]``."""
    return [(m.start(), m.group(0)) for m in _IDENT.finditer(bare, start, end)]


def is_ident(word: str) -> bool:
    return _IDENT.fullmatch(word) is not None
