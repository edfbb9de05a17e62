"""The real vLLM engine (CPU build) with the real small test model, through the whole loop."""

from __future__ import annotations

import json

import pytest

from patchswarm.agent.models import TEST_MODEL, resolve_model
from patchswarm.agent.sampler import SamplerError, SamplingParams, VLLMSampler
from patchswarm.tasks.engine.problem import local_problem
from patchswarm.tasks.engine.runner import RepairSettings, repair
from patchswarm.tasks.sources import examples

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def engine():
    sampler = VLLMSampler(str(resolve_model(TEST_MODEL, progress=False)), name=TEST_MODEL,
                          max_model_len=4096)
    yield sampler
    sampler.close()


MESSAGES = [{"role": "user", "content": "Write a Python function that adds two numbers."}]


def test_n_samples_in_one_request_with_seed_recorded(engine):
    params = SamplingParams(n=4, max_tokens=24, temperature=0.9, seed=7)
    first = engine.sample(MESSAGES, params)
    assert len(first) == 4
    assert all(c.seed == 7 and c.completion_tokens > 0 for c in first)
    assert len({c.prompt_tokens for c in first}) == 1 and first[0].prompt_tokens > 10
    # The recorded seed reproduces the samples.
    again = engine.sample(MESSAGES, params)
    assert [c.text for c in again] == [c.text for c in first]


def test_a_prompt_over_the_context_is_a_clear_error(engine):
    huge = [{"role": "user", "content": "word " * 5000}]
    with pytest.raises(SamplerError, match="over the model's context"):
        engine.sample(huge, SamplingParams(n=1, max_tokens=8))


def test_whole_loop_with_the_real_engine(tmp_path, engine, base_image):
    eid = "gradebook-average"
    meta = examples.load_example(eid)
    repo = examples.materialise(eid, tmp_path / eid)
    problem = local_problem(repo, meta["issue"], meta["test_command"], problem_id=eid,
                            files=meta["files"])
    result = repair(problem, lambda: engine, RepairSettings(n=4, max_tokens=512),
                    tmp_path / "run")
    assert result.samples == 4
    lines = (tmp_path / "run" / "candidates.jsonl").read_text().splitlines()
    cands = [json.loads(line) for line in lines]
    assert len(cands) == 4
    for c in cands:
        assert c["model"] == TEST_MODEL and c["seed"] == 0
        assert c["completion_tokens"] > 0 and c["prompt_tokens"] > 100
        assert (c["patch"] is None) == (c["error"] is not None)
    # Every distinct parsed change got exactly one verdict (a model this small may give none).
    verdicts_file = tmp_path / "run" / "verdicts.jsonl"
    verdicts = verdicts_file.read_text().splitlines() if verdicts_file.exists() else []
    assert len(verdicts) == result.distinct
    assert result.distinct <= result.parsed <= result.samples
    assert (tmp_path / "run" / "report.md").exists()
