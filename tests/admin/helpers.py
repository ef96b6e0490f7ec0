"""Running bin/geoq as a user would, for the admin CLI tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[2]
GEOQ = ROOT / "bin" / "geoq"


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GEOQ_CONFIG"}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def run_geoq(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(GEOQ), *args], capture_output=True, text=True, timeout=timeout,
                          env=env or cli_env(), cwd=ROOT)


def redis_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1_000_000
