"""A private redis-server for tests: own port, own temp dir, stopped by PID.

    with RedisServer(config={"appendonly": "yes"}) as server:
        server.client().set("k", "v")
        server.restart()            # same port, same dir: the AOF survives
        server.pause()              # SIGSTOP: commands time out
        server.resume()

Nothing is written outside the temp dir (no RDB snapshots unless asked for,
the log goes to ``<dir>/redis.log``), and a system redis on 6379 is never used.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Callable, Mapping, Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.ports import free_port

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
_PORT_ATTEMPTS = 3  # free_port() races with other processes; retry on "in use"


class RedisServerError(RuntimeError):
    """The server did not start (or stop) as asked; the message has its log tail."""


class RedisServer:
    """One redis-server process owned by the test session.

    *extra_args* are passed to redis-server verbatim after the defaults (so
    they override them); *config* is the same as ``--key value`` pairs.
    """

    def __init__(
        self,
        extra_args: Sequence[str] = (),
        config: Mapping[str, object] | None = None,
        executable: str = "redis-server",
    ) -> None:
        self.executable = executable
        self.extra_args = list(extra_args)
        for key, value in (config or {}).items():
            self.extra_args += [f"--{key}", str(value)]
        self.dir = Path(tempfile.mkdtemp(prefix="geoq-test-redis-"))
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    # -- addresses -----------------------------------------------------------

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return self.url_for(0)

    def url_for(self, db: int) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RedisServerError("redis-server is not started")
        return self._proc.pid

    @property
    def log_path(self) -> Path:
        return self.dir / "redis.log"

    def client(self, db: int = 0, **kwargs: object) -> redis.Redis:
        """A plain ``redis.Redis`` on this server (bytes replies).

        It does not retry (redis-py 6+ retries ten times with backoff by
        default): a test that stops the server wants the error at once.
        Pass ``retry=...`` to get retries back.
        """
        kwargs.setdefault("decode_responses", False)
        kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        return redis.Redis(host=self.host, port=self.port, db=db, **kwargs)  # type: ignore[arg-type]

    # -- life cycle ----------------------------------------------------------

    def start(self) -> RedisServer:
        """Start on a free port and return once PING answers."""
        if self.is_running():
            return self
        for attempt in range(_PORT_ATTEMPTS):
            self.port = free_port(self.host)
            try:
                self._spawn_and_wait()
                return self
            except RedisServerError:
                if attempt + 1 == _PORT_ATTEMPTS or "in use" not in self.log_tail():
                    raise
        raise AssertionError("unreachable")

    def restart(self) -> RedisServer:
        """Stop (if running) and start again on the same port and dir."""
        self.stop()
        self._spawn_and_wait()
        return self

    def stop(self) -> None:
        """SIGTERM by PID, wait; SIGKILL if it does not exit in time."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            if self._paused:  # a stopped process acts on SIGTERM only once continued
                proc.send_signal(signal.SIGCONT)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        self._paused = False

    def kill(self) -> None:
        """SIGKILL by PID: a crash, no shutdown work at all."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(STOP_TIMEOUT)
        self._paused = False

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing answers."""
        os.kill(self.pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after pause()."""
        os.kill(self.pid, signal.SIGCONT)
        self._paused = False

    def close(self) -> None:
        """Stop the server and delete its temp dir."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        text = ""
        for name in ("redis.stdout", "redis.log"):
            try:
                text += (self.dir / name).read_text(errors="replace")
            except FileNotFoundError:
                pass
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<RedisServer {self.host}:{self.port} {state} dir={self.dir}>"

    # -- internals -----------------------------------------------------------

    def _argv(self) -> list[str]:
        return [
            self.executable,
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", str(self.log_path),
            *self.extra_args,
        ]

    def _spawn_and_wait(self) -> None:
        out = open(self.dir / "redis.stdout", "ab")
        try:
            self._proc = subprocess.Popen(
                self._argv(),
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C meant for pytest does not kill the
                # server before the fixtures' teardown has used it.
                start_new_session=True,
                preexec_fn=_die_with_parent(),
            )
        except FileNotFoundError as e:
            raise RedisServerError(
                f"{self.executable} not found on PATH; bin/test installs it"
            ) from e
        finally:
            out.close()
        self._paused = False
        self._wait_for_ping()

    def _wait_for_ping(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        probe = self.client(socket_connect_timeout=0.5, socket_timeout=0.5)
        last: BaseException | None = None
        try:
            while time.monotonic() < deadline:
                code = self._proc.poll() if self._proc is not None else None
                if code is not None:
                    raise RedisServerError(
                        f"redis-server on port {self.port} exited with code {code} "
                        f"while starting; log tail:\n{self.log_tail()}"
                    )
                try:
                    if probe.ping():
                        return
                except redis.RedisError as e:
                    last = e
                time.sleep(0.01)
        finally:
            probe.close()
        self.kill()
        raise RedisServerError(
            f"redis-server on port {self.port} did not answer PING within "
            f"{START_TIMEOUT:g}s (last error: {last!r}); log tail:\n{self.log_tail()}"
        )


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, have the kernel SIGTERM the server if pytest itself dies.

    This only guards against a hard kill of the test run (the fixtures stop
    the server by PID in the normal case).  The libc function is looked up
    here, before the fork, so the child only makes one system call.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def set_pdeathsig() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return set_pdeathsig
