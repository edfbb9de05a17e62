"""A sampler backend for any OpenAI-compatible server: ``vllm serve`` on a GPU machine, or a
hosted API.

All ``n`` samples go in one request, so a server with prefix caching computes the shared prompt
once. A server that refuses ``n > 1`` (or answers with fewer choices than asked) gets the rest as
separate requests, run at most ``concurrency`` at a time; each of those carries ``seed + i``.

Failures are told apart:

- the endpoint is down, times out, or answers 429/5xx: retried with exponential backoff
  (``Retry-After`` honoured), then :class:`SamplerError` saying what to check;
- the prompt is over the model's context: :class:`SamplerError` at once, no retries;
- any other refusal (4xx): :class:`SamplerError` with the server's own message.

Tokens are recorded per candidate. vLLM returns each choice's token ids when asked
(``return_token_ids``), which gives exact counts; other servers report only the request's total,
which is then split over the choices in proportion to their length (exact when ``n == 1``).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from .sampler import Completion, SamplerError, SamplingParams

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
_CONTEXT_WORDS = ("context length", "maximum context", "max_model_len", "too long",
                  "context window", "maximum input length", "prompt is too long")
_VLLM_EXTRAS = {"return_token_ids": True}


def normalise_endpoint(endpoint: str) -> str:
    """``http://host:8000``, ``…/v1``, ``…/v1/`` or ``…/v1/chat/completions`` → ``…/v1``."""
    url = endpoint.strip()
    if not url:
        raise SamplerError("the endpoint is empty: give a URL such as http://127.0.0.1:8000/v1")
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SamplerError(f"{endpoint!r} is not an http(s) URL: give one such as "
                           "http://127.0.0.1:8000/v1")
    path = parts.path.rstrip("/")
    for tail in ("/chat/completions", "/completions"):
        if path.endswith(tail):
            path = path[: -len(tail)]
    if not path:
        path = "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def apportion(total: int, weights: list[int]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` that sum to ``total``
    (largest remainder)."""
    if not weights:
        return []
    wsum = sum(max(0, w) for w in weights)
    if wsum == 0:
        weights, wsum = [1] * len(weights), len(weights)
    raw = [total * max(0, w) / wsum for w in weights]
    out = [int(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - out[i], reverse=True)
    for i in order[: total - sum(out)]:
        out[i] += 1
    return out


class _Refused(Exception):
    """A 4xx answer that retrying the same request will not change."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class OpenAISampler:
    """Samples from an OpenAI-compatible ``/v1/chat/completions`` endpoint.

    ``model`` is the served model name; None takes the server's only model. ``timeout`` bounds
    each request (seconds, whole answer), ``retries`` is how many times a failed request is
    tried again, ``concurrency`` how many requests run at once across all threads using this
    sampler. The API key comes from ``api_key``, else ``$PATCHSWARM_API_KEY``, else
    ``$OPENAI_API_KEY``.
    """

    def __init__(self, endpoint: str, model: str | None = None, concurrency: int = 8,
                 timeout: float = 600.0, retries: int = 3, api_key: str | None = None,
                 backoff: float = 0.5, max_backoff: float = 20.0) -> None:
        self.endpoint = normalise_endpoint(endpoint)
        self.concurrency = max(1, int(concurrency))
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self.max_backoff = max_backoff
        key = api_key or os.environ.get("PATCHSWARM_API_KEY") or os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(self.timeout, connect=min(10.0, self.timeout)),
            limits=httpx.Limits(max_connections=self.concurrency + 2),
        )
        self._gate = threading.BoundedSemaphore(self.concurrency)
        self._lock = threading.Lock()
        self.n_supported: bool | None = None
        """False once the server refused ``n > 1``; then samples go one request each."""
        self.extras_supported: bool | None = None
        """Whether the server takes vLLM's extra fields (per-choice token ids)."""
        self._tokenize: bool | None = None
        self.max_model_len: int | None = None
        self.requests = 0
        """Requests sent, retries included."""
        self.model = model or self._only_model()

    # ------------------------------------------------------------------ transport

    def _root(self) -> str:
        """The server root (vLLM's /tokenize lives there, not under /v1)."""
        parts = urlsplit(self.endpoint)
        path = parts.path[:-3] if parts.path.endswith("/v1") else parts.path
        return urlunsplit((parts.scheme, parts.netloc, path, "", ""))

    def _wait(self, attempt: int, retry_after: str | None) -> None:
        delay = min(self.max_backoff, self.backoff * (2 ** attempt))
        if retry_after:
            try:
                delay = min(self.max_backoff, max(delay, float(retry_after)))
            except ValueError:
                pass
        time.sleep(delay * (0.75 + 0.5 * random.random()))

    def _call(self, method: str, url: str, body: dict[str, Any] | None = None,
              retries: int | None = None) -> dict[str, Any]:
        """One HTTP call with retries. Raises _Refused for a final 4xx, SamplerError when the
        endpoint cannot be reached or keeps failing."""
        retries = self.retries if retries is None else retries
        last = ""
        for attempt in range(retries + 1):
            retry_after = None
            try:
                with self._gate:
                    with self._lock:
                        self.requests += 1
                    resp = self._client.request(method, url, json=body)
            except httpx.TimeoutException as exc:
                last = (f"no answer within {self.timeout:g}s ({type(exc).__name__}); the server "
                        "is overloaded or stalled: raise the timeout or lower the concurrency")
            except httpx.TransportError as exc:
                last = (f"cannot connect ({type(exc).__name__}: {exc}); is the server running "
                        "and is the URL right?")
            else:
                if resp.status_code < 400:
                    try:
                        data = resp.json()
                    except ValueError:
                        last = f"the answer is not JSON: {resp.text[:200]!r}"
                    else:
                        if isinstance(data, dict):
                            return data
                        last = f"the answer is not a JSON object: {resp.text[:200]!r}"
                else:
                    message = _error_message(resp)
                    if resp.status_code not in _RETRY_STATUS:
                        raise _Refused(resp.status_code, message)
                    last = f"HTTP {resp.status_code}: {message}"
                    retry_after = resp.headers.get("retry-after")
            if attempt < retries:
                self._wait(attempt, retry_after)
        raise SamplerError(
            f"the endpoint {self.endpoint} failed {retries + 1} time(s): {last}"
        )

    def _only_model(self) -> str:
        served = self.served_models()
        if len(served) != 1:
            raise SamplerError(
                f"{self.endpoint} serves {len(served)} models ({', '.join(served) or 'none'}): "
                "name one with --model"
            )
        return served[0]

    def served_models(self) -> list[str]:
        """Model names the server lists at ``/models``."""
        try:
            data = self._call("GET", f"{self.endpoint}/models")
        except _Refused as exc:
            raise SamplerError(f"{self.endpoint}/models refused: {exc}; name the model with "
                               "--model") from exc
        return [m.get("id", "") for m in data.get("data", []) if isinstance(m, dict)]

    # ------------------------------------------------------------------ tokens

    def _tokenize_messages(self, messages: list[dict[str, str]]) -> dict[str, Any] | None:
        """vLLM's ``/tokenize`` for chat messages, or None where the server has none."""
        if self._tokenize is False:
            return None
        try:
            data = self._call("POST", f"{self._root()}/tokenize",
                              {"model": self.model, "messages": messages,
                               "add_generation_prompt": True}, retries=0)
        except _Refused:
            self._tokenize = False  # not a vLLM server: it has no /tokenize
            return None
        except SamplerError:
            return None  # down or stalled: the completion request will say so
        self._tokenize = True
        if data.get("max_model_len"):
            self.max_model_len = int(data["max_model_len"])
        return data

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        """Prompt tokens as the server counts them (vLLM's ``/tokenize``); where the server
        cannot count, an estimate of one token per four characters."""
        data = self._tokenize_messages(messages)
        if data is not None and "count" in data:
            return int(data["count"])
        return sum(len(m.get("content") or "") for m in messages) // 4 + 4 * len(messages)

    # ------------------------------------------------------------------ sampling

    def _body(self, messages: list[dict[str, str]], params: SamplingParams, n: int,
              seed: int | None, max_tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "n": n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": max_tokens,
        }
        if seed is not None:
            body["seed"] = seed
        if params.stop:
            body["stop"] = list(params.stop)
        if self.extras_supported is not False:
            body.update(_VLLM_EXTRAS)
        return body

    def _request(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST a chat completion; drops vLLM's extra fields if the server refuses them."""
        url = f"{self.endpoint}/chat/completions"
        try:
            data = self._call("POST", url, body)
        except _Refused as exc:
            if _is_context_error(exc.message):
                raise
            if not any(k in body for k in _VLLM_EXTRAS) or self.extras_supported is not None:
                raise
            # Not a vLLM server? Try once without its extra fields; keep them if that fails too.
            data = self._call("POST", url, {k: v for k, v in body.items()
                                            if k not in _VLLM_EXTRAS})
            self.extras_supported = False
            return data
        if self.extras_supported is None and any(k in body for k in _VLLM_EXTRAS):
            self.extras_supported = True
        return data

    def sample(self, messages: list[dict[str, str]], params: SamplingParams) -> list[Completion]:
        """``params.n`` completions of ``messages``; ``index`` runs 0…n-1."""
        if params.n < 1:
            return []
        max_tokens = params.max_tokens
        prompt_count: int | None = None
        tok = self._tokenize_messages(messages)
        if tok is not None and "count" in tok:
            prompt_count = int(tok["count"])
            if self.max_model_len:
                room = self.max_model_len - prompt_count
                if room < 16:
                    raise SamplerError(
                        f"the prompt has {prompt_count} tokens, over the context of "
                        f"{self.model} ({self.max_model_len}): give fewer or smaller files"
                    )
                max_tokens = min(max_tokens, room)
        try:
            if self.n_supported is False or params.n == 1:
                raw = self._separately(messages, params, 0, params.n, max_tokens)
            else:
                raw = self._together(messages, params, max_tokens)
        except _Refused as exc:
            if _is_context_error(exc.message):
                raise SamplerError(
                    f"the prompt is over the context of {self.model}: {exc.message}. Give "
                    "fewer or smaller files, or lower max_tokens"
                ) from exc
            hint = ""
            if exc.status == 404 and "model" in exc.message.lower():
                try:
                    hint = (f"; it serves {', '.join(self.served_models()) or 'no model'}: "
                            "name one with --model")
                except SamplerError:
                    pass
            raise SamplerError(f"{self.endpoint} refused the request: {exc}{hint}") from exc
        out = []
        for i, (choice, seed, usage_share, prompt_tokens) in enumerate(raw):
            text = _choice_text(choice)
            out.append(Completion(
                text=text,
                prompt_tokens=prompt_tokens if prompt_tokens else (prompt_count or 0),
                completion_tokens=usage_share,
                finish_reason=choice.get("finish_reason"),
                seed=seed,
                index=i,
            ))
        return out

    def _together(self, messages: list[dict[str, str]], params: SamplingParams,
                  max_tokens: int) -> list[tuple[dict[str, Any], int | None, int, int]]:
        body = self._body(messages, params, params.n, params.seed, max_tokens)
        try:
            data = self._request(body)
        except _Refused as exc:
            if _is_context_error(exc.message) or self.n_supported is True:
                raise
            # The server may refuse n > 1: one sample per request instead.
            try:
                first = self._separately(messages, params, 0, 1, max_tokens)
            except _Refused:
                raise exc from None
            self.n_supported = False
            return first + self._separately(messages, params, 1, params.n, max_tokens)
        got = _with_counts(data, params.seed)
        if got:
            self.n_supported = True
        if len(got) < params.n:
            # Some servers ignore n and answer once: ask for the rest one by one.
            if len(got) <= 1:
                self.n_supported = False
            got += self._separately(messages, params, len(got), params.n, max_tokens)
        return got[: params.n]

    def _separately(self, messages: list[dict[str, str]], params: SamplingParams, start: int,
                    stop: int, max_tokens: int
                    ) -> list[tuple[dict[str, Any], int | None, int, int]]:
        """Samples ``start…stop-1`` as one request each; request i carries ``seed + i``."""

        def one(i: int) -> list[tuple[dict[str, Any], int | None, int, int]]:
            seed = None if params.seed is None else params.seed + i
            return _with_counts(self._request(self._body(messages, params, 1, seed, max_tokens)),
                                seed)[:1]

        idx = list(range(start, stop))
        if not idx:
            return []
        if len(idx) == 1:
            return one(idx[0])
        with ThreadPoolExecutor(min(self.concurrency, len(idx))) as ex:
            parts = list(ex.map(one, idx))
        return [c for part in parts for c in part]

    # ------------------------------------------------------------------ judge support

    def next_token_logprobs(self, messages: list[dict[str, str]], top: int = 20
                            ) -> dict[str, float]:
        """Log-probabilities of the most likely first tokens of the answer (token text →
        logprob), for a generative verifier."""
        body = {"model": self.model, "messages": messages, "n": 1, "max_tokens": 1,
                "temperature": 0.0, "logprobs": True, "top_logprobs": top}
        try:
            data = self._call("POST", f"{self.endpoint}/chat/completions", body)
        except _Refused as exc:
            raise SamplerError(f"{self.endpoint} refused a logprobs request: {exc}") from exc
        try:
            first = data["choices"][0]["logprobs"]["content"][0]
        except (KeyError, IndexError, TypeError) as exc:
            raise SamplerError(
                f"{self.endpoint} returned no logprobs; the server must support "
                "logprobs/top_logprobs for the judge"
            ) from exc
        out: dict[str, float] = {}
        for entry in first.get("top_logprobs") or [first]:
            token, lp = entry.get("token"), entry.get("logprob")
            if token is None or lp is None:
                continue
            out[token] = max(out.get(token, float("-inf")), float(lp))
        return out

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAISampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _error_message(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text[:500].strip() or resp.reason_phrase
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("detail") or json.dumps(err)[:500])
        if "message" in data:
            return str(data["message"])
        return str(err)[:500]
    return json.dumps(data)[:500]


def _is_context_error(message: str) -> bool:
    low = message.lower()
    return any(w in low for w in _CONTEXT_WORDS)


def _choice_text(choice: dict[str, Any]) -> str:
    msg = choice.get("message") or {}
    text = msg.get("content") if isinstance(msg, dict) else None
    if text is None:
        text = choice.get("text")
    return text if isinstance(text, str) else ""


_Raw = tuple[dict[str, Any], int | None, int, int]


def _with_counts(data: dict[str, Any], seed: int | None = None) -> list[_Raw]:
    """(choice, seed, completion tokens, prompt tokens) for each choice, in index order."""
    choices = data.get("choices")
    if not isinstance(choices, list):
        return []
    choices = sorted((c for c in choices if isinstance(c, dict)),
                     key=lambda c: c.get("index", 0))
    usage = data.get("usage") or {}
    total = usage.get("completion_tokens")
    prompt = int(usage.get("prompt_tokens") or 0)
    exact = [c.get("token_ids") for c in choices]
    if all(isinstance(t, list) for t in exact):
        counts = [len(t) for t in exact]  # type: ignore[arg-type]
    elif isinstance(total, int):
        counts = apportion(total, [len(_choice_text(c)) for c in choices])
    else:
        counts = [0] * len(choices)
    return [(c, seed, k, prompt) for c, k in zip(choices, counts, strict=True)]
