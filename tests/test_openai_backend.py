"""The OpenAI-compatible HTTP backend against a real vLLM server on loopback.

The server is vLLM's own OpenAI server started by this file with the small test model
(SmolLM2-135M-Instruct, the fast real model; the product's default model is larger and slower
to start on a CPU). Failure cases use real sockets on 127.0.0.1: a closed port, a server that
accepts and never answers, and a small relay in front of the real vLLM server that behaves like
other providers do (refuses ``n > 1`` and vLLM's extra fields, answers 503 now and then) while
counting the requests in flight.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from patchswarm.agent.judge import GenRM
from patchswarm.agent.models import TEST_MODEL, resolve_model
from patchswarm.agent.openai_backend import OpenAISampler, apportion, normalise_endpoint
from patchswarm.agent.sampler import SamplerError, SamplingParams, cpu_defaults
from patchswarm.agent.search.memory import best_of_n, patch_parser

pytestmark = pytest.mark.vllm

MODEL = os.environ.get("PATCHSWARM_TEST_SERVER_MODEL", TEST_MODEL)
"""The model served; set the variable to run this file by hand with another model."""
NAME = "served-model"
MAX_LEN = 2048
MESSAGES = [{"role": "user", "content": "Write a Python function that adds two numbers."}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real ``vllm.entrypoints.openai.api_server`` on loopback; stopped after the module."""
    model_dir = resolve_model(MODEL, progress=False)
    cpu_defaults()
    port = free_port()
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model",
           str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--dtype", "bfloat16",
           "--enforce-eager", "--served-model-name", NAME, "--max-model-len", str(MAX_LEN),
           "--enable-prefix-caching", "--seed", "0"]
    fh = open(log, "w")  # closed after the server stops
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the vLLM server exited with {proc.returncode}:\n"
                            f"{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the vLLM server did not start in 300 s:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield url + "/v1"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        fh.close()


# --------------------------------------------------------------------------- the real server


def test_n_samples_in_one_request_with_tokens_and_seed(server):
    with OpenAISampler(server, NAME, concurrency=4, timeout=120, retries=1) as s:
        params = SamplingParams(n=4, max_tokens=24, temperature=0.9, seed=11)
        before = s.requests
        first = s.sample(MESSAGES, params)
        assert len(first) == 4 and [c.index for c in first] == [0, 1, 2, 3]
        # one tokenize call and ONE completion request for all four samples
        assert s.requests - before == 2 and s.n_supported and s.extras_supported
        prompt = s.count_tokens(MESSAGES)
        assert prompt > 10 and all(c.prompt_tokens == prompt for c in first)
        assert all(0 < c.completion_tokens <= 24 and c.seed == 11 for c in first)
        assert all(c.finish_reason in ("stop", "length") for c in first)
        assert any(c.completion_tokens == 24 and c.finish_reason == "length" for c in first)
        assert len({c.text for c in first}) > 1
        # The recorded seed reproduces the group of samples.
        again = s.sample(MESSAGES, params)
        assert [c.text for c in again] == [c.text for c in first]
        assert s.max_model_len == MAX_LEN


def test_model_picked_when_the_server_serves_one_and_errors_name_the_served(server):
    with OpenAISampler(server + "/chat/completions") as s:
        assert s.model == NAME and s.endpoint == server
    with OpenAISampler(server, "no-such-model", retries=0) as s:
        with pytest.raises(SamplerError, match="refused") as err:
            s.sample(MESSAGES, SamplingParams(n=1, max_tokens=4))
        assert "no-such-model" in str(err.value) and f"it serves {NAME}" in str(err.value)


def test_a_prompt_over_the_context_is_a_clear_error_without_retries(server):
    huge = [{"role": "user", "content": "word " * 3000}]
    with OpenAISampler(server, NAME, retries=3) as s:
        t0 = time.monotonic()
        with pytest.raises(SamplerError, match="over the context"):
            s.sample(huge, SamplingParams(n=2, max_tokens=8))
        assert time.monotonic() - t0 < 10


def test_max_tokens_is_clamped_to_the_room_left(server):
    long = [{"role": "user", "content": "word " * 1900 + "\nSay hi."}]
    with OpenAISampler(server, NAME) as s:
        prompt = s.count_tokens(long)
        assert MAX_LEN - 200 < prompt < MAX_LEN - 16
        out = s.sample(long, SamplingParams(n=1, max_tokens=4096, temperature=0.0))
        assert out[0].completion_tokens <= MAX_LEN - prompt


def test_unparsable_answers_are_counted_failures_and_the_run_goes_on(server):
    files = {"gradebook.py": "def average(xs):\n    return sum(xs) // len(xs)\n"}
    messages = [{"role": "user", "content": "Fix average() in gradebook.py. Reply with the "
                                            "whole file in a fenced block."}]
    calls = []
    with OpenAISampler(server, NAME) as s:
        result = best_of_n(s, messages, patch_parser(files, "whole_file"),
                           lambda p: calls.append(p) or {"status": "failed"}, n=4,
                           params=SamplingParams(max_tokens=6, seed=3))
    assert len(result.candidates) == 4 and not result.solved
    assert sum(result.failures.values()) == 4 - sum(1 for c in result.candidates if c.patch)
    assert result.failures and not calls
    assert all(c.completion_tokens > 0 for c in result.candidates)


