"""One problem's run folder (the run store's files) read into a plain dict for the page.

A problem folder holds ``candidates.jsonl`` and ``verdicts.jsonl`` as
:class:`patchswarm.tasks.engine.store.RunStore` writes them, and, once finished, ``summary.json``
(repairs), ``judge.json`` (tie-break scores), ``best.patch``; SWE-bench instances add
``result.json``, ``eval.jsonl``, ``repro.json`` and ``baseline.json``; proofs keep their
Coq file under ``proof`` instead of ``patch``. Everything here only reads.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from patchswarm.agent.metrics import pass_at_k
from patchswarm.agent.ranking import Group, rank
from patchswarm.tasks.engine.store import RunStore, read_jsonl
from patchswarm.tasks.engine.verification import mark
from patchswarm.verifiers.verdict import Verdict

LOG_TAIL = 20_000
"""Characters of a sandbox log kept for the page (the end, where the failures are)."""

UNPARSABLE = "unparsable"
PENDING = "pending"


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def finished(folder: Path, marker: str = "summary.json") -> bool:
    """A run is done when its summary is newer than everything the run writes as it goes: a
    rerun that crashed leaves an older summary behind, and that is not done."""
    done = _mtime(folder / marker)
    if not done:
        return False
    latest = max(_mtime(folder / n) for n in ("run.json", "candidates.jsonl",
                                             "verdicts.jsonl", "events.jsonl"))
    return done >= latest


def _decider(a: Group, b: Group) -> tuple[str, str, str]:
    """The first key of the ranking's order (verified, votes, judge, smaller diff) on which
    ``a`` and ``b`` differ, and how each side reads it."""
    if (a.status == "passed") != (b.status == "passed"):
        return "verified", "verified", "not verified"
    if a.votes != b.votes:
        return "votes", f"{a.votes} votes", f"{b.votes} votes"
    aj, bj = a.judge or 0.0, b.judge or 0.0
    if aj != bj:
        return "judge", f"judge {aj:.3f}", f"judge {bj:.3f}"
    if a.diff_size != b.diff_size:
        return "size", f"{a.diff_size} lines changed", f"{b.diff_size} lines changed"
    return "tie", "", ""


def why_ranked(ranked: list[Group], i: int) -> str:
    """Why the group at ``ranked[i]`` sits where it does, in the ranking's own order: verified
    first, then votes, then the judge's score, then the smaller diff, then first seen."""
    g = ranked[i]
    if len(ranked) == 1:
        return "the only distinct change"
    if i == 0:
        key, mine, theirs = _decider(g, ranked[1])
        if key == "tie":
            return "tied with #2 on every key: the first seen is chosen"
        return f"first: {mine}, #2 has {theirs}" if key != "verified" else \
            "first: verified, #2 is not"
    above = ranked[i - 1]
    key, theirs, mine = _decider(above, g)
    if key == "tie":
        return f"tied with #{i} on every key; seen later"
    if key == "verified":
        return f"below #{i}: #{i} is verified, this is not"
    return f"below #{i}: {mine} against {theirs}"


def _candidate_status(c: dict[str, Any], verdicts: dict[str, dict[str, Any]]) -> str:
    if not c.get("key") or not (c.get("patch") or c.get("proof")):
        return UNPARSABLE
    v = verdicts.get(c["key"])
    if v is None:
        return PENDING
    return "error" if v.get("status") in ("error", "timeout") else str(v.get("status"))


_REPRO = re.compile(r"repro(?:duction)?_(\d+)")


