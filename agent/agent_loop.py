"""A multi-turn agent in the style of mini-swe-agent: one action per turn, run in a sandbox.

Each turn the model answers with one fenced block holding one action:

- ``view PATH [START [END]]``: the file with line numbers;
- ``search PATTERN [PATH]``: matching lines (``grep -rn``);
- ``edit PATH`` followed, in the same block, by one SEARCH/REPLACE edit;
- ``run_tests``: the problem's test command;
- ``submit``: done.

The observation goes back as the next user message. The trajectory ends at ``submit``, after
``max_turns`` turns, or when ``max_tokens`` (prompt plus completion tokens over all turns) are
spent. Its candidate is ``git diff`` of the work tree: whatever the edits left, submitted or
not. Every trajectory is a candidate like any sampled patch, verified and ranked the same way.

The sandbox is reached only through a :class:`Workspace`; :class:`SandboxWorkspace` adapts a
``patchswarm.sandbox`` sandbox.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from .candidate import Candidate
from .edits import parse_edits
from .sampler import Sampler, SamplerError, SamplingParams

ACTIONS = ("view", "search", "edit", "run_tests", "submit")

SYSTEM = """You are an expert software engineer fixing an issue in a repository. You work in \
turns. Each turn, think briefly, then give exactly ONE action in a fenced block:

```
view PATH [START [END]]
```
shows a file with line numbers.

```
search PATTERN [PATH]
```
lists matching lines.

```
edit PATH
<<<<<<< SEARCH
exact lines to replace
=======
new lines
>>>>>>> REPLACE
```
replaces the SEARCH lines in PATH (copy them exactly).

```
run_tests
```
runs the tests.

```
submit
```
ends the work when the fix is done. Do not edit the tests."""

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[ \t]*\n(.*?)```", re.S)


class Workspace(Protocol):
    """Where the actions run: a repository checkout, usually inside a sandbox."""

    def run(self, command: str, timeout: float) -> tuple[int | None, str]:
        """Run a shell command at the repository root: (exit code or None on timeout,
        output)."""
        ...

    def read(self, path: str) -> str | None: ...

    def write(self, path: str, text: str) -> None: ...


class SandboxWorkspace:
    """A :class:`Workspace` over a started ``patchswarm.sandbox`` sandbox."""

    def __init__(self, sandbox: Any, root: str | None = None) -> None:
        from patchswarm.sandbox.images import WORKDIR

        self.sandbox = sandbox
        self.root = root or WORKDIR

    def run(self, command: str, timeout: float) -> tuple[int | None, str]:
        res = self.sandbox.exec(command, timeout=timeout, workdir=self.root,
                                env={"PYTHONDONTWRITEBYTECODE": "1"})
        return (None if res.timed_out else res.exit_code), res.output

    def read(self, path: str) -> str | None:
        data = self.sandbox.get_file(f"{self.root}/{path}")
        return None if data is None else data.decode("utf-8", "replace")

    def write(self, path: str, text: str) -> None:
        self.sandbox.put_file(f"{self.root}/{path}", text.encode("utf-8"))


@dataclass
class Turn:
    action: str
    """The action's first line, or ``(none)`` when no action could be read."""
    observation: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: bool = False
    """The model's answer held no valid action, or the action failed."""


@dataclass
class Trajectory:
    patch: str
    stop: str
    """submitted / max_turns / max_tokens / sampler error: …"""
    turns: list[Turn] = field(default_factory=list)
    seed: int | None = None
    messages: list[dict[str, str]] = field(default_factory=list)

    @property
    def prompt_tokens(self) -> int:
        return sum(t.prompt_tokens for t in self.turns)

    @property
    def completion_tokens(self) -> int:
        return sum(t.completion_tokens for t in self.turns)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("messages")
        return d

    def candidate(self, problem_id: str, index: int, model: str) -> Candidate:
        """This trajectory as a candidate (its text is the transcript of actions)."""
        transcript = "\n".join(f"> {t.action}" for t in self.turns)
        return Candidate(
            id=f"{problem_id}/agent-{index}", problem_id=problem_id, index=index,
            text=transcript, patch=self.patch or None,
            error=None if self.patch else f"agent left no change ({self.stop})",
            model=model, params={"strategy": "agent", "turns": len(self.turns)},
            seed=self.seed, prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            finish_reason=self.stop,
        )


def parse_action(text: str) -> tuple[str, str, str] | str:
    """(name, argument line, body) of the first action in ``text``, or an error message."""
    for m in _FENCE.finditer(text):
        lang, block = m.group(1).lower(), m.group(2)
        lines = block.strip("\n").split("\n")
        first = lines[0].strip() if lines else ""
        if lang and lang not in ("bash", "sh", "shell", "text", "action", "console") \
                and not first.startswith(ACTIONS):
            continue
        first = first.lstrip("$ ").strip()
        name, _, arg = first.partition(" ")
        if name in ACTIONS:
            return name, arg.strip(), "\n".join(lines[1:])
        return (f"unknown action {name!r}: use one of {', '.join(ACTIONS)}, one per turn, in a "
                "fenced block")
    # A bare action line with no fence (small models often drop it).
    for line in text.strip().splitlines()[:3]:
        name, _, arg = line.strip().partition(" ")
        if name in ("run_tests", "submit") or (name in ("view", "search") and arg):
            return name, arg.strip(), ""
    return "no action found: answer with one action in a fenced block, e.g. ```\nview FILE\n```"


def _safe_path(path: str) -> str | None:
    path = path.strip().strip("'\"")
    if not path or path.startswith("/") or ".." in path.split("/"):
        return None
    return path


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n… ({len(text) - limit} characters cut) …\n{text[-half:]}"


