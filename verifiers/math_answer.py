"""Math answers: pull the final answer out of a model's text and compare answers for equivalence.

Equivalence is decided by Hugging Face's ``math-verify``. Its own time limits use
``signal.alarm``, which works only on the main thread of the main interpreter, and a symbolic
comparison can run for minutes (``9^{9^{9}}``). So the comparison runs in a small pool of
long-lived worker processes with math-verify's time limits switched off; a worker that overruns
is killed and replaced, and the comparison counts as not equivalent. This works from any thread.
The workers are plain ``python -c`` subprocesses (not ``multiprocessing``), so callers need no
``if __name__ == "__main__"`` guard and no particular start method. POSIX only.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import select
import subprocess
import sys
import threading
import time

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Extraction

_BOXED = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
# Each matches the phrase only; the answer is the rest of the line after it.
_PHRASES = [
    re.compile(r"final answer is\s*:?\s*", re.IGNORECASE),
    re.compile(r"^[ \t]*####\s*", re.MULTILINE),
    re.compile(r"\banswer is\s*:?\s*", re.IGNORECASE),
    re.compile(r"\banswer\s*\**\s*:\s*", re.IGNORECASE),
]
_MATH_DELIMITERS = [("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")]
_SENTENCE_END = re.compile(r"\.(?=\s|$)")


def _braced(text: str, start: int) -> str | None:
    """The contents of the brace group opening at ``text[start]``, or None if unclosed.

    A backslash escapes the next character, so ``\\{`` and ``\\}`` do not count.
    """
    depth = 0
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
        i += 1
    return None


def _last_boxed(text: str) -> str | None:
    for match in reversed(list(_BOXED.finditer(text))):
        i = match.end()
        while i < len(text) and text[i] in " \t":
            i += 1
        if i < len(text) and text[i] == "{":
            content = _braced(text, i)
        elif i > match.end():
            # "\boxed 5": the argument is the next token.
            token = re.match(r"[^\s$]+", text[i:])
            content = token.group(0) if token else None
        else:
            content = None
        if content is not None and content.strip():
            return content.strip()
    return None


def _clean_phrase(text: str) -> str | None:
    text = text.strip().strip("*").strip()
    for opening, closing in _MATH_DELIMITERS:
        if text.startswith(opening):
            end = text.find(closing, len(opening))
            if end > 0:
                text = text[len(opening) : end]
                break
    else:
        sentence_end = _SENTENCE_END.search(text)
        if sentence_end:
            text = text[: sentence_end.start()]
    previous = None
    while previous != text:
        previous = text
        text = text.strip().strip("*").strip().strip("$").rstrip(".")
    return text or None


def extract_answer(text: str) -> str | None:
    """The final answer in ``text``: the last ``\\boxed{...}``/``\\fbox{...}`` (braces balanced),
    else the last "The final answer is X", "#### X" (GSM8K), "the answer is X" or "Answer: X",
    tried in that order. A trailing period and surrounding ``$`` are stripped. None if none.
    """
    if not text:
        return None
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed
    for phrase in _PHRASES:
        for match in reversed(list(phrase.finditer(text))):
            answer = _clean_phrase(text[match.end() :].split("\n", 1)[0])
            if answer:
                return answer
    return None


# --------------------------------------------------------------------------------------------
# Equivalence: a pool of worker processes

_STARTUP_TIMEOUT = 120.0
"""Seconds a new worker may take to import sympy and math-verify (not counted in ``timeout``)."""

_WORKER_NAME = "__patchswarm_math_worker__"
# -P keeps the caller's working directory off sys.path, so a stray sympy.py there cannot shadow
# the real one.
_WORKER_COMMAND = [
    sys.executable,
    "-P",
    "-c",
    f"import runpy, sys; runpy.run_path(sys.argv[1], run_name={_WORKER_NAME!r})",
    os.path.abspath(__file__),
]


class _WorkerGone(Exception):
    """The worker exited or overran; it must not be reused."""


class _WorkerDead(_WorkerGone):
    """The worker was found dead before it got the request (safe to retry)."""


class _Worker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            _WORKER_COMMAND,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
        )
        self._buffer = b""
        try:
            reply = self._read(time.monotonic() + _STARTUP_TIMEOUT)
        except _WorkerGone:
            self.kill()
            raise RuntimeError("math-verify worker did not start") from None
        if "fatal" in reply:
            self.kill()
            raise RuntimeError(f"math-verify worker could not start: {reply['fatal']}")

    def compare(self, gold: str, answer: str, timeout: float) -> bool:
        request = json.dumps({"gold": gold, "answer": answer}) + "\n"
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(request.encode())
            self.proc.stdin.flush()
        except OSError:
            raise _WorkerDead("worker pipe closed") from None
        return bool(self._read(time.monotonic() + timeout).get("equal"))

    def _read(self, deadline: float) -> dict:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(max(1, int(remaining * 1000))):
                raise _WorkerGone("timed out")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise _WorkerGone("worker exited")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            reply = json.loads(line)
        except ValueError:
            raise _WorkerGone("unreadable reply") from None
        if not isinstance(reply, dict):
            raise _WorkerGone("unreadable reply")
        return reply

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.forget()

    def forget(self) -> None:
        """Close our ends of the pipes without touching the process."""
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


class _WorkerPool:
    def __init__(self, max_workers: int) -> None:
        self.max_workers = max_workers
        self._idle: list[_Worker] = []
        self._live = 0
        self._closed = False
        self._cond = threading.Condition()

    def compare(self, gold: str, answer: str, timeout: float) -> bool:
        # One retry covers a worker that died while idle (its pipe is found closed on write).
        for attempt in range(2):
            worker = self._acquire()
            try:
                result = worker.compare(gold, answer, timeout)
            except _WorkerGone as exc:
                self._release(worker, healthy=False)
                if isinstance(exc, _WorkerDead) and attempt == 0:
                    continue
                logger.info(
                    "math-verify comparison abandoned (%s): %.80r vs %.80r", exc, gold, answer
                )
                return False
            except BaseException:
                self._release(worker, healthy=False)
                raise
            self._release(worker, healthy=True)
            return result
        return False

    def _acquire(self) -> _Worker:
        with self._cond:
            while True:
                if self._idle:
                    return self._idle.pop()
                if self._live < self.max_workers:
                    self._live += 1
                    break
                self._cond.wait()
        try:
            return _Worker()
        except BaseException:
            with self._cond:
                self._live -= 1
                self._cond.notify()
            raise

    def _release(self, worker: _Worker, healthy: bool) -> None:
        with self._cond:
            keep = healthy and not self._closed
            if keep:
                self._idle.append(worker)
            else:
                self._live -= 1
            self._cond.notify()
        if not keep:
            worker.kill()

    def shutdown(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
            self._live -= len(idle)
        for worker in idle:
            worker.kill()

    def close(self) -> None:
        self._closed = True
        self.shutdown()

    def after_fork(self) -> None:
        """In a forked child: the workers belong to the parent, so drop them untouched."""
        for worker in self._idle:
            worker.forget()
        self._idle = []
        self._live = 0
        self._cond = threading.Condition()


_POOL = _WorkerPool(max_workers=max(1, min(4, os.cpu_count() or 1)))
atexit.register(_POOL.close)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_POOL.after_fork)


def shutdown_workers() -> None:
    """Stop the idle comparison workers now; later comparisons start fresh ones."""
    _POOL.shutdown()


def equivalent(gold: str, answer: str, timeout: float = 5.0) -> bool:
    """Whether ``answer`` is mathematically equivalent to ``gold``, per math-verify.

    Both are parsed with ``math_verify.parse`` (wrapped in ``$...$`` unless they already carry
    math delimiters or ``\\boxed``) and compared with ``verify(gold, answer)``, gold first since
    the check is not symmetric (``x=3`` as an answer matches a gold ``3``). A comparison that
    takes longer than ``timeout`` seconds counts as not equivalent. The time spent waiting for
    a free worker, or for a new one to start, is not counted. Empty or unparsable input gives
    False. Raises RuntimeError when math-verify cannot be imported by the worker.
    """
    if gold is None or answer is None:
        return False
    gold, answer = str(gold).strip(), str(answer).strip()
    if not gold or not answer:
        return False
    if gold == answer:
        return True
    return _POOL.compare(gold, answer, timeout)


def group_answers(answers: list[str | None], timeout: float = 5.0) -> list[list[int]]:
    """Equivalence classes of candidate answers, as lists of indices in input order.

    Each answer is compared (as the ``answer``, the class's first member as ``gold``) with the
    representative of every class so far and joins the first that matches, else starts a new
    class. None and blank answers belong to no class.
    """
    classes: list[list[int]] = []
    by_text: dict[str, int] = {}
    for index, answer in enumerate(answers):
        if answer is None or not answer.strip():
            continue
        text = answer.strip()
        if text in by_text:
            classes[by_text[text]].append(index)
            continue
        for class_index, members in enumerate(classes):
            representative = answers[members[0]]
            assert representative is not None
            if equivalent(representative, text, timeout):
                members.append(index)
                by_text[text] = class_index
                break
        else:
            by_text[text] = len(classes)
            classes.append([index])
    return classes


# --------------------------------------------------------------------------------------------
# The worker process


_MATH_MARKERS = ("$", "\\(", "\\[", "\\boxed")


def _as_latex(text: str) -> str:
    return text if any(marker in text for marker in _MATH_MARKERS) else f"${text}$"


def _worker_compare(gold: str, answer: str) -> bool:
    from math_verify import parse, verify

    gold_parsed = parse(_as_latex(gold), parsing_timeout=None)
    answer_parsed = parse(_as_latex(answer), parsing_timeout=None)
    if not gold_parsed or not answer_parsed:
        return False
    return bool(verify(gold_parsed, answer_parsed, timeout_seconds=None))


def _exit_with_parent(parent: int) -> None:
    # A worker stuck in a long comparison would outlive a parent killed with SIGKILL; it cannot
    # see stdin close while computing, so watch the parent id instead.
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)


def _worker_main() -> None:
    """Serve JSON-line requests on stdin: {"gold", "answer"} -> {"equal": bool}."""
    # Keep the protocol stream private: anything a library prints goes to /dev/null.
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    logging.disable(logging.CRITICAL)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()

    def send(message: dict) -> None:
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    try:
        import math_verify

        math_verify.parse("$1$", parsing_timeout=None)  # load the LaTeX grammar up front
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises
        send({"fatal": f"{type(exc).__name__}: {exc}"})
        return
    send({"ready": True})
    for line in sys.stdin:
        try:
            request = json.loads(line)
            send({"equal": _worker_compare(str(request["gold"]), str(request["answer"]))})
        except Exception as exc:  # noqa: BLE001 - a bad input is simply not equivalent
            send({"equal": False, "error": f"{type(exc).__name__}: {exc}"})


if __name__ == _WORKER_NAME:
    _worker_main()
