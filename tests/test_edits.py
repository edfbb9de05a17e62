"""Tests for patchswarm.agent.edits: parsing messy model answers into clean diffs."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from patchswarm.agent.edits import (
    FORMATS,
    EditResult,
    apply_patch_to_files,
    format_instructions,
    make_diff,
    parse_edits,
)

CALC = '''"""Tiny calculator."""


def add(a, b):
    return a - b


def mul(a, b):
    total = 0
    for _ in range(b):
        total += a
    return total
'''

CALC_FIXED = CALC.replace("return a - b", "return a + b")

STATS = """def mean(xs):
    if not xs:
        return 0
    return sum(xs) / len(xs) + 1


def median(xs):
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid]
"""

UTIL = """def clamp(x, lo, hi):
    return max(lo, min(x, lo))
"""

ONE = {"calc.py": CALC}
TWO = {"pkg/stats.py": STATS, "pkg/util.py": UTIL}


def _sr(path: str, search: str, replace: str) -> str:
    """An aider-style SEARCH/REPLACE block."""
    return f"{path}\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"


SR_FIX = _sr("calc.py", "    return a - b\n", "    return a + b\n")


def _fixed(result: EditResult, path: str = "calc.py") -> str:
    assert result.error is None, result.error
    assert result.patch is not None
    return result.new_files[path]


# ---------------------------------------------------------------------------------------------
# git helpers


needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")


def _git_repo(tmp_path: Path, files: dict[str, str]) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    for path, content in files.items():
        target = repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode("utf-8"))
    return repo


def _git_apply(repo: Path, patch: str, *, check_only: bool) -> subprocess.CompletedProcess:
    (repo.parent / "change.patch").write_bytes(patch.encode("utf-8"))
    args = ["git", "apply", "--whitespace=nowarn"]
    if check_only:
        args.append("--check")
    return subprocess.run(
        [*args, str(repo.parent / "change.patch")], cwd=repo, capture_output=True, text=True
    )


def _read_tree(repo: Path) -> dict[str, str]:
    out = {}
    for p in repo.rglob("*"):
        if p.is_file() and ".git" not in p.relative_to(repo).parts:
            out[p.relative_to(repo).as_posix()] = p.read_bytes().decode("utf-8")
    return out


# ---------------------------------------------------------------------------------------------
# format_instructions


def test_format_instructions_cover_every_format() -> None:
    assert FORMATS == ("search_replace", "whole_file", "udiff")
    sr = format_instructions("search_replace")
    assert "<<<<<<< SEARCH" in sr and "=======" in sr and ">>>>>>> REPLACE" in sr
    assert "```python" in format_instructions("whole_file")
    ud = format_instructions("udiff")
    assert "```diff" in ud and "--- a/" in ud and "+++ b/" in ud and "@@" in ud
    with pytest.raises(ValueError):
        format_instructions("json")


@pytest.mark.parametrize("fmt", FORMATS)
def test_instruction_example_is_parseable(fmt: str) -> None:
    """The example inside each instruction must itself be accepted by the parser."""
    text = format_instructions(fmt)
    if fmt == "search_replace":
        files = {"path/to/file.py": "the existing lines to find, copied exactly from the file\n"}
    elif fmt == "udiff":
        files = {
            "path/to/file.py": "an unchanged line, for context\na line to remove\n"
            "an unchanged line, for context\n"
        }
    else:
        files = {"path/to/file.py": "old\n"}
    result = parse_edits(text, files, fmt)
    assert result.error is None and result.fmt == fmt


# ---------------------------------------------------------------------------------------------
# search/replace


def test_sr_path_line_before_fence_with_prose() -> None:
    text = """The subtraction should be an addition. Here is the fix:

calc.py
```python
<<<<<<< SEARCH
    return a - b
=======
    return a + b
>>>>>>> REPLACE
```

This makes `add(2, 3)` return 5.
"""
    result = parse_edits(text, ONE)
    assert result.fmt == "search_replace"
    assert _fixed(result) == CALC_FIXED


@pytest.mark.parametrize(
    "path_line",
    ["# file: calc.py", "File: calc.py", "**calc.py**", "`calc.py`", "### calc.py", "./calc.py:"],
)
def test_sr_path_spellings_inside_untagged_fence(path_line: str) -> None:
    text = f"""```
{path_line}
<<<<<<< SEARCH
    return a - b
=======
    return a + b
>>>>>>> REPLACE
```"""
    assert _fixed(parse_edits(text, ONE, "search_replace")) == CALC_FIXED


def test_sr_path_after_language_in_fence_and_multiple_files() -> None:
    text = """Two bugs:

