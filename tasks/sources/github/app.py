"""The webhook's HTTP side: a Starlette app (``POST /webhook``, ``GET /healthz``) served by
uvicorn. A body is capped while it streams, before any signature work."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from patchswarm.tasks.sources.github.bot import Bot, BotConfig, RepairFn
from patchswarm.tasks.sources.github.client import GitHubApp, GitHubError


def create_app(config: BotConfig, sampler_factory: Callable[[], Any] | None = None,
               repair_fn: RepairFn | None = None, github: GitHubApp | None = None) -> Any:
    """The Starlette app: ``POST /webhook`` (and ``/``), ``GET /healthz``.

    ``sampler_factory`` is what the repair samples with (tests pass a replay sampler; by
    default the configured model starts on the first job). ``app.state.bot`` is the Bot.
    """
    try:
        from starlette.applications import Starlette
        from starlette.concurrency import run_in_threadpool
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route
    except ImportError as exc:
        raise GitHubError("the GitHub bot needs the `bot` extra: pip install "
                          f"'patchswarm[bot]' ({exc})") from exc

    bot = Bot(config, sampler_factory, repair_fn, github)

    cap = config.max_body
    too_large = {"error": f"the body is over {cap} bytes"}

    async def webhook(request: Request) -> JSONResponse:
        # Capped before it is read: a declared length over the cap is refused at once, and a
        # chunked body is counted as it streams, so at most ``cap`` bytes are ever held and
        # no signature is computed over more.
        size = request.headers.get("content-length")
        if size is not None and (not size.strip().isdigit() or int(size) > cap):
            bot.refused_bodies += 1
            return JSONResponse(too_large, status_code=413, headers={"Connection": "close"})
        chunks: list[bytes] = []
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > cap:
                bot.refused_bodies += 1
                return JSONResponse(too_large, status_code=413,
                                    headers={"Connection": "close"})
            chunks.append(chunk)
        body = b"".join(chunks)
        status, data = await run_in_threadpool(bot.handle, dict(request.headers), body)
        return JSONResponse(data, status_code=status)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "jobs": bot._outstanding,
                             "signature_checks": bot.signature_checks,
                             "refused_bodies": bot.refused_bodies})

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        bot.start()
        try:
            yield
        finally:
            await run_in_threadpool(bot.stop)  # the state file stays open for inspection

    app = Starlette(routes=[Route("/webhook", webhook, methods=["POST"]),
                            Route("/", webhook, methods=["POST"]),
                            Route("/healthz", health, methods=["GET"])],
                    lifespan=lifespan)
    app.state.bot = bot
    return app


def serve(config: BotConfig, host: str = "127.0.0.1", port: int = 8080,
          sampler_factory: Callable[[], Any] | None = None) -> None:
    import uvicorn

    uvicorn.run(create_app(config, sampler_factory), host=host, port=port,
                log_level="info", proxy_headers=True)
