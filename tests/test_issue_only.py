"""Issue-only repair: the issue comes with no failing test, the model writes reproduction
tests, the baseline keeps those that fail for the issue's reason, and fixes are ranked by
regressions, then reproductions passed, then votes. Real Docker, real git; the model side is
replayed so the outcome is known (the real engine runs it in test_vllm_loop.py)."""

from __future__ import annotations

import json
import subprocess

import pytest

from patchswarm.agent.repro import classify_failure, parse_repro_test, repo_modules
from patchswarm.agent.sampler import ReplaySampler
from patchswarm.tasks.engine.problem import local_problem
from patchswarm.tasks.engine.runner import RepairSettings, repair
from patchswarm.tasks.sources import examples
from patchswarm.verifiers.grading import grade_repro

EXAMPLE = "gradebook-average"


def block(text: str) -> str:
    return f"```python\n{text}```\n"


GOOD = block("from gradebook import average\n\n\ndef test_fraction():\n"
             "    assert average([90, 85]) == 87.5\n")
GOOD_2 = block("import gradebook\n\n\ndef test_three_scores():\n"
               "    assert round(gradebook.average([88, 91, 93]), 1) == 90.7\n")
PASSES = block("from gradebook import average\n\n\ndef test_whole():\n"
               "    assert average([90, 80]) == 85\n")
TYPO = block("from gradebook import average\n\n\ndef test_typo():\n"
             "    assert averag([90, 85]) == 87.5\n")
NO_REPO = block("import json\n\n\ndef test_nothing():\n    assert json.loads('1') == 2\n")
HANGS = block("import time\nfrom gradebook import average\n\n\ndef test_hang():\n"
              "    while True:\n        time.sleep(1)\n")
WRONG_EXPECTATION = block("from gradebook import average\n\n\ndef test_rounds_up():\n"
                          "    assert average([90, 85]) == 88\n")


def whole_file(text: str) -> str:
    return f"gradebook.py\n```python\n{text}```\n"


def sources(tmp_path) -> tuple[str, str]:
    repo = examples.materialise(EXAMPLE, tmp_path / "gold")
    before = (repo / "gradebook.py").read_text()
    fix = examples.load_example(EXAMPLE)["root"] / "fix.patch"
    subprocess.run(["git", "-C", str(repo), "apply", str(fix)], check=True)
    return before, (repo / "gradebook.py").read_text()


def problem_for(repo):
    meta = examples.load_example(EXAMPLE)
    return local_problem(repo, meta["issue"], meta["test_command"], problem_id=EXAMPLE,
                         files=meta["files"])


def test_parse_refuses_what_cannot_be_a_reproduction():
    mods = repo_modules(["gradebook.py", "tests/test_gradebook.py"])
    assert mods == {"gradebook"}
    assert parse_repro_test(GOOD, mods)[1] == ["test_fraction"]
    assert parse_repro_test(NO_REPO, mods)[2] == "imports nothing the repository has"
    assert parse_repro_test("no code here", mods)[2] == "no code block found"
    assert parse_repro_test(block("def test_x(:\n"), mods)[2].startswith("does not parse")
    assert parse_repro_test(block("import gradebook\nx = 1\n"), mods)[2] == "no test function"


def test_a_failure_reproduces_only_for_the_issues_reason():
    issue = "average([90, 85]) raises ValueError: bad"
    assert classify_failure("FAILED", "AssertionError", "") == "reproduces"
    assert classify_failure("FAILED", "ValueError", issue) == "reproduces"
    assert classify_failure("FAILED", "TypeError", issue).startswith("fails with TypeError")
    assert classify_failure("FAILED", "NameError", issue).startswith("broken test")
    assert classify_failure("FAILED", "ModuleNotFoundError", issue).startswith("broken test")
    assert classify_failure("PASSED", None, issue).startswith("passes on the unpatched")
    assert classify_failure("ERROR", None, issue).startswith("errors before")