```python pkg/stats.py
<<<<<<< SEARCH
    return sum(xs) / len(xs) + 1
=======
    return sum(xs) / len(xs)
>>>>>>> REPLACE
```

```python:pkg/util.py
<<<<<<< SEARCH
    return max(lo, min(x, lo))
=======
    return max(lo, min(x, hi))
>>>>>>> REPLACE
```
"""
    result = parse_edits(text, TWO)
    assert result.error is None
    assert "return sum(xs) / len(xs)\n" in result.new_files["pkg/stats.py"]
    assert "min(x, hi)" in result.new_files["pkg/util.py"]
    assert result.patch is not None
    assert result.patch.count("diff --git") == 2


def test_sr_following_blocks_inherit_path_and_mentions_resolve() -> None:
    text = """In `stats.py`, fix the mean:
<<<<<<< SEARCH
    return sum(xs) / len(xs) + 1
=======
    return sum(xs) / len(xs)
>>>>>>> REPLACE
and the median for even lengths:
<<<<<<< SEARCH
    return xs[mid]
=======
    if len(xs) % 2 == 0:
        return (xs[mid - 1] + xs[mid]) / 2
    return xs[mid]
>>>>>>> REPLACE
"""
    new = _fixed(parse_edits(text, TWO), "pkg/stats.py")
    assert "return sum(xs) / len(xs)\n" in new
    assert "        return (xs[mid - 1] + xs[mid]) / 2\n" in new
    assert parse_edits(text, TWO).new_files["pkg/util.py"] == UTIL


def test_sr_crlf_output() -> None:
    text = SR_FIX.replace("\n", "\r\n")
    assert _fixed(parse_edits(text, ONE)) == CALC_FIXED


def test_sr_trailing_whitespace_difference() -> None:
    search = "def add(a, b):   \n    return a - b \n"
    text = _sr("calc.py", search, "def add(a, b):\n    return a + b\n")
    assert _fixed(parse_edits(text, ONE)) == CALC_FIXED


def test_sr_flattened_indentation_is_restored() -> None:
    text = """calc.py
<<<<<<< SEARCH
def mul(a, b):
total = 0
for _ in range(b):
total += a
return total
=======
def mul(a, b):
total = 0
for _ in range(abs(b)):
total += a
return total if b >= 0 else -total
>>>>>>> REPLACE
"""
    new = _fixed(parse_edits(text, ONE))
    assert "    for _ in range(abs(b)):\n        total += a\n" in new
    assert "    return total if b >= 0 else -total\n" in new


def test_sr_consistently_over_indented_block_is_shifted() -> None:
    text = """calc.py
<<<<<<< SEARCH
        def add(a, b):
            return a - b
=======
        def add(a, b):
            # was a subtraction
            return a + b
>>>>>>> REPLACE
"""
    new = _fixed(parse_edits(text, ONE))
    assert "def add(a, b):\n    # was a subtraction\n    return a + b\n" in new


def test_sr_added_nesting_is_kept_when_search_indent_is_consistent() -> None:
    text = """calc.py
<<<<<<< SEARCH
total = 0
for _ in range(b):
    total += a
=======
total = 0
if b < 0:
    a, b = -a, -b
for _ in range(b):
    total += a
>>>>>>> REPLACE
"""
    new = _fixed(parse_edits(text, ONE))
    assert "    if b < 0:\n        a, b = -a, -b\n    for _ in range(b):\n" in new


def test_sr_fuzzy_match_on_spacing() -> None:
    text = """calc.py
<<<<<<< SEARCH
def add(a,b):
    return a-b
=======
def add(a, b):
    return a + b
>>>>>>> REPLACE
"""
    assert _fixed(parse_edits(text, ONE)) == CALC_FIXED


def test_sr_missing_blank_line_between_functions() -> None:
    text = """calc.py
<<<<<<< SEARCH
    return a - b
