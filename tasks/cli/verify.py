"""``patchswarm verify``: check one candidate against one problem with a named verifier.

Verifiers come from the ``patchswarm.verifiers`` entry-point group, so a verifier another
package installs works here too. Besides the protocol (``name``, ``settings()``,
``verify(problem, candidate, sandbox)``) a verifier may offer three hooks this command uses:

* ``problem_from_file(text, path) -> dict`` and ``candidate_from_file(text, path) -> dict``
  turn the files into the plain data ``verify`` takes. Without them a problem file is read as
  a JSON object and a candidate file becomes ``{"text": ...}``.
* ``sandbox_image(problem, log) -> str | None``: the image to start a sandbox from (built if
  missing). Without it, or when it returns None, ``verify`` gets ``sandbox=None``.

Exit status: 0 passed, 1 failed / error / timeout, 2 bad input.

``patchswarm bench coq-statements FOLDER`` compiles every statement of a folder of Coq
problems (``Proof. Admitted.`` as the proof) in one sandbox and counts those that compile.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from patchswarm.tasks.bench import register

console = Console(stderr=True)
out = Console()

_COLOURS = {"passed": "green", "failed": "red", "error": "yellow", "timeout": "magenta"}


def fail(msg: str) -> None:
    console.print(f"[bold red]error:[/] {escape(msg)}", highlight=False)
    sys.exit(2)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        fail(f"{path} is not UTF-8 text")
    raise AssertionError  # unreachable


def _parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--option takes KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


def problem_data(verifier: Any, path: Path) -> dict[str, Any]:
    text = _read(path)
    hook = getattr(verifier, "problem_from_file", None)
    if hook is not None:
        return hook(text, str(path))
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{path}: the problem must be a JSON object ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the problem must be a JSON object")
    return data


def candidate_data(verifier: Any, path: Path) -> dict[str, Any]:
    text = sys.stdin.read() if str(path) == "-" else _read(path)
    hook = getattr(verifier, "candidate_from_file", None)
    if hook is not None:
        return hook(text, str(path))
    return {"text": text}


def run_verifier(verifier: Any, problem: dict[str, Any], candidate: dict[str, Any]) -> Any:
    """Start the sandbox the verifier asks for (if any), verify, always clean up."""
    from patchswarm.sandbox.container import Sandbox
    from patchswarm.verifiers.verdict import ERROR, Verdict

    image_hook = getattr(verifier, "sandbox_image", None)
    image = image_hook(problem, lambda m: console.print(f"[dim]{m}[/]")) if image_hook else None
    start = time.monotonic()
    try:
        if image is None:
            return verifier.verify(problem, candidate, None)
        with Sandbox(image) as sandbox:
            return verifier.verify(problem, candidate, sandbox)
    except Exception as exc:  # noqa: BLE001 - a verifier's crash is an error verdict
        return Verdict(ERROR, f"verifier failed: {type(exc).__name__}: {exc}",
                       seconds=time.monotonic() - start,
                       verifier=getattr(verifier, "name", ""))


def _print_verdict(verdict: Any) -> None:
    colour = _COLOURS.get(verdict.status, "white")
    # One line per verdict, never wrapped: scripts grep it.
    out.print(f"[bold {colour}]{verdict.status.upper()}[/] {escape(verdict.detail)}  "
              f"[dim]({verdict.verifier}, {verdict.seconds:.2f}s)[/]", soft_wrap=True,
              highlight=False)
    shown = 0
    for test, outcome in verdict.tests.items():
        if shown >= 30:
            out.print(f"  … {len(verdict.tests) - shown} more tests")
            break
        out.print(f"  {outcome:8} {escape(test)}", highlight=False)
        shown += 1
    for key in ("tests_tampered", "flaky", "axioms", "answer", "gold"):
        if verdict.extra.get(key) not in (None, [], ""):
            out.print(f"  [dim]{key}:[/] {escape(str(verdict.extra[key]))}", highlight=False)
    if verdict.status != "passed" and verdict.log:
        tail = verdict.log.strip().splitlines()[-15:]
        out.print("[dim]" + escape("\n".join(f"  | {ln}" for ln in tail)) + "[/]",
                  highlight=False)


@click.command("verify")
@click.option("--verifier", "verifier_name", required=True,
              help="Verifier name (pytest, math, coq, or one a plugin package installs).")
@click.option("--problem", "problem_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The problem: JSON (pytest: repo, base_commit, test_command, fail_to_pass, "
                   "pass_to_pass; math: answer), a .v file (coq), or plain gold answer (math).")
@click.option("--candidate", "candidate_path", required=True,
              type=click.Path(allow_dash=True, path_type=Path),
              help="The candidate: a patch (pytest), a proof or .v file (coq), a model's "
                   "answer text (math); '-' reads standard input.")
@click.option("--option", "-o", "options", multiple=True, metavar="KEY=VALUE",
              help="A verifier setting, e.g. -o timeout=30 (value read as JSON if it parses).")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def verify(verifier_name: str, problem_path: Path, candidate_path: Path,
           options: tuple[str, ...], as_json: bool) -> None:
    """Check one candidate against one problem and print the verdict.

    \b
    Examples:
      patchswarm verify --verifier math --problem gold.txt --candidate answer.txt
      patchswarm verify --verifier pytest --problem problem.json --candidate fix.patch
      patchswarm verify --verifier coq --problem thm.v --candidate proof.v -o timeout=30
    """
    from patchswarm.sandbox.engine import SandboxError
    from patchswarm.verifiers.registry import UnknownVerifier, load

    if str(candidate_path) != "-" and not candidate_path.is_file():
        fail(f"candidate file {candidate_path} not found")
    try:
        verifier = load(verifier_name, **_parse_options(options))
    except UnknownVerifier as exc:
        fail(str(exc))
    except TypeError as exc:
        fail(f"verifier {verifier_name!r} does not take those options: {exc}")
    try:
        problem = problem_data(verifier, problem_path)
        candidate = candidate_data(verifier, candidate_path)
    except ValueError as exc:
        fail(str(exc))
    try:
        verdict = run_verifier(verifier, problem, candidate)
    except (SandboxError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        out.print_json(json.dumps(verdict.to_dict()))
    else:
        _print_verdict(verdict)
    sys.exit(0 if verdict.status == "passed" else 1)


@click.command("coq-statements")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--jobs", "-j", default=2, show_default=True, help="coqc runs at once.")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds per statement.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def bench_coq_statements(folder: Path, jobs: int, timeout: float, as_json: bool) -> None:
    """Compile every Coq statement under FOLDER (with Proof. Admitted.) in one sandbox and
    count how many compile: those that do not are reported as "statement does not compile"
    by the coq verifier.

    \b
    Example:
      patchswarm bench coq-statements minif2f-rocq/valid -j 2
    """
    from patchswarm.sandbox.container import Limits, Sandbox
    from patchswarm.sandbox.engine import SandboxError
    from patchswarm.verifiers.coq import (
        ProblemFormatError,
        check_statements,
        ensure_coq_image,
        parse_problem,
    )

    files = sorted(folder.rglob("*.v"))
    if not files:
        fail(f"{folder} holds no .v files")
    problems = {}
    unparsed: dict[str, str] = {}
    for f in files:
        key = str(f.relative_to(folder))
        text = _read(f)
        try:
            problems[key] = parse_problem(text, f.stem)
        except ProblemFormatError:
            try:
                problems[key] = parse_problem(text)
            except ProblemFormatError as exc:
                unparsed[key] = str(exc)
    t0 = time.monotonic()
    try:
        image = ensure_coq_image(log=lambda m: console.print(f"[dim]{m}[/]"))
        build = time.monotonic() - t0
        t0 = time.monotonic()
        with Sandbox(image, limits=Limits(cpus=float(max(1, jobs)), memory="4g",
                                          tmp_size="1g", pids=512)) as sb:
            results = check_statements(problems, sb, jobs=jobs, timeout=timeout)
    except SandboxError as exc:
        fail(str(exc))
    seconds = time.monotonic() - t0
    failed = {k: msg for k, (ok, msg) in results.items() if not ok}
    report = {
        "folder": str(folder), "files": len(files), "parsed": len(problems),
        "compiled": sum(1 for ok, _ in results.values() if ok),
        "failed": failed, "unparsed": unparsed, "seconds": round(seconds, 1),
        "image_seconds": round(build, 1), "jobs": jobs,
    }
    if as_json:
        out.print_json(json.dumps(report))
        return
    out.print(f"{report['compiled']} of {len(files)} statements compile "
              f"({len(failed)} do not, {len(unparsed)} not parsed) in {seconds:.0f}s")
    for key, msg in sorted({**failed, **unparsed}.items()):
        out.print(f"  [red]{key}[/]: {msg[:200]}")


register(bench_coq_statements)

COMMANDS = [verify]
