"""The math search strategies' logic, with recorded completions and scorers written for the
test: which answer each strategy picks, how ties count, how beam search and DVTS grow and prune
their trees, and what each spends. Answers are grouped with the real math-verify equivalence."""

from __future__ import annotations

import pytest

from patchswarm.agent import math_search as ms
from patchswarm.agent.math_prompts import STEP_SEPARATOR, STEP_STOPS, judge_messages, solve_messages
from patchswarm.agent.sampler import Completion, ReplaySampler, SamplingParams
from patchswarm.verifiers.math_answer import extract_answer, group_answers

MESSAGES = solve_messages("What is 1/4 + 1/4?")
QUESTION = "What is 1/4 + 1/4?"


def recorded(*texts: str, tokens: int = 10) -> ReplaySampler:
    return ReplaySampler([{"text": t, "completion_tokens": tokens, "prompt_tokens": 30,
                           "finish_reason": "stop"} for t in texts])


def table_scorer(table: dict[str, float], calls: list | None = None):
    """Scores looked up by the text's final answer (or its last step), for the test."""

    def score(question: str, texts: list[str], partial: bool = False) -> list[float]:
        if calls is not None:
            calls.append((partial, list(texts)))
        out = []
        for t in texts:
            last = t.rstrip().split(STEP_SEPARATOR)[-1]
            out.append(table.get(last, table.get(extract_answer(t) or "", 0.0)))
        return out

    return score


SPELLINGS = ["The answer is $\\boxed{\\frac{1}{2}}$.", "So we get \\boxed{0.5}",
             "Adding gives \\boxed{1/2}.", "I think \\boxed{3}", "Hmm \\boxed{3}"]


def test_majority_counts_equivalent_spellings_as_one_answer():
    res = ms.majority(recorded(*SPELLINGS), MESSAGES, n=5, extract=extract_answer,
                      group=group_answers)
    assert res.answer == "\\frac{1}{2}" and res.top == ["\\frac{1}{2}"]
    assert sorted((c.answer, c.votes) for c in res.classes) == [("3", 2), ("\\frac{1}{2}", 3)]
    # No scorer: the whole budget is the samples.
    assert res.spend.scorings == 0 and res.spend.samples == 5 and res.spend.cost == 5


def test_majority_tie_counts_in_expectation_and_no_answer_joins_no_class():
    res = ms.majority(recorded("\\boxed{2}", "\\boxed{3}", "no answer here"), MESSAGES, n=3,
                      extract=extract_answer, group=group_answers)
    assert sorted(res.top) == ["2", "3"] and res.answer == "2"
    assert res.expected_accuracy(lambda a: a == "3") == pytest.approx(0.5)
    assert sum(c.votes for c in res.classes) == 2


def test_best_of_n_and_weighted_disagree_where_they_should():
    # One confident wrong answer against three lukewarm right ones.
    texts = ["\\boxed{7}", "\\boxed{\\frac{1}{2}}", "\\boxed{0.5}", "\\boxed{1/2}"]
    scorer = table_scorer({"7": 0.9, "\\frac{1}{2}": 0.4, "0.5": 0.4, "1/2": 0.4})
    best = ms.best_of_n(recorded(*texts), MESSAGES, QUESTION, scorer, n=4,
                        extract=extract_answer, group=group_answers)
    assert best.answer == "7" and best.top == ["7"]
    w = ms.weighted(recorded(*texts), MESSAGES, QUESTION, scorer, n=4,
                    extract=extract_answer, group=group_answers)
    assert w.answer == "\\frac{1}{2}"
    assert {c.answer: c.score for c in w.classes} == pytest.approx(
        {"7": 0.9, "\\frac{1}{2}": 1.2})
    # Every candidate was scored once, reading its own 10 tokens: λ = lam·10/10, V = 1.
    sp = best.spend
    assert (sp.scorings, sp.scored_tokens, sp.completion_tokens) == (4, 40, 40)
    assert sp.samples == 4 and sp.verifications == 1 and sp.verify_ratio == 1.0
    assert sp.cost == pytest.approx(8.0)
    half = ms.best_of_n(recorded(*texts), MESSAGES, QUESTION, scorer, n=4, lam=0.5,
                        extract=extract_answer, group=group_answers)
    assert half.spend.cost == pytest.approx(6.0)


