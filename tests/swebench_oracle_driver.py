"""Runs inside the official ``swebench`` package's own virtual environment: JSON in on stdin,
JSON out on stdout. Never imports patchswarm.

Input: ``{"logs": [{"id", "log"}], "grades": [{"id", "parser", "content", "f2p", "p2p"}]}``.
Output: ``{"parsed": {id: {parser: status map}}, "graded": {id: {"found", "status_map",
"tests_status", "status"}}}``, every parser of ``MAP_REPO_TO_PARSER_PY`` run on every log.
"""

import json
import sys
import tempfile
from types import SimpleNamespace

from swebench.harness import grading
from swebench.harness.log_parsers import python as parsers

NAMES = {
    "pytest": parsers.parse_log_pytest, "pytest_options": parsers.parse_log_pytest_options,
    "pytest_v2": parsers.parse_log_pytest_v2, "django": parsers.parse_log_django,
    "sympy": parsers.parse_log_sympy, "matplotlib": parsers.parse_log_matplotlib,
    "seaborn": parsers.parse_log_seaborn,
}


def main() -> None:
    req = json.load(sys.stdin)
    spec = SimpleNamespace(instance_id="x", FAIL_TO_PASS=[], PASS_TO_PASS=[])
    parsed = {c["id"]: {n: f(c["log"], spec) for n, f in NAMES.items()} for c in req["logs"]}
    repo_of = {f"parse_log_{n}": None for n in NAMES}
    graded = {}
    for c in req["grades"]:
        spec = SimpleNamespace(instance_id=c["id"], FAIL_TO_PASS=c["f2p"],
                               PASS_TO_PASS=c["p2p"], log_parser=f"parse_log_{c['parser']}")
        assert spec.log_parser in repo_of
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as fh:
            fh.write(c["content"])
            fh.flush()
            status_map, found = grading.get_logs_eval(spec, fh.name)
        report = grading.get_eval_tests_report(status_map, {
            "FAIL_TO_PASS": c["f2p"], "PASS_TO_PASS": c["p2p"]})
        graded[c["id"]] = {"found": found, "status_map": status_map,
                           "tests_status": report,
                           "status": grading.get_resolution_status(report)}
    json.dump({"parsed": parsed, "graded": graded}, sys.stdout)


if __name__ == "__main__":
    main()
