"""Log parsers on log excerpts shaped like real runner output (pytest 9 and older, Django 3/5,
sympy bin/test, unittest on Python 3.9 and 3.11)."""

from __future__ import annotations

import pytest

from patchswarm.verifiers.logparse import (
    ERROR,
    FAILED,
    OUTCOMES,
    PARSERS,
    PASSED,
    SKIPPED,
    XFAIL,
    ParseResult,
    parse_django,
    parse_junit_xml,
    parse_pytest_ra,
    parse_sympy,
    parse_unittest,
)

# --------------------------------------------------------------------------------------------
# pytest

PYTEST_RA_LOG = """\
============================= test session starts ==============================
platform linux -- Python 3.11.7, pytest-9.0.3, pluggy-1.6.0
rootdir: /testbed
collected 13 items

tests/test_x.py .FEsxXF.F..F.                                            [100%]

==================================== ERRORS ====================================
_________________________ ERROR at setup of test_err __________________________

    @pytest.fixture
    def broken():
>       raise RuntimeError("fixture boom")
E       RuntimeError: fixture boom

tests/test_x.py:4: RuntimeError
=================================== FAILURES ===================================
____________________________________ test_b ____________________________________

>   def test_b(): assert 1 == 2, "bad value"
E   AssertionError: bad value
E   assert 1 == 2

tests/test_x.py:6: AssertionError
___________________________________ test_xps ___________________________________
[XPASS(strict)]
==================================== PASSES ====================================
________________________________ TestK.test_m _________________________________
----------------------------- Captured stdout call -----------------------------
out
=========================== short test summary info ============================
PASSED tests/test_x.py::test_a
PASSED tests/test_x.py::test_p[a b]
PASSED tests/test_x.py::test_p[c::d]
PASSED tests/test_x.py::TestK::test_m
PASSED tests/test_x.py::TestK::test_n[1]
SKIPPED [1] tests/test_x.py:8: not today
XFAIL tests/test_x.py::test_xf - known bug
XPASS tests/test_x.py::test_xp - fixed?
ERROR tests/test_x.py::test_err - RuntimeError: fixture boom
FAILED tests/test_x.py::test_b - AssertionError: bad value
FAILED tests/test_x.py::test_xps - [XPASS(strict)]
FAILED tests/test_x.py::test_p[x-y] - AssertionError: assert 'x-y' != 'x-y'
FAILED tests/test_x.py::TestK::test_n[2] - assert 2 == 1
==== 4 failed, 5 passed, 1 skipped, 1 xfailed, 1 xpassed, 1 error in 1.65s =====
"""

PYTEST_RA_EXPECTED = {
    "tests/test_x.py::test_a": PASSED,
    "tests/test_x.py::test_p[a b]": PASSED,
    "tests/test_x.py::test_p[c::d]": PASSED,
    "tests/test_x.py::TestK::test_m": PASSED,
    "tests/test_x.py::TestK::test_n[1]": PASSED,
    "tests/test_x.py::test_xf": XFAIL,
    "tests/test_x.py::test_xp": PASSED,
    "tests/test_x.py::test_err": ERROR,
    "tests/test_x.py::test_b": FAILED,
    "tests/test_x.py::test_xps": FAILED,
    "tests/test_x.py::test_p[x-y]": FAILED,
    "tests/test_x.py::TestK::test_n[2]": FAILED,
}


def test_pytest_ra_summary():
    result = parse_pytest_ra(PYTEST_RA_LOG)
    # The SWE-bench key of an id with a space stops at the space; both spellings are kept.
    assert result.tests == {**PYTEST_RA_EXPECTED, "tests/test_x.py::test_p[a": PASSED}
    assert result.unread == []


