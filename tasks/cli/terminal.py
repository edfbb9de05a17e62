"""What the command line shows while it works: stages, progress bars, live sampling progress
(samples finished, tokens, tokens per second), and the engine's own output kept out of it.

vLLM, transformers and the model conversion write logs, warnings and progress bars of their
own, some from a spawned engine process that inherits the terminal. Unless ``--verbose``,
:class:`EngineOutput` points the process's standard output and error at a log file in the run
folder while the engine runs, and keeps patchswarm's own console on the terminal.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True, soft_wrap=True)
# Wide enough for the results table when the output goes to a file or a pipe.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 140)

ENGINE_LOG = "engine.log"
PLAIN_EVERY = 10.0
"""Seconds between sampling progress lines when the terminal cannot redraw a bar."""


def default_model() -> str:
    from patchswarm.agent.models import DEFAULT_MODEL

    return os.environ.get("PATCHSWARM_MODEL", DEFAULT_MODEL)


class RichReporter:
    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.t0 = time.monotonic()

    def stage(self, name: str) -> None:
        console.print(f"[dim]{time.monotonic() - self.t0:7.1f}s[/] {self.prefix}{name}")

    def log(self, msg: str) -> None:
        console.print(f"[dim]          {msg}[/]")

    def progress(self, name: str, total: int) -> Callable[[int], None]:
        bar = Progress(TextColumn(f"          {name}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), console=console, transient=False)
        task = bar.add_task(name, total=total)
        bar.start()
        state = {"n": 0}

        def advance(k: int = 1) -> None:
            state["n"] += k
            bar.advance(task, k)
            if state["n"] >= total:
                bar.stop()

        return advance


class SamplingDisplay:
    """Shows a sampler's :class:`~patchswarm.agent.sampler.SampleProgress` as it comes: a live
    bar on a terminal, a plain line every few seconds elsewhere, and a last line when done."""

    def __init__(self, con: Console | None = None) -> None:
        self.console = con or console
        self._bar: Progress | None = None
        self._task: Any = None
        self._last_line = 0.0

    @staticmethod
    def line(p: Any) -> str:
        return (f"sampling: {p.finished}/{p.samples} samples, {p.tokens:,} tokens, "
                f"{p.tokens_per_second:.0f} tokens/s, {p.seconds:.0f}s")

    def __call__(self, p: Any) -> None:
        if not self.console.is_interactive:
            now = time.monotonic()
            if p.done or now - self._last_line >= PLAIN_EVERY:
                self._last_line = now
                self.console.print(f"[dim]          {self.line(p)}[/]")
            return
        if self._bar is None:
            self._bar = Progress(
                TextColumn("          sampling"), BarColumn(), MofNCompleteColumn(),
                TextColumn("samples, {task.fields[tokens]:,} tokens, "
                           "{task.fields[rate]:.0f} tokens/s"),
                TimeElapsedColumn(), console=self.console, transient=False)
            self._task = self._bar.add_task("sampling", total=p.samples, tokens=0, rate=0.0)
            self._bar.start()
        self._bar.update(self._task, completed=p.finished, tokens=p.tokens,
                         rate=p.tokens_per_second)
        if p.done:
            self._bar.stop()
            self._bar = None


class EngineOutput:
    """While started, the process's standard output and error go to ``log_file`` (so do
    those of any engine process spawned meanwhile, for its whole life); patchswarm's consoles
    keep writing to the terminal. Does nothing when ``verbose``, without a log file, or when
    standard error is not the process's own (a test runner capturing it)."""

    def __init__(self, log_file: Path | None, verbose: bool = False,
                 consoles: tuple[Console, ...] | None = None) -> None:
        self.log_file = log_file
        self.verbose = verbose
        self.consoles = consoles or (console, out)
        self._saved: dict[int, int] = {}
        self._files: list[tuple[Console, IO[str] | None]] = []
        self._log: IO[str] | None = None

    @property
    def active(self) -> bool:
        return self._log is not None

    def start(self) -> None:
        if self.verbose:
            os.environ.setdefault("VLLM_LOGGING_LEVEL", "INFO")
        if self.verbose or self.log_file is None or self.active:
            return
        try:
            if sys.stderr.fileno() != 2 or sys.stdout.fileno() != 1:
                return
        except (AttributeError, OSError, ValueError):
            return
        sys.stdout.flush()
        sys.stderr.flush()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_file, "a", buffering=1)  # noqa: SIM115 - closed in stop()
        for con in self.consoles:
            fd = 2 if con.stderr else 1
            self._files.append((con, getattr(con, "_file", None)))
            con.file = os.fdopen(os.dup(fd), "w", buffering=1)
        for fd in (1, 2):
            self._saved[fd] = os.dup(fd)
            os.dup2(self._log.fileno(), fd)
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "INFO")  # the whole log, in the file

    def stop(self) -> None:
        if not self.active:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, saved in self._saved.items():
            os.dup2(saved, fd)
            os.close(saved)
        self._saved.clear()
        for con, before in self._files:
            con.file.close()
            con.file = before  # type: ignore[assignment] - None: the stream of the moment
        self._files.clear()
        assert self._log is not None
        self._log.close()
        self._log = None


class LazySampler:
    """Starts the engine on first use only, and once for many problems.

    The in-process engine reports sampling progress to the terminal; its own output goes to
    ``log_file`` unless ``verbose``."""

    def __init__(self, model: str | None, endpoint: str | None = None,
                 log_file: Path | None = None, verbose: bool = False) -> None:
        # With an endpoint and no model the server's only model is used; without an
        # endpoint the default model is.
        self.model_arg = model if (model or endpoint) else default_model()
        self.endpoint = endpoint
        self._sampler = None
        self.load_seconds: dict[str, float] = {}
        self.output = EngineOutput(log_file, verbose)

    def __call__(self):  # noqa: ANN204
        if self._sampler is None:
            if self.endpoint:
                from patchswarm.agent.openai_backend import OpenAISampler

                self._sampler = OpenAISampler(self.endpoint, self.model_arg)
                return self._sampler
            from patchswarm.agent.models import resolve_model
            from patchswarm.agent.sampler import VLLMSampler

            console.print(f"[bold]model[/] {self.model_arg}")
            self.output.start()
            where = (f" (its own log: {self.output.log_file}; --verbose shows it here)"
                     if self.output.active else "")
            try:
                t0 = time.monotonic()
                path = resolve_model(self.model_arg)
                self.load_seconds["fetch_and_convert"] = time.monotonic() - t0
                t0 = time.monotonic()
                console.print(f"[dim]          starting the vLLM engine{where}…[/]")
                self._sampler = VLLMSampler(str(path), name=self.model_arg)
            except BaseException:
                if where:
                    console.print(f"[dim]          the engine's own log: "
                                  f"{self.output.log_file}[/]")
                self.output.stop()
                raise
            self.load_seconds["engine_start"] = time.monotonic() - t0
            took = self.load_seconds["engine_start"]
            console.print(f"[dim]          engine ready in {took:.0f}s[/]")
            self._sampler.progress = SamplingDisplay()
        return self._sampler

    def close(self) -> None:
        try:
            if self._sampler is not None:
                self._sampler.close()
        finally:
            self.output.stop()
