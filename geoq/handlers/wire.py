"""HTTP/1.1 on one socket, for geoq.handlers.http: a request sent as one buffer, the answer parsed from bytes.

    conn = Wire(sock)                                   # a connected (TLS-wrapped) socket
    answer = conn.exchange(head + body, "GET", max_body)

Why not http.client: in the worker, at concurrency 1,000, http.client's request
assembly (putrequest / putheader / endheaders), the buffered file it opens on
the socket for every response and its header parsing through the email
package cost more CPU per keep-alive request than the rest of the job. This
keeps http.client's wire behaviour (the Host and Accept-Encoding headers it
adds, Content-Length, when a connection closes, how the body is framed) and
raises its exception classes (RemoteDisconnected, BadStatusLine,
IncompleteRead, LineTooLong), so callers tell failures apart as before.
"""

from __future__ import annotations

import http.client
import re
import socket
from typing import NamedTuple

__all__ = ["Answer", "Wire", "check_host", "host_header", "request_head"]

RECV = 65536
MAX_HEAD = 65536 + 100 * 1024   # http.client: 64 KiB lines, at most 100 headers
MAX_HEADERS = 100
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LEGAL_NAME = re.compile(rb"[^:\s][^:\r\n]*").fullmatch   # http.client's own rule for header names
_URL_CONTROL = re.compile("[\x00-\x20\x7f]").search         # http.client refuses these in a host
_BODY_METHODS = frozenset({"PATCH", "POST", "PUT"})        # sent with Content-Length: 0 when bodiless
_legal_names: set[str] = set()                             # names already checked


class Answer(NamedTuple):
    status: int
    reason: str
    headers: dict[str, str]   # lower-case name -> the first value (Retry-After: all, joined by ", ")
    body: bytes               # at most max_body bytes
    truncated: bool
    reusable: bool            # read to its end, and neither side asked to close


def request_head(method: str, target: str, host: str, headers: dict[str, str], body: bytes | None) -> bytes:
    """The request line and headers as http.client sends them: Host (unless given), Accept-Encoding:
    identity (unless given), Content-Length where http.client adds one, then the headers in order.

    `host` is the Host header's value (host[:port]). ValueError for a header name http.client refuses,
    UnicodeEncodeError for a value outside Latin-1, as http.client raises them."""
    lines = [f"{method} {target} HTTP/1.1"]
    if "host" not in headers:
        lines.append(f"Host: {host}")
    if "accept-encoding" not in headers:
        lines.append("Accept-Encoding: identity")
    if "content-length" not in headers and "transfer-encoding" not in headers:
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        elif method in _BODY_METHODS:
            lines.append("Content-Length: 0")
    for name, value in headers.items():
        _check_name(name)
        lines.append(f"{name}: {value}")
    lines.append("\r\n")
    try:
        return "\r\n".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        _encode_as_http_client(lines[0], headers)  # raises http.client's error for the part at fault
        raise


def _encode_as_http_client(request_line: str, headers: dict[str, str]) -> None:
    request_line.encode("ascii")
    for name, value in headers.items():
        name.encode("ascii")
        value.encode("latin-1")


def check_host(host: str) -> None:
    """InvalidURL for a host http.client refuses to connect to (it checks when a connection is made)."""
    bad = _URL_CONTROL(host)
    if bad:
        raise http.client.InvalidURL(f"URL can't contain control characters. {host!r} (found at least {bad.group()!r})")


def host_header(host: str, port: int, default_port: int) -> str:
    """Host's value as http.client writes it: IDNA for a non-ASCII name, [brackets] round IPv6, :port if not default."""
    try:
        host.encode("ascii")
    except UnicodeEncodeError:
        host = host.encode("idna").decode("ascii")
    if ":" in host:
        host = f"[{host.split('%', 1)[0]}]"
    return host if port == default_port else f"{host}:{port}"


def _check_name(name: str) -> None:
    if name in _legal_names:
        return
    if not _LEGAL_NAME(name.encode("ascii")):
        raise ValueError(f"Invalid header name {name.encode('ascii')!r}")
    if len(_legal_names) < 4096:
        _legal_names.add(name)


class Wire:
    """One connection: exchange() one request at a time; `sock` is None once closed."""

    __slots__ = ("sock",)

    def __init__(self, sock: socket.socket) -> None:
        self.sock: socket.socket | None = sock

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()

    def exchange(self, data: bytes, method: str, max_body: int) -> Answer:
        """Send `data` (head and body), read the answer's head and at most max_body + 1 bytes of its body.

        RemoteDisconnected when the server closed without a byte of answer; http.client's other
        HTTPException classes for a malformed one; OSError (TimeoutError...) from the socket."""
        sock = self.sock
        if sock is None:
            raise http.client.RemoteDisconnected("connection closed")
        sent = sock.send(data)  # a request fits the socket's buffer: one call, not sendall's layers
        if sent < len(data):
            sock.sendall(memoryview(data)[sent:])
        status, reason, version, headers, rest = self._head(sock)
        while 100 <= status < 200 and status != 101:  # interim answers (100 Continue, 103 ...) precede the real one
            status, reason, version, headers, rest = self._head(sock, rest)
        will_close = _will_close(version, headers)
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return Answer(status, reason, headers, b"", False, not will_close and not rest)
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body, done, rest = _Chunked(sock, rest, max_body).read()
        else:
            length = _length(headers.get("content-length"))
            if length is None:
                will_close = True
                length = max_body + 1  # until the server closes, as much as is kept
            body, done, rest = _read_exactly(sock, rest, length, max_body)
        truncated = len(body) > max_body
        return Answer(status, reason, headers, body[:max_body], truncated,
                      done and not truncated and not will_close and not rest)

    @staticmethod
    def _head(sock: socket.socket, data: bytes = b"") -> tuple[int, str, str, dict[str, str], bytes]:
        """(status, reason, version, headers, the bytes read past the head)."""
        if not data:
            data = sock.recv(RECV)
            if not data:
                raise http.client.RemoteDisconnected("Remote end closed connection without response")
        while (end := _HEAD_END.search(data)) is None:
            if len(data) > MAX_HEAD:
                raise http.client.LineTooLong("header block")
            more = sock.recv(RECV)
            if not more:
                raise http.client.IncompleteRead(data)
            data += more
        lines = data[:end.start()].split(b"\n")
        status, reason, version = _status_line(lines[0].rstrip(b"\r"))
        return status, reason, version, _header_fields(lines), data[end.end():]


