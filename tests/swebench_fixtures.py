"""Three small repositories in the SWE-bench instance format, made by the tests themselves.

Each is a real git repository with a bug, an issue, a gold patch, a test patch that adds the
tests showing the fix, and FAIL_TO_PASS / PASS_TO_PASS lists (JSON-encoded, as in the real
data set):

- ``fixtures/calcpkg``: a package tested with pytest (``pytest -rA``), whose test patch both
  changes a test file and adds one with a parametrised test;
- ``fixtures/djangolike``: a Django-shaped repository whose ``tests/runtests.py`` prints what
  Django's runner prints at ``--verbosity 2`` (tests addressed by dotted module names; one test
  named by its docstring, as SWE-bench names such tests);
- ``fixtures/sympylike``: a SymPy-shaped repository with a ``bin/test`` printing SymPy's
  verbose lines, an XFAIL test among them.

``build(root)`` makes the repositories under ``root/repos`` (named ``owner__name``, as a
mirror folder holds them) and returns the instances, the specs file and wrong patches.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

SPECS = {
    "fixtures/calcpkg": {
        "1.0": {"python": "3.11", "test_cmd": "pytest -rA", "log_parser": "pytest"},
        # An install step that fails: the environment does not build.
        "broken": {"python": "3.11", "test_cmd": "pytest -rA", "log_parser": "pytest",
                   "install": "echo 'cannot install' && exit 7"},
        # Tests that hang: the evaluation times out.
        "slow": {"python": "3.11", "test_cmd": "pytest -rA", "log_parser": "pytest",
                 "test_timeout": 4},
    },
    "fixtures/djangolike": {
        "3.2": {"python": "3.11",
                "test_cmd": "./tests/runtests.py --verbosity 2 --settings=test_sqlite "
                            "--parallel 1",
                "log_parser": "django", "directives": "django"},
    },
    # Python 3.12 has no base image here: the run maps it to 3.11 and says so.
    "fixtures/sympylike": {
        "1.1": {"python": "3.12",
                "test_cmd": "PYTHONWARNINGS='ignore::UserWarning,ignore::SyntaxWarning' "
                            "bin/test -C --verbose",
                "log_parser": "sympy"},
    },
}


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env=env).stdout


def _d(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def _dedented(files: dict[str, str]) -> dict[str, str]:
    return {k: _d(v) for k, v in files.items()}


def write(repo: Path, files: dict[str, str], executable: tuple[str, ...] = ()) -> None:
    for path, text in files.items():
        p = repo / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(_d(text))
        if path in executable:
            p.chmod(0o755)


def diff_of(repo: Path, files: dict[str, str], executable: tuple[str, ...] = ()) -> str:
    """The diff that ``files`` would make on HEAD (the tree is left as it was)."""
    write(repo, files, executable)
    git(repo, "add", "-A")
    patch = git(repo, "diff", "--cached", "HEAD")
    git(repo, "reset", "-q", "--hard", "HEAD")
    git(repo, "clean", "-qfdx")
    return patch


@dataclass
class Fixture:
    instance: dict
    repo: Path
    wrong: str
    """A plausible patch that does not fix the issue."""
    repro: str
    """A reproduction test a model might write."""
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- calcpkg

CALC_BASE = _dedented({
    "README.md": "calcpkg: small statistics helpers.\n",
    "calcpkg/__init__.py": "",
    "calcpkg/stats.py": '''
        """Statistics helpers."""


        def total(xs):
            return sum(xs)


        def mean(xs):
            """The arithmetic mean of ``xs``."""
            return sum(xs) // len(xs)


        def spread(xs):
            return max(xs) - min(xs)
        ''',
    "calcpkg/format.py": '''
        def percent(x):
            return f"{100 * x:.1f}%"
        ''',
    "tests/test_stats.py": '''
        from calcpkg.stats import mean, spread, total


        def test_total():
            assert total([1, 2, 3]) == 6


        def test_mean_of_evens():
            assert mean([2, 4]) == 3


        def test_spread():
            assert spread([1, 5, 2]) == 4
        ''',
    "tests/test_format.py": '''
        from calcpkg.format import percent


        def test_percent():
            assert percent(0.5) == "50.0%"
        ''',
})


def calc(root: Path) -> Fixture:
    repo = root / "fixtures__calcpkg"
    repo.mkdir(parents=True)
    git(repo, "init", "-q")
    write(repo, CALC_BASE)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "calcpkg")
    base = git(repo, "rev-parse", "HEAD").strip()
    gold = diff_of(repo, {"calcpkg/stats.py": CALC_BASE["calcpkg/stats.py"].replace(
        "return sum(xs) // len(xs)", "return sum(xs) / len(xs)")})
    wrong = diff_of(repo, {"calcpkg/stats.py": CALC_BASE["calcpkg/stats.py"].replace(
        "return sum(xs) // len(xs)", "return round(sum(xs) / len(xs))")})
    test_patch = diff_of(repo, {
        "tests/test_stats.py": CALC_BASE["tests/test_stats.py"] + "\n\n" + _d('''
            def test_mean_fraction():
                assert mean([1, 2]) == 1.5
            '''),
        "tests/test_stats_extra.py": '''
            import pytest

            from calcpkg.stats import mean


            @pytest.mark.parametrize("xs,expected", [([1, 2], 1.5), ([3, 4, 4], 11 / 3)],
                                     ids=["halves", "thirds"])
            def test_mean_params(xs, expected):
                assert mean(xs) == pytest.approx(expected)


            @pytest.mark.skip(reason="not for this platform")
            def test_mean_skipped():
                assert False
            ''',
    })
    instance = {
        "repo": "fixtures/calcpkg", "instance_id": "fixtures__calcpkg-1",
        "base_commit": base, "patch": gold, "test_patch": test_patch,
        "problem_statement": "mean() truncates its result\n\n`calcpkg.stats.mean([1, 2])` "
                             "returns 1 instead of 1.5: the mean of integers is floored.\n",
        "hints_text": "", "created_at": "2024-01-01T00:00:00Z", "version": "1.0",
        "FAIL_TO_PASS": json.dumps(["tests/test_stats.py::test_mean_fraction",
                                    "tests/test_stats_extra.py::test_mean_params[halves]",
                                    "tests/test_stats_extra.py::test_mean_params[thirds]"]),
        "PASS_TO_PASS": json.dumps(["tests/test_stats.py::test_total",
                                    "tests/test_stats.py::test_mean_of_evens",
                                    "tests/test_stats.py::test_spread"]),
        "environment_setup_commit": base,
    }
    repro = ("```python\nfrom calcpkg.stats import mean\n\n\ndef test_mean_of_two():\n"
             "    assert mean([1, 2]) == 1.5, mean([1, 2])\n```\n")
    return Fixture(instance, repo, wrong, repro)


# ----------------------------------------------------------------------------- djangolike

RUNTESTS = '''
    #!/usr/bin/env python3
    """A tiny stand-in for Django's tests/runtests.py: same arguments, same verbose output."""
    import argparse
    import os
    import sys
    import unittest

    TESTS = os.path.dirname(os.path.abspath(__file__))
    ROOT = os.path.dirname(TESTS)
    sys.path[:0] = [TESTS, ROOT]

    import django  # noqa: E402

    parser = argparse.ArgumentParser()
    parser.add_argument("labels", nargs="*")
    parser.add_argument("--verbosity", "-v", type=int, default=1)
    parser.add_argument("--settings")
    parser.add_argument("--parallel", default="0")
    args = parser.parse_args()
    if args.settings:
        __import__(args.settings)
    print(f"Testing against Django installed in '{os.path.dirname(django.__file__)}' "
          f"with up to {args.parallel} processes")
    labels = args.labels or sorted(
        d for d in os.listdir(TESTS) if os.path.isdir(os.path.join(TESTS, d)))
    for app in dict.fromkeys(label.split(".")[0] for label in labels):
        print(f"Importing application {app}")
    suite = unittest.defaultTestLoader.loadTestsFromNames(labels)
    print(f"Found {suite.countTestCases()} test(s).")
    print("Skipping setup of unused database(s): default, other.")
    print("System check identified no issues (0 silenced).")
    sys.stdout.flush()
    result = unittest.TextTestRunner(verbosity=args.verbosity, stream=sys.stderr).run(suite)
    sys.exit(0 if result.wasSuccessful() else 1)
    '''

DJ_BASE = _dedented({
    "README.rst": "A Django-shaped repository for tests.\n",
    "django/__init__.py": 'VERSION = (3, 2, 0, "final", 0)\n',
    "django/utils/__init__.py": "",
    "django/utils/text.py": '''
        import re


        def capfirst(x):
            """Capitalize the first letter of a string."""
            return x and str(x)[0].upper() + str(x)[1:]


        def slugify(value):
            """
            Convert spaces or repeated dashes to single dashes. Remove characters that aren't
            alphanumerics, underscores, or hyphens. Convert to lowercase.
            """
            value = re.sub(r"[^\\w\\s-]", "", str(value).lower())
            return re.sub(r"[-\\s]+", "-", value).strip()
        ''',
    "django/utils/html.py": '''
        def escape(text):
            return (str(text).replace("&", "&amp;").replace("<", "&lt;")
                    .replace(">", "&gt;"))
        ''',
    "tests/runtests.py": RUNTESTS,
    "tests/test_sqlite.py": 'DATABASES = {"default": {"ENGINE": "sqlite3"}}\n',
    "tests/utils_tests/__init__.py": "",
    "tests/utils_tests/test_text.py": '''
        import unittest

        from django.utils.text import capfirst, slugify


        class TestUtilsText(unittest.TestCase):
            def test_capfirst(self):
                self.assertEqual(capfirst("hello world"), "Hello world")

            def test_slugify(self):
                self.assertEqual(slugify(" Jack & Jill like numbers 1,2,3 "),
                                 "jack-jill-like-numbers-123")
        ''',
    "tests/utils_tests/test_html.py": '''
        import unittest

        from django.utils.html import escape


        class TestUtilsHtml(unittest.TestCase):
            def test_escape(self):
                self.assertEqual(escape("<a>"), "&lt;a&gt;")
        ''',
})


def djangolike(root: Path) -> Fixture:
    repo = root / "fixtures__djangolike"
    repo.mkdir(parents=True)
    git(repo, "init", "-q")
    write(repo, DJ_BASE, executable=("tests/runtests.py",))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "djangolike")
    base = git(repo, "rev-parse", "HEAD").strip()
    text = DJ_BASE["django/utils/text.py"]
    gold = diff_of(repo, {"django/utils/text.py": text.replace(
        'return re.sub(r"[-\\s]+", "-", value).strip()',
        'return re.sub(r"[-\\s]+", "-", value).strip("-_")')})
    wrong = diff_of(repo, {"django/utils/text.py": text.replace(
        'return re.sub(r"[-\\s]+", "-", value).strip()',
        'return re.sub(r"[-\\s]+", "-", value).strip("-")')})
    assert gold and wrong, "the djangolike patches are empty: the replaced text was not found"
    test_patch = diff_of(repo, {"tests/utils_tests/test_text.py": DJ_BASE[
        "tests/utils_tests/test_text.py"] + '''
    def test_slugify_strips_dashes(self):
        """slugify() strips leading and trailing dashes and underscores."""
        self.assertEqual(slugify("___This is a test ---"), "this-is-a-test")

    def test_slugify_underscores(self):
        self.assertEqual(slugify("__strip__"), "strip")
