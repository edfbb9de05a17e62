"""The GitHub bot, end to end and offline: recorded webhook payloads (tests/payloads/), a local
server standing in for GitHub's REST API (tests/fake_github.py, with githubkit's base URL
pointed at it), a local bare repository standing in for the remote, the real webhook server
(uvicorn), real git, and real Docker sandboxes for the repair. The model side is replayed
from fixed texts so that the outcome is known."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fake_github import FakeGitHub, FakeRepo

from patchswarm.agent.sampler import ReplaySampler
from patchswarm.tasks.engine.runner import RepairSettings
from patchswarm.tasks.sources import examples
from patchswarm.tasks.sources.github.app import create_app
from patchswarm.tasks.sources.github.bot import (
    Bot,
    BotConfig,
    Ignored,
    RedisDeliveries,
    Trigger,
    parse_event,
    sign,
    verify_signature,
)
from patchswarm.tasks.sources.github.client import GitHubApp, GitHubError, RateGate

PAYLOADS = Path(__file__).parent / "payloads"
APP_ID = 424242
INSTALLATION = 51234567
SECRET = b"it's a secret to everybody"
EXAMPLE = "gradebook-average"
TRANSCRIPT = os.environ.get("PATCHSWARM_BOT_TRANSCRIPT")
"""When set, the end-to-end test writes the stand-in's request log there."""


