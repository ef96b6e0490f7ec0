"""The package is mypy --strict clean (STYLE.md principle 9); config in setup.cfg [mypy]."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_geoq_type_checks_strictly():
    done = subprocess.run([sys.executable, "-m", "mypy", "--config-file", "setup.cfg"], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
