"""A verdict belongs to the exact bytes it was reached on.

Two patches of the gradebook example have the same normalised key (the normaliser drops
comments and docstrings) yet behave differently in a real sandbox:

- a ``# -*- coding: latin-1 -*-`` cookie is a comment, but it changes how the file decodes, so
  ``len("é")`` is 2 and the fix takes its buggy branch;
- a docstring is dropped by the normaliser, but code may read it through ``__doc__``.

Each must get its own verdict: from the cache, from the run store, and as a group's
representative; and the patch a run delivers must be one that itself passed.
"""

from __future__ import annotations

import pytest

from patchswarm.agent.budget import Ledger
from patchswarm.agent.candidate import Candidate, Parsed
from patchswarm.agent.normalise import patch_key
from patchswarm.agent.ranking import Group
from patchswarm.agent.sampler import Completion
from patchswarm.agent.search.memory import MemoryContext, best_of_n
from patchswarm.tasks.engine.cache import SqliteVerdictCache, patch_digest
from patchswarm.tasks.engine.problem import Problem
from patchswarm.tasks.engine.runner import (
    Environment,
    RepairSettings,
    Reporter,
    groups_of,
    summarise,
    verify,
)
from patchswarm.tasks.engine.store import RunStore
from patchswarm.tasks.sources import examples
from patchswarm.verifiers.unittests import PytestVerifier

RETURN = ('-    return sum(scores) // len(scores)\n'
          '+    return sum(scores) / len(scores) if len("\u00e9") == 1 '
          'else sum(scores) // len(scores)\n')
HUNK = (' def average(scores: list[int]) -> float:\n'
        '     """Mean of the scores, or 0.0 when there are none."""\n'
        '     if not scores:\n'
        '         return 0.0\n'
        f'{RETURN}'
        ' \n'
        ' \n'
        ' def letter(avg: float) -> str:\n')
HEAD = "--- a/gradebook.py\n+++ b/gradebook.py\n"
GOOD = HEAD + "@@ -22,8 +22,8 @@ class Student:\n" + HUNK
COOKIE = (HEAD + "@@ -1,3 +1,4 @@\n"
          "+# -*- coding: latin-1 -*-\n"
          ' """Small gradebook helpers used by the course dashboard."""\n'
          " \n"
          " from __future__ import annotations\n"
          "@@ -22,8 +23,8 @@ class Student:\n" + HUNK)
"""The same code under a coding cookie: the literal decodes to two characters, so it fails."""

DOC = ('-    return sum(scores) // len(scores)\n'
       '+    return sum(scores) / len(scores) if "exact" in average.__doc__ '
       'else sum(scores) // len(scores)\n')
DOC_GOOD = (HEAD + "@@ -22,8 +22,8 @@ class Student:\n"
            " def average(scores: list[int]) -> float:\n"
            '-    """Mean of the scores, or 0.0 when there are none."""\n'
            '+    """Exact mean of the scores, or 0.0 when there are none (exact)."""\n'
            "     if not scores:\n"
            "         return 0.0\n" + DOC + " \n \n def letter(avg: float) -> str:\n")
DOC_BAD = DOC_GOOD.replace("(exact).", "(rounded).").replace("+    \"\"\"Exact", "+    \"\"\"The")


def _files() -> dict[str, str]:
    root = examples.load_example("gradebook-average")["root"]
    return {"gradebook.py": (root / "repo" / "gradebook.py").read_text()}


def test_the_pairs_share_a_normalised_key():
    files = _files()
    assert patch_key(GOOD, files) == patch_key(COOKIE, files)
    assert patch_key(DOC_GOOD, files) == patch_key(DOC_BAD, files)
    assert len({GOOD, COOKIE, DOC_GOOD, DOC_BAD}) == 4


# ----------------------------------------------------------------------------- strategies

class _Sampler:
    model = "fixed"

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts

    def sample(self, messages, params):  # noqa: ANN001, ANN201
        return [Completion(index=i, text=t, prompt_tokens=1, completion_tokens=1,
                           finish_reason="stop", seed=0)
                for i, t in enumerate(self.texts[: params.n])]


def _parse(text: str) -> Parsed:
    return Parsed(text, "same-key", None)


