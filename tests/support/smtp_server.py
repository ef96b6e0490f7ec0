"""A real SMTP server (aiosmtpd in a thread) for handler tests.

    with SmtpServer(starttls=True, auth=("user", "secret")) as server:
        ...  # route options: host=server.host, port=server.port, ca_file=server.cert_file
        server.messages      # every accepted message: Received(mail_from, rcpt_tos, data)

Behaviour for failure tests: ``fail_every=N`` answers 451 to every Nth
message at the end of DATA; ``reject_domain="bad.example"`` answers 550 to
recipients at that domain; ``idle_timeout=S`` closes connections idle for S
seconds; ``latency=S`` delays the reply to each message. ``connections``
counts the TCP connections accepted, ``peak_connections`` the most open at
once. STARTTLS uses a self-signed certificate for localhost and 127.0.0.1,
made with the openssl command line tool into a temporary directory;
``implicit_tls=True`` serves TLS from the first byte (SMTPS) with it instead.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.support.ports import free_port
from tests.support.waiting import wait_until


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    at: float  # when the server accepted it (unix seconds)


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate and key for localhost / 127.0.0.1 (the certificate is its own CA)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-addext", "basicConstraints=critical,CA:TRUE"],
        check=True, capture_output=True, timeout=60)
    return cert, key


class _Behaviour:
    """The aiosmtpd handler: what the server answers, and what it received."""

    def __init__(self, owner: "SmtpServer") -> None:
        self.owner = owner

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        domain = address.rpartition("@")[2].lower()
        owner = self.owner
        with owner._lock:
            owner.rcpts.append((time.time(), domain))
            tempfail = domain == owner.tempfail_domain and owner.tempfails < owner.tempfail_times
            owner.tempfails += tempfail
        if tempfail:
            return f"{owner.tempfail_code} 4.7.0 {domain}: too many messages, try again later (planned)"
        if self.owner.reject_domain and domain == self.owner.reject_domain:
            return f"550 5.1.1 <{address}>: recipient domain {domain} is not accepted here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.owner.latency:
            await asyncio.sleep(self.owner.latency)
        with self.owner._lock:
            self.owner.data_commands += 1
            refuse = bool(self.owner.fail_every) and self.owner.data_commands % self.owner.fail_every == 0
            if not refuse:
                self.owner.messages.append(Received(str(envelope.mail_from), tuple(envelope.rcpt_tos),
                                                    bytes(envelope.original_content or b""), time.time()))
        if refuse:
            return "451 4.3.0 try again later (planned)"
        return "250 2.0.0 accepted"


class _CountingSMTP(SMTP):
    owner: "SmtpServer"
    _counted = False

    def connection_made(self, transport: Any) -> None:
        if not self._counted:  # STARTTLS calls this again for the same connection
            self._counted = True
            self.owner._connected()
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted:
            self._counted = False
            self.owner._disconnected()
        super().connection_lost(error)


class _Controller(Controller):
    def __init__(self, owner: "SmtpServer", **kwargs: Any) -> None:
        self.owner = owner
        super().__init__(_Behaviour(owner), **kwargs)

    def factory(self) -> SMTP:
        server = _CountingSMTP(self.handler, **self.SMTP_kwargs)
        server.owner = self.owner
        return server


class SmtpServer:
    """An aiosmtpd server on a free port of 127.0.0.1; start()/stop() or use it as a context manager."""

    def __init__(self, *, starttls: bool = False, implicit_tls: bool = False, auth: tuple[str, str] | None = None, fail_every: int = 0,
                 reject_domain: str | None = None, idle_timeout: float | None = None, latency: float = 0.0,
                 tempfail_domain: str | None = None, tempfail_code: int = 421, tempfail_times: int = 1) -> None:
        self.host, self.port = "127.0.0.1", free_port()
        self.starttls, self.implicit_tls, self.auth = starttls, implicit_tls, auth
        self.fail_every, self.reject_domain, self.latency = fail_every, reject_domain, latency
        self.idle_timeout = idle_timeout
        # RCPT for tempfail_domain answers tempfail_code (421, 451) the first tempfail_times times
        self.tempfail_domain, self.tempfail_code, self.tempfail_times = tempfail_domain, tempfail_code, tempfail_times
        self.tempfails = 0
        self.rcpts: list[tuple[float, str]] = []   # (time, domain) of every RCPT command
        self.messages: list[Received] = []
        self.data_commands = 0
        self.connections = self.open_connections = self.peak_connections = 0
        self.logins: list[str] = []
        self._lock = threading.Lock()
        self._dir = Path(tempfile.mkdtemp(prefix="geoq-smtp-"))
        self.cert_file: Path | None = None
        self._controller: _Controller | None = None

    def options(self) -> dict[str, Any]:
        """Route options for geoq.handlers.smtp:Send against this server."""
        opts: dict[str, Any] = {"host": self.host, "port": self.port, "timeout": "5s"}
        if self.starttls or self.implicit_tls:
            opts.update(ca_file=str(self.cert_file), **({"starttls": True} if self.starttls else {"ssl": True}))
        if self.auth:
            opts.update(username=self.auth[0], password=self.auth[1])
        return opts

    def start(self) -> "SmtpServer":
        kwargs: dict[str, Any] = {"hostname": self.host, "port": self.port}
        if self.starttls or self.implicit_tls:
            self.cert_file, key = make_certificate(self._dir)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.cert_file, key)
            if self.starttls:
                kwargs.update(tls_context=context, require_starttls=True)
            else:
                kwargs.update(ssl_context=context)
        if self.auth:
            kwargs.update(authenticator=self._authenticate, auth_require_tls=self.starttls)
        if self.idle_timeout is not None:
            kwargs["timeout"] = self.idle_timeout
        self._controller = _Controller(self, **kwargs)
        self._controller.start()
        # The controller's own start-up probe is not a client's connection: wait for it to go, then forget it.
        wait_until(lambda: self.open_connections == 0, timeout=10, message="SMTP start-up probe to close")
        with self._lock:
            self.connections = self.peak_connections = 0
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def recipients(self) -> list[str]:
        with self._lock:
            return [r for m in self.messages for r in m.rcpt_tos]

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and self.auth is not None
              and (auth_data.login.decode(), auth_data.password.decode()) == self.auth)
        if ok:
            with self._lock:
                self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)

    def _connected(self) -> None:
        with self._lock:
            self.connections += 1
            self.open_connections += 1
            self.peak_connections = max(self.peak_connections, self.open_connections)

    def _disconnected(self) -> None:
        with self._lock:
            self.open_connections -= 1

    def __enter__(self) -> "SmtpServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