def _status_line(line: bytes) -> tuple[int, str, str]:
    version, _, rest = line.partition(b" ")
    code, _, reason = rest.partition(b" ")
    if not version.startswith(b"HTTP/") or len(code) != 3 or not code.isdigit() or int(code) < 100:
        raise http.client.BadStatusLine(repr(line[:100]))
    if version not in (b"HTTP/1.0", b"HTTP/0.9") and not version.startswith(b"HTTP/1."):
        raise http.client.UnknownProtocol(version.decode("latin-1"))
    return int(code), reason.strip().decode("latin-1"), version.decode("latin-1")


def _header_fields(lines: list[bytes]) -> dict[str, str]:
    """Names lower-cased, values trimmed; a folded line continues the one before; the first value of a
    repeated header wins (http.client's headers[name]), Retry-After's are joined (its getheader)."""
    if len(lines) > MAX_HEADERS + 1:
        raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")
    headers: dict[str, str] = {}
    last = ""
    for raw in lines[1:]:
        line = raw.rstrip(b"\r").decode("latin-1")
        if line[:1] in (" ", "\t") and last:
            headers[last] = f"{headers[last]} {line.strip()}"
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue  # not a header field: skipped, as the email parser records it as a defect
        name, value = name.strip().lower(), value.strip()
        if name not in headers:
            headers[name], last = value, name
        elif name == "retry-after":
            headers[name], last = f"{headers[name]}, {value}", name
        else:
            last = ""
    return headers


def _will_close(version: str, headers: dict[str, str]) -> bool:
    """http.client's rule: HTTP/1.1 closes on "Connection: close", HTTP/1.0 unless it asks to keep alive."""
    connection = headers.get("connection", "").lower()
    if version not in ("HTTP/1.0", "HTTP/0.9"):
        return "close" in connection
    return not ("keep-alive" in headers or "keep-alive" in connection
                or "keep-alive" in headers.get("proxy-connection", "").lower())


def _length(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        return None
    return length if length >= 0 else None


def _read_exactly(sock: socket.socket, data: bytes, length: int, max_body: int) -> tuple[bytes, bool, bytes]:
    """(body, whether all `length` bytes came, bytes past them): reading stops past max_body bytes,
    and at the server's close, which is an IncompleteRead only for a promised length within max_body."""
    want = min(length, max_body + 1)
    chunks = [data]
    have = len(data)
    while have < want:
        more = sock.recv(RECV)
        if not more:
            if length <= max_body:
                raise http.client.IncompleteRead(b"".join(chunks), length - have)
            break  # read until close: this is its end
        chunks.append(more)
        have += len(more)
    body = b"".join(chunks) if len(chunks) > 1 else data
    return body[:want], have >= length, body[want:]


class _Chunked:
    """A chunked body: at most max_body + 1 bytes of it, then the trailers once it is read to the end."""

    def __init__(self, sock: socket.socket, data: bytes, max_body: int) -> None:
        self.sock, self.data, self.max_body = sock, data, max_body

    def read(self) -> tuple[bytes, bool, bytes]:
        parts: list[bytes] = []
        kept = 0
        while kept <= self.max_body:
            size = self._size()
            if size == 0:
                self._trailers()
                return b"".join(parts), True, self.data
            allowed = self.max_body + 1 - kept
            if size > allowed:  # more than is kept: the rest stays unread, the connection is not reused
                parts.append(self._take(allowed))
                break
            parts.append(self._take(size))
            self._take_line_end()
            kept += size
        return b"".join(parts), False, b""

    def _size(self) -> int:
        line = self._line().split(b";", 1)[0].strip()
        try:
            return int(line, 16)
        except ValueError:
            raise http.client.IncompleteRead(b"") from None

    def _trailers(self) -> None:
        while self._line():
            pass

    def _take_line_end(self) -> None:
        if self._line():
            raise http.client.IncompleteRead(b"")

    def _line(self) -> bytes:
        while (end := self.data.find(b"\n")) < 0:
            if len(self.data) > 65536:
                raise http.client.LineTooLong("chunk size")
            self._more()
        line, self.data = self.data[:end], self.data[end + 1:]
        return line.rstrip(b"\r")

    def _take(self, size: int) -> bytes:
        while len(self.data) < size:
            self._more()
        chunk, self.data = self.data[:size], self.data[size:]
        return chunk

    def _more(self) -> None:
        more = self.sock.recv(RECV)
        if not more:
            raise http.client.IncompleteRead(b"")
        self.data += more
