"""``patchswarm bench localisation``: does the model see the file a fix must edit?

For every SWE-bench instance whose repository is in ``--repos-dir`` (bare mirrors or clones
named ``owner__name.git`` or ``owner__name``), the source files at the base commit are ranked
from the issue text alone, and the files the gold patch edits are looked for among those shown.
Two selections are measured in one run, on the same files:

- ``whole_files``: the older contract, whole files within ``--budget`` characters (the best
  file always, whatever its size), at most ``--max-files``;
- ``context``: ``select_context``, the ``--context-files`` best files, each whole or as an
  excerpt of the parts the issue is about, within ``--context-budget`` characters.

Reported per repository and overall: instances, recall (every gold file shown), any-recall
(at least one shown), the mean characters shown, and an estimate of prompt tokens (characters
/ 4). No model and no sandbox are needed: it reads git objects only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import click

from patchswarm.agent.context import select_context, select_files
from patchswarm.agent.localise import FileFacts, is_test_file
from patchswarm.tasks.bench import register

MAX_FILE_BYTES = 300_000


class _Blobs:
    """Reads blobs of one repository through one ``git cat-file --batch``, and keeps each
    file's ranking facts by blob id so instances that share a file analyse it once."""

    def __init__(self, git_dir: Path) -> None:
        self.git_dir = git_dir
        self.proc = subprocess.Popen(["git", f"--git-dir={git_dir}", "cat-file", "--batch"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.facts: dict[tuple[str, str], FileFacts] = {}
        self.texts: dict[str, str] = {}

    def tree(self, commit: str) -> list[tuple[str, str, int]]:
        out = subprocess.run(["git", f"--git-dir={self.git_dir}", "ls-tree", "-r", "-l",
                              commit], capture_output=True, text=True, check=True).stdout
        rows = []
        for line in out.splitlines():
            meta, path = line.split("\t", 1)
            _, kind, sha, size = meta.split()
            if kind == "blob" and size.isdigit():
                rows.append((path, sha, int(size)))
        return rows

    def text(self, sha: str) -> str:
        if sha not in self.texts:
            assert self.proc.stdin and self.proc.stdout
            self.proc.stdin.write(sha.encode() + b"\n")
            self.proc.stdin.flush()
            header = self.proc.stdout.readline().split()
            data = self.proc.stdout.read(int(header[2]) + 1)[:-1]
            self.texts[sha] = data.decode("utf-8", "replace")
        return self.texts[sha]

    def fact(self, path: str, sha: str) -> FileFacts:
        key = (path, sha)
        if key not in self.facts:
            self.facts[key] = FileFacts.of(path, self.text(sha))
        return self.facts[key]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait()


def _gold_files(patch: str) -> list[str]:
    from unidiff import PatchSet

    return [p.path for p in PatchSet(patch)]


def _mirror(repos_dir: Path, repo: str) -> Path | None:
    name = repo.replace("/", "__")
    for cand in (repos_dir / f"{name}.git", repos_dir / name / ".git", repos_dir / name):
        if cand.is_dir() and ((cand / "objects").is_dir() or (cand / "HEAD").is_file()):
            return cand
    return None


def measure(rows: list[dict[str, Any]], repos_dir: Path, budget: int = 16000,
            max_files: int = 4, context_budget: int = 28000, context_files: int = 10,
            log=lambda s: None) -> dict[str, Any]:
    per: dict[str, list[dict[str, Any]]] = defaultdict(list)
    blobs: dict[str, _Blobs] = {}
    try:
        for row in rows:
            mirror = _mirror(repos_dir, row["repo"])
            if mirror is None:
                continue
            b = blobs.setdefault(row["repo"], _Blobs(mirror))
            try:
                tree = b.tree(row["base_commit"])
            except subprocess.CalledProcessError:
                continue
            src = [(p, sha) for p, sha, size in tree
                   if p.endswith(".py") and not is_test_file(p) and size < MAX_FILE_BYTES]
            facts = [b.fact(p, sha) for p, sha in src]
            texts = {p: b.text(sha) for p, sha in src}
            gold = _gold_files(row["patch"])
            whole = select_files(row["problem_statement"], texts, budget_chars=budget,
                                 max_files=max_files, facts=facts)
            ctx = select_context(row["problem_statement"], texts, budget_chars=context_budget,
                                 max_files=context_files, facts=facts)
            rec = _record(row["instance_id"], gold, texts, whole, ctx)
            per[row["repo"]].append(rec)
            log(f"{row['instance_id']}: whole {rec['whole_files']['recall']} "
                f"context {rec['context']['recall']}")
    finally:
        for b in blobs.values():
            b.close()
    return {"by_repo": {r: _summary(recs) for r, recs in sorted(per.items())},
            "overall": _summary([r for recs in per.values() for r in recs]),
            "instances": [r for recs in per.values() for r in recs]}


def measure_examples(budget: int = 16000, max_files: int = 4, context_budget: int = 28000,
                     context_files: int = 10) -> dict[str, Any]:
    """The same two selections on the bundled examples, with the failing tests' text as
    the tests' signal (as ``repair`` has it)."""
    from patchswarm.tasks.sources import examples

    recs = []
    for eid in examples.list_examples():
        meta = examples.load_example(eid)
        root = meta["root"]
        repo = root / "repo"
        texts = {p.relative_to(repo).as_posix(): p.read_text()
                 for p in sorted(repo.rglob("*.py"))}
        test_paths = {t.split("::")[0] for t in meta.get("fail_to_pass", [])}
        tests_text = "\n".join(texts.get(p, "") for p in test_paths)
        gold = _gold_files((root / "fix.patch").read_text())
        whole = select_files(meta["issue"], texts, tests_text, budget, max_files)
        ctx = select_context(meta["issue"], texts, tests_text, context_budget, context_files)
        recs.append(_record(eid, gold, texts, whole, ctx))
    return {"summary": _summary(recs), "instances": recs}


def _record(instance_id: str, gold: list[str], texts: dict[str, str], whole: list[str],
            ctx: dict[str, str]) -> dict[str, Any]:
    """One instance's outcome under both selections: what was shown, its size, whether every
    (``recall``) or some (``any``) gold file was among it."""
    rec: dict[str, Any] = {
        "instance_id": instance_id, "gold": gold,
        "whole_files": {"shown": whole, "chars": sum(len(texts[p]) for p in whole)},
        "context": {"shown": list(ctx), "chars": sum(map(len, ctx.values()))}}
    for k in ("whole_files", "context"):
        rec[k]["recall"] = all(g in rec[k]["shown"] for g in gold)
        rec[k]["any"] = any(g in rec[k]["shown"] for g in gold)
    return rec


def _summary(recs: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(recs) or 1
    out: dict[str, Any] = {"instances": len(recs)}
    for k in ("whole_files", "context"):
        chars = sum(r[k]["chars"] for r in recs) / n
        out[k] = {"recall": round(sum(r[k]["recall"] for r in recs) / n, 3),
                  "any_recall": round(sum(r[k]["any"] for r in recs) / n, 3),
                  "mean_chars": round(chars), "mean_tokens_est": round(chars / 4)}
    return out


@click.command("localisation")
@click.option("--dataset", "datasets", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="SWE-bench JSONL file(s); may be given more than once.")
@click.option("--repos-dir",
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of repository mirrors named owner__name.git (or owner__name).")
@click.option("--budget", default=16000, show_default=True,
              help="Characters of whole files (the whole_files selection).")
@click.option("--max-files", default=4, show_default=True)
@click.option("--context-budget", default=28000, show_default=True,
              help="Characters shown by the context selection.")
@click.option("--context-files", default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON result.")
@click.option("--instances", is_flag=True, help="Include every instance's record.")
@click.option("--examples/--no-examples", default=True, show_default=True,
              help="Also measure the bundled examples.")
def localisation(datasets: tuple[Path, ...], repos_dir: Path, budget: int, max_files: int,
                 context_budget: int, context_files: int, as_json: bool,
                 instances: bool, examples: bool) -> None:
    """File recall of localisation on SWE-bench instances, against prompt size.

    Example: patchswarm bench localisation --dataset lite.jsonl --repos-dir mirrors --json
    """
    if datasets and not repos_dir:
        raise click.UsageError("--dataset needs --repos-dir (the repositories' mirrors)")
    rows = []
    for path in datasets:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise click.ClickException(f"{path}:{i}: not a JSON line ({exc})") from None
    start = time.monotonic()
    result = measure(rows, repos_dir or Path("."), budget, max_files, context_budget, context_files,
                     log=lambda s: print(s, file=sys.stderr))
    if examples:
        result["examples"] = measure_examples(budget, max_files, context_budget, context_files)
    result["seconds"] = round(time.monotonic() - start, 1)
    if not instances:
        result.pop("instances")
        result.get("examples", {}).pop("instances", None)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{'repository':32} {'n':>4} {'whole recall':>12} {'chars':>7} "
               f"{'context recall':>14} {'chars':>7}")
    rows_out = [*result["by_repo"].items(), ("overall", result["overall"])]
    if examples:
        rows_out.append(("bundled examples", result["examples"]["summary"]))
    for repo, s in rows_out:
        click.echo(f"{repo:32} {s['instances']:>4} {s['whole_files']['recall']:>12.2f} "
                   f"{s['whole_files']['mean_chars']:>7} {s['context']['recall']:>14.2f} "
                   f"{s['context']['mean_chars']:>7}")


register(localisation)
COMMANDS: list[click.Command] = []
