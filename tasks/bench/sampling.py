"""``patchswarm bench sampling``: what prefix sharing buys, in one run.

One shared repair prompt (at least ``--prompt-tokens`` tokens, made of the bundled examples'
source files) is sampled ``n`` times two ways, each on a fresh in-process vLLM engine:

(a) one request for ``n`` samples, prefix caching on: the prompt is computed once;
(b) ``n`` separate requests submitted together, prefix caching off: the prompt is computed
    ``n`` times (the strongest batch baseline; ``--sequential`` also times them one by one).

Target: (a) at least 2x faster than (b). ``--repeats`` times each way several times, each
with a fresh prompt so that no repeat is served from the cache, and reports the median. Also
printed: generated tokens per second and the share of distinct candidates. On the CPU build
one seeded request with ``n`` samples works but many seeded requests in one batch do not, so
(a) carries a seed and (b) does not.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

TARGET_SPEEDUP = 2.0


def shared_prompt(tokenizer: Any, min_tokens: int) -> tuple[list[dict[str, str]], int]:
    """A repair prompt over the bundled examples' source files, grown file by file until it
    holds at least ``min_tokens`` tokens."""
    from patchswarm.agent.prompts import repair_messages
    from patchswarm.tasks.sources import examples

    files: dict[str, str] = {}
    issue = ""
    sources = []
    for eid in examples.list_examples():
        meta = examples.load_example(eid)
        issue = issue or meta["issue"]
        root = Path(meta["root"]) / "repo"
        sources += [(f"{eid}/{p.relative_to(root)}", p.read_text())
                    for p in sorted(root.rglob("*.py"))]
    count = 0
    messages: list[dict[str, str]] = []
    for path, text in sources * 4:
        if path in files:
            path = f"copy-{len(files)}/{path}"
        files[path] = text
        messages = repair_messages(issue, files, "search_replace")
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        count = len(ids["input_ids"] if hasattr(ids, "keys") else ids)
        if count >= min_tokens:
            return messages, count
    raise click.ClickException(f"the bundled files make only {count} prompt tokens; "
                               f"ask for fewer than {min_tokens}")


def _stats(outputs: list[tuple[str, int]], seconds: float) -> dict[str, Any]:
    tokens = sum(k for _, k in outputs)
    return {
        "seconds": round(seconds, 2),
        "samples": len(outputs),
        "generated_tokens": tokens,
        "generated_tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
        "distinct_share": round(len({t for t, _ in outputs}) / max(1, len(outputs)), 3),
    }


def _tagged(messages: list[dict[str, str]], rep: int) -> list[dict[str, str]]:
    """The prompt for repeat ``rep``: a distinct first line, so no repeat finds the previous
    one's prompt in the prefix cache."""
    head = {**messages[0], "content": f"[run {rep}] {messages[0]['content']}"}
    return [head, *messages[1:]]


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median time, with every run's seconds alongside."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    return {**ordered[(len(ordered) - 1) // 2], "runs_seconds": [r["seconds"] for r in runs]}


