"""Run bin/geoq-worker as a subprocess with a temporary config, as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "bin" / "geoq-worker"


def write_config(path: Path, redis_url: str, routes: Mapping[str, Any], **sections: Any) -> Path:
    """A config file: the given routes, metrics off unless asked, plus any section overrides
    (a mapping updates its section; anything else, such as the middleware list, is the key's value)."""
    body: dict[str, Any] = {"redis": {"url": redis_url}, "metrics": {"listen": "off"},
                            "logging": {"level": "info"}, "routes": dict(routes)}
    for name, values in sections.items():
        if isinstance(values, Mapping):
            body.setdefault(name, {}).update(values)
        else:
            body[name] = values
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


class WorkerProcess:
    """A running worker; stop() sends SIGTERM and returns the exit status."""

    def __init__(self, config: Path, args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                 log: Path | None = None) -> None:
        self.log_path = log or config.with_suffix(".log")
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, str(WORKER), str(config), *args], env=full_env,
                                     stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()

    def __enter__(self) -> "WorkerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def run_worker_once(config: Path, args: Sequence[str] = (), timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run the worker to completion (for config errors): its exit status and output."""
    return subprocess.run([sys.executable, str(WORKER), str(config), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})