def test_a_strategy_delivers_the_exact_patch_that_was_verified():
    seen: list[str] = []

    def verify(patch: str) -> dict:
        seen.append(patch)
        return {"status": "passed" if patch == "good" else "failed"}

    result = best_of_n(_Sampler(["bad", "good"]), [], _parse, verify, n=2)
    assert seen == ["bad"], "a group is verified once, by its representative"
    assert not result.solved and result.groups[0].patch == "bad"
    assert result.groups[0].votes == 2

    # Round one cannot afford to verify; round two verifies another member of the key: the
    # group must then deliver that member, never the first-seen patch it did not verify.
    seen.clear()
    s = MemoryContext(_Sampler(["bad"]), lambda _fb: [], _parse, verify, ledger=Ledger(),
                      problem_id="p", workers=1)
    s.verify(s.draw(1, 0), limit=0)
    s.sampler = _Sampler(["good"])
    s.verify(s.draw(1, 1))
    result = s.finish()
    assert seen == ["good"]
    assert result.solved and result.best.patch == "good" and result.best.votes == 2


# ----------------------------------------------------------------------------- runner (Docker)

@pytest.fixture(scope="module")
def env(env_image) -> Environment:
    meta = examples.load_example("gradebook-average")
    spec = {"test_command": meta["test_command"], "fail_to_pass": meta["fail_to_pass"],
            "pass_to_pass": meta["pass_to_pass"], "timeout": 120}
    return Environment(env_image, _files(), spec)


FAST = PytestVerifier(reruns=0)


@pytest.mark.docker
@pytest.mark.parametrize(("good", "bad"), [(GOOD, COOKIE), (DOC_GOOD, DOC_BAD)],
                         ids=["coding-cookie", "docstring"])
def test_equal_keys_get_their_own_verdicts_through_the_cache(env, good, bad, tmp_path):
    key = patch_key(good, env.files)
    assert key == patch_key(bad, env.files)
    cache = SqliteVerdictCache(tmp_path / "cache.sqlite")
    first = verify(env, [Group(key, good, ["a"])], RepairSettings(), RunStore(tmp_path / "1"),
                   Reporter(), cache, FAST)
    assert first[key].status == "passed", first[key].detail
    second = verify(env, [Group(key, bad, ["b"])], RepairSettings(), RunStore(tmp_path / "2"),
                    Reporter(), cache, FAST)
    assert second[key].status == "failed", "the second patch inherited the first's verdict"
    assert not second[key].extra.get("cached")
    assert second[key].extra["patch_sha256"] == patch_digest(bad)
    third = verify(env, [Group(key, bad, ["c"])], RepairSettings(), RunStore(tmp_path / "3"),
                   Reporter(), cache, FAST)
    assert third[key].extra.get("cached") and third[key].status == "failed"


@pytest.mark.docker
def test_the_delivered_patch_is_the_one_that_passed(env, tmp_path):
    """One group, two exact patches: the group is judged by its representative (the first
    seen), which is also the patch delivered; the other member only votes."""
    problem = Problem(id="p", repo=str(tmp_path), base_commit="0" * 40, issue="x",
                      test_command="pytest")
    for name, order, solved in (("good-first", [GOOD, COOKIE], True),
                                ("cookie-first", [COOKIE, GOOD], False)):
        store = RunStore(tmp_path / name)
        cands = [Candidate(id=f"p/0-{i}", problem_id="p", index=i, text="", patch=p,
                           key=patch_key(p, env.files)) for i, p in enumerate(order)]
        for c in cands:
            store.add_candidate(c.to_dict())
        groups = groups_of(cands)
        assert len(groups) == 1 and groups[0].votes == 2
        verify(env, groups, RepairSettings(), store, Reporter(), None, FAST)
        result = summarise(problem, store, cands, groups)
        assert result.solved is solved, name
        if solved:
            assert result.best_patch == GOOD
            assert (store.path / "best.patch").read_text() == GOOD
        else:
            assert result.best_patch is None and not (store.path / "best.patch").exists()
        # A resumed run reuses the stored verdict only for the same bytes.
        (group,) = groups_of(cands)
        again = verify(env, [group], RepairSettings(), RunStore(store.path), Reporter(),
                       None, FAST)
        assert again[group.key].extra["patch_sha256"] == patch_digest(order[0])
        swapped = Group(group.key, order[1], group.members)
        other = verify(env, [swapped], RepairSettings(), RunStore(store.path), Reporter(),
                       None, FAST)
        assert other[group.key].status == ("failed" if solved else "passed")
