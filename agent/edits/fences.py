"""Fenced code blocks in a model answer."""

from __future__ import annotations

from dataclasses import dataclass

from .lines import is_blank
from .paths import FENCE_RE, fence_info


@dataclass
class Fence:
    opener: int
    closer: int | None
    lang: str
    path: str | None
    body: list[str]


def find_fences(lines: list[str], files: dict[str, str]) -> list[Fence]:
    out: list[Fence] = []
    i = 0
    while i < len(lines):
        m = FENCE_RE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m.group("fence"), m.group("indent")
        lang, path = fence_info(m.group("info"), files)
        j = i + 1
        while j < len(lines):
            c = FENCE_RE.match(lines[j])
            if (
                c
                and not c.group("info").strip()
                and c.group("fence")[0] == fence[0]
                and len(c.group("fence")) >= len(fence)
            ):
                break
            j += 1
        body = lines[i + 1 : j]
        if indent and all(x.startswith(indent) or is_blank(x) for x in body):
            body = [x[len(indent) :] for x in body]
        out.append(Fence(i, j if j < len(lines) else None, lang, path, body))
        i = j + 1
    return out