def test_pytest_ra_keys_match_swebench_truncation():
    log = (
        "PASSED tests/test_fields.py::TestErrorMessages::test_make_error[required-Missing data]\n"
        'FAILED tests/test_cli.py::test_locate_app[cliapp.factory-create_app2("foo", '
        '"bar")] - AttributeError: nope\n'
    )
    tests = parse_pytest_ra(log).tests
    assert tests["tests/test_fields.py::TestErrorMessages::test_make_error[required-Missing"] == (
        PASSED
    )
    assert tests["tests/test_fields.py::TestErrorMessages::test_make_error[required-Missing data]"]
    assert tests['tests/test_cli.py::test_locate_app[cliapp.factory-create_app2("foo",'] == FAILED
    full = 'tests/test_cli.py::test_locate_app[cliapp.factory-create_app2("foo", "bar")]'
    assert tests[full] == FAILED


def test_pytest_teardown_error_after_pass_wins():
    log = (
        "PASSED tests/test_db.py::test_commit\n"
        "ERROR tests/test_db.py::test_commit - OSError: could not remove /tmp/db\n"
    )
    assert parse_pytest_ra(log).tests == {"tests/test_db.py::test_commit": ERROR}


def test_pytest_collection_error_and_folded_skips():
    log = (
        "SKIPPED [2] tests/test_np.py:10: numpy not installed\n"
        "ERROR tests/test_col.py\n"
        "ERROR tests/test_imp.py - ModuleNotFoundError: No module named 'zz'\n"
        "!!!!!!!!!!!!!!!!!!!! Interrupted: 2 errors during collection !!!!!!!!!!!!!!!!!!!!\n"
    )
    result = parse_pytest_ra(log)
    assert result.tests == {"tests/test_col.py": ERROR, "tests/test_imp.py": ERROR}
    assert result.unread == []


def test_pytest_unfolded_skips():
    log = "SKIPPED tests/test_x.py::test_skip - Skipped: not today\n"
    assert parse_pytest_ra(log).tests == {"tests/test_x.py::test_skip": SKIPPED}


def test_pytest_old_format_status_after_test():
    # pytest 3.x `-v` (no progress percentage), as in old astropy/sphinx logs, with colours.
    log = (
        "astropy/io/fits/tests/test_checksum.py::TestChecksumFunctions::test_sample_file PASSED\n"
        "astropy/io/fits/tests/test_checksum.py::TestChecksumFunctions::test_image_create "
        "\x1b[31mFAILED\x1b[0m\n"
        "astropy/io/fits/tests/test_core.py::test_rename_nonexistent SKIPPED\n"
        "astropy/io/fits/tests/test_core.py::test_unsupported xfail\n"
        "\x1b[32mtests/test_build.py::test_build_all[epub] PASSED\x1b[0m\n"
    )
    result = parse_pytest_ra(log)
    assert result.tests == {
        "astropy/io/fits/tests/test_checksum.py::TestChecksumFunctions::test_sample_file": PASSED,
        "astropy/io/fits/tests/test_checksum.py::TestChecksumFunctions::test_image_create": FAILED,
        "astropy/io/fits/tests/test_core.py::test_rename_nonexistent": SKIPPED,
        "tests/test_build.py::test_build_all[epub]": PASSED,
    }


def test_pytest_verbose_with_percentages_xdist_and_reasons():
    log = (
        "tests/test_x.py::test_a PASSED                                           [  7%]\n"
        "tests/test_x.py::test_skip SKIPPED (not today)                           [ 30%]\n"
        "tests/test_x.py::test_xf XFAIL (known bug)                               [ 38%]\n"
        "[gw1] [ 50%] PASSED tests/test_y.py::test_c \n"
        "[gw0] [100%] FAILED tests/test_y.py::test_d \n"
    )
    assert parse_pytest_ra(log).tests == {
        "tests/test_x.py::test_a": PASSED,
        "tests/test_x.py::test_skip": SKIPPED,
        "tests/test_x.py::test_xf": XFAIL,
        "tests/test_y.py::test_c": PASSED,
        "tests/test_y.py::test_d": FAILED,
    }


