"""``patchswarm swebench run`` and ``patchswarm swebench eval``."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from patchswarm.tasks.cli.main import (
    LazySampler,
    console,
    default_model,
    endpoint_option,
    fail,
    model_option,
    out,
)


def _common(f):  # noqa: ANN001, ANN202 - a click decorator stack
    opts = [
        click.option("--dataset", default=None,
                     help="A SWE-bench JSONL/JSON file (or a folder holding SPLIT.jsonl), or a "
                          "Hugging Face dataset name where the hub is reachable "
                          "(default princeton-nlp/SWE-bench_Lite)."),
        click.option("--split", default="test", show_default=True),
        click.option("--instances", "-i", "instances", multiple=True,
                     help="Instance ids (or regular expressions), comma-separated or repeated."),
        click.option("--limit", type=int, default=None, help="At most this many instances."),
        click.option("--repos-dir", type=click.Path(path_type=Path), default=None,
                     help="Local mirrors of the repositories (owner__name, owner/name or name); "
                          "a missing one is cloned there from GitHub when online."),
        click.option("--no-clone", is_flag=True, help="Never clone: a missing mirror is an "
                                                      "error of that instance."),
        click.option("--specs", "specs_file", type=click.Path(path_type=Path), default=None,
                     help="Extra install/test specs (JSON or YAML) for other repositories."),
        click.option("--workers", "-w", default=2, show_default=True,
                     help="Instances at once."),
        click.option("--timeout", default=1800.0, show_default=True,
                     help="Seconds one test run may take."),
        click.option("--memory", default="4g", show_default=True, help="Per sandbox."),
        click.option("--cpus", default=1.0, show_default=True, help="Per sandbox."),
        click.option("--base-image", default=None,
                     help="A registry image template with {python}, e.g. "
                          "'python:{python}-slim', for exact Python versions."),
        click.option("--ca-bundle", is_flag=True,
                     help="Pass the host's CA bundle into image builds (TLS proxies)."),
        click.option("--run-id", default=None, help="Names the run (default: from the time)."),
        click.option("--json", "as_json", is_flag=True, help="Print the report as JSON."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _items(dataset: str | None, split: str, instances: tuple[str, ...],
           limit: int | None) -> tuple[str, list]:
    from patchswarm.tasks.sources.swebench import (
        DEFAULT_DATASET,
        DatasetError,
        load_dataset,
        parse_rows,
        select_instances,
    )

    source = dataset or DEFAULT_DATASET
    try:
        rows = load_dataset(source, split)
        ids = [i.strip() for chunk in instances for i in chunk.split(",") if i.strip()]
        items = select_instances(parse_rows(rows), ids or None, limit)
    except DatasetError as exc:
        fail(str(exc))
    if not items:
        fail(f"no instances selected from {source}")
    return source, items


def _specs(specs_file: Path | None):  # noqa: ANN202
    from patchswarm.tasks.sources.swebench.specs import SpecError, SpecTable

    try:
        return SpecTable.from_file(specs_file)
    except SpecError as exc:
        fail(str(exc))


def _log(msg: str) -> None:
    from rich.markup import escape

    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {escape(msg)}", highlight=False)


class _Serial:
    """One sampler shared by instances running in parallel: made once, used one call at a
    time (an in-process engine serves one request at a time anyway)."""

    def __init__(self, factory: Any, model: str) -> None:
        self.factory = factory
        self.model = model
        self._lock = threading.Lock()

    def sample(self, messages, params):  # noqa: ANN001, ANN201
        with self._lock:
            return self.factory().sample(messages, params)

    def count_tokens(self, messages):  # noqa: ANN001, ANN201
        with self._lock:
            return self.factory().count_tokens(messages)

    def close(self) -> None:
        pass


def _replay_samplers(path: Path, model: str):  # noqa: ANN202
    """(instance, kind) → a ReplaySampler over the file's records for that instance and kind."""
    from patchswarm.agent.sampler import ReplaySampler

    if not path.is_file():
        fail(f"replay file {path} not found")
    records: dict[tuple[str, str], list[dict]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as exc:
            fail(f"{path}:{n} is not JSON: {exc}")
        if not isinstance(r, dict) or "instance_id" not in r or "text" not in r:
            fail(f"{path}:{n}: each line needs instance_id and text (and kind: repair|repro)")
        records.setdefault((r["instance_id"], r.get("kind", "repair")), []).append(r)
    made: dict[tuple[str, str], ReplaySampler] = {}
    lock = threading.Lock()

    def sampler_for(inst, kind: str):  # noqa: ANN001, ANN202
        with lock:
            key = (inst.instance_id, kind)
            if key not in made:
                made[key] = ReplaySampler(records.get(key, []), model=model)
            return made[key]

    return sampler_for


@click.group("swebench")
def swebench() -> None:
    """SWE-bench: repair instances and evaluate predictions by the official rules."""


@swebench.command("run")
@_common
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="The run folder (default swebench-runs/RUN_ID); the same folder resumes.")
@click.option("-n", "n", default=8, show_default=True, help="Samples per instance.")
@click.option("--repro", default=2, show_default=True,
              help="Reproduction tests asked of the model per instance (0: none); kept when they "
                   "fail on the unpatched code for the issue's reason.")