def _key() -> tuple[str, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


@pytest.fixture(scope="module")
def app_key() -> tuple[str, bytes]:
    return _key()


def payload(name: str, **headers: str) -> tuple[dict[str, str], bytes]:
    data = json.loads((PAYLOADS / f"{name}.json").read_text())
    body = json.dumps(data["body"]).encode()
    h = {**data["headers"], **headers}
    h["X-Hub-Signature-256"] = sign(SECRET, body)
    return h, body


def whole_file(text: str) -> str:
    return f"Here is the fix.\n\ngradebook.py\n```python\n{text}```\n"


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> tuple[str, str]:
    """The buggy and the gold-fixed gradebook.py."""
    repo = examples.materialise(EXAMPLE, tmp_path_factory.mktemp("gold") / EXAMPLE)
    before = (repo / "gradebook.py").read_text()
    fix = examples.load_example(EXAMPLE)["root"] / "fix.patch"
    subprocess.run(["git", "-C", str(repo), "apply", str(fix)], check=True)
    return before, (repo / "gradebook.py").read_text()


@pytest.fixture
def remote(tmp_path) -> Path:
    """A bare repository standing in for github.com/octo-org/gradebook: the example's code,
    with a .patchswarm.yml naming the test command."""
    work = examples.materialise(EXAMPLE, tmp_path / "upstream")
    (work / ".patchswarm.yml").write_text("test: python -m pytest -q tests\n"
                                          "files: [gradebook.py]\n")
    subprocess.run(["git", "-C", str(work), "add", ".patchswarm.yml"], check=True)
    subprocess.run(["git", "-C", str(work), "-c", "user.name=Mona", "-c",
                    "user.email=mona@example.invalid", "commit", "-q", "-m",
                    "Configure patchswarm"], check=True)
    bare = tmp_path / "remote" / "gradebook.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return bare


@pytest.fixture
def fake(remote, app_key) -> Iterator[FakeGitHub]:
    perms = {"maintainer-mona": "write", "collab-carol": "maintain", "reader-rita": "read"}
    with FakeGitHub(APP_ID, app_key[1], INSTALLATION,
                    {"octo-org/gradebook": FakeRepo(str(remote), "main", perms)}) as f:
        yield f


def config(tmp_path: Path, fake: FakeGitHub, app_key, **kw) -> BotConfig:
    return BotConfig(app_id=APP_ID, private_key=app_key[0], webhook_secret=SECRET,
                     state_dir=tmp_path / "state", base_url=fake.url,
                     settings=RepairSettings(n=3), **kw)


@contextlib.contextmanager
def serving(app) -> Iterator[str]:  # noqa: ANN001
    """The app on uvicorn, on a free port of 127.0.0.1, in a thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def post(url: str, name: str, **headers: str) -> httpx.Response:
    h, body = payload(name, **headers)
    return httpx.post(f"{url}/webhook", content=body, headers=h, timeout=10, trust_env=False)


class Gate:
    """A sampler factory that waits until the test opens it: the job cannot finish before."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.opened = threading.Event()
        self.reached = threading.Event()

    def __call__(self) -> ReplaySampler:
        self.reached.set()
        assert self.opened.wait(300), "the test never opened the gate"
        return ReplaySampler([{"text": t, "completion_tokens": 50, "prompt_tokens": 400}
                              for t in self.texts])


def files_holding(root: Path, needle: str) -> list[Path]:
    out = []
    for p in root.rglob("*"):
        if p.is_file() and needle.encode() in p.read_bytes():
            out.append(p)
    return out


# ----------------------------------------------------------------------------- end to end


@pytest.mark.docker
def test_a_labelled_issue_gets_a_verified_draft_pull_request(tmp_path, fake, app_key, remote,
                                                             sources, base_image,
                                                             monkeypatch):
    before, after = sources
    monkeypatch.chdir(tmp_path)
    wrong = before.replace("return sum(scores) // len(scores)", "return round(sum(scores) / "
                                                                  "len(scores))")
    gate = Gate([whole_file(after), whole_file(wrong), "Sorry, I cannot see the bug."])
    app = create_app(config(tmp_path, fake, app_key), sampler_factory=gate)
    bot: Bot = app.state.bot
    with serving(app) as url:
        t0 = time.monotonic()
        resp = post(url, "issues.labeled")
        answered = time.monotonic() - t0
        # The answer came while the job cannot have finished: it waits on the gate.
        assert resp.status_code == 202, resp.text
        assert resp.json()["status"] == "queued"
        job_id = resp.json()["job"]
        assert bot.db.job(job_id)["status"] in ("queued", "running")
        assert not gate.opened.is_set() and fake.pulls == []
        # GitHub redelivers with the same delivery id: not a second job.
        again = post(url, "issues.labeled.redelivery")
        assert again.status_code == 200 and again.json()["status"] == "duplicate"
        assert len(bot.db.jobs()) == 1
        assert gate.reached.wait(300), "the job never reached sampling"
        gate.opened.set()
        assert bot.wait_idle(300), "the job did not finish"

    job = bot.db.job(job_id)
    assert job["status"] == "solved", job
    assert job["info"]["verified"] == 1 and job["info"]["distinct"] == 2
    lines = fake.transcript()
    if TRANSCRIPT:
        refs = subprocess.run(["git", "--git-dir", str(remote), "for-each-ref",
                               "--format=%(refname) %(objectname:short) %(subject)"],
                              capture_output=True, text=True).stdout
        Path(TRANSCRIPT).write_text(
            f"webhook answered {resp.status_code} {resp.json()} in {answered * 1000:.0f} ms\n"
            f"redelivery answered {again.status_code} {again.json()}\n"
            + "\n".join(lines) + "\n\nthe remote's branches afterwards:\n" + refs + "\n"
            + json.dumps(job, indent=2) + "\n\n"
            + "\n\n---\n\n".join(c["body"] for c in fake.comments) + "\n\n---PR---\n\n"
            + fake.pulls[0]["body"])
    order = [(r.method, r.path, r.auth) for r in fake.requests]
    assert order == [
        ("POST", f"/app/installations/{INSTALLATION}/access_tokens", "jwt"),
        ("GET", "/repos/octo-org/gradebook/collaborators/maintainer-mona/permission", "token"),
        ("POST", "/repos/octo-org/gradebook/issues/7/comments", "token"),
        ("GET", "/repos/octo-org/gradebook", "token"),
        ("POST", "/repos/octo-org/gradebook/pulls", "token"),
        ("POST", "/repos/octo-org/gradebook/issues/7/comments", "token"),
    ], lines
    assert all(r.status in (200, 201) for r in fake.requests), lines
    started, done = fake.comments
    assert "patchswarm is working on this issue" in started["body"]
    assert "opened draft pull request #100" in done["body"]
    pr = fake.pulls[0]
    assert pr["draft"] is True and pr["base"] == "main" and pr["head"] == "patchswarm/issue-7"
    assert pr["title"].startswith("Fix #7: Averages on the dashboard")
    assert "| 1 | 1 | **passed** | 7/7 |" in pr["body"]
    assert "| 2 | 1 | failed |" in pr["body"] and "| – | 1 | no usable edit |" in pr["body"]
    assert "Fixes #7" in pr["body"]

    # The branch on the remote holds the verified fix, one commit on top of main.
    def remote_git(*args: str) -> str:
        return subprocess.run(["git", "--git-dir", str(remote), *args], capture_output=True,
                              text=True, check=True).stdout
    assert remote_git("show", "patchswarm/issue-7:gradebook.py") == after
    assert remote_git("rev-parse", "patchswarm/issue-7^") == remote_git("rev-parse", "main")
    assert "Fix #7: Averages" in remote_git("log", "-1", "--format=%B", "patchswarm/issue-7")
    assert "patchswarm[bot]" in remote_git("log", "-1", "--format=%an", "patchswarm/issue-7")

    # No secret was written anywhere, and none reached the sandbox.
    (token,) = fake.tokens
    state = tmp_path / "state"
    for secret in (token, SECRET.decode(), "BEGIN PRIVATE KEY"):
        assert files_holding(state, secret) == [], secret
    clone_cfg = (state / "jobs" / job_id / "repo" / ".git" / "config").read_text()
    assert "x-access-token" not in clone_cfg and token not in clone_cfg
    image = next(json.loads(line)["image"] for line in
                 (state / "jobs" / job_id / "run" / "events.jsonl").read_text().splitlines()
                 if json.loads(line)["stage"] == "image")
    from patchswarm.sandbox.container import Sandbox
    from patchswarm.sandbox.images import WORKDIR

    with Sandbox(image).start() as sb:
        seen = sb.exec(f"env; cat {WORKDIR}/.git/config; grep -rl -e ghs_ -e PRIVATE "
                       f"{WORKDIR} /tmp 2>/dev/null; true", timeout=60).output
    assert "HOME=" in seen and "[core]" in seen  # the probe ran and saw the environment
    for secret in (token, SECRET.decode(), "PATCHSWARM_GIT_TOKEN", "PRIVATE KEY"):
        assert secret not in seen, secret
    # The issue text's shell syntax ran nowhere.
    for root in (tmp_path, Path.cwd()):
        assert not list(root.rglob("patchswarm-pwned*"))


@pytest.mark.docker
def test_a_collaborator_command_with_nothing_verified_gets_an_honest_comment(
        tmp_path, fake, app_key, remote, sources, base_image):
    before, _ = sources
    wrong = before.replace("return sum(scores) // len(scores)", "return 0.0")
    gate = Gate([whole_file(wrong), "```diff\nnot a diff\n```", whole_file(wrong)])
    gate.opened.set()
    # GitHub's secondary rate limit on the first comment: githubkit waits Retry-After, retries.
    fake.rate_limit_once.add(("POST", r"/repos/octo-org/gradebook/issues/8/comments"))
    app = create_app(config(tmp_path, fake, app_key), sampler_factory=gate)
    bot: Bot = app.state.bot
    with serving(app) as url:
        resp = post(url, "issue_comment.created.collaborator")
        assert resp.status_code == 202, resp.text
        assert bot.wait_idle(300)
    job = bot.db.job(resp.json()["job"])
    assert job["status"] == "unsolved", job
    assert job["trigger"]["fail_to_pass"] == [
        "tests/test_gradebook.py::test_average_keeps_fraction"]
    run = json.loads((tmp_path / "state" / "jobs" / job["id"] / "run" / "run.json").read_text())
    assert run["problem"]["fail_to_pass"] == [
        "tests/test_gradebook.py::test_average_keeps_fraction"]
    comments = fake.calls("POST", r"/comments$")
    assert [c.status for c in comments] == [403, 201, 201]  # the rate-limited one, retried
    assert fake.pulls == [] and fake.calls("POST", r"/pulls$") == []
    honest = fake.comments[-1]["body"]
    assert honest.startswith("patchswarm found no fix that passes the tests")
    assert "Nothing was pushed" in honest and "| 1 | 2 | failed |" in honest
    assert subprocess.run(["git", "--git-dir", str(remote), "branch", "--list", "patchswarm/*"],
                          capture_output=True, text=True).stdout == ""


@pytest.mark.docker
def test_an_issue_with_no_failing_test_gets_a_pull_request_verified_by_reproduction_tests(
        tmp_path, fake, app_key, sources, base_image, monkeypatch):
    """The ordinary issue: the repository's tests all pass. The bot samples reproduction
    tests, keeps the one that fails for the issue's reason, opens a pull request labelled as
    verified by reproduction tests, and (as .patchswarm.yml asks) adds that test to it."""
    before, after = sources
    monkeypatch.chdir(tmp_path)
    work = examples.materialise(EXAMPLE, tmp_path / "upstream-io", withhold=True)
    (work / ".patchswarm.yml").write_text("test: python -m pytest -q tests\n"
                                          "files: [gradebook.py]\nrepro: 2\n"
                                          "keep_repro_tests: true\n")
    subprocess.run(["git", "-C", str(work), "add", ".patchswarm.yml"], check=True)
    subprocess.run(["git", "-C", str(work), "-c", "user.name=Mona", "-c",
                    "user.email=mona@example.invalid", "commit", "-q", "-m", "cfg"], check=True)
    bare = tmp_path / "remote-io" / "gradebook.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    fake.repos["octo-org/gradebook"] = FakeRepo(str(bare), "main",
                                                fake.repos["octo-org/gradebook"].permissions)
    repro = ("```python\nfrom gradebook import average\n\n\ndef test_fraction():\n"
             "    assert average([90, 85]) == 87.5\n```\n")
    typo = "```python\nfrom gradebook import average\n\n\ndef test_t():\n    averag([1])\n```"
    wrong = before.replace("return sum(scores) // len(scores)", "return 0.0")
    gate = Gate([repro, typo, whole_file(after), whole_file(wrong), whole_file(after)])
    gate.opened.set()
    app = create_app(config(tmp_path, fake, app_key), sampler_factory=gate)
    bot: Bot = app.state.bot
    with serving(app) as url:
        resp = post(url, "issues.labeled")
        assert resp.status_code == 202, resp.text
        assert bot.wait_idle(300), "the job did not finish"
    job = bot.db.job(resp.json()["job"])
    assert job["status"] == "solved", job
    assert job["info"]["verification"] == "reproduction tests"
    pr = fake.pulls[0]
    print(pr["body"])
    assert "Verified against reproduction tests the model wrote from the issue" in pr["body"]
    assert "1 of 2 reproduction tests were kept" in pr["body"]
    assert "assert average([90, 85]) == 87.5" in pr["body"]
    assert "added to the repository by this pull request" in pr["body"]
    assert "passes reproduction tests written from this issue" in fake.comments[-1]["body"]
    shown = subprocess.run(["git", "--git-dir", str(bare), "show", "--stat", "--format=%B",
                            "patchswarm/issue-7"], capture_output=True, text=True).stdout
    assert "gradebook.py" in shown and "tests/test_patchswarm_repro_0.py" in shown
    assert "passed reproduction tests the model wrote from the issue" in shown


