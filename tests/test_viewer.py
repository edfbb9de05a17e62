"""`patchswarm view` in a real headless Chromium, over a run folder the real repair pipeline
wrote (recorded completions, real Docker sandboxes): counts, diffs, filters, links, a run that
grows while the page is open, and the static export opened from file://.

Screenshots of the overview, a problem and a diff are saved to a folder the test prints.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from viewer_runs import EXAMPLE, make_repair_run

from patchswarm.agent.sampler import ReplaySampler
from patchswarm.tasks.engine.runner import RepairSettings, repair
from patchswarm.tasks.sources import examples

pytestmark = pytest.mark.docker

CHROMIUM = os.environ.get("PATCHSWARM_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("PATCHSWARM_CHROMEDRIVER", "/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, base_image) -> Path:
    """A finished repair: 5 samples, 2 with no usable edit, 2 distinct changes (one passes,
    with 2 votes), verified in Docker."""
    tmp = tmp_path_factory.mktemp("viewer-run")
    result = make_repair_run(tmp, tmp / "run")
    assert result.solved and result.distinct == 2
    return tmp / "run"


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("viewer-screenshots")
    print(f"\nviewer screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(f"no Chromium at {CHROMIUM} with its driver at {CHROMEDRIVER}: "
                    "run `bash docker/setup.sh --test` (it installs chromium and "
                    "chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="viewer-chromium-")
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                "--window-size=1400,1600"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Viewer:
    """`patchswarm view` as a user starts it, in its own process."""

    def __init__(self, folder: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "patchswarm.tasks.cli.main", "view", str(folder),
             "--port", str(self.port), "--interval", "0.5"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.url + "api/state", timeout=2) as r:
                    json.loads(r.read())
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    out = self.proc.communicate(timeout=5)[0] if self.proc.poll() is not None \
                        else ""
                    self.close()
                    pytest.fail(f"the viewer did not start: {out}")
                time.sleep(0.2)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def viewer():
    started: list[Viewer] = []

    def start(folder: Path) -> Viewer:
        v = Viewer(folder)
        started.append(v)
        return v

    yield start
    for v in started:
        v.close()


def _wait(driver, cond, timeout: float = 10.0):  # noqa: ANN001, ANN202
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: cond(d))


def _stat(driver, key: str) -> str:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'[data-stat="{key}"] .v').text


def _visible(driver, css: str) -> list:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    return [e for e in driver.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]


def _assert_counts_match(driver, summary: dict) -> None:  # noqa: ANN001
    assert _stat(driver, "samples") == str(summary["samples"])
    assert _stat(driver, "parsed") == str(summary["parsed"])
    assert _stat(driver, "distinct") == str(summary["distinct"])
    assert _stat(driver, "verified") == str(summary["verified"])
    assert _stat(driver, "solved") == ("1" if summary["solved"] else "0")
    assert _stat(driver, "completion_tokens") == str(summary["tokens"]["completion"])


def test_page_shows_the_run_and_a_click_opens_a_diff(run_dir, browser, viewer, shots):
    from selenium.webdriver.common.by import By

    summary = json.loads((run_dir / "summary.json").read_text())
    v = viewer(run_dir)
    browser.get(v.url)
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-stat="samples"]'))
    _assert_counts_match(browser, summary)
    assert "finished" in browser.find_element(By.ID, "live").text
    # The coverage curve is drawn point by point, each with its value on hover.
    points = browser.find_elements(By.CSS_SELECTOR, "#overview svg.chart circle.pt")
    assert len(points) == summary["samples"]
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(browser).move_to_element(points[0]).perform()
    tip = browser.find_element(By.ID, "tooltip")
    _wait(browser, lambda d: tip.is_displayed())
    assert "pass@k=0.400" in tip.text  # 2 of 5 samples pass: pass@1 = 0.4
    browser.save_screenshot(str(shots / "overview.png"))

    rows = browser.find_elements(By.CSS_SELECTOR, "tr.group-row")
    assert [r.get_attribute("data-status") for r in rows] == ["passed", "failed"]
    assert "first: verified, #2 is not" in rows[0].text
    assert rows[0].find_elements(By.TAG_NAME, "td")[1].text == "2"  # votes
    browser.execute_script("document.getElementById('problem').scrollIntoView()")
    browser.save_screenshot(str(shots / "problem.png"))

    rows[0].click()
    detail = _wait(browser, lambda d: _visible(d, "[data-detail] pre.lang-diff"))[0]
    added = [e.text for e in detail.find_elements(By.CSS_SELECTOR, ".diff-add")]
    removed = [e.text for e in detail.find_elements(By.CSS_SELECTOR, ".diff-del")]
    assert added == ["+    return sum(scores) / len(scores)"]
    assert removed == ["-    return sum(scores) // len(scores)"]
    assert "RESOLVED_FULL" in browser.find_element(By.CSS_SELECTOR, "pre.checker").text
    tests = browser.find_elements(By.CSS_SELECTOR, "table.tests tr")
    assert len(tests) == 7
    browser.execute_script("arguments[0].scrollIntoView()", detail)
    browser.save_screenshot(str(shots / "diff.png"))

    # A member of the group opens the raw completion, and the address names the candidate.
    member = browser.find_element(By.CSS_SELECTOR, '[data-detail] a[href*="c="]')
    cid = member.text
    member.click()
    raw = _wait(browser, lambda d: _visible(d, f'[data-detail="{cid}"] pre.completion'))[0]
    assert raw.text.startswith("Here is the fix.")
    assert f"c={cid.replace('/', '%2F')}" in browser.current_url
    # That address opens the same candidate in a fresh page.
    browser.get(v.url + "#" + browser.current_url.split("#", 1)[1])
    raw = _wait(browser, lambda d: _visible(d, f'[data-detail="{cid}"] pre.completion'))[0]
    assert raw.text.startswith("Here is the fix.")


def test_filters_and_search_change_the_rows(run_dir, browser, viewer):
    from selenium.webdriver.common.by import By

    v = viewer(run_dir)
    browser.get(v.url)
    _wait(browser, lambda d: _visible(d, "tr.cand-row"))
    assert len(_visible(browser, "tr.cand-row")) == 5
    expected = {"passed": 2, "failed": 1, "unparsable": 2, "error": 0, "pending": 0}
    for status, count in expected.items():
        browser.find_element(By.CSS_SELECTOR, f'button[data-filter="{status}"]').click()
        rows = _visible(browser, "tr.cand-row")
        assert len(rows) == count, status
        assert all(r.get_attribute("data-status") == status for r in rows)
    browser.find_element(By.CSS_SELECTOR, 'button[data-filter="all"]').click()
    browser.find_element(By.ID, "search").send_keys("cannot help")
    rows = _wait(browser, lambda d: (r := _visible(d, "tr.cand-row")) and len(r) == 1 and r)
    assert rows[0].get_attribute("data-status") == "unparsable"
    assert "no code block" in rows[0].text


def test_a_run_that_grows_updates_the_open_page(run_dir, browser, viewer, tmp_path):
    from selenium.webdriver.common.by import By

    live = tmp_path / "live"
    shutil.copytree(run_dir, live)
    v = viewer(live)
    browser.get(v.url)
    _wait(browser, lambda d: _stat(d, "samples") == "5")
    cands = [json.loads(x) for x in (live / "candidates.jsonl").read_text().splitlines()]
    # A sixth sample, a new distinct change, arrives; a moment later its verdict.
    new = {**cands[2], "id": f"{EXAMPLE}/0-5", "index": 5, "key": "f" * 64,
           "patch": cands[2]["patch"].replace("round(", "int("), "seed": 105}
    time.sleep(0.05)
    with open(live / "candidates.jsonl", "a") as fh:
        fh.write(json.dumps(new) + "\n")
    _wait(browser, lambda d: _stat(d, "samples") == "6" and _stat(d, "distinct") == "3")
    assert "running" in browser.find_element(By.ID, "live").text  # the summary is stale now
    assert _stat(browser, "checked") == "2"
    assert [r.get_attribute("data-status") for r in _visible(browser, "tr.group-row")][-1] \
        == "pending"
    with open(live / "verdicts.jsonl", "a") as fh:
        fh.write(json.dumps({"key": "f" * 64, "status": "failed", "detail": "RESOLVED_NO",
                             "tests": {}, "log": "", "seconds": 0.5}) + "\n")
    _wait(browser, lambda d: _stat(d, "checked") == "3")
    assert [r.get_attribute("data-status") for r in _visible(browser, "tr.group-row")] \
        == ["passed", "failed", "failed"]


def test_export_is_one_offline_file_with_the_same_counts(run_dir, browser, tmp_path, shots):
    from selenium.webdriver.common.by import By

    out = tmp_path / "run.html"
    proc = subprocess.run([sys.executable, "-m", "patchswarm.tasks.cli.main", "view", str(run_dir),
                           "--export", str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["run.html"]
    html = out.read_text()
    # Nothing is loaded from anywhere: no src/href to another address, no CSS import or url().
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "url(" not in html
    assert "<script src" not in html and "<link" not in html
    summary = json.loads((run_dir / "summary.json").read_text())
    browser.get(out.as_uri())
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-stat="samples"]'))
    _assert_counts_match(browser, summary)
    assert "static export" in browser.find_element(By.ID, "live").text
    browser.find_elements(By.CSS_SELECTOR, "tr.group-row")[0].click()
    assert _visible(browser, ".diff-add")
    browser.save_screenshot(str(shots / "export.png"))


def test_view_refuses_what_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    for path, words in ((tmp_path, "is not a run folder"), (tmp_path / "notes.txt", "is a file"),
                        (tmp_path / "missing", "does not exist")):
        proc = subprocess.run([sys.executable, "-m", "patchswarm.tasks.cli.main", "view", str(path),
                               "--export", str(tmp_path / "x.html")],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert words in proc.stderr and "Traceback" not in proc.stderr
        assert not (tmp_path / "x.html").exists()


def test_a_batch_folder_lists_each_problem_with_its_outcome(run_dir, tmp_path, browser):
    """A batch work folder: one problem repaired for real, one whose repository is gone."""
    import yaml
    from selenium.webdriver.common.by import By

    from patchswarm.tasks.sources.batch import load_spec, run_batch
    from patchswarm.tasks.viewer.data import load

    repo = examples.materialise(EXAMPLE, tmp_path / "repo")
    meta = examples.load_example(EXAMPLE)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"settings": {"n": 5}, "problems": [
        {"id": EXAMPLE, "repo": str(repo), "issue": meta["issue"],
         "test": meta["test_command"], "files": meta["files"]},
        {"id": "gone", "repo": "file:///nonexistent/patchswarm-test.git", "issue": "bug",
         "test": "pytest"}]}))
    records = [json.loads(x) for x in (run_dir / "candidates.jsonl").read_text().splitlines()]
    sampler = ReplaySampler([{"text": r["text"], "completion_tokens": r["completion_tokens"]}
                             for r in records])
    work = tmp_path / "work"
    summary = run_batch(load_spec(spec), work, lambda p, d, r: repair(
        p, lambda: sampler, RepairSettings(n=5), d, r))
    assert summary["solved"] == 1 and summary["errors"] == 1

    data = load(work)
    assert data["kind"] == "batch" and data["done"]
    assert {p["id"]: p["status"] for p in data["problems"]} == {EXAMPLE: "solved",
                                                               "gone": "error"}
    assert data["overview"]["counts"]["samples"] == summary["candidates"]
    out = tmp_path / "batch.html"
    from patchswarm.tasks.viewer.server import export

    export(work, out)
    browser.get(out.as_uri())
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "tr.problem-row"))
    rows = {r.get_attribute("data-problem"): r.text
            for r in browser.find_elements(By.CSS_SELECTOR, "tr.problem-row")}
    assert "solved" in rows[EXAMPLE] and "could not clone" in rows["gone"]
    assert _stat(browser, "solved") == "1" and _stat(browser, "errors") == "1"


def test_a_rerun_that_stopped_early_is_not_shown_as_finished(run_dir, tmp_path):
    """A summary older than the run's latest writes (a rerun that crashed) is stale."""
    from patchswarm.tasks.viewer.data import load

    again = tmp_path / "again"
    shutil.copytree(run_dir, again)
    assert load(again)["done"]
    time.sleep(0.02)
    (again / "run.json").write_text((again / "run.json").read_text())  # a rerun began
    data = load(again)
    assert not data["done"] and data["problems"][0]["status"] == "running"