def test_best_of_n_ties_on_score_are_a_fair_draw():
    scorer = table_scorer({"1": 0.7, "2": 0.7, "3": 0.1})
    res = ms.best_of_n(recorded("\\boxed{1}", "\\boxed{2}", "\\boxed{3}"), MESSAGES, QUESTION,
                       scorer, n=3, extract=extract_answer, group=group_answers)
    assert res.top == ["1", "2"]
    assert res.expected_accuracy(lambda a: a == "2") == 0.5


def test_a_failing_scorer_is_recorded_and_leaves_candidates_unscored():
    def broken(question, texts, partial=False):
        raise RuntimeError("reward model fell over")

    res = ms.best_of_n(recorded("\\boxed{1}", "\\boxed{2}"), MESSAGES, QUESTION, broken, n=2,
                       extract=extract_answer, group=group_answers)
    assert any("reward model fell over" in e for e in res.errors)
    assert res.spend.scorings == 0 and sorted(res.top) == ["1", "2"]


def test_at_budget_reads_smaller_budgets_from_one_draw():
    texts = ["\\boxed{3}", "\\boxed{1/2}", "\\boxed{0.5}", "\\boxed{\\frac12}"]
    full = ms.majority(recorded(*texts), MESSAGES, n=4, extract=extract_answer,
                       group=group_answers)
    one = ms.at_budget(full, 1, group_answers)
    two = ms.at_budget(full, 2, group_answers)
    assert one.answer == "3" and one.spend.samples == 1 and one.n == 1
    assert sorted(two.top) == ["1/2", "3"]
    assert full.answer == "1/2"
    with pytest.raises(ValueError, match="outside"):
        ms.at_budget(full, 5)


def test_scorers_must_be_given_and_strategy_names_checked():
    with pytest.raises(ValueError, match="needs a scorer"):
        ms.run_strategy("weighted", recorded("\\boxed{1}"), MESSAGES, QUESTION, None, 1)
    with pytest.raises(ValueError, match="unknown strategy"):
        ms.run_strategy("greedy", recorded("\\boxed{1}"), MESSAGES, QUESTION, None, 1)
    with pytest.raises(ValueError, match="multiple of the width"):
        ms.beam(recorded(), MESSAGES, QUESTION, table_scorer({}), n=6, width=4)


# --------------------------------------------------------------------------- tree search


class TreeSampler:
    """Next steps by prefix: the partial solution arrives as the last assistant message (the
    generic continuation path). Each request records (prefix, n, stop, seed)."""

    model = "tree"

    def __init__(self, tree: dict[str, list[str]]) -> None:
        self.tree = tree
        self.requests: list[tuple[str, int, list[str], int | None]] = []

    def sample(self, messages, params: SamplingParams) -> list[Completion]:
        prefix = messages[-1]["content"] if messages[-1]["role"] == "assistant" else ""
        self.requests.append((prefix, params.n, list(params.stop), params.seed))
        options = self.tree[prefix]
        out = []
        for i in range(params.n):
            text = options[i % len(options)]
            reason = "eos" if "\\boxed" in text else "stop"
            if text.startswith("~"):  # cut at the step's token cap
                text, reason = text[1:], "length"
            out.append(Completion(text, 20, len(text.split()), reason, params.seed, i))
        return out

    def count_tokens(self, messages) -> int:
        return 0

    def close(self) -> None:
        pass


S = STEP_SEPARATOR
TREE = {
    "": ["good start", "bad start", "okay start", "meh start"],
    "good start" + S: ["good end \\boxed{7}", "good more"],
    "okay start" + S: ["okay end \\boxed{9}", "okay more"],
    "good start" + S + "good more" + S: ["late end \\boxed{7}", "late wrong \\boxed{8}"],
    "okay start" + S + "okay more" + S: ["okay late \\boxed{9}"],
    "bad start" + S: ["bad end \\boxed{1}"],
    "meh start" + S: ["meh end \\boxed{2}"],
}
SCORES = {"good start": 0.9, "bad start": 0.1, "okay start": 0.6, "meh start": 0.3,
          "good end \\boxed{7}": 0.95, "good more": 0.5, "okay end \\boxed{9}": 0.4,
          "okay more": 0.2, "late end \\boxed{7}": 0.8, "late wrong \\boxed{8}": 0.3,
          "okay late \\boxed{9}": 0.35, "bad end \\boxed{1}": 0.99, "meh end \\boxed{2}": 0.1}


