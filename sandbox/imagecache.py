"""The image cache: what is cached, when each image was last used, and eviction.

Every image this project builds carries the ``patchswarm`` label (``rootfs``, ``base`` or
``env``). Uses are recorded in a small SQLite file under the cache home (an image is used when
a build finds it or a sandbox starts from it). Pruning to a disk budget removes the
least-recently-used environment images first, then base images that no cached image is built
on; an image that a container uses, or that another cached image is built on, is never
removed.

Sizes: docker reports an image's size with everything under it. Here each image is charged
only for what it adds over the nearest cached image it is built on, so the total is the
disk the cache really holds.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from docker.errors import APIError, NotFound

from .engine import LABEL, cache_home, client

KINDS_ORDER = {"env": 0, "base": 1, "rootfs": 2}
BUDGET_ENV = "PATCHSWARM_IMAGE_BUDGET_GB"


def _db_path():  # noqa: ANN202 - a Path
    d = cache_home()
    d.mkdir(parents=True, exist_ok=True)
    return d / "images.sqlite"


def _connect() -> sqlite3.Connection:
    con = sqlite3.connect(_db_path(), timeout=30)
    con.execute("CREATE TABLE IF NOT EXISTS usage (tag TEXT PRIMARY KEY, last_used REAL, "
                "uses INTEGER NOT NULL DEFAULT 0)")
    return con


def note_used(tag: str, when: float | None = None) -> None:
    """Record a use of ``tag`` now (or at ``when``)."""
    when = time.time() if when is None else when
    con = _connect()
    try:
        with con:
            con.execute("INSERT INTO usage (tag, last_used, uses) VALUES (?, ?, 1) "
                        "ON CONFLICT(tag) DO UPDATE SET last_used = MAX(last_used, "
                        "excluded.last_used), uses = uses + 1", (tag, when))
    finally:
        con.close()


def usage() -> dict[str, tuple[float, int]]:
    con = _connect()
    try:
        return {t: (lu, n) for t, lu, n in con.execute("SELECT tag, last_used, uses FROM usage")}
    finally:
        con.close()


def _forget(tags: Iterable[str]) -> None:
    con = _connect()
    try:
        with con:
            con.executemany("DELETE FROM usage WHERE tag = ?", [(t,) for t in tags])
    finally:
        con.close()


@dataclass
class CachedImage:
    id: str
    tags: list[str]
    kind: str
    size: int
    """Bytes of the image with everything under it."""
    own_size: int
    """Bytes it adds over the nearest cached image it is built on."""
    created: float
    last_used: float
    uses: int
    source: str = ""
    built_on: str | None = None
    """The id of the nearest cached image this one is built on."""
    containers: int = 0
    children: list[str] = field(default_factory=list)
    """Ids of cached images built on this one."""

    @property
    def tag(self) -> str:
        return self.tags[0] if self.tags else self.id[:19]

    @property
    def in_use(self) -> bool:
        return bool(self.containers or self.children)

    def to_dict(self) -> dict:
        return {**asdict(self), "tag": self.tag, "in_use": self.in_use}


def list_images() -> list[CachedImage]:
    """Every image of this project in the engine, least recently used first."""
    api = client().api
    rows = api.images(filters={"label": LABEL})
    used = usage()
    counts: dict[str, int] = {}
    for c in api.containers(all=True):
        counts[c.get("ImageID", "")] = counts.get(c.get("ImageID", ""), 0) + 1
    images: dict[str, CachedImage] = {}
    for r in rows:
        tags = [t for t in (r.get("RepoTags") or []) if t != "<none>:<none>"]
        labels = r.get("Labels") or {}
        last, uses = 0.0, 0
        for t in tags:
            lu, n = used.get(t, (0.0, 0))
            last, uses = max(last, lu), uses + n
        images[r["Id"]] = CachedImage(
            id=r["Id"], tags=tags, kind=labels.get(LABEL, "?"), size=int(r.get("Size", 0)),
            own_size=int(r.get("Size", 0)), created=float(r.get("Created", 0)),
            last_used=last or float(r.get("Created", 0)), uses=uses,
            source=labels.get("patchswarm.source", ""), containers=counts.get(r["Id"], 0))
    for img in images.values():
        try:
            ancestors = [h.get("Id") for h in api.history(img.id)[1:]]
        except (APIError, NotFound):
            continue
        for anc in ancestors:
            if anc in images:
                img.built_on = anc
                img.own_size = max(0, img.size - images[anc].size)
                images[anc].children.append(img.id)
                break
    return sorted(images.values(), key=lambda i: (i.last_used, KINDS_ORDER.get(i.kind, 3)))


def total_size(images: list[CachedImage]) -> int:
    return sum(i.own_size for i in images)


def budget_from_env() -> int | None:
    """The disk budget in bytes from ``PATCHSWARM_IMAGE_BUDGET_GB``, or None."""
    raw = os.environ.get(BUDGET_ENV, "").strip()
    if not raw:
        return None
    try:
        return int(float(raw) * 1e9)
    except ValueError:
        raise ValueError(f"{BUDGET_ENV}={raw!r} is not a number of gigabytes") from None


def _remove(img: CachedImage) -> bool:
    api = client().api
    try:
        for t in img.tags or [img.id]:
            api.remove_image(t, noprune=False)
    except (APIError, NotFound):
        return False
    _forget(img.tags)
    return True


def prune(budget: int | None = None, remove_all: bool = False,
          keep: Iterable[str] = (), dry_run: bool = False,
          only: Iterable[str] | None = None) -> list[CachedImage]:
    """Remove cached images, least recently used first, until the cache fits ``budget``
    bytes (or, with ``remove_all``, every image no container uses). Images named in ``keep``,
    images a container uses and images other cached images are built on stay; with ``only``,
    just the images named there may go. Returns what was removed (or would be, with
    ``dry_run``)."""
    if budget is None and not remove_all:
        raise ValueError("give a budget or remove_all")
    keep = set(keep)
    allowed = None if only is None else set(only)
    removed: list[CachedImage] = []
    while True:
        images = list_images()
        gone = {i.id for i in removed}
        images = [i for i in images if i.id not in gone] if dry_run else images
        total = total_size(images)
        if not remove_all and total <= (budget or 0):
            return removed
        if dry_run:
            # Children of what would go are gone too, in a dry run.
            for i in images:
                i.children = [c for c in i.children if c not in gone]
        victims = [i for i in images
                   if not i.containers and not i.children and not (set(i.tags) & keep)
                   and i.id not in keep
                   and (allowed is None or bool(set(i.tags) & allowed) or i.id in allowed)]
        if not victims:
            return removed
        victims.sort(key=lambda i: (KINDS_ORDER.get(i.kind, 3), i.last_used))
        victim = victims[0]
        if dry_run or _remove(victim):
            removed.append(victim)
        else:
            # The engine refused (a container started from it meanwhile): keep it.
            keep.add(victim.id)
