"""Requests and responses of the dashboard's WSGI app, small and typed.

A request's query and form are read once into plain mappings (first value of each name);
the body is read only for a form POST, and at most MAX_BODY bytes of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any, Mapping
from urllib.parse import parse_qsl, urlencode

MAX_BODY = 64 * 1024   # every form of the dashboard is a few fields


class HttpError(Exception):
    """An answer other than the page: status and the one line that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str) -> HttpError:
    return HttpError(400, message)


def not_found(message: str) -> HttpError:
    return HttpError(404, message)


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str                     # below the app's mount point, "/" at least
    root: str                     # the mount point (SCRIPT_NAME), "" at the server's root
    query: Mapping[str, str]
    form: Mapping[str, str]
    cookies: Mapping[str, str]
    environ: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, Any]) -> "Request":
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        return cls(method, environ.get("PATH_INFO") or "/", str(environ.get("SCRIPT_NAME", "")).rstrip("/"),
                   _pairs(environ.get("QUERY_STRING", "")), _form(environ) if method == "POST" else {},
                   _cookies(environ.get("HTTP_COOKIE", "")), environ)

    def header(self, name: str) -> str | None:
        value = self.environ.get("HTTP_" + name.upper().replace("-", "_"))
        return None if value is None else str(value)

    @property
    def secure(self) -> bool:
        return self.environ.get("wsgi.url_scheme") == "https"

    def arg(self, name: str, default: str = "") -> str:
        """A query (or, for a POST, form) value, stripped; `default` when absent or empty."""
        value = (self.form.get(name) if self.method == "POST" else None) or self.query.get(name, "")
        return value.strip() or default

    def number(self, name: str, default: int, most: int = 10 ** 9) -> int:
        """A whole number >= 1 from the query; HttpError 400 naming the parameter otherwise."""
        raw = self.arg(name)
        if not raw:
            return default
        if not raw.isdigit() or not 1 <= int(raw) <= most:
            raise bad_request(f"{name}: expected a whole number from 1 to {most}, got {raw[:40]!r}")
        return int(raw)

    def url(self, path: str, **query: Any) -> str:
        """A link inside the app (mount point respected); empty query values are left out."""
        kept = {k: v for k, v in query.items() if v not in (None, "")}
        return self.root + path + ("?" + urlencode(kept) if kept else "")


def _pairs(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        out.setdefault(name, value)
    return out


def _form(environ: Mapping[str, Any]) -> dict[str, str]:
    kind = str(environ.get("CONTENT_TYPE", "")).split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise HttpError(415, "a form POST must be application/x-www-form-urlencoded")
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise bad_request("Content-Length is not a number") from None
    if length > MAX_BODY:
        raise HttpError(413, f"form too large ({length} bytes; at most {MAX_BODY})")
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    return _pairs(body.decode("utf-8", "replace"))


def _cookies(header: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


def redirect(location: str) -> Response:
    """303 See Other: after an action, the browser GETs the page again (no re-POST on reload)."""
    return Response(303, b"", "text/plain; charset=utf-8", [("Location", location)])
