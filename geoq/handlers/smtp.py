"""`geoq.handlers.smtp:send` — one mail per job over a route's pool of reused SMTP connections.

Route options (checked once when the worker starts):

    host: localhost          the SMTP server
    port: 25                 default 465 with ssl, 587 with starttls
    ssl: false               TLS from the first byte (SMTPS)
    starttls: false          upgrade with STARTTLS; refused to go on in clear if the server does not offer it
    username / password      AUTH after TLS; both or neither, and only with ssl or starttls
    timeout: 30s             for connecting and for each server reply
    from: ""                 the sender when a payload names none
    max_connections: 10      connections open at once; more jobs wait for a free one
    ca_file: ""              a CA bundle to check the server's certificate against (default: the system's)
    verify: true             false skips certificate checks (test servers only)

Payload: ``{to, subject, body, from?, html?, cc?, bcc?, reply_to?, headers?}``;
to, cc, bcc and reply_to take one address or a list. The message is built
with the standard library's email package (html as an alternative part), Bcc
goes to the envelope only.

Outcome: the result is ``{"accepted": [...], "message_id": "<...>"}`` plus
``"refused": {address: reply}`` when the server refused some recipients but
took others. A 4xx reply, a lost connection or a timeout retries with the
route's backoff (a 4xx for any recipient retries the whole mail before it is
sent, so nobody receives it twice); a 5xx reply to the sender, to every
recipient or to the message fails at once with the server's reply text; a
malformed payload fails at once. Failures to connect, to start TLS or to log
in retry, since they are the route's trouble rather than the mail's.

Connections are checked before reuse without a round trip (a server that
closed an idle connection has made it readable), and a connection found
closed at the first command is replaced once at no cost to the job.
The password never appears in results, logs or error messages.

Each mail's Message-ID is derived from its job's id (`job_message_id`), unless the payload's
headers set one, so a mail sent twice by a job run twice after a worker's crash is
recognisable at the other end. The replies 421 and 451 (the server asks us to come back
later) raise geoq.errors.Throttled: a retry with the route's backoff, or on a route with
``limits.adaptive`` a pause of the job's key (say, its recipient domain) for every worker.
"""

from __future__ import annotations

import datetime
import email.policy
import email.utils
import os
import re
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Mapping

from geoq.config.schema import Check, boolean, duration, integer, optional_text
from geoq.errors import ConfigError, Fail, Retry, Throttled
from geoq.handlers.options import checked
from geoq.handlers.pools import ConnectionPool, Stale, discard
from geoq.job import Job

__all__ = ["Send", "SmtpOptions", "send"]

# Built with 7bit transfer encodings so that no server needs 8BITMIME; sent with CRLF line ends.
_BUILD = email.policy.SMTP.clone(cte_type="7bit")
_WIRE_UTF8 = email.policy.SMTPUTF8
PAYLOAD_KEYS = frozenset({"to", "subject", "body", "from", "html", "cc", "bcc", "reply_to", "headers"})
# Headers a payload may not set through "headers": they have their own keys, or belong to the MIME structure.
RESERVED_HEADERS = frozenset({"from", "to", "cc", "bcc", "reply-to", "subject", "content-type",
                              "content-transfer-encoding", "mime-version"})


@dataclass(frozen=True, slots=True)
class SmtpOptions:
    host: str = "localhost"
    port: int = 25
    ssl: bool = False
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    sender: str | None = None
    max_connections: int = 10
    ca_file: str | None = None
    verify: bool = True


_CHECKS: dict[str, Check] = {  # "" and null mean "not set" for the texts
    "host": optional_text, "port": integer(1), "ssl": boolean, "starttls": boolean, "username": optional_text,
    "password": optional_text, "timeout": duration(positive=True), "from": optional_text,
    "max_connections": integer(1), "ca_file": optional_text, "verify": boolean,
}


def parse_options(given: Mapping[str, Any]) -> SmtpOptions:
    """Route options -> SmtpOptions; ConfigError naming the option (never a password's value)."""
    values = {"sender" if name == "from" else name: value
              for name, value in checked(given, _CHECKS, hidden={"password"}).items() if value is not None}
    values.setdefault("port", 465 if values.get("ssl") else 587 if values.get("starttls") else 25)
    options = SmtpOptions(**values)
    _check_combination(options)
    return options


