"""Run folders of every kind read into one plain shape for the page.

Kinds, told apart by the files they hold:

- ``repair``: one problem's run store (``candidates.jsonl``, ``run.json`` with a problem);
- ``runs``: a folder of repair runs, one sub-folder each (``patchswarm demo``);
- ``batch``: a batch work folder (``runs/<id>/`` and ``results/<id>.json``);
- ``swebench``: a SWE-bench run (``instances/<id>/``, ``report.json``);
- ``prove``: Coq statements, one sub-folder each (``run.json`` names the ``statements``);
- ``solve``: math strategies (``results.jsonl``).

Every kind becomes ``{"kind", "path", "title", "done", "overview", "curves", "problems"}``;
a problem is what :func:`patchswarm.tasks.viewer.problem.read_problem` returns.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from patchswarm.agent.metrics import coverage_curve
from patchswarm.tasks.engine.store import RunStore, read_jsonl
from patchswarm.tasks.viewer.problem import _mtime, cost_split, finished, read_problem

KINDS = ("repair", "runs", "batch", "swebench", "prove", "solve")
_SKIP_DIRS = {"clones", "repos", "eval", ".git", "patches", "logs"}


class ViewError(Exception):
    """The path is not a run folder the viewer can read; the message says what it is."""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def detect_kind(path: Path) -> str:
    path = Path(path)
    if not path.exists():
        raise ViewError(f"{path} does not exist")
    if not path.is_dir():
        raise ViewError(f"{path} is a file; give the run folder that holds it")
    run = _read_json(path / "run.json") or {}
    if (path / "candidates.jsonl").exists() or "problem" in run:
        return "repair"
    if (path / "instances").is_dir():
        return "swebench"
    if (path / "runs").is_dir() and (path / "results").is_dir():
        return "batch"
    if "statements" in run:
        return "prove"
    if (path / "results.jsonl").exists() or (path / "samples.jsonl").exists():
        return "solve"
    if any((p / "candidates.jsonl").exists() or (p / "run.json").exists()
           for p in _subdirs(path)):
        return "runs"
    raise ViewError(f"{path} is not a run folder: it holds no candidates.jsonl, run.json, "
                    "runs/ (batch) or instances/ (SWE-bench)")


def _subdirs(path: Path) -> list[Path]:
    try:
        return sorted(p for p in path.iterdir() if p.is_dir() and p.name not in _SKIP_DIRS)
    except OSError:
        return []


def version(path: Path) -> str:
    """Changes whenever a file the page reads changes (size or time), so the page knows when
    to fetch the data again."""
    h = hashlib.sha256()
    base = Path(path)
    for root, dirs, files in os.walk(base):
        depth = len(Path(root).relative_to(base).parts)
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and depth < 3)
        for f in sorted(files):
            if f.endswith((".json", ".jsonl", ".patch")) and not f.startswith("."):
                try:
                    st = os.stat(os.path.join(root, f))
                except OSError:
                    continue
                h.update(f"{root}/{f}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def load(path: Path | str) -> dict[str, Any]:
    """The whole page's data for a run folder of any kind."""
    path = Path(path).resolve()
    kind = detect_kind(path)
    if kind == "repair":
        problems = [read_problem(path)]
    elif kind == "runs":
        problems = [read_problem(p) for p in _subdirs(path)
                    if (p / "candidates.jsonl").exists() or (p / "run.json").exists()]
    elif kind == "batch":
        problems = _batch(path)
    elif kind == "swebench":
        problems = _swebench(path)
    elif kind == "prove":
        problems = _prove(path)
    else:
        return _solve(path)
    done = _container_done(path, kind, problems)
    return {"kind": kind, "path": str(path), "title": _title(path, kind), "done": done,
            "version": version(path), "overview": overview(problems),
            "curves": [{"label": "coverage (unbiased pass@k)", "xlabel": "k (samples)",
                        "ylabel": "pass@k", "series": _curves(problems)}],
            "problems": problems}


def _title(path: Path, kind: str) -> str:
    names = {"repair": "repair", "runs": "repair runs", "batch": "batch",
             "swebench": "SWE-bench run", "prove": "proofs", "solve": "math strategies"}
    return f"{names[kind]}: {path.name}"


def _container_done(path: Path, kind: str, problems: list[dict[str, Any]]) -> bool:
    if kind == "repair":
        return bool(problems and problems[0]["done"])
    marker = {"batch": "summary.json", "swebench": "report.json", "prove": "report.json"}
    name = marker.get(kind)
    if name and _mtime(path / name) < max([_mtime(path / "run.json")] + [
            _mtime(Path(p["folder"]) / "candidates.jsonl") for p in problems]):
        return False
    return all(p["done"] or p["status"] == "error" for p in problems)


def overview(problems: list[dict[str, Any]]) -> dict[str, Any]:
    counts = {k: sum(p["counts"][k] for p in problems)
              for k in ("samples", "parsed", "distinct", "checked", "verified",
                        "passed_samples")}
    timings: dict[str, float] = {}
    for p in problems:
        for k, v in p["timings"].items():
            timings[k] = round(timings.get(k, 0.0) + v, 3)
    verdict_secs = [(g.get("seconds") or 0.0) for p in problems for g in p["groups"]
                    if g["status"] != "pending" and not g.get("cached")]
    return {
        "problems": len(problems),
        "solved": sum(p["status"] == "solved" for p in problems),
        "unsolved": sum(p["status"] == "unsolved" for p in problems),
        "running": sum(p["status"] == "running" for p in problems),
        "errors": sum(p["status"] == "error" for p in problems),
        "counts": counts,
        "tokens": {k: sum(p["tokens"][k] for p in problems) for k in ("prompt", "completion")},
        "timings": timings,
        "cost": cost_split(counts["samples"], counts["checked"], timings,
                           {str(i): {"seconds": s} for i, s in enumerate(verdict_secs)}),
    }


