"""SWE-bench: specs, dataset checks, selection without test_patch, evaluation by the official
rules, the official formats, bad input, resuming, and the Celery path.

The integration tests use three small repositories in the SWE-bench format that
``swebench_fixtures`` builds (pytest-, Django- and SymPy-style), real Docker sandboxes, and a
replayed model (the gold patch as a unified diff, a wrong patch, a completion with no edit).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from patchswarm.tasks.sources import swebench as sb
from patchswarm.tasks.sources.swebench import specs as specs

sys.path.insert(0, str(Path(__file__).parent))
import swebench_fixtures  # noqa: E402

SHARED_LITE = Path(__file__).resolve().parents[2] / "shared" / "data" / "swe-bench-lite"


def lite_rows(split: str) -> list[dict]:
    path = SHARED_LITE / f"{split}.jsonl"
    if not path.exists():
        pytest.skip(f"the SWE-bench Lite data is not at {path}; these checks read the real "
                    "data set and need it there")
    return [json.loads(line) for line in path.read_text().splitlines()]


def cli(*args: str):
    from patchswarm.tasks.cli.main import main

    return CliRunner().invoke(main, ["swebench", *args], catch_exceptions=False)


# ============================================================================ specs


def test_every_lite_instance_has_a_spec_with_swebench_python_versions():
    rows = lite_rows("test")
    table = specs.SpecTable()
    wanted = Counter(table.get(r["repo"], r["version"]).python for r in rows)
    assert wanted == {"3.6": 77, "3.8": 20, "3.9": 165, "3.10": 5, "3.11": 33}
    assert {r["repo"] for r in rows} == set(specs.LITE_REPOS)
    used = Counter(specs.choose_python(p).used for p in wanted.elements())
    assert used == {"3.9": 77 + 20 + 165 + 5, "3.11": 33}
    for row in lite_rows("dev"):
        assert table.get(row["repo"], row["version"]).test_cmd


def test_lite_rows_parse_and_directives_follow_swebench():
    rows = lite_rows("test")
    items = sb.parse_rows(rows)
    assert all(isinstance(x, sb.Instance) for x in items) and len(items) == 300
    by_id = {x.instance_id: x for x in items}
    table = specs.SpecTable()
    django = by_id["django__django-11099"]
    spec = table.get(django.repo, django.version)
    labels = specs.test_directives(django.test_patch, spec.directives)
    assert labels and all("/" not in d and not d.endswith(".py") for d in labels)
    prep, cmd = sb.eval_script(django, spec)
    assert cmd == ("echo '>>>>> Start Test Output'; "
                   "unset PIP_CERT SSL_CERT_FILE REQUESTS_CA_BUNDLE CURL_CA_BUNDLE; "
                   "export LANG=C.UTF-8; export LC_ALL=C.UTF-8; export PYTHONIOENCODING=utf8; "
                   "./tests/runtests.py --verbosity 2 --settings=test_sqlite --parallel 1 "
                   "auth_tests.test_validators; rc=$?; echo '>>>>> End Test Output'; "
                   'echo ">>>>> Test Exit Code: $rc"')
    # Django labels come from every file the test patch touches, as the harness makes them.
    many = by_id["django__django-11905"]
    assert specs.test_directives(many.test_patch, "django") == ["lookup.models", "lookup.tests"]
    assert "git apply -v /tmp/patchswarm/test.patch" in prep
    sympy = next(x for x in items if x.repo == "sympy/sympy")
    sspec = table.get(sympy.repo, sympy.version)
    assert sb.eval_script(sympy, sspec)[1].split("CURL_CA_BUNDLE; ")[1].startswith(
        "PYTHONWARNINGS='ignore::UserWarning,ignore::SyntaxWarning' bin/test -C --verbose "
        "sympy/")
    astropy = by_id["astropy__astropy-12907"]
    assert "CURL_CA_BUNDLE; pytest -rA astropy/modeling/tests/test_separable.py; rc=$?" in \
        sb.eval_script(astropy, table.get(astropy.repo, astropy.version))[1]
    assert specs.choose_python(table.get(django.repo, django.version).python).used == "3.9"


def test_directives_and_patch_files():
    patch = (
        "diff --git a/tests/admin_views/test_forms.py b/tests/admin_views/test_forms.py\n"
        "--- a/tests/admin_views/test_forms.py\n+++ b/tests/admin_views/test_forms.py\n"
        "@@ -1 +1 @@\n-a\n+b\n"
        "diff --git a/tests/migrations/test_writer/tests.py b/tests/migrations/test_writer/"
        "tests.py\nnew file mode 100644\n--- /dev/null\n+++ b/tests/migrations/test_writer/"
        "tests.py\n@@ -0,0 +1 @@\n+x\n"
        "diff --git a/tests/fixtures/data.json b/tests/fixtures/data.json\n"
        "--- a/tests/fixtures/data.json\n+++ b/tests/fixtures/data.json\n@@ -1 +1 @@\n-1\n+2\n"
        "diff --git a/docs/old.txt b/docs/old.txt\ndeleted file mode 100644\n"
        "--- a/docs/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n")
    assert specs.test_directives(patch, "django") == ["admin_views.test_forms",
                                                      "migrations.test_writer.tests"]
    assert specs.test_directives(patch, "files") == [
        "tests/admin_views/test_forms.py", "tests/migrations/test_writer/tests.py"]
    files = specs.patch_files(patch)
    assert files == {"modified": ["tests/admin_views/test_forms.py", "tests/fixtures/data.json"],
                     "new": ["tests/migrations/test_writer/tests.py"],
                     "deleted": ["docs/old.txt"]}
    assert specs.django_label("tests/utils_tests/test_text.py") == "utils_tests.test_text"


def test_python_versions_map_to_the_nearest_available_one():
    avail = ("3.9", "3.11", "3.13")
    assert specs.choose_python("3.11", avail) == specs.PythonChoice("3.11", "3.11")
    for wanted, used in (("3.5", "3.9"), ("3.6", "3.9"), ("3.8", "3.9"), ("3.10", "3.9"),
                         ("3.12", "3.11"), ("3.14", "3.13")):
        choice = specs.choose_python(wanted, avail)
        assert choice.used == used and not choice.exact
        assert f"Python {wanted} is not available here; ran on {used}" in choice.note
    exact = specs.choose_python("3.6", avail, base_image="python:{python}-slim")
    assert exact.used == "3.6" and exact.exact
    with pytest.raises(specs.SpecError, match="cannot read Python version"):
        specs.choose_python("three", avail)


def test_install_script_and_spec_files(tmp_path):
    spec = specs.RepoSpec(python="3.9", test_cmd="pytest -rA", install="pip install -e .",
                          pip_packages=("numpy==1.19.2", "pandas<2.0.0"),
                          requirements=("req/dev.txt", "requirements.txt"),
                          pre_install=("sed -i 's/a/b/' setup.cfg",))
    script = spec.install_script()
    assert script.index("sed -i") < script.index("python -m pip install numpy==1.19.2 "
                                                 "'pandas<2.0.0'") < script.index("-e .")
    assert "if [ -f req/dev.txt ]; then python -m pip install -r req/dev.txt; elif [ -f " \
           "requirements.txt ]" in script
    assert "python -m pytest" in script  # the launcher for the environment's pytest
    sympy = specs.SpecTable().get("sympy/sympy", "1.1")
    assert sympy.log_parser == "sympy" and "pytest" not in sympy.install_script()
    path = tmp_path / "specs.json"
    path.write_text(json.dumps({"me/tool": {"*": {"python": "3.11", "test_cmd": "pytest -rA"}},
                                "me/other": {"2.0": {"python": 3.9, "test_cmd": "x",
                                                     "log_parser": "django",
                                                     "directives": "django"}}}))
    table = specs.SpecTable.from_file(path)
    assert table.get("me/tool", "7.7").test_cmd == "pytest -rA"
    assert table.get("me/other", "2.0").python == "3.9"
    assert table.get("django/django", "3.0").log_parser == "django"
    with pytest.raises(specs.SpecError, match="no specification for me/other version '1.0'"):
        table.get("me/other", "1.0")
    with pytest.raises(specs.SpecError, match="no install/test specification for repository"):
        table.get("nobody/nothing", "1.0")
    path.write_text(json.dumps({"me/tool": {"1": {"python": "3.11", "test_cmd": "t",
                                                  "colour": "red"}}}))
    with pytest.raises(specs.SpecError, match="unknown spec fields"):
        specs.SpecTable.from_file(path)
    with pytest.raises(specs.SpecError, match="not found"):
        specs.SpecTable.from_file(tmp_path / "none.json")


# ============================================================================ dataset rows


def good_row(**kw) -> dict:
    row = {"repo": "me/tool", "instance_id": "me__tool-1", "base_commit": "a" * 40,
           "patch": "", "test_patch": "diff --git a/t.py b/t.py\n--- a/t.py\n+++ b/t.py\n",
           "problem_statement": "it breaks", "version": "1.0",
           "FAIL_TO_PASS": '["t.py::test_a"]', "PASS_TO_PASS": "[]",
           "environment_setup_commit": "a" * 40, "hints_text": "", "created_at": ""}
    row.update(kw)
    return row


def test_bad_rows_get_a_clear_error_each():
    rows = [good_row(), good_row(instance_id="me__tool-2", base_commit=""),
            good_row(instance_id="me__tool-3", FAIL_TO_PASS="not json"),
            good_row(instance_id="me__tool-4", version=0.2),
            good_row(instance_id="me__tool-5", repo="tool"),
            good_row(instance_id="me__tool-6", FAIL_TO_PASS="[]"),
            good_row(instance_id="me__tool-7", test_patch="just text"),
            good_row(), "not an object", good_row(instance_id="me__tool-8",
                                                   PASS_TO_PASS=["a", "b"])]
    items = sb.parse_rows(rows)
    errors = {x.instance_id: x.error for x in items if isinstance(x, sb.BadRow)}
    assert "lacks base_commit" in errors["me__tool-2"]
    assert "FAIL_TO_PASS is not a JSON-encoded list" in errors["me__tool-3"]
    assert "is a number, not a string" in errors["me__tool-4"]
    assert "is not owner/name" in errors["me__tool-5"]
    assert "FAIL_TO_PASS is empty" in errors["me__tool-6"]
    assert "test_patch is not a unified diff" in errors["me__tool-7"]
    assert "repeats" in errors["me__tool-1#8"]
    assert "not an object" in errors["row-9"]
    good = [x for x in items if isinstance(x, sb.Instance)]
    assert [x.instance_id for x in good] == ["me__tool-1", "me__tool-8"]
    assert good[1].pass_to_pass == ["a", "b"]
    assert json.loads(good[0].to_row()["FAIL_TO_PASS"]) == ["t.py::test_a"]


def test_dataset_and_predictions_files(tmp_path):
    with pytest.raises(sb.DatasetError, match="not found"):
        sb.load_dataset(str(tmp_path / "none.jsonl"))
    # A file that is not JSON lines is refused up front, naming the line.
    (tmp_path / "test.jsonl").write_text(json.dumps(good_row()) + "\n\n{broken\n")
    with pytest.raises(sb.DatasetError, match=r"test.jsonl:3 is not JSON"):
        sb.load_dataset(str(tmp_path))
    (tmp_path / "test.jsonl").write_text(json.dumps(good_row()) + "\n\n"
                                         + json.dumps(good_row(instance_id="x", repo="x")))
    rows = sb.load_dataset(str(tmp_path))  # a folder holding SPLIT.jsonl
    items = sb.parse_rows(rows)
    assert isinstance(items[0], sb.Instance) and isinstance(items[1], sb.BadRow)
    assert sb.select_instances(items, ["me__tool-1"]) == items[:1]
    assert sb.select_instances(items, [r"me__tool-\d"]) == items[:1]
    with pytest.raises(sb.DatasetError, match="no instances me__tool-9"):
        sb.select_instances(items, ["me__tool-9"])
    # Predictions: as strict as the official loader; null or "" is an empty patch.
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"instance_id": "a", "model_name_or_path": "m",
                                 "model_patch": None}) + "\n")
    assert sb.load_predictions(preds)["a"]["model_patch"] == ""
    (tmp_path / "p.json").write_text(json.dumps([{"instance_id": "b", "model_patch": "x",
                                                  "model_name_or_path": "m"}]))
    assert sb.load_predictions(tmp_path / "p.json")["b"]["model_name_or_path"] == "m"
    for text, message in (
            ('{"model_patch": "x", "model_name_or_path": "m"}', "line 2 lacks instance_id"),
            ('{"instance_id": "a", "model_name_or_path": "m"}', "line 2 lacks model_patch"),
            ('{"instance_id": "a", "model_patch": "x"}', "line 2 lacks model_name_or_path"),
            ("not json", "line 2 is not JSON"),
            ('{"instance_id": "z", "model_patch": "", "model_name_or_path": "m"}',
             "z is predicted twice")):
        first = '{"instance_id": "z", "model_patch": "", "model_name_or_path": "m"}\n'
        preds.write_text(first + text + "\n")
        with pytest.raises(sb.DatasetError, match=message):
            sb.load_predictions(preds)
    # Through the command: a clear error and a non-zero exit, before anything runs.
    preds.write_text('{"instance_id": "me__tool-1", "model_patch": "x"}\n')
    (tmp_path / "test.jsonl").write_text(json.dumps(good_row()) + "\n")
    res = cli("eval", "--dataset", str(tmp_path / "test.jsonl"), "--predictions", str(preds))
    assert res.exit_code != 0 and "line 1 lacks model_name_or_path" in res.output
    (tmp_path / "bad.jsonl").write_text("this is not json\n")
    res = cli("run", "--dataset", str(tmp_path / "bad.jsonl"), "--replay", str(preds))
    assert res.exit_code != 0 and "bad.jsonl:1 is not JSON" in res.output


def test_related_tests_are_found_by_name():
    files = ["pkg/stats.py", "pkg/tests/test_stats.py", "pkg/tests/test_other.py",
             "tests/utils_tests/test_dateformat.py", "django/utils/dateformat.py",
             "tests/forms/tests.py", "django/forms/__init__.py", "tests/conftest.py",
             "sympy/core/tests/test_basic.py"]
    assert sb.related_test_files(files, ["pkg/stats.py"]) == ["pkg/tests/test_stats.py"]
    assert sb.related_test_files(files, ["django/utils/dateformat.py"]) == [
        "tests/utils_tests/test_dateformat.py"]
    assert sb.related_test_files(files, ["django/forms/__init__.py"]) == ["tests/forms/tests.py"]
    assert sb.related_test_files(files, ["setup.py"]) == []


def test_missing_mirror_and_missing_commit(tmp_path):
    inst = sb.Instance("me__tool-1", "me/tool", "a" * 40, "issue", "1.0", "diff", ["t"], [])
    with pytest.raises(sb.InstanceError, match="no mirror of me/tool"):
        sb.ensure_repo(inst, tmp_path, clone=False)
    repo = tmp_path / "me__tool"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    with pytest.raises(sb.InstanceError, match=f"base commit {'a' * 40} is not in the mirror"):
        sb.ensure_repo(inst, tmp_path, clone=False)


# ============================================================================ end to end


@pytest.fixture(scope="module")
def fx(tmp_path_factory, base_image) -> swebench_fixtures.Fixtures:
    return swebench_fixtures.build(tmp_path_factory.mktemp("swebench"))


def common(fx, dataset: Path) -> list[str]:
    return ["--dataset", str(dataset), "--repos-dir", str(fx.repos), "--specs", str(fx.specs),
            "--no-clone", "--workers", "2"]


@pytest.mark.docker
def test_gold_check_passes_on_the_three_styles(fx, tmp_path):
    out = tmp_path / "eval"
    result = cli("eval", "--gold", *common(fx, fx.dataset(tmp_path / "ds.jsonl")),
                 "--out", str(out), "--run-id", "gold-check")
    assert result.exit_code == 0, result.output
    assert "harness check: passed" in result.output
    report = json.loads((out / "report.json").read_text())
    ids = [i["instance_id"] for i in fx.instances]
    assert report["resolved_ids"] == sorted(ids)
    assert report["gold_check"] == {i: {"gold_resolved": True, "empty_resolved": False,
                                        "warm_agrees": True, "ok": True} for i in ids}
    assert report["harness_ok"] and report["infra_failure_instances"] == 0
    for iid in ids:  # image build, first run and warm re-run timed per instance
        assert set(report["instances"][iid]["timings"]) >= {"image_build", "first_run",
                                                            "warm_rerun", "warm_test_command"}
    assert "| fixtures/calcpkg | 1 | 1 | 1 | 1 | - | - |" in result.output
    assert json.loads((out / "gold.gold-check.json").read_text())["schema_version"] == 2
    assert list(report["python_mapped"]) == ["fixtures__sympylike-20"]
    for iid in ids:
        logs = out / "logs" / iid
        for name in ("patch.diff", "eval.sh", "test_output.txt", "report.json"):
            assert (logs / name).is_file(), f"{iid}: no {name}"
        official = json.loads((logs / "report.json").read_text())[iid]
        assert official["resolved"] and official["patch_successfully_applied"]
        assert not official["tests_status"]["FAIL_TO_PASS"]["failure"]
        empty = json.loads((logs / "empty" / "report.json").read_text())[iid]
        assert not empty["resolved"] and empty["tests_status"]["FAIL_TO_PASS"]["failure"]
    # The docstring-named Django test and the SymPy tests were read from the logs.
    dj = json.loads((out / "logs" / "fixtures__djangolike-13" / "report.json").read_text())
    assert "slugify() strips leading and trailing dashes and underscores." in \
        dj["fixtures__djangolike-13"]["tests_status"]["FAIL_TO_PASS"]["success"]
    sy = json.loads((out / "logs" / "fixtures__sympylike-20" / "report.json").read_text())
    assert "test_ilcm" in sy["fixtures__sympylike-20"]["tests_status"]["PASS_TO_PASS"][
        "success"]


@pytest.mark.docker
def test_eval_of_predictions_with_bad_input(fx, tmp_path):
    calc, dj, sy = fx.items
    bad = fx.bad_rows()
    dataset = fx.dataset(tmp_path / "ds.jsonl", bad)
    preds = [{"instance_id": calc.instance["instance_id"], "model_name_or_path": "sys",
              "model_patch": calc.instance["patch"]},
             {"instance_id": dj.instance["instance_id"], "model_name_or_path": "sys",
              "model_patch": ""},
             {"instance_id": sy.instance["instance_id"], "model_name_or_path": "sys",
              "model_patch": sy.wrong}]
    preds += [{"instance_id": b["instance_id"], "model_name_or_path": "sys",
               "model_patch": calc.instance["patch"]} for b in bad]
    pfile = tmp_path / "predictions.jsonl"
    pfile.write_text("".join(json.dumps(p) + "\n" for p in preds))
    out = tmp_path / "eval"
    result = cli("eval", "--predictions", str(pfile), *common(fx, dataset), "--out", str(out),
                 "--run-id", "r1")
    assert result.exit_code == 1, result.output
    report = json.loads((out / "sys.r1.json").read_text())
    assert report["resolved_ids"] == ["fixtures__calcpkg-1"]
    assert report["unresolved_ids"] == ["fixtures__sympylike-20"]
    assert report["empty_patch_ids"] == ["fixtures__djangolike-13"]
    errors = report["errors"]
    assert set(errors) == {b["instance_id"] for b in bad}
    assert "lacks base_commit" in errors["fixtures__calcpkg-missing-field"]
    assert "is not in the mirror" in errors["fixtures__calcpkg-absent-commit"]
    # The failed build names its step and cause; it is an infrastructure failure, and the
    # timed-out one ambiguous, never unresolved.
    broken = errors["fixtures__calcpkg-broken-env"]
    assert broken.startswith("the environment failed to build at step '"), broken
    assert ("at step 'install the repository': cannot install (exit code 7)" in broken
            or "TLS certificate verification failed" in broken), broken
    assert report["infra_failure_ids"] == ["fixtures__calcpkg-broken-env"]
    assert report["failure_reasons"]["fixtures__calcpkg-broken-env"].startswith("build: ")
    assert "ran past 4s (timed out)" in errors["fixtures__calcpkg-slow"]
    assert report["ambiguous_failure_ids"] == ["fixtures__calcpkg-slow"]
    assert report["completed_instances"] == 2 and report["total_instances"] == 7
    # Running it again reuses what was evaluated.
    t0 = time.monotonic()
    again = cli("eval", "--predictions", str(pfile), *common(fx, dataset), "--out", str(out),
                "--run-id", "r1", "-i", "fixtures__calcpkg-1,fixtures__sympylike-20")
    assert again.exit_code == 0, again.output
    assert time.monotonic() - t0 < 10
    assert json.loads((out / "report.json").read_text())["resolved_ids"] == [
        "fixtures__calcpkg-1"]


def explain(out: Path, ids: list[str]) -> str:
    """What each instance's run recorded: the selection, the pick and its evaluation."""
    lines = []
    for i in ids:
        r = json.loads((out / "instances" / i / "result.json").read_text())
        lines.append(json.dumps({k: r.get(k) for k in (
            "instance_id", "status", "error", "resolved", "eval_status", "eval_error",
            "selection", "chosen_key", "notes")}))
        verdicts = out / "instances" / i / "verdicts.jsonl"
        if verdicts.exists():
            lines.append(verdicts.read_text()[-3000:])
    return "\n".join(lines)


