"""Playlists for the jukebox app."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Track:
    title: str
    artist: str
    seconds: int


def format_length(seconds: int) -> str:
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}:{secs:02d}"


class Playlist:
    def __init__(self, name: str, tracks: list[Track] = []) -> None:
        self.name = name
        self.tracks = tracks

    def __len__(self) -> int:
        return len(self.tracks)

    def add(self, track: Track) -> None:
        if track in self.tracks:
            raise ValueError(f"{track.title!r} is already in {self.name!r}")
        self.tracks.append(track)

    def remove(self, title: str) -> Track:
        for i, track in enumerate(self.tracks):
            if track.title == title:
                return self.tracks.pop(i)
        raise KeyError(title)

    def total_seconds(self) -> int:
        return sum(track.seconds for track in self.tracks)

    def by_artist(self, artist: str) -> list[Track]:
        return [track for track in self.tracks if track.artist == artist]

    def describe(self) -> str:
        count = len(self.tracks)
        noun = "track" if count == 1 else "tracks"
        return f"{self.name}: {count} {noun}, {format_length(self.total_seconds())}"
