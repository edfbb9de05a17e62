"""`patchswarm status` on what a user points it at: a run, folders of nested runs (batch,
SWE-bench, demo), a folder that is no run, a file, and a run whose rerun stopped early."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from viewer_runs import make_repair_run

from patchswarm.tasks.cli.main import main

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, base_image) -> Path:
    tmp = tmp_path_factory.mktemp("status-run")
    assert make_repair_run(tmp, tmp / "run").solved
    return tmp / "run"


def _status(path: Path) -> tuple[int, list[dict] | str]:
    res = CliRunner().invoke(main, ["status", str(path), "--json"], prog_name="patchswarm")
    if res.exit_code != 0:
        return res.exit_code, res.output
    return 0, json.loads(res.stdout)


def test_a_run_folder(run_dir):
    code, rows = _status(run_dir)
    assert code == 0
    assert rows == [{"run": str(run_dir), "wanted": 5, "sampled": 5, "distinct": 2,
                     "verified": 2, "passed": 1, "done": True}]


def test_nested_runs_of_a_batch_and_a_swebench_folder(run_dir, tmp_path):
    batch = tmp_path / "batch"
    for pid in ("a", "b"):
        shutil.copytree(run_dir, batch / "runs" / pid)
    (batch / "results").mkdir()
    (batch / "clones" / "x").mkdir(parents=True)
    swe = tmp_path / "swe"
    shutil.copytree(run_dir, swe / "instances" / "org__repo-1")
    (swe / "run.json").write_text(json.dumps({"dataset": "d", "instances": ["org/repo-1"]}))
    code, rows = _status(batch)
    assert code == 0
    assert [r["run"] for r in rows] == [str(batch / "runs" / "a"), str(batch / "runs" / "b")]
    assert all(r["sampled"] == 5 and r["done"] for r in rows)
    code, rows = _status(swe)
    assert code == 0 and [r["run"] for r in rows] == [str(swe / "instances" / "org__repo-1")]


def test_a_rerun_that_stopped_early_is_not_done(run_dir, tmp_path):
    again = tmp_path / "again"
    shutil.copytree(run_dir, again)
    time.sleep(0.02)
    (again / "run.json").write_text((again / "run.json").read_text())  # a rerun began...
    code, rows = _status(again)  # ...and crashed before its summary
    assert code == 0 and rows[0]["done"] is False


def test_what_is_not_a_run_is_refused_clearly(tmp_path):
    (tmp_path / "empty").mkdir()
    code, out = _status(tmp_path / "empty")
    assert code == 2
    assert f"error: {tmp_path / 'empty'} holds no run" in " ".join(out.split())
    (tmp_path / "notes.txt").write_text("x")
    code, out = _status(tmp_path / "notes.txt")
    assert code == 2 and "is a file" in out and "Traceback" not in out
