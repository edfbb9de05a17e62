"""``swebench run``: sample, select without ``test_patch``, evaluate with it; resumable, many
instances at once; the run report."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from patchswarm.agent.candidate import Candidate
from patchswarm.agent.metrics import coverage_curve, plot_coverage
from patchswarm.agent.ranking import expected_score, rank, tied_best
from patchswarm.sandbox.engine import SandboxError
from patchswarm.tasks.engine.problem import Problem, ProblemError, read_files
from patchswarm.tasks.engine.runner import (
    Environment,
    RepairSettings,
    Reporter,
    groups_of,
    sample,
    verify,
)
from patchswarm.tasks.engine.store import RunStore, append_jsonl, read_jsonl
from patchswarm.tasks.sources.swebench.data import BadRow, Instance, InstanceError
from patchswarm.tasks.sources.swebench.patch import (
    EvalResult,
    SWEBenchSettings,
    _folder_name,
    evaluate_patch,
    prepare_environment,
    time_limit,
)
from patchswarm.tasks.sources.swebench.select import (
    SamplerFor,
    _baseline,
    context_files,
    related_test_files,
    reproduction,
)
from patchswarm.tasks.sources.swebench.specs import (
    RepoSpec,
    SpecError,
    SpecTable,
    directives_for_files,
    env_prefix,
    test_command,
)
from patchswarm.verifiers.unittests import PytestVerifier
from patchswarm.verifiers.verdict import Verdict


@dataclass
class InstanceResult:
    instance_id: str
    status: str = "done"
    """done / error."""
    error: str | None = None
    repo: str = ""
    version: str = ""
    python: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    model_patch: str = ""
    chosen_key: str | None = None
    resolved: bool | None = None
    eval_status: str | None = None
    eval_error: str | None = None
    samples: int = 0
    parsed: int = 0
    distinct: int = 0
    selection: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    """n samples; c samples resolved (eval_all); c_selection samples passing selection."""
    expected_selected: float | None = None
    tokens: dict[str, int] = field(default_factory=dict)
    sandbox_seconds: float = 0.0
    wall_seconds: float = 0.0
    fingerprint: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InstanceResult:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})



class _Quiet(Reporter):
    def __init__(self, log: Callable[[str], None] | None = None, prefix: str = "") -> None:
        self._log = log
        self.prefix = prefix

    def stage(self, name: str) -> None:
        if self._log:
            self._log(f"{self.prefix}{name}")

    def log(self, msg: str) -> None:
        if self._log:
            self._log(f"{self.prefix}{msg}")



def run_instance(inst: Instance, spec: RepoSpec, settings: SWEBenchSettings, folder: Path,
                 sampler_for: SamplerFor, log: Callable[[str], None] | None = None,
                 verify_fn: Callable[..., dict[str, Verdict]] | None = None) -> InstanceResult:
    """Sample, select without ``test_patch``, evaluate with it. Raises InstanceError (or any
    error of the machinery) for the caller to record."""
    t_start = time.monotonic()
    store = RunStore(folder)
    reporter = _Quiet(log, f"[{inst.instance_id}] ")
    res = InstanceResult(inst.instance_id, repo=inst.repo, version=inst.version,
                         fingerprint=settings.fingerprint())
    store.write_json("instance.json", inst.to_row())

    reporter.stage("environment")
    env = prepare_environment(inst, spec, settings, reporter.log)
    res.python = env.python.to_dict()
    if not env.python.exact:
        res.notes.append(env.python.note)
    res.notes.extend(spec.notes)

    ctx = store.read_json("context.json")
    if ctx and ctx.get("commit") == inst.base_commit:
        files = read_files(str(env.repo_path), inst.base_commit, ctx["files"])
        all_files = ctx["all_files"]
    else:
        files, all_files = context_files(env.repo_path, inst.base_commit,
                                         inst.problem_statement, settings)
        store.write_json("context.json", {"commit": inst.base_commit, "files": list(files),
                                          "all_files": all_files})
    related = related_test_files(all_files, list(files), settings.related_tests)

    problem = Problem(id=inst.instance_id, repo=str(env.repo_path),
                      base_commit=inst.base_commit, issue=inst.problem_statement,
                      test_command="", files=list(files), install=env.install,
                      python=env.python.used, test_timeout=settings.timeout)
    rs = RepairSettings(n=settings.n, temperature=settings.temperature, top_p=settings.top_p,
                        max_tokens=settings.max_tokens, seed=settings.seed, fmt=settings.fmt,
                        verify_workers=settings.verify_workers, base_image=env.base_image,
                        python=env.python.used, ca_bundle=settings.ca_bundle,
                        limits=settings.limits())
    store.write_json("run.json", {"problem": problem.to_dict(),
                                  "settings": {"base_image": env.base_image,
                                               "ca_bundle": settings.ca_bundle,
                                               **settings.fingerprint()}})

    # Sampling: the repairs, then the reproduction tests.
    environment = Environment(env.image, files, {})
    have = [c for c in store.candidates() if c.get("round", 0) == 0]
    if len(have) < settings.n:
        try:
            candidates = sample(problem, environment, sampler_for(inst, "repair"), rs, store,
                                reporter)
        except ProblemError as exc:
            raise InstanceError(f"sampling failed: {exc}") from exc
    else:
        candidates = [Candidate.from_dict(c) for c in have]
    outcome, plan = reproduction(inst, env, spec, files, related, settings, store,
                                 sampler_for, reporter)

    # Selection: the related tests on the unpatched code, then every distinct candidate
    # against those that passed (regressions) and the kept reproduction tests.
    groups = groups_of(candidates)
    base = store.read_json("baseline.json")
    if not base or base.get("image") != env.image or base.get("related") != related:
        reporter.stage(f"baseline: {len(related)} related test files on the unpatched code")
        base = {"image": env.image, "related": related,
                **_baseline(env, spec, related, settings)}
        store.write_json("baseline.json", base)
    p2p = sorted(t for t, o in base["tests"].items() if o in ("PASSED", "XFAIL"))
    use_tests = bool(p2p) and not base["unread"]
    if base["unread"]:
        res.notes.append("related tests dropped from selection: their log has lines the "
                         "parser cannot attribute")
    sel_related = related if use_tests else []
    repro = outcome.spec(plan)
    command = ""
    if sel_related:
        command = env_prefix(spec) + test_command(
            spec, directives_for_files(sel_related, spec.directives))
    sel_spec: dict[str, Any] = {
        "test_command": command, "pass_to_pass": p2p if use_tests else [],
        "test_files": sel_related, "timeout": time_limit(settings, spec),
        "log_format": spec.log_parser}
    if repro:
        sel_spec["repro"] = repro
    summary = outcome.summary()
    res.selection = {"related_tests": related, "used_tests": sel_related,
                     "baseline_passing": len(p2p), "repro_scripts": summary["sampled"],
                     "repro_valid": summary["kept"], "repro_discarded": summary["discarded"],
                     "repro_verdicts": {str(t.index): t.reason or "reproduces"
                                        for t in outcome.tests},
                     "baseline_detail": base.get("detail", "")}
    environment.spec = sel_spec
    if groups and (repro or sel_spec["pass_to_pass"]):
        (verify_fn or verify)(environment, groups, rs, store, reporter, None,
                              verifier=PytestVerifier(reruns=settings.reruns))
        res.selection["signal"] = "tests"
    else:
        res.selection["signal"] = "votes only" if groups else "no usable candidate"
    ranked = rank(groups)
    chosen = ranked[0] if ranked else None
    res.samples = len(candidates)
    res.parsed = sum(1 for c in candidates if c.patch)
    res.distinct = len(groups)
    res.model_patch = chosen.patch if chosen else ""
    res.chosen_key = chosen.key if chosen else None
    res.selection["passed_groups"] = sum(1 for g in groups if g.status == "passed")
    res.selection["tied_at_top"] = len(tied_best(groups))
    store.write_text("chosen.patch", res.model_patch)

    # Evaluation with test_patch: the pick, or every distinct candidate.
    # An evaluation that failed for the machinery's sake (a timeout, a sandbox that did not
    # start) is tried again when the run is resumed, as the official harness does.
    evals = {e["key"]: EvalResult.from_dict(e) for e in read_jsonl(folder / "eval.jsonl")
             if e.get("status") != "error"}
    todo = [g for g in groups if settings.eval_all or g is chosen]
    for g in todo:
        if g.key in evals:
            continue
        reporter.stage(f"evaluating {g.key[:12]} with test_patch")
        e = evaluate_patch(inst, spec, env.image, g.patch, settings.limits(),
                           time_limit(settings, spec), folder / "eval" / g.key[:16])
        append_jsonl(folder / "eval.jsonl", {"key": g.key, **e.to_dict()})
        evals[g.key] = e
    if chosen is not None:
        e = evals[chosen.key]
        res.resolved, res.eval_status, res.eval_error = e.resolved, e.status, e.error
    else:
        res.resolved, res.eval_status = False, "empty_patch"
    res.counts = {"n": len(candidates),
                  "c_selection": sum(g.votes for g in groups if g.status == "passed")}
    if settings.eval_all:
        correct = {k for k, e in evals.items() if e.resolved}
        res.counts["c"] = sum(g.votes for g in groups if g.key in correct)
        res.expected_selected = expected_score(groups, correct) if groups else 0.0

    verdicts = store.verdicts()
    res.sandbox_seconds = round(base.get("seconds", 0.0)
                                + sum(float(v.get("seconds", 0.0)) for v in verdicts.values())
                                + sum(e.seconds for e in evals.values()), 3)
    res.tokens = {"prompt": sum(c.prompt_tokens for c in candidates[:1]) + outcome.prompt_tokens,
                  "completion": sum(c.completion_tokens for c in candidates)
                  + outcome.completion_tokens}
    res.wall_seconds = round(time.monotonic() - t_start, 3)
    return res



def run_swebench(items: list[Instance | BadRow], specs: SpecTable, settings: SWEBenchSettings,
                 out: Path, sampler_for: SamplerFor, log: Callable[[str], None] | None = None,
                 verify_fn: Callable[..., dict[str, Verdict]] | None = None,
                 dataset: str = "") -> dict[str, Any]:
    """Every instance in parallel (``settings.workers``); resumable; returns the report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "instances").mkdir(exist_ok=True)
    t0 = time.monotonic()
    run_settings = {k: (str(v) if isinstance(v, Path) else v)
                    for k, v in asdict(settings).items()}
    (out / "run.json").write_text(json.dumps({"dataset": dataset, "settings": run_settings,
                                              "instances": [x.instance_id for x in items]},
                                             indent=2))

    def one(item: Instance | BadRow) -> InstanceResult:
        if isinstance(item, BadRow):
            return InstanceResult(item.instance_id, status="error", error=item.error)
        folder = out / "instances" / _folder_name(item.instance_id)
        done = folder / "result.json"
        if done.exists():
            prev = InstanceResult.from_dict(json.loads(done.read_text()))
            if prev.status == "done" and prev.fingerprint == settings.fingerprint() \
                    and prev.eval_status != "error":
                return prev
        try:
            spec = specs.get(item.repo, item.version)
            r = run_instance(item, spec, settings, folder, sampler_for, log, verify_fn)
        except (InstanceError, SpecError, ProblemError, SandboxError) as exc:
            r = InstanceResult(item.instance_id, status="error", error=str(exc),
                               repo=item.repo, version=item.version)
        except Exception as exc:  # noqa: BLE001 - one instance never stops the others
            r = InstanceResult(item.instance_id, status="error",
                               error=f"{type(exc).__name__}: {exc}", repo=item.repo,
                               version=item.version)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "result.json").write_text(json.dumps(r.to_dict(), indent=2))
        if log:
            log(f"[{item.instance_id}] " + (f"error: {r.error}" if r.error else
                                           f"resolved: {r.resolved}"))
        return r

    with ThreadPoolExecutor(max(1, settings.workers)) as ex:
        results = list(ex.map(one, items))
    write_predictions(out / "predictions.jsonl", results, settings.model)
    report = run_report(results, settings, dataset, time.monotonic() - t0)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(report_markdown(report))
    _plot(results, settings, out / "coverage.png", report)
    return report