def test_a_solve_run_shows_each_strategy_and_problem(tmp_path, browser):
    """Math strategies run from recorded completions through the real `solve` command."""
    from click.testing import CliRunner
    from selenium.webdriver.common.by import By

    from patchswarm.tasks.cli.main import main
    from patchswarm.tasks.viewer.data import load
    from patchswarm.tasks.viewer.server import export

    texts = ["17 + 25 = 42, so \\boxed{42}", "\\boxed{41}", "\\boxed{42.0}", "no idea",
             "\\boxed{1/2}", "\\boxed{0.5}", "\\boxed{2}", "x"]
    replay = tmp_path / "r.jsonl"
    replay.write_text("".join(json.dumps({"text": t, "completion_tokens": 12}) + "\n"
                              for t in texts))
    run = tmp_path / "solve"
    res = CliRunner().invoke(main, ["solve", "--strategy", "majority", "-n", "4", "--problem",
                                    "add-two", "--problem", "half-fraction", "--replay",
                                    str(replay), "--run-dir", str(run)])
    assert res.exit_code == 0, res.output
    data = load(run)
    assert data["kind"] == "solve" and data["done"]
    assert {p["id"] for p in data["problems"]} == {"add-two", "half-fraction"}
    (series,) = data["curves"][0]["series"]
    report = json.loads((run / "report.json").read_text())
    assert series["name"] == "majority"
    assert [y for _, y in series["points"]] == [
        round(p["accuracy"], 4) for p in report["strategies"]["majority"]["points"]]
    export(run, tmp_path / "solve.html")
    browser.get((tmp_path / "solve.html").as_uri())
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "tr.problem-row"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#overview circle.pt")) == \
        len(series["points"])
    browser.find_element(By.CSS_SELECTOR, 'tr.problem-row[data-problem="add-two"]').click()
    rows = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "tr.solve-row"))
    assert len(rows) == len([r for r in json.loads("[" + ",".join(
        (run / "results.jsonl").read_text().split("\n")[:-1]) + "]")
        if r["problem"] == "add-two"])
    assert any("42" in r.text for r in rows)