def _check_combination(o: SmtpOptions) -> None:
    if o.ssl and o.starttls:
        raise ConfigError("options 'ssl' and 'starttls' exclude each other: ssl is TLS from the start")
    if (o.username is None) != (o.password is None):
        raise ConfigError("options 'username' and 'password' go together")
    if o.username is not None and not (o.ssl or o.starttls):
        raise ConfigError("options 'username'/'password' need 'ssl' or 'starttls': "
                          "credentials would cross the network in clear")
    if o.sender is not None and not _address_of(o.sender):
        raise ConfigError(f"option 'from': {o.sender!r} is not an email address")
    if o.ca_file is not None and not os.path.isfile(o.ca_file):
        raise ConfigError(f"option 'ca_file': no such file {o.ca_file!r}")


# --- the message ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str                      # addr-spec for MAIL FROM
    recipients: tuple[str, ...]      # addr-specs for RCPT TO: to + cc + bcc, each once
    data: bytes
    message_id: str
    international: bool              # needs SMTPUTF8


def job_message_id(job_id: str, sender: str) -> str:
    """The Message-ID of a job's mail: "<geoq.ID@DOMAIN>", the sender's domain, the id with every
    character a Message-ID may not hold written as =XX (and "=" itself), so it reads back as the id."""
    domain = _address_of(sender).rpartition("@")[2] or "geoq.invalid"
    return f"<geoq.{_ID_UNSAFE.sub(lambda m: f'={ord(m[0]):02X}', job_id)}@{domain}>"


_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_+/-]")


def build_envelope(payload: Any, default_sender: str | None, job_id: str | None = None) -> Envelope:
    """The message and its envelope; Fail for a payload no retry could fix. With `job_id`, the
    Message-ID is the job's (job_message_id), else a fresh one."""
    if not isinstance(payload, dict):
        raise Fail("payload must be an object with 'to', 'subject' and 'body'")
    unknown = sorted(set(payload) - PAYLOAD_KEYS)
    if unknown:
        raise Fail(f"unknown payload key {unknown[0]!r}")
    to, cc, bcc = (_addresses(payload, key) for key in ("to", "cc", "bcc"))
    if not to + cc + bcc:
        raise Fail("payload 'to' names no recipient")
    sender = payload.get("from") or default_sender
    if not isinstance(sender, str) or not _address_of(sender):
        raise Fail("no sender: set payload 'from' or the route option 'from'" if not sender else
                   f"payload 'from': {sender!r} is not an email address")
    recipients = tuple(dict.fromkeys(_address_of(a) for a in to + cc + bcc))
    envelope_from = _address_of(sender)
    message_id = job_message_id(job_id, sender) if job_id is not None else None
    plain = _plain_message(payload, sender, to, cc, message_id)
    if plain is not None:
        return Envelope(envelope_from, recipients, plain[0], plain[1], False)
    try:
        message = _message(payload, sender, to, cc, message_id)
    except (ValueError, TypeError) as e:  # the email package's verdict on a header or body
        raise Fail(f"payload cannot be made into a message: {e}") from None
    international = not all(a.isascii() for a in (envelope_from, *recipients))
    data = message.as_bytes(policy=_WIRE_UTF8 if international else _BUILD)
    return Envelope(envelope_from, recipients, data, str(message["Message-ID"]), international)


# The common mail, written out directly: the email package's header objects, parsing and folding
# cost most of the CPU of a send. Only for input whose bytes cannot differ from the package's
# (tests/handlers/test_smtp_plain.py compares them): ASCII addresses without comments or quotes,
# a display name of plain words, a printable ASCII subject and body, no line longer than 78.
_ADDR = r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
_PLAIN_ADDRESS = re.compile(_ADDR).fullmatch
_PLAIN_SENDER = re.compile(rf"{_ADDR}|[A-Za-z0-9]+(?: [A-Za-z0-9]+)* <{_ADDR}>").fullmatch
_PLAIN_SUBJECT = re.compile(r"[!-~]+(?: [!-~]+)*").fullmatch
_PLAIN_BODY = re.compile(r"[ -~\t\r\n]*").fullmatch
_PLAIN_KEYS = frozenset({"to", "cc", "bcc", "subject", "body", "from"})
MAX_LINE = 78  # the SMTP policy's max_line_length: longer lines are folded or encoded
_PLAIN_TAIL = 'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: 7bit\r\nMIME-Version: 1.0\r\n\r\n'