def run_args(fx, tmp_path: Path, out: Path, *extra: str) -> list[str]:
    calc = fx.items[0].instance
    slow = fx.bad_rows()[3]  # its test_patch adds a test that hangs
    bad = [{**calc, "instance_id": "fixtures__calcpkg-no-commit",
            "base_commit": "f" * 40}, {"instance_id": "fixtures__broken-row", "repo": "x/y"},
           slow]
    dataset = fx.dataset(tmp_path / "ds.jsonl", bad)
    replay = fx.replay(tmp_path / "replay.jsonl", aliases={slow["instance_id"]: 0})
    return ["run", *common(fx, dataset), "--out", str(out), "--replay", str(replay),
            "-n", "4", "--repro", "1", "--format", "udiff", "--run-id", "t1", *extra]


@pytest.mark.docker
def test_run_selects_without_test_patch_and_evaluates_with_it(fx, tmp_path):
    out = tmp_path / "run"
    result = cli(*run_args(fx, tmp_path, out, "--eval-all"))
    assert result.exit_code == 1, result.output  # the three bad instances
    report = json.loads((out / "report.json").read_text())
    good = [i["instance_id"] for i in fx.instances]
    assert report["resolved_ids"] == good, explain(out, good)
    assert set(report["errors"]) == {"fixtures__calcpkg-no-commit", "fixtures__broken-row",
                                     "fixtures__calcpkg-slow"}
    assert "is not in the mirror" in report["errors"]["fixtures__calcpkg-no-commit"]
    assert "lacks base_commit" in report["errors"]["fixtures__broken-row"]
    assert report["errors"]["fixtures__calcpkg-slow"] == \
        "evaluation failed: the tests ran past 4s (timed out)"
    assert report["resolved_rate"] == round(3 / 6, 4)
    # Every good instance: 4 samples (gold once, wrong twice, one without an edit). The slow
    # one evaluated both of its distinct candidates to a timeout: no sample counts.
    assert report["coverage"] == round(3 / 6, 4)
    assert report["selected_accuracy"] == round(3 / 6, 4)
    assert report["pass_at_k"] == {"1": round(3 / 6 * 0.25, 4), "2": round(3 / 6 * 0.5, 4),
                                   "4": round(3 / 6, 4)}
    assert report["cost"]["completion_tokens"] == 4 * (4 * 20 + 15)
    assert report["cost"]["sandbox_seconds"] > 0
    assert (out / "coverage.png").stat().st_size > 1000
    assert (out / "report.md").read_text().count("| resolved |") == 3

    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["instance_id"] for p in preds] == [*good, "fixtures__calcpkg-slow"]
    assert all(set(p) == {"instance_id", "model_name_or_path", "model_patch"} for p in preds)
    assert all(p["model_name_or_path"] == "replay" for p in preds)

    for f in fx.items:
        iid = f.instance["instance_id"]
        r = report["instances"][iid]
        folder = out / "instances" / iid
        assert r["samples"] == 4 and r["parsed"] == 3 and r["distinct"] == 2
        assert r["selection"]["signal"] == "tests" and r["selection"]["repro_valid"] == 1
        assert r["selection"]["passed_groups"] == 1 and r["counts"]["c_selection"] == 1
        verdicts = [json.loads(x) for x in (folder / "verdicts.jsonl").read_text().splitlines()]
        assert sorted(v["status"] for v in verdicts) == ["failed", "passed"]
        # The pick passed selection although the wrong patch had more votes.
        cands = [json.loads(x) for x in (folder / "candidates.jsonl").read_text().splitlines()]
        votes = Counter(c["key"] for c in cands if c["key"])
        passed = next(v["key"] for v in verdicts if v["status"] == "passed")
        assert r["chosen_key"] == passed and votes[passed] == 1 and max(votes.values()) == 2
        # Selection never saw the hidden tests: no test_patch name in what it ran.
        hidden = json.loads(f.instance["FAIL_TO_PASS"])
        sel_text = json.dumps(verdicts) + (folder / "baseline.json").read_text()
        for name in hidden:
            assert name.split("::")[-1].split(" ")[0] not in sel_text, name
        assert len(list((folder / "eval").iterdir())) == 2  # --eval-all
    # The SymPy-style spec asks for Python 3.12, which no base image here has.
    assert report["python_mapped"] == {"fixtures__sympylike-20": (
        "Python 3.12 is not available here; ran on 3.11 (nearest of 3.9, 3.11, 3.13)")}
    assert report["instances"]["fixtures__sympylike-20"]["python"] == {
        "wanted": "3.12", "used": "3.11", "exact": False,
        "note": "Python 3.12 is not available here; ran on 3.11 (nearest of 3.9, 3.11, 3.13)"}
    assert "3.12→3.11" in (out / "report.md").read_text()

    # Running the same command again continues: nothing is sampled or run twice.
    lines = {p: p.read_text() for p in out.glob("instances/*/candidates.jsonl")}
    t0 = time.monotonic()
    again = cli(*run_args(fx, tmp_path, out, "--eval-all"))
    assert again.exit_code == 1
    assert time.monotonic() - t0 < 15
    assert {p: p.read_text() for p in out.glob("instances/*/candidates.jsonl")} == lines
    assert json.loads((out / "report.json").read_text())["resolved_ids"] == good


