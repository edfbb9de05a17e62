"""Tests for patchswarm.agent.normalise: which candidate patches count as the same fix."""

from __future__ import annotations

import pytest

from patchswarm.agent.edits import make_diff, parse_edits
from patchswarm.agent.normalise import (
    EMPTY_PATCH_KEY,
    group_by_key,
    normalise_python,
    normalise_text,
    patch_key,
)

ORIGINAL = '''"""Inventory helpers."""


def reorder(stock, threshold):
    """Items whose stock is below the threshold."""
    low = []
    for name, count in stock.items():
        if count < threshold:
            low.append(name)
    return low
'''
FILES = {"inventory.py": ORIGINAL, "README.md": "# Inventory\n\nSome docs.\n"}

# The reference fix: "below or at" the threshold.
FIX = ORIGINAL.replace("count < threshold", "count <= threshold")


def _key(new_source: str, path: str = "inventory.py") -> str:
    return patch_key(make_diff(FILES, {**FILES, path: new_source}), FILES)


# ---------------------------------------------------------------------------------------------
# normalise_python


def test_normalise_python_drops_docstrings_comments_and_layout() -> None:
    source = '''"""Module doc."""
import os  # comment


class A:
    """Class doc."""

    def f(self, x):  # trailing comment
        """Method doc."""
        # a comment line
        return (x+1)


async def g():
    """Only a docstring."""
'''
    assert normalise_python(source) == (
        "import os\n\nclass A:\n\n    def f(self, x):\n        return x + 1\n\n"
        "async def g():\n    pass"
    )


def test_normalise_python_keeps_non_docstring_strings() -> None:
    source = 'x = 1\n"not a docstring"\n\ndef f():\n    y = "doc?"\n    return y\n'
    assert '"not a docstring"' in normalise_python(source).replace("'", '"')
    assert "doc?" in normalise_python(source)


def test_normalise_python_syntax_error_fallback() -> None:
    broken = "def f(:\n    return 1   \n\n    # comment\n"
    assert normalise_python(broken) == "SYNTAX-ERROR:\ndef f(:\n    return 1"
    assert normalise_python("x = 1\x00\n").startswith("SYNTAX-ERROR:")


def test_normalise_text() -> None:
    text = "a  \r\n\r\n  # kept\n\tb\t\n"
    assert normalise_text(text) == "a\n  # kept\n\tb"
    assert normalise_text(text, drop_hash_comments=True) == "a\n\tb"


# ---------------------------------------------------------------------------------------------
# patch_key: what merges


@pytest.mark.parametrize(
    "variant",
    [
        # the same fix with an added comment
        FIX.replace(
            "        if count <= threshold:",
            "        # include the threshold itself\n        if count <= threshold:",
        ),
        # the same fix with a reworded docstring
        FIX.replace("Items whose stock is below the threshold.", "Items at or below threshold."),
        # the same fix, reformatted (spacing, parentheses, blank lines, quotes)
        FIX.replace("if count <= threshold:", "if (count<=threshold) :")
        .replace("low = []", "low = [\n    ]")
        .replace('"""Inventory helpers."""\n\n\n', "'''Inventory helpers.'''\n"),
        # the same fix with trailing whitespace and CRLF line endings
        FIX.replace("\n", "  \r\n"),
    ],
    ids=["comment", "docstring", "reformat", "whitespace"],
)
def test_cosmetic_variants_merge(variant: str) -> None:
    assert _key(variant) == _key(FIX)


def test_same_fix_in_three_edit_formats_merges() -> None:
    sr = (
        "inventory.py\n<<<<<<< SEARCH\n        if count < threshold:\n=======\n"
        "        if count <= threshold:  # inclusive\n>>>>>>> REPLACE\n"
    )
    whole = f"```python\n# file: inventory.py\n{FIX}```"
    udiff = (
        "```diff\n--- a/inventory.py\n+++ b/inventory.py\n@@ -99,3 +99,3 @@\n"
        "     for name, count in stock.items():\n-        if count < threshold:\n"
        "+        if count <= threshold:\n             low.append(name)\n```"
    )
    patches = [parse_edits(text, FILES).patch for text in (sr, whole, udiff)]
    assert all(patches)
    assert len({patch_key(p or "", FILES) for p in patches}) == 1