def _plain_message(payload: dict[str, Any], sender: str, to: list[str], cc: list[str],
                   message_id: str | None = None) -> tuple[bytes, str] | None:
    """(the message's bytes, its Message-ID) as _message and as_bytes would make them; None for any
    payload outside the plain shape, which then takes the email package's way."""
    subject, body = payload.get("subject", ""), payload.get("body", "")
    if (not payload.keys() <= _PLAIN_KEYS or not isinstance(subject, str) or not isinstance(body, str)
            or not _PLAIN_SENDER(sender) or not all(_PLAIN_ADDRESS(a) for a in to + cc)
            or not _PLAIN_SUBJECT(subject) or "=?" in subject or not _PLAIN_BODY(body)):
        return None
    lines = body.splitlines()
    head = [f"From: {sender}", *([f"To: {', '.join(to)}"] if to else []),
            *([f"Cc: {', '.join(cc)}"] if cc else []), f"Subject: {subject}"]
    if any(len(line) > MAX_LINE for line in head) or any(len(line) > MAX_LINE for line in lines):
        return None
    message_id = message_id or email.utils.make_msgid(domain=_address_of(sender).rpartition("@")[2] or None)
    date = email.utils.format_datetime(datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0))
    text = "\r\n".join([*head, f"Date: {date}", f"Message-ID: {message_id}", _PLAIN_TAIL]) + "\r\n".join(lines)
    return (text + "\r\n").encode("ascii"), message_id