# ----------------------------------------------------------------------------- refusals


def test_a_bad_or_missing_signature_gets_401_and_nothing_is_queued(tmp_path, fake, app_key):
    app = create_app(config(tmp_path, fake, app_key),
                     sampler_factory=lambda: pytest.fail("no job may run"))
    bot: Bot = app.state.bot
    with serving(app) as url:
        h, body = payload("issues.labeled")
        for bad in (sign(b"another secret", body), "sha256=" + "0" * 64, "sha1=abc", ""):
            r = httpx.post(f"{url}/webhook", content=body,
                           headers={**h, "X-Hub-Signature-256": bad}, trust_env=False)
            assert r.status_code == 401, bad
        del h["X-Hub-Signature-256"]
        r = httpx.post(f"{url}/webhook", content=body, headers=h, trust_env=False)
        assert r.status_code == 401
        # The signature covers the raw body: one changed byte is refused.
        h, body = payload("issues.labeled")
        tampered = body.replace(b'"patchswarm"', b'"patchswarn"', 1)
        r = httpx.post(f"{url}/webhook", content=tampered, headers=h, trust_env=False)
        assert r.status_code == 401
        assert bot.db.jobs() == [] and bot.queue.empty()
        # Nothing was recorded either: the same delivery, correctly signed, is new.
        r = post(url, "issue_comment.created.outsider",
                 **{"X-GitHub-Delivery": payload("issues.labeled")[0]["X-GitHub-Delivery"]})
        assert r.status_code == 200 and r.json()["status"] == "ignored"
    assert fake.requests == []


