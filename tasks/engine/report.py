"""The Markdown report of one repair run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from patchswarm.agent.ranking import Group, rank

if TYPE_CHECKING:
    from patchswarm.agent.candidate import Candidate
    from patchswarm.tasks.engine.problem import Problem
    from patchswarm.tasks.engine.runner import RepairResult
    from patchswarm.tasks.engine.store import RunStore


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
        f"- verified against: **{_label(result)}**",
        f"- result: **{'solved' if result.solved else 'not solved'}**"
        + (f" ({result.tied} changes tied at the top; the first is chosen)"
           if result.tied > 1 else "")
        + (f"; the judge scored {result.judged} verified changes tied on votes"
           if result.judged else ""),
        f"- tokens: prompt {result.tokens['prompt']}, completion {result.tokens['completion']}",
        *([f"- budget C(S,V): {b['fix_samples']} fix samples + {b['repro_samples']} "
           f"reproduction-test samples + {b['verifications']} sandbox checks at λ={b['lam']:.3g}"
           f" = {b['cost']:.4g} sample units"] if (b := result.budget) else []),
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
    lines += _repro_section(store, result)
    if result.best_patch:
        lines += ["", "## Chosen patch", "", "```diff", result.best_patch.rstrip(), "```"]
    elif result.pick_patch:
        lines += ["", "## Top-ranked change (unverified)", "",
                  "No fix passed a reproduction test. This change breaks none of the "
                  "project's tests and ranked first by votes (and the judge, when asked); "
                  "nothing checked that it fixes the issue.", "",
                  "```diff", result.pick_patch.rstrip(), "```"]
    text = "\n".join(lines) + "\n"
    store.write_text("report.md", text)
    return text


LABELS = {
    "given tests": "the project's own failing tests",
    "reproduction tests": "reproduction tests the model wrote from the issue (no failing test "
                          "came with it)",
    "unverified": "nothing: UNVERIFIED (no fix passed a reproduction test)",
}


def _label(result: RepairResult) -> str:
    if result.verification == "given tests" and not result.solved:
        return LABELS["given tests"] + " (none passed)"
    return LABELS.get(result.verification, result.verification)


def _repro_section(store: RunStore, result: RepairResult) -> list[str]:
    """The reproduction tests: the kept ones in full, the others with why they were dropped."""
    saved = store.read_json("repro.json")
    if not saved or result.repro is None:
        return []
    r = result.repro
    out = ["", "## Reproduction tests", "",
           f"Sampled {r['sampled']} (a budget of its own: {r['completion_tokens']} completion "
           f"tokens), usable {r['parsed']}, kept {r['kept']}: a test is kept when it fails on "
           "the unpatched code with an assertion or an exception the issue names."]
    if r.get("sampling_error"):
        out.append(f"Sampling failed: {r['sampling_error']}")
    for t in saved.get("tests", []):
        state = "kept" if t.get("kept") else f"discarded: {t.get('reason')}"
        outcomes = ", ".join(f"{k} {v}" for k, v in (t.get("outcomes") or {}).items())
        out += ["", f"### reproduction {t['index']}: {state}"]
        if outcomes:
            out.append(f"On the unpatched code: {outcomes}")
        if t.get("kept") and t.get("source"):
            out += ["", "```python", t["source"].rstrip(), "```"]
    return out