def _message(payload: dict[str, Any], sender: str, to: list[str], cc: list[str],
             message_id: str | None = None) -> EmailMessage:
    message = EmailMessage(policy=_BUILD)
    message["From"] = sender
    if to:
        message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    reply_to = _addresses(payload, "reply_to")
    if reply_to:
        message["Reply-To"] = ", ".join(reply_to)
    message["Subject"] = _string(payload, "subject")
    for name, value in _extra_headers(payload.get("headers")).items():
        message[name] = value
    if "Date" not in message:
        message["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
    if "Message-ID" not in message:
        message["Message-ID"] = message_id or email.utils.make_msgid(domain=_address_of(sender).rpartition("@")[2] or None)
    body, html = _string(payload, "body"), payload.get("html")
    if html is not None and not isinstance(html, str):
        raise Fail("payload 'html' must be a string")
    if body or not html:
        message.set_content(body)
        if html:
            message.add_alternative(html, subtype="html")
    else:
        message.set_content(html, subtype="html")
    return message


def _string(payload: dict[str, Any], key: str) -> str:
    value = payload.get(key, "")
    if not isinstance(value, str):
        raise Fail(f"payload {key!r} must be a string")
    return value


def _addresses(payload: dict[str, Any], key: str) -> list[str]:
    value = payload.get(key)
    items = [] if value is None else [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(a, str) and a.strip() for a in items):
        raise Fail(f"payload {key!r} must be an address or a list of addresses")
    for item in items:
        if not _address_of(item) or any(c in item for c in "\r\n"):
            raise Fail(f"payload {key!r}: {item!r} is not an email address")
    return [a.strip() for a in items]


def _address_of(text: str) -> str:
    """The addr-spec in 'Name <a@b>' or 'a@b'; "" when there is not exactly one with an @."""
    if _PLAIN_ADDRESS(text):  # what getaddresses answers for it, a tenth of the cost
        return text
    pairs = email.utils.getaddresses([text])
    if len(pairs) != 1 or "@" not in pairs[0][1]:
        return ""
    return pairs[0][1]


def _extra_headers(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise Fail("payload 'headers' must map header names to strings")
    for name in value:
        if name.lower() in RESERVED_HEADERS:
            raise Fail(f"payload 'headers' may not set {name}: it has its own payload key or is MIME structure")
    return value


# --- one SMTP transaction -------------------------------------------------------------------


class _Reply(Exception):
    """The server refused with a reply; `keep` tells whether the connection is still good."""

    def __init__(self, code: int, text: str, command: str, keep: bool) -> None:
        super().__init__(f"SMTP {code} {text} (in reply to {command})")
        self.code, self.keep = code, keep

    def signal(self) -> Exception:
        if 500 <= self.code <= 599:
            return Fail(str(self))
        return Throttled(reason=str(self)) if self.code in THROTTLING else Retry(reason=str(self))


THROTTLING = frozenset({421, 451})   # "service not available" and "try again later": the server asks us to wait


class Closing(Stale):
    """The server answered 421 to MAIL: it is closing the session. A fresh connection may try
    once at no risk (nothing was sent); if that one closes too, the server asks us to wait."""


def _reply_text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())[:400]


def transact(conn: smtplib.SMTP, env: Envelope) -> dict[str, Any]:
    """MAIL, RCPT for each recipient, DATA. Raises Stale, _Reply, or the connection's own errors."""
    options = ["SMTPUTF8"] if env.international else []
    if env.international and not conn.has_extn("smtputf8"):
        raise _Reply(553, "server does not offer SMTPUTF8, needed for a non-ASCII address", "MAIL", True)
    try:
        code, reply = conn.mail(env.sender, options)
    except (smtplib.SMTPServerDisconnected, OSError) as e:
        raise Stale(f"connection lost before MAIL: {type(e).__name__}") from None
    if code == 421:
        raise Closing(f"server closing: SMTP 421 {_reply_text(reply)}")
    if code != 250:
        raise _Reply(code, _reply_text(reply), f"MAIL FROM <{env.sender}>", _reset(conn))
    accepted, refused = _recipients(conn, env)
    try:
        code, reply = conn.data(env.data)
    except smtplib.SMTPDataError as e:  # DATA itself refused, before the message was sent
        raise _Reply(e.smtp_code, _reply_text(e.smtp_error), "DATA", e.smtp_code != 421 and _reset(conn)) from None
    if code != 250:
        raise _Reply(code, _reply_text(reply), "end of message data", code != 421)
    result: dict[str, Any] = {"accepted": accepted, "message_id": env.message_id}
    if refused:
        result["refused"] = {rcpt: f"{c} {text}" for rcpt, (c, text) in refused.items()}
    return result


def _recipients(conn: smtplib.SMTP, env: Envelope) -> tuple[list[str], dict[str, tuple[int, str]]]:
    """Accepted and refused recipients; raises _Reply unless the mail should go to the accepted ones now."""
    accepted: list[str] = []
    refused: dict[str, tuple[int, str]] = {}
    for rcpt in env.recipients:
        code, reply = conn.rcpt(rcpt)
        if code in (250, 251):
            accepted.append(rcpt)
        else:
            refused[rcpt] = (code, _reply_text(reply))
    for rcpt, (code, text) in refused.items():
        if not 500 <= code <= 599:  # a temporary refusal: the whole mail waits, nobody gets it twice
            raise _Reply(code, text, f"RCPT TO <{rcpt}>", code != 421 and _reset(conn))
    if not accepted:
        rcpt, (code, text) = next(iter(refused.items()))
        raise _Reply(code, text, f"RCPT TO <{rcpt}>", _reset(conn))
    return accepted, refused


def _reset(conn: smtplib.SMTP) -> bool:
    """RSET after a refusal; whether the connection can be used again."""
    try:
        return conn.rset()[0] == 250
    except (smtplib.SMTPException, OSError):
        return False


# --- new connections ------------------------------------------------------------------------


class SmtpConnector:
    """Opens the route's SMTP sessions, for its ConnectionPool (geoq.handlers.pools)."""

    def __init__(self, options: SmtpOptions, tls: ssl.SSLContext | None) -> None:
        self.options = options
        self._tls = tls

    def open(self) -> smtplib.SMTP:
        """A new connection, greeted, on TLS and logged in as configured; Retry when that fails."""
        o = self.options
        where = f"{o.host}:{o.port}"
        try:
            if o.ssl:
                conn: smtplib.SMTP = smtplib.SMTP_SSL(o.host, o.port, timeout=o.timeout, context=self._tls)
            else:
                conn = smtplib.SMTP(o.host, o.port, timeout=o.timeout)
        except smtplib.SMTPConnectError as e:
            raise Retry(reason=f"SMTP server {where} refused the session: {e.smtp_code} "
                               f"{_reply_text(e.smtp_error)}") from None
        except (smtplib.SMTPException, OSError) as e:
            raise Retry(reason=f"cannot connect to SMTP server {where}: {_describe(e)}") from None
        try:
            self._prepare(conn)
        except BaseException:
            discard(conn)
            raise
        return conn

    def _prepare(self, conn: smtplib.SMTP) -> None:
        o = self.options
        where = f"{o.host}:{o.port}"
        try:
            conn.ehlo_or_helo_if_needed()
            if o.starttls:
                conn.starttls(context=self._tls)
                conn.ehlo()
            if o.username is not None and o.password is not None:
                conn.login(o.username, o.password)
        except smtplib.SMTPNotSupportedError as e:
            raise Retry(reason=f"SMTP server {where}: {e}") from None
        except smtplib.SMTPAuthenticationError as e:
            raise Retry(reason=f"SMTP server {where} refused the login of user {o.username!r}: "
                               f"{e.smtp_code} {_reply_text(e.smtp_error)}") from None
        except smtplib.SMTPResponseException as e:
            raise Retry(reason=f"SMTP server {where} refused the session set-up: {e.smtp_code} "
                               f"{_reply_text(e.smtp_error)}") from None
        except (smtplib.SMTPException, OSError) as e:
            raise Retry(reason=f"SMTP session set-up with {where} failed: {_describe(e)}") from None


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split())[:300]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# --- the handler ------------------------------------------------------------------------------