@pytest.mark.docker
@pytest.mark.redis
def test_run_verifies_on_celery_workers(fx, tmp_path):
    from patchswarm.tasks.bench.pipeline import wait_for_workers
    from patchswarm.tasks.distributed.celery_app import make_app
    from patchswarm.tasks.distributed.workers import spawn_worker

    exe = shutil.which("redis-server")
    assert exe, "redis-server is not installed: run `bash docker/setup.sh --test`"
    port = 6393
    redis_proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save",
                                   "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    worker = None
    try:
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=port, socket_connect_timeout=0.5).ping()
                break
            except redis.RedisError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        name = "swebench-verify@test"
        worker = spawn_worker(url, ["verify"], 1, name, tmp_path / "worker.log")
        wait_for_workers(make_app(url), [name], timeout=60)
        out = tmp_path / "run"
        dataset = fx.dataset(tmp_path / "ds.jsonl")
        result = cli("run", *common(fx, dataset), "--out", str(out), "--broker", url,
                     "--replay", str(fx.replay(tmp_path / "replay.jsonl")), "-n", "4",
                     "--repro", "1", "--format", "udiff", "-i", "fixtures__sympylike-20")
        assert result.exit_code == 0, result.output
        report = json.loads((out / "report.json").read_text())
        assert report["resolved_ids"] == ["fixtures__sympylike-20"]
        events = [json.loads(x) for x in
                  (out / "instances" / "fixtures__sympylike-20" / "events.jsonl")
                  .read_text().splitlines()]
        assert any(e["stage"] == "verification" and e.get("distributed") for e in events)
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)
        redis_proc.terminate()
        redis_proc.wait(10)


