"""The GitHub App webhook: an issue given a label, or a `/patchswarm repair` comment from a
user with write access, gets a draft pull request holding the best verified patch, or an
honest comment when nothing passed.

The receiver only checks and queues (it answers GitHub at once); a worker thread does the
job: an installation token (app JWT → token), a clone of the repository, the repair, a
branch pushed to the repository, a draft pull request and comments on the issue.

Trust: the webhook signature (HMAC-SHA256 of the raw body with the app's secret, compared in
constant time) is checked before anything else; a bad or missing one gets 401 and nothing is
recorded or queued. A comment counts only from an owner, member or collaborator (its
``author_association``), and every job then asks GitHub for the actor's permission on the
repository (write, maintain or admin), so a label added by someone without write access does
nothing either. The issue text is untrusted: it goes only into the model's prompt (and the
commit message through stdin), never into a shell or a command line. The installation token
lives in this process: git on this machine gets it through the environment of a credential
helper (never on a command line, in a URL or in a git config file); sandboxes are built from
the repository's committed files and get no environment of the host.

Repeated deliveries: GitHub redelivers a webhook with the same ``X-GitHub-Delivery`` id; ids
are recorded (SQLite in the state folder, or Redis when configured) and a second delivery
is answered ``duplicate``. Jobs are recorded too: a restart takes up jobs left unfinished
(their repairs resume from the run store).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from patchswarm.tasks.engine.problem import Problem, ProblemError, local_problem
from patchswarm.tasks.engine.reproduction import REPRODUCTION, new_files_diff, passed_repro_files
from patchswarm.tasks.engine.runner import RepairResult, RepairSettings, Reporter
from patchswarm.tasks.engine.store import RunStore
from patchswarm.tasks.sources.batch import GitError, clone, commit_patch, git, rev_parse
from patchswarm.tasks.sources.github.client import (
    WRITE_PERMISSIONS,
    GitHubApp,
    GitHubError,
    Installation,
)
from patchswarm.tasks.sources.github.state import ACTIVE, Deliveries, RedisDeliveries, StateDB  # noqa: F401

log = logging.getLogger("patchswarm.bot")

MAX_BODY = 1024 * 1024
"""Default cap of a webhook body. Issue and comment events are a few kB; GitHub's own cap is
25 MB (``BotConfig.max_body``, ``patchswarm bot serve --max-body``, raises it)."""
TRUSTED_ASSOCIATIONS = ("OWNER", "MEMBER", "COLLABORATOR")
REPO_CONFIG = ".patchswarm.yml"
REPO_CONFIG_KEYS = {"test", "install", "files", "python", "test_timeout", "issue_only",
                    "repro", "keep_repro_tests"}
"""``.patchswarm.yml``: ``issue_only`` and ``repro`` as ``repair --issue-only --repro M``;
``keep_repro_tests``: a pull request whose fix was verified by reproduction tests also adds
the ones it passes to the repository's tests."""
_TEST_ID = re.compile(r"^[\w./-]+\.py(::[\w\[\].,:=+ -]+)*$")
_MAX_ISSUE = 20_000

# git on this machine reads the token from its environment through this helper; the helper's
# text holds no secret, so it may appear on a command line.
CREDENTIAL_ARGS = (
    "-c", "credential.helper=",
    "-c", "credential.helper=!f() { test \"$1\" = get || exit 0; "
          "echo username=x-access-token; echo \"password=$PATCHSWARM_GIT_TOKEN\"; }; f",
)


