"""``patchswarm bench issue-only``: how close repair from the issue alone comes to repair
with the project's failing tests, on the same problems, in one run.

Each bundled example is repaired twice with the same fix samples (same prompt, same seeds;
the second request is served from the first's completions, so the two modes differ only in
what verifies and ranks):

- **given tests**: the example as bundled, its failing tests the target;
- **issue only**: the example with its failing tests withheld (``materialise(withhold=True)``):
  the model writes ``--repro`` reproduction tests from the issue, and fixes are verified and
  ranked against those (``tasks/reproduction.py``).

The withheld tests then grade every distinct change of both runs (the example's own spec, on
the full repository's image): **coverage** (some distinct change passes them), **selected
accuracy** (the change the product delivers, verified or labelled unverified, passes them),
and **verified selected accuracy** (delivered *and* verified). The reproduction tests' own
quality is the share of kept ones that the gold fix passes (they failed before it, by
construction), and of all sampled ones. Because every change's verdict keeps its per-test
outcomes, the ranking is also recomputed with only the first M reproduction tests for each
M up to ``--repro``: the numbers behind the default M.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from patchswarm.agent.budget import Ledger
from patchswarm.agent.candidate import Candidate
from patchswarm.agent.ranking import Group, rank
from patchswarm.agent.sampler import Completion, Sampler, SamplingParams
from patchswarm.tasks.bench.sample_yield import example_samplers, run_folder_options
from patchswarm.tasks.engine.store import RunStore
from patchswarm.verifiers.grading import grade_repro
from patchswarm.verifiers.verdict import Verdict

TARGET_RATIO = 0.8
"""Selected accuracy over coverage in issue-only mode (issue 'repair from the issue alone')."""


class MemoSampler:
    """Hands out the same completions for the same request (messages and parameters): the
    issue-only run reuses the given-tests run's fix samples, so only verification differs."""

    def __init__(self, inner: Callable[[], Sampler]) -> None:
        self._inner = inner
        self._made: Sampler | None = None
        self._memo: dict[str, list[Completion]] = {}
        self.model = "memo"

    def _sampler(self) -> Sampler:
        if self._made is None:
            self._made = self._inner()
            self.model = self._made.model
        return self._made

    def sample(self, messages: list[dict[str, str]], params: SamplingParams) -> list[Completion]:
        key = json.dumps([messages, params.to_dict()], sort_keys=True)
        if key not in self._memo:
            self._memo[key] = self._sampler().sample(messages, params)
        return self._memo[key]

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        return self._sampler().count_tokens(messages)

    def close(self) -> None:
        pass


def _groups(run_dir: Path) -> tuple[list[Group], dict[str, dict[str, Any]]]:
    from patchswarm.tasks.engine.runner import groups_of
    from patchswarm.tasks.engine.verification import mark

    store = RunStore(run_dir)
    groups = groups_of([Candidate.from_dict(c) for c in store.candidates()])
    verdicts = store.verdicts()
    for g in groups:
        if g.key in verdicts:
            mark(g, Verdict.from_dict(verdicts[g.key]))
    return groups, verdicts


def _hidden_grader(meta: dict[str, Any], image: str, limits: Any,
                   ) -> Callable[[str], bool]:
    """patch → whether it passes the example's own (withheld) tests."""
    from patchswarm.sandbox.container import SandboxPool
    from patchswarm.tasks.engine.verification import verify_patch
    from patchswarm.verifiers.unittests import PytestVerifier

    spec = {"test_command": meta["test_command"], "fail_to_pass": meta["fail_to_pass"],
            "pass_to_pass": meta["pass_to_pass"], "timeout": 120}
    seen: dict[str, bool] = {}

    def passes(patch: str) -> bool:
        if patch not in seen:
            with SandboxPool(image, size=1, limits=limits) as pool:
                v = verify_patch(pool, PytestVerifier(reruns=0), spec, patch)
            seen[patch] = v.status == "passed"
        return seen[patch]

    return passes


