"""Selection without ``test_patch``: the files shown to the model, the repository's related
tests and the reproduction scripts the model writes."""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from patchswarm.agent.context import is_test_file, select_files
from patchswarm.agent.prompts import SYSTEM
from patchswarm.agent.sampler import Sampler, SamplerError, SamplingParams
from patchswarm.sandbox.container import Sandbox
from patchswarm.sandbox.images import (
    WORKDIR,
)
from patchswarm.verifiers.logparse import PARSERS

from .problem import list_files, read_files
from .runner import Reporter
from .store import RunStore
from .swebench_data import Instance, InstanceError
from .swebench_patch import EnvInfo, SWEBenchSettings, time_limit
from .swebench_specs import (
    RepoSpec,
    directives_for_files,
    env_prefix,
    test_command,
)

SamplerFor = Callable[[Instance, str], Sampler]
"""(instance, kind) → sampler, kind being ``repair`` or ``repro``."""

REPRO_DIR = "/tmp/patchswarm/repro"
HEREDOC = "PATCHSWARM_EOF_5f1c0d"


def context_files(repo: Path, commit: str, issue: str, settings: SWEBenchSettings,
                  ) -> tuple[dict[str, str], list[str]]:
    """(path → text of the files the model sees, every file of the commit)."""
    all_files = list_files(str(repo), commit)
    py = [p for p in all_files if p.endswith(".py") and not is_test_file(p)]
    texts = {p: t for p, t in read_files(str(repo), commit, py).items() if len(t) < 300_000}
    paths = select_files(issue, texts, "", budget_chars=settings.context_chars,
                         max_files=settings.max_files)
    if not paths:
        raise InstanceError("found no Python source file to show the model")
    return {p: texts[p] for p in paths}, all_files


def related_test_files(all_files: list[str], sources: list[str], limit: int = 3) -> list[str]:
    """The repository's own test files that go with ``sources``, found by name only: a test
    named after the module (``test_foo.py``, ``foo_test.py``) first, then tests in a folder
    named after it (``tests/foo/``, ``foo_tests/``)."""
    scored: dict[str, tuple[int, int]] = {}
    tests = [f for f in all_files if f.endswith(".py") and is_test_file(f)
             and PurePosixPath(f).name not in ("conftest.py", "__init__.py")]
    for rank_i, src in enumerate(sources):
        p = PurePosixPath(src)
        name = p.parent.name if p.stem == "__init__" else p.stem
        if not name:
            continue
        names = {f"test_{name}.py", f"{name}_test.py", f"tests_{name}.py", f"{name}_tests.py"}
        dirs = {name, f"{name}_tests", f"test_{name}", f"tests_{name}", f"{name}s"}
        for f in tests:
            fp = PurePosixPath(f)
            score = 0
            if fp.name in names:
                score = 2
            elif set(fp.parent.parts) & dirs:
                score = 1
            if score:
                key = (-score, rank_i)
                if f not in scored or key < scored[f]:
                    scored[f] = key
    ordered = sorted(scored, key=lambda f: (scored[f], len(f), f))
    return ordered[:limit]


def repro_id(i: int, log_parser: str) -> str:
    if log_parser == "django":
        return f"test_reproduction_{i} (patchswarm_repro.Reproduction)"
    if log_parser == "sympy":
        return f"test_patchswarm_repro_{i}"
    return f"patchswarm_repro_{i}.py::test_reproduction"


def _repro_lines(i: int, log_parser: str) -> tuple[str, str]:
    if log_parser == "django":
        return f"{repro_id(i, 'django')} ... ok", f"{repro_id(i, 'django')} ... FAIL"
    if log_parser == "sympy":
        return f"{repro_id(i, 'sympy')} ok", f"{repro_id(i, 'sympy')} F"
    return f"PASSED {repro_id(i, 'pytest')}", f"FAILED {repro_id(i, 'pytest')}"


def repro_block(scripts: dict[int, str], log_parser: str, timeout: float) -> str:
    """Shell that writes each reproduction script and prints one result line per script in
    the log format of the repository's runner, so one parser reads everything."""
    parts = [f"mkdir -p {REPRO_DIR}"]
    for i, text in scripts.items():
        ok, bad = _repro_lines(i, log_parser)
        path = f"{REPRO_DIR}/repro_{i}.py"
        parts.append(f"cat > {path} <<'{HEREDOC}'\n{text.rstrip()}\n{HEREDOC}\n")
        parts.append(
            f"if (cd {WORKDIR} && PYTHONPATH={WORKDIR}${{PYTHONPATH:+:$PYTHONPATH}} timeout "
            f"{int(timeout)} python {path} > {REPRO_DIR}/repro_{i}.log 2>&1); then echo "
            f"{shlex.quote(ok)}; else echo {shlex.quote(bad)}; selection_rc=1; fi")
    return "\n".join(parts) + "\n"


