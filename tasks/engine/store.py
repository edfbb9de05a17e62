"""The run store: every candidate and verdict written as it arrives, so a run resumes.

A run is a folder::

    run.json          what was asked (problem, settings)
    candidates.jsonl  one line per sampled candidate
    verdicts.jsonl    one line per verified distinct change (by normalised-patch key)
    events.jsonl      stage timings
    best.patch        the chosen patch, when one passed
    report.md         for a person; summary.json for a program

Lines are appended and flushed one by one; a line cut short by a crash is ignored on read.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL file; a line cut short by a crash is skipped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


_APPEND_LOCK = threading.Lock()


def append_jsonl(path: Path, *records: dict[str, Any]) -> None:
    """Append records as lines and flush them to disk (a crash loses at most the line being
    written); a line a crash cut short never swallows the first of them."""
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    with _APPEND_LOCK, open(path, "a") as fh:
        if fh.tell() > 0 and not _ends_with_newline(Path(path)):
            text = "\n" + text
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


class RunStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def _append(self, name: str, record: dict[str, Any]) -> None:
        append_jsonl(self.path / name, record)

    def _read(self, name: str) -> list[dict[str, Any]]:
        return read_jsonl(self.path / name)

    def write_json(self, name: str, data: Any) -> None:
        tmp = self.path / f".{name}.tmp"
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(tmp, self.path / name)

    def read_json(self, name: str) -> Any:
        p = self.path / name
        return json.loads(p.read_text()) if p.exists() else None

    def write_text(self, name: str, text: str) -> None:
        tmp = self.path / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.path / name)

    def add_candidate(self, cand: dict[str, Any]) -> None:
        self._append("candidates.jsonl", cand)

    def candidates(self) -> list[dict[str, Any]]:
        """Candidates by id; a candidate written twice (a resumed run) counts once."""
        seen: dict[str, dict[str, Any]] = {}
        for c in self._read("candidates.jsonl"):
            seen.setdefault(c["id"], c)
        return list(seen.values())

    def add_verdict(self, key: str, verdict: dict[str, Any]) -> None:
        self._append("verdicts.jsonl", {"key": key, **verdict})

    def verdicts(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for v in self._read("verdicts.jsonl"):
            out.setdefault(v["key"], v)
        return out

    def event(self, stage: str, seconds: float, **info: Any) -> None:
        self._append("events.jsonl", {"stage": stage, "seconds": round(seconds, 3),
                                      "at": time.time(), **info})

    def events(self) -> list[dict[str, Any]]:
        return self._read("events.jsonl")


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"
