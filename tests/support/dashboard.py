"""The dashboard for tests: served in this process by wsgiref, or run as `bin/geoq dashboard`;
an HTTP client that keeps cookies and reads form tokens as a browser would; dead jobs buried
the worker's way (through a processing list and dead.lua)."""

from __future__ import annotations

import base64
import html
import http.cookiejar
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import redis

from geoq import job as jobs
from geoq import records
from geoq.broker import keys
from geoq.broker.broker import Broker, Bury, Retention, Settlement
from geoq.job import Job
from tests.support.waiting import wait_until
from tests.support.worker_process import ROOT

GEOQ = ROOT / "bin" / "geoq"


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class ServedApp:
    """A WSGI app served by wsgiref on a free loopback port, in a thread, until close()."""

    def __init__(self, app: Any) -> None:
        self.server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class DashboardProcess:
    """`bin/geoq -c CONFIG dashboard --listen 127.0.0.1:0 ARGS`; .url once it has said where it listens."""

    def __init__(self, config: Path, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(GEOQ), "-c", str(config), "dashboard",
                                      "--listen", "127.0.0.1:0", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        found = re.search(r"(http://\S+?)/", line)
        assert found, (line, self.proc.stderr.read() if self.proc.poll() is not None else "")
        self.url = found.group(1)

    def stop(self, signum: int = signal.SIGINT) -> tuple[int, str]:
        """Signal it and return its exit status and stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        _, err = self.proc.communicate(timeout=15)
        return self.proc.returncode, err

    def __enter__(self) -> "DashboardProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=15)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]
    text: str

    @property
    def message(self) -> str:
        """The one line an error answer gives: an error page's message, or a plain-text body."""
        found = re.search(r'<p class="error">(.*?)</p>', self.text, re.S)
        return _unescape(found.group(1)) if found else self.text.strip()

    def forms(self) -> list[dict[str, str]]:
        """Every form's action and hidden fields, as the page holds them (unescaped)."""
        out = []
        for match in re.finditer(r'<form method="post" action="([^"]+)"[^>]*>(.*?)</form>', self.text, re.S):
            fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', match.group(2)))
            out.append({"action": _unescape(match.group(1)), **{k: _unescape(v) for k, v in fields.items()}})
        return out

    def form(self, action: str, **match: str) -> dict[str, str]:
        for form in self.forms():
            if form["action"].endswith(action) and all(form.get(k) == v for k, v in match.items()):
                return form
        raise AssertionError(f"no form {action} {match} on the page")


def _unescape(text: str) -> str:
    return html.unescape(text)


@dataclass
class Http:
    """A client with a cookie jar (as a browser), optional basic auth; never follows redirects."""

    base: str
    auth: tuple[str, str] | None = None
    jar: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)

    def _open(self, request: urllib.request.Request) -> Answer:
        if self.auth:
            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            request.add_header("Authorization", "Basic " + token)
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect)
        try:
            with opener.open(request, timeout=10) as reply:
                return Answer(reply.status, dict(reply.headers), reply.read().decode())
        except urllib.error.HTTPError as e:
            return Answer(e.code, dict(e.headers), e.read().decode())

    def get(self, path: str) -> Answer:
        return self._open(urllib.request.Request(self.base + path))

    def post(self, path: str, fields: Mapping[str, str]) -> Answer:
        body = urllib.parse.urlencode(fields).encode()
        return self._open(urllib.request.Request(self.base + path, data=body, method="POST",
                                                 headers={"Content-Type": "application/x-www-form-urlencoded"}))

    def submit(self, form: Mapping[str, str]) -> Answer:
        """POST a form read from a page (its action is a path from the server's root)."""
        fields = {k: v for k, v in form.items() if k != "action"}
        root = re.match(r"https?://[^/]+", self.base)
        assert root
        return self._open(urllib.request.Request(root.group(0) + form["action"],
                                                 data=urllib.parse.urlencode(fields).encode(), method="POST",
                                                 headers={"Content-Type": "application/x-www-form-urlencoded"}))


def redis_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1_000_000


def bury(client: redis.Redis, queue: str, payloads: Sequence[Any], job_type: str | Sequence[str] = "t.job",
         error: str = "RuntimeError: boom 7") -> list[Job]:
    """Dead jobs buried the worker's way: each fetched into a processing list, then moved to the
    dead set by the worker's own settle (dead.lua), with `error` as its last error. `job_type`:
    every job's, or one per payload (a group per type: one settle makes many groups)."""
    now = redis_now(client)
    types = [job_type] * len(payloads) if isinstance(job_type, str) else list(job_type)
    made = []
    for payload, one_type in zip(payloads, types, strict=True):
        job = Job(id=jobs.new_id(queue), type=one_type, queue=queue, payload=payload, attempt=0,
                  enqueued_at=now - 60, max_retries=0)
        envelope = records.encode(job, records.NO_LIMIT)
        record = records.encode_dead(queue, job, job.id, "max_retries", error, now, traceback=f"Traceback\n  {error}")
        made.append((job, envelope, record))
    client.rpush(keys.queue_keys(queue).processing("seeder"), *(e for _, e, _ in made))
    Broker(client).settle("seeder", [Settlement(queue, burials=[Bury(e, r, True, j.id, b"") for j, e, r in made])],
                          Retention(0, 10 ** 9, 10.0 ** 12))
    return [job for job, _, _ in made]


def wait_for_url(url: str, timeout: float = 10.0) -> None:
    def answers() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
    wait_until(answers, timeout=timeout, message=f"{url} did not answer")