def test_genrm_over_http_reads_yes_and_no_from_top_logprobs(server):
    with OpenAISampler(server, NAME) as s:
        top = s.next_token_logprobs([{"role": "user", "content": "Is the sky blue? Answer Yes "
                                                                 "or No."}], top=20)
        assert 10 <= len(top) <= 20 and all(v <= 0.0 for v in top.values())
        judge = GenRM(s)
        score = judge.score("average() drops the fraction",
                            "--- a/g.py\n+++ b/g.py\n@@ -1 +1 @@\n-return a // b\n+return a / b\n")
        assert 0.0 <= score.score <= 1.0
        assert score.p_yes + score.p_no > 0, f"neither yes nor no in {list(score.top)}"


# --------------------------------------------------------------------------- failing endpoints


def test_an_endpoint_that_is_down_fails_clearly_after_retries():
    port = free_port()  # nothing listens there
    t0 = time.monotonic()
    s = OpenAISampler(f"http://127.0.0.1:{port}/v1", "m", retries=2, backoff=0.1)
    with pytest.raises(SamplerError, match="cannot connect") as err:
        s.sample(MESSAGES, SamplingParams(n=2, max_tokens=4))
    assert "failed 3 time(s)" in str(err.value)
    assert time.monotonic() - t0 < 10
    # Without a model name the sampler asks the server, which fails the same way.
    with pytest.raises(SamplerError, match="cannot connect"):
        OpenAISampler(f"http://127.0.0.1:{port}/v1", retries=0)


class _Stall(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("content-length", 0)))
        time.sleep(30)  # never answers within the client's timeout

    do_GET = do_POST

    def log_message(self, *args: object) -> None:
        pass


def test_a_stalled_endpoint_times_out_and_is_retried():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Stall)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        s = OpenAISampler(f"http://127.0.0.1:{srv.server_port}/v1", "m", timeout=1,
                          retries=1, backoff=0.1)
        t0 = time.monotonic()
        with pytest.raises(SamplerError, match="no answer within 1s"):
            s.sample(MESSAGES, SamplingParams(n=2, max_tokens=4))
        assert time.monotonic() - t0 < 8
        assert s.requests >= 2  # the completion request was tried twice
        s.close()
    finally:
        srv.shutdown()
        srv.server_close()


class Relay:
    """A provider that refuses n > 1 and vLLM's extra fields, answers 503 to the first
    ``fail_first`` requests, and forwards the rest to the real server; counts concurrency."""

    def __init__(self, upstream: str, fail_first: int = 0) -> None:
        self.upstream = upstream
        self.fail_first = fail_first
        self.seen: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, code: int, body: dict, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._send(200, {"data": [{"id": NAME}]})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                if not self.path.endswith("/chat/completions"):
                    self._send(404, {"error": {"message": "not found"}})
                    return
                with relay.lock:
                    relay.seen.append(body)
                    relay.in_flight += 1
                    relay.max_in_flight = max(relay.max_in_flight, relay.in_flight)
                    fail = relay.fail_first > 0
                    relay.fail_first -= 1
                headers = None
                try:
                    if fail:
                        code, answer = 503, {"error": {"message": "overloaded"}}
                        headers = {"retry-after": "0"}
                    elif "return_token_ids" in body:
                        code, answer = 400, {"error": {"message": "Unrecognized request "
                                                                  "argument supplied: "
                                                                  "return_token_ids"}}
                    elif body.get("n", 1) > 1:
                        code, answer = 400, {"error": {"message": "n must be 1 for this model"}}
                    else:
                        body.pop("seed", None)  # the CPU engine: one seeded request at a time
                        r = httpx.post(f"{relay.upstream}/chat/completions", json=body,
                                       timeout=120)
                        code, answer = r.status_code, r.json()
                finally:
                    # counted out before answering: the client may send its next request
                    # as soon as it has the answer
                    with relay.lock:
                        relay.in_flight -= 1
                self._send(code, answer, headers)

            def log_message(self, *args: object) -> None:
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.srv.daemon_threads = True
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.srv.server_port}/v1"

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


def test_a_provider_refusing_n_gets_separate_requests_within_the_concurrency_limit(server):
    relay = Relay(server, fail_first=1)
    try:
        with OpenAISampler(relay.url, concurrency=2, retries=2, backoff=0.05) as s:
            assert s.model == NAME
            out = s.sample(MESSAGES, SamplingParams(n=5, max_tokens=12, seed=100))
            assert len(out) == 5 and [c.index for c in out] == list(range(5))
            assert s.n_supported is False and s.extras_supported is False
            # Each separate request is recorded with its own seed.
            assert [c.seed for c in out] == [100, 101, 102, 103, 104]
            # Usage per request: exact per candidate.
            assert all(0 < c.completion_tokens <= 12 and c.prompt_tokens > 10 for c in out)
            assert relay.max_in_flight <= 2
            sent = [b for b in relay.seen if b.get("n") == 1 and "return_token_ids" not in b]
            assert len(sent) >= 5
            # Later calls go straight to one request per sample.
            n_before = len(relay.seen)
            s.sample(MESSAGES, SamplingParams(n=2, max_tokens=4, seed=1))
            assert len(relay.seen) - n_before == 2
    finally:
        relay.close()


def test_helpers():
    assert normalise_endpoint("127.0.0.1:8000") == "http://127.0.0.1:8000/v1"
    assert normalise_endpoint("https://api.example.com/v1/") == "https://api.example.com/v1"
    assert normalise_endpoint("http://h/x/v1/chat/completions") == "http://h/x/v1"
    with pytest.raises(SamplerError, match="not an http"):
        normalise_endpoint("ftp://h/v1")
    assert apportion(10, [1, 1, 2]) == [3, 2, 5]
    assert sum(apportion(17, [5, 0, 3, 9])) == 17 and apportion(3, [0, 0]) == [2, 1]