@model_option
@endpoint_option
@click.option("--broker", default=None,
              help="Sample and verify on Celery workers through this Redis broker; the "
                   "evaluation with test_patch runs here.")
@click.option("--replay", type=click.Path(path_type=Path), default=None,
              help="Recorded completions (JSONL: instance_id, kind repair|repro, text) "
                   "instead of a model.")
@click.option("--eval-all", is_flag=True,
              help="Evaluate every distinct candidate with test_patch too (coverage, pass@k).")
@click.option("--verify-workers", default=1, show_default=True,
              help="Sandboxes at once per instance.")
@click.option("--reruns", default=1, show_default=True,
              help="Re-runs of failing selection tests (flaky-test detection).")
@click.option("--seed", default=0, show_default=True)
@click.option("--temperature", default=0.8, show_default=True)
@click.option("--max-tokens", default=2048, show_default=True)
@click.option("--format", "fmt", default="auto",
              type=click.Choice(["auto", "whole_file", "search_replace", "udiff"]))
@click.option("--context-chars", default=16000, show_default=True,
              help="Characters of source shown to the model.")
def run_cmd(dataset: str | None, split: str, instances: tuple[str, ...], limit: int | None,
            repos_dir: Path | None, no_clone: bool, specs_file: Path | None, workers: int,
            timeout: float, memory: str, cpus: float, base_image: str | None, ca_bundle: bool,
            run_id: str | None, as_json: bool, out: Path | None, n: int, repro: int,
            model: str | None, endpoint: str | None, broker: str | None,
            replay: Path | None, eval_all: bool, verify_workers: int, reruns: int, seed: int,
            temperature: float, max_tokens: int, fmt: str, context_chars: int) -> None:
    """Repair SWE-bench instances: sample, select without test_patch, evaluate with it.

    Writes predictions.jsonl (official format), report.json / report.md (resolved ids and
    rate, coverage, selected accuracy, pass@k, tokens and sandbox seconds), coverage.png and
    a log folder per instance under the run folder. Running it again continues.
    """
    from patchswarm.tasks.sources.swebench import SWEBenchSettings, run_swebench

    source, items = _items(dataset, split, instances, limit)
    specs = _specs(specs_file)
    model_name = model or ("replay" if replay else default_model())
    run_id = run_id or time.strftime("run-%Y%m%d-%H%M%S")
    out = out or Path("swebench-runs") / run_id
    settings = SWEBenchSettings(
        repos_dir=repos_dir, clone=not no_clone, n=n, repro=repro, temperature=temperature,
        max_tokens=max_tokens, seed=seed, fmt=fmt, workers=workers,
        verify_workers=verify_workers, reruns=reruns, eval_all=eval_all, timeout=timeout,
        memory=memory, cpus=cpus, base_image=base_image, ca_bundle=ca_bundle,
        context_chars=context_chars, model=model_name, run_id=run_id)
    orch = None
    verify_fn = None
    lazy = None
    if broker is not None:
        from patchswarm.tasks.distributed.orchestrator import (
            BrokerError,
            ClusterSettings,
            Orchestrator,
        )

        try:
            orch = Orchestrator(ClusterSettings(broker=broker))
        except BrokerError as exc:
            fail(str(exc))
        verify_fn = orch.verify
    if replay is not None:
        sampler_for = _replay_samplers(replay, model_name)
    elif orch is not None:
        remote = orch.sampler(model_name, endpoint)
        sampler_for = lambda inst, kind: remote  # noqa: E731
    else:
        lazy = LazySampler(model_name, endpoint)
        shared = _Serial(lazy, model_name)
        sampler_for = lambda inst, kind: shared  # noqa: E731
    console.print(f"[bold]swebench run[/] {len(items)} instances from {source} → {out}")
    try:
        report = run_swebench(items, specs, settings, out, sampler_for, _log, verify_fn,
                              dataset=source)
    finally:
        if lazy is not None:
            lazy.close()
        if orch is not None:
            orch.close()
    if as_json:
        out_console_json(report)
    else:
        _print_run(report, out)
    sys.exit(0 if not report["error_ids"] else 1)


def out_console_json(report: dict) -> None:
    out.print_json(json.dumps(report))


def _print_run(report: dict, folder: Path) -> None:
    from rich.table import Table

    table = Table(title=f"SWE-bench run {report['run_id']}")
    for col in ("instance", "result", "python", "samples", "distinct", "selection"):
        table.add_column(col)
    for iid, r in report["instances"].items():
        if r["status"] != "done":
            table.add_row(iid, f"[red]error[/]: {r['error']}", "", "", "", "")
            continue
        py = r.get("python") or {}
        sel = r.get("selection") or {}
        table.add_row(iid, "[green]resolved[/]" if r["resolved"] else
                      str(r.get("eval_status") or "unresolved"),
                      py.get("used", "") if py.get("exact", True) else
                      f"{py.get('wanted')}→{py.get('used')}", str(r["samples"]),
                      str(r["distinct"]), f"{sel.get('passed_groups', 0)} passed "
                      f"({sel.get('signal', '-')})")
    out.print(table)
    cost = report["cost"]
    cov = "n/a (--eval-all)" if report["coverage"] is None else f"{report['coverage']:.3f}"
    out.print(f"resolved {report['resolved_instances']}/{report['total_instances']} "
              f"({report['resolved_rate']:.3f}); coverage {cov}; selected accuracy "
              f"{report['selected_accuracy']:.3f}; pass@k {report['pass_at_k']}; "
              f"{cost['prompt_tokens'] + cost['completion_tokens']} tokens, "
              f"{cost['sandbox_seconds']:.0f} sandbox s")
    out.print(f"predictions: {folder / 'predictions.jsonl'}; report: {folder / 'report.md'}")


