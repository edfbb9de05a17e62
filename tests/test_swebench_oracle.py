"""Grading checked against the official harness: the ``swebench`` package from PyPI is the
oracle.

It pins packages of its own (``datasets``, ``modal``, ``pandas``…), so it lives in its own
virtual environment, made once by the ``oracle`` fixture (under ``PATCHSWARM_HOME``), and is
called through ``swebench_oracle_driver.py`` with JSON in and out.

The corpus: every log of ``test_logparse.py``, excerpts of real logs from gold and empty-patch
runs on SWE-bench Lite instances (``data/swebench-logs/``: the lines the parsers read, with the
harness's markers), and edge cases the official code handles in its own way. Every official
parser runs on every log; every graded case compares the status map, both test lists and the
verdict. Where the official code is deliberately not followed, the case is written down in
``DIFFERENCES`` (none at present).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from patchswarm.verifiers import swebench_logs as sl

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
ORACLE_VERSION = "5.0.2"
CORPUS = HERE / "data" / "swebench-logs"

DIFFERENCES: dict[str, str] = {}
"""case id → why ours differs from the official harness on purpose."""


def _home() -> Path:
    return Path(os.environ.get("PATCHSWARM_HOME", Path.home() / ".cache" / "patchswarm"))


@pytest.fixture(scope="session")
def oracle() -> Path:
    """The Python of a virtual environment holding ``swebench`` (made on first use)."""
    venv = _home() / "oracle" / f"swebench-{ORACLE_VERSION}"
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import swebench.harness.grading"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q",
                           f"swebench=={ORACLE_VERSION}"], capture_output=True, text=True)
    assert proc.returncode == 0, ("the official swebench package could not be installed from "
                                  f"the package index: {proc.stderr[-800:]}")
    return python


def ask_oracle(python: Path, logs: list[dict], grades: list[dict]) -> dict:
    proc = subprocess.run([str(python), str(HERE / "swebench_oracle_driver.py")],
                          input=json.dumps({"logs": logs, "grades": grades}),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def wrap(body: str, exit_code: int | None = 0) -> str:
    """A log as the harness's eval script writes it."""
    tail = f"\n{sl.TEST_EXIT_CODE}: {exit_code}\n" if exit_code is not None else "\n"
    return f"+ git apply -v -\n{sl.START_TEST_OUTPUT}\n{body}\n{sl.END_TEST_OUTPUT}{tail}"


def fixture_logs() -> dict[str, str]:
    import test_logparse

    return {f"test_logparse.{k}": v for k, v in vars(test_logparse).items()
            if k.endswith("_LOG") and isinstance(v, str)}


def real_cases() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(CORPUS.glob("*.json"))]


EDGE_LOGS = {
    # pytest-5227: a wrapped progress bar leaves "PASSED [100%]" lines; the official key is
    # "[100%]", which PASS_TO_PASS lists hold.
    "wrapped-progress": "testing/test_a.py::test_x PASSED\nPASSED [100%]\n"
                        "PASSED testing/test_a.py::test_x\nSKIPPED [2] testing/a.py:3: why\n",
    # requests/pylint/pydicom: a parameter that starts with "/" is cut to its last part.
    "slash-parameter": "PASSED tests/test_x.py::test_p[/usr/lib/x.py]\n"
                       "PASSED tests/test_x.py::test_p[//net/share]\n"
                       "FAILED tests/test_x.py::test_q[/a/*/b] - AssertionError: no\n",
    "v2-colours": "\x1b[32mPASSED\x1b[0m tests/test_a.py::test_p[a b]\n"
                  "FAILED tests/test_a.py::test_f - assert 1 - 2\n"
                  "tests/test_a.py::test_old PASSED\n",
    "seaborn": "tests/test_core.py::test_a PASSED [ 10%]\nFAILED tests/test_core.py::test_b\n"
               "PASSED tests/test_core.py::test_c\n",
    "matplotlib": "PASSED lib/t.py::test_press[MouseButton.LEFT]\n",
    "django-interrupted": "test_a (m.T) ... System check identified no issues (0 silenced)\nok\n"
                          "test_b (m.T) ... skipped 'no'\nFAIL: test_c (m.T)\n"
                          "--version is equivalent to version\n",
    "sympy": "test_a ok\ntest_b F\ntest_c E\n___ sympy/x/tests/test_y.py:test_d ___\n",
}