def _ranking_with(groups: list[Group], verdicts: dict[str, dict[str, Any]],
                  spec: dict[str, Any], indexes: list[str]) -> Group | None:
    """The top-ranked group when only the reproductions ``indexes`` are kept."""
    sub = {i: ids for i, ids in (spec.get("repro") or {}).get("groups", {}).items()
           if i in indexes}
    regraded = []
    for g in groups:
        v = verdicts.get(g.key)
        h = Group(g.key, g.patch, list(g.members))
        if v is None or v.get("status") in ("error", "timeout"):
            h.status, h.regressions = v.get("status") if v else None, None
        else:
            r = grade_repro(v.get("tests") or {}, sub, list(spec.get("pass_to_pass") or []))
            h.status = "passed" if r["resolved"] else "failed"
            h.regressions, h.repro = r["regressions"], r["repro_score"]
        regraded.append(h)
    ranked = rank(regraded)
    if not ranked or (ranked[0].status != "passed" and ranked[0].regressions != 0):
        return None
    return ranked[0]


def problem_row(eid: str, given_dir: Path, issue_dir: Path, passes: Callable[[str], bool],
                gold: str, repro_max: int) -> dict[str, Any]:
    """One example's figures from its two finished run folders."""
    from patchswarm.tasks.engine.reproduction import ReproOutcome

    row: dict[str, Any] = {"problem": eid}
    for mode, d in (("given_tests", given_dir), ("issue_only", issue_dir)):
        groups, _ = _groups(d)
        summary = RunStore(d).read_json("summary.json") or {}
        ranked = rank(groups)
        top = ranked[0] if ranked else None
        delivered = summary.get("best_patch") or summary.get("pick_patch")
        row[mode] = {
            "distinct": len(groups),
            "covered": any(passes(g.patch) for g in groups),
            "selected_correct": bool(delivered) and passes(delivered),
            "verified": summary.get("solved", False),
            "verified_correct": bool(summary.get("best_patch")) and passes(summary["best_patch"]),
            "verification": summary.get("verification"),
            "top_is_delivered": top is not None and delivered == top.patch,
        }
    store = RunStore(issue_dir)
    saved = store.read_json("repro.json") or {}
    outcome = ReproOutcome.from_dict(saved) if saved else ReproOutcome()
    spec = (store.read_json("baseline.json") or {}).get("spec", {})
    base_spec = {**spec, "repro": store.read_json("repro_spec.json") or {"groups": {}}}
    # Reproduction quality: each kept test with the gold fix, on the issue-only image.
    gold_passes: list[str] = []
    if outcome.kept and gold:
        gold_passes = _gold_reproductions(store, base_spec, gold)
    row["repro"] = {**outcome.summary(), "kept_passing_gold": len(gold_passes),
                    "reasons": {str(t.index): t.reason for t in outcome.tests}}
    # The ranking with only the first M reproduction tests, M = 0..repro_max.
    groups, verdicts = _groups(issue_dir)
    by_m: dict[str, Any] = {}
    for m in range(0, repro_max + 1):
        indexes = [str(t.index) for t in outcome.tests if t.index < m]
        top = _ranking_with(groups, verdicts, base_spec, indexes)
        kept_m = [i for i in indexes if i in (base_spec["repro"] or {}).get("groups", {})]
        by_m[str(m)] = {"kept": len(kept_m),
                        "selected_correct": top is not None and passes(top.patch),
                        "verified": top is not None and top.status == "passed"}
    row["by_repro_budget"] = by_m
    return row


def _gold_reproductions(store: RunStore, spec: dict[str, Any], gold: str) -> list[str]:
    from patchswarm.sandbox.container import Limits, SandboxPool
    from patchswarm.tasks.engine.verification import verify_patch
    from patchswarm.verifiers.unittests import PytestVerifier

    image = (store.read_json("baseline.json") or {}).get("image")
    if not image:
        return []
    with SandboxPool(image, size=1, limits=Limits()) as pool:
        v = verify_patch(pool, PytestVerifier(reruns=0), spec, gold)
    return list(((v.extra or {}).get("grading") or {}).get("reproductions_passed") or [])


