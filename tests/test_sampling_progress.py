"""Live sampling progress with the real vLLM engine (CPU build) and the real small model: the
streamed request gives the same samples as the plain one and reports tokens as they come; the
command line shows it and keeps the engine's own output in the run folder's engine.log."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from patchswarm.agent.models import TEST_MODEL, resolve_model
from patchswarm.agent.sampler import SampleProgress, SamplingParams, VLLMSampler

pytestmark = [pytest.mark.vllm, pytest.mark.docker]

MESSAGES = [{"role": "user", "content": "Write a Python function that adds two numbers, "
                                        "with a docstring and three examples."}]


def test_the_command_line_shows_sampling_progress_and_keeps_engine_logs_out(tmp_path,
                                                                             base_image):
    run_dir = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "patchswarm.tasks.cli.main", "demo", "--examples",
         "gradebook-average", "-n", "2", "--model", TEST_MODEL, "--run-dir", str(run_dir)],
        capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    cands = [json.loads(x) for x in
             (run_dir / "gradebook-average" / "candidates.jsonl").read_text().splitlines()]
    tokens = sum(c["completion_tokens"] for c in cands)
    # The last progress line holds the real counts.
    lines = re.findall(r"sampling: (\d+)/(\d+) samples, ([\d,]+) tokens, (\d+) tokens/s",
                       proc.stderr)
    assert lines, proc.stderr[-3000:]
    done, asked, shown, rate = lines[-1]
    assert (int(done), int(asked), int(shown.replace(",", ""))) == (2, 2, tokens)
    assert int(rate) > 0
    # Nothing of vLLM's or transformers' own output reached the terminal...
    for noise in ("INFO", "WARNING", "[transformers]", "it/s]", "Loading", "torch"):
        assert noise not in proc.stderr, noise
    # ...it is in the run folder.
    log = (run_dir / "engine.log").read_text()
    # vLLM's own log lines (which levels appear depends on its logging settings).
    assert re.search(r"(INFO|WARNING) \d\d-\d\d \d\d:\d\d:\d\d \[\w+\.py:\d+\]", log), log[-2000:]
    assert "engine.log" in proc.stderr  # the user is told where it is
    assert "solved" in proc.stdout or "results" in proc.stdout


@pytest.fixture(scope="module")
def engine():
    sampler = VLLMSampler(str(resolve_model(TEST_MODEL, progress=False)), name=TEST_MODEL,
                          max_model_len=4096)
    yield sampler
    sampler.close()


def test_streamed_samples_equal_plain_ones_and_report_as_they_come(engine):
    params = SamplingParams(n=4, max_tokens=64, temperature=0.9, seed=11)
    engine.progress = None
    # The prompt is computed once first, so that both requests compared below read it from the
    # prefix cache alike (a cached prefix can shift bf16 numbers enough to change a sample).
    engine.sample(MESSAGES, SamplingParams(n=1, max_tokens=1, seed=0))
    plain = engine.sample(MESSAGES, params)
    seen: list[SampleProgress] = []
    engine.progress = seen.append
    try:
        streamed = engine.sample(MESSAGES, params)
    finally:
        engine.progress = None
    assert [(c.text, c.completion_tokens, c.finish_reason, c.index) for c in streamed] == \
        [(c.text, c.completion_tokens, c.finish_reason, c.index) for c in plain]
    assert streamed[0].prompt_tokens == plain[0].prompt_tokens
    total = sum(c.completion_tokens for c in streamed)
    assert seen[-1].done and seen[-1].finished == 4 and seen[-1].tokens == total
    assert seen[-1].tokens_per_second > 0
    before_end = [p for p in seen if not p.done]
    assert before_end, "no report before the request ended"
    assert any(0 < p.tokens < total for p in before_end)
    counts = [p.tokens for p in seen]
    assert counts == sorted(counts)
    assert all(p.samples == 4 for p in seen)
