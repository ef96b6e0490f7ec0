"""The dashboard as one WSGI application: guards, routing, static files and error pages.

Every request passes, in order: basic auth (when dashboard.username and password are set),
the route table (404, 405), then for a POST the read-only switch and the form token (403).
Pages read Redis through the admin Session; every answer carries a Content-Security-Policy
that allows only this app's own scripts and styles, so even a page that slipped an
unescaped payload through could run nothing.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import threading
from importlib import resources
from typing import Any, Callable, Iterable, Mapping

from geoq.admin.session import Session
from geoq.config import Config
from geoq.dashboard import security
from geoq.dashboard.html import card, el
from geoq.dashboard.http import HttpError, Request, Response, not_found
from geoq.dashboard.layout import View, page
from geoq.dashboard.pages import dead, job, overview, queues, scheduled, workers
from geoq.errors import InvalidJob, RedisAuthError, RedisUnavailable

log = logging.getLogger(__name__)

Handler = Callable[[Session, View], Response]
StartResponse = Callable[..., Any]

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
_HEADERS = [("Content-Security-Policy", CSP), ("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "same-origin")]
_REASONS = {200: "OK", 303: "See Other", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large", 415: "Unsupported Media Type",
            500: "Internal Server Error", 503: "Service Unavailable"}

ROUTES: Mapping[tuple[str, str], Handler] = {
    ("GET", "/"): overview.show,
    ("GET", "/queues"): queues.show,
    ("POST", "/queues/pause"): queues.pause,
    ("POST", "/queues/resume"): queues.resume,
    ("POST", "/queues/purge"): queues.purge,
    ("GET", "/workers"): workers.show,
    ("GET", "/scheduled"): scheduled.show,
    ("POST", "/scheduled/run"): scheduled.run_now,
    ("POST", "/scheduled/delete"): scheduled.delete,
    ("GET", "/dead"): dead.show,
    ("GET", "/dead/group"): dead.show_group,
    ("POST", "/dead/retry"): dead.retry,
    ("POST", "/dead/delete"): dead.delete,
    ("GET", "/job"): job.show,
    ("POST", "/job/cancel"): job.cancel,
}


def _static_files() -> dict[str, tuple[bytes, str]]:
    folder = resources.files("geoq.dashboard") / "static"
    out = {}
    for item in folder.iterdir():
        if item.is_file():
            kind = mimetypes.guess_type(item.name)[0] or "text/plain"  # the licence file
            out[item.name] = (item.read_bytes(), kind + ("; charset=utf-8" if kind.startswith("text/")
                                                         or kind.endswith("javascript") else ""))
    return out


class Dashboard:
    """The WSGI callable. One Session (and its connection pools) serves every request."""

    def __init__(self, config: Config, read_only: bool = False) -> None:
        self.config = config
        self.read_only = read_only or config.dashboard.read_only
        self.session = Session(config)
        self.static = _static_files()
        self._secret: bytes | None = None
        self._lock = threading.Lock()

    def __call__(self, environ: Mapping[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        response = self.respond(environ)
        headers = [("Content-Type", response.content_type), ("Content-Length", str(len(response.body))),
                   *_HEADERS, *response.headers]
        if not any(name == "Cache-Control" for name, _ in response.headers):
            headers.append(("Cache-Control", "no-store"))
        start_response(f"{response.status} {_REASONS.get(response.status, 'Error')}", headers)
        return [response.body]

    def respond(self, environ: Mapping[str, Any]) -> Response:
        """The answer to one request; never raises."""
        if not self._authorized(environ):
            return Response(401, b"401 Unauthorized: this dashboard needs a user name and password\n",
                            "text/plain; charset=utf-8", [("WWW-Authenticate", 'Basic realm="geoq", charset="UTF-8"')])
        request: Request | None = None
        try:
            request = Request.from_environ(environ)
            return self._route(request)
        except HttpError as e:
            return self._error(request, e.status, e.message)
        except InvalidJob as e:
            return self._error(request, 400, str(e))
        except (RedisUnavailable, RedisAuthError) as e:
            return self._error(request, 503, f"Redis is not answering: {e}")
        except Exception:  # noqa: BLE001 - a page that fails says so; the log keeps the traceback
            log.exception("dashboard: %s %s failed", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            return self._error(request, 500, "internal error: the dashboard's log has the details")

    def _authorized(self, environ: Mapping[str, Any]) -> bool:
        d = self.config.dashboard
        if not (d.username and d.password):
            return True
        return security.basic_auth_ok(environ.get("HTTP_AUTHORIZATION"), d.username, d.password)

    def _route(self, request: Request) -> Response:
        if request.path.startswith("/static/"):
            return self._file(request)
        method = "GET" if request.method == "HEAD" else request.method   # the server sends no body for HEAD
        handler = ROUTES.get((method, request.path.rstrip("/") or "/"))
        if handler is None:
            if any(path == (request.path.rstrip("/") or "/") for _, path in ROUTES):
                raise HttpError(405, f"{request.method} is not allowed on {request.path}")
            raise not_found(f"no page {request.path}")
        nonce = request.cookies.get(security.COOKIE)
        fresh = nonce is None or len(nonce) > 64
        nonce = security.new_nonce() if fresh or nonce is None else nonce
        if request.method == "POST":
            self._check_post(request, nonce if not fresh else None)
        view = View(request, self.read_only, security.form_token(self.secret(), nonce))
        response = handler(self.session, view)
        if fresh:
            response.headers.append(("Set-Cookie", _cookie(request, nonce)))
        return response

    def _check_post(self, request: Request, nonce: str | None) -> None:
        if self.read_only:
            raise HttpError(403, "this dashboard is read-only: actions are off")
        if not security.token_ok(self.secret(), nonce, request.form.get(security.FIELD)):
            raise HttpError(403, "missing or stale form token (CSRF check): reload the page and try again")

    def secret(self) -> bytes:
        """The key form tokens are signed with, shared through Redis by every dashboard process."""
        with self._lock:
            if self._secret is None:
                self._secret = self.session.broker.shared_secret(os.urandom(32))
            return self._secret

    def _file(self, request: Request) -> Response:
        found = self.static.get(request.path[len("/static/"):])
        if found is None or request.method not in ("GET", "HEAD"):
            raise not_found(f"no file {request.path}")
        return Response(200, found[0], found[1], [("Cache-Control", "public, max-age=3600")])

    def _error(self, request: Request | None, status: int, message: str) -> Response:
        line = f"{status} {_REASONS.get(status, 'Error')}: {message}"
        if request is None or request.method != "GET" or request.path.startswith("/static/"):
            return Response(status, (line + "\n").encode(), "text/plain; charset=utf-8")
        view = View(request, self.read_only, "")
        body = card(_REASONS.get(status, "Error"), el("p", message, class_="error"),
                    el("p", el("a", "← back to the overview", href=view.url("/"))))
        return Response(status, page(view, f"{status} {_REASONS.get(status, 'Error')}", body).encode())


def _cookie(request: Request, nonce: str) -> str:
    secure = "; Secure" if request.secure else ""
    return f"{security.COOKIE}={nonce}; Path={request.root or '/'}; HttpOnly; SameSite=Strict{secure}"
