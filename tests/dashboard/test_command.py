"""`geoq dashboard` as a command: gevent patched for it alone, a URL printed, Ctrl-C ends it with 0;
and `import geoq.dashboard` stays free of gevent."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Callable

from tests.support.dashboard import GEOQ, DashboardProcess
from tests.support.program import run_program

PATCHED_AFTER = r"""
import runpy, sys
sys.argv = ["geoq", *sys.argv[1:]]
try:
    runpy.run_path("bin/geoq", run_name="__main__")
except SystemExit:
    pass
from gevent import monkey
print(monkey.is_module_patched("socket"), file=sys.stderr)
"""


def _patched(*argv: str) -> bool:
    done = subprocess.run([sys.executable, "-c", PATCHED_AFTER, *argv], capture_output=True, text=True, timeout=60,
                          cwd=GEOQ.parents[1])
    return done.stderr.strip().splitlines()[-1] == "True"


def test_bin_geoq_patches_gevent_for_the_dashboard_command_only() -> None:
    assert _patched("-c", "config/dev.yaml", "dashboard", "--help")
    assert _patched("--json", "--redis-url", "redis://127.0.0.1:1/0", "dashboard", "--help")
    assert not _patched("-c", "config/dev.yaml", "stats", "--help")
    assert not _patched("--redis-url", "dashboard", "stats", "--help")   # "dashboard" here is an option's value


def test_importing_geoq_and_the_dashboard_imports_no_gevent() -> None:
    out = run_program("import sys, geoq, geoq.dashboard, geoq.dashboard.app; "
                      "print(sorted(m for m in sys.modules if m.split('.')[0] == 'gevent'))")
    assert out.strip() == "[]"


def test_the_command_prints_its_url_serves_and_exits_0_on_ctrl_c(config_file: Callable[..., Path]) -> None:
    with DashboardProcess(config_file()) as dash:
        with urllib.request.urlopen(dash.url + "/queues", timeout=10) as reply:
            assert reply.status == 200 and b"<h1>Queues</h1>" in reply.read()
        status, err = dash.stop(signal.SIGINT)
    assert status == 0 and "Traceback" not in err


def test_read_only_from_the_command_line_and_sigterm_stops_it_with_0(config_file: Callable[..., Path]) -> None:
    with DashboardProcess(config_file(), "--read-only") as dash:
        with urllib.request.urlopen(dash.url + "/queues", timeout=10) as reply:
            page = reply.read().decode()
        assert "<strong>mail</strong>" in page and 'method="post"' not in page
        assert dash.stop(signal.SIGTERM)[0] == 0


def test_a_bad_listen_address_is_one_line_and_exit_2(config_file: Callable[..., Path]) -> None:
    done = subprocess.run([sys.executable, str(GEOQ), "-c", str(config_file()), "dashboard", "--listen", "nowhere"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr == "geoq: --listen: expected an address host:port such as 127.0.0.1:9181, got 'nowhere'\n"


def test_a_config_with_a_user_and_no_password_is_one_line_and_exit_2(config_file: Callable[..., Path]) -> None:
    path = config_file(dashboard={"username": "ops"})
    done = subprocess.run([sys.executable, str(GEOQ), "-c", str(path), "dashboard"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.startswith(f"geoq: {path}: dashboard.password") and "basic auth needs both" in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_a_dashboard_that_listens_nowhere_is_a_config_error(config_file: Callable[..., Path]) -> None:
    path = config_file(dashboard={"listen": "off"})
    done = subprocess.run([sys.executable, str(GEOQ), "-c", str(path), "dashboard"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.startswith(f"geoq: {path}: dashboard.listen (line ")
    assert done.stderr.endswith("): expected an address host:port such as 127.0.0.1:9181, got 'off'\n")
