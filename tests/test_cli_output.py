"""The engine's own output kept out of the terminal (without the engine: a real child process
writing to the inherited standard error, as vLLM's engine process does), and --verbose."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import subprocess, sys, warnings
    from pathlib import Path
    from patchswarm.tasks.cli.terminal import EngineOutput, console, out
    log = Path(sys.argv[1]); verbose = sys.argv[2] == "1"
    o = EngineOutput(log, verbose)
    o.start()
    console.print("patchswarm: starting the engine")
    subprocess.run([sys.executable, "-c",
                    "import sys; print('ENGINE-STDERR', file=sys.stderr); print('ENGINE-STDOUT')"])
    print("LIBRARY-PRINT", file=sys.stderr)
    warnings.warn("LIBRARY-WARNING")
    console.print("patchswarm: sampling 2/2")
    o.stop()
    out.print("RESULT-TABLE")
    console.print("patchswarm: done")
""")


def _run(tmp_path: Path, verbose: bool) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "engine.log"),
                           "1" if verbose else "0"], capture_output=True, text=True,
                          timeout=60)


def test_engine_output_goes_to_the_log_and_ours_to_the_terminal(tmp_path):
    proc = _run(tmp_path, verbose=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["patchswarm: starting the engine",
                                        "patchswarm: sampling 2/2", "patchswarm: done"]
    assert proc.stdout.splitlines() == ["RESULT-TABLE"]
    log = (tmp_path / "engine.log").read_text()
    for noise in ("ENGINE-STDERR", "ENGINE-STDOUT", "LIBRARY-PRINT", "LIBRARY-WARNING"):
        assert noise in log


def test_verbose_leaves_everything_on_the_terminal(tmp_path):
    proc = _run(tmp_path, verbose=True)
    assert proc.returncode == 0, proc.stderr
    for line in ("ENGINE-STDERR", "LIBRARY-PRINT", "LIBRARY-WARNING", "patchswarm: done"):
        assert line in proc.stderr
    assert "ENGINE-STDOUT" in proc.stdout
    assert not (tmp_path / "engine.log").exists()


def test_repair_and_demo_take_verbose():
    from click.testing import CliRunner

    from patchswarm.tasks.cli.main import main

    for cmd in ("repair", "demo", "solve", "prove"):
        res = CliRunner().invoke(main, [cmd, "--help"])
        assert "--verbose" in res.output and "engine.log" in res.output, cmd
