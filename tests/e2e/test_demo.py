"""bin/demo, the README's second command, works end to end."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bin_demo_runs_mail_http_and_sleep_jobs_and_prints_a_summary():
    done = subprocess.run([str(ROOT / "bin" / "demo"), "--jobs", "600", "--concurrency", "200"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "metrics: http://127.0.0.1:" in done.stdout
    summary = re.search(r"^demo: (\d+) jobs succeeded, (\d+) dead", done.stdout, re.M)
    assert summary and summary.groups() == ("598", "2"), done.stdout
    assert "SMTP server received 150 mails" in done.stdout
    assert "HTTP server answered 300 requests" in done.stdout
