"""The Markdown report of one repair run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from patchswarm.agent.ranking import Group, rank

if TYPE_CHECKING:
    from patchswarm.agent.candidate import Candidate

    from .problem import Problem
    from .runner import RepairResult
    from .store import RunStore


def write_report(store: RunStore, problem: Problem, result: RepairResult,
                 candidates: list[Candidate], groups: list[Group]) -> str:
    verdicts = store.verdicts()
    lines = [
        f"# patchswarm repair: {problem.id}",
        "",
        f"- repository: `{problem.repo}` at `{problem.base_commit[:12]}`",
        f"- test command: `{problem.test_command}`",
        f"- samples: {result.samples}, with a usable edit: {result.parsed}, "
        f"distinct changes: {result.distinct}, verified: {result.verified}",
        f"- result: **{'solved' if result.solved else 'not solved'}**"
        + (f" ({result.tied} changes tied at the top; the first is chosen)"
           if result.tied > 1 else "")
        + (f"; the judge scored {result.judged} verified changes tied on votes"
           if result.judged else ""),
        f"- tokens: prompt {result.tokens['prompt']}, completion {result.tokens['completion']}",
        "- time per stage (s): " + ", ".join(f"{k} {v:.1f}" for k, v in result.timings.items()),
        "",
        "## Distinct changes, best first",
        "",
        "| rank | votes | verdict | judge | detail | lines changed |",
        "| ---: | ---: | --- | ---: | --- | ---: |",
    ]
    for i, g in enumerate(rank(groups), 1):
        v = verdicts.get(g.key, {})
        detail = str(v.get("detail", "")).replace("|", "\\|")[:120]
        judge = "-" if g.judge is None else f"{g.judge:.3f}"
        lines.append(f"| {i} | {g.votes} | {g.status or '-'} | {judge} | {detail} | "
                     f"{g.diff_size} |")
    if result.errors:
        lines += ["", "## Samples with no usable edit", ""]
        lines += [f"- {reason}: {count}" for reason, count in sorted(result.errors.items())]
    if result.best_patch:
        lines += ["", "## Chosen patch", "", "```diff", result.best_patch.rstrip(), "```"]
    text = "\n".join(lines) + "\n"
    store.write_text("report.md", text)
    return text
