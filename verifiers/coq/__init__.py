"""The Coq proof verifier (``patchswarm.verifiers.coq:CoqVerifier``).

- :mod:`.lexer`: Coq text as Coq reads it (comments, strings, sentences, attributes);
- :mod:`.problem`: a problem file split into preamble and statement;
- :mod:`.candidate`: a candidate's text and the rules it must follow before anything runs;
- :mod:`.checker`: the checker file the candidate never touches, and reading coqc's output;
- :mod:`.verifier`: the sandbox steps and the verdict.
"""

from .candidate import (
    FORBIDDEN_WORDS,
    Assembled,
    CandidateRejected,
    CandidateUnreadable,
    assemble,
    forbidden,
)
from .checker import first_error, parse_assumptions
from .lexer import CoqSyntaxError, Sentence, mask, normalise, sentences, theorem_name
from .problem import CoqProblem, ProblemFormatError, parse_problem, statement_key
from .verifier import (
    ALLOWED_AXIOMS,
    COQ_PACKAGES,
    STATEMENT_BROKEN,
    CoqVerifier,
    check_statements,
    coq_recipe,
    ensure_coq_image,
)

__all__ = [
    "ALLOWED_AXIOMS", "COQ_PACKAGES", "FORBIDDEN_WORDS", "STATEMENT_BROKEN", "Assembled",
    "CandidateRejected", "CandidateUnreadable", "CoqProblem", "CoqSyntaxError", "CoqVerifier",
    "ProblemFormatError", "Sentence", "assemble", "check_statements", "coq_recipe",
    "ensure_coq_image", "first_error", "forbidden", "mask", "normalise", "parse_assumptions",
    "parse_problem", "sentences", "statement_key", "theorem_name",
]