def _repro(folder: Path, verdicts: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The reproduction tests (issue-only repair, SWE-bench selection): what each did on the
    unpatched code and, per distinct change, what it did after the change. Run folders
    written before reproduction tests replaced scripts keep ``scripts`` and the baseline's
    ``repro`` verdicts; they are read as they were."""
    store = RunStore(folder)
    saved = store.read_json("repro.json") or {}
    if "tests" in saved:
        rows = [(int(t.get("index", i)), t.get("source") or t.get("text") or "",
                 "reproduces" if t.get("kept") else (t.get("reason") or "discarded"),
                 t.get("kept") or [])
                for i, t in enumerate(saved["tests"])]
    else:
        before = (store.read_json("baseline.json") or {}).get("repro") or {}
        rows = [(i, script, (before.get(str(i)) or {}).get("verdict", "not run"), [])
                for i, script in enumerate(saved.get("scripts") or [])]
    out = []
    for i, script, verdict, kept in rows:
        after: dict[str, str] = {}
        for key, v in verdicts.items():
            tests = v.get("tests") or {}
            if kept:
                outcomes = [tests.get(t, "NOT RUN") for t in kept]
                passed = sum(o in ("PASSED", "XFAIL") for o in outcomes)
                after[key] = "PASSED" if passed == len(kept) else \
                    (f"{passed}/{len(kept)} passed" if passed else outcomes[0])
                continue
            for test, outcome in tests.items():
                m = _REPRO.search(test)
                if m and int(m.group(1)) == i:
                    after[key] = outcome
        out.append({"index": i, "script": script, "before": verdict, "after": after})
    return out


def read_problem(folder: Path, pid: str | None = None) -> dict[str, Any]:
    """Everything the page shows of one problem's folder; works on a run still going."""
    folder = Path(folder)
    store = RunStore(folder)
    run = store.read_json("run.json") or {}
    summary = store.read_json("summary.json")
    judge = store.read_json("judge.json") or {}
    cands = sorted(store.candidates(), key=lambda c: (c.get("round", 0), c.get("index", 0)))
    verdicts = store.verdicts()
    evals = {e["key"]: e for e in read_jsonl(folder / "eval.jsonl") if e.get("key")}
    result = store.read_json("result.json")

    groups: dict[str, Group] = {}
    for c in cands:
        body = c.get("patch") or c.get("proof")
        if c.get("key") and body:
            g = groups.setdefault(c["key"], Group(c["key"], body))
            g.members.append(c["id"])
    for g in groups.values():
        if g.key in verdicts:
            mark(g, Verdict.from_dict(verdicts[g.key]))
        g.judge = judge.get(g.key)
    ranked = rank(list(groups.values()))

    lang = "coq" if any(c.get("proof") for c in cands) else "diff"
    out_groups = []
    for i, g in enumerate(ranked):
        v = verdicts.get(g.key, {})
        ev = evals.get(g.key)
        out_groups.append({
            "key": g.key, "rank": i + 1, "votes": g.votes, "status": g.status or PENDING,
            "judge": g.judge, "why": why_ranked(ranked, i),
            "text": g.patch, "lang": lang, "diff_size": g.diff_size, "members": g.members,
            "detail": str(v.get("detail", "")), "tests": v.get("tests") or {},
            "log": str(v.get("log", ""))[-LOG_TAIL:], "seconds": v.get("seconds"),
            "verifier": v.get("verifier", ""), "cached": bool((v.get("extra") or {})
                                                              .get("cached")),
            "eval": ({"resolved": ev.get("resolved"), "status": ev.get("status"),
                      "error": ev.get("error"), "tests_status": ev.get("tests_status")}
                     if ev else None),
        })

    out_cands = []
    for c in cands:
        out_cands.append({
            "id": c["id"], "index": c.get("index"), "round": c.get("round", 0),
            "key": c.get("key"), "status": _candidate_status(c, verdicts),
            "error": c.get("error"), "text": c.get("text", ""), "seed": c.get("seed"),
            "prompt_tokens": c.get("prompt_tokens", 0),
            "completion_tokens": c.get("completion_tokens", 0),
            "finish_reason": c.get("finish_reason"), "model": c.get("model", ""),
        })

    n = len(cands)
    passed_samples = sum(1 for c in out_cands if c["status"] == "passed")
    timings: dict[str, float] = {}
    for e in store.events():
        timings[e["stage"]] = round(timings.get(e["stage"], 0.0) + float(e["seconds"]), 3)
    tokens = {"prompt": sum(int(c.get("prompt_tokens", 0)) for c in cands[:1]),
              "completion": sum(int(c.get("completion_tokens", 0)) for c in cands)}
    is_done = finished(folder) or finished(folder, "result.json")
    verified = sum(1 for g in ranked if g.status == "passed")
    if result is not None and result.get("status") == "error":
        status = "error"
    elif not is_done:
        status = "running"
    elif result is not None and result.get("resolved") is not None:
        status = "solved" if result.get("resolved") else "unsolved"
    else:
        status = "solved" if ranked and ranked[0].status == "passed" else "unsolved"
    problem = run.get("problem") or {}
    return {
        "id": pid or run.get("id") or problem.get("id") or folder.name,
        "folder": str(folder), "status": status, "done": is_done, "lang": lang,
        "counts": {"samples": n, "parsed": sum(1 for c in out_cands
                                               if c["status"] != UNPARSABLE),
                   "distinct": len(ranked), "checked": sum(1 for g in ranked
                                                           if g.key in verdicts),
                   "verified": verified, "passed_samples": passed_samples},
        "tokens": tokens, "timings": timings,
        "curve": [[k, round(pass_at_k(n, passed_samples, k), 4)] for k in range(1, n + 1)],
        "cost": cost_split(n, len([g for g in ranked if g.key in verdicts]), timings, verdicts),
        "groups": out_groups, "candidates": out_cands,
        "info": _info(run, problem, summary, result),
        "issue": problem.get("issue", ""),
        "best_patch": (folder / "best.patch").read_text() if (folder / "best.patch").exists()
        else None,
        "repro": _repro(folder, verdicts),
        "error": (result or {}).get("error"),
    }


def _info(run: dict[str, Any], problem: dict[str, Any], summary: dict[str, Any] | None,
          result: dict[str, Any] | None) -> dict[str, str]:
    """A few facts a person wants next to the counts, as label → text."""
    info: dict[str, str] = {}
    for label, value in (("repository", problem.get("repo")),
                         ("commit", (problem.get("base_commit") or "")[:12]),
                         ("test command", problem.get("test_command")),
                         ("statement", run.get("path"))):
        if value:
            info[label] = str(value)
    settings = run.get("settings") or {}
    for k in ("n", "temperature", "strategy", "rounds", "seed", "model"):
        if settings.get(k) is not None:
            info[k] = str(settings[k])
    if summary and summary.get("tied", 0) > 1:
        info["tie"] = f"{summary['tied']} changes tied at the top; the first is chosen"
    if summary and summary.get("errors"):
        info["no usable edit"] = ", ".join(f"{k} ×{v}" for k, v in summary["errors"].items())
    if result:
        for k in ("resolved", "eval_status", "eval_error", "repo", "version"):
            if result.get(k) is not None:
                info[k.replace("_", " ")] = str(result[k])
        for note in result.get("notes") or []:
            info.setdefault("notes", "")
            info["notes"] += ("; " if info["notes"] else "") + str(note)
    return info


def cost_split(samples: int, checked: int, timings: dict[str, float],
               verdicts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """C(S, V) = S·(1 + λ·V) as :mod:`patchswarm.agent.budget` counts it, in units of one
    sample: λ is one verification's sandbox seconds over one sample's share of the sampling
    time, V the verifications per sample (distinct changes are checked once, so V ≤ 1)."""
    sampling = timings.get("sampling", 0.0)
    secs = [float(v.get("seconds") or 0.0) for v in verdicts.values()
            if not (v.get("extra") or {}).get("cached")]
    lam = None
    if samples and sampling > 0 and secs:
        lam = (sum(secs) / len(secs)) / (sampling / samples)
    v_per = checked / samples if samples else 0.0
    total = samples * (1.0 + lam * v_per) if lam is not None else None
    return {"S": samples, "verifications": checked, "V": round(v_per, 4),
            "lambda": None if lam is None else round(lam, 4),
            "C": None if total is None else round(total, 3),
            "sampling_share": None if not total else round(samples / total, 4),
            "sampling_seconds": round(sampling, 3),
            "verify_seconds": round(sum(secs), 3)}