@dataclass
class BotConfig:
    app_id: int | str
    private_key: str
    webhook_secret: bytes
    state_dir: Path
    base_url: str = "https://api.github.com"
    label: str = "patchswarm"
    command: str = "/patchswarm repair"
    test_command: str = "python -m pytest -q"
    """Used when the repository has no .patchswarm.yml naming its test command."""
    settings: RepairSettings = field(default_factory=RepairSettings)
    model: str | None = None
    endpoint: str | None = None
    broker: str | None = None
    redis_url: str | None = None
    """Record delivery ids in Redis (shared by several receivers) instead of SQLite."""
    workers: int = 1
    max_body: int = MAX_BODY
    """Bytes of a webhook body read at most: past it the request gets 413 while it streams,
    before any signature work."""
    rate_retries: int = 3
    git_author: tuple[str, str] = ("patchswarm[bot]", "patchswarm[bot]@users.noreply.github.com")

    def __post_init__(self) -> None:
        if isinstance(self.webhook_secret, str):
            self.webhook_secret = self.webhook_secret.encode()
        if not self.webhook_secret:
            raise ValueError("the webhook secret is empty: set the same secret as in the "
                             "GitHub App's settings")
        self.state_dir = Path(self.state_dir)


# ----------------------------------------------------------------------------- checks


def sign(secret: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """Constant-time check of ``X-Hub-Signature-256`` against the raw body."""
    if not header or not secret:
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())


@dataclass
class Trigger:
    """What a webhook asks for: repair one issue of one repository."""

    kind: str
    """``label`` or ``command``."""
    delivery: str
    installation_id: int
    owner: str
    repo: str
    number: int
    title: str
    body: str
    actor: str
    fail_to_pass: list[str] = field(default_factory=list)
    error: str | None = None
    """A command this bot could not read (answered with a usage comment)."""

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.repo}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trigger:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class Ignored:
    reason: str


def _command_args(body: str, command: str) -> list[str] | None:
    """The words after the command when the comment's first line is the command, else None."""
    first = next((ln.strip() for ln in (body or "").splitlines() if ln.strip()), "")
    if not first.lower().startswith(command.lower()):
        return None
    rest = first[len(command):]
    if rest and not rest[0].isspace():
        return None  # "/patchswarm repairing" is not the command
    return rest.split()


def parse_event(event: str, payload: dict[str, Any], config: BotConfig) -> Trigger | Ignored:
    """Decide from the payload alone whether to act. Nothing here calls GitHub."""
    try:
        action = payload.get("action")
        issue = payload["issue"] if event in ("issues", "issue_comment") else None
        sender = payload.get("sender") or {}
        if issue is None:
            return Ignored(f"event {event!r} is not handled")
        if sender.get("type") == "Bot":
            return Ignored("the sender is a bot")
        if "pull_request" in issue:
            return Ignored("pull requests are not repaired, issues are")
        if issue.get("state") == "closed":
            return Ignored("the issue is closed")
        inst = (payload.get("installation") or {}).get("id")
        if not isinstance(inst, int):
            return Ignored("the payload names no installation of the app")
        repo = payload["repository"]
        base = dict(delivery="", installation_id=inst, owner=repo["owner"]["login"],
                    repo=repo["name"], number=int(issue["number"]),
                    title=str(issue.get("title") or ""),
                    body=str(issue.get("body") or "")[:_MAX_ISSUE],
                    actor=str(sender.get("login") or ""))
        if event == "issues":
            if action != "labeled":
                return Ignored(f"issues.{action} is not a trigger")
            if (payload.get("label") or {}).get("name") != config.label:
                return Ignored(f"the label is not {config.label!r}")
            return Trigger(kind="label", **base)
        if action != "created":
            return Ignored(f"issue_comment.{action} is not a trigger")
        comment = payload["comment"]
        args = _command_args(str(comment.get("body") or ""), config.command)
        if args is None:
            return Ignored("the comment holds no command")
        if comment.get("author_association") not in TRUSTED_ASSOCIATIONS:
            return Ignored(f"{comment.get('user', {}).get('login')} is not an owner, member "
                           "or collaborator")
        base["actor"] = str((comment.get("user") or {}).get("login") or base["actor"])
        bad = [a for a in args if not _TEST_ID.match(a)]
        trig = Trigger(kind="command", fail_to_pass=[a for a in args if _TEST_ID.match(a)][:50],
                       **base)
        if bad:
            trig.error = (f"`{config.command}` takes test ids such as "
                          "`tests/test_x.py::test_y` (or nothing); could not read "
                          + ", ".join(f"`{b[:40]}`" for b in bad[:3]))
        return trig
    except (KeyError, TypeError, ValueError) as exc:
        return Ignored(f"the payload lacks a field the bot needs ({exc})")


