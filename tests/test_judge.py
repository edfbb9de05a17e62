"""Judges: GenRM on the real in-process vLLM engine (the same LLM object as the sampler),
checked against an independent forward pass with transformers; and a reward model loaded from
a real Hugging Face sequence-classification folder. The HTTP path of GenRM is tested against
a real vLLM server in test_openai_backend.py.
"""

from __future__ import annotations

import math

import pytest

from patchswarm.agent.judge import GenRM, JudgeError, RewardModel, judge_messages, yes_probability
from patchswarm.agent.models import TEST_MODEL, resolve_model
from patchswarm.agent.ranking import Group, rank
from patchswarm.agent.sampler import SamplingParams, VLLMSampler

ISSUE = "average() in gradebook.py drops the fraction: average([90, 85]) gives 87, not 87.5."
RIGHT = ("--- a/gradebook.py\n+++ b/gradebook.py\n@@ -1,2 +1,2 @@\n def average(scores):\n"
         "-    return sum(scores) // len(scores)\n+    return sum(scores) / len(scores)\n")
WRONG = ("--- a/gradebook.py\n+++ b/gradebook.py\n@@ -1,2 +1,2 @@\n def average(scores):\n"
         "-    return sum(scores) // len(scores)\n+    return 0\n")


@pytest.fixture(scope="module")
def model_dir():
    return resolve_model(TEST_MODEL, progress=False)


@pytest.fixture(scope="module")
def engine(model_dir):
    sampler = VLLMSampler(str(model_dir), name=TEST_MODEL, max_model_len=2048)
    yield sampler
    sampler.close()


def test_yes_probability_normalises_over_yes_and_no():
    top = {"Yes": math.log(0.5), " yes": math.log(0.1), "No": math.log(0.2),
           "Maybe": math.log(0.1)}
    s = yes_probability(top)
    assert s.p_yes == pytest.approx(0.6) and s.p_no == pytest.approx(0.2)
    assert s.score == pytest.approx(0.75)
    assert yes_probability({"Maybe": -0.1}).score == 0.5  # neither: no information


@pytest.mark.vllm
def test_genrm_on_the_in_process_engine_matches_a_transformers_forward_pass(engine, model_dir):
    judge = GenRM(engine)
    right = judge.score(ISSUE, RIGHT)
    assert 0.0 <= right.score <= 1.0 and right.p_yes + right.p_no > 0.05
    assert 5 <= len(right.top) <= 20
    assert judge.score(ISSUE, RIGHT).score == pytest.approx(right.score, abs=1e-6)

    # The same question through transformers, in float32: P(yes) agrees.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    lm = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = tok.apply_chat_template(judge_messages(ISSUE, RIGHT), add_generation_prompt=True,
                                  tokenize=True, return_dict=False)
    with torch.no_grad():
        probs = torch.softmax(lm(torch.tensor([ids])).logits[0, -1].float(), dim=-1)
    top = torch.topk(probs, 20)
    ref = yes_probability({tok.decode([int(i)]): math.log(float(p))
                           for p, i in zip(top.values, top.indices, strict=True)})
    assert ref.p_yes + ref.p_no > 0.05
    assert right.score == pytest.approx(ref.score, abs=0.1)
    assert right.p_yes == pytest.approx(ref.p_yes, abs=0.1)

    # The engine still samples afterwards: the judge shared it, it did not replace it.
    out = engine.sample([{"role": "user", "content": "Say hi."}],
                        SamplingParams(n=2, max_tokens=4, seed=1))
    assert len(out) == 2


@pytest.mark.vllm
def test_genrm_scores_feed_ranking_and_long_prompts_fail_clearly(engine):
    judge = GenRM(engine).for_issue(ISSUE)
    a, b = Group("a", RIGHT, ["1"], "passed"), Group("b", WRONG, ["2"], "passed")
    a.judge, b.judge = judge(RIGHT), judge(WRONG)
    assert rank([a, b])[0].judge == max(a.judge, b.judge)
    huge = "+x = 1\n" * 3000
    with pytest.raises(JudgeError, match="over the model's context"):
        GenRM(engine, max_patch_chars=10**6).score(ISSUE, huge)