def _layouts(fx, root: Path) -> dict[str, Path]:
    """The calcpkg repository as a bare mirror, a non-bare clone and a ``git clone --mirror``,
    each in a folder of mirrors of its own; owned by another user when the tests run as root
    (git then refuses them as of "dubious ownership" unless told to trust them)."""
    import os

    src = fx.items[0].repo
    made = {}
    for name, args in (("bare", ["--bare"]), ("clone", []), ("mirror", ["--mirror"])):
        folder = root / name
        dest = folder / ("fixtures__calcpkg" + (".git" if args else ""))
        subprocess.run(["git", "clone", "-q", *args, str(src), str(dest)], check=True)
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "4242:4242", str(folder)], check=True)
        made[name] = folder
    return made


def test_every_mirror_layout_works_with_every_step(fx, tmp_path):
    from patchswarm.sandbox.images import repo_archive, tree_id

    inst = sb.Instance.from_row(fx.items[0].instance)
    settings = sb.SWEBenchSettings(max_files=2)
    for name, folder in _layouts(fx, tmp_path).items():
        path = sb.ensure_repo(inst, folder, clone=False)
        files, all_files = sb.context_files(path, inst.base_commit, inst.problem_statement,
                                            settings)
        assert files and "tests/test_stats.py" in all_files, name
        assert tree_id(path, inst.base_commit) and repo_archive(path, inst.base_commit), name


@pytest.mark.docker
def test_run_and_eval_on_a_bare_mirror_owned_by_another_user(fx, tmp_path):
    folders = _layouts(fx, tmp_path / "mirrors")
    calc = fx.items[0].instance
    dataset = fx.dataset(tmp_path / "ds.jsonl")
    replay = fx.replay(tmp_path / "replay.jsonl")
    for name in ("bare", "mirror"):
        args = ["--dataset", str(dataset), "--repos-dir", str(folders[name]), "--specs",
                str(fx.specs), "--no-clone", "-i", calc["instance_id"]]
        res = cli("run", *args, "--out", str(tmp_path / f"run-{name}"), "--replay",
                  str(replay), "-n", "4", "--repro", "1", "--format", "udiff")
        assert res.exit_code == 0, res.output
        report = json.loads((tmp_path / f"run-{name}" / "report.json").read_text())
        assert report["resolved_ids"] == [calc["instance_id"]], report["errors"]
        res = cli("eval", "--gold", *args, "--out", str(tmp_path / f"eval-{name}"))
        assert res.exit_code == 0 and "harness check: passed" in res.output, res.output
