"""Shared fixtures. Integration tests use the real Docker engine; when it is missing they fail
with a message saying how to start it (the README's set-up step does), never skip."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def docker_engine():
    from patchswarm.sandbox.engine import SandboxError, client

    try:
        return client()
    except SandboxError as exc:
        pytest.fail(f"{exc}\nRun `bash docker/setup.sh --test` first.")


@pytest.fixture(scope="session")
def base_image(docker_engine) -> str:
    from patchswarm.sandbox.images import ensure_base_image

    return ensure_base_image()


@pytest.fixture
def example_repo(tmp_path):
    """A factory: a real git repository made from a bundled example."""
    from patchswarm.tasks.sources import examples

    def make(example_id: str) -> Path:
        return examples.materialise(example_id, tmp_path / example_id)

    return make


@pytest.fixture(scope="session")
def env_image(base_image, tmp_path_factory) -> str:
    """The environment image of the `gradebook-average` example."""
    from patchswarm.sandbox.images import ensure_env_image
    from patchswarm.tasks.sources import examples

    repo = examples.materialise("gradebook-average",
                                tmp_path_factory.mktemp("env") / "gradebook-average")
    return ensure_env_image(repo, "HEAD", base_image)


@pytest.fixture(autouse=True, scope="session")
def _no_leftover_containers():
    """After the whole session no sandbox container may remain."""
    yield
    try:
        from patchswarm.sandbox.container import OWNER, RUN_LABEL
        from patchswarm.sandbox.engine import client

        left = client().containers.list(all=True, filters={"label": f"{RUN_LABEL}={OWNER}"})
    except Exception:  # noqa: BLE001 - no engine: the tests that needed one already failed
        return
    for c in left:
        c.remove(force=True)
    assert not left, f"{len(left)} sandbox containers were left behind"