# ----------------------------------------------------------------------------- the job


class LogReporter(Reporter):
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id

    def stage(self, name: str) -> None:
        log.info("[%s] %s", self.job_id, name)

    def log(self, msg: str) -> None:
        log.debug("[%s] %s", self.job_id, msg)


RepairFn = Callable[[Problem, Path, Reporter], RepairResult]


def attempts_table(run_dir: Path, limit: int = 15) -> str:
    """What was tried and what passed, best first, as a Markdown table."""
    from patchswarm.agent.candidate import Candidate
    from patchswarm.agent.ranking import rank
    from patchswarm.tasks.engine.runner import groups_of
    from patchswarm.tasks.engine.store import RunStore
    from patchswarm.tasks.engine.verification import mark
    from patchswarm.verifiers.verdict import Verdict

    store = RunStore(run_dir)
    cands = [Candidate.from_dict(c) for c in store.candidates()]
    verdicts = store.verdicts()
    groups = groups_of(cands)
    for g in groups:
        if g.key in verdicts:
            mark(g, Verdict.from_dict(verdicts[g.key]))
    lines = ["| # | samples | verdict | tests passed | lines changed | detail |",
             "| ---: | ---: | --- | ---: | ---: | --- |"]
    ranked = rank(groups)
    for i, g in enumerate(ranked[:limit], 1):
        v = verdicts.get(g.key, {})
        tests = v.get("tests") or {}
        passed = sum(1 for o in tests.values() if o in ("PASSED", "XFAIL"))
        detail = re.sub(r"\s+", " ", str(v.get("detail", ""))).replace("|", "\\|")
        detail = detail.replace("`", "'")[:100]
        verdict = g.status or "not run"
        lines.append(f"| {i} | {g.votes} | {'**passed**' if verdict == 'passed' else verdict}"
                     f" | {passed}/{len(tests)} | {g.diff_size} | `{detail}` |")
    if len(ranked) > limit:
        lines.append(f"| … | | {len(ranked) - limit} more distinct changes | | | |")
    unusable = sum(1 for c in cands if c.patch is None)
    if unusable:
        lines.append(f"| – | {unusable} | no usable edit | | | |")
    return "\n".join(lines)