def write_predictions(path: Path, results: list[InstanceResult], model: str) -> None:
    """The official predictions file: one JSON object a line, every instance that ran."""
    with open(path, "w") as fh:
        for r in results:
            if r.status != "done":
                continue
            fh.write(json.dumps({"instance_id": r.instance_id, "model_name_or_path": model,
                                 "model_patch": r.model_patch}) + "\n")


def _counts(results: list[InstanceResult], key: str, n_default: int) -> list[tuple[int, int]]:
    out = []
    for r in results:
        n = r.counts.get("n", 0)
        if r.status != "done" or n == 0:
            out.append((max(1, n_default), 0))
        else:
            out.append((n, r.counts.get(key, 0)))
    return out


def run_report(results: list[InstanceResult], settings: SWEBenchSettings, dataset: str,
               wall: float) -> dict[str, Any]:
    total = len(results)
    done = [r for r in results if r.status == "done"]
    resolved = [r.instance_id for r in done if r.resolved]
    errors = {r.instance_id: r.error for r in results if r.status != "done"}
    errors.update({r.instance_id: f"evaluation failed: {r.eval_error}" for r in done
                   if r.eval_status == "error"})
    report: dict[str, Any] = {
        "dataset": dataset, "model": settings.model, "run_id": settings.run_id,
        "n": settings.n, "total_instances": total, "completed_instances": len(done),
        "resolved_instances": len(resolved),
        "resolved_ids": resolved,
        "unresolved_ids": [r.instance_id for r in done if not r.resolved and r.model_patch
                           and r.instance_id not in errors],
        "empty_patch_ids": [r.instance_id for r in done if not r.model_patch],
        "error_ids": [r.instance_id for r in results if r.instance_id in errors],
        "errors": errors,
        "resolved_rate": round(len(resolved) / total, 4) if total else 0.0,
    }
    sel_counts = _counts(results, "c_selection", settings.n)
    if settings.eval_all:
        counts = _counts(results, "c", settings.n)
        report["coverage"] = round(sum(1 for _, c in counts if c > 0) / total, 4) if total \
            else 0.0
        report["selected_accuracy"] = round(sum(r.expected_selected or 0.0 for r in done)
                                            / total, 4) if total else 0.0
        report["selected_accuracy_basis"] = "expected over ties at the top, every distinct " \
                                            "candidate evaluated with test_patch"
        report["pass_at_k"] = {str(k): round(v, 4) for k, v in coverage_curve(counts)}
    else:
        report["coverage"] = None
        report["selected_accuracy"] = report["resolved_rate"]
        report["selected_accuracy_basis"] = "the chosen patch only (pass --eval-all for " \
                                            "coverage, pass@k and the expectation over ties)"
        report["pass_at_k"] = None
    report["selection_coverage"] = round(sum(1 for _, c in sel_counts if c > 0) / total, 4) \
        if total else 0.0
    report["selection_pass_at_k"] = {str(k): round(v, 4)
                                     for k, v in coverage_curve(sel_counts)}
    report["cost"] = {
        "prompt_tokens": sum(r.tokens.get("prompt", 0) for r in results),
        "completion_tokens": sum(r.tokens.get("completion", 0) for r in results),
        "sandbox_seconds": round(sum(r.sandbox_seconds for r in results), 3),
        "wall_seconds": round(wall, 3),
    }
    report["python"] = {r.instance_id: r.python for r in done if r.python}
    report["python_mapped"] = {r.instance_id: r.python.get("note") for r in done
                               if r.python and not r.python.get("exact", True)}
    report["instances"] = {r.instance_id: {
        k: v for k, v in r.to_dict().items() if k not in ("model_patch", "fingerprint")}
        for r in results}
    return report