def aggregate(rows: list[dict[str, Any]], repro_max: int) -> dict[str, Any]:
    def share(mode: str, key: str) -> float:
        return round(sum(r[mode][key] for r in rows) / len(rows), 4) if rows else 0.0

    out: dict[str, Any] = {}
    for mode in ("given_tests", "issue_only"):
        cov, sel = share(mode, "covered"), share(mode, "selected_correct")
        out[mode] = {"coverage": cov, "selected_accuracy": sel,
                     "verified_selected_accuracy": share(mode, "verified_correct"),
                     "verified_share": share(mode, "verified"),
                     "selected_over_coverage": round(sel / cov, 4) if cov else None}
    sampled = sum(r["repro"]["sampled"] for r in rows)
    kept = sum(r["repro"]["kept"] for r in rows)
    gold = sum(r["repro"]["kept_passing_gold"] for r in rows)
    out["coverage_gap"] = round(out["given_tests"]["coverage"]
                                - out["issue_only"]["coverage"], 4)
    out["reproduction_tests"] = {
        "sampled": sampled, "kept": kept,
        "kept_share": round(kept / sampled, 4) if sampled else None,
        "quality_kept": round(gold / kept, 4) if kept else None,
        "quality_sampled": round(gold / sampled, 4) if sampled else None,
        "problems_with_one_kept": sum(1 for r in rows if r["repro"]["kept"]),
    }
    reasons: dict[str, int] = {}
    for r in rows:
        for why, n in r["repro"]["discarded"].items():
            reasons[why] = reasons.get(why, 0) + n
    out["reproduction_tests"]["discarded"] = dict(sorted(reasons.items()))
    out["by_repro_budget"] = {
        str(m): {"selected_accuracy": round(sum(r["by_repro_budget"][str(m)]["selected_correct"]
                                                for r in rows) / len(rows), 4) if rows else 0.0,
                 "verified_share": round(sum(r["by_repro_budget"][str(m)]["verified"]
                                             for r in rows) / len(rows), 4) if rows else 0.0,
                 "kept": sum(r["by_repro_budget"][str(m)]["kept"] for r in rows)}
        for m in range(0, repro_max + 1)}
    return out


SamplerFor = Callable[[str], Callable[[], Sampler]]


def run_issue_only_bench(example_ids: list[str], sampler_for: SamplerFor, model: str,
                         run_dir: Path, n: int = 8, repro: int = 4, seed: int = 0,
                         settings: dict[str, Any] | None = None,
                         log: Callable[[str], None] = print) -> dict[str, Any]:
    """Both modes on each example (see the module docstring); the JSON of the run."""
    from patchswarm.sandbox.container import Limits
    from patchswarm.tasks.engine.problem import ProblemError, local_problem
    from patchswarm.tasks.engine.runner import RepairSettings, repair
    from patchswarm.tasks.sources import examples as ex

    opts = {"n": n, "seed": seed, **(settings or {})}
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    ledger = Ledger()
    t_start = time.monotonic()
    for eid in example_ids:
        meta = ex.load_example(eid)
        memo = MemoSampler(sampler_for(eid))
        gold = (meta["root"] / "fix.patch").read_text()
        try:
            full = ex.materialise(eid, run_dir / "repos" / eid)
            given = local_problem(full, meta["issue"], meta["test_command"], problem_id=eid,
                                  files=meta.get("files"))
            given.fail_to_pass = list(meta["fail_to_pass"])
            given.pass_to_pass = list(meta["pass_to_pass"])
            log(f"[{eid}] given tests, n={n}")
            g = repair(given, lambda m=memo: m, RepairSettings(**opts), run_dir / "given" / eid)
            bare = ex.materialise(eid, run_dir / "repos-withheld" / eid, withhold=True)
            issue = local_problem(bare, meta["issue"], meta["test_command"], problem_id=eid,
                                  files=meta.get("files"))
            log(f"[{eid}] issue only, n={n}, {repro} reproduction tests")
            i = repair(issue, lambda m=memo: m, RepairSettings(**opts, repro=repro),
                       run_dir / "issue" / eid)
        except ProblemError as exc:
            errors[eid] = str(exc)
            log(f"[{eid}] could not be run: {exc}")
            continue
        image = (RunStore(run_dir / "given" / eid).read_json("baseline.json") or {})["image"]
        passes = _hidden_grader(meta, image, Limits())
        row = problem_row(eid, run_dir / "given" / eid, run_dir / "issue" / eid, passes,
                          gold, repro)
        row["tokens"] = {"fix_completion": g.tokens["completion"],
                         "repro_completion": (i.repro or {}).get("completion_tokens", 0)}
        ledger.charge_samples(g.samples, g.tokens["completion"])
        ledger.charge_samples((i.repro or {}).get("sampled", 0),
                              (i.repro or {}).get("completion_tokens", 0))
        ledger.charge_verifications(i.distinct + (i.repro or {}).get("parsed", 0))
        rows.append(row)
        log(f"[{eid}] given: covered={row['given_tests']['covered']} "
            f"selected={row['given_tests']['selected_correct']}; issue only: "
            f"covered={row['issue_only']['covered']} "
            f"selected={row['issue_only']['selected_correct']} "
            f"({row['issue_only']['verification']}, {row['repro']['kept']}/{repro} kept)")
    out: dict[str, Any] = {"model": model, "n": n, "repro": repro, "seed": seed,
                           "settings": {k: v for k, v in opts.items() if k not in ("n", "seed")},
                           "examples": example_ids, "problems": len(rows),
                           **aggregate(rows, repro)}
    out["samples"] = {"fix": sum(1 for _ in rows) * n,
                      "reproduction": out["reproduction_tests"]["sampled"],
                      "issue_only_verifications": ledger.verifications}
    out["wall_seconds"] = round(time.monotonic() - t_start, 1)
    out["problem_errors"] = errors
    ratio = out["issue_only"]["selected_over_coverage"]
    out["target_ratio"] = TARGET_RATIO
    out["target_met"] = ratio is not None and ratio >= TARGET_RATIO
    out["per_problem"] = rows
    return out