@swebench.command("eval")
@_common
@click.option("--predictions", type=click.Path(path_type=Path), default=None,
              help="predictions.jsonl (instance_id, model_name_or_path, model_patch).")
@click.option("--gold", is_flag=True,
              help="Check the harness: the dataset's gold patches must resolve and empty "
                   "patches must not.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Where logs and the report go (default swebench-eval/RUN_ID).")
def eval_cmd(dataset: str | None, split: str, instances: tuple[str, ...], limit: int | None,
             repos_dir: Path | None, no_clone: bool, specs_file: Path | None, workers: int,
             timeout: float, memory: str, cpus: float, base_image: str | None,
             ca_bundle: bool, run_id: str | None, as_json: bool, predictions: Path | None,
             gold: bool, out: Path | None) -> None:
    """Evaluate predictions by the SWE-bench rules, like the official harness."""
    from patchswarm.tasks.sources.swebench import (
        DatasetError,
        SWEBenchSettings,
        evaluate_predictions,
        gold_predictions,
        load_predictions,
    )

    if predictions is None and not gold:
        fail("give --predictions FILE, or --gold to check the harness with the gold patches")
    if predictions is not None and gold:
        fail("--gold evaluates the dataset's own patches: leave out --predictions")
    source, items = _items(dataset, split, instances, limit)
    specs = _specs(specs_file)
    if gold:
        preds = gold_predictions(items)
    else:
        try:
            preds = load_predictions(predictions)
        except DatasetError as exc:
            fail(str(exc))
        keep = {x.instance_id for x in items}
        if instances or limit:
            preds = {k: v for k, v in preds.items() if k in keep}
        unknown = sorted(set(preds) - keep)
        if unknown:
            console.print(f"[yellow]predictions for instances not in {source}: "
                          f"{', '.join(unknown[:10])}[/]")
    run_id = run_id or time.strftime("eval-%Y%m%d-%H%M%S")
    out = out or Path("swebench-eval") / run_id
    settings = SWEBenchSettings(repos_dir=repos_dir, clone=not no_clone, workers=workers,
                                timeout=timeout, memory=memory, cpus=cpus,
                                base_image=base_image, ca_bundle=ca_bundle, run_id=run_id)
    console.print(f"[bold]swebench eval[/] {len(items)} instances from {source} → {out}")
    report = evaluate_predictions(items, preds, specs, settings, out, gold_check=gold,
                                  log=_log)
    if as_json:
        out_console_json(report)
    else:
        _print_eval(report, out)
    ok = not report["error_ids"] and (report.get("harness_ok", True))
    sys.exit(0 if ok else 1)


def _print_eval(report: dict, folder: Path) -> None:
    out.print(f"instances {report['total_instances']}, submitted "
              f"{report['submitted_instances']}, completed {report['completed_instances']}, "
              f"resolved {report['resolved_instances']}, unresolved "
              f"{report['unresolved_instances']}, empty {report['empty_patch_instances']}, "
              f"errors {report['error_instances']} (infrastructure "
              f"{report['infra_failure_instances']}, ambiguous "
              f"{report['ambiguous_failure_instances']})")
    for iid, err in report["errors"].items():
        out.print(f"  [red]error[/] {iid} ({report['failure_reasons'].get(iid)}): {err}",
                  highlight=False)
    for iid, note in report.get("python_mapped", {}).items():
        out.print(f"  [dim]{iid}: {note}[/]")
    if "gold_check" in report:
        from patchswarm.tasks.sources.swebench import gold_table

        for iid, c in report["gold_check"].items():
            out.print(f"  gold check {iid}: gold {'resolves' if c['gold_resolved'] else 'FAILS'}"
                      f", empty {'RESOLVES' if c['empty_resolved'] else 'does not resolve'}"
                      f"{'' if c['warm_agrees'] else ', warm re-run DISAGREES'}"
                      f" → {'ok' if c['ok'] else 'NOT OK'}")
        out.print(gold_table(report), markup=False, highlight=False)
        checked = len(report["gold_check"])
        out.print(f"harness check: {'passed' if report['harness_ok'] else 'FAILED'} "
                  f"({checked} of {report['submitted_instances']} instances checked, "
                  f"{report['error_instances']} errored)")
    out.print(f"report: {folder / 'report.json'}; logs: {folder / 'logs'}")


COMMANDS = [swebench]
