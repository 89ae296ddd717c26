"""The web page at ``/``: static files shipped in the package, served by every worker.

The page holds no data: its script reads the public query API (``/v1/...``) from the
browser, so the API's bearer token guards the data as it does for curl (the page asks
for the token when the API answers 401). Everything the page loads comes from this
worker: a Content-Security-Policy of ``'self'`` keeps it from reaching any CDN, so it
works without internet. Files are read once, at start-up, from ``streamer/api/static``;
only files found there are served, by exact name.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from importlib import resources
from importlib.resources.abc import Traversable

import faust
from faust.web import Request, Response, View

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
}
_LICENSE_SUFFIX = ".LICENSE"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _content_type(name: str) -> str | None:
    if name.endswith(_LICENSE_SUFFIX):
        return _CONTENT_TYPES[".txt"]
    for suffix, content_type in _CONTENT_TYPES.items():
        if name.endswith(suffix):
            return content_type
    return None


def load_static() -> dict[str, tuple[bytes, str]]:
    """``relative path`` -> ``(content, content type)`` of every servable static file."""
    files: dict[str, tuple[bytes, str]] = {}
    root = resources.files("streamer.api") / "static"

    def walk(folder: Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            name = f"{prefix}{entry.name}"
            if entry.is_dir():
                walk(entry, f"{name}/")
                continue
            content_type = _content_type(entry.name)
            if content_type is not None:
                files[name] = (entry.read_bytes(), content_type)

    walk(root, "")
    return files


def render_index(template: bytes, window_names: Sequence[str]) -> bytes:
    """The page with this worker's window names (its only configuration) in a meta tag."""
    names = ",".join(html.escape(name, quote=True) for name in window_names)
    marker = b'<meta name="streamer-windows" content="">'
    if marker not in template:
        raise ValueError("index.html lost its streamer-windows meta tag")
    return template.replace(marker, f'<meta name="streamer-windows" content="{names}">'.encode())


def register_page(app: faust.App, window_names: Sequence[str]) -> None:
    """``GET /`` (the page) and ``GET /static/<file>``, ``/static/vendor/<file>``."""
    files = load_static()
    template, index_type = files.pop("index.html")
    index = render_index(template, window_names)

    def send(web: View, name: str) -> Response:
        found = files.get(name)
        if found is None:
            return web.json({"error": f"no such file: {name[:80]}"}, status=404)
        content, content_type = found
        return web.bytes(content, headers={**SECURITY_HEADERS, "Content-Type": content_type})

    @app.page("/")
    async def page(web: View, request: Request) -> Response:
        return web.bytes(index, headers={**SECURITY_HEADERS, "Content-Type": index_type})

    @app.page("/static/{name}")
    async def static(web: View, request: Request, name: str) -> Response:
        return send(web, name)

    @app.page("/static/vendor/{name}")
    async def vendor(web: View, request: Request, name: str) -> Response:
        return send(web, f"vendor/{name}")