def _raw_post(url: str, head: dict[str, str], chunks: Iterator[bytes],
              chunked: bool = True) -> tuple[int, int]:
    """POST over a bare socket, streaming ``chunks``; stop sending as soon as the server
    answers. Returns (HTTP status, body bytes sent before the answer)."""
    import select

    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    lines = ["POST /webhook HTTP/1.1", f"Host: {host}:{port}",
             *(f"{k}: {v}" for k, v in head.items())]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    sent = 0
    answer = b""
    try:
        for chunk in chunks:
            if select.select([sock], [], [], 0)[0]:
                break
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            sent += len(chunk)
        else:
            if chunked:
                sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        answer = sock.recv(4096)
    except ConnectionResetError:
        pass
    sock.close()
    return int(answer.split(b" ", 2)[1]) if answer else 0, sent


def test_an_oversized_body_is_refused_while_it_streams(tmp_path, fake, app_key):
    """A chunked body past the cap gets 413 as soon as the cap is passed, before any
    signature work, holding at most the cap in memory; a declared length over the cap is
    refused before a byte of the body is read."""
    import tracemalloc

    cap = 1024 * 1024
    app = create_app(config(tmp_path, fake, app_key, max_body=cap),
                     sampler_factory=lambda: pytest.fail("no job may run"))
    bot: Bot = app.state.bot
    h, body = payload("issues.labeled")
    chunk = b"x" * (16 * 1024)
    with serving(app) as url:
        tracemalloc.start()
        status, sent = _raw_post(url, h, (chunk for _ in range(4096)))  # 64 MiB offered
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert status == 413
        assert cap < sent < 8 * cap, f"{sent} bytes went in before the answer"
        assert peak < 8 * cap, f"{peak} bytes held for one refused request"
        assert bot.signature_checks == 0 and bot.refused_bodies == 1
        # A declared Content-Length over the cap: refused at once, no body sent at all.
        status, sent = _raw_post(url, {**h, "Content-Length": str(25 * 1024 * 1024)},
                                 iter([]), chunked=False)
        assert status == 413 and sent == 0
        assert bot.signature_checks == 0 and bot.refused_bodies == 2
        # A body within the cap, correctly signed, is still checked and taken.
        r = post(url, "issue_comment.created.outsider")
        assert r.status_code == 200 and bot.signature_checks == 1
        health = httpx.get(f"{url}/healthz", trust_env=False).json()
        assert health["refused_bodies"] == 2


