"""The command line as a new user meets it: bad input refused up front with a clear message,
`-h` everywhere, help on every option, an example per command, commands grouped by task."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from patchswarm.tasks.cli.help import COMMAND_GROUPS
from patchswarm.tasks.cli.main import main

# Commands whose help this work owns; the others' modules have their own owners.
OWNED_MODULES = {"cli", "cmd_status", "cmd_view", "cmd_solve", "cmd_verify", "cmd_sandbox",
                 "cmd_bench", "cmd_batch"}


def _commands() -> list[tuple[list[str], click.Command]]:
    ctx = click.Context(main)
    out: list[tuple[list[str], click.Command]] = []

    def walk(cmd: click.Command, path: list[str]) -> None:
        out.append((path, cmd))
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), [*path, name])

    walk(main, [])
    return out


def _owned(cmd: click.Command) -> bool:
    module = (cmd.callback.__module__ if cmd.callback else type(cmd).__module__)
    return module.rsplit(".", 1)[-1] in OWNED_MODULES


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return CliRunner()


@pytest.mark.parametrize("args, message", [
    (["-n", "0"], "Invalid value for '-n': 0 is not in the range x>=1."),
    (["--temperature", "-1"], "Invalid value for '--temperature': -1.0 is not in the range "
                              "x>=0."),
    (["--rounds", "0"], "Invalid value for '--rounds': 0 is not in the range x>=1."),
    (["--endpoint", "notaurl"], "Invalid value for '--endpoint': 'notaurl' is not a server "
                                "address; give an http(s) URL such as "
                                "http://127.0.0.1:8000/v1"),
    (["--endpoint", "localhost:8000"], "is not a server address"),
])
def test_repair_refuses_bad_settings_before_any_work(runner, tmp_path, args, message):
    (tmp_path / "issue.md").write_text("bug")
    res = runner.invoke(main, ["repair", "--repo", str(tmp_path / "no-repo"), "--issue",
                               "issue.md", "--test", "pytest", *args])
    assert res.exit_code == 2
    assert message in res.output
    assert not (tmp_path / "patchswarm-runs").exists()  # nothing was started


@pytest.mark.parametrize("command", [["demo"], ["solve"], ["prove", "--dataset", "x"],
                                     ["batch", "spec.yaml"]])
def test_every_command_with_an_endpoint_checks_it_first(runner, command):
    res = runner.invoke(main, [*command, "--endpoint", "notaurl"])
    assert res.exit_code == 2
    assert "'notaurl' is not a server address" in res.output


def test_n_and_temperature_are_checked_in_solve_and_prove(runner):
    for command in (["solve"], ["prove", "--dataset", "x"], ["demo"]):
        res = runner.invoke(main, [*command, "-n", "0"])
        assert res.exit_code == 2 and "0 is not in the range x>=1" in res.output
    res = runner.invoke(main, ["solve", "--temperature", "-0.5"])
    assert res.exit_code == 2 and "-0.5 is not in the range x>=0" in res.output


def test_issue_that_is_a_folder_or_missing_says_so(runner, tmp_path):
    (tmp_path / "issues").mkdir()
    res = runner.invoke(main, ["repair", "--repo", ".", "--issue", "issues", "--test", "t"])
    assert res.exit_code == 2
    assert "error: --issue issues is a folder; give the file that holds the issue text" \
        in res.output
    res = runner.invoke(main, ["repair", "--repo", ".", "--issue", "gone.md", "--test", "t"])
    assert res.exit_code == 2
    assert "--issue gone.md not found: give a file that holds the issue text" in res.output


def test_h_is_help_on_every_command():
    runner = CliRunner()
    for path, _cmd in _commands():
        res = runner.invoke(main, [*path, "-h"], prog_name="patchswarm")
        assert res.exit_code == 0, (path, res.output)
        assert res.output.startswith("Usage: patchswarm"), path


def test_every_option_has_help_and_every_command_an_example():
    missing_help, missing_example = [], []
    for path, cmd in _commands():
        if not path or not _owned(cmd):
            continue
        for p in cmd.params:
            if isinstance(p, click.Option) and not p.help:
                missing_help.append(f"{' '.join(path)} {p.opts[0]}")
        if "Example" not in (cmd.help or "") or "patchswarm " not in (cmd.help or ""):
            missing_example.append(" ".join(path))
    assert not missing_help, f"options without help: {missing_help}"
    assert not missing_example, f"commands without an example: {missing_example}"


def test_top_level_help_groups_commands_by_task_with_examples():
    res = CliRunner().invoke(main, ["--help"])
    assert res.exit_code == 0
    text = res.output
    titles = [t for t, _ in COMMAND_GROUPS]
    assert titles == ["Repair a repository", "At scale", "Research", "Operate"]
    positions = [text.index(f"{t}:") for t in titles]
    assert positions == sorted(positions)
    listed = {name for _, entries in COMMAND_GROUPS for name, _ in entries}
    ctx = click.Context(main)
    assert set(main.list_commands(ctx)) <= listed, "a command is in no group"
    for _, entries in COMMAND_GROUPS:
        for name, example in entries:
            assert f"$ {example}" in text
            assert example.startswith(f"patchswarm {name}")
    assert "Other commands" not in text
    # Environment variables and shell completion are in the help.
    for word in ("PATCHSWARM_MODEL", "PATCHSWARM_API_KEY", "OPENAI_API_KEY",
                 "_PATCHSWARM_COMPLETE=bash_source"):
        assert word in text


def test_endpoint_help_names_the_api_key_variables():
    res = CliRunner().invoke(main, ["repair", "-h"])
    flat = " ".join(res.output.split())
    assert "$PATCHSWARM_API_KEY, else $OPENAI_API_KEY" in flat
    assert "$PATCHSWARM_MODEL" in flat


def test_batch_help_shows_the_spec_format():
    res = CliRunner().invoke(main, ["batch", "--help"])
    for word in ("The spec (YAML):", "problems:", "repos:", "issue_file:", "fail_to_pass:",
                 "settings:"):
        assert word in res.output


def test_shell_completion_script_is_produced():
    """What the help tells a user to eval: the installed command prints a bash completion."""
    import os
    import subprocess

    proc = subprocess.run(["patchswarm"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "_PATCHSWARM_COMPLETE": "bash_source"})
    assert proc.returncode == 0, proc.stderr
    assert "complete -o nosort -F _patchswarm_completion patchswarm" in proc.stdout


def test_options_set_by_environment_variables_say_so():
    runner = CliRunner()
    res = runner.invoke(main, ["worker", "-h"])
    assert "env var: PATCHSWARM_BROKER" in " ".join(res.output.split())
    with_envvar = [(path, p.opts[0]) for path, cmd in _commands() for p in cmd.params
                   if isinstance(p, click.Option) and p.envvar]
    assert with_envvar
    for path, opt in with_envvar:
        flat = " ".join(runner.invoke(main, [*path, "-h"]).output.split())
        assert "env var:" in flat, (path, opt)