'''})
    instance = {
        "repo": "fixtures/djangolike", "instance_id": "fixtures__djangolike-13",
        "base_commit": base, "patch": gold, "test_patch": test_patch,
        "problem_statement": "Make django.utils.text.slugify() strip dashes and underscores\n"
                             "\n`slugify(\"___This is a test ---\")` gives "
                             "`___this-is-a-test-` but should give `this-is-a-test`.\n",
        "hints_text": "", "created_at": "2024-01-02T00:00:00Z", "version": "3.2",
        # The keys the harness's Django parser reads from Python 3.11's runner lines (the
        # fixture's Python): a test with a docstring by its first line.
        "FAIL_TO_PASS": json.dumps([
            "slugify() strips leading and trailing dashes and underscores.",
            "test_slugify_underscores (utils_tests.test_text.TestUtilsText."
            "test_slugify_underscores)"]),
        "PASS_TO_PASS": json.dumps([
            "test_capfirst (utils_tests.test_text.TestUtilsText.test_capfirst)",
            "test_slugify (utils_tests.test_text.TestUtilsText.test_slugify)"]),
        "environment_setup_commit": base,
    }
    repro = ("Here is a test.\n```python\nfrom django.utils.text import slugify\n\n\n"
             "def test_strips_dashes_and_underscores():\n"
             "    got = slugify('___This is a test ---')\n"
             "    assert got == 'this-is-a-test', got\n```\n")
    return Fixture(instance, repo, wrong, repro)


# ----------------------------------------------------------------------------- sympylike

BIN_TEST = '''
    #!/usr/bin/env python3
    """A tiny stand-in for SymPy's bin/test: runs test_* functions, prints SymPy's lines."""
    import importlib.util
    import os
    import sys
    import time
    import traceback

    ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, ROOT)
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    files = args or sorted(
        os.path.relpath(os.path.join(d, f), ROOT) for d, _, fs in os.walk(ROOT)
        for f in fs if f.startswith("test_") and f.endswith(".py"))
    print("=" * 29 + " test process starts " + "=" * 30)
    print(f"executable:         {sys.executable}  ({sys.version.split()[0]}-final-0) [CPython]")
    print("architecture:       64-bit")
    print("cache:              no")
    print("ground types:       python ")
    print("numpy:              None")
    print("random seed:        47110815")
    print("hash randomization: on (PYTHONHASHSEED=1234)")
    print()
    t0 = time.time()
    failures = []
    passed = failed = xfailed = 0
    for path in files:
        spec = importlib.util.spec_from_file_location(
            path[:-3].replace("/", "."), os.path.join(ROOT, path))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        tests = [(n, f) for n, f in vars(module).items() if n.startswith("test_")
                 and callable(f)]
        print(f"{path}[{len(tests)}] ")
        file_ok = True
        for i, (name, func) in enumerate(tests):
            try:
                func()
                word = "ok"
                passed += 1
            except AssertionError:
                if getattr(func, "_xfail", False):
                    word = "f"
                    xfailed += 1
                else:
                    word = "F"
                    failed += 1
                    file_ok = False
                    failures.append((path, name, traceback.format_exc()))
            except Exception:
                word = "E"
                failed += 1
                file_ok = False
                failures.append((path, name, traceback.format_exc()))
            line = f"{name} {word}"
            if i == len(tests) - 1:
                line = line.ljust(74) + ("[OK]" if file_ok else "[FAIL]")
            print(line)
    print()
    for path, name, tb in failures:
        print("_" * 80)
        print(f" {path}:{name} ".center(80, "_"))
        print(tb)
    summary = f" tests finished: {passed} passed, {failed} failed, {xfailed} expected to fail, "
    summary += f"in {time.time() - t0:.2f} seconds "
    print(summary.center(80, "="))
    if failed:
        print("DO *NOT* COMMIT!")
    sys.exit(1 if failed else 0)
    '''

SY_BASE = _dedented({
    "README.md": "A SymPy-shaped repository for tests.\n",
    "bin/test": BIN_TEST,
    "sympy/__init__.py": "",
    "sympy/testing/__init__.py": '''
        def XFAIL(func):
            func._xfail = True
            return func
        ''',
    "sympy/core/__init__.py": "",
    "sympy/core/numbers.py": '''
        def igcd(a, b):
            """Greatest common divisor of two integers, never negative."""
            while b:
                a, b = b, a % b
            return a


        def ilcm(a, b):
            if a == 0 or b == 0:
                return 0
            return a * b // igcd(a, b)
        ''',
    "sympy/core/power.py": '''
        def integer_nthroot(y, n):
            x = int(round(y ** (1.0 / n)))
            return x, x ** n == y
        ''',
    "sympy/core/tests/__init__.py": "",
    "sympy/core/tests/test_numbers.py": '''
        from sympy.core.numbers import igcd, ilcm
        from sympy.testing import XFAIL


        def test_igcd():
            assert igcd(4, 6) == 2
            assert igcd(0, 5) == 5


        def test_ilcm():
            assert ilcm(4, 6) == 12


        @XFAIL
        def test_igcd_rationals():
            assert igcd(0.5, 1) == 0.5 and False
        ''',
})


def sympylike(root: Path) -> Fixture:
    repo = root / "fixtures__sympylike"
    repo.mkdir(parents=True)
    git(repo, "init", "-q")
    write(repo, SY_BASE, executable=("bin/test",))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "sympylike")
    base = git(repo, "rev-parse", "HEAD").strip()
    numbers = SY_BASE["sympy/core/numbers.py"]
    gold = diff_of(repo, {"sympy/core/numbers.py": numbers.replace(
        "        a, b = b, a % b\n    return a\n", "        a, b = b, a % b\n    return abs(a)\n")})
    wrong = diff_of(repo, {"sympy/core/numbers.py": numbers.replace(
        '"""\n    while b:', '"""\n    a = abs(a)\n    while b:')})
    assert gold and wrong, "the sympylike patches are empty: the replaced text was not found"
    test_patch = diff_of(repo, {"sympy/core/tests/test_numbers.py": SY_BASE[
        "sympy/core/tests/test_numbers.py"].replace("def test_ilcm():", '''def test_igcd_negative():
    assert igcd(4, -6) == 2
    assert igcd(-4, -6) == 2


