"""``swebench eval``: predictions evaluated as the official harness does, its 5.x run report,
and with ``--gold`` the harness's own check: every gold patch resolves, no empty one does.

Every failure is put in one bucket with its reason, as the 5.x report does: an environment
that does not build, a sandbox that does not start or tests that run out of memory are
**infrastructure failures** (``infra_failure_ids``: the harness, not the patch, failed); tests
that time out or a log with no usable result are **ambiguous** (either could be at fault).
Neither is ever counted as unresolved. With ``--gold`` each instance is also timed: the image
build (0 when it was built before), the first test run, and a warm re-run of the gold patch on
the same image (whose verdict must agree, or the instance is flaky).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from patchswarm.sandbox.engine import SandboxError
from patchswarm.tasks.sources.swebench.data import BadRow, InfraError, Instance, InstanceError
from patchswarm.tasks.sources.swebench.patch import (
    EvalResult,
    SWEBenchSettings,
    _folder_name,
    _sha,
    evaluate_patch,
    prepare_environment,
    time_limit,
)
from patchswarm.tasks.sources.swebench.specs import RepoSpec, SpecError, SpecTable
from patchswarm.verifiers import swebench_logs as sl

INFRA, AMBIGUOUS, INPUT, PATCH = "infra", "ambiguous", "input", "patch"


def classify_eval_error(r: EvalResult) -> tuple[str, str]:
    """(bucket, cause) of an evaluation that ended in ``error``."""
    err = r.error or ""
    if err == "patch does not apply":
        return PATCH, "patch does not apply"
    if err.startswith("test_patch does not apply"):
        return INFRA, "test_patch does not apply"
    if err.startswith("sandbox failed"):
        return INFRA, "sandbox"
    if "ran out of memory" in err:
        return INFRA, "out_of_memory"
    if "timed out" in err:
        return AMBIGUOUS, "tests_timed_out"
    m = re.search(r"no usable results \((\w+), (\w+)\)", err)
    if m:
        return (INFRA if m.group(2) == sl.ENVIRONMENT else AMBIGUOUS), m.group(1)
    return AMBIGUOUS, "no test results"


def _cached(folder: Path, patch: str) -> EvalResult | None:
    f = folder / "result.json"
    if f.exists():
        r = EvalResult.from_dict(json.loads(f.read_text()))
        if r.patch_sha == _sha(patch) and r.status != "error":
            return r
    return None


def evaluate_predictions(items: list[Instance | BadRow], predictions: dict[str, dict[str, Any]],
                         specs: SpecTable, settings: SWEBenchSettings, out: Path,
                         gold_check: bool = False,
                         log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Evaluate predictions as the official harness does, writing its per-instance logs and
    its run report. ``gold_check`` also runs each instance with no patch and once more with
    the gold patch (warm), and checks that gold patches resolve and empty ones do not."""
    out = Path(out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    model = next(iter(predictions.values()))["model_name_or_path"] if predictions else "none"
    rows: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()
    say = log or (lambda m: None)

    def run_one(inst: Instance, folder: Path, patch: str, spec: RepoSpec, image: str,
                reuse: bool = True) -> EvalResult:
        r = _cached(folder, patch) if reuse else None
        if r is None:
            r = evaluate_patch(inst, spec, image, patch, settings.limits(),
                               time_limit(settings, spec), folder)
            (folder / "result.json").write_text(json.dumps(r.to_dict(), indent=2))
        return r

    def fail(row: dict[str, Any], bucket: str, cause: str, reason: str) -> None:
        row.update(status="error", bucket=bucket, cause=cause, reason=reason)

    def one(item: Instance | BadRow) -> None:
        if isinstance(item, BadRow):
            if gold_check or item.instance_id in predictions:
                row: dict[str, Any] = {"repo": "", "submitted": True}
                fail(row, INPUT, "bad dataset row", item.error)
                with lock:
                    rows[item.instance_id] = row
            return
        pred = predictions.get(item.instance_id)
        if pred is None:
            return
        row = {"repo": item.repo, "version": item.version, "submitted": True, "timings": {}}
        with lock:
            rows[item.instance_id] = row
        patch = pred["model_patch"]
        if gold_check and not patch.strip():
            return fail(row, INPUT, "no gold patch", "the dataset row has no gold patch")
        if not patch.strip():
            row["status"] = "empty_patch"
            return
        folder = logs / _folder_name(item.instance_id)
        try:
            spec = specs.get(item.repo, item.version)
            t0 = time.monotonic()
            env = prepare_environment(item, spec, settings, say)
            row["timings"]["image_build"] = round(time.monotonic() - t0, 1)
            row["python"] = env.python.to_dict()
            r = run_one(item, folder, patch, spec, env.image)
            row["timings"]["first_run"] = r.seconds
            if gold_check and r.status != "error":
                e = run_one(item, folder / "empty", "", spec, env.image)
                row["empty_resolved"] = e.resolved
                row["empty_status"] = e.status
                if e.status == "error":
                    row["empty_error"] = e.error
                w = run_one(item, folder / "warm", patch, spec, env.image, reuse=False)
                row["timings"]["warm_rerun"] = w.seconds
                row["timings"]["warm_test_command"] = w.test_seconds
                row["warm_resolved"] = w.resolved
        except InfraError as exc:
            return fail(row, INFRA, exc.cause, str(exc))
        except SpecError as exc:
            return fail(row, INPUT, "no spec", str(exc))
        except InstanceError as exc:
            return fail(row, INPUT, "repository", str(exc))
        except SandboxError as exc:
            return fail(row, INFRA, "sandbox", str(exc))
        except Exception as exc:  # noqa: BLE001 - one instance never stops the others
            return fail(row, INFRA, "internal", f"{type(exc).__name__}: {exc}")
        row["tests_status"] = r.tests_status
        if r.status == "error":
            bucket, cause = classify_eval_error(r)
            return fail(row, bucket, cause, r.error or "error")
        row["status"] = r.status
        row["resolved"] = r.resolved
        if r.error:  # graded unresolved, and flagged as the 5.x report does
            bucket, cause = classify_eval_error(r)
            row.update(reason=r.error, cause=cause,
                       bucket=bucket if cause != "no test results" else AMBIGUOUS)
        say(f"[{item.instance_id}] {r.status}")

    with ThreadPoolExecutor(max(1, settings.workers)) as ex:
        list(ex.map(one, items))
    report = run_report(items, predictions, rows, model, settings.run_id, gold_check)
    name = re.sub(r"[^\w.\-]", "_", model)
    (out / f"{name}.{settings.run_id}.json").write_text(json.dumps(report, indent=2))
    (out / "report.json").write_text(json.dumps(report, indent=2))
    if gold_check:
        (out / "gold_table.md").write_text(gold_table(report))
    return report


def run_report(items: list[Instance | BadRow], predictions: dict[str, dict[str, Any]],
               rows: dict[str, dict[str, Any]], model: str, run_id: str,
               gold_check: bool) -> dict[str, Any]:
    """The official 5.x run report, plus ``errors`` (reasons) and per-instance rows."""
    ids = [x.instance_id for x in items]
    with_status = {i: r for i, r in rows.items() if i in ids}

    def where(pred: Callable[[dict[str, Any]], bool]) -> list[str]:
        return sorted(i for i, r in with_status.items() if pred(r))

    completed = where(lambda r: r.get("status") in ("resolved", "unresolved"))
    errors = where(lambda r: r.get("status") == "error")
    report: dict[str, Any] = {
        "total_instances": len(ids),
        "submitted_instances": len(with_status),
        "completed_instances": len(completed),
        "resolved_instances": len(where(lambda r: r.get("status") == "resolved")),
        "unresolved_instances": len(where(lambda r: r.get("status") == "unresolved")),
        "infra_failure_instances": len(where(lambda r: r.get("bucket") == INFRA)),
        "ambiguous_failure_instances": len(where(lambda r: r.get("bucket") == AMBIGUOUS)),
        "empty_patch_instances": len(where(lambda r: r.get("status") == "empty_patch")),
        "error_instances": len(errors),
        "completed_ids": completed,
        "incomplete_ids": sorted(i for i in ids if i not in predictions and i not in rows),
        "empty_patch_ids": where(lambda r: r.get("status") == "empty_patch"),
        "submitted_ids": sorted(with_status),
        "resolved_ids": where(lambda r: r.get("status") == "resolved"),
        "unresolved_ids": where(lambda r: r.get("status") == "unresolved"),
        "infra_failure_ids": where(lambda r: r.get("bucket") == INFRA),
        "ambiguous_failure_ids": where(lambda r: r.get("bucket") == AMBIGUOUS),
        "failure_reasons": {i: r["cause"] for i, r in sorted(with_status.items())
                            if r.get("cause")},
        "error_ids": errors,
        "schema_version": 2,
        "errors": {i: with_status[i]["reason"] for i in errors},
        "unresolved_reasons": {i: r["reason"] for i, r in sorted(with_status.items())
                               if r.get("status") == "unresolved" and r.get("reason")},
        "python_mapped": {i: r["python"]["note"] for i, r in sorted(with_status.items())
                          if r.get("python") and not r["python"].get("exact", True)},
        "model_name_or_path": model,
        "run_id": run_id,
        "instances": {i: with_status[i] for i in sorted(with_status)},
    }
    if gold_check:
        check = {}
        for i, r in sorted(with_status.items()):
            if r.get("status") in ("resolved", "unresolved") and "empty_resolved" in r:
                check[i] = {"gold_resolved": r["status"] == "resolved",
                            "empty_resolved": r["empty_resolved"],
                            "warm_agrees": r.get("warm_resolved") == (r["status"] == "resolved"),
                            "ok": r["status"] == "resolved" and not r["empty_resolved"]}
        report["gold_check"] = check
        # Passed only when every instance was checked and every check holds: an instance
        # that errored is an instance the harness could not vouch for.
        report["harness_ok"] = bool(check) and not errors and len(check) == len(with_status) \
            and all(c["ok"] for c in check.values())
    return report


def gold_table(report: dict[str, Any]) -> str:
    """The gold-validation table by repository (markdown)."""
    by_repo: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for iid, r in report.get("instances", {}).items():
        by_repo.setdefault(r.get("repo") or "(bad rows)", []).append((iid, r))
    lines = ["| repository | instances | gold resolves | empty does not | both (ok) | "
             "infra failures (cause) | other failures (cause) | image build s | first run s "
             "| warm rerun s (test command s) |",
             "| --- | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: |"]

    def mean(values: list[float]) -> str:
        return f"{sum(values) / len(values):.1f}" if values else "-"

    for repo in sorted(by_repo):
        rs = [r for _, r in by_repo[repo]]
        gold = sum(1 for r in rs if r.get("status") == "resolved")
        empty_no = sum(1 for r in rs if "empty_resolved" in r and not r["empty_resolved"])
        ok = sum(1 for i, _ in by_repo[repo] if report.get("gold_check", {}).get(i, {})
                 .get("ok"))

        def causes(bucket_test: Callable[[str], bool], rs: list[dict] = rs) -> str:
            counts: dict[str, int] = {}
            for r in rs:
                if r.get("status") == "error" and bucket_test(r.get("bucket", "")):
                    counts[r["cause"]] = counts.get(r["cause"], 0) + 1
            return ", ".join(f"{c} ×{n}" for c, n in sorted(counts.items())) or "-"

        t = [r.get("timings", {}) for r in rs]
        lines.append(
            f"| {repo} | {len(rs)} | {gold} | {empty_no} | {ok} | "
            f"{causes(lambda b: b == INFRA)} | {causes(lambda b: b != INFRA)} | "
            f"{mean([x['image_build'] for x in t if 'image_build' in x])} | "
            f"{mean([x['first_run'] for x in t if 'first_run' in x])} | "
            f"{mean([x['warm_rerun'] for x in t if 'warm_rerun' in x])} "
            f"({mean([x['warm_test_command'] for x in t if 'warm_test_command' in x])}) |")
    lines.append("")
    for iid, r in report.get("instances", {}).items():
        if r.get("status") == "error":
            lines.append(f"- {iid}: {r.get('bucket')} / {r.get('cause')}: {r.get('reason')}")
        elif iid in report.get("gold_check", {}) and not report["gold_check"][iid]["ok"]:
            lines.append(f"- {iid}: gold {r.get('status')}, empty "
                         f"{'resolves' if r.get('empty_resolved') else r.get('empty_status')}")
    return "\n".join(lines) + "\n"


def gold_predictions(items: list[Instance | BadRow]) -> dict[str, dict[str, Any]]:
    return {x.instance_id: {"instance_id": x.instance_id, "model_name_or_path": "gold",
                            "model_patch": x.patch}
            for x in items if isinstance(x, Instance)}
