"""The verdict cache (SQLite and Redis) and the resumable run store.

A patch verified once is never run again: the cache key is (environment image, the exact patch
text, verifier and its settings, test spec, sandbox limits), shared across runs and workers.
Normalised-patch keys only group votes. A run writes
every candidate and verdict as it arrives and counts them by id and by key, so a crash,
a resume or a redelivered task never loses or double-counts one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
import redis
from click.testing import CliRunner

from patchswarm.agent.candidate import Candidate
from patchswarm.agent.normalise import patch_key
from patchswarm.agent.ranking import Group
from patchswarm.sandbox.container import Limits
from patchswarm.tasks.cli.main import main
from patchswarm.tasks.distributed.orchestrator import SharedVerdictCache
from patchswarm.tasks.engine.cache import NoCache, RedisVerdictCache, SqliteVerdictCache, cache_key
from patchswarm.tasks.engine.problem import Problem
from patchswarm.tasks.engine.runner import (
    Environment,
    RepairSettings,
    Reporter,
    groups_of,
    limits_record,
    stamp,
    summarise,
    verify,
)
from patchswarm.tasks.engine.store import RunStore
from patchswarm.tasks.sources import examples
from patchswarm.verifiers.unittests import PytestVerifier
from patchswarm.verifiers.verdict import Verdict

PORT = 6392
SPEC = {"test_command": "python -m pytest -q tests", "fail_to_pass": ["t::a"],
        "pass_to_pass": [], "timeout": 300}
VERIFIER = {"name": "pytest", "reruns": 2}


@pytest.fixture(scope="module")
def redis_url():
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed: run `bash docker/setup.sh --test`")
    proc = subprocess.Popen([exe, "--port", str(PORT), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(port=PORT, socket_connect_timeout=0.5).ping()
            break
        except redis.RedisError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"redis-server did not start on port {PORT}")
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{PORT}/0"
    proc.terminate()
    proc.wait(10)


def passed(detail: str = "ok") -> dict:
    return Verdict("passed", detail, {"t::a": "PASSED"}, verifier="pytest").to_dict()


# ----------------------------------------------------------------------------- cache key

def test_cache_key_names_image_change_verifier_and_spec():
    base = cache_key("img:1", "k1", VERIFIER, SPEC)
    assert base == cache_key("img:1", "k1", dict(reversed(VERIFIER.items())), dict(SPEC))
    others = {
        cache_key("img:2", "k1", VERIFIER, SPEC),
        cache_key("img:1", "k2", VERIFIER, SPEC),
        cache_key("img:1", "k1", {**VERIFIER, "reruns": 0}, SPEC),
        cache_key("img:1", "k1", VERIFIER, {**SPEC, "timeout": 10}),
        cache_key("img:1", "k1", VERIFIER, {**SPEC, "fail_to_pass": ["t::b"]}),
        cache_key("img:1", "k1", VERIFIER, SPEC, {"memory": "512m"}),
        cache_key("img:1", "k1", {**VERIFIER, "policy": 2}, SPEC),
    }
    assert base not in others and len(others) == 7


def test_a_cosmetic_rewrite_shares_votes_but_never_a_verdict():
    """Equal normalised code groups votes; the cache is keyed by the exact bytes, since a
    comment (a ``# coding:`` cookie) or a docstring (read through ``__doc__``) may change
    what the code does."""
    files = {"m.py": "def f(x):\n    return x // 2\n"}
    a = ("--- a/m.py\n+++ b/m.py\n@@ -1,2 +1,2 @@\n def f(x):\n-    return x // 2\n"
         "+    return x / 2\n")
    b = ("--- a/m.py\n+++ b/m.py\n@@ -1,2 +1,2 @@\n def f(x):\n-    return x // 2\n"
         "+    return (x / 2)  # halve\n")
    c = ("--- a/m.py\n+++ b/m.py\n@@ -1,2 +1,2 @@\n def f(x):\n-    return x // 2\n"
         "+    return x * 0.5\n")
    assert patch_key(a, files) == patch_key(b, files) != patch_key(c, files)
    assert cache_key("i", a, VERIFIER, SPEC) != cache_key("i", b, VERIFIER, SPEC)
    assert cache_key("i", a, VERIFIER, SPEC) == cache_key("i", str(a), VERIFIER, SPEC)
    tabbed = a.replace("+    return", "+\treturn")
    assert cache_key("i", a, VERIFIER, SPEC) != cache_key("i", tabbed, VERIFIER, SPEC)


# ----------------------------------------------------------------------------- caches

def test_sqlite_cache_is_shared_across_runs_and_keeps_only_verdicts_of_the_code(tmp_path):
    path = tmp_path / "cache" / "verdicts.sqlite"
    first = SqliteVerdictCache(path)
    first.put("a", passed())
    first.put("b", Verdict("failed", "1 test fails").to_dict())
    first.put("c", Verdict("error", "sandbox failed to start").to_dict())
    first.put("d", Verdict("timeout", "ran past 300s").to_dict())
    later = SqliteVerdictCache(path)  # another run, another process's connection
    assert later.get("a")["status"] == "passed"
    assert later.get("b")["status"] == "failed"
    assert later.get("c") is None and later.get("d") is None, \
        "errors and timeouts of the machinery may pass on a retry: never cached"
    assert NoCache().get("a") is None


def test_redis_cache_is_shared_by_every_client(redis_url):
    prefix = f"test:{time.monotonic_ns()}:"
    one, two = RedisVerdictCache(redis_url, prefix), SharedVerdictCache(redis_url, prefix)
    assert two.get("k") is None
    one.put("k", passed("from worker one"))
    one.put("e", Verdict("error", "docker went away").to_dict())
    assert two.get("k")["detail"] == "from worker one"
    assert two.get("e") is None
    assert two.conf() == {"url": redis_url, "prefix": prefix}


def test_shared_cache_misses_instead_of_failing_when_redis_is_away():
    away = SharedVerdictCache("redis://127.0.0.1:1/0")
    assert away.get("k") is None
    away.put("k", passed())  # dropped, with a warning: the worst case is verifying again


# ----------------------------------------------------------------------------- run store

def test_run_store_counts_candidates_by_id_and_verdicts_by_key(tmp_path):
    store = RunStore(tmp_path / "run")
    store.add_candidate({"id": "p/0-0", "key": "k1"})
    store.add_candidate({"id": "p/0-1", "key": "k1"})
    store.add_candidate({"id": "p/0-0", "key": "k1"})  # written again by a resumed run
    store.add_verdict("k1", passed("first"))
    store.add_verdict("k1", passed("a redelivered task's second answer"))
    again = RunStore(tmp_path / "run")  # a new process reading the same run
    assert [c["id"] for c in again.candidates()] == ["p/0-0", "p/0-1"]
    assert list(again.verdicts()) == ["k1"]
    assert again.verdicts()["k1"]["detail"] == "first"


def test_a_line_cut_short_by_a_crash_loses_nothing_after_it(tmp_path):
    store = RunStore(tmp_path / "run")
    store.add_verdict("k1", passed())
    with open(tmp_path / "run" / "verdicts.jsonl", "a") as fh:
        fh.write('{"key": "k2", "stat')  # the process died mid-write
    resumed = RunStore(tmp_path / "run")
    assert list(resumed.verdicts()) == ["k1"]
    resumed.add_verdict("k3", passed())
    resumed.add_verdict("k4", passed())
    assert list(RunStore(tmp_path / "run").verdicts()) == ["k1", "k3", "k4"]


def test_json_files_are_replaced_whole(tmp_path):
    store = RunStore(tmp_path / "run")
    store.write_json("summary.json", {"a": 1})
    store.write_json("summary.json", {"a": 2})
    assert store.read_json("summary.json") == {"a": 2}
    assert not list((tmp_path / "run").glob(".*.tmp"))


def _candidates(keys: list[str | None]) -> list[Candidate]:
    return [Candidate(id=f"p/0-{i}", problem_id="p", index=i, text="",
                      patch=None if k is None else f"patch {k}", key=k,
                      error=None if k else "no edit")
            for i, k in enumerate(keys)]


def test_summary_counts_distinct_changes_by_key(tmp_path):
    store = RunStore(tmp_path / "run")
    cands = _candidates(["k1", "k1", "k2", None, "k1"])
    for c in cands:
        store.add_candidate(c.to_dict())
    store.add_verdict("k1", passed())
    store.add_verdict("k1", passed())  # twice: a redelivery
    store.add_verdict("k2", Verdict("failed", "no").to_dict())
    groups = groups_of([Candidate.from_dict(c) for c in store.candidates()])
    for g in groups:
        g.status = store.verdicts()[g.key]["status"]
    problem = Problem(id="p", repo=str(tmp_path), base_commit="0" * 40, issue="x",
                      test_command="pytest")
    result = summarise(problem, store, [Candidate.from_dict(c) for c in store.candidates()],
                       groups)
    assert (result.samples, result.parsed, result.distinct, result.verified) == (5, 4, 2, 1)
    assert result.best_key == "k1" and result.solved
    assert result.errors == {"no edit": 1}


def test_status_shows_the_progress_of_a_run(tmp_path):
    run = tmp_path / "run"
    store = RunStore(run)
    store.write_json("run.json", {"problem": {"id": "p"}, "settings": {"n": 6}})
    for c in _candidates(["k1", "k1", "k2", "k3"]):
        store.add_candidate(c.to_dict())
    store.add_verdict("k1", passed())
    store.add_verdict("k2", Verdict("failed", "no").to_dict())
    out = CliRunner().invoke(main, ["status", str(run), "--json"])
    assert out.exit_code == 0, out.output
    (row,) = json.loads(out.output)
    assert (row["wanted"], row["sampled"], row["distinct"], row["verified"], row["passed"],
            row["done"]) == (6, 4, 3, 2, 1, False)
    # A folder of runs shows one row per run.
    RunStore(tmp_path / "run2").write_json("run.json", {"problem": {"id": "q"},
                                                        "settings": {"n": 1}})
    out = CliRunner().invoke(main, ["status", str(tmp_path), "--json"])
    assert len(json.loads(out.output)) == 2


# ----------------------------------------------------------------------------- runner + cache

def test_cached_and_stored_verdicts_start_no_sandbox(tmp_path):
    """Everything already known: no sandbox is started (the image does not even exist)."""
    env = Environment("patchswarm/env:never-built", {}, SPEC)
    groups = [Group("k1", "patch 1", ["p/0-0"]), Group("k2", "patch 2", ["p/0-1"])]
    cache = SqliteVerdictCache(tmp_path / "cache.sqlite")
    cache.put(cache_key(env.image, "patch 1", PytestVerifier().settings(), SPEC,
                        limits_record(Limits())), passed())
    store = RunStore(tmp_path / "run")
    store.add_verdict("k2", stamp(Verdict("failed", "from the run before the crash"),
                                  "patch 2").to_dict())
    verdicts = verify(env, groups, RepairSettings(), store, Reporter(), cache)
    assert verdicts["k1"].extra.get("cached") is True
    assert verdicts["k2"].detail == "from the run before the crash"
    assert [g.status for g in groups] == ["passed", "failed"]
    assert set(RunStore(tmp_path / "run").verdicts()) == {"k1", "k2"}


def test_a_patch_verified_once_is_never_run_again(env_image, tmp_path):
    meta = examples.load_example("gradebook-average")
    spec = {"test_command": meta["test_command"], "fail_to_pass": meta["fail_to_pass"],
            "pass_to_pass": meta["pass_to_pass"], "timeout": 120}
    gold = (meta["root"] / "fix.patch").read_text()
    env = Environment(env_image, {}, spec)
    cache = SqliteVerdictCache(tmp_path / "cache.sqlite")
    verifier = PytestVerifier(reruns=0)
    first = verify(env, [Group("gold", gold, ["a"])], RepairSettings(), RunStore(tmp_path / "1"),
                   Reporter(), cache, verifier)
    assert first["gold"].status == "passed" and not first["gold"].extra.get("cached")
    second = verify(env, [Group("gold", gold, ["b"])], RepairSettings(),
                    RunStore(tmp_path / "2"), Reporter(), cache, verifier)
    assert second["gold"].extra.get("cached") is True
    assert second["gold"].tests == first["gold"].tests
