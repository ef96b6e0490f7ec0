"""bin/demo, the README's second command, works end to end."""

import os
import re
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.support.dashboard import wait_for_url

ROOT = Path(__file__).resolve().parents[2]


def test_bin_demo_runs_mail_http_and_sleep_jobs_and_prints_a_summary():
    done = subprocess.run([str(ROOT / "bin" / "demo"), "--jobs", "600", "--concurrency", "200"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "metrics: http://127.0.0.1:" in done.stdout
    assert "dashboard: http://127.0.0.1:" in done.stdout
    summary = re.search(r"^demo: (\d+) jobs succeeded, (\d+) dead", done.stdout, re.M)
    assert summary and summary.groups() == ("598", "2"), done.stdout
    assert "SMTP server received 150 mails" in done.stdout
    assert "HTTP server answered 300 requests" in done.stdout


def test_bin_demo_keep_serves_the_dashboard_until_ctrl_c_then_stops_its_children():
    demo = subprocess.Popen([str(ROOT / "bin" / "demo"), "--jobs", "300", "--concurrency", "100", "--keep"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("demo: kept running"):
                break
        out = "".join(lines)
        url = re.search(r"^  dashboard: (http://127\.0\.0\.1:\d+/)", out, re.M).group(1)
        pids = [int(n) for n in re.findall(r"pid (\d+)", out)]   # the dashboard's and the worker's
        assert len(pids) == 2, out
        wait_for_url(url)
        with urllib.request.urlopen(url + "queues", timeout=10) as reply:
            assert reply.status == 200 and b"demo-mail" in reply.read()
        demo.send_signal(signal.SIGINT)
        rest, err = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate(timeout=30)
    assert demo.returncode == 0, out + rest + err
    assert "demo: stopping" in rest
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
