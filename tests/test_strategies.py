"""Search strategies in memory (``agent/search/``), with real verification: pytest in a real Docker
sandbox on the bundled ``gradebook-average`` example.

The model side replays fixed completions (``ReplaySampler``) so that each strategy's outcome
is known in advance: the small real test model cannot fix code (it passed 0 of 768 tries on
such bugs), so it could not show a strategy stopping at a verified candidate. The real engine
drives the same code in test_openai_backend.py and test_judge.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from patchswarm.agent.prompts import repair_messages
from patchswarm.agent.sampler import ReplaySampler
from patchswarm.agent.search.memory import (
    best_of_n,
    budgeted_best_of_n,
    failure_feedback,
    patch_parser,
    refine,
    until_verified,
)
from patchswarm.sandbox.container import SandboxPool
from patchswarm.tasks.sources import examples
from patchswarm.verifiers.unittests import PytestVerifier

pytestmark = pytest.mark.docker

EXAMPLE = "gradebook-average"
BUGGY = "    return sum(scores) // len(scores)"


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    meta = examples.load_example(EXAMPLE)
    repo = examples.materialise(EXAMPLE, tmp_path_factory.mktemp("repo") / EXAMPLE)
    before = (repo / "gradebook.py").read_text()
    subprocess.run(["git", "-C", str(repo), "apply", str(Path(meta["root"]) / "fix.patch")],
                   check=True)
    after = (repo / "gradebook.py").read_text()
    subprocess.run(["git", "-C", str(repo), "checkout", "--", "."], check=True)
    return meta, {"gradebook.py": before}, after


@pytest.fixture(scope="module")
def verify(env_image, example):
    """The real verifier, bound with its sandbox pool into a plain callable."""
    meta = example[0]
    spec = {"test_command": meta["test_command"], "fail_to_pass": meta["fail_to_pass"],
            "pass_to_pass": meta["pass_to_pass"], "timeout": 120}
    pool = SandboxPool(env_image, size=2)
    calls: list[str] = []

    def run(patch: str) -> dict:
        calls.append(patch)
        sb = pool.take()
        try:
            return PytestVerifier(reruns=0).verify(spec, {"patch": patch}, sb).to_dict()
        finally:
            sb.close()

    run.calls = calls
    yield run
    pool.close()


def whole(text: str) -> str:
    return f"gradebook.py\n```python\n{text}```\n"


def variants(before: str, after: str) -> dict[str, str]:
    return {
        "fix": whole(after),
        "fix_commented": whole(after.replace("/ len(scores)", "/ len(scores)  # keep fraction")),
        "fix_float": whole(before.replace(BUGGY, "    return float(sum(scores)) / len(scores)")),
        "wrong_round": whole(before.replace(BUGGY, "    return round(sum(scores) // len(scores))")),
        "wrong_int": whole(before.replace(BUGGY, "    return int(sum(scores) / len(scores))")),
        "wrong_plus": whole(before.replace(BUGGY, "    return (sum(scores) + 1) // len(scores)")),
        "unchanged": whole(before),
        "chatter": "I am not sure how to fix this.",
    }


def replay(*texts: str) -> ReplaySampler:
    return ReplaySampler([{"text": t, "completion_tokens": 7, "prompt_tokens": 50}
                          for t in texts])


class Recording(ReplaySampler):
    """Replays completions (a ReplaySampler keeps the prompts it was given in ``.prompts``)."""

    def __init__(self, *texts: str) -> None:
        super().__init__([{"text": t, "completion_tokens": 7} for t in texts])


def test_best_of_n_verifies_each_distinct_change_once_and_ranks(example, verify):
    meta, files, after = example
    v = variants(files["gradebook.py"], after)
    sampler = replay(v["fix"], v["chatter"], v["wrong_round"], v["fix_commented"],
                     v["unchanged"], v["wrong_round"])
    before_calls = len(verify.calls)
    result = best_of_n(sampler, [{"role": "user", "content": "fix"}],
                       patch_parser(files, "whole_file"), verify, n=6, problem_id=EXAMPLE)
    assert len(result.candidates) == 6
    # fix and fix_commented are one change (2 votes), wrong_round another (2 votes)
    assert len(result.groups) == 2 and len(verify.calls) - before_calls == 2
    assert result.solved and result.best.votes == 2 and result.best.status == "passed"
    assert result.groups[1].status == "failed"
    assert sum(result.failures.values()) == 2 and result.failures.get("edit changes nothing") == 1
    assert result.ledger.samples == 6 and result.ledger.verifications == 2
    d = result.to_dict()
    assert d["completion_tokens"] == 42 and d["verified"] == 1 and d["tied"] == 1


def test_a_judge_breaks_a_tie_between_verified_changes(example, verify):
    meta, files, after = example
    v = variants(files["gradebook.py"], after)
    parse = patch_parser(files, "whole_file")
    plain = best_of_n(replay(v["fix"], v["fix_float"]), [], parse, verify, n=2)
    assert [g.status for g in plain.groups] == ["passed", "passed"]
    assert len(plain.tied()) == 2  # a coin flip without a judge

    judged = best_of_n(replay(v["fix"], v["fix_float"]), [], parse, verify, n=2,
                       judge=lambda patch: 0.9 if "float(" in patch else 0.2)
    assert len(judged.tied()) == 1 and "float(" in judged.best.patch
    assert judged.best.judge == 0.9


def test_until_verified_stops_at_the_first_verified_candidate(example, verify):
    meta, files, after = example
    v = variants(files["gradebook.py"], after)
    sampler = replay(v["wrong_round"], v["wrong_int"], v["chatter"], v["fix"],
                     v["wrong_plus"], v["fix_float"], v["fix"], v["fix"])
    result = until_verified(sampler, [], patch_parser(files, "whole_file"), verify,
                            budget=40, lam=1.0, batch=2)
    assert result.solved and result.stopped_early
    assert len(result.candidates) == 4  # two batches of two; the rest never sampled
    assert result.ledger.verifications == 3 and result.ledger.spent == 7
    # each batch is its own request with its own seed
    assert [c.seed for c in result.candidates] == [0, 0, 1000, 1000]
    assert [c.round for c in result.candidates] == [0, 0, 1, 1]


def test_until_verified_keeps_within_its_budget(example, verify):
    meta, files, after = example
    v = variants(files["gradebook.py"], after)
    sampler = replay(v["wrong_round"], v["wrong_int"], v["wrong_plus"], v["fix"])
    result = until_verified(sampler, [], patch_parser(files, "whole_file"), verify,
                            budget=6, lam=1.0, batch=2)
    # 2 samples + 2 verifications = 4; then room for one more sample and its check
    assert len(result.candidates) == 3 and result.ledger.spent == 6
    assert not result.solved and not result.stopped_early


def test_sampler_and_verifier_failures_end_or_skip_cleanly(example):
    meta, files, after = example
    v = variants(files["gradebook.py"], after)

    def broken(patch: str) -> dict:
        raise RuntimeError("sandbox vanished")

    result = until_verified(replay(v["wrong_round"], v["fix"]), [],
                            patch_parser(files, "whole_file"), broken, budget=100, batch=1)
    assert len(result.candidates) == 2 and not result.solved
    assert any("sandbox vanished" in e for e in result.errors)
    assert any(e.startswith("sampling:") and "no more completions" in e for e in result.errors)
    assert all(g.status == "error" for g in result.groups)


def test_refine_feeds_the_failing_test_output_back(example, verify):
    meta, files, after = example
    v = variants(files["gradebook.py"], after)
    sampler = Recording(v["wrong_round"], v["chatter"], v["fix"], v["fix"], v["fix"])
    issue = meta["issue"]
    result = refine(sampler, lambda fb: repair_messages(issue, files, "whole_file", fb),
                    patch_parser(files, "whole_file"), verify, rounds=3, n=2)
    assert result.solved and result.rounds == 2 and result.stopped_early
    assert len(sampler.prompts) == 2
    first, second = (p[-1]["content"] for p in sampler.prompts)
    assert "earlier attempt failed" not in first
    assert "earlier attempt failed" in second
    assert "round(sum(scores) // len(scores))" in second  # the failing change
    assert "test_average_keeps_fraction" in second  # its real failing test
    assert [c.round for c in result.candidates] == [0, 0, 1, 1]
    assert failure_feedback(result) is None or "```diff" in failure_feedback(result)


def test_budgeted_best_of_n_splits_the_budget_between_sampling_and_verifying(example,
                                                                             verify):
    meta, files, after = example
    v = variants(files["gradebook.py"], after)
    texts = [v["wrong_round"], v["fix"], v["wrong_int"], v["fix"], v["chatter"], v["fix"]]
    parse = patch_parser(files, "whole_file")
    before = len(verify.calls)
    # C = 12, λ = 1: V* = (12/2)^0.39 ≈ 2.0 → V = 2, S = floor(12 / 3) = 4
    result = budgeted_best_of_n(replay(*texts), [], parse, verify, budget=12, lam=1.0)
    assert (result.plan.samples, result.plan.verifications) == (4, 2)
    assert len(result.candidates) == 4 and result.solved
    # three distinct changes: the passing one run twice, the failing ones stop at once
    assert len(verify.calls) - before == 4
    assert result.ledger.verifications == 4 and result.ledger.spent == 8  # 4 unspent
    flat = budgeted_best_of_n(replay(*texts), [], parse, verify, budget=12, lam=1.0,
                              split="samples")
    assert (flat.plan.samples, flat.plan.verifications) == (6, 1)
    assert flat.to_dict()["plan"]["samples"] == 6