class Send:
    """The handler built once per route: its options, TLS context and connection pool."""

    def __init__(self, **options: Any) -> None:
        self.options = parse_options(options)
        connector = SmtpConnector(self.options, _tls_context(self.options))
        self.pool: ConnectionPool[smtplib.SMTP] = ConnectionPool(self.options.max_connections, connector.open)

    def __repr__(self) -> str:
        return f"Send({self.options!r})"

    def __call__(self, job: Job) -> dict[str, Any]:
        envelope = build_envelope(job.payload, self.options.sender, job.id)
        try:  # the pool replaces a reused connection found closed; a new one closing is the server's trouble
            return self.pool.use(lambda conn, reused: self._send_on(conn, envelope))
        except Closing as e:
            raise Throttled(reason=str(e)) from None
        except Stale as e:
            raise Retry(reason=str(e)) from None

    def _send_on(self, conn: smtplib.SMTP, envelope: Envelope) -> dict[str, Any]:
        """One transaction; the connection goes back to the pool only if it is known to be in a clean state."""
        keep = False
        try:
            result = transact(conn, envelope)
            keep = True
            return result
        except _Reply as reply:
            keep = reply.keep
            raise reply.signal() from None
        except (smtplib.SMTPException, OSError) as e:
            where = f"{self.options.host}:{self.options.port}"
            raise Retry(reason=f"SMTP connection to {where} failed mid-message: {_describe(e)}") from None
        finally:
            if keep:
                self.pool.give(conn)
            else:
                discard(conn)

    def close(self) -> None:
        """Close the idle connections, and each busy one as its job ends (the worker simply exits;
        tests and scripts may call this)."""
        self.pool.close()


send = Send  # DESIGN.md routes to geoq.handlers.smtp:send; a class there is built once per route


def _tls_context(o: SmtpOptions) -> ssl.SSLContext | None:
    if not (o.ssl or o.starttls):
        return None
    try:
        context = ssl.create_default_context(cafile=o.ca_file)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"option 'ca_file': cannot load {o.ca_file!r}: {_describe(e)}") from None
    if not o.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
