"""A verifier from another package: a small plugin is pip-installed (offline, no build
isolation), found through the ``patchswarm.verifiers`` entry-point group, used by
``patchswarm verify``, and uninstalled again."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from patchswarm.verifiers import registry

DIST = "patchswarm-wordcount-plugin"
NAME = "wordcount"

PLUGIN = textwrap.dedent('''\
    """A third-party verifier: does the candidate text have exactly the asked number of words?"""

    from patchswarm.verifiers.verdict import Verdict


    class WordCountVerifier:
        name = "wordcount"

        def __init__(self, strict: bool = True) -> None:
            self.strict = strict

        def settings(self):
            return {"name": self.name, "strict": self.strict}

        def verify(self, problem, candidate, sandbox):
            words = len(candidate.get("text", "").split())
            want = int(problem["words"])
            status = "passed" if words == want else "failed"
            return Verdict(status, f"{words} words, {want} wanted", verifier=self.name)
    ''')

PYPROJECT = textwrap.dedent(f'''\
    [build-system]
    requires = ["setuptools>=61"]
    build-backend = "setuptools.build_meta"

    [project]
    name = "{DIST}"
    version = "0.1.0"

    [project.entry-points."patchswarm.verifiers"]
    {NAME} = "ps_wordcount_plugin:WordCountVerifier"

    [tool.setuptools]
    py-modules = ["ps_wordcount_plugin"]
    ''')


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args, "-q",
                           "--disable-pip-version-check"], capture_output=True, text=True)


def _cli(*args: str) -> subprocess.CompletedProcess:
    # The installed ``patchswarm`` command, through this interpreter.
    return subprocess.run([sys.executable, "-c",
                           "from patchswarm.tasks.cli.main import main; main()", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def plugin(tmp_path: Path):
    src = tmp_path / "plugin"
    src.mkdir()
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / "ps_wordcount_plugin.py").write_text(PLUGIN)
    assert NAME not in registry.available(), "a previous run left the plugin installed"
    done = _pip("install", "--no-build-isolation", "--no-deps", "--no-index", str(src))
    assert done.returncode == 0, done.stderr
    importlib.invalidate_caches()
    try:
        yield
    finally:
        gone = _pip("uninstall", "-y", DIST)
        sys.modules.pop("ps_wordcount_plugin", None)
        importlib.invalidate_caches()
        assert gone.returncode == 0, gone.stderr


def test_the_bundled_verifiers_are_entry_points() -> None:
    found = registry.available()
    for name in ("pytest", "math", "coq"):
        assert name in found, found
        assert isinstance(registry.load(name), registry.Verifier)


def test_a_plugin_package_adds_a_verifier(plugin, tmp_path: Path) -> None:
    assert NAME in registry.available()
    v = registry.load(NAME, strict=False)
    assert isinstance(v, registry.Verifier)
    assert v.settings() == {"name": NAME, "strict": False}
    assert v.verify({"words": 2}, {"text": "two words"}, None).status == "passed"

    problem = tmp_path / "problem.json"
    problem.write_text(json.dumps({"words": 3}))
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_text("one two three\n")
    bad.write_text("one two\n")
    res = _cli("verify", "--verifier", NAME, "--problem", str(problem),
               "--candidate", str(good), "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    verdict = json.loads(res.stdout)
    assert verdict["status"] == "passed" and verdict["verifier"] == NAME
    res = _cli("verify", "--verifier", NAME, "--problem", str(problem), "--candidate", str(bad))
    assert res.returncode == 1
    assert "FAILED" in res.stdout and "2 words, 3 wanted" in res.stdout


def test_after_uninstall_the_name_is_unknown_and_the_known_ones_are_listed(tmp_path) -> None:
    assert NAME not in registry.available()
    with pytest.raises(registry.UnknownVerifier, match="known verifiers: coq, math, pytest"):
        registry.load(NAME)
    f = tmp_path / "x.txt"
    f.write_text("x")
    res = _cli("verify", "--verifier", NAME, "--problem", str(f), "--candidate", str(f))
    assert res.returncode == 2
    assert f"unknown verifier '{NAME}'" in res.stderr
    assert "coq" in res.stderr and "math" in res.stderr and "pytest" in res.stderr