def test_pytest_verbose_outcome_after_captured_output():
    # `-v -s`: the test's own output lands between its id and its outcome.
    log = "tests/test_x.py::TestK::test_m out\nmore out\nPASSED\n"
    result = parse_pytest_ra(log)
    assert result.tests == {"tests/test_x.py::TestK::test_m": PASSED}
    assert result.unread == []


def test_pytest_unattributable_lines_are_unread():
    log = "PASSED\nFAILED (failures=2)\nPASSED tests/test_x.py::test_a\n"
    result = parse_pytest_ra(log)
    assert result.tests == {"tests/test_x.py::test_a": PASSED}
    assert result.unread == ["PASSED", "FAILED (failures=2)"]


def test_pytest_ignores_captured_log_lines():
    # Live-log / caplog lines pad the level name; they are not results.
    log = "ERROR    root:app.py:12 connection refused\nPASSED tests/test_app.py::test_retry\n"
    result = parse_pytest_ra(log)
    assert result.tests == {"tests/test_app.py::test_retry": PASSED}
    assert result.unread == []


# --------------------------------------------------------------------------------------------
# JUnit XML

JUNIT_XUNIT2 = """<?xml version="1.0" encoding="utf-8"?>
<testsuites name="pytest tests"><testsuite name="pytest" errors="1" failures="4" skipped="2"
 tests="12" time="0.170" hostname="box">
<testcase classname="tests.test_x" name="test_a" time="0.000"/>
<testcase classname="tests.test_x" name="test_b" time="0.001">
<failure message="AssertionError: bad value&#10;assert 1 == 2">&gt;   def test_b(): assert 1 == 2
E   AssertionError: bad value

tests/test_x.py:6: AssertionError</failure></testcase>
<testcase classname="tests.test_x" name="test_err" time="0.001">
<error message="failed on setup with &quot;RuntimeError: fixture boom&quot;">boom</error>
</testcase>
<testcase classname="tests.test_x" name="test_skip" time="0.000">
<skipped type="pytest.skip" message="not today">/testbed/tests/test_x.py:8: not today</skipped>
</testcase>
<testcase classname="tests.test_x" name="test_xf" time="0.000">
<skipped type="pytest.xfail" message="known bug"/></testcase>
<testcase classname="tests.test_x" name="test_xp" time="0.000"/>
<testcase classname="tests.test_x" name="test_xps" time="0.000">
<failure message="[XPASS(strict)] ">[XPASS(strict)] </failure></testcase>
<testcase classname="tests.test_x" name="test_p[a b]" time="0.000"/>
<testcase classname="tests.test_x" name="test_p[x-y]" time="0.000">
<failure message="AssertionError">x</failure></testcase>
<testcase classname="tests.test_x" name="test_p[c::d]" time="0.006"/>
<testcase classname="tests.test_x.TestK" name="test_m" time="0.000"/>
<testcase classname="tests.test_x.TestK" name="test_n[1]" time="0.001"/>
<testcase classname="tests.test_x.TestK" name="test_n[2]" time="0.001">
<failure message="assert 2 == 1">n = 2</failure></testcase>
</testsuite></testsuites>
"""


def test_junit_xunit2_ids_match_the_ra_summary():
    result = parse_junit_xml(JUNIT_XUNIT2)
    assert result.tests == PYTEST_RA_EXPECTED | {"tests/test_x.py::test_skip": SKIPPED}
    assert result.unread == []


def test_junit_xunit1_uses_file_attribute():
    xml = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="lib.matplotlib.tests.test_axes.TestScatter" name="test_size[0.5]"
 file="lib/matplotlib/tests/test_axes.py" line="10" time="0.1"/>
<testcase classname="src.pkg.checks.Outer.Inner" name="test_deep" file="src/pkg/checks.py"
 line="3" time="0.1"><error message="boom"/></testcase>
<testcase classname="testing.python.collect" name="test_x" file="./testing/python/collect.py"
 line="3" time="0.1"><skipped message="xfail-marked test passes unexpectedly"/></testcase>
