"""The page and its ASGI app (Starlette): ``/`` the page with the data inlined, ``/api/data``
the whole folder as JSON, ``/api/state`` a cheap version stamp the page polls every couple of
seconds to know when to fetch the data again.

The page is one HTML file with its CSS, JavaScript and data inlined, so the exported copy is
the same page with polling switched off: nothing is fetched from anywhere else.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

from patchswarm.tasks.viewer.data import ViewError, load, state

POLL_MS = 2000


def _static(name: str) -> str:
    return resources.files("patchswarm.tasks.viewer").joinpath("static", name).read_text()


def _json_for_script(data: Any) -> str:
    """JSON safe inside a <script> element: no '</' can end it early, no '<!--' opens a
    comment (model output can hold anything)."""
    text = json.dumps(data, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render_page(data: dict[str, Any], live: bool, interval_ms: int = POLL_MS) -> str:
    """The page for ``data``: polling the server when ``live``, else a static export."""
    parts = {"TITLE": _escape(data.get("title", "")), "STYLE": _static("style.css"),
             "SCRIPT": _static("app.js"), "DATA": _json_for_script(data),
             "MODE": _json_for_script({"live": live, "interval_ms": interval_ms})}
    # One pass over the template only: text inserted is never scanned again.
    return re.sub(r"__(TITLE|STYLE|SCRIPT|DATA|MODE)__", lambda m: parts[m.group(1)],
                  _static("page.html"))


def _escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def export(path: Path | str, out: Path | str) -> Path:
    """Write the page for the run folder at ``path`` to ``out`` as one static file."""
    out = Path(out)
    out.write_text(render_page(load(path), live=False), encoding="utf-8")
    return out


def make_app(path: Path | str, interval_ms: int = POLL_MS):  # noqa: ANN201 - Starlette
    """The viewer's ASGI app for one run folder (checked once here, read on every request;
    plain functions, so Starlette reads the folder in its thread pool)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    folder = Path(path).resolve()
    load(folder)  # a folder the viewer cannot read is refused before serving

    headers = {"Cache-Control": "no-store"}

    def _error(exc: Exception) -> Response:
        return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=500,
                            headers=headers)

    def page(request: Request) -> Response:
        try:
            return HTMLResponse(render_page(load(folder), live=True, interval_ms=interval_ms),
                                headers=headers)
        except (ViewError, OSError, ValueError, KeyError) as exc:
            return HTMLResponse(f"<pre>{_escape(str(exc))}</pre>", status_code=500)

    def data(request: Request) -> Response:
        try:
            return JSONResponse(load(folder), headers=headers)
        except (ViewError, OSError, ValueError, KeyError) as exc:
            return _error(exc)

    def st(request: Request) -> Response:
        try:
            return JSONResponse(state(folder), headers=headers)
        except OSError as exc:
            return _error(exc)

    return Starlette(routes=[Route("/", page), Route("/api/data", data),
                             Route("/api/state", st)])
