"""The Docker engine connection, shared by images and containers."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from docker.client import DockerClient, from_env
from docker.errors import DockerException

LABEL = "patchswarm"
"""Every container and image this project makes carries this label, so a reaper can find them."""


class SandboxError(Exception):
    """A sandbox could not be built or run; the message says what to do."""


@functools.cache
def client() -> DockerClient:
    try:
        c = from_env(timeout=600)
        c.ping()
    except DockerException as exc:
        raise SandboxError(
            "No Docker engine answers. Start one (`dockerd &`, or `systemctl start docker`), "
            "or run the set-up step from the README, which installs and starts it. "
            f"({exc})"
        ) from exc
    return c


def cache_home() -> Path:
    """Where images' logs, locks and the image cache's records live (``PATCHSWARM_HOME``)."""
    return Path(os.environ.get("PATCHSWARM_HOME", Path.home() / ".cache" / "patchswarm"))
