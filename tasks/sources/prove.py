"""Coq theorem statements, proved by repeated sampling and checked with the Coq verifier in a
sandbox; coverage (some sample proves it) reported against the number of samples.

A run is a folder, resumable: ``run.json`` (what was asked), and one folder per statement with
``candidates.jsonl`` (each sample, its whole ``.v`` file and that file's key) and
``verdicts.jsonl`` (one verdict per distinct proof, by key) as the run store writes them, so
:func:`patchswarm.tasks.engine.run_metrics.coverage_plot` reads it too. ``report.json``,
``report.md`` and ``coverage.png`` sum it up.

A statement that does not compile on its own (with ``Proof. Admitted.``) is reported as such,
not as a failed proof, and is left out of coverage.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patchswarm.agent.metrics import coverage, coverage_curve, pass_at_k
from patchswarm.agent.proof_prompts import ProofFormatError, proof_file, proof_messages
from patchswarm.agent.sampler import Sampler, SamplerError, SamplingParams
from patchswarm.tasks.engine.problem import ProblemError
from patchswarm.tasks.engine.runner import Reporter
from patchswarm.tasks.engine.store import RunStore

STATEMENT_BROKEN = "statement does not compile"


@dataclass
class CoqStatement:
    id: str
    source: str
    name: str | None
    path: str = ""

    def problem(self) -> dict[str, Any]:
        return {"source": self.source, "name": self.name}


def load_coq_dataset(folder: Path | str, ids: list[str] | None = None,
                     limit: int | None = None) -> list[CoqStatement]:
    """The ``.v`` files of ``folder`` (and its sub-folders, e.g. miniF2F's ``test/`` and
    ``valid/``), sorted; the id is the file's stem (prefixed by its sub-folder when stems
    repeat). A file stating several theorems is about the one named like the file."""
    from patchswarm.verifiers.coq import CoqVerifier

    folder = Path(folder)
    if not folder.is_dir():
        raise ProblemError(f"dataset folder {folder} not found: give a folder of Coq .v files, "
                           "each stating one theorem")
    files = sorted(folder.rglob("*.v"))
    if not files:
        raise ProblemError(f"{folder} holds no .v files")
    stems = [f.stem for f in files]
    hook = CoqVerifier()
    out = []
    for f in files:
        rel = f.relative_to(folder)
        pid = f.stem if stems.count(f.stem) == 1 else "/".join(rel.with_suffix("").parts)
        text = f.read_text()
        out.append(CoqStatement(pid, text, hook.problem_from_file(text, str(f))["name"],
                                str(rel)))
    if ids:
        by_id = {s.id: s for s in out}
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise ProblemError(f"unknown statements {unknown}; e.g. "
                               f"{', '.join(list(by_id)[:5])}")
        out = [by_id[i] for i in ids]
    return out[:limit] if limit else out


@dataclass
class ProveSettings:
    n: int = 8
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 1024
    seed: int = 0
    timeout: float = 60.0
    """Seconds one coqc run may take."""
    workers: int = 2
    """Proofs checked at once (one sandbox each)."""
    memory: str = "2g"


def proof_key(text: str) -> str:
    """Proofs equal up to whitespace are one proof, checked once."""
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:32]


def sample_proofs(statement: CoqStatement, sampler_factory: Callable[[], Sampler],
                  settings: ProveSettings, store: RunStore) -> list[dict[str, Any]]:
    """The candidates of one statement, sampling only those still missing from the store
    (the sampler is made only then)."""
    have = sorted(store.candidates(), key=lambda c: c["index"])
    missing = settings.n - len(have)
    if missing <= 0:
        return have[:settings.n]
    sampler = sampler_factory()
    params = SamplingParams(n=missing, temperature=settings.temperature, top_p=settings.top_p,
                            max_tokens=settings.max_tokens, seed=settings.seed + len(have))
    comps = sampler.sample(proof_messages(statement.source, statement.name), params)
    for i, c in enumerate(comps):
        index = len(have) + i
        try:
            proof, error = proof_file(statement.source, c.text, statement.name), None
        except ProofFormatError as exc:
            proof, error = None, str(exc)
        cand = {"id": f"{statement.id}/{index}", "problem_id": statement.id, "index": index,
                "text": c.text, "proof": proof, "key": proof_key(proof) if proof else None,
                "error": error, "model": getattr(sampler, "model", ""),
                "params": params.to_dict(), "seed": c.seed, "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens, "finish_reason": c.finish_reason}
        store.add_candidate(cand)
        have.append(cand)
    return have


def verify_proofs(statement: CoqStatement, candidates: list[dict[str, Any]], store: RunStore,
                  verifier: Any, take_sandbox: Callable[[], Any], workers: int,
                  ) -> dict[str, dict[str, Any]]:
    """Check each distinct proof not checked yet; returns every verdict by key."""
    verdicts = store.verdicts()
    todo: dict[str, str] = {}
    for c in candidates:
        if c.get("key") and c["key"] not in verdicts and c["key"] not in todo:
            todo[c["key"]] = c["proof"]

    def one(key: str) -> dict[str, Any]:
        sb = take_sandbox()
        try:
            v = verifier.verify(statement.problem(), {"proof": todo[key]}, sb).to_dict()
        except Exception as exc:  # noqa: BLE001 - one broken check never stops the run
            v = {"status": "error", "detail": f"{type(exc).__name__}: {exc}"}
        finally:
            sb.close()
        v["log"] = str(v.get("log", ""))[-4000:]
        store.add_verdict(key, v)
        return v

    keys = list(todo)
    if keys:
        with ThreadPoolExecutor(max(1, min(workers, len(keys)))) as ex:
            for k, v in zip(keys, ex.map(one, keys), strict=True):
                verdicts[k] = {"key": k, **v}
    return verdicts


def statement_status(verdicts: dict[str, dict[str, Any]]) -> str | None:
    """``STATEMENT_BROKEN`` when the verifier found the statement itself does not compile."""
    for v in verdicts.values():
        if str(v.get("detail", "")).startswith(STATEMENT_BROKEN):
            return STATEMENT_BROKEN
    return None


def prove(statements: list[CoqStatement], sampler_factory: Callable[[], Sampler],
          settings: ProveSettings, run_dir: Path, reporter: Reporter | None = None,
          model: str = "", dataset: str = "", image: str | None = None) -> dict[str, Any]:
    """Sample ``settings.n`` proofs per statement, check each distinct one, write the report.

    ``image`` is the Coq sandbox image (built when missing)."""
    from patchswarm.sandbox.container import Limits, SandboxPool
    from patchswarm.verifiers.coq import CoqVerifier, ensure_coq_image

    reporter = reporter or Reporter()
    if settings.n < 1:
        raise ProblemError("-n must be at least 1")
    run_dir = Path(run_dir)
    RunStore(run_dir).write_json("run.json", {
        "dataset": dataset, "model": model, "statements": [s.id for s in statements],
        "settings": {k: v for k, v in settings.__dict__.items()}})
    reporter.stage("the Coq sandbox image")
    image = image or ensure_coq_image(log=reporter.log)
    verifier = CoqVerifier(timeout=settings.timeout)
    limits = Limits(memory=settings.memory, cpus=1.0, pids=256, tmp_size="512m")
    advance = reporter.progress("statements", len(statements))
    errors: dict[str, str] = {}
    with SandboxPool(image, size=max(1, settings.workers), limits=limits) as pool:
        for st in statements:
            store = RunStore(run_dir / _safe(st.id))
            store.write_json("run.json", {"id": st.id, "path": st.path, "name": st.name,
                                          "model": model})
            t0 = time.monotonic()
            try:
                cands = sample_proofs(st, sampler_factory, settings, store)
            except SamplerError as exc:
                errors[st.id] = f"sampling: {exc}"
                reporter.log(f"{st.id}: {exc}")
                advance(1)
                continue
            store.event("sampling", time.monotonic() - t0, samples=len(cands))
            t0 = time.monotonic()
            verdicts = verify_proofs(st, cands, store, verifier, pool.take, settings.workers)
            store.event("verification", time.monotonic() - t0, checked=len(verdicts))
            advance(1)
    return write_prove_report(run_dir, errors)


def _safe(pid: str) -> str:
    return pid.replace("/", "__")


def problem_summary(folder: Path, n: int | None = None) -> dict[str, Any]:
    store = RunStore(folder)
    cands = sorted(store.candidates(), key=lambda c: c["index"])
    if n is not None:
        cands = cands[:n]
    verdicts = store.verdicts()
    status = [verdicts.get(c["key"], {}).get("status") if c.get("key") else None
              for c in cands]
    passed = [i for i, s in enumerate(status) if s == "passed"]
    first = passed[0] if passed else None
    reasons: dict[str, int] = {}
    for c, s in zip(cands, status, strict=True):
        if s == "passed":
            continue
        detail = (verdicts.get(c["key"], {}).get("detail") if c.get("key")
                  else c.get("error")) or "no proof"
        reason = str(detail).split(":")[0]
        reasons[reason] = reasons.get(reason, 0) + 1
    info = store.read_json("run.json") or {}
    return {"id": info.get("id", folder.name), "samples": len(cands),
            "distinct": len({c["key"] for c in cands if c.get("key")}),
            "passed": len(passed), "first_pass": first,
            "statement": statement_status(verdicts) or "ok", "failures": reasons,
            "proof": next((c["proof"] for c, s in zip(cands, status, strict=True)
                           if s == "passed"), None)}


def write_prove_report(run_dir: Path, errors: dict[str, str] | None = None) -> dict[str, Any]:
    """report.json, report.md and coverage.png for a prove run folder."""
    from patchswarm.tasks.sources.solve import plot_against_budget

    run_dir = Path(run_dir)
    info = RunStore(run_dir).read_json("run.json") or {}
    rows = [problem_summary(run_dir / _safe(pid))
            for pid in info.get("statements", []) if (run_dir / _safe(pid)).is_dir()]
    usable = [r for r in rows if r["statement"] == "ok" and r["samples"]]
    counts = [(r["samples"], r["passed"]) for r in usable]
    curve = coverage_curve(counts)
    model = info.get("model") or "model"
    png = plot_against_budget({f"{model}, repeated sampling": curve}, run_dir / "coverage.png",
                              "coverage (unbiased pass@k)", "samples per statement (k)",
                              "proofs checked by Coq: coverage against samples")
    report = {"dataset": info.get("dataset"), "model": info.get("model"),
              "settings": info.get("settings"), "statements": len(rows),
              "checkable": len(usable),
              "statement_broken": [r["id"] for r in rows if r["statement"] != "ok"],
              "coverage": coverage(counts),
              "curve": [[k, round(v, 4)] for k, v in curve],
              "pass_at_1": (sum(pass_at_k(n, c, 1) for n, c in counts) / len(counts)
                            if counts else 0.0),
              "errors": errors or {}, "problems": rows, "plot": str(png)}
    RunStore(run_dir).write_json("report.json", report)
    lines = [f"# patchswarm prove: {report['dataset'] or ''}", "",
             f"- model: {report['model']}",
             f"- statements: {len(rows)}, checkable: {len(usable)}"
             + (f" (not compiling on their own: {', '.join(report['statement_broken'])})"
                if report["statement_broken"] else ""),
             f"- coverage: {report['coverage']:.3f}; pass@k: "
             + ", ".join(f"k={k} {v:.3f}" for k, v in curve),
             f"- plot: `{png.name}`", "",
             "| statement | samples | distinct | proved by | first proof at | why others failed |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        why = ", ".join(f"{k} ×{v}" for k, v in sorted(r["failures"].items()))
        first = "-" if r["first_pass"] is None else str(r["first_pass"] + 1)
        lines.append(f"| {r['id']} | {r['samples']} | {r['distinct']} | {r['passed']} | "
                     f"{first} | {why.replace('|', '/')[:160]} |")
    RunStore(run_dir).write_text("report.md", "\n".join(lines) + "\n")
    return report