def _curves(problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    counts = [(p["counts"]["samples"], p["counts"]["passed_samples"]) for p in problems
              if p["counts"]["samples"] and p["status"] != "error"]
    if not counts:
        return []
    n_min = min(n for n, _ in counts)
    curve = coverage_curve(counts, list(range(1, n_min + 1)))
    label = "all problems" if len(counts) > 1 else problems[0]["id"]
    return [{"name": label, "points": [[k, round(v, 4)] for k, v in curve]}]


def _batch(path: Path) -> list[dict[str, Any]]:
    rows = {p.stem: _read_json(p) or {} for p in sorted((path / "results").glob("*.json"))}
    ids = list(dict.fromkeys([p.name for p in _subdirs(path / "runs")] + list(rows)))
    out = []
    for pid in ids:
        folder = path / "runs" / pid
        prob = read_problem(folder, pid) if folder.is_dir() else _empty(pid, folder)
        row = rows.get(pid)
        if row and row.get("status") == "error":
            prob["status"], prob["error"] = "error", row.get("error")
        if row and row.get("branch"):
            prob["info"]["branch"] = f"{row['branch']} ({(row.get('commit') or '')[:12]})"
        out.append(prob)
    return out


def _swebench(path: Path) -> list[dict[str, Any]]:
    run = _read_json(path / "run.json") or {}
    names = {p.name: p for p in _subdirs(path / "instances")}
    out = []
    for iid in run.get("instances") or sorted(names):
        folder = path / "instances" / iid
        if not folder.is_dir():
            folder = names.get(iid.replace("/", "_"), folder)
        prob = read_problem(folder, iid) if folder.is_dir() else _empty(iid, folder)
        out.append(prob)
    return out


def _prove(path: Path) -> list[dict[str, Any]]:
    run = _read_json(path / "run.json") or {}
    out = []
    for sid in run.get("statements") or []:
        folder = path / sid.replace("/", "__")
        prob = read_problem(folder, sid) if folder.is_dir() else _empty(sid, folder)
        prob["done"] = folder.is_dir() and bool(read_jsonl(folder / "verdicts.jsonl")) \
            and prob["counts"]["checked"] == prob["counts"]["distinct"]
        if prob["done"]:
            prob["status"] = "solved" if prob["counts"]["verified"] else "unsolved"
        if any(g["detail"].startswith("statement does not compile") for g in prob["groups"]):
            prob["status"] = "error"
            prob["error"] = "the statement does not compile on its own"
        out.append(prob)
    return out


def _empty(pid: str, folder: Path) -> dict[str, Any]:
    """A problem whose folder does not exist yet: pending."""
    return {"id": pid, "folder": str(folder), "status": "running", "done": False,
            "lang": "diff", "counts": dict.fromkeys(("samples", "parsed", "distinct", "checked",
                                                     "verified", "passed_samples"), 0),
            "tokens": {"prompt": 0, "completion": 0}, "timings": {}, "curve": [],
            "cost": cost_split(0, 0, {}, {}), "groups": [], "candidates": [], "info": {},
            "issue": "", "best_patch": None, "repro": [], "error": None}


def _solve(path: Path) -> dict[str, Any]:
    """Math strategies: curves of accuracy against cost, one per strategy, and per problem
    each strategy's pick at each budget."""
    from patchswarm.tasks.sources.solve import summarise

    report = summarise(path)
    series = [{"name": name, "points": [[round(p["cost"], 3), round(p["accuracy"], 4)]
                                        for p in s["points"]]}
              for name, s in report["strategies"].items()]
    by_problem: dict[str, list[dict[str, Any]]] = {}
    for r in read_jsonl(path / "results.jsonl"):
        by_problem.setdefault(r["problem"], []).append({
            "strategy": r["strategy"], "budget": r["budget"], "answer": r.get("answer"),
            "gold": r.get("gold"), "accuracy": r.get("accuracy"), "covered": r.get("covered"),
            "cost": r.get("cost"), "tokens": r.get("tokens"),
            "candidates": [{"text": c.get("text", ""), "answer": c.get("answer"),
                            "score": c.get("score")}
                           for c in (r.get("result") or {}).get("candidates", [])]})
    problems = [{"id": pid, "rows": rows,
                 "status": "solved" if any(x["accuracy"] == 1 for x in rows) else "unsolved"}
                for pid, rows in by_problem.items()]
    return {"kind": "solve", "path": str(path), "title": _title(path, "solve"),
            "done": finished(path, "report.json") or _mtime(path / "report.json") >= _mtime(
                path / "results.jsonl") > 0,
            "version": version(path),
            "overview": {"problems": len(problems), "model": report.get("model"),
                         "dataset": report.get("dataset"),
                         "strategies": report["strategies"]},
            "curves": [{"label": "accuracy against budget C(S,V)",
                        "xlabel": "cost per problem (solutions)", "ylabel": "accuracy",
                        "series": series}],
            "problems": problems}


def state(path: Path | str) -> dict[str, Any]:
    """What the page polls: the folder's version and the counts, cheap to answer."""
    path = Path(path).resolve()
    return {"version": version(path), "path": str(path)}


__all__ = ["KINDS", "ViewError", "detect_kind", "load", "state", "version", "RunStore"]
