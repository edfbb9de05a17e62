"""Applying a patch inside a sandbox, by the SWE-bench chain of tools.

``git apply``, then ``git apply --reject``, then ``patch --fuzz=5``: the first that succeeds
wins, and the result says which, or why none did. Between tries the tree is reset to the
base commit so a half-applied try never leaks into the next.
"""

from __future__ import annotations

from dataclasses import dataclass

from .container import Sandbox

PATCH_PATH = "/tmp/patchswarm/candidate.diff"

STEPS = (
    ("git apply", "git apply --verbose {p}"),
    ("git apply --reject", "git apply --verbose --reject {p}"),
    ("patch --fuzz=5", "patch --batch --fuzz=5 -p1 -i {p}"),
)

_RESET = "git reset -q --hard HEAD && git clean -qfdx"


@dataclass
class ApplyResult:
    applied: bool
    step: str | None
    log: str
    seconds: float

    def to_dict(self) -> dict:
        return {"applied": self.applied, "step": self.step, "log": self.log,
                "seconds": self.seconds}


def apply_script(patch_path: str = PATCH_PATH) -> str:
    """One shell script that tries each step and prints ``PATCHSWARM-APPLIED:<step>``."""
    parts = []
    for name, cmd in STEPS:
        parts.append(
            f"echo '>>> {name}'; if {cmd.format(p=patch_path)} 2>&1; then "
            f"echo 'PATCHSWARM-APPLIED:{name}'; exit 0; fi; {_RESET}"
        )
    return "; ".join(parts) + "; echo 'PATCHSWARM-APPLY-FAILED'; exit 3"


def apply_patch(sandbox: Sandbox, patch: str, timeout: float = 60.0) -> ApplyResult:
    if not patch.strip():
        return ApplyResult(False, None, "empty patch", 0.0)
    if not patch.endswith("\n"):
        patch += "\n"
    sandbox.put_file(PATCH_PATH, patch.encode())  # makes its folder
    res = sandbox.exec(apply_script(), timeout=timeout)
    step = None
    for line in res.output.splitlines():
        if line.startswith("PATCHSWARM-APPLIED:"):
            step = line.split(":", 1)[1]
    return ApplyResult(step is not None, step, res.output, res.seconds)
