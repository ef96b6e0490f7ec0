"""`import geoq` has no side effects (STYLE.md rule 7).

The import runs in a fresh interpreter, because this test process has long
since imported gevent, redis and pytest.  An audit hook records every socket,
thread and subprocess the import creates; the probe prints a JSON report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, logging, select, socket, ssl, sys, threading, time

events = []
WATCHED = ("socket.", "_thread.start", "subprocess.Popen",
           "os.fork", "os.posix_spawn", "os.system", "os.exec")

def audit(event, args):
    if event.startswith(WATCHED) and event != "socket.gethostname":
        events.append(event)

before = {
    "socket.socket": socket.socket, "socket.create_connection": socket.create_connection,
    "select.select": select.select, "ssl.SSLContext": ssl.SSLContext,
    "threading.Thread": threading.Thread, "threading.Lock": threading.Lock,
    "time.sleep": time.sleep,
}
threads_before = threading.active_count()

# Python < 3.13 raises no audit event for a new thread: count the starts.
import _thread
def counting(start):
    def start_thread(*args, **kwargs):
        events.append("thread started")
        return start(*args, **kwargs)
    return start_thread
for mod, name in ((threading, "_start_new_thread"), (threading, "_start_joinable_thread"),
                  (_thread, "start_new_thread")):
    if hasattr(mod, name):
        setattr(mod, name, counting(getattr(mod, name)))
handlers_before = len(logging.getLogger().handlers)
sys.addaudithook(audit)

import {package} as pkg

after = {
    "socket.socket": socket.socket, "socket.create_connection": socket.create_connection,
    "select.select": select.select, "ssl.SSLContext": ssl.SSLContext,
    "threading.Thread": threading.Thread, "threading.Lock": threading.Lock,
    "time.sleep": time.sleep,
}
print(json.dumps({
    "file": getattr(pkg, "__file__", None),
    "gevent_modules": sorted(m for m in sys.modules if m == "gevent" or m.startswith("gevent.")),
    "patched": sorted(name for name in before if before[name] is not after[name]),
    "threads": [t.name for t in threading.enumerate()],
    "threads_before": threads_before,
    "events": sorted(set(events)),
    "root_handlers_added": len(logging.getLogger().handlers) - handlers_before,
}))
"""


def probe_import(package: str = "geoq", cwd: Path = REPO_ROOT) -> dict[str, Any]:
    """Import *package* in a fresh interpreter and report what the import did."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.replace("{package}", package)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"`import {package}` failed:\n{proc.stderr}"
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return probe_import()


def test_the_import_loads_the_real_package_not_a_namespace(report: dict[str, Any]) -> None:
    assert report["file"] is not None and report["file"].endswith("__init__.py"), report


def test_importing_geoq_does_not_import_gevent(report: dict[str, Any]) -> None:
    assert report["gevent_modules"] == []


def test_importing_geoq_patches_nothing(report: dict[str, Any]) -> None:
    assert report["patched"] == []


def test_importing_geoq_starts_no_thread(report: dict[str, Any]) -> None:
    assert report["threads_before"] == 1
    assert report["threads"] == ["MainThread"]
    assert not [e for e in report["events"] if "thread" in e]


def test_importing_geoq_opens_no_socket_and_spawns_nothing(report: dict[str, Any]) -> None:
    assert report["events"] == []


def test_importing_geoq_configures_no_logging(report: dict[str, Any]) -> None:
    assert report["root_handlers_added"] == 0