def test_a_made_up_expected_exception_is_not_a_reproduction():
    from patchswarm.agent.repro import ReproTest, judge_baseline

    src = ("import pytest\nfrom durations import format_duration\n\n\n"
           "def test_raises():\n    with pytest.raises(ValueError):\n"
           "        format_duration(65)\n")
    t = ReproTest(0, "", src, ["test_raises"])
    judge_baseline(t, "tests/t.py", {"tests/t.py::test_raises": "FAILED"},
                   {"tests/t.py::test_raises": "Failed"}, "format_duration(65) gives '1: 5'")
    assert t.kept == [] and t.reason == "expects ValueError, which the issue does not name"
    t = ReproTest(0, "", src, ["test_raises"])
    judge_baseline(t, "tests/t.py", {"tests/t.py::test_raises": "FAILED"},
                   {"tests/t.py::test_raises": "Failed"}, "it should raise ValueError")
    assert t.kept == ["tests/t.py::test_raises"]


def test_a_test_with_numbers_the_issue_never_states_is_not_a_reproduction():
    from patchswarm.agent.repro import ReproTest, judge_baseline, unstated_numbers

    issue = examples.load_example(EXAMPLE)["issue"]  # 90 and 85 give 87, expected 87.5
    src = ("from gradebook import average\n\n\ndef test_made_up():\n"
           "    assert average([88, 89, 90]) == 89.3\n\n\n"
           "def test_from_the_issue():\n    assert average([90, 85]) == 87.5\n"
           "    assert len([1, 2, 3]) == 3\n")
    assert sorted(unstated_numbers(src, "test_made_up", issue)) == ["89", "89.3"]
    assert unstated_numbers(src, "test_from_the_issue", issue) == []
    assert unstated_numbers(src, "test_made_up", "no numbers in this issue") == []
    t = ReproTest(0, "", src, ["test_made_up", "test_from_the_issue"])
    failed = {"tests/t.py::test_made_up": "FAILED", "tests/t.py::test_from_the_issue": "FAILED"}
    judge_baseline(t, "tests/t.py", failed, dict.fromkeys(failed, "AssertionError"), issue)
    assert t.kept == ["tests/t.py::test_from_the_issue"]


def test_only_the_kept_reproduction_tests_enter_the_repository(tmp_path):
    """A test that passed on the unpatched code (here it asserts the bug) stays out of what a
    commit or pull request adds; helpers and imports stay in."""
    from patchswarm.agent.repro import ReproTest
    from patchswarm.tasks.engine.reproduction import ReproOutcome, passed_repro_files
    from patchswarm.tasks.engine.store import RunStore

    src = ("from gradebook import average\n\n\ndef scores():\n    return [90, 85]\n\n\n"
           "def test_asserts_the_bug():\n    assert average(scores()) == 87\n\n\n"
           "def test_fraction():\n    assert average(scores()) == 87.5\n")
    t = ReproTest(0, "", src, ["test_asserts_the_bug", "test_fraction"])
    t.kept = ["tests/test_patchswarm_repro_0.py::test_fraction"]
    RunStore(tmp_path).write_json("repro.json", ReproOutcome([t]).to_dict())
    verdict = {"extra": {"grading": {"reproductions_passed": ["0"]}}}
    (text,) = passed_repro_files(str(tmp_path), verdict).values()
    assert "def test_fraction" in text and "def scores" in text
    assert "test_asserts_the_bug" not in text and "== 87\n" not in text
    assert passed_repro_files(str(tmp_path), {"extra": {"grading": {}}}) == {}


def test_grade_repro_puts_regressions_first_and_counts_agreeing_tests():
    groups = {"0": ["a"], "1": ["b"], "2": ["c"]}
    ok = grade_repro({"a": "PASSED", "b": "PASSED", "c": "FAILED", "p": "PASSED"}, groups,
                     ["p"])
    assert ok["resolved"] and ok["repro_passed"] == 2 and ok["regressions"] == 0
    broke = grade_repro({"a": "PASSED", "b": "PASSED", "c": "PASSED", "p": "FAILED"}, groups,
                        ["p"])
    assert not broke["resolved"] and broke["regressions"] == 1
    none = grade_repro({"p": "PASSED"}, {}, ["p"])
    assert not none["resolved"] and none["status"] == "NO_REPRODUCTION_TEST"