class Bot:
    """Receives webhooks (``handle``) and runs jobs on worker threads."""

    def __init__(self, config: BotConfig, sampler_factory: Callable[[], Any] | None = None,
                 repair_fn: RepairFn | None = None, app: GitHubApp | None = None) -> None:
        self.config = config
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.db = StateDB(config.state_dir / "bot.sqlite")
        self.deliveries: Any = (RedisDeliveries(config.redis_url) if config.redis_url
                                else Deliveries(self.db))
        self.app = app or GitHubApp(config.app_id, config.private_key, config.base_url,
                                    rate_retries=config.rate_retries)
        self._sampler_factory = sampler_factory
        self._repair_fn = repair_fn
        self._orch = None
        self.queue: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Condition()
        self._outstanding = 0
        """Jobs queued or running: counted from queueing to the end of the job, so that
        ``wait_idle`` never sees a job between the queue and a worker."""
        self.signature_checks = 0
        self.refused_bodies = 0
        """Counters shown on /healthz: signatures computed, bodies refused as too large."""

    # -- receiving

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """Check and queue one webhook delivery; return (HTTP status, JSON answer)."""
        h = {k.lower(): v for k, v in headers.items()}
        self.signature_checks += 1
        if not verify_signature(self.config.webhook_secret, body, h.get("x-hub-signature-256")):
            return 401, {"error": "bad or missing X-Hub-Signature-256"}
        event, delivery = h.get("x-github-event"), h.get("x-github-delivery")
        if not event or not delivery:
            return 400, {"error": "X-GitHub-Event and X-GitHub-Delivery are required"}
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return 400, {"error": "the body is not JSON"}
        if not isinstance(payload, dict):
            return 400, {"error": "the body is not a JSON object"}
        if not self.deliveries.first_time(delivery, event):
            log.info("delivery %s seen before: ignored", delivery)
            return 200, {"status": "duplicate", "delivery": delivery}
        if event == "ping":
            return 200, {"status": "pong"}
        trig = parse_event(event, payload, self.config)
        if isinstance(trig, Ignored):
            log.info("delivery %s (%s) ignored: %s", delivery, event, trig.reason)
            return 200, {"status": "ignored", "reason": trig.reason}
        trig.delivery = delivery
        job_id = self.db.add_job(trig)
        if job_id is None:
            return 200, {"status": "ignored",
                         "reason": f"already working on {trig.full_name}#{trig.number}"}
        self._enqueue(job_id)
        log.info("delivery %s: job %s queued for %s#%s", delivery, job_id, trig.full_name,
                 trig.number)
        return 202, {"status": "queued", "job": job_id}

    # -- workers

    def _enqueue(self, job_id: str) -> None:
        with self._idle:
            self._outstanding += 1
        self.queue.put(job_id)

    def start(self) -> None:
        for job in self.db.jobs(ACTIVE):  # left by a restart: take them up again
            self._enqueue(job["id"])
        for i in range(max(1, self.config.workers)):
            t = threading.Thread(target=self._work, name=f"patchswarm-bot-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        for _ in self._threads:
            self.queue.put(None)
        for t in self._threads:
            t.join(timeout)
        self._threads = []
        if self._orch is not None:
            self._orch.close()
        close = getattr(self._sampler_factory, "close", None)
        if callable(close):
            close()

    def wait_idle(self, timeout: float) -> bool:
        """True once the queue is empty and no job runs (for tests and a clean shutdown)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._outstanding:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.2))
        return True

    def _work(self) -> None:
        while True:
            job_id = self.queue.get()
            if job_id is None:
                return
            try:
                self.run_job(job_id)
            except Exception:  # noqa: BLE001 - a worker thread must outlive one bad job
                log.exception("job %s failed", job_id)
                self.db.update(job_id, "error", error="internal error (see the bot's log)")
            finally:
                with self._idle:
                    self._outstanding -= 1
                    self._idle.notify_all()

    # -- one job

    def _repair(self, problem: Problem, run_dir: Path, reporter: Reporter,
                cfg: dict[str, Any] | None = None) -> RepairResult:
        if self._repair_fn is not None:
            return self._repair_fn(problem, run_dir, reporter)
        settings = self.config.settings
        overrides = {k: (cfg or {})[k] for k in ("issue_only", "repro") if k in (cfg or {})}
        if overrides:
            settings = dataclasses.replace(settings, **overrides)
        if self.config.broker:
            if self._orch is None:
                from patchswarm.tasks.distributed.orchestrator import ClusterSettings, Orchestrator

                self._orch = Orchestrator(ClusterSettings(broker=self.config.broker))
            model = self.config.model or default_model()
            return self._orch.repair(problem, settings, run_dir, model, self.config.endpoint,
                                     reporter)
        if self._sampler_factory is None:
            from patchswarm.agent.factory import SamplerOnDemand

            self._sampler_factory = SamplerOnDemand(self.config.model or default_model(),
                                                    self.config.endpoint)
        from patchswarm.tasks.engine.runner import repair

        return repair(problem, self._sampler_factory, settings, run_dir, reporter)

    def _safe(self, text: str, token: str | None = None) -> str:
        """An error message fit for a public comment: no token, no paths of this machine."""
        text = text.replace(str(self.config.state_dir.resolve()), "<state>")
        if token:
            text = text.replace(token, "***")
        return text[:1500]

    def run_job(self, job_id: str) -> None:
        job = self.db.job(job_id)
        if job is None or job["status"] not in ACTIVE:
            return
        trig = Trigger.from_dict(job["trigger"])
        info = job["info"]
        self.db.update(job_id, "running")
        o, r, n = trig.owner, trig.repo, trig.number
        try:
            inst = self.app.installation(trig.installation_id)
            perm = inst.permission(o, r, trig.actor)
        except GitHubError as exc:
            log.warning("job %s: %s", job_id, exc)
            self.db.update(job_id, "error", error=self._safe(str(exc)))
            return
        if perm not in WRITE_PERMISSIONS:
            log.info("job %s: %s has %s permission on %s: no action", job_id, trig.actor,
                     perm, trig.full_name)
            self.db.update(job_id, "refused", permission=perm)
            return
        if trig.error:
            inst.comment(o, r, n, f"@{trig.actor} {trig.error}")
            self.db.update(job_id, "error", error=trig.error)
            return
        s = self.config.settings
        if not info.get("started_comment"):
            c = inst.comment(o, r, n, (
                f"patchswarm is working on this issue (job `{job_id}`): it samples {s.n} "
                "candidate fixes, runs the tests on each in a sandbox, and will open a draft "
                "pull request with the best one that passes, or say so here if none does."))
            self.db.update(job_id, started_comment=c.get("id"))
        work = self.config.state_dir / "jobs" / job_id
        try:
            outcome = self._attempt(job_id, trig, inst, work, info)
        except (ProblemError, GitError, GitHubError) as exc:
            msg = self._safe(str(exc), inst.token)
            log.warning("job %s stopped: %s", job_id, msg)
            with contextlib.suppress(GitHubError):
                inst.comment(o, r, n, f"patchswarm stopped without a result: {msg}")
            self.db.update(job_id, "error", error=msg)
            return
        except Exception as exc:  # noqa: BLE001 - the machinery failed: say so, not how
            log.exception("job %s failed", job_id)
            with contextlib.suppress(GitHubError):
                inst.comment(o, r, n, (f"patchswarm stopped without a result: an internal "
                                       f"error ({type(exc).__name__}) in job `{job_id}`; the "
                                       "people running this bot can find it in its log."))
            self.db.update(job_id, "error", error=self._safe(f"{type(exc).__name__}: {exc}",
                                                             inst.token))
            return
        self.db.update(job_id, outcome.pop("status"), **outcome)

    def _git_env(self, token: str) -> dict[str, str]:
        return {**os.environ, "GIT_TERMINAL_PROMPT": "0", "PATCHSWARM_GIT_TOKEN": token}

    def _attempt(self, job_id: str, trig: Trigger, inst: Installation, work: Path,
                 prior: dict[str, Any]) -> dict[str, Any]:
        """Clone, repair, and answer. A job taken up again after a restart (``prior`` is what
        it recorded) keeps the commit it started from, so its run resumes, and does not
        push or open a pull request twice."""
        known_base = prior.get("base")
        o, r, n = trig.owner, trig.repo, trig.number
        meta = inst.repo(o, r)
        url, default = meta.get("clone_url"), meta.get("default_branch") or "main"
        if not url:
            raise GitHubError(f"GitHub gave no clone URL for {trig.full_name}")
        env = self._git_env(inst.token)
        repo_dir = clone(url, work / "repo", local=False, env=env, extra=CREDENTIAL_ARGS)
        base = known_base if known_base and rev_parse(repo_dir, known_base) else (
            rev_parse(repo_dir, f"origin/{default}") or rev_parse(repo_dir, "HEAD"))
        if base is None:
            raise ProblemError(f"{trig.full_name} has no commits on {default}")
        self.db.update(job_id, base=base)
        cfg = self._repo_config(repo_dir, base)
        issue_text = f"{trig.title}\n\n{trig.body}".strip()
        problem = local_problem(repo_dir, issue_text, str(cfg.get("test", self.config.
                                                                      test_command)),
                                base=base, problem_id=_problem_id(o, r, n),
                                files=cfg.get("files"), install=str(cfg.get("install", "")))
        problem.fail_to_pass = list(trig.fail_to_pass)
        if cfg.get("python"):
            problem.python = str(cfg["python"])
        if cfg.get("test_timeout"):
            problem.test_timeout = float(cfg["test_timeout"])
        result = self._repair(problem, work / "run", LogReporter(job_id), cfg)
        table = attempts_table(work / "run")
        by_repro = result.verification == REPRODUCTION
        checked = (f"passed reproduction tests the model wrote from the issue and broke none "
                   f"of the tests of `{problem.test_command}` that passed before"
                   if result.repro is not None else f"passed `{problem.test_command}`")
        summary = (f"{result.samples} samples, {result.parsed} with a usable edit, "
                   f"{result.distinct} distinct changes, {result.verified} {checked}")
        if result.repro is not None:
            summary += (f"; {result.repro['kept']} of {result.repro['sampled']} reproduction "
                        "tests were kept")
        info: dict[str, Any] = {"samples": result.samples, "distinct": result.distinct,
                                "verified": result.verified, "solved": result.solved,
                                "verification": result.verification}
        if not result.solved or not result.best_patch:
            text = (f"patchswarm found no fix that passes the tests ({summary}). Nothing was "
                    "pushed. What was tried, best first:\n\n" + table)
            if result.pick_patch:
                text += ("\n\n**Unverified** candidate (it breaks none of the existing tests, "
                         "but no test showed that it fixes the issue):\n\n<details><summary>"
                         "diff</summary>\n\n```diff\n" + result.pick_patch.rstrip()[:20000]
                         + "\n```\n</details>")
            text += ("\n\nA clearer description of the expected behaviour, or the ids of the "
                     f"failing tests (`{self.config.command} tests/test_x.py::test_y`), may "
                     "help.")
            inst.comment(o, r, n, text)
            return {"status": "unsolved", **info}
        kept_tests: dict[str, str] = {}
        if by_repro:
            verdict = RunStore(work / "run").verdicts().get(result.best_key or "")
            kept_tests = passed_repro_files(str(work / "run"), verdict)
        add_tests = by_repro and bool(cfg.get("keep_repro_tests")) and bool(kept_tests)
        if prior.get("pushed"):
            branch, commit = prior["branch"], prior["commit"]
        else:
            branch = self._free_branch(repo_dir, f"patchswarm/issue-{n}", env)
            message = (f"Fix #{n}: {trig.title[:60]}\n\nFound by patchswarm: "
                       f"{result.verified} of {result.distinct} distinct candidate changes "
                       f"{checked}.\n")
            patch = result.best_patch + (new_files_diff(kept_tests) if add_tests else "")
            commit = commit_patch(repo_dir, base, patch, branch, message,
                                  author=self.config.git_author)
            git(repo_dir, *CREDENTIAL_ARGS, "push", "-q", "origin",
                f"refs/heads/{branch}:refs/heads/{branch}", env=env)
            self.db.update(job_id, branch=branch, commit=commit, pushed=True)
        if prior.get("pull"):
            return {"status": "solved", **info, "branch": branch, "commit": commit}
        if by_repro:
            how = ("**Verified against reproduction tests the model wrote from the issue** "
                   "(the issue came with no failing test): each failed on the unpatched code "
                   "for the reason the issue gives, and the change passes it without breaking "
                   f"any test of `{problem.test_command}` that passed before")
        else:
            how = (f"Verified against the project's own tests: the change passed "
                   f"`{problem.test_command}`")
        body = (f"Draft fix for #{n}, found and checked by patchswarm.\n\n"
                f"{how} in a sandbox ({summary}; model `{_model_of(work / 'run')}`).\n"
                "Please review it as you would any contribution: the tests passing is "
                "evidence, not proof.\n\n")
        if kept_tests:
            body += ("### Reproduction tests this change passes"
                     + (" (added to the repository by this pull request)" if add_tests else
                        " (not added; set `keep_repro_tests: true` in .patchswarm.yml to "
                        "add them)") + "\n\n"
                     + "\n\n".join(f"`{p}`\n\n```python\n{t.rstrip()}\n```"
                                   for p, t in kept_tests.items()) + "\n\n")
        body += f"### What was tried\n\n{table}\n\nFixes #{n}\n"
        pr = inst.draft_pull(o, r, f"Fix #{n}: {trig.title[:80]}", branch, default, body)
        self.db.update(job_id, pull=pr.get("number"))
        inst.comment(o, r, n, (
            f"patchswarm opened draft pull request #{pr.get('number')} "
            f"({pr.get('html_url', '')}) with a fix that "
            + ("passes reproduction tests written from this issue" if by_repro
               else "passes the tests") + f" ({summary})."))
        return {"status": "solved", **info, "branch": branch, "commit": commit,
                "pull": pr.get("number")}

    def _free_branch(self, repo_dir: Path, branch: str, env: dict[str, str]) -> str:
        """``branch``, or ``branch-2``, … when the remote already has it (never force)."""
        taken = git(repo_dir, *CREDENTIAL_ARGS, "ls-remote", "--heads", "origin",
                    f"{branch}*", env=env)
        names = {line.split("refs/heads/", 1)[-1] for line in taken.splitlines()}
        name, i = branch, 1
        while name in names:
            i += 1
            name = f"{branch}-{i}"
        return name

    def _repo_config(self, repo_dir: Path, base: str) -> dict[str, Any]:
        """The repository's own settings (.patchswarm.yml at the base commit), checked."""
        text = git(repo_dir, "show", f"{base}:{REPO_CONFIG}", check=False)
        if not text:
            return {}
        try:
            cfg = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ProblemError(f"{REPO_CONFIG} is not valid YAML: {exc}") from exc
        if not isinstance(cfg, dict):
            raise ProblemError(f"{REPO_CONFIG} must be a mapping (e.g. `test: pytest -q`)")
        unknown = sorted(set(cfg) - REPO_CONFIG_KEYS)
        if unknown:
            raise ProblemError(f"{REPO_CONFIG} has unknown keys {unknown}; known: "
                               f"{', '.join(sorted(REPO_CONFIG_KEYS))}")
        for k in ("test", "install", "python"):
            if k in cfg and not isinstance(cfg[k], str):
                raise ProblemError(f"{REPO_CONFIG}: `{k}` must be a string")
        for k in ("issue_only", "keep_repro_tests"):
            if k in cfg and not isinstance(cfg[k], bool):
                raise ProblemError(f"{REPO_CONFIG}: `{k}` must be true or false")
        if "repro" in cfg and (not isinstance(cfg["repro"], int) or isinstance(cfg["repro"], bool)
                               or not 0 <= cfg["repro"] <= 32):
            raise ProblemError(f"{REPO_CONFIG}: `repro` must be a whole number from 0 to 32")
        if "files" in cfg and (not isinstance(cfg["files"], list) or
                               not all(isinstance(f, str) for f in cfg["files"])):
            raise ProblemError(f"{REPO_CONFIG}: `files` must be a list of paths")
        return cfg


def _problem_id(owner: str, repo: str, number: int) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", f"{owner}-{repo}-{number}")


def _model_of(run_dir: Path) -> str:
    for line in (run_dir / "candidates.jsonl").read_text().splitlines()[:1] if (
            run_dir / "candidates.jsonl").exists() else []:
        with contextlib.suppress(json.JSONDecodeError):
            return str(json.loads(line).get("model", "?"))
    return "?"


def default_model() -> str:
    from patchswarm.agent.models import DEFAULT_MODEL

    return os.environ.get("PATCHSWARM_MODEL", DEFAULT_MODEL)
