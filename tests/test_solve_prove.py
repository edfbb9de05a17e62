"""`patchswarm solve` and `patchswarm prove` end to end.

- solve: every strategy runs on bundled problems with the real vLLM engine and the real small
  model (one engine for the module), scored by the same model as a generative judge; the run
  folder resumes without the engine; the bundled set grades its equivalent spellings; a real
  (tiny, seeded) reward-model folder scores through `--reward-model`.
- prove: statements from the shared miniF2F-in-Coq folder (or, when that folder is absent,
  statements bundled in tests/data/coq, and the test says so), recorded completions holding a
  real proof and cheating ones, each checked by Coq in a sandbox; coverage asserted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from patchswarm.agent import math_search as ms
from patchswarm.agent.models import TEST_MODEL, resolve_model
from patchswarm.agent.sampler import VLLMSampler
from patchswarm.tasks.cli.main import main
from patchswarm.tasks.engine.problem import ProblemError
from patchswarm.tasks.sources.solve import (
    Grader,
    SolveSettings,
    budgets,
    bundled_dataset,
    choose,
    load_math_dataset,
    read_jsonl,
    solve,
)

HERE = Path(__file__).resolve().parent
MINIF2F = HERE.parents[1] / "shared" / "data" / "minif2f-rocq" / "test"

# --------------------------------------------------------------------------- the bundled set


def test_bundled_set_has_answers_and_grades_every_listed_spelling():
    problems = load_math_dataset(bundled_dataset())
    assert len(problems) >= 30 and len({p.id for p in problems}) == len(problems)
    spelled = [p for p in problems if p.equivalent]
    assert len(spelled) >= 10
    grade = Grader()
    for p in spelled:
        for answer in [p.answer, *p.equivalent]:
            assert grade(p, answer), (p.id, answer)
        assert not grade(p, "12345"), p.id
    by_id = {p.id: p for p in problems}
    assert grade(by_id["half-fraction"], "0.5") and grade(by_id["half-fraction"], "\\dfrac12")
    assert not grade(by_id["half-fraction"], "2") and not grade(by_id["half-fraction"], None)


def test_dataset_errors_name_the_line_and_gsm8k_answers_work(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"question": "2+2?", "answer": "Add them.\\n#### 4"}\n'
                 '{"problem": "x?", "solution": "so \\\\boxed{7}"}\n')
    got = load_math_dataset(f)
    assert [(p.id, p.answer) for p in got] == [("line-1", "4"), ("line-2", "7")]
    f.write_text('{"question": "2+2?"}\n')
    with pytest.raises(ProblemError, match=r"d.jsonl:1 has no reference 'answer'"):
        load_math_dataset(f)
    f.write_text('{"question": "2+2?", "answer": "4"}\nnot json\n')
    with pytest.raises(ProblemError, match=r"d.jsonl:2 is not JSON"):
        load_math_dataset(f)
    with pytest.raises(ProblemError, match="unknown problem ids"):
        choose(load_math_dataset(bundled_dataset()), ["nope"])


def test_budget_ladders():
    s = SolveSettings(n=8, width=2)
    assert budgets("majority", s) == [1, 2, 4, 8]
    assert budgets("beam", s) == [2, 4, 8]
    s.ladder = False
    assert budgets("dvts", s) == [8]
    with pytest.raises(ProblemError, match="multiple of --width"):
        SolveSettings(strategies=["beam"], n=6, width=4).validate()


# --------------------------------------------------------------------------- solve, real engine

PROBLEMS = ["add-two", "half-fraction"]
REAL = dict(n=4, width=2, max_steps=2, step_tokens=24, max_tokens=64, seed=0)


@pytest.fixture(scope="module")
def engine():
    sampler = VLLMSampler(str(resolve_model(TEST_MODEL, progress=False)), name=TEST_MODEL,
                          max_model_len=2048)
    yield sampler
    sampler.close()


@pytest.fixture(scope="module")
def solve_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("solve") / "run"


def _problems():
    return choose(load_math_dataset(bundled_dataset()), PROBLEMS)


@pytest.mark.vllm
@pytest.mark.parametrize("strategy", ms.STRATEGIES)
def test_solve_each_strategy_with_the_real_engine(strategy, engine, solve_dir):
    settings = SolveSettings(strategies=[strategy], ladder=strategy in ms.SAMPLE_STRATEGIES,
                             **REAL)
    report = solve(_problems(), lambda: engine, settings, solve_dir, model=TEST_MODEL,
                   dataset="bundled")
    points = report["strategies"][strategy]["points"]
    assert [p["budget"] for p in points] == budgets(strategy, settings)
    for p in points:
        assert p["problems"] == len(PROBLEMS) and p["errors"] == 0
        # The pick can only be right where some candidate is.
        assert 0.0 <= p["accuracy"] <= p["coverage"] <= 1.0
        assert p["cost"] > 0 and p["completion_tokens"] > 0
    costs = [p["cost"] for p in points]
    assert costs == sorted(costs) and len(set(costs)) == len(costs)
    rows = [r for r in read_jsonl(solve_dir / "results.jsonl") if r["strategy"] == strategy]
    assert {(r["problem"], r["budget"]) for r in rows} == {
        (pid, b) for pid in PROBLEMS for b in budgets(strategy, settings)}
    for r in rows:
        res = ms.MathResult.from_dict(r["result"])
        sp = res.spend
        if strategy == "majority":
            assert sp.scorings == 0 and sp.cost == pytest.approx(sp.samples)
        else:
            assert sp.scorings > 0 and sp.verify_ratio > 0
            assert sp.cost == pytest.approx(sp.samples * (1 + sp.verify_ratio
                                                          * sp.verifications))
        if strategy in ms.SAMPLE_STRATEGIES:
            assert sp.samples == pytest.approx(r["budget"])
            if r["budget"] == 1:
                assert r["accuracy"] == float(r["covered"])
        if r["budget"] == settings.n:
            assert res.candidates
            if strategy != "majority":
                # P(yes) from the real judge: strictly between 0 and 1.
                assert all(0.0 < c.score < 1.0 for c in res.candidates)
            if strategy in ms.TREE_STRATEGIES:
                assert sp.requests >= 2 and all(c.steps >= 1 for c in res.candidates)
                assert all(c.tokens <= settings.max_tokens for c in res.candidates)
                if strategy == "dvts":
                    assert len(res.candidates) <= settings.n // settings.width
    assert Path(report["plot"]).stat().st_size > 5000
    # The sample strategies share one draw per problem.
    kinds = [r["kind"] for r in read_jsonl(solve_dir / "samples.jsonl")]
    assert kinds.count("sample") == len(PROBLEMS)


@pytest.mark.vllm
def test_a_finished_run_reports_again_without_the_engine(solve_dir, engine):
    def settings(strategy: str) -> SolveSettings:
        return SolveSettings(strategies=[strategy], ladder=strategy in ms.SAMPLE_STRATEGIES,
                             **REAL)

    for strategy in ms.STRATEGIES:  # (already done when the tests above ran)
        before = solve(_problems(), lambda: engine, settings(strategy), solve_dir,
                       model=TEST_MODEL, dataset="bundled")

    def no_engine():
        raise AssertionError("the engine was asked for although everything is recorded")

    for strategy in ms.STRATEGIES:
        again = solve(_problems(), no_engine, settings(strategy), solve_dir, model=TEST_MODEL,
                      dataset="bundled", scorer_factory=no_engine)
    assert set(again["strategies"]) == set(ms.STRATEGIES)
    assert again["strategies"] == before["strategies"]
    md = (solve_dir / "report.md").read_text()
    assert all(f"| {s} |" in md for s in ms.STRATEGIES)


@pytest.mark.vllm
def test_continuing_a_partial_solution_on_the_real_engine(engine):
    from patchswarm.agent.math_prompts import solve_messages
    from patchswarm.agent.sampler import SamplingParams

    messages = solve_messages("What is 17 + 25?")
    prefix = "We add the two numbers.\n\n"
    params = SamplingParams(n=3, max_tokens=24, seed=5, stop=["\n\n"])
    steps = ms.continue_solution(engine, messages, prefix, params)
    fresh = ms.continue_solution(engine, messages, "", params)
    assert len(steps) == 3 and all(c.finish_reason in ("stop", "eos", "length") for c in steps)
    assert all("\n\n" not in c.text for c in steps)
    # The continuation's prompt holds the partial solution: it is longer than a fresh start's.
    assert steps[0].prompt_tokens > fresh[0].prompt_tokens
    # Several partial solutions continue in one batch, each with its own prompt and count.
    longer = prefix + "17 + 25 is 42.\n\n"
    many = ms.continue_solutions(engine, messages, [(prefix, params),
                                                   (longer, replace(params, n=2, seed=9))])
    assert [len(m) for m in many] == [3, 2]
    assert many[1][0].prompt_tokens > many[0][0].prompt_tokens == steps[0].prompt_tokens
    assert all(c.finish_reason in ("stop", "eos", "length") for m in many for c in m)
    # Batched judging gives what one-at-a-time judging gives.
    from patchswarm.agent.judge import GenRM, yes_probability
    from patchswarm.agent.math_prompts import judge_messages

    judge = ms.JudgeScorer(engine)
    texts = ["17 + 25 = 42. The final answer is $\\boxed{42}$.", "17 + 25 = 13. \\boxed{13}"]
    batched = judge("What is 17 + 25?", texts)
    single = [yes_probability(GenRM(engine).top_tokens(
        judge_messages("What is 17 + 25?", t))).score for t in texts]
    assert batched == pytest.approx(single, abs=1e-3)


# --------------------------------------------------------------------------- solve, CLI


def _replay_file(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "completion_tokens": 12}) + "\n"
                            for t in texts))
    return path


def test_solve_command_with_recorded_completions(tmp_path):
    replay = _replay_file(tmp_path / "r.jsonl",
                          ["17 + 25 = 42, so \\boxed{42}", "\\boxed{41}", "\\boxed{42.0}",
                           "no idea"] + ["\\boxed{1/2}", "\\boxed{0.5}", "\\boxed{2}", "x"])
    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["solve", "--strategy", "majority", "-n", "4",
                                    "--problem", "add-two", "--problem", "half-fraction",
                                    "--replay", str(replay), "--run-dir", str(run), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads((run / "report.json").read_text())
    points = {p["budget"]: p for p in report["strategies"]["majority"]["points"]}
    assert points[4]["accuracy"] == 1.0 and points[4]["coverage"] == 1.0
    # k = 2: 42 against 41 is a tie (half right); 1/2 and 0.5 are one answer (right).
    assert points[2]["accuracy"] == pytest.approx(0.75)
    assert (run / "accuracy.png").exists()
    # A judged strategy with a sampler that has no log-probabilities fails clearly.
    res = CliRunner().invoke(main, ["solve", "--strategy", "weighted", "-n", "4", "--limit", "1",
                                    "--replay", str(replay), "--run-dir", str(tmp_path / "w")])
    assert res.exit_code == 2 and "--reward-model" in res.output
    res = CliRunner().invoke(main, ["solve", "--strategy", "greedy"])
    assert res.exit_code == 2 and "unknown strategy greedy" in res.output


@pytest.fixture(scope="module")
def reward_folder(tmp_path_factory) -> Path:
    """A real sequence-classification folder (tiny, seeded) with the test model's tokenizer,
    laid out as a user's trained reward model would be."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(resolve_model(TEST_MODEL, progress=False))
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=2048, num_labels=1,
                      pad_token_id=tok.pad_token_id or tok.eos_token_id)
    folder = tmp_path_factory.mktemp("rm") / "tiny-reward"
    LlamaForSequenceClassification(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_best_of_n_and_weighted_with_a_named_reward_model(tmp_path, reward_folder):
    texts = ["17 + 25 = 42, so \\boxed{42}", "\\boxed{41}", "\\boxed{42.0}", "hmm \\boxed{40}"]
    replay = _replay_file(tmp_path / "r.jsonl", texts)
    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["solve", "--strategy", "best_of_n,weighted", "-n", "4",
                                    "--problem", "add-two", "--reward-model",
                                    str(reward_folder), "--replay", str(replay),
                                    "--run-dir", str(run)])
    assert res.exit_code == 0, res.output
    scores = read_jsonl(run / "scores.jsonl")
    assert len(scores) == 4  # scored once, shared by both strategies
    rows = {r["strategy"]: r for r in read_jsonl(run / "results.jsonl") if r["budget"] == 4}
    rm = ms.reward_model_scorer(reward_folder)
    expected = rm("What is 17 + 25?", texts)
    got = [c["score"] for c in rows["best_of_n"]["result"]["candidates"]]
    assert got == pytest.approx(expected, abs=1e-5)
    best = max(range(4), key=lambda i: expected[i])
    assert rows["best_of_n"]["answer"] == ms.boxed_answer(texts[best])
    info = json.loads((run / "run.json").read_text())
    assert info["strategies"]["weighted"]["scorer"] == "reward:tiny-reward"