def test_a_comment_from_an_outsider_gets_no_action(tmp_path, fake, app_key):
    app = create_app(config(tmp_path, fake, app_key),
                     sampler_factory=lambda: pytest.fail("no job may run"))
    bot: Bot = app.state.bot
    with serving(app) as url:
        r = post(url, "issue_comment.created.outsider")
        assert r.status_code == 200
        assert r.json() == {"status": "ignored", "reason": "drive-by-dave is not an owner, "
                                                           "member or collaborator"}
        assert bot.wait_idle(10)
    assert bot.db.jobs() == [] and fake.requests == []


def test_a_label_from_a_user_without_write_access_does_nothing(tmp_path, fake, app_key):
    data = json.loads((PAYLOADS / "issues.labeled.json").read_text())
    data["body"]["sender"]["login"] = "reader-rita"
    data["headers"]["X-GitHub-Delivery"] = "0d7e51c8-21b0-11ef-9a3f-3c5e2b1d4f60"
    (tmp_path / "p").mkdir()
    app = create_app(config(tmp_path, fake, app_key),
                     sampler_factory=lambda: pytest.fail("no repair may run"))
    bot: Bot = app.state.bot
    with serving(app) as url:
        body = json.dumps(data["body"]).encode()
        r = httpx.post(f"{url}/webhook", content=body, trust_env=False,
                       headers={**data["headers"], "X-Hub-Signature-256": sign(SECRET, body)})
        assert r.status_code == 202
        assert bot.wait_idle(30)
    (job,) = bot.db.jobs()
    assert job["status"] == "refused" and job["info"]["permission"] == "read"
    assert [(r.method, r.path) for r in fake.requests] == [
        ("POST", f"/app/installations/{INSTALLATION}/access_tokens"),
        ("GET", "/repos/octo-org/gradebook/collaborators/reader-rita/permission")]
    assert fake.comments == []