@pytest.mark.docker
def test_issue_only_repair_keeps_reproductions_and_ranks_fixes(tmp_path, base_image):
    before, after = sources(tmp_path)
    repo = examples.materialise(EXAMPLE, tmp_path / "repo", withhold=True)
    # The rounding "fix" passes the wrong-expectation test only; the gold fix passes both
    # good reproductions; a third change breaks an existing test.
    rounds_up = before.replace("return sum(scores) // len(scores)",
                               "return float(round(sum(scores) / len(scores)))")
    breaks = after.replace("if not scores:\n        return 0.0",
                           "if not scores:\n        return -1.0")
    assert breaks != after
    repro = [GOOD, PASSES, TYPO, NO_REPO, GOOD_2, HANGS, WRONG_EXPECTATION]
    fixes = [whole_file(rounds_up), whole_file(rounds_up), whole_file(after),
             whole_file(breaks), whole_file(breaks), whole_file(breaks)]
    sampler = ReplaySampler([{"text": t, "completion_tokens": 7} for t in repro + fixes])
    settings = RepairSettings(n=len(fixes), repro=len(repro), repro_timeout=5)
    run_dir = tmp_path / "run"
    result = repair(problem_for(repo), lambda: sampler, settings, run_dir)

    saved = json.loads((run_dir / "repro.json").read_text())
    why = {t["index"]: t["reason"] for t in saved["tests"]}
    print(json.dumps(why, indent=1))
    assert why[0] is None and why[4] is None and why[6] is None  # kept
    assert why[1].startswith("passes on the unpatched code")
    assert why[2].startswith("broken test: NameError")
    assert why[3] == "imports nothing the repository has"
    assert why[5].startswith("hangs")
    assert result.repro["kept"] == 3 and result.repro["sampled"] == 7
    assert result.repro["completion_tokens"] == 7 * 7
    assert result.budget["fix_samples"] == 6 and result.budget["repro_samples"] == 7
    assert result.budget["verifications"] == result.distinct + 6  # + the parsed repro runs

    assert result.verification == "reproduction tests"
    assert result.solved and "/ len(scores)" in result.best_patch
    assert "round(" not in result.best_patch  # 2 reproductions beat 1, despite fewer votes
    verdicts = {json.loads(line)["key"]: json.loads(line)
                for line in (run_dir / "verdicts.jsonl").read_text().splitlines()}
    details = sorted(v["detail"] for v in verdicts.values())
    print(details)
    assert any(d.startswith("passes 2 of 3 reproduction tests; keeps the 5 existing") for d in
               details)
    assert any("breaks 1 of 5 existing tests" in d for d in details)
    report = (run_dir / "report.md").read_text()
    assert "reproduction tests" in report
    # The user's repository never saw a reproduction test.
    assert not list(repo.rglob("test_patchswarm_repro_*"))


@pytest.mark.docker
def test_no_surviving_reproduction_is_never_called_verified(tmp_path, base_image):
    before, after = sources(tmp_path)
    repo = examples.materialise(EXAMPLE, tmp_path / "repo", withhold=True)
    breaks = after.replace("if not scores:\n        return 0.0",
                           "if not scores:\n        return -1.0")
    repro = [PASSES, TYPO]
    fixes = [whole_file(breaks), whole_file(breaks), whole_file(after)]
    sampler = ReplaySampler([{"text": t} for t in repro + fixes])
    result = repair(problem_for(repo), lambda: sampler,
                    RepairSettings(n=3, repro=2, repro_timeout=5), tmp_path / "run")
    assert result.repro["kept"] == 0
    assert not result.solved and result.best_patch is None and result.verified == 0
    assert result.verification == "unverified"
    # The pick breaks no existing test, although the regressing change has more votes.
    assert result.pick_patch and "/ len(scores)" in result.pick_patch
    assert (tmp_path / "run" / "unverified.patch").read_text() == result.pick_patch
    assert not (tmp_path / "run" / "best.patch").exists()


def test_a_worker_checks_the_reproduction_part_of_a_task():
    from patchswarm.tasks.distributed.task_schema import SchemaError, WorkerConfig, validate_verify

    config = WorkerConfig.from_env("redis://127.0.0.1:6379/0", env={})
    task = {"image": "patchswarm/env:x", "patch": "", "key": "k",
            "verifier": {"name": "pytest"},
            "spec": {"test_command": "python -m pytest -q tests", "pass_to_pass": ["a"],
                     "repro": {"command": "python -m pytest -q tests/test_r.py",
                               "files": {"tests/test_r.py": "def test_x(): pass\n"},
                               "groups": {"0": ["tests/test_r.py::test_x"]}}}}
    assert validate_verify(task, config).spec["repro"]["groups"] == {
        "0": ["tests/test_r.py::test_x"]}
    for bad in ({"files": {"../escape.py": "x"}, "groups": {}},
                {"files": {"/abs.py": "x"}, "groups": {}},
                {"groups": {"0": "not a list"}},
                {"groups": {}, "extra": 1}):
        with pytest.raises(SchemaError):
            validate_verify({**task, "spec": {**task["spec"], "repro": bad}}, config)
    with pytest.raises(SchemaError, match="over"):
        validate_verify({**task, "spec": {**task["spec"], "files": {
            "tests/big.py": "x" * (5 << 20)}}}, config)