# --------------------------------------------------------------------------- prove


@pytest.fixture(scope="module")
def coq_image(docker_engine) -> str:
    from patchswarm.verifiers.coq import ensure_coq_image

    return ensure_coq_image(log=lambda m: None)


ROLES = {"easy": ("mathd_numbertheory_342", "small_mod"),
         "unproved": ("mathd_numbertheory_66", "small_mod_hard"),
         "sum": ("mathd_numbertheory_85", "small_sum")}


@pytest.fixture
def statements(tmp_path) -> tuple[Path, dict[str, str]]:
    """A folder with three statements (and one that does not compile); role → theorem name."""
    folder = tmp_path / "statements"
    folder.mkdir()
    if MINIF2F.is_dir():
        names = {role: shared for role, (shared, _) in ROLES.items()}
        source = MINIF2F
    else:
        warnings.warn(f"the shared miniF2F folder ({MINIF2F}) is absent: using the statements "
                      "bundled in tests/data/coq instead", stacklevel=1)
        names = {role: own for role, (_, own) in ROLES.items()}
        source = HERE / "data" / "coq"
    for name in names.values():
        shutil.copy(source / f"{name}.v", folder / f"{name}.v")
    shutil.copy(HERE / "data" / "coq-broken" / "broken_statement.v", folder)
    return folder, names


