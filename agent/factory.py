"""Which sampler a run gets, in one place: the in-process vLLM engine on a model (a known
name, fetched and checked, or a Hugging Face folder) or an OpenAI-compatible endpoint.

Every entry point (the command line, the GitHub bot, the Celery sampling workers, the
benchmarks) makes its sampler here, so ``PATCHSWARM_MODEL`` and the endpoint rules mean the
same everywhere.
"""

from __future__ import annotations

import os

from .sampler import Sampler

MODEL_ENV = "PATCHSWARM_MODEL"
"""Names the default model when ``--model`` is not given."""


def default_model() -> str:
    """``PATCHSWARM_MODEL``, else the bundled default model."""
    from .models import DEFAULT_MODEL

    return os.environ.get(MODEL_ENV) or DEFAULT_MODEL


def model_for(model: str | None, endpoint: str | None = None) -> str | None:
    """The model a run asks for: the one named; with an endpoint and none named, None (the
    server's only model); else the default model."""
    return model if (model or endpoint) else default_model()


def make_sampler(model: str | None, endpoint: str | None = None) -> Sampler:
    """A sampler on ``endpoint`` (OpenAI-compatible) when given, else the in-process engine
    on ``model`` (resolved, fetched and hash-checked when it is a known name)."""
    name = model_for(model, endpoint)
    if endpoint:
        from .openai_backend import OpenAISampler

        return OpenAISampler(endpoint, name)
    from .models import resolve_model
    from .sampler import VLLMSampler

    return VLLMSampler(str(resolve_model(str(name))), name=name)


class SamplerOnDemand:
    """A sampler factory for the runner: the sampler is made on the first call (an engine
    starts only when a run needs one) and kept for the next calls until :meth:`close`."""

    def __init__(self, model: str | None, endpoint: str | None = None) -> None:
        self.model = model
        self.endpoint = endpoint
        self._sampler: Sampler | None = None

    def __call__(self) -> Sampler:
        if self._sampler is None:
            self._sampler = make_sampler(self.model, self.endpoint)
        return self._sampler

    def close(self) -> None:
        close = getattr(self._sampler, "close", None)
        self._sampler = None
        if close is not None:
            close()