def test_a_sampler_without_logprobs_is_refused():
    class Plain:
        model = "plain"

    with pytest.raises(JudgeError, match="cannot give log-probabilities"):
        GenRM(Plain())


@pytest.fixture(scope="module")
def reward_folder(tmp_path_factory, model_dir):
    """A real sequence-classification folder (small, freshly initialised, seeded) with the
    test model's tokenizer, as a user's trained reward model would be laid out."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=2048, num_labels=1,
                      pad_token_id=tok.pad_token_id or tok.eos_token_id)
    folder = tmp_path_factory.mktemp("rm") / "tiny-reward"
    LlamaForSequenceClassification(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_reward_model_scores_from_a_named_folder(reward_folder):
    rm = RewardModel(reward_folder)
    single = [rm.score(ISSUE, p) for p in (RIGHT, WRONG, RIGHT + "+# note\n")]
    assert all(0.0 < s < 1.0 for s in single)
    assert len({round(s, 6) for s in single}) == 3
    # batched (padded) scoring gives the same numbers as one at a time
    batched = rm.scores(ISSUE, [RIGHT, WRONG, RIGHT + "+# note\n"], batch=3)
    assert batched == pytest.approx(single, abs=1e-5)
    assert rm.for_issue(ISSUE)(RIGHT) == pytest.approx(single[0], abs=1e-6)


def test_reward_model_refuses_folders_that_are_not_one(tmp_path, model_dir):
    with pytest.raises(JudgeError, match="no config.json"):
        RewardModel(tmp_path)
    with pytest.raises(JudgeError, match="not a sequence-classification"):
        RewardModel(model_dir)  # a causal LM: its score head would be untrained


@pytest.mark.docker
def test_repair_breaks_a_tie_of_verified_changes_with_the_judge(engine, tmp_path,
                                                                example_repo, base_image):
    """Two different right fixes with one vote each tie after verification; `--judge` asks
    the policy about each (here the small test model), ranks by its answer, keeps the scores
    in the run folder, and a resumed run does not ask again."""
    import json
    import subprocess

    from patchswarm.agent.sampler import ReplaySampler
    from patchswarm.tasks.engine.problem import local_problem
    from patchswarm.tasks.engine.runner import RepairSettings, repair
    from patchswarm.tasks.sources import examples

    example = "gradebook-average"
    meta = examples.load_example(example)
    gold = examples.materialise(example, tmp_path / "gold")
    subprocess.run(["git", "-C", str(gold), "apply", str(meta["root"] / "fix.patch")],
                   check=True)
    after = (gold / "gradebook.py").read_text()
    other = after.replace("return sum(scores) / len(scores)",
                          "return float(sum(scores)) / len(scores)")
    assert other != after
    texts = [f"gradebook.py\n```python\n{t}```\n" for t in (after, other)]
    repo = example_repo(example)

    def problem():
        return local_problem(repo, meta["issue"], meta["test_command"], problem_id=example,
                             files=meta["files"])

    run_dir = tmp_path / "run"
    plain = repair(problem(), lambda: ReplaySampler([{"text": t} for t in texts]),
                   RepairSettings(n=2), run_dir)
    assert plain.verified == 2 and plain.tied == 2 and plain.judged == 0

    judged = repair(problem(), lambda: engine, RepairSettings(n=2, judge=True), run_dir)
    scores = json.loads((run_dir / "judge.json").read_text())
    assert judged.judged == 2 and len(scores) == 2
    assert all(0.0 <= s <= 1.0 for s in scores.values())
    best = max(scores, key=scores.get)
    if len(set(scores.values())) == 2:  # the judge told them apart: its pick is chosen
        assert judged.best_key == best and judged.tied == 1
    report = (run_dir / "report.md").read_text()
    assert f"| {scores[best]:.3f} |" in report and "the judge scored 2" in report

    again = repair(problem(), lambda: pytest.fail("the judge's scores are kept"),
                   RepairSettings(n=2, judge=True), run_dir)
    assert again.best_key == judged.best_key