</testsuite></testsuites>"""
    assert parse_junit_xml(xml).tests == {
        "lib/matplotlib/tests/test_axes.py::TestScatter::test_size[0.5]": PASSED,
        "src/pkg/checks.py::Outer::Inner::test_deep": ERROR,
        "testing/python/collect.py::test_x": XFAIL,
    }


def test_junit_without_file_guesses_module_boundary():
    xml = """<testsuite name="pytest">
<testcase classname="sympy.core.tests.test_basic" name="test_atoms"/>
<testcase classname="tests.unit.widget_test.TestWidget" name="test_draw"/>
<testcase classname="pkg.checks.TestThing" name="test_y"/>
<testcase classname="" name="tests.test_col"><error message="collection failure"/></testcase>
<testcase classname="tests.test_z"><failure/></testcase>
</testsuite>"""
    result = parse_junit_xml(xml)
    assert result.tests == {
        "sympy/core/tests/test_basic.py::test_atoms": PASSED,
        "tests/unit/widget_test.py::TestWidget::test_draw": PASSED,
        "pkg/checks.py::TestThing::test_y": PASSED,
        "tests/test_col.py": ERROR,
    }
    assert len(result.unread) == 1 and "tests.test_z" in result.unread[0]


@pytest.mark.parametrize(
    "bad",
    [
        "<testsuite><testcase name='a'></testsuite>",
        "not xml at all",
        "",
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]><testsuite/>',
    ],
)
def test_junit_malformed_raises_value_error(bad):
    with pytest.raises(ValueError):
        parse_junit_xml(bad)


# --------------------------------------------------------------------------------------------
# Django

DJANGO_3_LOG = """\
Testing against Django installed in '/testbed/django'
Importing application migrations
Operations to perform:
  Synchronize unmigrated apps: auth, contenttypes, messages, migrations, sessions, staticfiles
  Apply all migrations: admin, sites
Synchronizing apps without migrations:
  Creating tables...
    Creating table django_content_type
    Running deferred SQL...
Running migrations:
  Applying admin.0001_initial... OK
  Applying sites.0001_initial... OK
System check identified no issues (0 silenced).
test_add_field (migrations.test_autodetector.AutodetectorTests) ... ok
test_alter_db_table_add (migrations.test_autodetector.AutodetectorTests)
Tests detection for adding db_table in model's options. ... ok
test_circular_fk_dependency (migrations.test_autodetector.AutodetectorTests)
Having a circular ForeignKey dependency automatically ... FAIL
test_deconstruct_field_kwarg (migrations.test_autodetector.AutodetectorTests) ... ERROR
test_mysql_only (migrations.test_operations.OperationTests) ... skipped 'MySQL specific'
test_known_bug (migrations.test_operations.OperationTests) ... expected failure
test_prints (migrations.test_commands.MakeMigrationsTests) ... Migrations for 'migrations':
  migrations/0003_auto.py
    - Add field silly_field to author
ok
test_request (view_tests.tests.test_debug.DebugViewTests) ... Internal Server Error: /raises/
Traceback (most recent call last):
  File "/testbed/django/core/handlers/exception.py", line 47, in inner
ValueError: Oops
ok
test_version_alternative (admin_scripts.tests.CommandTypes)
--version is equivalent to version ... ok

======================================================================
ERROR: test_deconstruct_field_kwarg (migrations.test_autodetector.AutodetectorTests)
----------------------------------------------------------------------
Traceback (most recent call last):
  File "/testbed/tests/migrations/test_autodetector.py", line 912, in test_deconstruct_field_kwarg
TypeError: __init__() got an unexpected keyword argument 'x'

======================================================================
FAIL: test_circular_fk_dependency (migrations.test_autodetector.AutodetectorTests)
Having a circular ForeignKey dependency automatically
----------------------------------------------------------------------
Traceback (most recent call last):
AssertionError: 2 != 3