class AgentLoop:
    """Runs trajectories of one problem. ``test_command`` runs for ``run_tests``."""

    def __init__(self, sampler: Sampler, test_command: str, max_turns: int = 20,
                 max_tokens: int = 60_000, turn_tokens: int = 1024,
                 temperature: float = 0.7, observation_chars: int = 4000,
                 command_timeout: float = 120.0) -> None:
        self.sampler = sampler
        self.test_command = test_command
        self.max_turns = max_turns
        self.max_tokens = max_tokens
        self.turn_tokens = turn_tokens
        self.temperature = temperature
        self.observation_chars = observation_chars
        self.command_timeout = command_timeout

    def first_messages(self, issue: str, files: list[str] | None = None
                       ) -> list[dict[str, str]]:
        hint = ("\n\nFiles that look relevant: " + ", ".join(files)) if files else ""
        return [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"<issue>\n{issue.strip()}\n</issue>{hint}\n\n"
                                            "Give your first action."}]

    def act(self, ws: Workspace, name: str, arg: str, body: str,
            created: list[str]) -> tuple[str, bool]:
        """Run one action; (observation, failed)."""
        if name == "view":
            parts = arg.split()
            path = _safe_path(parts[0]) if parts else None
            if path is None:
                return "view needs a relative PATH inside the repository", True
            text = ws.read(path)
            if text is None:
                return f"{path}: no such file", True
            lines = text.splitlines()
            try:
                start = max(1, int(parts[1])) if len(parts) > 1 else 1
                end = min(len(lines), int(parts[2])) if len(parts) > 2 else len(lines)
            except ValueError:
                return "START and END must be line numbers", True
            shown = "\n".join(f"{i:5d}  {lines[i - 1]}" for i in range(start, end + 1))
            return shown or f"{path} has {len(lines)} lines", False
        if name == "search":
            try:
                parts = shlex.split(arg)
            except ValueError:
                parts = arg.split()
            if not parts:
                return "search needs a PATTERN", True
            where = _safe_path(parts[1]) if len(parts) > 1 else "."
            if where is None:
                return "search PATH must be relative, inside the repository", True
            code, out = ws.run(f"grep -rn --exclude-dir=.git -e {shlex.quote(parts[0])} "
                               f"{shlex.quote(where)} | head -100", self.command_timeout)
            return (out.strip() or "no matches"), False
        if name == "edit":
            path = _safe_path(arg.split()[0]) if arg.split() else None
            if path is None:
                return "edit needs a relative PATH, then a SEARCH/REPLACE block", True
            original = ws.read(path)
            if original is None and not re.search(r"<<<<<<< SEARCH[ \t]*\n=======", body):
                return f"{path}: no such file (an empty SEARCH part creates one)", True
            files = {path: original} if original is not None else {}
            res = parse_edits(f"{path}\n{body}", files, "search_replace")
            if res.patch is None:
                return f"the edit did not apply: {res.error}", True
            new = res.new_files.get(path)
            if new is None:
                return "the edit removed the file; that is not allowed here", True
            ws.write(path, new)
            if original is None:
                created.append(path)
            return f"edited {path}", False
        if name == "run_tests":
            code, out = ws.run(self.test_command, self.command_timeout)
            status = "timed out" if code is None else f"exit code {code}"
            return f"{status}\n{out}", False
        return "", False

    def diff(self, ws: Workspace, created: list[str]) -> str:
        if created:
            ws.run("git add -N -- " + " ".join(shlex.quote(p) for p in created), 30)
        code, out = ws.run("git -c core.quotepath=off diff --no-color --no-ext-diff", 60)
        if code != 0:
            return ""
        return out if out.endswith("\n") or not out else out + "\n"

    def run(self, ws: Workspace, issue: str, files: list[str] | None = None,
            seed: int | None = 0) -> Trajectory:
        """One trajectory in ``ws`` (a fresh checkout)."""
        messages = self.first_messages(issue, files)
        turns: list[Turn] = []
        created: list[str] = []
        used = 0
        stop = "max_turns"
        for t in range(self.max_turns):
            if used >= self.max_tokens:
                stop = "max_tokens"
                break
            params = SamplingParams(n=1, temperature=self.temperature,
                                    max_tokens=self.turn_tokens,
                                    seed=None if seed is None else seed + t)
            try:
                comp = self.sampler.sample(messages, params)[0]
            except SamplerError as exc:
                stop = f"sampler error: {exc}"
                break
            used += comp.prompt_tokens + comp.completion_tokens
            messages.append({"role": "assistant", "content": comp.text})
            action = parse_action(comp.text)
            if isinstance(action, str):
                turn = Turn("(none)", action, comp.prompt_tokens, comp.completion_tokens, True)
            else:
                name, arg, body = action
                if name == "submit":
                    turns.append(Turn("submit", "", comp.prompt_tokens, comp.completion_tokens))
                    stop = "submitted"
                    break
                try:
                    obs, failed = self.act(ws, name, arg, body, created)
                except Exception as exc:  # noqa: BLE001 - a broken action is the model's turn
                    obs, failed = f"the action failed: {type(exc).__name__}: {exc}", True
                turn = Turn(f"{name} {arg}".strip(), obs, comp.prompt_tokens,
                            comp.completion_tokens, failed)
            turns.append(turn)
            messages.append({"role": "user",
                             "content": _cut(turn.observation, self.observation_chars)})
        return Trajectory(self.diff(ws, created), stop, turns, seed, messages)