def test_prove_checks_each_sample_with_coq_and_reports_coverage(tmp_path, statements,
                                                                coq_image):
    folder, names = statements
    easy, unproved = names["easy"], names["unproved"]
    real = "Here is the proof.\n```coq\nProof.\n  reflexivity.\nQed.\n```"
    per_statement = {
        # Files sort as: broken_statement, then the easy, unproved and sum statements.
        "broken_statement": [real, real, real],
        easy: ["```coq\nProof.\nAdmitted.\n```",  # cheats: Admitted
               real,
               "```coq\nProof. exact I. Qed.\n```"],  # wrong
        unproved: [
            # cheats: an axiom that states the theorem
            f"```coq\nRequire Import Arith.\nAxiom cheat : 194 mod 11 = 7.\n"
            f"Theorem {unproved} : 194 mod 11 = 7.\nProof. exact cheat. Qed.\n```",
            # restates an easier theorem under the same name: the statement stays the file's
            f"```coq\nTheorem {unproved} : True.\nProof. exact I. Qed.\n```",
            "```coq\nProof.\n  intros.\n  admit.\nQed.\n```"],  # cheats: admit
        names["sum"]: [real, "```coq\nProof. reflexivity. Qed.\n```", real],
    }
    order = sorted(per_statement)
    replay = _replay_file(tmp_path / "r.jsonl", [t for k in order for t in per_statement[k]])
    run = tmp_path / "run"
    cmd = [sys.executable, "-c", "from patchswarm.tasks.cli.main import main; main()", "prove",
           "--dataset", str(folder), "-n", "3", "--replay", str(replay), "--run-dir", str(run),
           "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((run / "report.json").read_text())
    rows = {r["id"]: r for r in report["problems"]}
    assert report["statement_broken"] == ["broken_statement"] and report["checkable"] == 3
    assert rows["broken_statement"]["statement"] == "statement does not compile"
    assert (rows[easy]["passed"], rows[easy]["first_pass"]) == (1, 1)
    assert rows[unproved]["passed"] == 0
    # The sum's proofs differ only in layout: one distinct proof, checked once, passing 3 times.
    assert (rows[names["sum"]]["distinct"], rows[names["sum"]]["passed"]) == (1, 3)
    assert report["coverage"] == pytest.approx(2 / 3)
    assert report["pass_at_1"] == pytest.approx((1 / 3 + 0 + 1) / 3)
    assert dict((k, v) for k, v in report["curve"]) == pytest.approx(
        {1: (1 / 3 + 0 + 1) / 3, 2: (2 / 3 + 0 + 1) / 3, 3: 2 / 3}, abs=1e-4)
    verdicts = {v["key"]: v for v in read_jsonl(run / _dir(easy) / "verdicts.jsonl")}
    cands = read_jsonl(run / _dir(easy) / "candidates.jsonl")
    details = [verdicts[c["key"]]["detail"] for c in cands]
    assert "Admitted" in details[0] and details[1].endswith("(closed under the global context)")
    assert "proof does not check" in details[2]
    # Every candidate file keeps the statement verbatim, whatever the model restated.
    src = (folder / f"{unproved}.v").read_text()
    stmt = src[src.index("Theorem"):src.index("Proof.")].strip()
    for c in read_jsonl(run / _dir(unproved) / "candidates.jsonl"):
        assert stmt in c["proof"] and "True." not in c["proof"]
    unproved_details = [v["detail"] for v in read_jsonl(run / _dir(unproved) /
                                                        "verdicts.jsonl")]
    assert any("new axiom" in d for d in unproved_details)
    assert any("admit" in d for d in unproved_details)
    assert (run / "coverage.png").stat().st_size > 5000
    # Resumes: nothing sampled (the replay is spent) and nothing checked again.
    n_verdicts = sum(len(read_jsonl(p)) for p in run.glob("*/verdicts.jsonl"))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sum(len(read_jsonl(p)) for p in run.glob("*/verdicts.jsonl")) == n_verdicts
    assert json.loads((run / "report.json").read_text())["coverage"] == report["coverage"]


def _dir(pid: str) -> str:
    return pid.replace("/", "__")


def test_proof_files_keep_the_statement_verbatim():
    from patchswarm.agent.proof_prompts import proof_file, proof_messages

    src = ("Require Import Reals.\nOpen Scope R_scope.\n\nTheorem t (a : R) :\n"
           "  a * (2 - a) <= 1.\nProof.\nAdmitted.\n")
    reply = ("Sure.\n```coq\nRequire Import Reals.\nRequire Import Psatz.\nOpen Scope R_scope.\n"
             "Lemma helper : 0 <= 0.\nProof. lra. Qed.\n"
             "Theorem t (a : R) : a * (2 - a) <= 2.\nProof.\n  nra.\nQed.\n"
             "Theorem extra : True.\nProof. exact I. Qed.\n```\nDone.")
    out = proof_file(src, reply)
    assert out == ("Require Import Reals.\nOpen Scope R_scope.\nRequire Import Psatz.\n"
                   "Lemma helper : 0 <= 0.\nProof. lra. Qed.\n"
                   "Theorem t (a : R) :\n  a * (2 - a) <= 1.\nProof.\n  nra.\nQed.\n")
    # A garbled restatement (periods of its own) still gives the proof from its "Proof.".
    garbled = "```coq\nLemma t Lemma.\n  a * (2 - a) <= 1.\nProof.\n  nra.\nQed.\n```"
    assert proof_file(src, garbled).endswith("a * (2 - a) <= 1.\nProof.\n  nra.\nQed.\n")
    # A bare tactic script gets Proof. and Qed. around it.
    assert proof_file(src, "nra.").endswith("a * (2 - a) <= 1.\nProof.\nnra.\nQed.\n")
    user = proof_messages(src)[-1]["content"]
    assert "Theorem t (a : R) :\n  a * (2 - a) <= 1." in user and "Admitted." not in \
        user.split("```")[1]