----------------------------------------------------------------------
Ran 9 tests in 0.512s

FAILED (failures=1, errors=1, skipped=1, expected failures=1)
Destroying test database for alias 'default'...
"""


def test_django_verbosity_2():
    result = parse_django(DJANGO_3_LOG)
    assert result.unread == []
    assert result.tests == {
        "test_add_field (migrations.test_autodetector.AutodetectorTests)": PASSED,
        "test_alter_db_table_add (migrations.test_autodetector.AutodetectorTests)": PASSED,
        # SWE-bench keys a test with a docstring by the docstring's first line.
        "Tests detection for adding db_table in model's options.": PASSED,
        "test_circular_fk_dependency (migrations.test_autodetector.AutodetectorTests)": FAILED,
        "Having a circular ForeignKey dependency automatically": FAILED,
        "test_deconstruct_field_kwarg (migrations.test_autodetector.AutodetectorTests)": ERROR,
        "test_mysql_only (migrations.test_operations.OperationTests)": SKIPPED,
        "test_known_bug (migrations.test_operations.OperationTests)": XFAIL,
        "test_prints (migrations.test_commands.MakeMigrationsTests)": PASSED,
        "test_request (view_tests.tests.test_debug.DebugViewTests)": PASSED,
        "test_version_alternative (admin_scripts.tests.CommandTypes)": PASSED,
        "--version is equivalent to version": PASSED,
    }


DJANGO_5_LOG = """\
Testing against Django installed in '/testbed/django'
Found 4 test(s).
System check identified no issues (0 silenced).
test_serialize_enum (migrations.test_writer.WriterTests.test_serialize_enum) ... ok
test_serialize_type_none (migrations.test_writer.WriterTests.test_serialize_type_none) ... FAIL
test_register_serializer (migrations.test_writer.WriterTests.test_register_serializer)
Make sure new serializers can be registered. ... ok
test_sub (migrations.test_writer.WriterTests.test_sub) ...
  test_sub (migrations.test_writer.WriterTests.test_sub) (value=2) ... FAIL

======================================================================
FAIL: test_serialize_type_none (migrations.test_writer.WriterTests.test_serialize_type_none)
----------------------------------------------------------------------
AssertionError: 'NoneType' != 'type(None)'
"""


def test_django_python311_ids():
    result = parse_django(DJANGO_5_LOG)
    assert result.unread == []
    tests = result.tests
    # Canonical key without the repeated method name ...
    assert tests["test_serialize_enum (migrations.test_writer.WriterTests)"] == PASSED
    assert tests["test_serialize_type_none (migrations.test_writer.WriterTests)"] == FAILED
    assert tests["test_register_serializer (migrations.test_writer.WriterTests)"] == PASSED
    assert tests["test_sub (migrations.test_writer.WriterTests)"] == FAILED
    # ... and the verbatim form SWE-bench's Django 5.0 instances use.
    assert (
        tests["test_serialize_enum (migrations.test_writer.WriterTests.test_serialize_enum)"]
        == PASSED
    )
    assert tests["Make sure new serializers can be registered."] == PASSED


def test_django_swebench_migration_line_quirk():
    log = (
        "Applying sites.0002_alter_domain_unique...test_no_migrations "
        "(migrations.test_loader.LoaderTests) ... ok\n"
    )
    assert parse_django(log).tests == {
        "test_no_migrations (migrations.test_loader.LoaderTests)": PASSED
    }


def test_django_truncated_log_is_unread():
    log = "test_a (app.tests.T) ... ok\ntest_b (app.tests.T) ... Segmentation fault (core dumped)\n"
    result = parse_django(log)
    assert result.tests == {"test_a (app.tests.T)": PASSED}
    assert result.unread == ["test_b (app.tests.T) ... Segmentation fault (core dumped)"]


def test_django_unattributable_status_line_is_unread():
    log = "Something odd happened ... ok\n"
    result = parse_django(log)
    assert result.tests == {}
    assert result.unread == ["Something odd happened ... ok"]


# --------------------------------------------------------------------------------------------
# unittest

UNITTEST_311_LOG = """\
test_doc (test_m.C.test_doc)
Docstring first line. ... ok
test_doc_fail (test_m.C.test_doc_fail)
Checks something important. ... FAIL
test_err (test_m.C.test_err) ... ERROR
test_fail (test_m.C.test_fail) ... FAIL
test_ok (test_m.C.test_ok) ... ok
test_print (test_m.C.test_print) ... some output
ok
test_skip (test_m.C.test_skip) ... skipped 'no reason'
test_sub (test_m.C.test_sub) ...
  test_sub (test_m.C.test_sub) (i=2) ... FAIL