# ----------------------------------------------------------------------------- pieces


def test_delivery_ids_are_remembered_across_a_restart(tmp_path, fake, app_key):
    from starlette.testclient import TestClient

    cfg = config(tmp_path, fake, app_key)
    h, body = payload("issue_comment.created.outsider")
    with TestClient(create_app(cfg)) as client:
        assert client.post("/webhook", content=body, headers=h).json()["status"] == "ignored"
        assert client.post("/webhook", content=body, headers=h).json()["status"] == "duplicate"
        assert client.get("/healthz").json()["status"] == "ok"
    with TestClient(create_app(cfg)) as client:
        assert client.post("/webhook", content=body, headers=h).json()["status"] == "duplicate"


def test_jobs_left_unfinished_by_a_restart_are_taken_up_again(tmp_path, fake, app_key):
    from patchswarm.tasks.sources.github.bot import StateDB

    cfg = config(tmp_path, fake, app_key)
    db = StateDB(cfg.state_dir / "bot.sqlite")
    trig = Trigger(kind="label", delivery="d-1", installation_id=INSTALLATION,
                   owner="octo-org", repo="gradebook", number=7, title="t", body="b",
                   actor="reader-rita")
    job_id = db.add_job(trig)
    assert db.add_job(trig) is None  # one job per issue at a time
    db.update(job_id, "running")  # the process died here
    app = create_app(cfg, sampler_factory=lambda: pytest.fail("no repair may run"))
    with serving(app):
        assert app.state.bot.wait_idle(30)
    assert app.state.bot.db.job(job_id)["status"] == "refused"
    assert [r.path for r in fake.requests][-1].endswith("/reader-rita/permission")