def test_ilcm():''')})
    instance = {
        "repo": "fixtures/sympylike", "instance_id": "fixtures__sympylike-20",
        "base_commit": base, "patch": gold, "test_patch": test_patch,
        "problem_statement": "igcd gives a negative result\n\n`igcd(4, -6)` returns -2; the "
                             "greatest common divisor is 2.\n",
        "hints_text": "", "created_at": "2024-01-03T00:00:00Z", "version": "1.1",
        "FAIL_TO_PASS": json.dumps(["test_igcd_negative"]),
        # Not test_igcd_rationals: the last test of a file shares its line with the file's
        # [OK] marker, which the harness's sympy parser never reads, so SWE-bench's lists
        # never hold such a test.
        "PASS_TO_PASS": json.dumps(["test_igcd", "test_ilcm"]),
        "environment_setup_commit": base,
    }
    repro = ("```python\nfrom sympy.core.numbers import igcd\n\n\n"
             "def test_igcd_with_a_negative_argument():\n    assert igcd(4, -6) == 2\n```\n")
    return Fixture(instance, repo, wrong, repro)


# ----------------------------------------------------------------------------- all

@dataclass
class Fixtures:
    root: Path
    repos: Path
    specs: Path
    items: list[Fixture]

    @property
    def instances(self) -> list[dict]:
        return [f.instance for f in self.items]

    def dataset(self, path: Path, extra: list[dict] | None = None) -> Path:
        path.write_text("".join(json.dumps(r) + "\n" for r in [*self.instances,
                                                                *(extra or [])]))
        return path

    def bad_rows(self) -> list[dict]:
        """Four instances that cannot be evaluated, each for its own reason."""
        calc = self.items[0].instance
        missing = {k: v for k, v in calc.items() if k != "base_commit"}
        missing["instance_id"] = "fixtures__calcpkg-missing-field"
        absent = {**calc, "instance_id": "fixtures__calcpkg-absent-commit",
                  "base_commit": "0123456789abcdef0123456789abcdef01234567"}
        broken = {**calc, "instance_id": "fixtures__calcpkg-broken-env", "version": "broken"}
        slow_test = diff_of(self.items[0].repo, {"tests/test_slow.py": '''
            import time


            def test_slow():
                time.sleep(120)
            '''})
        slow = {**calc, "instance_id": "fixtures__calcpkg-slow", "version": "slow",
                "test_patch": slow_test,
                "FAIL_TO_PASS": json.dumps(["tests/test_slow.py::test_slow"]),
                "PASS_TO_PASS": "[]"}
        return [missing, absent, broken, slow]

    def replay(self, path: Path, wrong_votes: int = 2,
               aliases: dict[str, int] | None = None) -> Path:
        """Recorded completions: per instance the gold patch as a unified diff, the wrong
        patch ``wrong_votes`` times, a completion with no edit; and one reproduction test.
        ``aliases`` gives more instance ids the completions of fixture ``items[i]``."""
        lines = []
        named = [(f.instance["instance_id"], f) for f in self.items]
        named += [(iid, self.items[i]) for iid, i in (aliases or {}).items()]
        for iid, f in named:
            texts = [f"```diff\n{f.instance['patch']}```\n",
                     *[f"The fix:\n```diff\n{f.wrong}```\n"] * wrong_votes,
                     "I am not sure how to fix this."]
            for t in texts:
                lines.append({"instance_id": iid, "kind": "repair", "text": t,
                              "prompt_tokens": 100, "completion_tokens": 20})
            lines.append({"instance_id": iid, "kind": "repro", "text": f.repro,
                          "prompt_tokens": 100, "completion_tokens": 15})
        path.write_text("".join(json.dumps(x) + "\n" for x in lines))
        return path


def build(root: Path) -> Fixtures:
    repos = root / "repos"
    repos.mkdir(parents=True, exist_ok=True)
    items = [calc(repos), djangolike(repos), sympylike(repos)]
    specs = root / "specs.json"
    specs.write_text(json.dumps(SPECS, indent=2))
    return Fixtures(root, repos, specs, items)