def test_change_that_is_only_cosmetic_gets_the_empty_key() -> None:
    cosmetic = ORIGINAL.replace("    low = []", "    low = []  # collected names")
    assert _key(cosmetic) == EMPTY_PATCH_KEY
    assert patch_key("", FILES) == EMPTY_PATCH_KEY
    assert patch_key("", {}) == EMPTY_PATCH_KEY
    readme = _key("# Inventory  \n\n\nSome docs.\n", path="README.md")
    assert readme == EMPTY_PATCH_KEY


def test_cosmetic_change_in_other_file_is_ignored() -> None:
    both = {**FILES, "inventory.py": FIX, "README.md": "# Inventory\nSome docs.   \n"}
    assert patch_key(make_diff(FILES, both), FILES) == _key(FIX)


# ---------------------------------------------------------------------------------------------
# patch_key: what must not merge


@pytest.mark.parametrize(
    "other",
    [
        # renamed variable
        FIX.replace("low", "below"),
        # different logic
        ORIGINAL.replace("count < threshold", "count < threshold + 1"),
        ORIGINAL.replace("count < threshold", "threshold >= count"),
        # different string literal
        FIX.replace("low.append(name)", "low.append(name.strip())"),
        # the fix plus an unrelated real change
        FIX.replace("return low", "return sorted(low)"),
    ],
    ids=["rename", "logic-plus-one", "logic-flipped", "literal", "extra-change"],
)
def test_semantic_differences_do_not_merge(other: str) -> None:
    assert _key(other) != _key(FIX)
    assert _key(other) != EMPTY_PATCH_KEY


def test_broken_candidate_never_merges_with_good_one() -> None:
    broken = FIX.replace("if count <= threshold:", "if count <= threshold")
    assert _key(broken) != _key(FIX)
    # ... but two broken candidates that differ only in comments/whitespace do merge
    broken_commented = broken.replace("    low = []", "    # names\n    low = []   \n\n")
    assert _key(broken_commented) == _key(broken)


def test_deleted_and_emptied_and_created_files_are_distinct() -> None:
    deleted = patch_key(make_diff(FILES, {"inventory.py": ORIGINAL}), FILES)
    emptied = _key("", path="README.md")
    created = patch_key(make_diff(FILES, {**FILES, "extra.py": "x = 1\n"}), FILES)
    created_fmt = patch_key(make_diff(FILES, {**FILES, "extra.py": "x=1  # one\n"}), FILES)
    assert len({deleted, emptied, created, EMPTY_PATCH_KEY}) == 4
    assert created == created_fmt


def test_unappliable_patch_is_keyed_on_its_text() -> None:
    stale = make_diff({"inventory.py": "something else\n"}, {"inventory.py": "x\n"})
    respaced = stale.replace("\n", "   \n").replace("+x", "\n+x")
    assert patch_key(stale, FILES) == patch_key(respaced, FILES)
    assert patch_key(stale, FILES) != EMPTY_PATCH_KEY
    assert patch_key("not a diff at all", FILES) != patch_key(stale, FILES)
    other = make_diff({"inventory.py": "something else\n"}, {"inventory.py": "y\n"})
    assert patch_key(other, FILES) != patch_key(stale, FILES)


def test_patch_key_is_a_sha256_hex() -> None:
    key = _key(FIX)
    assert len(key) == 64 and int(key, 16) >= 0


# ---------------------------------------------------------------------------------------------
# group_by_key


def test_group_by_key_keeps_first_seen_order() -> None:
    items = ["b1", "a1", "b2", "c1", "a2"]
    groups = group_by_key(items, key=lambda s: s[0])
    assert list(groups) == ["b", "a", "c"]
    assert groups == {"b": ["b1", "b2"], "a": ["a1", "a2"], "c": ["c1"]}
    assert group_by_key([], key=str) == {}


def test_group_candidates_by_patch_key() -> None:
    candidates = [
        FIX,
        FIX.replace("if count <= threshold:", "if count <= threshold:  # inclusive"),
        FIX.replace("low", "below"),
        ORIGINAL.replace("    low = []", "    low = []  # names"),
        FIX.replace("Items whose", "The items whose"),
    ]
    patches = [make_diff(FILES, {**FILES, "inventory.py": c}) for c in candidates]
    groups = group_by_key(patches, key=lambda p: patch_key(p, FILES))
    assert [len(g) for g in groups.values()] == [3, 1, 1]
    assert list(groups.values())[0] == [patches[0], patches[1], patches[4]]
    assert EMPTY_PATCH_KEY in groups and groups[EMPTY_PATCH_KEY] == [patches[3]]
