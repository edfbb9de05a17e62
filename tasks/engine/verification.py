"""Verification of a run's distinct changes: each by its representative patch, in parallel,
each in a fresh sandbox, with verdicts reused only for the exact bytes they were reached on.

``runner.verify`` (in process) and ``Orchestrator.verify`` (on Celery workers) share
:func:`known_verdicts`, and the Celery verify task calls :func:`verify_patch`, so both paths
give the same verdicts.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from patchswarm.agent.ranking import Group
from patchswarm.sandbox.container import Limits, SandboxPool
from patchswarm.tasks.engine.cache import NoCache, VerdictCache, cache_key, patch_digest
from patchswarm.tasks.engine.store import RunStore
from patchswarm.verifiers.unittests import PytestVerifier
from patchswarm.verifiers.verdict import ERROR, Verdict

if TYPE_CHECKING:
    from patchswarm.tasks.engine.runner import RepairSettings, Reporter


@dataclass
class Environment:
    image: str
    files: dict[str, str]
    """Path → text of the files shown to the model."""
    spec: dict[str, Any]
    """The test spec the verifier gets (fail_to_pass / pass_to_pass filled in; ``repro`` in
    issue-only repair)."""
    mode: str = "given tests"
    """What a fix is verified against: ``given tests`` (the project's failing tests) or
    ``reproduction tests`` (model-written, issue-only repair)."""
    repro: Any = None
    """The reproduction tests (``reproduction.ReproOutcome``) in issue-only repair."""


LIMIT_FIELDS = ("memory", "cpus", "pids", "tmp_size", "work_size", "network", "read_only",
                "runtime", "output_limit", "output_kill")
"""The sandbox limits a verdict depends on: they are part of its cache key, and the only ones
a task message may carry (each may only be tightened by it, see ``task_schema``)."""


def limits_record(limits: Limits) -> dict[str, Any]:
    d = asdict(limits)
    return {k: d[k] for k in LIMIT_FIELDS}


def stamp(verdict: Verdict, patch: str) -> Verdict:
    """Record in the verdict which exact patch it is the verdict of."""
    verdict.extra = {**verdict.extra, "patch_sha256": patch_digest(patch)}
    return verdict


def known_verdicts(env: Environment, groups: list[Group], limits: Limits, store: RunStore,
                   cache: VerdictCache, vsettings: dict[str, Any],
                   ) -> tuple[dict[str, Verdict], list[tuple[Group, str]]]:
    """The verdicts already known for ``groups`` (from the run store, then the cache), and
    the groups still to verify with their cache keys.

    A group is verified by its representative, ``Group.patch``: the exact patch that is
    delivered if the group wins. A verdict is reused only when it is the verdict of those very
    bytes: the store's line must name the same patch hash, the cache is keyed by it. The
    other members of a group (same normalised code, other bytes) only add votes; they never
    get a verdict of their own, so nothing they contain is called verified or delivered.
    """
    stored = store.verdicts()
    keys = {g.key for g in groups}
    done = {k: Verdict.from_dict(v) for k, v in stored.items() if k not in keys}
    todo: list[tuple[Group, str]] = []
    for g in groups:
        if g.key in done or any(g.key == t.key for t, _ in todo):
            continue
        digest = patch_digest(g.patch)
        line = stored.get(g.key)
        if line is not None and (line.get("extra") or {}).get("patch_sha256") == digest:
            done[g.key] = Verdict.from_dict(line)
            continue
        ck = cache_key(env.image, g.patch, vsettings, env.spec, limits_record(limits))
        hit = cache.get(ck)
        if hit is not None:
            v = stamp(Verdict.from_dict(hit), g.patch)
            v.extra = {**v.extra, "cached": True}
            store.add_verdict(g.key, v.to_dict())
            done[g.key] = v
        else:
            todo.append((g, ck))
    return done, todo


def verify(env: Environment, groups: list[Group], settings: RepairSettings, store: RunStore,
           reporter: Reporter, cache: VerdictCache | None = None,
           verifier: PytestVerifier | None = None) -> dict[str, Verdict]:
    """Verify each distinct change once (by its representative patch, see
    :func:`known_verdicts`), in parallel, each in a fresh sandbox."""
    cache = cache or NoCache()
    verifier = verifier or PytestVerifier()
    done, todo = known_verdicts(env, groups, settings.limits, store, cache, verifier.settings())
    if todo:
        reporter.stage(f"verifying {len(todo)} distinct candidates in sandboxes")
        advance = reporter.progress("verify", len(todo))
        t0 = time.monotonic()
        workers = max(1, min(settings.verify_workers, len(todo)))
        with SandboxPool(env.image, size=workers, limits=settings.limits) as pool, \
                ThreadPoolExecutor(workers) as ex:
            futs = {ex.submit(_verify_one, pool, verifier, env.spec, g): (g, ck)
                    for g, ck in todo}
            for fut in as_completed(futs):
                g, ck = futs[fut]
                v = stamp(fut.result(), g.patch)
                store.add_verdict(g.key, v.to_dict())
                cache.put(ck, v.to_dict())
                done[g.key] = v
                advance(1)
        store.event("verification", time.monotonic() - t0, distinct=len(todo),
                    per_candidate=[round(done[g.key].seconds, 3) for g, _ in todo])
    for g in groups:
        mark(g, done[g.key])
    return done


def mark(group: Group, verdict: Verdict) -> None:
    """Copy what ranking needs from a verdict onto its group: the status, how many of the
    project's passing tests it breaks, how many reproduction tests it passes."""
    group.status = verdict.status
    grading = (verdict.extra or {}).get("grading") or {}
    p2p = grading.get("PASS_TO_PASS") or {}
    if "regressions" in grading:
        group.regressions = int(grading["regressions"])
    elif isinstance(p2p.get("failure"), list):
        group.regressions = len(p2p["failure"])
    elif verdict.status == "passed":
        group.regressions = 0
    else:
        group.regressions = None
    group.repro = float(grading.get("repro_score", grading.get("repro_passed")) or 0.0)


def _verify_one(pool: SandboxPool, verifier: PytestVerifier, spec: dict[str, Any],
                group: Group) -> Verdict:
    return verify_patch(pool, verifier, spec, group.patch)


def verify_patch(pool: SandboxPool, verifier: Any, spec: dict[str, Any], patch: str,
                 passthrough: tuple[type[BaseException], ...] = ()) -> Verdict:
    """One candidate in a fresh sandbox from ``pool``; any failure of the machinery becomes an
    error verdict, never a crash. The Celery verify task calls this same function, with the
    task's time-limit exception in ``passthrough`` so that a hang is retried, not judged."""
    t0 = time.monotonic()
    try:
        sb = pool.take()
    except passthrough:
        raise
    except Exception as exc:  # noqa: BLE001
        return Verdict(ERROR, f"sandbox failed to start: {exc}", seconds=time.monotonic() - t0,
                       verifier=verifier.name)
    try:
        return verifier.verify(spec, {"patch": patch}, sb)
    except passthrough:
        raise
    except Exception as exc:  # noqa: BLE001 - one bad candidate never stops the others
        return Verdict(ERROR, f"verifier failed: {type(exc).__name__}: {exc}",
                       seconds=time.monotonic() - t0, verifier=verifier.name)
    finally:
        sb.close()