def test_a_swebench_run_shows_selection_repro_scripts_and_evaluation(tmp_path, browser):
    """A SWE-bench run of one small instance (the tests' own repository in the instance
    format), recorded completions, real sandboxes: the page shows the pick, each change's
    selection verdict, the reproduction test before and after, and the evaluation."""
    import swebench_fixtures
    from click.testing import CliRunner
    from selenium.webdriver.common.by import By

    from patchswarm.tasks.cli.main import main
    from patchswarm.tasks.viewer.data import load
    from patchswarm.tasks.viewer.server import export

    fx = swebench_fixtures.build(tmp_path / "fx")
    iid = fx.items[0].instance["instance_id"]
    out = tmp_path / "swe"
    res = CliRunner().invoke(main, [
        "swebench", "run", "--dataset", str(fx.dataset(tmp_path / "ds.jsonl")),
        "--repos-dir", str(fx.repos), "--specs", str(fx.specs), "--no-clone", "-i", iid,
        "--out", str(out), "--replay", str(fx.replay(tmp_path / "replay.jsonl")), "-n", "4",
        "--repro", "1", "--format", "udiff", "--run-id", "v1"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    data = load(out)
    assert data["kind"] == "swebench" and data["done"]
    (p,) = data["problems"]
    assert p["id"] == iid and p["status"] == "solved" and report["resolved_ids"] == [iid]
    assert p["counts"]["samples"] == 4 and p["counts"]["distinct"] == 2
    top = p["groups"][0]
    assert top["status"] == "passed" and top["eval"]["resolved"] is True
    assert top["votes"] == 1 and p["groups"][1]["votes"] == 2  # tests beat votes
    (repro,) = p["repro"]
    assert repro["before"] == "reproduces"
    assert repro["after"][top["key"]] == "PASSED"
    export(out, tmp_path / "swe.html")
    browser.get((tmp_path / "swe.html").as_uri())
    _wait(browser, lambda d: _visible(d, "table.repro"))
    assert "reproduces" in browser.find_element(By.CSS_SELECTOR, "table.repro").text
    browser.find_elements(By.CSS_SELECTOR, "tr.group-row")[0].click()
    detail = _wait(browser, lambda d: _visible(d, "[data-detail]"))[0]
    assert "evaluation with the hidden tests" in detail.text and "resolved" in detail.text


def test_a_prove_run_shows_each_proof_and_the_checkers_message(tmp_path, browser,
                                                               docker_engine):
    """Coq statements proved from recorded completions and checked by Coq in a sandbox."""
    from selenium.webdriver.common.by import By

    from patchswarm.tasks.viewer.data import load
    from patchswarm.tasks.viewer.server import export

    here = Path(__file__).resolve().parent / "data"
    folder = tmp_path / "statements"
    folder.mkdir()
    shutil.copy(here / "coq" / "small_mod.v", folder)
    shutil.copy(here / "coq-broken" / "broken_statement.v", folder)
    real = "Here is the proof.\n```coq\nProof.\n  reflexivity.\nQed.\n```"
    wrong = "```coq\nProof. exact I. Qed.\n```"
    replay = tmp_path / "r.jsonl"  # statements in file order: broken_statement, small_mod
    replay.write_text("".join(json.dumps({"text": t, "completion_tokens": 12}) + "\n"
                              for t in (real, real, real, wrong)))
    run = tmp_path / "prove"
    proc = subprocess.run([sys.executable, "-m", "patchswarm.tasks.cli.main", "prove", "--dataset",
                           str(folder), "-n", "2", "--replay", str(replay), "--run-dir",
                           str(run)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = load(run)
    assert data["kind"] == "prove" and data["done"]
    probs = {p["id"]: p for p in data["problems"]}
    assert probs["broken_statement"]["status"] == "error"
    mod = probs["small_mod"]
    assert mod["status"] == "solved" and mod["lang"] == "coq"
    assert [g["status"] for g in mod["groups"]] == ["passed", "failed"]
    assert "proof does not check" in mod["groups"][1]["detail"]
    export(run, tmp_path / "prove.html")
    browser.get((tmp_path / "prove.html").as_uri())
    browser.find_element(By.CSS_SELECTOR, 'tr.problem-row[data-problem="small_mod"]').click()
    rows = _wait(browser, lambda d: _visible(d, "tr.group-row"))
    rows[1].click()
    detail = _wait(browser, lambda d: _visible(d, "[data-detail] pre.lang-coq"))[0]
    assert "exact I." in detail.text
    assert "proof does not check" in browser.find_element(By.CSS_SELECTOR, "pre.checker").text
