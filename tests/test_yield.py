"""Every sample counts: one reason for each unusable sample, re-asking within the budget, and
``patchswarm bench yield`` end to end over replayed completions and a real Docker engine."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from patchswarm.agent.candidate import Candidate
from patchswarm.agent.edits import parse_edits
from patchswarm.agent.sampler import ReplaySampler, SamplingParams
from patchswarm.agent.usable import REASONS, reask_count, same_budget, unusable_reason
from patchswarm.tasks.bench.sample_yield import RecordingSampler, aggregate, load_replay

CALC = "def add(a, b):\n    return a - b\n\n\ndef sub(a, b):\n    return a - b\n"
TWO = {"calc.py": CALC, "util.py": "def one():\n    return 1\n"}


def reason(text: str, files: dict[str, str], fmt: str = "auto",
           finish_reason: str | None = "stop") -> str | None:
    parsed = parse_edits(text, files, fmt)
    return unusable_reason(text, parsed.patch, parsed.error, finish_reason)


def sr(path: str, search: str, replace: str) -> str:
    return f"{path}\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


@pytest.mark.parametrize(("text", "files", "fmt", "finish", "expected"), [
    (sr("calc.py", "def add(a, b):\n    return a - b", "def add(a, b):\n    return a + b"),
     TWO, "auto", "stop", None),
    ("  \n\n", TWO, "auto", "stop", "empty_completion"),
    ("calc.py\n```python\ndef add(a, b):\n    return a +", TWO, "auto", "length", "truncated"),
    ("The bug is in add: it subtracts.", TWO, "auto", "stop", "unparsable"),
    ("calc.py\n```python\ndef add(a, b):\n    return a + b\n\n# ... rest unchanged\n```\n",
     TWO, "auto", "stop", "unparsable"),
    ("<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n", TWO, "auto", "stop",
     "unparsable"),
    ("<<<<<<< SEARCH\ndef one():\n=======\ndef one(x):\n>>>>>>> REPLACE\n", TWO, "auto", "stop",
     "no_path"),
    (sr("src/parse.py", "x", "y"), {"a/parse.py": "x\n", "b/parse.py": "x\n"}, "auto", "stop",
     "no_path"),
    (sr("calc.py", "    raise ValueError(a)", "    return a + b"), TWO, "auto", "stop",
     "search_not_found"),
    (sr("calc.py", "    return a - b", "    return a + b"), TWO, "auto", "stop",
     "ambiguous_match"),
    ("../evil.py\n```python\nimport os\n```\n", TWO, "whole_file", "stop", "new_file_refused"),
    ("path/to/helpers.py\n```python\nX = 1\n```\n", TWO, "whole_file", "stop",
     "new_file_refused"),
    (f"calc.py\n```python\n{CALC}```\n", TWO, "auto", "stop", "unchanged"),
], ids=["usable", "empty", "truncated", "prose", "elided", "malformed", "no-path",
        "ambiguous-path", "not-found", "ambiguous", "unsafe-new", "placeholder-new",
        "unchanged"])
def test_each_unusable_sample_gets_exactly_one_reason_of_the_vocabulary(
        text: str, files: dict[str, str], fmt: str, finish: str, expected: str | None) -> None:
    got = reason(text, files, fmt, finish)
    assert got == expected
    assert got is None or got in REASONS


def test_a_complete_edit_cut_off_in_later_prose_is_still_usable() -> None:
    text = sr("calc.py", "def add(a, b):\n    return a - b",
              "def add(a, b):\n    return a + b") + "\nThis works because addition is"
    assert reason(text, TWO, finish_reason="length") is None


def test_test_only_edits_and_candidates_record_their_reason() -> None:
    # The runner keeps the patch of a test-only edit and flags it with an error.
    cand = Candidate(id="p/0-0", problem_id="p", index=0, text="tests/test_x.py ...",
                     patch="diff --git a/tests/test_x.py b/tests/test_x.py\n",
                     error="edits only test files", key="k")
    assert cand.reason == "test_only" and not cand.usable
    assert cand.to_dict()["reason"] == "test_only"
    # A record written before reasons existed gets its reason when read back.
    old = Candidate(id="p/0-1", problem_id="p", index=1, text="x", error="edit changes nothing")
    record = {k: v for k, v in old.to_dict().items() if k != "reason"}
    assert Candidate.from_dict(record).reason == "unchanged"
    good = Candidate(id="p/0-2", problem_id="p", index=2, text="x", patch="diff", key="k2")
    assert good.reason is None and good.usable
    assert Candidate.from_dict(good.to_dict()).reason is None


def test_reask_never_exceeds_the_budget_in_samples_or_tokens() -> None:
    budget = same_budget(8, max_tokens=100)
    assert budget == {"max_samples": 16, "token_budget": 800, "max_tokens": 100}
    # 8 asked, 5 usable, 500 tokens spent: 3 wanted, 300 tokens left at 100 each -> 3.
    assert reask_count(8, 5, 8, 500, **budget) == 3
    # Long samples used most of the tokens: only what the worst case still fits.
    assert reask_count(8, 5, 8, 650, **budget) == 1
    assert reask_count(8, 5, 8, 790, **budget) == 0
    assert reask_count(8, 8, 8, 100, **budget) == 0  # enough usable already
    assert reask_count(8, 0, 16, 0, **budget) == 0  # the sample budget is spent
    assert reask_count(8, 2, 3, 0, max_samples=10, max_tokens=50) == 6  # no token budget
    for usable in range(9):
        for asked in range(usable, 17):
            for used in range(0, 801, 50):
                more = reask_count(8, usable, asked, used, **budget)
                assert 0 <= more <= 8 - usable
                assert asked + more <= 16
                assert used + more * 100 <= max(800, used)
    with pytest.raises(ValueError):
        reask_count(8, -1, 0, 0, max_samples=8, max_tokens=10)


def test_recorded_completions_replay_by_example(tmp_path) -> None:
    inner = ReplaySampler([{"text": "a", "completion_tokens": 3},
                           {"text": "b", "completion_tokens": 4}], model="m")
    path = tmp_path / "rec.jsonl"
    comps = RecordingSampler(inner, "ex1", path).sample([{"role": "user", "content": "hi"}],
                                                  SamplingParams(n=2, seed=5))
    assert [c.text for c in comps] == ["a", "b"]
    rows = load_replay(path)
    assert list(rows) == ["ex1"]
    assert [(r["text"], r["completion_tokens"], r["model"]) for r in rows["ex1"]] == [
        ("a", 3, "m"), ("b", 4, "m")]


def test_aggregate_counts_pass_at_k_and_tokens() -> None:
    rows = [
        {"samples": 4, "usable": 2, "unusable_by_reason": {"unchanged": 2}, "distinct_changes": 2,
         "passing": 2, "solved": True, "completion_tokens": 40,
         "seconds": {"sample": 1.0, "parse": 0.1}},
        {"samples": 4, "usable": 1, "unusable_by_reason": {"no_path": 3}, "distinct_changes": 1,
         "passing": 0, "solved": False, "completion_tokens": 60,
         "seconds": {"sample": 2.0, "verify": 3.0}},
    ]
    out = aggregate(rows, 4)
    assert out["samples"] == 8 and out["usable"] == 3 and out["unusable"] == 5
    assert out["unusable_by_reason"]["unchanged"] == 2 and out["unusable_by_reason"]["no_path"] == 3
    assert set(out["unusable_by_reason"]) == set(REASONS)
    assert out["pass_at_1"] == 0.25  # (2/4 + 0/4) / 2
    assert out["coverage_at_k"]["4"] == 0.5
    assert out["coverage_at_k"]["2"] == pytest.approx((1 - 1 / 6) / 2, abs=1e-4)
    assert out["completion_tokens_per_sample"] == 12.5
    assert out["completion_tokens_per_solved_problem"] == 100.0
    assert out["stage_seconds"] == {"model_start": 0.0, "prepare": 0.0, "sample": 3.0,
                                    "parse": 0.1, "verify": 3.0}


# --------------------------------------------------------------------------------------------
# End to end: two bundled examples, replayed completions, a real Docker engine

DURATION_BUG = ('    if hours:\n        return f"{hours}:{minutes:2}:{secs:2}"\n'
                '    return f"{minutes}:{secs:2}"')
DURATION_FIX = ('    if hours:\n        return f"{hours}:{minutes:02d}:{secs:02d}"\n'
                '    return f"{minutes}:{secs:02d}"')


def _records(tmp_path) -> list[dict]:
    from patchswarm.tasks.sources import examples

    repo = examples.materialise("gradebook-average", tmp_path / "gold")
    before = (repo / "gradebook.py").read_text()
    after = before.replace("return sum(scores) // len(scores)", "return sum(scores) / len(scores)")
    assert after != before

    def whole(text: str) -> str:
        return f"gradebook.py\n```python\n{text}```\n"

    rows = [
        ("gradebook-average", whole(after), "stop"),  # the fix
        ("gradebook-average", whole(before), "stop"),  # unchanged
        ("gradebook-average", "I cannot help with that.", "stop"),  # unparsable
        ("gradebook-average", sr("gradebook.py", "    return total // count",
                                 "    return total / count"), "stop"),  # search_not_found
        ("duration-format", sr("durations.py", DURATION_BUG, DURATION_FIX), "stop"),  # the fix
        ("duration-format", "", "stop"),  # empty_completion
        ("duration-format", "durations.py\n```python\ndef format_duration(", "length"),
        ("duration-format", "tests/test_more.py\n```python\ndef test_more():\n"
                            "    assert True\n```\n", "stop"),  # test_only
    ]
    return [{"example": e, "model": "recorded-model", "text": t, "finish_reason": f,
             "completion_tokens": 10 if t else 0, "prompt_tokens": 100} for e, t, f in rows]


@pytest.mark.docker
def test_bench_yield_end_to_end_over_replayed_samples(tmp_path, base_image) -> None:
    from patchswarm.tasks.cli.main import main

    replay = tmp_path / "replay.jsonl"
    replay.write_text("".join(json.dumps(r) + "\n" for r in _records(tmp_path)))
    result = CliRunner().invoke(main, [
        "bench", "yield", "--replay", str(replay), "--examples",
        "gradebook-average,duration-format", "-n", "4", "--run-dir", str(tmp_path / "runs"),
        "--json"])
    out = json.loads(result.stdout)
    assert result.exit_code == 1, result.output  # 75% unusable: the target is missed
    assert out["model"] == "recorded-model" and out["n"] == 4 and out["seed"] == 0
    assert out["problem_errors"] == {}
    assert (out["problems"], out["samples"], out["usable"], out["unusable"]) == (2, 8, 2, 6)
    assert out["unusable_by_reason"] == {
        "empty_completion": 1, "truncated": 1, "unparsable": 1, "no_path": 0,
        "search_not_found": 1, "ambiguous_match": 0, "new_file_refused": 0, "unchanged": 1,
        "test_only": 1}
    assert out["distinct_changes"] == 2
    assert out["solved"] == 2
    assert out["pass_at_1"] == 0.25
    assert out["coverage_at_k"] == {"1": 0.25, "2": 0.5, "3": 0.75, "4": 1.0}
    assert out["completion_tokens"] == 70
    assert out["completion_tokens_per_sample"] == 8.75
    assert out["completion_tokens_per_solved_problem"] == 35.0
    assert out["target_met"] is False and out["unusable_share"] == 0.75
    stages = out["stage_seconds"]
    assert set(stages) == {"model_start", "prepare", "sample", "parse", "verify"}
    assert stages["prepare"] > 0 and stages["verify"] > 0 and stages["parse"] > 0
    per = {r["problem"]: r for r in out["per_problem"]}
    assert per["gradebook-average"]["unusable_by_reason"] == {
        "search_not_found": 1, "unchanged": 1, "unparsable": 1}
    assert per["duration-format"]["passing"] == 1
    # The reasons are in the run folder, with each candidate.
    lines = (tmp_path / "runs" / "duration-format" / "candidates.jsonl").read_text().splitlines()
    assert sorted(str(json.loads(x)["reason"]) for x in lines) == [
        "None", "empty_completion", "test_only", "truncated"]