def run_bench(model: str, n: int = 16, prompt_tokens: int = 1600, max_tokens: int = 64,
              temperature: float = 0.8, sequential: bool = False, repeats: int = 1,
              max_model_len: int = 4096, log: Any = print) -> dict[str, Any]:
    """Both ways on fresh engines, ``repeats`` times each (median reported); returns the
    figures (see the module docstring)."""
    # vLLM logs to stdout by default, which would mix its lines into --json output.
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    from vllm import SamplingParams as VParams

    from patchswarm.agent.models import resolve_model
    from patchswarm.agent.sampler import SamplingParams, VLLMSampler

    path = resolve_model(model)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    messages, count = shared_prompt(tokenizer, prompt_tokens)
    warm = [{"role": "user", "content": "Say hello."}]
    result: dict[str, Any] = {"model": model, "n": n, "prompt_tokens": count,
                              "max_tokens": max_tokens, "temperature": temperature}

    log(f"(a) engine with prefix caching; one request for n={n} "
        f"({count} prompt tokens)")
    t0 = time.monotonic()
    engine = VLLMSampler(str(path), name=model, max_model_len=max_model_len,
                         prefix_caching=True)
    result["engine_start_cached_s"] = round(time.monotonic() - t0, 1)
    try:
        engine.sample(warm, SamplingParams(n=1, max_tokens=4, seed=1))
        runs = []
        for rep in range(repeats):
            t0 = time.monotonic()
            comps = engine.sample(_tagged(messages, rep),
                                  SamplingParams(n=n, max_tokens=max_tokens,
                                                 temperature=temperature, seed=0))
            took = time.monotonic() - t0
            runs.append({**_stats([(c.text, c.completion_tokens) for c in comps], took),
                         "seed": 0})
        result["one_request_n_cached"] = _median(runs)
    finally:
        engine.close()

    log(f"(b) engine without prefix caching; {n} separate requests")
    t0 = time.monotonic()
    engine = VLLMSampler(str(path), name=model, max_model_len=max_model_len,
                         prefix_caching=False)
    result["engine_start_uncached_s"] = round(time.monotonic() - t0, 1)
    try:
        engine.sample(warm, SamplingParams(n=1, max_tokens=4, seed=1))
        vp = VParams(n=1, temperature=temperature, top_p=0.95, max_tokens=max_tokens)
        runs = []
        for rep in range(repeats):
            t0 = time.monotonic()
            outs = engine.llm.chat([_tagged(messages, rep)] * n, vp, use_tqdm=False)
            took = time.monotonic() - t0
            runs.append({**_stats([(o.outputs[0].text, len(o.outputs[0].token_ids))
                                   for o in outs], took), "submitted": "together",
                         "seed": None})
        result["separate_requests_uncached"] = _median(runs)
        if sequential:
            log(f"(b') the same {n} requests one after another")
            t0 = time.monotonic()
            seq = [engine.llm.chat(_tagged(messages, repeats), vp, use_tqdm=False)[0]
                   for _ in range(n)]
            took = time.monotonic() - t0
            result["separate_requests_sequential"] = {
                **_stats([(o.outputs[0].text, len(o.outputs[0].token_ids)) for o in seq],
                         took), "submitted": "one after another", "seed": None}
    finally:
        engine.close()

    a = result["one_request_n_cached"]["seconds"]
    b = result["separate_requests_uncached"]["seconds"]
    result["speedup"] = round(b / a, 2) if a > 0 else None
    result["target_speedup"] = TARGET_SPEEDUP
    result["target_met"] = bool(a > 0 and b / a >= TARGET_SPEEDUP)
    return result


@click.command("sampling")
@click.option("--model", default=None,
              help="Model name or Hugging Face folder (default: the small test model).")
@click.option("-n", "n", default=16, show_default=True, help="Samples of the shared prompt.")
@click.option("--prompt-tokens", default=1600, show_default=True,
              help="Least size of the shared prompt (at least 1500 for the target).")
@click.option("--max-tokens", default=64, show_default=True, help="Tokens per sample.")
@click.option("--sequential", is_flag=True,
              help="Also time the separate requests one after another.")
@click.option("--repeats", default=1, show_default=True,
              help="Time each way this many times (a new prompt each time); report the median.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def sampling(model: str | None, n: int, prompt_tokens: int, max_tokens: int,
             sequential: bool, repeats: int, as_json: bool) -> None:
    """One request for n samples with prefix caching against n separate uncached requests."""
    from patchswarm.agent.models import TEST_MODEL

    def log(msg: str) -> None:
        click.echo(msg, err=True)

    result = run_bench(model or TEST_MODEL, n=n, prompt_tokens=prompt_tokens,
                       max_tokens=max_tokens, sequential=sequential,
                       repeats=max(1, repeats), log=log)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        a, b = result["one_request_n_cached"], result["separate_requests_uncached"]
        click.echo(f"model {result['model']}, prompt {result['prompt_tokens']} tokens, "
                   f"n={n}, {max_tokens} tokens each")
        for label, r in (("(a) one request, n, cached", a), ("(b) separate, uncached", b)):
            click.echo(f"{label:30s} {r['seconds']:7.2f} s  {r['generated_tokens_per_s']:7.1f} "
                       f"tok/s  distinct {r['distinct_share']:.0%}")
        click.echo(f"speed-up {result['speedup']}x (target {TARGET_SPEEDUP}x: "
                   f"{'met' if result['target_met'] else 'NOT met'})")
    if not result["target_met"]:
        sys.exit(1)


def _attach() -> list:
    """Attach to the shared ``bench`` group (tasks/cmd_bench.py)."""
    from patchswarm.tasks.bench import register

    register(sampling)
    return []


COMMANDS: list = _attach()