test_xf (test_m.C.test_xf) ... expected failure
test_xp (test_m.C.test_xp) ... unexpected success
ERROR

======================================================================
ERROR: test_err (test_m.C.test_err)
----------------------------------------------------------------------
Traceback (most recent call last):
  File "/tmp/ut/test_m.py", line 5, in test_err
KeyError: 'k'

======================================================================
ERROR: setUpClass (test_m.D)
----------------------------------------------------------------------
RuntimeError: class boom

======================================================================
FAIL: test_doc_fail (test_m.C.test_doc_fail)
Checks something important.
----------------------------------------------------------------------
AssertionError: nope

======================================================================
FAIL: test_sub (test_m.C.test_sub) (i=2)
----------------------------------------------------------------------
AssertionError: 2 not less than 2

======================================================================
UNEXPECTED SUCCESS: test_xp (test_m.C.test_xp)
----------------------------------------------------------------------
Ran 10 tests in 0.001s

FAILED (failures=3, errors=2, skipped=1, expected failures=1, unexpected successes=1)
"""


def test_unittest_python311():
    result = parse_unittest(UNITTEST_311_LOG)
    assert result.unread == []
    assert result.tests == {
        "test_doc (test_m.C)": PASSED,
        "test_doc_fail (test_m.C)": FAILED,
        "test_err (test_m.C)": ERROR,
        "test_fail (test_m.C)": FAILED,
        "test_ok (test_m.C)": PASSED,
        "test_print (test_m.C)": PASSED,
        "test_skip (test_m.C)": SKIPPED,
        "test_sub (test_m.C)": FAILED,
        "test_xf (test_m.C)": XFAIL,
        "test_xp (test_m.C)": FAILED,
        "setUpClass (test_m.D)": ERROR,
    }


def test_unittest_python39_form():
    log = (
        "test_ok (tests.test_io.ReaderTests) ... ok\n"
        "test_bad (tests.test_io.ReaderTests) ... FAIL\n"
        "test_gone (tests.test_io.ReaderTests) ... skipped 'needs network'\n"
        "test_described (tests.test_io.ReaderTests)\n"
        "Reads an empty file. ... ok\n"
    )
    assert parse_unittest(log).tests == {
        "test_ok (tests.test_io.ReaderTests)": PASSED,
        "test_bad (tests.test_io.ReaderTests)": FAILED,
        "test_gone (tests.test_io.ReaderTests)": SKIPPED,
        "test_described (tests.test_io.ReaderTests)": PASSED,
    }


# --------------------------------------------------------------------------------------------
# sympy

SYMPY_LOG = """\
============================= test process starts ==============================
executable:         /usr/bin/python3  (3.9.19-final-0) [CPython]
architecture:       64-bit
cache:              no
ground types:       python
numpy:              None
random seed:        21781318
hash randomization: on (PYTHONHASHSEED=2531467357)

sympy/printing/tests/test_ccode.py[10]
test_printmethod ok
test_ccode_Pow F
test_ccode_Max E
test_ccode_xfail f
test_ccode_xpass X
test_ccode_numpy numpy not installed. s
test_ccode_big Slow w
test_ccode_print hello from test
ok
test_ccode_Relational ok                                                      [FAIL]

