"""Prompts for Coq proofs, and turning a model's reply into a whole ``.v`` file.

A problem is a Coq file that states one theorem and ends with ``Proof. Admitted.`` or an open
``Proof.`` (as miniF2F in Coq does). The model is shown the file without that ending and asked
for the proof. Its reply becomes: the problem's own text up to and including the statement,
verbatim, then the model's lemmas (if it wrote any before restating the theorem) placed before
the statement, then its proof. Nothing in the reply can change the statement; checking what
the proof does (no ``admit``, no new axioms) is the verifier's job, not the parser's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SYSTEM = (
    "You are an expert in the Coq proof assistant (Coq 8.16, standard library and "
    "Coquelicot). You write complete, machine-checked proofs."
)

_KEYWORDS = r"(?:Theorem|Lemma|Fact|Remark|Corollary|Proposition|Example)"
_THEOREM = re.compile(rf"(?m)^[ \t]*{_KEYWORDS}\s+([A-Za-z_][A-Za-z0-9_']*)")
_OPEN_PROOF = re.compile(r"\bProof\s*\.(?:\s*Admitted\s*\.)?\s*\Z")
_FENCE = re.compile(r"```[ \t]*([A-Za-z]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_END = re.compile(r"(?<![\w'])(Qed|Defined|Admitted|Abort)\s*\.(?=\s|\Z)")
_TERMINATOR = re.compile(r"\.(?=\s|\Z)")
_COMMENT = re.compile(r"\(\*.*?\*\)", re.DOTALL)
_PROOF = re.compile(r"(?<![\w'.])Proof\s*\.(?=\s|\Z)")


class ProofFormatError(ValueError):
    """The problem file states no theorem that can be proved."""


@dataclass
class Statement:
    name: str
    preamble: str
    """Everything before the theorem: imports, scopes, definitions."""
    statement: str
    """``Theorem name : … .`` exactly as the file has it."""

    @property
    def shown(self) -> str:
        """The file as the model sees it: preamble and statement, no proof."""
        return f"{self.preamble}{self.statement}".rstrip() + "\n"


def _sentence_end(text: str, start: int) -> int:
    """Offset just past the sentence that starts at ``start`` (comments skipped)."""
    masked = _COMMENT.sub(lambda m: " " * len(m.group(0)), text)
    m = _TERMINATOR.search(masked, start)
    return m.end() if m else len(text)


def split_statement(source: str, name: str | None = None) -> Statement:
    """Preamble and statement of the theorem ``name`` (default: the last one stated)."""
    body = _OPEN_PROOF.sub("", source.rstrip())
    found = [m for m in _THEOREM.finditer(body) if name is None or m.group(1) == name]
    if not found:
        raise ProofFormatError("the problem file states no Theorem/Lemma"
                               + (f" named {name}" if name else ""))
    m = found[-1]
    end = _sentence_end(body, m.end())
    return Statement(m.group(1), body[:m.start()], body[m.start():end])


def proof_messages(source: str, name: str | None = None) -> list[dict[str, str]]:
    """The chat messages asking for a proof of the theorem in the Coq file ``source``."""
    st = split_statement(source, name)
    user = (
        "Prove the following Coq theorem.\n\n"
        f"```coq\n{st.shown.rstrip()}\n```\n\n"
        "Reply with one ```coq code block holding the theorem exactly as stated, followed by "
        "its proof from `Proof.` to `Qed.`. You may put helper lemmas (with their proofs) "
        "before the theorem. Do not use `admit`, `Admitted` or new axioms. Keep the proof "
        "short: the standard tactics (reflexivity, simpl, compute, lia, nia, lra, nra, ring, "
        "field, auto) settle many goals; put `Require Import Lia.` or `Require Import "
        "Psatz.` before the theorem when you use lia, nia, lra or nra."
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def code_block(text: str) -> str:
    """The reply's last ```coq (or ```v, or plain ```) block; the whole reply if none."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(text)]
    for want in (("coq", "v", "rocq"), ("",)):
        chosen = [b for lang, b in blocks if lang in want]
        if chosen:
            return chosen[-1]
    if blocks:
        return blocks[-1][1]
    return text


def proof_file(source: str, reply: str, name: str | None = None) -> str:
    """The whole ``.v`` file for a model's ``reply``: the problem's preamble and statement
    verbatim, the model's helper lemmas before the statement, and its proof after it (with
    ``Proof.`` added if missing and ``Qed.`` if the proof has no ending). Text after the first
    proof ending is dropped."""
    st = split_statement(source, name)
    block = code_block(reply).strip("\n")
    helpers = ""
    restated = [m for m in _THEOREM.finditer(block) if m.group(1) == st.name]
    if restated:
        m = restated[0]
        helpers = _without_preamble(block[:m.start()], st.preamble)
        # The proof starts at the restated theorem's "Proof." (a garbled restatement may hold
        # periods of its own), else right after the statement's sentence.
        masked = _COMMENT.sub(lambda x: " " * len(x.group(0)), block)
        opening = _PROOF.search(masked, m.end())
        proof = block[opening.start():] if opening else block[_sentence_end(block, m.end()):]
    else:
        proof = block
    proof = proof.strip()
    end = _END.search(_COMMENT.sub(lambda x: " " * len(x.group(0)), proof))
    if end:
        proof = proof[:end.end()]
    if not re.match(r"(?:\(\*.*?\*\)\s*)*Proof\s*\.", proof, re.DOTALL):
        proof = "Proof.\n" + proof
    if not end:
        proof = proof.rstrip() + "\nQed."
    parts = [st.preamble.rstrip("\n")]
    if helpers:
        parts.append(helpers)
    parts += [st.statement, proof]
    return "\n".join(p for p in parts if p) + "\n"


def _without_preamble(text: str, preamble: str) -> str:
    """The model's own sentences before the theorem: lines the preamble already has
    (its imports and scopes, repeated) are dropped."""
    have = {line.strip() for line in preamble.splitlines() if line.strip()}
    kept = [line for line in text.splitlines() if line.strip() and line.strip() not in have]
    return "\n".join(kept).strip()
