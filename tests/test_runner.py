"""The whole loop with recorded completions: parse → de-duplicate → verify in Docker → rank.

The model side is replayed from fixed texts here so that the outcome is known; the real
engine runs the same loop in test_vllm_loop.py.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from patchswarm.agent.sampler import ReplaySampler
from patchswarm.tasks.engine.problem import ProblemError, local_problem
from patchswarm.tasks.engine.runner import RepairSettings, repair
from patchswarm.tasks.sources import examples

pytestmark = pytest.mark.docker

EXAMPLE = "gradebook-average"


def fixed_source(tmp_path) -> tuple[str, str]:
    """The buggy and the gold-fixed text of gradebook.py."""
    repo = examples.materialise(EXAMPLE, tmp_path / "gold")
    before = (repo / "gradebook.py").read_text()
    fix = examples.load_example(EXAMPLE)["root"] / "fix.patch"
    subprocess.run(["git", "-C", str(repo), "apply", str(fix)], check=True)
    return before, (repo / "gradebook.py").read_text()


def whole_file(text: str) -> str:
    return f"Here is the fix.\n\ngradebook.py\n```python\n{text}```\n"


def problem_for(repo, **kw):
    meta = examples.load_example(EXAMPLE)
    return local_problem(repo, meta["issue"], meta["test_command"], problem_id=EXAMPLE,
                         files=meta["files"], **kw)


def test_loop_picks_the_verified_candidate_and_counts_votes(tmp_path, example_repo,
                                                            base_image):
    before, after = fixed_source(tmp_path)
    same_fix_with_comment = after.replace(
        "return sum(scores) / len(scores)",
        "return sum(scores) / len(scores)  # true division keeps the fraction")
    wrong = before.replace("return sum(scores) // len(scores)",
                           "return round(sum(scores) // len(scores))")
    texts = [whole_file(after), "I cannot help with that.", whole_file(wrong),
             whole_file(same_fix_with_comment), whole_file(before)]
    repo = example_repo(EXAMPLE)
    head_before = subprocess.run(["git", "-C", str(repo), "status", "--porcelain"],
                                 capture_output=True, text=True).stdout
    sampler = ReplaySampler([{"text": t, "completion_tokens": 10} for t in texts])
    run_dir = tmp_path / "run"
    result = repair(problem_for(repo), lambda: sampler, RepairSettings(n=5), run_dir)

    assert result.samples == 5
    assert result.parsed == 3  # prose has no edit; the unchanged file changes nothing
    assert result.distinct == 2  # the comment-only variant votes with the gold fix
    assert result.verified == 1
    assert result.solved
    assert "/ len(scores)" in result.best_patch and "//" not in result.best_patch.split(
        "+    return")[1].splitlines()[0]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["solved"] is True
    assert (run_dir / "best.patch").read_text() == result.best_patch
    report = (run_dir / "report.md").read_text()
    assert "| 1 | 2 | passed |" in report
    # The user's repository is untouched.
    assert subprocess.run(["git", "-C", str(repo), "status", "--porcelain"],
                          capture_output=True, text=True).stdout == head_before

    # Running again resumes: nothing is sampled (the sampler is exhausted) or verified again.
    verdict_lines = (run_dir / "verdicts.jsonl").read_text().count("\n")
    again = repair(problem_for(repo), lambda: pytest.fail("no sampling on resume"),
                   RepairSettings(n=5), run_dir)
    assert again.solved and again.distinct == 2
    assert (run_dir / "verdicts.jsonl").read_text().count("\n") == verdict_lines


def test_nothing_verified_is_reported_honestly(tmp_path, example_repo, base_image):
    before, _ = fixed_source(tmp_path)
    wrong = before.replace("return sum(scores) // len(scores)", "return 0.0")
    sampler = ReplaySampler([{"text": whole_file(wrong)}, {"text": "```diff\nnonsense\n```"}])
    result = repair(problem_for(example_repo(EXAMPLE)), lambda: sampler,
                    RepairSettings(n=2), tmp_path / "run")
    assert not result.solved and result.best_patch is None
    assert result.distinct == 1 and result.verified == 0
    assert not (tmp_path / "run" / "best.patch").exists()


def test_bad_input_gets_clear_errors(tmp_path, example_repo):
    not_git = tmp_path / "plain"
    not_git.mkdir()
    with pytest.raises(ProblemError, match="not a git repository"):
        local_problem(not_git, "bug", "pytest")
    repo = example_repo(EXAMPLE)
    (repo / "gradebook.py").write_text("changed\n")
    with pytest.raises(ProblemError, match="uncommitted changes"):
        local_problem(repo, "bug", "pytest")
    with pytest.raises(ProblemError, match="does not exist"):
        local_problem(repo, "bug", "pytest", base="0" * 40)
    with pytest.raises(ProblemError, match="test command"):
        local_problem(repo, "bug", "  ", allow_dirty=True)


def test_a_test_command_that_is_not_found_is_reported(tmp_path, example_repo, base_image):
    repo = example_repo(EXAMPLE)
    meta = examples.load_example(EXAMPLE)
    problem = local_problem(repo, meta["issue"], "no-such-runner --all", files=meta["files"])
    with pytest.raises(ProblemError, match="not found"):
        repair(problem, lambda: pytest.fail("must stop before sampling"), RepairSettings(n=1),
               tmp_path / "run")


def test_tests_that_already_pass_start_issue_only_repair(tmp_path, example_repo, base_image):
    """No failing test: the run turns to reproduction tests (test_issue_only.py); with a
    reproduction budget of 0 nothing can be verified, and the result says so."""
    repo = example_repo(EXAMPLE)
    meta = examples.load_example(EXAMPLE)
    problem = local_problem(
        repo, meta["issue"],
        "python -m pytest -q tests/test_gradebook.py::test_letter_boundaries",
        files=meta["files"])
    sampler = ReplaySampler([{"text": "no edit here"}])
    result = repair(problem, lambda: sampler, RepairSettings(n=1, repro=0), tmp_path / "run")
    assert result.verification == "unverified" and not result.solved
    assert result.repro == {**result.repro, "sampled": 0, "kept": 0}


@pytest.mark.parametrize("strategy", ["until_verified", "refine"])
def test_rounds_stop_at_the_first_verified_candidate(tmp_path, example_repo, base_image,
                                                     strategy):
    before, after = fixed_source(tmp_path)
    wrong = before.replace("return sum(scores) // len(scores)", "return 0.0")
    texts = [whole_file(wrong), whole_file(wrong), whole_file(after), whole_file(wrong),
             whole_file(after), whole_file(after)]
    sampler = ReplaySampler([{"text": t} for t in texts])
    settings = RepairSettings(n=2, strategy=strategy, rounds=3)
    result = repair(problem_for(example_repo(EXAMPLE)), lambda: sampler, settings,
                    tmp_path / "run")
    assert result.solved
    assert result.samples == 4  # two rounds of two; the third round was never sampled
    assert len(sampler.prompts) == 2
    second_prompt = sampler.prompts[1][-1]["content"]
    if strategy == "refine":
        assert "<test_output>" in second_prompt and "RESOLVED_NO" in second_prompt
    else:
        assert "<test_output>" not in second_prompt


def test_the_budgeted_strategy_runs_in_the_repair_loop(tmp_path, example_repo, base_image):
    """The runner drives every strategy of agent/search: budgeted best-of-N with C = 6 and
    λ = 1 plans S = 2 samples and V = 2 (V* = 3^0.39 ≈ 1.5, S = floor(6 / 3))."""
    before, after = fixed_source(tmp_path)
    sampler = ReplaySampler([{"text": t} for t in [whole_file(after), whole_file(before),
                                                     "never drawn"]])
    repo = example_repo(EXAMPLE)
    run_dir = tmp_path / "run"
    result = repair(problem_for(repo), lambda: sampler,
                    RepairSettings(strategy="budgeted", budget=6, lam=1.0), run_dir)
    assert result.samples == 2 and result.solved
    plan = json.loads((run_dir / "plan.json").read_text())
    assert (plan["samples"], plan["verifications"]) == (2, 2)
    with pytest.raises(ProblemError, match="needs a budget"):
        repair(problem_for(repo), lambda: sampler, RepairSettings(strategy="budgeted"),
               tmp_path / "run2")