EDGE_GRADES = [
    ("skipped-p2p-is-maintained", "pytest",
     wrap("PASSED t.py::test_f\nSKIPPED t.py::test_p"), ["t.py::test_f"], ["t.py::test_p"]),
    ("skipped-f2p-fails", "pytest",
     wrap("SKIPPED t.py::test_f\nPASSED t.py::test_p"), ["t.py::test_f"], ["t.py::test_p"]),
    ("truncated-id-prefix", "pytest",
     wrap("PASSED t.py::test_f[a-long-id]\nPASSED t.py::test_f[a-longer]"), ["t.py::test_f[a-lo"],
     []),
    ("xfail-passes", "pytest", wrap("XFAIL t.py::test_f\nPASSED t.py::test_p"),
     ["t.py::test_f"], ["t.py::test_p"]),
    ("missing-test-fails", "pytest", wrap("PASSED t.py::test_p"), ["t.py::test_f"],
     ["t.py::test_p"]),
    ("partial", "pytest", wrap("PASSED t.py::test_f\nFAILED t.py::test_g"),
     ["t.py::test_f", "t.py::test_g"], []),
    ("no-markers", "pytest", "PASSED t.py::test_f\n", ["t.py::test_f"], []),
    ("nothing-ran", "pytest", wrap("collected 0 items"), ["t.py::test_f"], []),
    ("exit-code-contradicts-log", "pytest", wrap("PASSED t.py::test_f", exit_code=1),
     ["t.py::test_f"], []),
    ("patch-failed", "pytest", wrap(sl.APPLY_PATCH_FAIL + "\nPASSED t.py::test_f"),
     ["t.py::test_f"], []),
    ("wrapped-progress", "pytest", wrap(EDGE_LOGS["wrapped-progress"]),
     ["testing/test_a.py::test_x"], ["[100%]"]),
    ("slash-parameter", "pytest_options", wrap(EDGE_LOGS["slash-parameter"]),
     ["tests/test_x.py::test_p[/x.py]"], ["tests/test_x.py::test_p[//net/share]"]),
    ("django", "django", wrap(EDGE_LOGS["django-interrupted"], exit_code=1),
     ["test_a (m.T)"], ["test_b (m.T)", "test_c (m.T)"]),
    ("sympy", "sympy", wrap(EDGE_LOGS["sympy"], exit_code=1), ["test_a"], ["test_b"]),
]


def ours_graded(parser: str, content: str, f2p: list[str], p2p: list[str]) -> dict:
    status_map, found = sl.logs_eval(content, parser)
    g = sl.grade(status_map, f2p, p2p)
    return {"found": found, "status_map": status_map, "status": g.status,
            "tests_status": {k: g.tests_status[k] for k in ("FAIL_TO_PASS", "PASS_TO_PASS")}}


def test_parsers_and_grading_agree_with_the_official_harness(oracle):
    logs = {**fixture_logs(), **{f"edge.{k}": v for k, v in EDGE_LOGS.items()}}
    grades = [{"id": f"edge.{cid}", "parser": p, "content": c, "f2p": f, "p2p": q}
              for cid, p, c, f, q in EDGE_GRADES]
    for case in real_cases():
        logs[f"real.{case['id']}"] = case["log"]
        grades.append({"id": f"real.{case['id']}", "parser": case["parser"],
                       "content": case["log"], "f2p": case["f2p"], "p2p": case["p2p"]})
    answer = ask_oracle(oracle, [{"id": k, "log": v} for k, v in logs.items()], grades)
    diffs = []
    for lid, by_parser in answer["parsed"].items():
        for name, official in by_parser.items():
            mine = sl.PARSERS[name](logs[lid])
            if mine != official and f"{lid}/{name}" not in DIFFERENCES:
                diffs.append((lid, name, sorted(set(mine.items()) ^ set(official.items()))[:6]))
    for g in grades:
        official = answer["graded"][g["id"]]
        official["tests_status"] = {k: official["tests_status"][k]
                                    for k in ("FAIL_TO_PASS", "PASS_TO_PASS")}
        mine = ours_graded(g["parser"], g["content"], g["f2p"], g["p2p"])
        if mine != official and g["id"] not in DIFFERENCES:
            diffs.append((g["id"], "grade", {"ours": mine, "official": official}))
    compared = sum(len(v) for v in answer["parsed"].values())
    print(f"oracle swebench {ORACLE_VERSION}: {len(logs)} logs x 7 parsers = {compared} status "
          f"maps, {len(grades)} graded cases ({len(real_cases())} real), "
          f"{len(diffs)} differences")
    assert not diffs, diffs
    assert len(real_cases()) >= 1, "the corpus of real logs is missing"


def test_edge_cases_grade_as_the_harness_does():
    """The verdicts the oracle confirms, readable without it."""
    verdicts = {cid: ours_graded(p, c, f, q) for cid, p, c, f, q in EDGE_GRADES}
    assert verdicts["skipped-p2p-is-maintained"]["status"] == "RESOLVED_FULL"
    assert verdicts["skipped-f2p-fails"]["status"] == "RESOLVED_NO"
    assert verdicts["truncated-id-prefix"]["status"] == "RESOLVED_FULL"
    assert verdicts["wrapped-progress"]["status"] == "RESOLVED_FULL"
    assert verdicts["slash-parameter"]["status"] == "RESOLVED_FULL"
    assert verdicts["partial"]["status"] == "RESOLVED_PARTIAL"
    for cid in ("no-markers", "nothing-ran", "exit-code-contradicts-log", "patch-failed"):
        assert verdicts[cid]["found"] is False and verdicts[cid]["status"] == "RESOLVED_NO"
