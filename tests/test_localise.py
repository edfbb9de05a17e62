"""Localisation and excerpts: the file an issue is about is shown, examples are held back, and
a long file is shown as the parts the issue names, verbatim."""

from __future__ import annotations

import json
import subprocess

from click.testing import CliRunner

from patchswarm.agent.context import select_context, select_files
from patchswarm.agent.excerpt import ELIDED, excerpt
from patchswarm.agent.localise import FileFacts as Facts
from patchswarm.agent.localise import IssueSignals, rank_files


def _facts(files: dict[str, str]) -> list[Facts]:
    return [Facts.of(p, t) for p, t in files.items()]


LIBRARY = {
    "pkg/__init__.py": "from .query import QuerySet\n",
    "pkg/db/query.py": "class QuerySet:\n    def bulk_create(self, objs):\n        return objs\n",
    "pkg/db/compiler.py": "class SQLCompiler:\n    def get_order_by(self):\n        return []\n",
    "pkg/forms.py": ("def clean(value):\n    # order by query ordering of the form\n"
                     "    return value\n"),
    "examples/order_by_query.py": ("# ordering query order by example: query order by\n"
                                   "def order_by_query(q):\n    return q.order_by('x')\n"),
    "docs/conf.py": "project = 'query order by docs'\n",
}


def test_a_named_definition_outranks_shared_vocabulary():
    issue = "SQLCompiler.get_order_by() drops the ordering of a query with multiline RawSQL."
    ranked = [p for p, _ in rank_files(issue, _facts(LIBRARY))]
    assert ranked[0] == "pkg/db/compiler.py"


def test_examples_and_docs_are_held_back_unless_named():
    issue = "The query order by example is wrong: order by query ordering breaks."
    ranked = [p for p, _ in rank_files(issue, _facts(LIBRARY))]
    assert ranked.index("examples/order_by_query.py") > ranked.index("pkg/forms.py")
    named = "examples/order_by_query.py prints the wrong query order by ordering"
    assert rank_files(named, _facts(LIBRARY))[0][0] == "examples/order_by_query.py"


def test_a_traceback_frame_names_the_file():
    issue = ('Traceback (most recent call last):\n'
             '  File "/usr/lib/python3/site-packages/pkg/db/query.py", line 3, in bulk\n'
             'TypeError: boom')
    assert rank_files(issue, _facts(LIBRARY))[0][0] == "pkg/db/query.py"


def test_a_dotted_module_names_the_file():
    issue = "Calling pkg.db.compiler with no arguments fails"
    assert rank_files(issue, _facts(LIBRARY))[0][0] == "pkg/db/compiler.py"


def test_issue_signals_skip_common_words_and_file_suffixes():
    sig = IssueSignals.of("In `foo_bar(x)` see setup.py and self.value; CamelCase breaks")
    assert {"foo_bar", "CamelCase"} <= sig.names
    assert "self" not in sig.names and "value" not in sig.names
    assert "setup.py" in sig.paths and "setup.py" not in sig.modules


def _long_module(method: str = "parse_header") -> str:
    parts = ["import os\nimport re\n\n\n"]
    for i in range(60):
        parts.append(f"def helper_{i}(x):\n" + "".join(
            f"    x = x + {j}  # arithmetic step\n" for j in range(8)) + "    return x\n\n\n")
    parts.append(f"class Parser:\n    def {method}(self, text):\n"
                 "        return text.split(':')\n\n"
                 "    def other(self):\n        return 1\n")
    return "".join(parts)


def test_excerpt_keeps_the_named_method_verbatim_with_its_class_header():
    text = _long_module()
    sig = IssueSignals.of("Parser.parse_header() fails on a header without a colon")
    shown = excerpt(text, sig, 1500)
    assert len(shown) < len(text) and ELIDED in shown
    assert "class Parser:\n" in shown
    assert ("    def parse_header(self, text):\n        return text.split(':')\n") in shown
    assert "import os\n" in shown
    assert "def helper_30" not in shown


def test_excerpt_returns_a_small_file_whole():
    sig = IssueSignals.of("anything")
    assert excerpt("x = 1\n", sig, 100) == "x = 1\n"


def test_select_context_shows_several_files_within_the_budget():
    files = {f"pkg/m{i}.py": _long_module(f"parse_{i}") for i in range(5)}
    files["pkg/target.py"] = "def parse_header(text):\n    return text\n"
    shown = select_context("parse_header breaks the Parser arithmetic step", files,
                           budget_chars=8000, max_files=4)
    assert len(shown) == 4 and "pkg/target.py" in shown
    assert shown["pkg/target.py"] == files["pkg/target.py"]
    assert sum(map(len, shown.values())) <= 8000 + 2000  # a best definition may overrun a bit


def test_select_files_still_shows_whole_files():
    files = {"a.py": "def parse_header():\n    pass\n", "b.py": "x = 1\n" * 10}
    assert select_files("parse_header", files)[0] == "a.py"


def test_bench_localisation_measures_recall_on_a_real_repository(tmp_path):
    repo = tmp_path / "acme__widgets"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "widgets").mkdir()
    (repo / "widgets" / "gears.py").write_text("def spin(rate):\n    return rate * 2\n")
    (repo / "widgets" / "other.py").write_text("def paint(c):\n    return c\n")
    (repo / "examples").mkdir()
    (repo / "examples" / "spin_demo.py").write_text("# spin the gears rate demo\n")
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=a@b", "-c", "user.name=a",
                    "commit", "-qm", "base"], check=True)
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    patch = ("diff --git a/widgets/gears.py b/widgets/gears.py\n--- a/widgets/gears.py\n"
             "+++ b/widgets/gears.py\n@@ -1,2 +1,2 @@\n def spin(rate):\n-    return rate * 2\n"
             "+    return rate * 3\n")
    dataset = tmp_path / "lite.jsonl"
    dataset.write_text(json.dumps({"instance_id": "acme__widgets-1", "repo": "acme/widgets",
                                   "base_commit": commit, "patch": patch,
                                   "problem_statement": "spin() returns the wrong rate"}) + "\n")
    from patchswarm.tasks.bench.localisation import localisation

    res = CliRunner().invoke(localisation, ["--dataset", str(dataset), "--repos-dir",
                                            str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["overall"]["instances"] == 1
    assert out["overall"]["context"]["recall"] == 1.0
    assert out["by_repo"]["acme/widgets"]["whole_files"]["recall"] == 1.0
    bundled = out["examples"]["summary"]
    assert bundled["instances"] >= 10 and bundled["context"]["recall"] == 1.0
