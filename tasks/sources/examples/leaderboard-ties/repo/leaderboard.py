"""Leaderboard for the weekly puzzle contest."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    player: str
    score: int
    seconds: float  # time taken to finish; lower is better


def rank(entries: list[Entry]) -> list[Entry]:
    """Contest order: highest score first; on equal scores the faster player wins,
    and players with equal score and time are listed by name."""
    return sorted(entries, key=lambda e: (e.score, e.seconds, e.player), reverse=True)


def top(entries: list[Entry], n: int = 3) -> list[str]:
    """Names of the first n players."""
    return [entry.player for entry in rank(entries)[:n]]


def best_per_player(entries: list[Entry]) -> list[Entry]:
    """Each player's best attempt (players may submit several times), in contest order."""
    best: dict[str, Entry] = {}
    for entry in rank(entries):
        best.setdefault(entry.player, entry)
    return list(best.values())


def table(entries: list[Entry]) -> str:
    lines = [f"{'#':>2}  {'player':<10} {'score':>5} {'time':>7}"]
    for position, entry in enumerate(rank(entries), start=1):
        lines.append(f"{position:>2}  {entry.player:<10} {entry.score:>5} {entry.seconds:>7.1f}")
    return "\n".join(lines)
