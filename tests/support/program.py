"""Run a short Python program in a fresh interpreter: for what is process-wide (monkeypatching,
gevent's config, its hubs and threads), which a test must not change in pytest's own process."""

from __future__ import annotations

import subprocess
import sys
from typing import Mapping

from tests.support.worker_process import ROOT


def run_program(program: str, *args: str, env: Mapping[str, str] | None = None) -> str:
    """The program's standard output; it must exit 0 (its stderr is the failure message)."""
    done = subprocess.run([sys.executable, "-c", program, *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", **(env or {})})
    assert done.returncode == 0, done.stderr
    return done.stdout
