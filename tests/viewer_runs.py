"""A real repair run folder for the viewer's and the CLI's tests: the in-process pipeline on
a bundled example with recorded completions (so the outcome is known), verified in Docker."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from patchswarm.agent.sampler import ReplaySampler
from patchswarm.tasks.engine.problem import local_problem
from patchswarm.tasks.engine.runner import RepairResult, RepairSettings, repair
from patchswarm.tasks.sources import examples

EXAMPLE = "gradebook-average"


class SlowReplay(ReplaySampler):
    """Recorded completions that take a little time, so sampling has a measured cost."""

    def sample(self, messages, params):  # noqa: ANN001, ANN201
        time.sleep(0.3)
        return super().sample(messages, params)


def _whole_file(text: str) -> str:
    return f"Here is the fix.\n\ngradebook.py\n```python\n{text}```\n"


def completions(tmp: Path) -> list[str]:
    """Five completions: the gold fix, prose, a wrong fix, the gold fix with a comment (the
    same change once normalised), and the unchanged file."""
    gold = examples.materialise(EXAMPLE, tmp / "gold")
    before = (gold / "gradebook.py").read_text()
    fix = examples.load_example(EXAMPLE)["root"] / "fix.patch"
    subprocess.run(["git", "-C", str(gold), "apply", str(fix)], check=True)
    after = (gold / "gradebook.py").read_text()
    wrong = before.replace("return sum(scores) // len(scores)",
                           "return round(sum(scores) // len(scores))")
    return [_whole_file(after), "I cannot help with that.", _whole_file(wrong),
            _whole_file(after.replace("return sum(scores) / len(scores)",
                                      "return sum(scores) / len(scores)  # true division")),
            _whole_file(before)]


def make_repair_run(tmp: Path, run_dir: Path) -> RepairResult:
    """Repair the example into ``run_dir``: 5 samples, 2 with no usable edit, 2 distinct
    changes (the passing one with 2 votes)."""
    meta = examples.load_example(EXAMPLE)
    repo = examples.materialise(EXAMPLE, tmp / "repo")
    problem = local_problem(repo, meta["issue"], meta["test_command"], problem_id=EXAMPLE,
                            files=meta["files"])
    sampler = SlowReplay([{"text": t, "completion_tokens": 20 + i, "prompt_tokens": 300,
                           "finish_reason": "stop", "seed": 100 + i}
                          for i, t in enumerate(completions(tmp))])
    return repair(problem, lambda: sampler, RepairSettings(n=5), run_dir)