@click.command("issue-only")
@click.option("--model", default=None,
              help="Model name or Hugging Face folder (default: the default model).")
@click.option("--endpoint", default=None, metavar="URL",
              help="An OpenAI-compatible server to sample from instead of the in-process "
                   "engine, e.g. http://127.0.0.1:8000/v1.")
@click.option("-n", "n", default=8, show_default=True, type=click.IntRange(1, 256),
              help="Fix samples per example (both modes share them).")
@click.option("--repro", default=6, show_default=True, type=click.IntRange(0, 64),
              help="Reproduction tests per example in issue-only mode; the JSON also ranks "
                   "with each smaller M.")
@click.option("--seed", default=0, show_default=True, help="Seed of the first sample.")
@click.option("--examples", "which", default="all", show_default=True,
              help="Comma-separated example ids, or 'all'.")
@click.option("--max-tokens", default=2048, show_default=True, type=click.IntRange(1),
              help="At most this many tokens per sample.")
@run_folder_options
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def issue_only(model: str | None, endpoint: str | None, n: int, repro: int, seed: int,
               which: str, max_tokens: int, run_dir: Path | None, record: Path | None,
               replay: Path | None, as_json: bool) -> None:
    """Coverage and selected accuracy with reproduction tests against the project's own
    failing tests, on the bundled examples with their failing tests withheld.

    \b
    Examples:
      patchswarm bench issue-only --json
      patchswarm bench issue-only -n 8 --repro 4 --record issue-only.jsonl --json
      patchswarm bench issue-only --replay issue-only.jsonl --json
    """
    chosen = example_samplers(which, model, endpoint, record, replay)

    def log(msg: str) -> None:
        click.echo(msg, err=True)

    tmp = None if run_dir else tempfile.TemporaryDirectory(prefix="patchswarm-issue-only-")
    where = Path(run_dir) if run_dir else Path(tmp.name)  # type: ignore[union-attr]
    try:
        result = run_issue_only_bench(chosen.ids, chosen.sampler_for, chosen.model, where,
                                      n=n, repro=repro, seed=seed,
                                      settings={"max_tokens": max_tokens}, log=log)
    finally:
        chosen.close()
        if tmp is not None:
            tmp.cleanup()
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        for mode in ("given_tests", "issue_only"):
            r = result[mode]
            click.echo(f"{mode:12s} coverage {r['coverage']:.3f}  selected "
                       f"{r['selected_accuracy']:.3f}  ratio {r['selected_over_coverage']}")
        rt = result["reproduction_tests"]
        click.echo(f"reproduction tests: kept {rt['kept']}/{rt['sampled']}, passing the gold "
                   f"fix {rt['quality_kept']} of kept")
    if result["problem_errors"]:
        sys.exit(1)


def _attach() -> list:
    """Attach to the shared ``bench`` group (tasks/cmd_bench.py)."""
    from patchswarm.tasks.bench import register

    register(issue_only)
    return []


COMMANDS: list = _attach()