@pytest.fixture
def redis_url(tmp_path) -> Iterator[str]:
    """A real Redis server of this test's own, on a free port."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed: apt-get install -y redis-server")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen([exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL)
    import redis

    r = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            r.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def test_delivery_ids_in_redis_are_shared_by_two_receivers(tmp_path, fake, app_key, redis_url):
    from starlette.testclient import TestClient

    h, body = payload("issue_comment.created.outsider")
    one = create_app(config(tmp_path / "a", fake, app_key, redis_url=redis_url))
    two = create_app(config(tmp_path / "b", fake, app_key, redis_url=redis_url))
    with TestClient(one) as c1, TestClient(two) as c2:
        assert c1.post("/webhook", content=body, headers=h).json()["status"] == "ignored"
        assert c2.post("/webhook", content=body, headers=h).json()["status"] == "duplicate"
    assert RedisDeliveries(redis_url).first_time("fresh-id", "issues") is True


def test_signature_check_and_triggers(tmp_path, app_key):
    body = b'{"zen": "Keep it logically awesome."}'
    good = sign(SECRET, body)
    assert good.startswith("sha256=") and len(good) == 71
    assert verify_signature(SECRET, body, good)
    assert verify_signature(SECRET, body, f"  {good} ")
    assert not verify_signature(SECRET, body + b" ", good)
    assert not verify_signature(b"other", body, good)
    assert not verify_signature(SECRET, body, None)
    assert not verify_signature(SECRET, body, good.upper())
    assert not verify_signature(SECRET, body, "sha256=é" + good[8:])

    cfg = BotConfig(app_id=1, private_key=app_key[0], webhook_secret="s", state_dir=tmp_path)

    def event(name: str) -> tuple[str, dict]:
        data = json.loads((PAYLOADS / f"{name}.json").read_text())
        return data["headers"]["X-GitHub-Event"], data["body"]

    trig = parse_event(*event("issues.labeled"), cfg)
    assert isinstance(trig, Trigger) and trig.kind == "label"
    assert (trig.owner, trig.repo, trig.number, trig.actor, trig.installation_id) == (
        "octo-org", "gradebook", 7, "maintainer-mona", INSTALLATION)
    assert "$(touch patchswarm-pwned)" in trig.body  # kept as text for the prompt only
    trig = parse_event(*event("issue_comment.created.collaborator"), cfg)
    assert isinstance(trig, Trigger) and trig.kind == "command" and trig.error is None
    assert trig.fail_to_pass == ["tests/test_gradebook.py::test_average_keeps_fraction"]
    assert isinstance(parse_event(*event("issue_comment.created.outsider"), cfg), Ignored)

    name, body_ = event("issues.labeled")
    other = {**body_, "label": {"name": "bug"}}
    assert parse_event(name, other, cfg).reason == "the label is not 'patchswarm'"
    as_pr = {**body_, "issue": {**body_["issue"], "pull_request": {"url": "x"}}}
    assert "pull requests" in parse_event(name, as_pr, cfg).reason
    by_bot = {**body_, "sender": {**body_["sender"], "type": "Bot"}}
    assert parse_event(name, by_bot, cfg).reason == "the sender is a bot"

    name, body_ = event("issue_comment.created.collaborator")

    def with_comment(text: str) -> Trigger | Ignored:
        return parse_event(name, {**body_, "comment": {**body_["comment"], "body": text}}, cfg)

    assert isinstance(with_comment("/patchswarm repairing"), Ignored)
    assert isinstance(with_comment("please /patchswarm repair"), Ignored)
    assert with_comment("/PatchSwarm Repair").fail_to_pass == []
    bad = with_comment("/patchswarm repair $(rm -rf ~) tests/test_a.py::t")
    assert bad.error and "$(rm" in bad.error and bad.fail_to_pass == ["tests/test_a.py::t"]


def test_app_auth_signs_a_jwt_then_uses_the_installation_token(tmp_path, fake, app_key):
    app = GitHubApp(APP_ID, app_key[0], fake.url)
    inst = app.installation(INSTALLATION)
    assert inst.token in fake.tokens and inst.expires_at.endswith("Z")
    assert inst.repo("octo-org", "gradebook")["default_branch"] == "main"
    assert inst.permission("octo-org", "gradebook", "collab-carol") == "maintain"
    assert inst.permission("octo-org", "gradebook", "nobody") == "none"
    assert [r.auth for r in fake.requests] == ["jwt", "token", "token", "token"]
    # A key that is not the app's: GitHub refuses the JWT.
    with pytest.raises(GitHubError, match="401"):
        GitHubApp(APP_ID, _key()[0], fake.url).installation(INSTALLATION)
    with pytest.raises(GitHubError, match="404"):
        app.installation(INSTALLATION + 1)


def test_the_rate_gate_waits_for_the_reset_when_the_quota_is_nearly_spent():
    waits: list[float] = []
    gate = RateGate(min_remaining=5, max_wait=600, sleep=waits.append)
    reset = time.time() + 30

    def response(remaining: int, at: float) -> httpx.Response:
        return httpx.Response(200, headers={"X-RateLimit-Remaining": str(remaining),
                                            "X-RateLimit-Reset": str(int(at))})

    gate.observe(response(4000, reset))
    gate.before_call()
    assert waits == []
    gate.observe(response(3, reset))
    gate.before_call()
    assert len(waits) == 1 and 25 < waits[0] <= 32
    gate.observe(response(0, time.time() + 3600))
    with pytest.raises(GitHubError, match="rate limit is spent"):
        gate.before_call()