REPRO_INSTRUCTIONS = (
    "Do not fix the issue. Write a standalone Python script that reproduces it: it imports the "
    "repository's code, does what the issue describes, and ends with `assert` statements that "
    "hold only once the issue is fixed. It must exit with status 0 when the issue is fixed and "
    "fail (an uncaught AssertionError) while the issue is present. It runs from the "
    "repository's root, without network, and must finish within seconds. Answer with the "
    "script in a single ```python block and nothing else."
)


def repro_messages(issue: str, files: dict[str, str]) -> list[dict[str, str]]:
    """Starts as the repair prompt does (the same issue and files), so an engine with prefix
    caching computes the shared part once."""
    shown = "\n\n".join(f"{p}\n```python\n{t.rstrip()}\n```" for p, t in files.items())
    user = ("Here is an issue reported in a repository.\n\n"
            f"<issue>\n{issue.strip()}\n</issue>\n\n"
            f"These files from the repository are relevant:\n\n{shown}\n\n{REPRO_INSTRUCTIONS}")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


_FENCE = re.compile(r"```(?:python|py|python3)?[ \t]*\n(.*?)```", re.S)
_BROKEN = re.compile(r"^(SyntaxError|IndentationError|ModuleNotFoundError|ImportError|"
                     r"NameError|TabError)\b", re.M)


def parse_repro(text: str) -> str | None:
    m = _FENCE.search(text)
    script = m.group(1) if m else None
    if not script or not script.strip() or HEREDOC in script:
        return None
    try:
        compile(script, "repro.py", "exec")
    except (SyntaxError, ValueError):
        return None
    return script.rstrip() + "\n"



def _baseline(env: EnvInfo, spec: RepoSpec, related: list[str], scripts: dict[int, str],
              settings: SWEBenchSettings) -> dict[str, Any]:
    """The related tests and each reproduction script on the unpatched code."""
    out: dict[str, Any] = {"tests": {}, "repro": {}, "seconds": 0.0, "unread": [],
                           "detail": ""}
    t0 = time.monotonic()
    with Sandbox(env.image, settings.limits()) as sb:
        if related:
            cmd = env_prefix(spec) + test_command(spec, directives_for_files(related,
                                                                             spec.directives))
            limit = time_limit(settings, spec)
            res = sb.exec(cmd, timeout=limit, env={"PYTHONDONTWRITEBYTECODE": "1"})
            if res.timed_out:
                out["detail"] = f"the related tests ran past {limit:.0f}s"
            else:
                parsed = PARSERS[spec.log_parser](res.output)
                out["tests"] = parsed.tests
                out["unread"] = parsed.unread[:20]
                if not parsed.tests:
                    out["detail"] = "the related tests reported no results: " + \
                        res.output.strip()[-300:]
        for i, script in scripts.items():
            path = f"{REPRO_DIR}/repro_{i}.py"
            sb.put_file(path, script.encode())
            res = sb.exec(f"cd {WORKDIR} && PYTHONPATH={WORKDIR} timeout "
                          f"{int(settings.repro_timeout)} python {path}",
                          timeout=settings.repro_timeout + 30)
            if res.exit_code == 0:
                verdict = "passes before any fix: it does not reproduce the issue"
            elif res.timed_out or res.exit_code == 124:
                verdict = "times out"
            elif _BROKEN.search(res.output):
                verdict = "broken: " + _BROKEN.search(res.output).group(1)
            else:
                verdict = "reproduces"
            out["repro"][str(i)] = {"verdict": verdict, "exit_code": res.exit_code,
                                    "output": res.output[-1500:]}
    out["seconds"] = round(time.monotonic() - t0, 3)
    return out



def _repro_scripts(inst: Instance, files: dict[str, str], settings: SWEBenchSettings,
                   store: RunStore, sampler_for: SamplerFor,
                   reporter: Reporter) -> tuple[dict[int, str], tuple[int, int]]:
    saved = store.read_json("repro.json")
    if saved is None:
        saved = {"scripts": [], "prompt_tokens": 0, "completion_tokens": 0, "error": None}
        if settings.repro > 0:
            reporter.stage(f"asking for {settings.repro} reproduction scripts")
            params = SamplingParams(n=settings.repro, temperature=settings.temperature,
                                    top_p=settings.top_p, max_tokens=settings.max_tokens,
                                    seed=settings.seed + 7919)
            try:
                comps = sampler_for(inst, "repro").sample(
                    repro_messages(inst.problem_statement, files), params)
                texts = [parse_repro(c.text) for c in comps]
                saved["scripts"] = list(dict.fromkeys(t for t in texts if t))
                saved["prompt_tokens"] = comps[0].prompt_tokens if comps else 0
                saved["completion_tokens"] = sum(c.completion_tokens for c in comps)
                saved["unusable"] = sum(1 for t in texts if not t)
            except SamplerError as exc:
                saved["error"] = str(exc)
        store.write_json("repro.json", saved)
    return ({i: s for i, s in enumerate(saved["scripts"])},
            (int(saved.get("prompt_tokens", 0)), int(saved.get("completion_tokens", 0))))
