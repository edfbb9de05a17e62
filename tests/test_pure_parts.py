"""Unit tests of the pure parts the runner is made of: ranking, context, prompts, store."""

from __future__ import annotations

import json

from patchswarm.agent.context import select_files, tokens
from patchswarm.agent.prompts import choose_format, repair_messages
from patchswarm.agent.ranking import Group, expected_score, rank, tied_best
from patchswarm.tasks.engine.cache import SqliteVerdictCache, cache_key
from patchswarm.tasks.engine.store import RunStore

DIFF_1 = "--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n"
DIFF_3 = "--- a/x.py\n+++ b/x.py\n@@ -1,2 +1,2 @@\n-a\n-c\n+b\n+d\n"


def test_rank_puts_verified_first_then_votes_then_smaller_diff():
    unverified_popular = Group("u", DIFF_1, ["1", "2", "3"], status="failed")
    verified_big = Group("v3", DIFF_3, ["4", "5"], status="passed")
    verified_small = Group("v1", DIFF_1, ["6", "7"], status="passed")
    verified_lonely = Group("v0", DIFF_1, ["8"], status="passed")
    ranked = rank([unverified_popular, verified_lonely, verified_big, verified_small])
    assert [g.key for g in ranked] == ["v1", "v3", "v0", "u"]


def test_judge_score_breaks_ties_before_diff_size():
    a = Group("a", DIFF_1, ["1"], status="passed", judge=0.2)
    b = Group("b", DIFF_3, ["2"], status="passed", judge=0.9)
    assert rank([a, b])[0].key == "b"


def test_expected_score_under_random_tie_breaking():
    a = Group("a", DIFF_1, ["1"], status="passed")
    b = Group("b", DIFF_1, ["2"], status="passed")
    c = Group("c", DIFF_1, ["3"], status="failed")
    assert {g.key for g in tied_best([a, b, c])} == {"a", "b"}
    assert expected_score([a, b, c], correct={"a"}) == 0.5
    assert expected_score([a, b, c], correct={"a", "b"}) == 1.0
    assert expected_score([], correct=set()) == 0.0


def test_context_prefers_the_module_the_failing_tests_import():
    files = {
        "inventory.py": "def needs_reorder(item, level):\n    return item.count < level\n",
        "report.py": "def render(rows):\n    return '\\n'.join(rows)\n",
        "tests/test_inventory.py": "from inventory import needs_reorder\n",
        "README.md": "docs",
    }
    chosen = select_files("Items at their reorder level are not flagged", files,
                          tests_text=files["tests/test_inventory.py"])
    assert chosen[0] == "inventory.py"
    assert "tests/test_inventory.py" not in chosen and "README.md" not in chosen


def test_context_respects_the_budget():
    files = {f"m{i}.py": "x = 1\n" * 400 for i in range(6)}
    chosen = select_files("anything", files, budget_chars=5000)
    assert len(chosen) == 2


def test_tokens_split_identifiers():
    assert {"needs_reorder", "needs", "reorder", "movingaverage", "moving", "average"} <= set(
        tokens("needs_reorder movingAverage"))


def test_prompt_holds_issue_files_and_format():
    msgs = repair_messages("it breaks", {"a.py": "print(1)\n"}, "search_replace",
                           feedback="FAILED test_x")
    user = msgs[-1]["content"]
    assert "it breaks" in user and "a.py" in user and "SEARCH" in user
    assert "FAILED test_x" in user
    assert choose_format({"a.py": "x\n" * 10}) == "whole_file"
    assert choose_format({"a.py": "x\n" * 1000}) == "search_replace"
    assert choose_format({"a.py": "x\n"}, "udiff") == "udiff"


def test_store_survives_a_torn_line_and_dedups(tmp_path):
    store = RunStore(tmp_path)
    store.add_candidate({"id": "p/0-0", "text": "a"})
    store.add_candidate({"id": "p/0-0", "text": "a again"})
    with open(tmp_path / "candidates.jsonl", "a") as fh:
        fh.write('{"id": "p/0-1", "te')  # a crash mid-write
    assert [c["text"] for c in RunStore(tmp_path).candidates()] == ["a"]
    store.add_verdict("k", {"status": "passed"})
    store.add_verdict("k", {"status": "failed"})
    assert store.verdicts()["k"]["status"] == "passed"
    store.write_json("run.json", {"x": 1})
    assert json.loads((tmp_path / "run.json").read_text()) == {"x": 1}


def test_sqlite_cache_keeps_only_final_verdicts(tmp_path):
    cache = SqliteVerdictCache(tmp_path / "c.db")
    k1 = cache_key("img", "key1", {"name": "pytest"}, {"test_command": "pytest"})
    k2 = cache_key("img", "key1", {"name": "pytest", "reruns": 5}, {"test_command": "pytest"})
    assert k1 != k2
    cache.put(k1, {"status": "passed"})
    cache.put(k2, {"status": "timeout"})
    again = SqliteVerdictCache(tmp_path / "c.db")
    assert again.get(k1) == {"status": "passed"}
    assert again.get(k2) is None


def test_the_cli_offers_exactly_the_engines_strategies():
    import click

    from patchswarm.agent.search import STRATEGIES
    from patchswarm.tasks.cli.main import repair

    (opt,) = [p for p in repair.params if p.name == "strategy"]
    assert isinstance(opt.type, click.Choice)
    assert list(opt.type.choices) == list(STRATEGIES)