sympy/printing/tests/test_str.py[2]
test_Add ok
test_Mul ok                                                                     [OK]


________________________________ slowest tests _________________________________
test_ccode_big - Took 12.345 seconds
________________________________ xpassed tests _________________________________
sympy/printing/tests/test_ccode.py: test_ccode_xpass

________________________________________________________________________________
_____________ sympy/printing/tests/test_ccode.py:test_ccode_Max ______________
Traceback (most recent call last):
  File "/testbed/sympy/printing/tests/test_ccode.py", line 30, in test_ccode_Max
KeyError: 'x'

________________________________________________________________________________
_____________ sympy/printing/tests/test_ccode.py::test_ccode_Pow _____________
Traceback (most recent call last):
AssertionError

 tests finished: 6 passed, 1 failed, 2 skipped, 1 expected to fail,
1 expected to fail but passed, 1 exceptions, in 0.52 seconds
DO *NOT* COMMIT!
"""


def test_sympy_verbose():
    result = parse_sympy(SYMPY_LOG)
    assert result.unread == []
    assert result.tests == {
        "test_printmethod": PASSED,
        "test_ccode_Pow": FAILED,
        "test_ccode_Max": ERROR,
        "test_ccode_xfail": XFAIL,
        "test_ccode_xpass": PASSED,
        "test_ccode_numpy": SKIPPED,
        "test_ccode_big": SKIPPED,
        "test_ccode_print": PASSED,
        # The last test of a file shares its line with the file's [OK]/[FAIL] marker.
        "test_ccode_Relational": PASSED,
        "test_Add": PASSED,
        "test_Mul": PASSED,
    }


def test_sympy_failure_header_fills_in_an_unreadable_line():
    log = (
        "sympy/core/tests/test_args.py[2]\n"
        "test_sympy__core__basic ok\n"
        "test_noisy partial output without newline\n"
        "more output\n"
        "\n"
        "________________________________________________________________________________\n"
        "_______________ sympy/core/tests/test_args.py:test_noisy _______________\n"
        "AssertionError\n"
    )
    result = parse_sympy(log)
    assert result.tests == {"test_sympy__core__basic": PASSED, "test_noisy": FAILED}
    assert result.unread == []


def test_sympy_unreadable_lines():
    log = (
        "sympy/core/tests/test_args.py[8] ..F.E.s.                              [FAIL]\n"
        "sympy/core/tests/test_expr.py[2]\n"
        "test_crashes_midway Fatal Python error: Segmentation fault\n"
    )
    result = parse_sympy(log)
    assert result.tests == {}
    assert result.unread == [
        "sympy/core/tests/test_args.py[8] ..F.E.s.",
        "test_crashes_midway Fatal Python error: Segmentation fault",
    ]


def test_sympy_timeouts():
    log = "test_hangs T\ntest_skipped_slow Timeout T\n"
    assert parse_sympy(log).tests == {"test_hangs": ERROR, "test_skipped_slow": SKIPPED}


# --------------------------------------------------------------------------------------------


def test_parsers_registry_and_outcome_vocabulary():
    assert set(PARSERS) == {"junit", "pytest", "django", "sympy", "unittest"}
    logs = {
        "junit": JUNIT_XUNIT2,
        "pytest": PYTEST_RA_LOG,
        "django": DJANGO_3_LOG,
        "sympy": SYMPY_LOG,
        "unittest": UNITTEST_311_LOG,
    }
    for kind, parser in PARSERS.items():
        result = parser(logs[kind])
        assert isinstance(result, ParseResult)
        assert result.tests and set(result.tests.values()) <= set(OUTCOMES)


@pytest.mark.parametrize("kind", ["pytest", "django", "sympy", "unittest"])
def test_empty_log(kind):
    assert PARSERS[kind]("") == ParseResult({}, [])