def report_markdown(report: dict[str, Any]) -> str:
    total = report["total_instances"]
    lines = [
        f"# SWE-bench run `{report['run_id']}`: {report['model']}",
        "",
        f"- dataset: {report['dataset']}, {total} instances, n = {report['n']} samples each",
        f"- resolved: **{report['resolved_instances']} / {total}** "
        f"({100 * report['resolved_rate']:.1f}%)",
        "- coverage (some sample resolves): "
        + (f"{100 * report['coverage']:.1f}%" if report["coverage"] is not None
           else "not measured (--eval-all)"),
        f"- selected accuracy: {100 * report['selected_accuracy']:.1f}% "
        f"({report['selected_accuracy_basis']})",
        f"- pass@k: {report['pass_at_k']}",
        f"- passes selection (no test_patch): {100 * report['selection_coverage']:.1f}% of "
        f"instances; pass@k {report['selection_pass_at_k']}",
        f"- cost: {report['cost']['prompt_tokens']} prompt + "
        f"{report['cost']['completion_tokens']} completion tokens, "
        f"{report['cost']['sandbox_seconds']:.0f} sandbox seconds, "
        f"{report['cost']['wall_seconds']:.0f} s wall",
        "",
        "| instance | result | python | samples | distinct | selection | note |",
        "| --- | --- | --- | ---: | ---: | --- | --- |",
    ]
    for iid, r in report["instances"].items():
        if r["status"] != "done":
            result, note = "error", str(r["error"]).replace("|", "\\|")[:200]
        else:
            result = ("resolved" if r["resolved"] else r.get("eval_status") or "unresolved")
            note = "; ".join([*(r.get("notes") or []),
                              *([r["eval_error"]] if r.get("eval_error") else [])])
            note = note.replace("|", "\\|")[:200]
        py = r.get("python") or {}
        py_s = (py.get("used", "") if py.get("exact", True)
                else f"{py.get('wanted')}→{py.get('used')}")
        sel = r.get("selection") or {}
        lines.append(f"| {iid} | {result} | {py_s} | {r.get('samples', 0)} | "
                     f"{r.get('distinct', 0)} | {sel.get('passed_groups', '-')} passed "
                     f"({sel.get('signal', '-')}) | {note} |")
    return "\n".join(lines) + "\n"


def _plot(results: list[InstanceResult], settings: SWEBenchSettings, png: Path,
          report: dict[str, Any]) -> None:
    curves = {"passes selection tests (no test_patch)":
              coverage_curve(_counts(results, "c_selection", settings.n))}
    if settings.eval_all:
        curves["resolved with test_patch"] = coverage_curve(_counts(results, "c", settings.n))
    try:
        plot_coverage(curves, png, title=f"SWE-bench coverage against samples "
                                         f"({report['total_instances']} instances)")
    except Exception as exc:  # noqa: BLE001 - a missing plotting backend never loses a run
        report["plot_error"] = str(exc)