def test_beam_search_keeps_the_best_partial_solutions_by_the_step_scorer():
    sampler, calls = TreeSampler(TREE), []
    res = ms.beam(sampler, MESSAGES, QUESTION, table_scorer(SCORES, calls), n=4, width=2,
                  max_steps=5, params=SamplingParams(seed=3, max_tokens=100),
                  extract=extract_answer, group=group_answers)
    prefixes = [r[0] for r in sampler.requests]
    # Step 1: all n from the problem in one request; the two best (good, okay) go on with
    # width 2 each; the bad start (which would have led to a high-scored end) is pruned.
    assert sampler.requests[0][:2] == ("", 4)
    assert prefixes[1:3] == ["good start" + S, "okay start" + S]
    assert not any(p.startswith(("bad", "meh")) for p in prefixes)
    assert all(r[2] == list(STEP_STOPS) for r in sampler.requests)
    assert len({r[3] for r in sampler.requests}) == len(sampler.requests)  # distinct seeds
    # Step 2 finished two solutions; step 3 expanded the two live ones and finished the rest.
    finished = {c.text: c.score for c in res.candidates}
    assert finished == {
        "good start\n\ngood end \\boxed{7}": 0.95, "okay start\n\nokay end \\boxed{9}": 0.4,
        "good start\n\ngood more\n\nlate end \\boxed{7}": 0.8,
        "good start\n\ngood more\n\nlate wrong \\boxed{8}": 0.3,
        "okay start\n\nokay more\n\nokay late \\boxed{9}": 0.35}
    assert res.answer == "7"
    # Unfinished solutions were scored as partial, finished ones as whole.
    assert (True, ["good start\n\n", "bad start\n\n", "okay start\n\n", "meh start\n\n"]
            ) in calls
    assert all(not partial for partial, texts in calls for t in texts if "boxed" in t)
    # Spend: every generated word counts, pruned branches included.
    generated = 8 + (5 + 5) + (6 + 6)  # words generated in steps 1, 2 and 3
    assert res.spend.completion_tokens == generated
    assert res.spend.scorings == 4 + 4 + 4 and res.spend.requests == 5
    mean_len = sum(c.tokens for c in res.candidates) / len(res.candidates)
    assert res.spend.samples == pytest.approx(generated / mean_len)
    scored = res.spend.scored_tokens
    assert res.spend.cost == pytest.approx((generated + scored) / mean_len)


def test_dvts_grows_independent_subtrees_and_keeps_their_diversity():
    sampler, calls = TreeSampler(TREE), []
    res = ms.dvts(sampler, MESSAGES, QUESTION, table_scorer(SCORES, calls), n=4, width=2,
                  max_steps=5, params=SamplingParams(seed=3, max_tokens=100),
                  extract=extract_answer, group=group_answers)
    # One first request of n, split into n/width = 2 subtrees: {good, bad} and {okay, meh};
    # each keeps its own best (good, okay) and expands only that, width at a time.
    assert sampler.requests[0][:2] == ("", 4)
    assert [(r[0], r[1]) for r in sampler.requests[1:3]] == [("good start" + S, 2),
                                                            ("okay start" + S, 2)]
    # One solution per subtree, each its subtree's greedy best: two different answers.
    assert [c.text for c in res.candidates] == ["good start\n\ngood end \\boxed{7}",
                                                "okay start\n\nokay end \\boxed{9}"]
    assert sorted(c.answer for c in res.classes) == ["7", "9"]
    assert res.answer == "7" and res.settings["subtrees"] == 2
    # The same budget made beam search end on one line of thought (answers 7 and 8 from the
    # good start, 9 from okay); DVTS ended after 2 steps with one request per subtree.
    assert res.spend.requests == 3 and res.spend.completion_tokens == 8 + 5 + 5


def test_a_tree_search_ends_at_max_steps_with_what_it_has():
    res = ms.beam(TreeSampler(TREE), MESSAGES, QUESTION, table_scorer(SCORES), n=4, width=2,
                  max_steps=1, extract=extract_answer, group=group_answers)
    # Only the first step ran: its four partial solutions are the final candidates, scored as
    # whole solutions, with no answer among them.
    assert len(res.candidates) == 4 and res.answer is None and res.top == []
    assert res.expected_accuracy(lambda a: True) == 0.0


def test_solution_token_cap_finishes_a_path():
    tree = {"": ["one two three"], "one two three" + S: ["four five six \\boxed{1}"]}
    res = ms.beam(TreeSampler(tree), MESSAGES, QUESTION, table_scorer({}), n=1, width=1,
                  max_steps=5, params=SamplingParams(max_tokens=3), extract=extract_answer,
                  group=group_answers)
    assert [c.text for c in res.candidates] == ["one two three"]


