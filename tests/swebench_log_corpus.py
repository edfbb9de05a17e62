"""Turns the logs of ``patchswarm swebench eval --gold`` runs into the oracle's corpus of real
logs (``data/swebench-logs/*.json``): per instance, the gold run and the empty-patch run.

Only an excerpt is kept: the harness's markers and every line a parser could read (a status
word at either end, Django's `` ... ``, sympy's ``test_`` lines and ``file.py:name`` headers,
``ok`` continuation lines). Both sides of the comparison parse the same excerpt, so the check
stays exact while the files stay small.

    python tests/swebench_log_corpus.py DATASET.jsonl EVAL_FOLDER [EVAL_FOLDER ...]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

STATUS = ("FAILED", "PASSED", "SKIPPED", "ERROR", "XFAIL")
_SYMPY_HEADER = re.compile(r"(_*) (.*)\.py:(.*) (_*)")
OUT = Path(__file__).parent / "data" / "swebench-logs"


def keep(line: str) -> bool:
    s = line.strip()
    return (line.startswith(">>>>>") or any(line.startswith(w) or line.endswith(w)
                                            for w in STATUS)
            or " ... " in line or s.startswith(("test_", "ok")) or "MouseButton" in line
            or bool(_SYMPY_HEADER.search(line)) or "[100%]" in line
            or "collected 0 items" in line or "no tests ran" in line)


def excerpt(log: str) -> str:
    return "\n".join(line for line in log.split("\n") if keep(line)) + "\n"


def main(dataset: Path, folders: list[Path]) -> None:
    from patchswarm.verifiers.swebench_logs import parser_for

    rows = {}
    for line in dataset.read_text().splitlines():
        r = json.loads(line)
        rows[r["instance_id"]] = r
    OUT.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        for log in sorted((folder / "logs").glob("*/**/test_output.txt")):
            run = log.parent
            iid = run.name if run.name in rows else run.parent.name
            kind = "gold" if run.name == iid else run.name
            if kind == "warm":  # the same log as the gold run's, once more
                continue
            row = rows.get(iid)
            text = log.read_text(errors="replace")
            if row is None or not text.strip():
                continue
            case = {"id": f"{iid}.{kind}", "repo": row["repo"],
                    "parser": parser_for(row["repo"]),
                    "f2p": json.loads(row["FAIL_TO_PASS"]),
                    "p2p": json.loads(row["PASS_TO_PASS"]), "log": excerpt(text)}
            (OUT / f"{iid}.{kind}.json").write_text(json.dumps(case, indent=1) + "\n")
            print(f"{case['id']}: {len(text)} → {len(case['log'])} characters")


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
