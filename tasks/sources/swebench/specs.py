"""How to install and test each SWE-bench repository, per version, the way the official harness
does (``swebench/harness/constants``, v4.x), and what this machine changes about it.

A :class:`RepoSpec` names the Python version SWE-bench uses, the install steps, the test
command, how the test-file arguments are made from a ``test_patch`` (paths, or Django's dotted
module names) and which log parser reads the output (:mod:`patchswarm.verifiers.logparse`).

Differences from the official harness, each forced by how sandboxes are built here (Debian root
file systems, no conda, no registry):

- Python: only the versions the base images offer (3.9, 3.11, 3.13 from Debian) exist; a
  wanted version maps to the nearest one (ties go to the older, whose wheels fit the pinned
  packages of the time): 3.6 and 3.8 run on 3.9, 3.10 on 3.9. Every run records the mapping
  per instance. A ``--base-image`` template with ``{python}`` (``python:{python}-slim``) gives
  the exact version where a registry is reachable.
- Packages SWE-bench takes from conda (``packages``) are installed with pip; conda
  ``environment.yml`` files are not read (the pinned ``pip_packages`` still are).
- ``apt-get`` pre-install steps are dropped (the install step runs as the sandbox user); tests
  that need LaTeX, ffmpeg or similar system tools fail here as they would in a bare image.
- Django 3.x exports ``en_US.UTF-8``; the images have ``C.UTF-8``, which is used instead.
- ``pytest`` in a test command runs the environment's pytest: a launcher that calls
  ``python -m pytest`` is put first on the PATH unless the install step brings pytest itself.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from patchswarm.sandbox.images import SUITES

LOG_PARSERS = ("pytest", "django", "sympy")
DIRECTIVE_STYLES = ("files", "django")

# SWE-bench's test commands (the later ``TEST_PYTEST = "pytest -rA"`` of its constants wins).
TEST_PYTEST = "pytest -rA"
TEST_ASTROPY_PYTEST = "pytest -rA -vv -o console_output_style=classic --tb=no -p no:nose"
TEST_DJANGO = "./tests/runtests.py --verbosity 2 --settings=test_sqlite --parallel 1"
TEST_DJANGO_NO_PARALLEL = "./tests/runtests.py --verbosity 2"
TEST_SEABORN = "pytest --no-header -rA"
TEST_SPHINX = "tox --current-env -epy39 -v --"
TEST_SYMPY = "PYTHONWARNINGS='ignore::UserWarning,ignore::SyntaxWarning' bin/test -C --verbose"

NON_TEST_EXTS = (".json", ".png", "csv", ".txt", ".md", ".jpg", ".jpeg", ".pkl", ".yml",
                 ".yaml", ".toml")
"""Files of a test_patch that are not test arguments (SWE-bench's ``NON_TEST_EXTS``)."""

PYTEST_LAUNCHER = (
    "command -v pytest | grep -q \"^$VIRTUAL_ENV/\" || "
    "{ printf '#!/bin/sh\\nexec python -m pytest \"$@\"\\n' > \"$VIRTUAL_ENV/bin/pytest\" "
    "&& chmod +x \"$VIRTUAL_ENV/bin/pytest\"; }"
)
"""Make ``pytest`` run with the environment's Python (the system's pytest script would not see
packages installed into it)."""


SERVICE_HOME = "$VIRTUAL_ENV/.services"
"""Inside the environment folder: owned by the sandbox user at build time, and at the same
place at test time (a sandbox runs with HOME=/tmp)."""


@dataclass(frozen=True)
class Service:
    install: str
    """Shell for the image build (network on): the service in a virtual environment of its
    own, so its dependencies never meet the repository's."""
    start: str
    """Shell before the test command: start it on loopback, wait until it answers, export
    the variable the suite reads."""


_HTTPBIN = f"{SERVICE_HOME}/httpbin"
SERVICES = {
    # requests' old suites build every URL from HTTPBIN_URL (default http://httpbin.org/).
    "httpbin": Service(
        install=f"/usr/bin/python3 -m venv {_HTTPBIN} && {_HTTPBIN}/bin/python -m pip install "
                "-q httpbin==0.10.4",
        start=f"({_HTTPBIN}/bin/python -m httpbin.core --host 127.0.0.1 --port 8765 "
              ">/tmp/httpbin.log 2>&1 &); for i in $(seq 100); do "
              f"{_HTTPBIN}/bin/python -c \"import urllib.request; "
              "urllib.request.urlopen('http://127.0.0.1:8765/get', timeout=1)\" 2>/dev/null "
              "&& break; sleep 0.1; done; export HTTPBIN_URL=http://127.0.0.1:8765/"),
}
"""Network services a suite needs, served locally (see ``RepoSpec.services``)."""


class SpecError(Exception):
    """No specification for an instance's repository and version; the message says what to do."""


@dataclass
class RepoSpec:
    python: str
    """The Python version SWE-bench uses for this version of the repository."""
    test_cmd: str
    log_parser: str = "pytest"
    """``pytest`` (``-rA`` summary lines), ``django`` (runtests.py -v 2) or ``sympy``."""
    directives: str = "files"
    """How test arguments come from test files: ``files`` (paths) or ``django`` (dotted)."""
    install: str = ""
    pre_install: tuple[str, ...] = ()
    pip_packages: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()
    """Requirement files in the repository; the first that exists is installed."""
    eval_env: dict[str, str] = field(default_factory=dict)
    """Environment for the test command (SWE-bench's ``eval_commands`` exports)."""
    test_timeout: float = 1800.0
    services: tuple[str, ...] = ()
    """Local stand-ins for network services the suite calls (``SERVICES``): installed at build
    time, started on the sandbox's loopback before the tests (the network stays off)."""
    notes: tuple[str, ...] = ()
    """What differs from the official harness for this spec."""

    def __post_init__(self) -> None:
        if self.log_parser not in LOG_PARSERS:
            raise SpecError(f"unknown log parser {self.log_parser!r}; one of {LOG_PARSERS}")
        if self.directives not in DIRECTIVE_STYLES:
            raise SpecError(f"unknown directive style {self.directives!r}; "
                            f"one of {DIRECTIVE_STYLES}")
        self.pre_install = tuple(self.pre_install)
        self.pip_packages = tuple(self.pip_packages)
        self.requirements = tuple(self.requirements)
        self.notes = tuple(self.notes)
        self.services = tuple(self.services)
        unknown = [x for x in self.services if x not in SERVICES]
        if unknown:
            raise SpecError(f"unknown services {unknown}; known: {sorted(SERVICES)}")

    def install_script(self) -> str:
        """One shell line for the image build (run in the repository as the sandbox user)."""
        steps = list(self.pre_install)
        if self.log_parser == "pytest" or self.test_cmd.startswith("pytest"):
            steps.append(PYTEST_LAUNCHER)
        if self.pip_packages:
            steps.append("python -m pip install " + " ".join(shlex.quote(p)
                                                            for p in self.pip_packages))
        if self.requirements:
            chain = " el".join(f"if [ -f {shlex.quote(r)} ]; then python -m pip install -r "
                               f"{shlex.quote(r)};" for r in self.requirements)
            steps.append(chain + " fi")
        if self.install:
            steps.append(self.install)
        return " && ".join(f"{{ {s.rstrip(';')}; }}" for s in steps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RepoSpec:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise SpecError(f"unknown spec fields {sorted(unknown)}; known: "
                            f"{sorted(cls.__dataclass_fields__)}")
        if "python" not in d or "test_cmd" not in d:
            raise SpecError("a spec needs at least `python` and `test_cmd`")
        return cls(**{**d, "python": str(d["python"])})


# --------------------------------------------------------------------------- the table

_DROPPED_APT = "apt-get pre-install steps dropped (system packages are not installed)"
_CONDA_YML = "conda environment.yml not read; its pinned pip packages are installed"


def _many(versions: list[str], **kw: Any) -> dict[str, RepoSpec]:
    return {v: RepoSpec(**kw) for v in versions}


def _table() -> dict[str, dict[str, RepoSpec]]:
    t: dict[str, dict[str, RepoSpec]] = {}
    pip_install = "python -m pip install -e ."

    t["astropy/astropy"] = _many(
        ["3.0", "3.1", "3.2", "4.1", "4.2", "4.3", "5.0", "5.1", "5.2", "v5.3"],
        python="3.9", test_cmd=TEST_PYTEST, install="python -m pip install -e .[test] --verbose",
        pip_packages=("attrs==23.1.0", "exceptiongroup==1.1.3", "execnet==2.0.2",
                      "hypothesis==6.82.6", "iniconfig==2.0.0", "numpy==1.25.2",
                      "packaging==23.1", "pluggy==1.3.0", "psutil==5.9.5", "pyerfa==2.0.0.3",
                      "pytest-arraydiff==0.5.0", "pytest-astropy-header==0.2.2",
                      "pytest-astropy==0.10.0", "pytest-cov==4.1.0", "pytest-doctestplus==1.0.0",
                      "pytest-filter-subpackage==0.1.2", "pytest-mock==3.11.1",
                      "pytest-openfiles==0.5.0", "pytest-remotedata==0.4.0",
                      "pytest-xdist==3.3.1", "pytest==7.4.0", "PyYAML==6.0.1",
                      "setuptools==68.0.0", "sortedcontainers==2.4.0", "tomli==2.0.1"))
    for v in ["4.1", "4.2", "4.3", "5.0", "5.1", "5.2", "v5.3"]:
        t["astropy/astropy"][v].pre_install = (
            "sed -i 's/requires = \\[\"setuptools\",/requires = \\[\"setuptools==68.0.0\",/' "
            "pyproject.toml",)
    t["astropy/astropy"]["v5.3"].python = "3.10"
    t["astropy/astropy"].update(_many(
        ["0.1", "0.2", "0.3", "0.4", "1.1", "1.2", "1.3", "2.0"],
        python="3.6", test_cmd=TEST_ASTROPY_PYTEST,
        install="python -m pip install -e .[test] --verbose",
        pip_packages=("setuptools==38.2.4", "attrs==17.3.0", "execnet==1.5.0",
                      "hypothesis==3.44.2", "cython==0.27.3", "jinja2==2.10", "MarkupSafe==1.0",
                      "numpy==1.16.0", "packaging==16.8", "pluggy==0.6.0", "psutil==5.4.2",
                      "pyerfa==1.7.0", "pytest-arraydiff==0.1", "pytest-astropy-header==0.1",
                      "pytest-astropy==0.2.1", "pytest-cov==2.5.1", "pytest-doctestplus==0.1.2",
                      "pytest-filter-subpackage==0.1", "pytest-forked==0.2",
                      "pytest-mock==1.6.3", "pytest-openfiles==0.2.0",
                      "pytest-remotedata==0.2.0", "pytest-xdist==1.20.1", "pytest==3.3.1",
                      "PyYAML==3.12", "sortedcontainers==1.5.9", "tomli==0.2.0")))

    django_req = ("tests/requirements/py3.txt",)
    utf8 = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf8"}
    django = dict(test_cmd=TEST_DJANGO, log_parser="django", directives="django",
                  requirements=django_req, install=pip_install)
    t["django/django"] = _many(["3.0", "3.1", "3.2"], python="3.6", eval_env=utf8,
                               notes=("en_US.UTF-8 replaced by C.UTF-8",), **django)
    t["django/django"].update(_many(["4.0"], python="3.8", **django))
    t["django/django"].update(_many(["4.1", "4.2"], python="3.9", **django))
    t["django/django"].update(_many(["5.0", "5.1", "5.2"], python="3.11", **django))
    t["django/django"].update(_many(
        ["1.7", "1.8", "1.9", "1.10", "1.11", "2.0", "2.1", "2.2"], python="3.5",
        test_cmd=TEST_DJANGO, log_parser="django", directives="django", requirements=django_req,
        install="python setup.py install", pip_packages=("setuptools",), eval_env=utf8,
        notes=(_DROPPED_APT, "en_US.UTF-8 replaced by C.UTF-8")))
    t["django/django"]["1.9"].test_cmd = TEST_DJANGO_NO_PARALLEL

    mpl_pins = ("contourpy==1.1.0", "cycler==0.11.0", "fonttools==4.42.1", "ghostscript",
                "kiwisolver==1.4.5", "numpy==1.25.2", "packaging==23.1", "pillow==10.0.0",
                "pikepdf", "pyparsing==3.0.9", "python-dateutil==2.8.2", "six==1.16.0",
                "setuptools==68.1.2", "setuptools-scm==7.1.0", "typing-extensions==4.7.1",
                "pytest")
    t["matplotlib/matplotlib"] = _many(
        ["3.5", "3.6", "3.7", "3.8", "3.9"], python="3.11", test_cmd=TEST_PYTEST,
        install=pip_install, pip_packages=mpl_pins, notes=(_DROPPED_APT, _CONDA_YML))
    for v in ["3.8", "3.9"]:
        t["matplotlib/matplotlib"][v].install = (
            "python -m pip install --no-build-isolation -e \".[dev]\"")
    t["matplotlib/matplotlib"].update(_many(
        ["3.1", "3.2", "3.3", "3.4"], python="3.8", test_cmd=TEST_PYTEST, install=pip_install,
        pip_packages=("pytest", "ipython"),
        requirements=("requirements/dev/dev-requirements.txt",
                      "requirements/testing/travis_all.txt"), notes=(_DROPPED_APT,)))
    t["matplotlib/matplotlib"].update(_many(
        ["3.0"], python="3.7", test_cmd=TEST_PYTEST, install=pip_install,
        pip_packages=("pytest",),
        requirements=("requirements/dev/dev-requirements.txt",
                      "requirements/testing/travis_all.txt"), notes=(_DROPPED_APT,)))

    sns_pins = ("contourpy==1.1.0", "cycler==0.11.0", "fonttools==4.42.1",
                "importlib-resources==6.0.1", "kiwisolver==1.4.5", "matplotlib==3.7.2",
                "numpy==1.25.2", "packaging==23.1", "pillow==10.0.0", "pyparsing==3.0.9",
                "pytest", "python-dateutil==2.8.2", "pytz==2023.3.post1", "scipy==1.11.2",
                "six==1.16.0", "tzdata==2023.1", "zipp==3.16.2")
    t["mwaskom/seaborn"] = _many(["0.11"], python="3.9", test_cmd=TEST_SEABORN,
                                 install=pip_install, pip_packages=(*sns_pins, "pandas==1.3.5"))
    t["mwaskom/seaborn"].update(_many(
        ["0.12", "0.13", "0.14"], python="3.9", test_cmd=TEST_SEABORN,
        install="python -m pip install -e .[dev]", pip_packages=(*sns_pins, "pandas==2.0.0")))

    flask_req = ("requirements/dev.txt",)
    t["pallets/flask"] = {
        "2.0": RepoSpec(python="3.9", test_cmd=TEST_PYTEST, install=pip_install,
                        requirements=flask_req,
                        pip_packages=("setuptools==70.0.0", "Werkzeug==2.3.7", "Jinja2==3.0.1",
                                      "itsdangerous==2.1.2", "click==8.0.1",
                                      "MarkupSafe==2.1.3")),
        "2.1": RepoSpec(python="3.10", test_cmd=TEST_PYTEST, install=pip_install,
                        requirements=flask_req,
                        pip_packages=("setuptools==70.0.0", "click==8.1.3",
                                      "itsdangerous==2.1.2", "Jinja2==3.1.2",
                                      "MarkupSafe==2.1.1", "Werkzeug==2.3.7")),
    }
    t["pallets/flask"].update(_many(
        ["2.2", "2.3", "3.0", "3.1"], python="3.11", test_cmd=TEST_PYTEST, install=pip_install,
        requirements=flask_req,
        pip_packages=("setuptools==70.0.0", "click==8.1.3", "itsdangerous==2.1.2",
                      "Jinja2==3.1.2", "MarkupSafe==2.1.1", "Werkzeug==2.3.7")))

    t["psf/requests"] = _many(
        ["0.7", "0.8", "0.9", "0.11", "0.13", "0.14", "1.1", "1.2", "2.0", "2.2", "2.3", "2.4",
         "2.5", "2.7", "2.8", "2.9", "2.10", "2.11", "2.12", "2.17", "2.18", "2.19", "2.22",
         "2.26", "2.25", "2.27", "2.31", "3.0"],
        python="3.9", test_cmd=TEST_PYTEST, install="python -m pip install .",
        pip_packages=("pytest",), services=("httpbin",),
        notes=("HTTPBIN_URL points at httpbin served on the sandbox's loopback",))

    t["pydata/xarray"] = _many(
        ["0.12", "0.18", "0.19", "0.20", "2022.03", "2022.06", "2022.09", "2023.07", "2024.05"],
        python="3.10", test_cmd=TEST_PYTEST, install=pip_install,
        pip_packages=("numpy==1.23.0", "packaging==23.1", "pandas==1.5.3", "pytest==7.4.0",
                      "python-dateutil==2.8.2", "pytz==2023.3", "six==1.16.0", "scipy==1.11.1",
                      "setuptools==68.0.0", "dask==2022.8.1"), notes=(_CONDA_YML,))

    t["pylint-dev/pylint"] = _many(
        ["2.8", "2.9", "2.10", "2.11", "2.13", "2.14", "2.15", "2.16", "2.17", "3.0", "3.1",
         "3.2", "3.3", "4.0"], python="3.9", test_cmd=TEST_PYTEST, install=pip_install,
        requirements=("requirements_test.txt",))
    t["pylint-dev/pylint"]["2.8"].pip_packages = ("pyenchant==3.2",)
    t["pylint-dev/pylint"]["2.8"].notes = (_DROPPED_APT,)
    for v in ["3.0", "3.1", "3.2", "3.3", "4.0"]:
        t["pylint-dev/pylint"][v].pip_packages = ("astroid==3.0.0a6", "setuptools")

    t["pytest-dev/pytest"] = _many(
        ["4.4", "4.5", "4.6", "5.0", "5.1", "5.2", "5.3", "5.4", "6.0", "6.2", "6.3", "7.0",
         "7.1", "7.2", "7.4", "8.0", "8.1", "8.2", "8.3", "8.4"],
        python="3.9", test_cmd=TEST_PYTEST, install=pip_install)
    pins = {
        "4.4": ("atomicwrites==1.4.1", "attrs==23.1.0", "more-itertools==10.1.0",
                "pluggy==0.13.1", "py==1.11.0", "setuptools==68.0.0", "six==1.16.0"),
        "4.5": ("atomicwrites==1.4.1", "attrs==23.1.0", "more-itertools==10.1.0",
                "pluggy==0.11.0", "py==1.11.0", "setuptools==68.0.0", "six==1.16.0",
                "wcwidth==0.2.6"),
        "4.6": ("atomicwrites==1.4.1", "attrs==23.1.0", "more-itertools==10.1.0",
                "packaging==23.1", "pluggy==0.13.1", "py==1.11.0", "six==1.16.0",
                "wcwidth==0.2.6"),
        "5.3": ("attrs==23.1.0", "more-itertools==10.1.0", "packaging==23.1", "pluggy==0.13.1",
                "py==1.11.0", "wcwidth==0.2.6"),
        "5.4": ("py==1.11.0", "packaging==23.1", "attrs==23.1.0", "more-itertools==10.1.0",
                "pluggy==0.13.1"),
        "6.0": ("attrs==23.1.0", "iniconfig==2.0.0", "more-itertools==10.1.0",
                "packaging==23.1", "pluggy==0.13.1", "py==1.11.0", "toml==0.10.2"),
        "7.0": ("attrs==23.1.0", "iniconfig==2.0.0", "packaging==23.1", "pluggy==0.13.1",
                "py==1.11.0"),
    }
    for v in ["5.0", "5.1", "5.2"]:
        pins[v] = ("atomicwrites==1.4.1", "attrs==23.1.0", "more-itertools==10.1.0",
                   "packaging==23.1", "pluggy==0.13.1", "py==1.11.0", "wcwidth==0.2.6")
    for v in ["6.2", "6.3"]:
        pins[v] = ("attrs==23.1.0", "iniconfig==2.0.0", "packaging==23.1", "pluggy==0.13.1",
                   "py==1.11.0", "toml==0.10.2")
    for v in ["7.1", "7.2"]:
        pins[v] = ("attrs==23.1.0", "iniconfig==2.0.0", "packaging==23.1", "pluggy==0.13.1",
                   "py==1.11.0", "tomli==2.0.1")
    for v in ["7.4", "8.0", "8.1", "8.2", "8.3", "8.4"]:
        pins[v] = ("iniconfig==2.0.0", "packaging==23.1", "pluggy==1.3.0",
                   "exceptiongroup==1.1.3", "tomli==2.0.1")
    for v, p in pins.items():
        t["pytest-dev/pytest"][v].pip_packages = p
    t["pytest-dev/pytest"]["6.3"].pre_install = ("sed -i 's/>=>=/>=/' setup.cfg",)

    sk_install = "python -m pip install -v --no-use-pep517 --no-build-isolation -e ."
    t["scikit-learn/scikit-learn"] = _many(
        ["0.20", "0.21", "0.22"], python="3.6", test_cmd=TEST_PYTEST, install=sk_install,
        pip_packages=("numpy==1.19.2", "scipy==1.5.2", "cython", "setuptools", "pytest",
                      "pandas", "matplotlib"))
    t["scikit-learn/scikit-learn"].update(_many(
        ["1.3", "1.4", "1.5", "1.6"], python="3.9", test_cmd=TEST_PYTEST, install=sk_install,
        pip_packages=("numpy==1.19.2", "scipy==1.5.2", "cython==3.0.10", "pytest",
                      "pandas<2.0.0", "matplotlib<3.9.0", "setuptools", "joblib",
                      "threadpoolctl")))

    sphinx_versions = (["1.5", "1.6", "1.7", "1.8", "2.0", "2.1", "2.2", "2.3", "2.4", "3.0",
                        "3.1", "3.2", "3.3", "3.4", "3.5", "4.0", "4.1", "4.2", "4.3", "4.4",
                        "4.5", "5.0", "5.1", "5.2", "5.3", "6.0", "6.2", "7.0", "7.1", "7.2",
                        "7.3", "7.4", "8.0", "8.1"])
    t["sphinx-doc/sphinx"] = _many(
        sphinx_versions, python="3.9", test_cmd=TEST_SPHINX,
        install="python -m pip install -e .[test]",
        pip_packages=("tox==4.16.0", "tox-current-env==0.0.11", "Jinja2==3.0.3"),
        pre_install=("sed -i 's/pytest/pytest -rA/' tox.ini",))
    for v in ["3.0", "3.1", "3.2", "3.3", "3.4", "3.5", "4.0", "4.1", "4.2", "4.3", "4.4"]:
        extra = [
            "sed -i 's/Jinja2>=2.3/Jinja2<3.0/' setup.py",
            "sed -i 's/sphinxcontrib-applehelp/sphinxcontrib-applehelp<=1.0.7/' setup.py",
            "sed -i 's/sphinxcontrib-devhelp/sphinxcontrib-devhelp<=1.0.5/' setup.py",
            "sed -i 's/sphinxcontrib-qthelp/sphinxcontrib-qthelp<=1.0.6/' setup.py",
            "sed -i 's/alabaster>=0.7,<0.8/alabaster>=0.7,<0.7.12/' setup.py",
            "sed -i \"s/'packaging',/'packaging', 'markupsafe<=2.0.1',/\" setup.py",
        ]
        if v in ("4.2", "4.3", "4.4"):
            extra += [
                "sed -i 's/sphinxcontrib-htmlhelp>=2.0.0/sphinxcontrib-htmlhelp>=2.0.0,<=2.0.4/'"
                " setup.py",
                "sed -i 's/sphinxcontrib-serializinghtml>=1.1.5/sphinxcontrib-serializinghtml"
                ">=1.1.5,<=1.1.9/' setup.py",
            ]
        elif v == "4.1":
            extra += [
                "grep -q 'sphinxcontrib-htmlhelp>=2.0.0' setup.py && sed -i "
                "'s/sphinxcontrib-htmlhelp>=2.0.0/sphinxcontrib-htmlhelp>=2.0.0,<=2.0.4/' "
                "setup.py || sed -i 's/sphinxcontrib-htmlhelp/sphinxcontrib-htmlhelp<=2.0.4/' "
                "setup.py",
                "grep -q 'sphinxcontrib-serializinghtml>=1.1.5' setup.py && sed -i "
                "'s/sphinxcontrib-serializinghtml>=1.1.5/sphinxcontrib-serializinghtml>=1.1.5,"
                "<=1.1.9/' setup.py || sed -i 's/sphinxcontrib-serializinghtml/"
                "sphinxcontrib-serializinghtml<=1.1.9/' setup.py",
            ]
        else:
            extra += [
                "sed -i 's/sphinxcontrib-htmlhelp/sphinxcontrib-htmlhelp<=2.0.4/' setup.py",
                "sed -i 's/sphinxcontrib-serializinghtml/sphinxcontrib-serializinghtml<=1.1.9/'"
                " setup.py",
            ]
        t["sphinx-doc/sphinx"][v].pre_install += tuple(extra)
    for v in ["7.2", "7.3", "7.4", "8.0", "8.1"]:
        t["sphinx-doc/sphinx"][v].notes = (_DROPPED_APT + " (graphviz)",)
    for v in ["8.0", "8.1"]:
        t["sphinx-doc/sphinx"][v].python = "3.10"

    t["sympy/sympy"] = _many(
        ["0.7", "1.0", "1.1", "1.2", "1.4", "1.5", "1.6", "1.7", "1.8", "1.9", "1.10", "1.11",
         "1.12"], python="3.9", test_cmd=TEST_SYMPY, log_parser="sympy", install=pip_install,
        pip_packages=("mpmath==1.3.0", "flake8", "flake8-comprehensions"))
    t["sympy/sympy"].update(_many(
        ["1.13", "1.14"], python="3.9", test_cmd=TEST_SYMPY, log_parser="sympy",
        install=pip_install, pip_packages=("mpmath==1.3.0",),
        requirements=("requirements-dev.txt", "requirements-test.txt")))

    # The dev split's repositories.
    t["sqlfluff/sqlfluff"] = _many(
        ["0.4", "0.5", "0.6", "0.8", "0.9", "0.10", "0.11", "0.12", "0.13", "1.0", "1.1", "1.2",
         "1.3", "1.4", "2.0", "2.1", "2.2"], python="3.9", test_cmd=TEST_PYTEST,
        install=pip_install, requirements=("requirements_dev.txt",))
    t["pvlib/pvlib-python"] = _many(
        ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"], python="3.9",
        test_cmd=TEST_PYTEST, install="python -m pip install -e .[all]",
        pip_packages=("pandas", "scipy", "jupyter", "ipython", "matplotlib", "pytest", "flake8"))
    t["pylint-dev/astroid"] = _many(
        ["2.5", "2.6", "2.7", "2.8", "2.9", "2.10", "2.12", "2.13", "2.14", "2.15", "2.16",
         "3.0"], python="3.9", test_cmd=TEST_PYTEST, install=pip_install,
        pip_packages=("pytest",))
    t["pydicom/pydicom"] = _many(
        ["1.0", "1.1", "1.2", "1.3", "1.4", "2.0", "2.1", "2.2", "2.3", "2.4", "3.0"],
        python="3.6", test_cmd=TEST_PYTEST, install=pip_install,
        pip_packages=("numpy", "pytest"))
    for v, py in (("1.4", "3.8"), ("2.0", "3.8"), ("2.1", "3.9"), ("2.2", "3.9"),
                  ("2.3", "3.10"), ("2.4", "3.11"), ("3.0", "3.11")):
        t["pydicom/pydicom"][v].python = py
    t["marshmallow-code/marshmallow"] = _many(
        ["2.18", "2.19", "2.20", "3.0", "3.1", "3.2", "3.4", "3.8", "3.9", "3.10", "3.11",
         "3.12", "3.13", "3.15", "3.16", "3.19"], python="3.9", test_cmd=TEST_PYTEST,
        install="python -m pip install -e '.[dev]'")
    t["pyvista/pyvista"] = _many(
        ["0.20", "0.21", "0.22", "0.23"], python="3.9", test_cmd=TEST_PYTEST,
        install=pip_install, pip_packages=("pytest",))
    t["pyvista/pyvista"].update(_many(
        [f"0.{i}" for i in range(24, 44)], python="3.9", test_cmd=TEST_PYTEST,
        install=pip_install, pip_packages=("pytest",),
        requirements=("requirements_test.txt", "requirements.txt"), notes=(_DROPPED_APT,)))
    return t


SPECS: dict[str, dict[str, RepoSpec]] = _table()
"""Repository → version → spec: the SWE-bench repositories (Lite's 12 and the dev split's 6)."""

LITE_REPOS = ("astropy/astropy", "django/django", "matplotlib/matplotlib", "mwaskom/seaborn",
              "pallets/flask", "psf/requests", "pydata/xarray", "pylint-dev/pylint",
              "pytest-dev/pytest", "scikit-learn/scikit-learn", "sphinx-doc/sphinx",
              "sympy/sympy")


class SpecTable:
    """The built-in specs plus any a user adds (``--specs FILE``) for other repositories."""

    def __init__(self, extra: dict[str, dict[str, RepoSpec]] | None = None) -> None:
        self.specs: dict[str, dict[str, RepoSpec]] = {r: dict(v) for r, v in SPECS.items()}
        for repo, versions in (extra or {}).items():
            self.specs.setdefault(repo, {}).update(versions)

    def register(self, repo: str, version: str, spec: RepoSpec) -> None:
        self.specs.setdefault(repo, {})[version] = spec

    def get(self, repo: str, version: str) -> RepoSpec:
        versions = self.specs.get(repo)
        if versions is None:
            raise SpecError(
                f"no install/test specification for repository {repo!r}: known are "
                f"{', '.join(sorted(self.specs))}; add one with --specs FILE "
                '({"owner/name": {"VERSION" or "*": {"python": …, "test_cmd": …}}})')
        spec = versions.get(str(version)) or versions.get("*")
        if spec is None:
            raise SpecError(
                f"no specification for {repo} version {version!r} (known versions: "
                f"{', '.join(sorted(versions))}); add one with --specs FILE")
        return spec

    @classmethod
    def from_file(cls, path: Path | None) -> SpecTable:
        if path is None:
            return cls()
        return cls(load_specs_file(path))


def load_specs_file(path: Path) -> dict[str, dict[str, RepoSpec]]:
    """``{"owner/name": {"VERSION" | "*": {spec fields}}}`` from JSON or YAML."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"specs file {path} not found")
    text = path.read_text()
    try:
        if path.suffix in (".yml", ".yaml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse error is the user's file
        raise SpecError(f"cannot read specs file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"specs file {path} must hold an object of repositories")
    out: dict[str, dict[str, RepoSpec]] = {}
    for repo, versions in data.items():
        if not isinstance(versions, dict):
            raise SpecError(f"{path}: {repo} must map versions to specs")
        out[repo] = {}
        for version, fields in versions.items():
            if not isinstance(fields, dict):
                raise SpecError(f"{path}: {repo} {version} must be an object of spec fields")
            try:
                out[repo][str(version)] = RepoSpec.from_dict(fields)
            except (SpecError, TypeError) as exc:
                raise SpecError(f"{path}: {repo} {version}: {exc}") from exc
    return out


# --------------------------------------------------------------------------- Python versions


@dataclass(frozen=True)
class PythonChoice:
    wanted: str
    used: str
    note: str = ""

    @property
    def exact(self) -> bool:
        return self.wanted == self.used

    def to_dict(self) -> dict[str, Any]:
        return {"wanted": self.wanted, "used": self.used, "exact": self.exact, "note": self.note}


def _minor(version: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)\.(\d+)", version.strip())
    if not m:
        raise SpecError(f"cannot read Python version {version!r} (want e.g. 3.9)")
    return int(m.group(1)), int(m.group(2))


def choose_python(wanted: str, available: tuple[str, ...] | None = None,
                  base_image: str | None = None) -> PythonChoice:
    """The Python a sandbox gets for a spec's version: the same one when a base image template
    is given or the version is available, else the nearest available (ties: the older one)."""
    if base_image:
        return PythonChoice(wanted, wanted, f"base image {base_image}")
    avail = tuple(available if available is not None else SUITES)
    if wanted in avail:
        return PythonChoice(wanted, wanted)
    w = _minor(wanted)
    best = min(avail, key=lambda v: (abs(_minor(v)[1] - w[1]) + 100 * abs(_minor(v)[0] - w[0]),
                                     _minor(v)))
    return PythonChoice(wanted, best,
                        f"Python {wanted} is not available here; ran on {best} (nearest of "
                        f"{', '.join(avail)})")


# --------------------------------------------------------------------------- test arguments

_DIFF_FILE = re.compile(r"^diff --git a/.* b/(.*)$", re.M)


def patch_files(patch: str) -> dict[str, list[str]]:
    """The files a diff touches: ``modified`` (exist before it), ``new`` and ``deleted``."""
    modified: list[str] = []
    new: list[str] = []
    deleted: list[str] = []
    old_path: str | None = None
    for line in patch.splitlines():
        if line.startswith("--- "):
            src = line[4:].split("\t")[0].strip()
            old_path = None if src == "/dev/null" else src.removeprefix("a/")
        elif line.startswith("+++ "):
            dst = line[4:].split("\t")[0].strip()
            if dst == "/dev/null":
                if old_path and old_path not in deleted:
                    deleted.append(old_path)
            elif old_path is None:
                path = dst.removeprefix("b/")
                if path not in new:
                    new.append(path)
            elif old_path not in modified:
                modified.append(old_path)
    return {"modified": modified, "new": new, "deleted": deleted}


def is_django_test_file(path: str) -> bool:
    name = posixpath.basename(path)
    return name == "tests.py" or name.startswith("test_") or "/tests/" in path \
        or "/test_" in path


def django_label(path: str) -> str:
    """``tests/admin_views/test_forms.py`` → ``admin_views.test_forms``."""
    d = path[: -len(".py")] if path.endswith(".py") else path
    d = d[len("tests/"):] if d.startswith("tests/") else d
    return d.replace("/", ".")


def directives_for_files(files: list[str], style: str) -> list[str]:
    """Test arguments for test files, as SWE-bench's ``get_test_directives`` makes them."""
    out = [f for f in files if not any(f.endswith(ext) for ext in NON_TEST_EXTS)]
    if style == "django":
        # Every touched file becomes a label, as the harness makes them (a non-test module
        # such as ``tests/admin_views/models.py`` too: runtests.py imports it as a label).
        out = [django_label(f) for f in out]
    return list(dict.fromkeys(out))


def test_directives(test_patch: str, style: str) -> list[str]:
    """The test arguments of an instance: every file its ``test_patch`` names."""
    return directives_for_files(_DIFF_FILE.findall(test_patch), style)


def test_command(spec: RepoSpec, directives: list[str]) -> str:
    return " ".join([spec.test_cmd, *(shlex.quote(d) for d in directives)])


CA_VARIABLES = ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
"""Set in an image built with ``--ca-bundle`` for its build; a test run unsets them (it has no
network, and a suite must not see a CA bundle the official harness does not give it)."""


def env_prefix(spec: RepoSpec) -> str:
    return f"unset {' '.join(CA_VARIABLES)}; " + "".join(
        f"export {k}={shlex.quote(v)}; " for k, v in spec.eval_env.items()) + "".join(
        f"{SERVICES[x].start}; " for x in spec.services)


def with_python(spec: RepoSpec, python: str) -> RepoSpec:
    return replace(spec, python=python)