def test_a_step_cut_at_its_token_cap_goes_on_where_it_stopped():
    tree = {"": ["~we add one quarter"], "we add one quarter": [" to another: \\boxed{1/2}"]}
    res = ms.beam(TreeSampler(tree), MESSAGES, QUESTION, table_scorer({}), n=1, width=1,
                  max_steps=3, extract=extract_answer, group=group_answers)
    assert [c.text for c in res.candidates] == ["we add one quarter to another: \\boxed{1/2}"]
    assert res.candidates[0].steps == 2 and res.answer == "1/2"


def test_result_records_round_trip():
    res = ms.majority(recorded(*SPELLINGS), MESSAGES, n=5, extract=extract_answer,
                      group=group_answers)
    back = ms.MathResult.from_dict(res.to_dict())
    assert back.to_dict() == res.to_dict()
    assert back.spend.cost == res.spend.cost


def test_judge_prompt_asks_about_partial_and_whole_solutions():
    whole = judge_messages(QUESTION, "1/4 + 1/4 = 1/2", partial=False)[-1]["content"]
    part = judge_messages(QUESTION, "1/4 + 1/4", partial=True)[-1]["content"]
    assert whole.endswith("Is this solution correct? Answer Yes or No.")
    assert part.endswith("Is this partial solution correct so far? Answer Yes or No.")
    assert "the start of a solution" in part and QUESTION in part


def test_boxed_answer_default_extractor():
    assert ms.boxed_answer("a \\boxed{\\frac{1}{2}} b \\boxed{3}") == "3"
    assert ms.boxed_answer("\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert ms.boxed_answer("no box") is None
    assert ms.exact_groups(["1", " 1", None, "2"]) == [[0, 1], [3]]


# --------------------------------------------------------------------------- reward models


@pytest.fixture(scope="module")
def reward_folder(tmp_path_factory):
    """A real sequence-classification folder (small, seeded) with the test model's tokenizer,
    laid out as a user's trained reward model would be (head size 64: vLLM's CPU attention
    needs it)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from patchswarm.agent.models import TEST_MODEL, resolve_model

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(resolve_model(TEST_MODEL, progress=False))
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256,
                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=2048, num_labels=1,
                      pad_token_id=tok.pad_token_id or tok.eos_token_id)
    folder = tmp_path_factory.mktemp("rm") / "tiny-math-reward"
    LlamaForSequenceClassification(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


TEXTS = ["1/4 + 1/4 = 2/4 = 1/2. The final answer is $\\boxed{\\frac{1}{2}}$.",
         "1/4 + 1/4 = 2/8. \\boxed{\\frac{1}{4}}", "We add the quarters."]


@pytest.mark.vllm
def test_a_reward_model_scores_the_same_with_transformers_and_vllm(reward_folder):
    hf = ms.reward_model_scorer(reward_folder)
    expected = hf(QUESTION, TEXTS)
    assert all(0.0 < s < 1.0 for s in expected) and len({round(s, 6) for s in expected}) == 3
    assert hf(QUESTION, TEXTS[2:], partial=True) == pytest.approx(expected[2:], abs=1e-6)
    on_vllm = ms.reward_model_scorer(reward_folder, backend="vllm")
    try:
        assert on_vllm(QUESTION, TEXTS) == pytest.approx(expected, abs=1e-2)
        # As the scorer of a strategy: the best-scored answer wins.
        res = ms.best_of_n(recorded(*TEXTS), MESSAGES, QUESTION, on_vllm, n=3,
                           extract=extract_answer, group=group_answers)
        answered = [c for c in res.candidates if c.answer is not None]
        assert res.answer == max(answered, key=lambda c: c.score).answer
    finally:
        on_vllm.close()


def test_reward_folders_that_are_not_one_are_refused(tmp_path):
    from patchswarm.agent.judge import JudgeError

    with pytest.raises(JudgeError, match="no config.json"):
        ms.reward_model_scorer(tmp_path, backend="vllm")
    (tmp_path / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    with pytest.raises(JudgeError, match="not a sequence-classification"):
        ms.reward_model_scorer(tmp_path, backend="vllm")
    with pytest.raises(ValueError, match="unknown reward-model backend"):
        ms.reward_model_scorer(tmp_path, backend="onnx")