def mul(a, b):
=======
    return a + b


def mul(a, b):
>>>>>>> REPLACE
"""
    assert _fixed(parse_edits(text, ONE)) == CALC_FIXED


def test_sr_without_path_single_file_and_old_markers() -> None:
    text = """<<<<<<< ORIGINAL
    return a - b
=======
    return a + b
>>>>>>> UPDATED"""
    assert _fixed(parse_edits(text, ONE)) == CALC_FIXED


def test_sr_repeated_identical_block_is_applied_once() -> None:
    assert _fixed(parse_edits(SR_FIX + "\nAgain:\n" + SR_FIX, ONE)) == CALC_FIXED


def test_sr_empty_search_creates_new_file() -> None:
    text = """tests/test_calc.py
<<<<<<< SEARCH
=======
from calc import add


def test_add():
    assert add(2, 3) == 5
>>>>>>> REPLACE

calc.py
<<<<<<< SEARCH
    return a - b
=======
    return a + b
>>>>>>> REPLACE
"""
    result = parse_edits(text, ONE)
    assert result.error is None and result.patch is not None
    assert result.new_files["tests/test_calc.py"].startswith("from calc import add\n")
    assert "--- /dev/null\n+++ b/tests/test_calc.py\n" in result.patch


@pytest.mark.parametrize(
    ("text", "files", "error"),
    [
        (
            "calc.py\n<<<<<<< SEARCH\n    return a ** b\n=======\n    return a + b\n"
            ">>>>>>> REPLACE\n",
            ONE,
            "search text not found in calc.py",
        ),
        (
            "<<<<<<< SEARCH\n    return xs[mid]\n=======\n    return xs[mid - 1]\n"
            ">>>>>>> REPLACE\n",
            TWO,
            "no file path for SEARCH/REPLACE block",
        ),
        (
            "calc.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n",
            ONE,
            "malformed SEARCH/REPLACE block (missing >>>>>>> REPLACE)",
        ),
        (
            "calc.py\n<<<<<<< SEARCH\n    return a - b\n>>>>>>> REPLACE\n",
            ONE,
            "malformed SEARCH/REPLACE block (missing =======)",
        ),
        (
            "calc.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a - b\n"
            ">>>>>>> REPLACE\n",
            ONE,
            "edit changes nothing",
        ),
        (
            "other.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n"
            ">>>>>>> REPLACE\n",
            TWO,
            "unknown file other.py",
        ),
        (
            "../evil.py\n<<<<<<< SEARCH\n=======\nimport os\n>>>>>>> REPLACE\n",
            ONE,
            "refusing to create file ../evil.py",
        ),
    ],
    ids=["not-found", "no-path", "truncated", "no-divider", "no-op", "unknown-file", "escape"],
)
def test_sr_failures(text: str, files: dict[str, str], error: str) -> None:
    result = parse_edits(text, files)
    assert result == EditResult(None, error, {})


def test_sr_ambiguous_fuzzy_match_is_rejected() -> None:
    files = {"m.py": "def f():\n    return x + 1\n\n\ndef g():\n    return x + 1\n"}
    text = "m.py\n<<<<<<< SEARCH\n  return  x + 1 \n=======\n  return x + 2\n>>>>>>> REPLACE\n"
    # Whitespace-insensitively both returns match: two places and nothing to choose between
    # them, so the block is refused rather than applied to the first one.
    assert parse_edits(text, files).error == "search text is ambiguous in m.py"
    for search in ("return x+1", "return x + 9"):
        text = f"m.py\n<<<<<<< SEARCH\n    {search}\n=======\n    return 2\n>>>>>>> REPLACE\n"
        assert parse_edits(text, files).error == "search text is ambiguous in m.py"


# ---------------------------------------------------------------------------------------------
# whole file


def test_whole_file_with_path_line_and_crlf() -> None:
    text = f"Fixed version:\n\ncalc.py\n```python\n{CALC_FIXED}```\nDone.".replace("\n", "\r\n")
    result = parse_edits(text, ONE)
    assert result.fmt == "whole_file"
    assert _fixed(result) == CALC_FIXED


def test_whole_file_without_path_or_language_single_file() -> None:
    text = f"The sign in add is wrong.\n\n```\n{CALC_FIXED}```\n"
    assert _fixed(parse_edits(text, ONE, "whole_file")) == CALC_FIXED


def test_whole_file_picks_the_block_that_looks_like_the_file() -> None:
    text = f"```python\n{CALC_FIXED}```\n\nUsage:\n\n```python\nprint(add(2, 3))\n```\n"
    assert _fixed(parse_edits(text, ONE)) == CALC_FIXED


def test_whole_file_header_comment_is_stripped() -> None:
    text = f"```python\n# file: calc.py\n{CALC_FIXED}```"
    assert _fixed(parse_edits(text, ONE)) == CALC_FIXED


def test_whole_file_path_in_fence_info_and_tilde_fence() -> None:
    text = f"~~~python calc.py\n{CALC_FIXED}~~~\n"
    assert _fixed(parse_edits(text, ONE)) == CALC_FIXED


def test_whole_file_keeps_missing_trailing_newline() -> None:
    files = {"calc.py": CALC.rstrip("\n")}
    text = f"calc.py\n```python\n{CALC_FIXED}```"
    result = parse_edits(text, files)
    assert _fixed(result) == CALC_FIXED.rstrip("\n")
    assert result.patch is not None and "No newline" not in result.patch


def test_whole_file_several_files_with_heading_paths() -> None:
    fixed_stats = STATS.replace(" + 1\n", "\n")
    fixed_util = UTIL.replace("min(x, lo)", "min(x, hi)")
    text = (
        f"### pkg/stats.py\n```python\n{fixed_stats}```\n\n"
        f"### `pkg/util.py`\n```python\n{fixed_util}```\n"
    )
    result = parse_edits(text, TWO)
    assert result.error is None
    assert result.new_files == {"pkg/stats.py": fixed_stats, "pkg/util.py": fixed_util}


def test_whole_file_creates_new_file_with_explicit_path() -> None:
    text = f"calc.py\n```python\n{CALC_FIXED}```\n\nnew_test.py\n```python\nassert True\n```\n"
    result = parse_edits(text, ONE)
    assert result.error is None and result.patch is not None
    assert result.new_files["new_test.py"] == "assert True\n"
    assert "new file mode 100644\n--- /dev/null\n+++ b/new_test.py\n" in result.patch


def test_whole_file_windows_and_prefixed_paths_resolve() -> None:
    fixed = UTIL.replace("min(x, lo)", "min(x, hi)")
    for name in ("pkg\\util.py", "src/pkg/util.py", "util.py"):
        result = parse_edits(f"{name}\n```python\n{fixed}```", TWO)
        assert result.new_files.get("pkg/util.py") == fixed, name


@pytest.mark.parametrize(
    ("text", "files", "error"),
    [
        (
            "calc.py\n```python\ndef add(a, b):\n    return a + b\n\n"
            "# ... rest of the code unchanged\n```",
            ONE,
            "whole-file answer for calc.py elides code ('# ... rest of the code unchanged')",
        ),
        ("```python\nprint(add(2, 3))\n```", ONE, "code block does not look like calc.py"),
        (f"```python\n{STATS}```", TWO, "no file path for code block"),
        (f"calc.py\n```python\n{CALC_FIXED}", ONE, "unterminated code block"),
        (f"calc.py\n```python\n{CALC}```", ONE, "edit changes nothing"),
        ("../outside.py\n```\nimport os\n```", ONE, "refusing to create file ../outside.py"),
    ],
    ids=["elided", "snippet", "ambiguous-path", "unterminated", "no-op", "absolute-path"],
)
def test_whole_file_failures(text: str, files: dict[str, str], error: str) -> None:
    assert parse_edits(text, files, "whole_file") == EditResult(None, error, {})


# ---------------------------------------------------------------------------------------------
# udiff


def test_udiff_with_wrong_line_numbers_is_repaired() -> None:
    text = """```diff
--- a/calc.py
+++ b/calc.py
@@ -40,4 +40,4 @@
 def add(a, b):
-    return a - b
+    return a + b
 
```"""
    result = parse_edits(text, ONE)
    assert result.fmt == "udiff"
    assert _fixed(result) == CALC_FIXED
    assert "@@ -2,7 +2,7 @@" in (result.patch or "")


def test_udiff_without_file_headers_or_numbers() -> None:
    text = """Apply this:
```diff
@@ ... @@
 def add(a, b):
-    return a - b
+    return a + b
```"""
    assert _fixed(parse_edits(text, ONE, "udiff")) == CALC_FIXED


def test_udiff_unfenced_with_prose_and_timestamps() -> None:
    text = """Here's a patch:

--- calc.py\t2024-05-01 10:00:00.000000000 +0000
+++ calc.py\t2024-05-01 10:01:00.000000000 +0000
@@ -4,2 +4,2 @@
 def add(a, b):
-    return a - b
+    return a + b

That's it, the rest stays the same.
"""
    assert _fixed(parse_edits(text, ONE)) == CALC_FIXED


def test_udiff_blank_context_lines_without_leading_space() -> None:
    text = """```diff
--- a/calc.py
+++ b/calc.py
@@ -5,5 +5,5 @@
-    return a - b
+    return a + b


 def mul(a, b):
```"""
    assert _fixed(parse_edits(text, ONE)) == CALC_FIXED


def test_udiff_git_style_with_index_and_several_files() -> None:
    text = """```diff
diff --git a/pkg/stats.py b/pkg/stats.py
index 3b18e51..a9c1f02 100644
--- a/pkg/stats.py
+++ b/pkg/stats.py
@@ -1,4 +1,4 @@
 def mean(xs):
     if not xs:
         return 0
-    return sum(xs) / len(xs) + 1
+    return sum(xs) / len(xs)
diff --git a/pkg/util.py b/pkg/util.py
--- a/pkg/util.py
+++ b/pkg/util.py
@@ -1,2 +1,2 @@
 def clamp(x, lo, hi):
-    return max(lo, min(x, lo))
+    return max(lo, min(x, hi))
```"""
    result = parse_edits(text, TWO)
    assert result.error is None
    assert result.new_files["pkg/util.py"] == UTIL.replace("min(x, lo)", "min(x, hi)")
    assert result.new_files["pkg/stats.py"] == STATS.replace(" + 1\n", "\n")


def test_udiff_line_numbers_break_ties_between_equal_contexts() -> None:
    original = "def f():\n    return 1\n\n\ndef g():\n    return 1\n"
    text = """```diff
--- a/m.py
+++ b/m.py
@@ -6,1 +6,1 @@
-    return 1
+    return 2
```"""
    result = parse_edits(text, {"m.py": original})
    assert result.new_files["m.py"] == "def f():\n    return 1\n\n\ndef g():\n    return 2\n"


def test_udiff_creates_new_file() -> None:
    text = """```diff
--- /dev/null
+++ b/tests/test_add.py
@@ -0,0 +1,2 @@
+from calc import add
+assert add(1, 1) == 2
```"""
    result = parse_edits(text, ONE)
    assert result.error is None
    assert result.new_files["tests/test_add.py"] == "from calc import add\nassert add(1, 1) == 2\n"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "```diff\n--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def sub(a, b):\n"
            "-    return a ^ b\n+    return a - b\n```",
            "hunk context not found in calc.py",
        ),
        (
            "```diff\n--- a/nope.py\n+++ b/nope.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n```",
            "unknown file nope.py",
        ),
    ],
    ids=["context-not-found", "unknown-file"],
)
def test_udiff_failures(text: str, error: str) -> None:
    assert parse_edits(text, ONE) == EditResult(None, error, {})


# ---------------------------------------------------------------------------------------------
# auto mode, robustness, line endings


def test_auto_reports_no_edit_for_plain_prose() -> None:
    assert parse_edits("The code looks correct to me.", ONE) == EditResult(
        None, "no edit block found", {}
    )


def test_auto_prefers_the_error_of_the_recognised_format() -> None:
    text = "```\n" + _sr("calc.py", "    return a ** b\n", "    return a + b\n") + "```"
    assert parse_edits(text, ONE).error == "search text not found in calc.py"


def test_crlf_original_keeps_crlf() -> None:
    files = {"calc.py": CALC.replace("\n", "\r\n")}
    text = "calc.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n>>>>>>> REPLACE\n"
    result = parse_edits(text, files)
    assert result.new_files["calc.py"] == CALC_FIXED.replace("\n", "\r\n")
    assert apply_patch_to_files(result.patch or "", files) == result.new_files


def test_unknown_format_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        parse_edits("", ONE, "json")


def test_never_raises_on_garbage() -> None:
    rng = random.Random(1234)
    pieces = [
        "<<<<<<< SEARCH",
        "=======",
        ">>>>>>> REPLACE",
        "```",
        "```python",
        "```diff",
        "--- a/calc.py",
        "+++ b/calc.py",
        "@@ -1 +1 @@",
        "@@",
        "-    return a - b",
        "+x",
        " def add(a, b):",
        "calc.py",
        "\\ No newline at end of file",
        "",
        "~~~",
        "\t",
        "\r",
        "# file: ../x.py",
        "--- /dev/null",
        "+++ /dev/null",
        "diff --git a/x b/x",
        "\x00",
    ]
    for _ in range(400):
        text = "\n".join(rng.choice(pieces) for _ in range(rng.randint(0, 25)))
        for fmt in ("auto", *FORMATS):
            result = parse_edits(text, ONE | TWO, fmt)
            assert (result.patch is None) != (result.error is None)
            if result.patch is not None:
                assert apply_patch_to_files(result.patch, ONE | TWO) == result.new_files


# ---------------------------------------------------------------------------------------------
# make_diff / apply_patch_to_files


DIFF_CASES = {
    "modify": ({"calc.py": CALC}, {"calc.py": CALC_FIXED}),
    "add-eof-newline": ({"a.txt": "x\ny"}, {"a.txt": "x\ny\n"}),
    "drop-eof-newline": ({"a.txt": "x\ny\n"}, {"a.txt": "x\ny"}),
    "both-without-eof-newline": (
        {"a.txt": "1\n2\n3\n4\n5\nlast"},
        {"a.txt": "1\nTWO\n3\n4\n5\nlast"},
    ),
    "create": ({}, {"pkg/new.py": "print('hi')\n"}),
    "create-without-newline": ({}, {"n.txt": "no newline"}),
    "create-empty": ({}, {"empty.txt": ""}),
    "delete": ({"old.py": "x = 1\n", "keep.py": "y\n"}, {"keep.py": "y\n"}),
    "delete-empty": ({"empty.txt": "", "keep.py": "y\n"}, {"keep.py": "y\n"}),
    "empty-out": ({"a.txt": "a\nb\n"}, {"a.txt": ""}),
    "fill-empty": ({"a.txt": ""}, {"a.txt": "a\n"}),
    "multi": (dict(TWO), {"pkg/stats.py": STATS.replace(" + 1", ""), "pkg/util.py": "pass\n"}),
    "crlf": ({"w.py": "a = 1\r\nb = 2\r\n"}, {"w.py": "a = 1\r\nb = 3\r\n"}),
    "form-feed": ({"f.py": "x = 1\n\x0c\ny = 2\n"}, {"f.py": "x = 1\n\x0c\ny = 3\n"}),
    "far-apart-hunks": (
        {"big.py": "".join(f"line{i}\n" for i in range(40))},
        {
            "big.py": "".join(f"line{i}\n" for i in range(40))
            .replace("line3\n", "L3\n")
            .replace("line35\n", "L35\n")
        },
    ),
}


@pytest.mark.parametrize("case", sorted(DIFF_CASES))
def test_make_diff_round_trips(case: str) -> None:
    old, new = DIFF_CASES[case]
    patch = make_diff(old, new)
    assert patch.startswith("diff --git ")
    assert apply_patch_to_files(patch, old) == new


@needs_git
@pytest.mark.parametrize("case", sorted(DIFF_CASES))
def test_make_diff_is_accepted_by_git_apply(case: str, tmp_path: Path) -> None:
    old, new = DIFF_CASES[case]
    repo = _git_repo(tmp_path, old)
    patch = make_diff(old, new)
    check = _git_apply(repo, patch, check_only=True)
    assert check.returncode == 0, check.stderr + patch
    applied = _git_apply(repo, patch, check_only=False)
    assert applied.returncode == 0, applied.stderr
    assert _read_tree(repo) == new


def test_make_diff_format_details() -> None:
    assert make_diff(ONE, ONE) == ""
    patch = make_diff({"a.txt": "x\ny"}, {"a.txt": "x\nz"})
    assert patch == (
        "diff --git a/a.txt b/a.txt\n--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n x\n-y\n"
        "\\ No newline at end of file\n+z\n\\ No newline at end of file\n"
    )
    deleted = make_diff({"d.py": "x\n"}, {})
    assert deleted == (
        "diff --git a/d.py b/d.py\ndeleted file mode 100644\n--- a/d.py\n+++ /dev/null\n"
        "@@ -1 +0,0 @@\n-x\n"
    )


@needs_git
def test_parsed_patches_pass_git_apply_check(tmp_path: Path) -> None:
    answers = [
        (SR_FIX, ONE),
        (f"```python\n{CALC_FIXED}```", {"calc.py": CALC.rstrip("\n")}),
        (
            "```diff\n--- a/pkg/util.py\n+++ b/pkg/util.py\n@@ -9 +9 @@\n"
            "-    return max(lo, min(x, lo))\n+    return max(lo, min(x, hi))\n```",
            TWO,
        ),
    ]
    for i, (text, files) in enumerate(answers):
        result = parse_edits(text, files)
        assert result.patch is not None, result.error
        workdir = tmp_path / str(i)
        workdir.mkdir()
        repo = _git_repo(workdir, files)
        check = _git_apply(repo, result.patch, check_only=True)
        assert check.returncode == 0, check.stderr + result.patch


def test_apply_patch_rejects_mismatch_and_garbage() -> None:
    patch = make_diff(ONE, {"calc.py": CALC_FIXED})
    with pytest.raises(ValueError):
        apply_patch_to_files(patch, {"calc.py": CALC.replace("a - b", "a * b")})
    with pytest.raises(ValueError):
        apply_patch_to_files(patch, {})
    with pytest.raises(ValueError):
        apply_patch_to_files("this is not a diff\n", ONE)
    with pytest.raises(ValueError):
        apply_patch_to_files(make_diff({}, {"calc.py": "x\n"}), ONE)
    assert apply_patch_to_files("", ONE) == ONE


def test_apply_patch_does_not_mutate_input() -> None:
    files = dict(ONE)
    apply_patch_to_files(make_diff(ONE, {"calc.py": CALC_FIXED}), files)
    assert files == ONE


# --------------------------------------------------------------------------------------------
# Ambiguity rules, invented paths and refused new files (see agent/edits/matching.py, paths.py)

TWICE = "def f():\n    return x + 1\n\n\ndef g():\n    return x + 1\n"


def test_sr_text_found_twice_is_ambiguous_unless_context_makes_it_unique() -> None:
    files = {"m.py": TWICE}
    one_line = ("m.py\n<<<<<<< SEARCH\n    return x + 1\n=======\n    return x + 2\n"
                ">>>>>>> REPLACE\n")
    result = parse_edits(one_line, files)
    assert result.patch is None and result.error == "search text is ambiguous in m.py"
    with_context = ("m.py\n<<<<<<< SEARCH\ndef g():\n    return x + 1\n=======\n"
                    "def g():\n    return x + 2\n>>>>>>> REPLACE\n")
    result = parse_edits(with_context, files)
    assert result.new_files["m.py"] == TWICE.replace("def g():\n    return x + 1",
                                                     "def g():\n    return x + 2")


def test_udiff_line_number_picks_the_nearest_of_equal_places() -> None:
    files = {"m.py": TWICE}
    second = ("```diff\n--- a/m.py\n+++ b/m.py\n@@ -6,1 +6,1 @@\n-    return x + 1\n"
              "+    return x + 2\n```")
    assert parse_edits(second, files).new_files["m.py"].endswith("def g():\n    return x + 2\n")
    first = second.replace("@@ -6,1 +6,1 @@", "@@ -1,2 +1,2 @@")
    assert parse_edits(first, files).new_files["m.py"].startswith("def f():\n    return x + 2\n")


def test_udiff_equally_near_places_or_no_line_number_are_ambiguous() -> None:
    files = {"m.py": TWICE}
    # The two returns are lines 2 and 6; a hunk said to start at line 4 is as near to both.
    between = ("```diff\n--- a/m.py\n+++ b/m.py\n@@ -4,1 +4,1 @@\n-    return x + 1\n"
               "+    return 2\n```")
    assert parse_edits(between, files).error == "hunk context is ambiguous in m.py"
    bare = between.replace("@@ -4,1 +4,1 @@", "@@ @@")
    assert parse_edits(bare, files).error == "hunk context is ambiguous in m.py"


PARSE = "def parse(s):\n    return s.split(',')\n"
PARSE_FIXED = "def parse(s):\n    return [x.strip() for x in s.split(',')]\n"


def _answers(path: str) -> dict[str, str]:
    return {
        "search_replace": (f"{path}\n<<<<<<< SEARCH\n    return s.split(',')\n=======\n"
                           "    return [x.strip() for x in s.split(',')]\n>>>>>>> REPLACE\n"),
        "whole_file": f"{path}\n```python\n{PARSE_FIXED}```\n",
        "udiff": (f"```diff\n--- a/{path}\n+++ b/{path}\n@@ -1,2 +1,2 @@\n def parse(s):\n"
                  "-    return s.split(',')\n+    return [x.strip() for x in s.split(',')]\n```\n"),
    }


@pytest.mark.parametrize("invented", ["path/to/parse.py", "src/parse.py", "a/parse.py"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_invented_path_maps_to_the_one_shown_file_of_that_name(invented: str, fmt: str) -> None:
    files = {"pkg/csvtools/parse.py": PARSE, "pkg/csvtools/write.py": "def write():\n    pass\n"}
    result = parse_edits(_answers(invented)[fmt], files, fmt)
    assert result.error is None
    assert set(result.new_files) == set(files)
    assert result.new_files["pkg/csvtools/parse.py"] == PARSE_FIXED


@pytest.mark.parametrize("fmt", FORMATS)
def test_invented_path_is_never_guessed_between_two_shown_files_of_that_name(fmt: str) -> None:
    files = {"pkg/parse.py": PARSE, "lib/parse.py": PARSE}
    result = parse_edits(_answers("src/parse.py")[fmt], files, fmt)
    assert result.patch is None and not result.new_files
    assert result.error == "file path src/parse.py could name any of lib/parse.py, pkg/parse.py"


def test_a_new_file_at_the_placeholder_path_is_refused() -> None:
    files = {"calc.py": CALC}
    text = "path/to/helpers.py\n```python\ndef helper():\n    return 1\n```\n"
    result = parse_edits(text, files, "whole_file")
    assert result.patch is None
    assert result.error == "refusing to create file path/to/helpers.py (a placeholder path)"
    # A real new path is still created.
    ok = parse_edits(text.replace("path/to/", "calc_"), files, "whole_file")
    assert ok.error is None and "calc_helpers.py" in ok.new_files


def test_elided_whole_file_answer_is_refused_and_deletes_nothing() -> None:
    files = {"calc.py": CALC}
    text = ("calc.py\n```python\n\"\"\"Tiny calculator.\"\"\"\n\n\ndef add(a, b):\n"
            "    return a + b\n\n# ... rest unchanged\n```\n")
    result = parse_edits(text, files)
    assert result.patch is None and not result.new_files
    assert result.error == "whole-file answer for calc.py elides code ('# ... rest unchanged')"


def test_an_answer_in_another_marked_format_than_asked_is_taken() -> None:
    files = {"calc.py": CALC}
    text = ("calc.py\n<<<<<<< SEARCH\n    return a - b\n=======\n    return a + b\n"
            ">>>>>>> REPLACE\n")
    result = parse_edits(text, files, "whole_file")
    assert result.fmt == "search_replace" and result.new_files["calc.py"] == CALC_FIXED
    diff = make_diff(files, {"calc.py": CALC_FIXED})
    result = parse_edits(f"```diff\n{diff}```\n", files, "search_replace")
    assert result.fmt == "udiff" and result.new_files["calc.py"] == CALC_FIXED
    # Its own error is the one reported when the asked format's syntax is absent.
    missing = text.replace("    return a - b\n=", "    return a * 7\n=")
    assert parse_edits(missing, files, "whole_file").error == "search text not found in calc.py"
    # A fenced block is never taken as the whole file unless whole files were asked for.
    snippet = "calc.py\n```python\ndef add(a, b):\n    return a + b\n```\n"
    assert parse_edits(snippet, files, "search_replace").patch is None
    assert parse_edits(snippet, files, "udiff").patch is None
