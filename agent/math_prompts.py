"""Prompts for math problems: the solver's prompt (one per problem, sampled many times or
extended step by step) and the generative judge's question about a full or partial solution.

Steps are headed paragraphs: the solver is asked to separate them with a blank line, so
step-level search can stop generation at the end of a step (:data:`STEP_STOPS`) and score each
partial solution.
"""

from __future__ import annotations

STEP_SEPARATOR = "\n\n"
STEP_STOPS = (STEP_SEPARATOR, "\n## Step")
"""Where a step ends: at a blank line, or where the next "## Step" heading begins (models that
put single newlines between headed steps). Partial solutions join steps with
:data:`STEP_SEPARATOR`, so the model writes the next heading itself."""

SYSTEM = (
    "Solve the math problem step by step, clearly and briefly.\n\n"
    "Write each step as a short paragraph that starts with '## Step N:' and separate the "
    "steps with a blank line, like this:\n\n"
    "## Step 1: [what this step does]\n[the working]\n\n"
    "## Step 2: [what this step does]\n[the working]\n\n"
    "...\n\n"
    "Always end with the line: The final answer is $\\boxed{ANSWER}$, where ANSWER is the "
    "final number or expression alone."
)

JUDGE_SYSTEM = "You check solutions to math problems. You answer with a single word, Yes or No."
FULL_QUESTION = "Is this solution correct? Answer Yes or No."
PARTIAL_QUESTION = "Is this partial solution correct so far? Answer Yes or No."


def solve_messages(question: str) -> list[dict[str, str]]:
    """The chat messages asking for a step-by-step solution of ``question``."""
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": question.strip()}]


def judge_messages(question: str, solution: str, partial: bool = False,
                   max_solution_chars: int = 8000) -> list[dict[str, str]]:
    """The question put to the generative judge about a full (or, with ``partial``, an
    unfinished) solution. The judge's score is P(yes) of its first answer token."""
    text = solution.strip()
    if len(text) > max_solution_chars:
        text = "… (cut)\n" + text[-max_solution_chars:]
    kind = "the start of a solution" if partial else "a proposed solution"
    user = (f"Here is a math problem.\n\n<problem>\n{question.strip()}\n</problem>\n\n"
            f"Here is {kind}:\n\n<solution>\n{text}\n</solution>\n\n"
            f"{PARTIAL_QUESTION if partial else FULL_QUESTION}")
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def reward_model_turns(question: str, solution: str) -> list[dict[str, str]]:
    """The conversation a reward model scores: the problem as the user turn, the (partial)
    solution as the assistant turn — the layout outcome and process reward models are
    trained on."""
    return [{"role": "user", "content": question.strip()},
            {"role": "assistant", "content": solution.strip()}]