@pytest.mark.docker
def test_bench_issue_only_grades_both_modes_with_the_withheld_tests(tmp_path, base_image):
    """The bench on one example with recorded completions: both modes share the fix samples,
    the withheld tests grade them, and the ranking is recomputed for each smaller M."""
    from click.testing import CliRunner

    from patchswarm.tasks.cli.main import main

    before, after = sources(tmp_path)
    rounds_up = before.replace("return sum(scores) // len(scores)",
                               "return float(round(sum(scores) / len(scores)))")
    records = [whole_file(rounds_up), whole_file(after), whole_file(rounds_up),  # fixes, n=3
               WRONG_EXPECTATION, GOOD, TYPO]                                  # repro, M=3
    replay = tmp_path / "replay.jsonl"
    replay.write_text("".join(json.dumps({"example": EXAMPLE, "model": "replay", "text": t,
                                          "completion_tokens": 5}) + "\n" for t in records))
    res = CliRunner().invoke(main, ["bench", "issue-only", "--examples", EXAMPLE, "-n", "3",
                                    "--repro", "3", "--replay", str(replay), "--json",
                                    "--run-dir", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{"):])
    print(json.dumps({k: v for k, v in out.items() if k != "per_problem"}, indent=1))
    assert out["given_tests"]["coverage"] == 1.0 and out["given_tests"]["selected_accuracy"] == 1.0
    io = out["issue_only"]
    assert io["coverage"] == 1.0
    # Kept: the wrong-expectation test (the rounding change passes it, with 2 votes) and the
    # good one (the gold fix passes it): 1 against 1, and votes pick the wrong change.
    assert out["reproduction_tests"] == {**out["reproduction_tests"], "sampled": 3, "kept": 2,
                                         "quality_kept": 0.5}
    assert io["selected_accuracy"] == 0.0
    by_m = out["by_repro_budget"]
    assert by_m["0"]["verified_share"] == 0.0 and by_m["1"]["selected_accuracy"] == 0.0
    assert by_m["2"]["kept"] == 2 and by_m["3"]["kept"] == 2
    assert out["samples"]["reproduction"] == 3


@pytest.mark.docker
def test_a_reproduction_test_cannot_reach_the_projects_own_tests(tmp_path, base_image):
    """A model-written test (say, steered by an injected issue text) that plants a conftest
    forcing every report to pass runs after the project's tests, in their own session: a
    change that breaks an existing test still shows the regression, and is not verified."""
    before, after = sources(tmp_path)
    repo = examples.materialise(EXAMPLE, tmp_path / "repo", withhold=True)
    planted = block(
        "import pathlib\nfrom gradebook import average\n\n"
        "pathlib.Path('tests/conftest.py').write_text(\n"
        "    'import pytest\\n'\n"
        "    '@pytest.hookimpl(hookwrapper=True)\\n'\n"
        "    'def pytest_runtest_makereport(item, call):\\n'\n"
        "    '    out = yield\\n'\n"
        "    '    out.get_result().outcome = \"passed\"\\n')\n\n\n"
        "def test_fraction():\n    assert average([90, 85]) == 87.5\n")
    breaks = after.replace("if not scores:\n        return 0.0",
                           "if not scores:\n        return -1.0")
    sampler = ReplaySampler([{"text": t} for t in [planted, whole_file(breaks)]])
    run_dir = tmp_path / "run"
    result = repair(problem_for(repo), lambda: sampler,
                    RepairSettings(n=1, repro=1, repro_timeout=10), run_dir)
    assert result.repro["kept"] == 1
    (verdict,) = [json.loads(line) for line in (run_dir / "verdicts.jsonl").read_text()
                  .splitlines()]
    print(verdict["detail"])
    assert verdict["status"] == "failed"
    assert "breaks 1 of 5 existing tests" in verdict["detail"]
    assert not result.solved and result.pick_patch is None
