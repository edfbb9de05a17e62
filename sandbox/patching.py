"""Applying a patch inside a sandbox, by the SWE-bench chain of tools, under the change policy.

First the diff is checked against the change policy (``policy.py``): a patch that would touch
what a fix may not is rejected before anything is applied. Then ``git apply``, ``git apply
--reject``, ``patch --fuzz=5``: the first that succeeds wins. Between tries the work tree is
put back from the image's pristine copy (no git runs for that), so a half-applied try never
leaks into the next. Git runs with hooks off; ``patch`` reads unified diffs only, follows no
symbolic link, writes no backup and discards rejects. Last, the applied tree is compared with
the pristine copy: a path changed that the diff does not name, or that the policy forbids,
rejects the patch too, whatever tool did it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from .container import Sandbox
from .engine import SandboxError
from .images import WORKDIR
from .policy import (
    CONTENT,
    MODE,
    UNDECLARED,
    Rules,
    Violation,
    check_content,
    check_diff,
    check_path,
    reason,
)

PATCH_PATH = "/tmp/patchswarm/candidate.diff"

STEPS = (
    ("git apply", "git -c core.hooksPath=/dev/null apply --verbose {p}"),
    ("git apply --reject", "git -c core.hooksPath=/dev/null apply --verbose --reject {p}"),
    ("patch --fuzz=5", "patch --batch --unified --fuzz=5 -p1 --no-backup-if-mismatch "
                       "--reject-file=- -i {p}"),
)


@dataclass
class ApplyResult:
    applied: bool
    step: str | None
    log: str
    seconds: float
    rejected: list[str] = field(default_factory=list)
    """``path (rule)`` for each path the change policy refused; the patch is then not
    applied (or, when found after applying, not used)."""
    reason: str = ""
    """Why the patch was refused or could not be checked (empty when it applied)."""
    changed: list[str] = field(default_factory=list)
    """Paths that differ from the pristine copy after applying."""

    def to_dict(self) -> dict:
        return {"applied": self.applied, "step": self.step, "log": self.log,
                "seconds": self.seconds, "rejected": self.rejected, "reason": self.reason,
                "changed": self.changed}


def step_command(name: str, cmd: str, patch_path: str = PATCH_PATH) -> str:
    """One step as a shell command that prints ``PATCHSWARM-APPLIED:<step>`` on success."""
    return (f"echo '>>> {name}'; {cmd.format(p=patch_path)} 2>&1 && "
            f"echo 'PATCHSWARM-APPLIED:{name}'")


def _refused(violations: list[Violation], log: str, t0: float,
             step: str | None = None) -> ApplyResult:
    return ApplyResult(False, step, log, time.monotonic() - t0,
                       rejected=[str(v) for v in violations], reason=reason(violations))


def apply_patch(sandbox: Sandbox, patch: str, rules: Rules | None = None,
                timeout: float = 60.0) -> ApplyResult:
    """Check ``patch`` against the change policy, apply it, check what it changed."""
    t0 = time.monotonic()
    rules = rules or Rules()
    if not patch.strip():
        return ApplyResult(False, None, "empty patch", 0.0)
    if not patch.endswith("\n"):
        patch += "\n"
    check = check_diff(patch, rules)
    if not check.ok:
        return _refused(check.violations, "", t0)
    log: list[str] = []
    step = None
    try:
        sandbox.put_file(PATCH_PATH, patch.encode())  # makes its folder
        for i, (name, cmd) in enumerate(STEPS):
            if i:  # the previous try may have left part of itself
                sandbox.restore(patterns=["*"])
            res = sandbox.exec(step_command(name, cmd), timeout=timeout)
            log.append(res.output)
            if f"PATCHSWARM-APPLIED:{name}" in res.output.splitlines() and res.exit_code == 0:
                step = name
                break
        if step is None:
            log.append("PATCHSWARM-APPLY-FAILED\n")
            return ApplyResult(False, None, "".join(log), time.monotonic() - t0)
        changes = sandbox.tree_changes()
        violations = _check_applied(sandbox, changes, check.paths, rules)
    except SandboxError as exc:
        return ApplyResult(False, step, "".join(log), time.monotonic() - t0,
                           reason=f"the applied patch could not be checked: {exc}")
    if violations:
        return _refused(violations, "".join(log), t0, step)
    return ApplyResult(True, step, "".join(log), time.monotonic() - t0,
                       changed=[p for p, _, _ in changes])


def _check_applied(sandbox: Sandbox, changes: list[tuple[str, str, str]],
                   declared: list[str], rules: Rules) -> list[Violation]:
    """The policy again, on what really changed (the tree against its pristine copy)."""
    named = set(declared)
    folders = {"/".join(p.split("/")[:i]) for p in declared for i in range(1, p.count("/") + 1)}
    pristine = sandbox.pristine_path()
    out: list[Violation] = []
    for path, how, kind in changes:
        if path not in named and not (kind == "dir" and path in folders):
            out.append(Violation(path, UNDECLARED))
            continue
        if how != "removed" and kind not in ("file", "dir"):
            out.append(Violation(path, MODE))
            continue
        rule = check_path(path, rules, added_top_level=how == "added")
        if rule == CONTENT:
            before = sandbox.get_file(f"{pristine}/{path}") if how != "added" else None
            after = sandbox.get_file(f"{WORKDIR}/{path}") if how != "removed" else None
            rule = check_content(path, before, after)
        if rule is not None:
            out.append(Violation(path, rule))
    return out

