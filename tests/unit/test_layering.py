"""The pure core imports no I/O layer: no gevent, no redis, no broker, worker or metrics.

Each module is imported alone in a fresh interpreter (this test process has long
since imported all of them). `import geoq.x` would first run geoq/__init__.py,
which imports the Client and with it redis and the broker, by design; so the
probe stands an empty package in for `geoq` and sees only what the module itself
imports. A module that reaches for a name of geoq/__init__.py fails to import
there, and so fails this test too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

PURE_CORE = (
    "geoq.errors",
    "geoq.units",
    "geoq.backoff",
    "geoq.outage",
    "geoq.names",
    "geoq.job",
    "geoq.records",
    "geoq.outcome",
    "geoq.middleware",
    "geoq.tracebacks",
    "geoq.limits",
    "geoq.unique",
    "geoq.control",
    "geoq.history",
    "geoq.dashboard.html",
    "geoq.dashboard.security",
    "geoq.fingerprint",
)

IO_LAYERS = ("gevent", "redis", "geoq.broker", "geoq.worker", "geoq.metrics", "prometheus_client")

PROBE = r"""
import json, sys, types
package = types.ModuleType("geoq")
package.__path__ = [sys.argv[1]]
sys.modules["geoq"] = package
__import__(sys.argv[2])
print(json.dumps(sorted(sys.modules)))
"""


def imported_by(module: str) -> set[str]:
    """Every module loaded by importing *module* alone, geoq/__init__.py left out."""
    done = subprocess.run([sys.executable, "-c", PROBE, str(REPO_ROOT / "geoq"), module],
                          capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert done.returncode == 0, f"`import {module}` failed:\n{done.stderr}"
    return set(json.loads(done.stdout.splitlines()[-1]))


def layers_in(modules: set[str], layers: tuple[str, ...] = IO_LAYERS) -> list[str]:
    return sorted(layer for layer in layers if layer in modules)


@pytest.mark.parametrize("module", PURE_CORE)
def test_a_pure_core_module_imports_no_io_layer(module: str) -> None:
    assert layers_in(imported_by(module)) == []


def test_the_probe_sees_what_a_module_imports() -> None:
    # A worker loop imports gevent and the broker: were this empty, the probe would prove nothing.
    assert layers_in(imported_by("geoq.worker.scheduler")) == ["geoq.broker", "geoq.worker", "gevent", "redis"]
