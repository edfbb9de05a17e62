"""Judges: a score in [0, 1] that a candidate patch is right, used by ranking after verdicts and
votes (``Group.judge``).

- :class:`GenRM`, a generative verifier: the sampling model itself is asked "Is this patch
  correct? Answer Yes or No." and the score is P(yes) from the first answer token's
  log-probabilities, normalised over yes and no: ``p_yes / (p_yes + p_no)``. With the
  in-process engine it runs on the same ``LLM`` object (no second copy of the weights); with an
  OpenAI-compatible server it uses ``logprobs`` / ``top_logprobs``.
- :class:`RewardModel`, a reward model the user names: a Hugging Face sequence-classification
  folder, loaded with transformers; one logit is read through a sigmoid, several through a
  softmax (the last label is "good").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .sampler import SamplerError

QUESTION = "Is this patch correct? Answer Yes or No."
JUDGE_SYSTEM = (
    "You review patches to code repositories. You answer with a single word, Yes or No."
)


class JudgeError(Exception):
    """The judge cannot run; the message says why and what to do."""


@dataclass
class JudgeScore:
    score: float
    """P(yes) normalised over yes and no; 0.5 when neither was among the top tokens."""
    p_yes: float
    p_no: float
    top: dict[str, float]
    """The top first tokens and their log-probabilities, as the backend gave them."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge_messages(issue: str, patch: str, max_patch_chars: int = 12000
                   ) -> list[dict[str, str]]:
    """The question put to the generative verifier."""
    if len(patch) > max_patch_chars:
        patch = patch[:max_patch_chars] + "\n… (cut)"
    user = (
        "Here is an issue reported in a repository.\n\n"
        f"<issue>\n{issue.strip()}\n</issue>\n\n"
        f"Here is a patch proposed to fix it:\n\n```diff\n{patch.rstrip()}\n```\n\n{QUESTION}"
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def yes_probability(top: dict[str, float]) -> JudgeScore:
    """Score from first-token log-probabilities (token text → logprob). Tokens count as yes or
    no whatever their case and surrounding space."""
    p_yes = p_no = 0.0
    for token, lp in top.items():
        word = token.replace("Ġ", " ").replace("▁", " ").strip().strip(".,!").lower()
        if word == "yes":
            p_yes += math.exp(lp)
        elif word == "no":
            p_no += math.exp(lp)
    total = p_yes + p_no
    score = p_yes / total if total > 0 else 0.5
    return JudgeScore(score, p_yes, p_no, dict(top))


class GenRM:
    """A generative verifier on a sampler: :class:`~.sampler.VLLMSampler` (its ``llm``) or
    :class:`~.openai_backend.OpenAISampler` (its ``next_token_logprobs``)."""

    def __init__(self, sampler: Any, top_logprobs: int = 20,
                 max_patch_chars: int = 12000) -> None:
        self.sampler = sampler
        self.top_logprobs = top_logprobs
        self.max_patch_chars = max_patch_chars
        if getattr(sampler, "llm", None) is None and not hasattr(sampler, "next_token_logprobs"):
            raise JudgeError(
                f"{type(sampler).__name__} cannot give log-probabilities: use the in-process "
                "vLLM engine or an OpenAI-compatible endpoint"
            )

    def top_tokens(self, messages: list[dict[str, str]]) -> dict[str, float]:
        """First-token text → log-probability, the ``top_logprobs`` most likely."""
        llm = getattr(self.sampler, "llm", None)
        if llm is None:
            try:
                return self.sampler.next_token_logprobs(messages, self.top_logprobs)
            except SamplerError as exc:
                raise JudgeError(str(exc)) from exc
        from vllm import SamplingParams as VParams

        room = getattr(self.sampler, "max_model_len", None)
        if room is not None and self.sampler.count_tokens(messages) >= room:
            raise JudgeError("the judge prompt is over the model's context: the patch is too "
                             "long; lower max_patch_chars")
        vp = VParams(n=1, max_tokens=1, temperature=0.0, logprobs=self.top_logprobs)
        out = llm.chat(messages, vp, use_tqdm=False)[0].outputs[0]
        if not out.logprobs:
            raise JudgeError("the engine returned no log-probabilities")
        position = out.logprobs[0]
        tokenizer = getattr(self.sampler, "tokenizer", None)
        top: dict[str, float] = {}
        for token_id, lp in position.items():
            text = lp.decoded_token
            if text is None and tokenizer is not None:
                text = tokenizer.decode([token_id])
            if text is None:
                continue
            top[text] = max(top.get(text, float("-inf")), float(lp.logprob))
        return top

    def score(self, issue: str, patch: str) -> JudgeScore:
        return yes_probability(self.top_tokens(judge_messages(issue, patch,
                                                              self.max_patch_chars)))

    def for_issue(self, issue: str) -> Callable[[str], float]:
        """The ``judge`` callable strategies take: patch → score."""
        return lambda patch: self.score(issue, patch).score


class RewardModel:
    """A user-named reward model: a Hugging Face sequence-classification folder."""

    def __init__(self, folder: str | Path, device: str | None = None,
                 max_length: int = 4096) -> None:
        folder = Path(folder).expanduser()
        if not (folder / "config.json").is_file():
            raise JudgeError(
                f"{folder} is not a Hugging Face model folder (no config.json): name a folder "
                "holding a sequence-classification reward model"
            )
        try:
            import torch
            from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as exc:
            raise JudgeError(f"a reward model needs torch and transformers: {exc}") from exc
        config = AutoConfig.from_pretrained(folder)
        archs = config.architectures or []
        if not any(a.endswith(("ForSequenceClassification", "RewardModel")) for a in archs):
            raise JudgeError(
                f"{folder} holds {', '.join(archs) or 'an unknown architecture'}, not a "
                "sequence-classification reward model: its score head would be untrained"
            )
        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForSequenceClassification.from_pretrained(folder)
        self.model.to(self.device).eval()
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.max_length = max_length
        self.name = folder.name

    def _text(self, issue: str, patch: str) -> str:
        user = f"Fix this issue:\n{issue.strip()}"
        answer = f"```diff\n{patch.rstrip()}\n```"
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
                tokenize=False)
        return f"{user}\n\n{answer}"

    def scores(self, issue: str, patches: list[str], batch: int = 4) -> list[float]:
        out: list[float] = []
        torch = self.torch
        for i in range(0, len(patches), batch):
            texts = [self._text(issue, p) for p in patches[i:i + batch]]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                                 max_length=self.max_length).to(self.device)
            with torch.no_grad():
                logits = self.model(**enc).logits.float()
            if logits.shape[-1] == 1:
                probs = torch.sigmoid(logits[:, 0])
            else:
                probs = torch.softmax(logits, dim=-1)[:, -1]
            out.extend(float(p) for p in probs.cpu())
        return out

    def score(self, issue: str, patch: str) -> float:
        return self.scores(issue, [patch])[0]

    def for_issue(self, issue: str) -> Callable[[str], float]:
        return lambda patch: self.score(issue, patch)
