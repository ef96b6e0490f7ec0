"""config/prometheus/: the alert rules and the example scrape config pass promtool, and the rules fire."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "config" / "prometheus" / "alerts.yml"
SCRAPE = ROOT / "config" / "prometheus" / "scrape.yml"
TARGET = {"job": "geoq", "instance": "w1:9108"}


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    assert path, "promtool not on PATH: bin/test installs Debian's prometheus package"
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_promtool_accepts_the_alert_rules() -> None:
    checked = promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_promtool_accepts_the_example_scrape_config() -> None:
    checked = promtool("check", "config", str(SCRAPE))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    body = ",".join(f'{k}="{v}"' for k, v in {**TARGET, **labels}.items())
    return {"series": f"{name}{{{body}}}", "values": values}


def alert(name: str, at: str, *expected: dict[str, str]) -> dict[str, object]:
    return {"eval_time": at, "alertname": name,
            "exp_alerts": [{"exp_labels": labels} for labels in expected]}


def without_annotations(path: Path) -> Path:
    """The rules with their annotations dropped: promtool compares annotations verbatim, and
    what matters here is when each alert fires and with which labels (check rules covers the text)."""
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def test_the_alerts_fire_on_what_they_watch_and_stay_quiet_otherwise(tmp_path: Path) -> None:
    rules = without_annotations(tmp_path / "alerts.yml")
    tests = {"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            series("up", "1 0x10"),
            series("geoq_jobs_total", "0+5x30", type="t.ok", queue="default", outcome="dead"),
            series("geoq_jobs_total", "0+5x30", type="t.ok", queue="default", outcome="succeeded"),
            series("geoq_hub_blocked_seconds_total", "0+30x30"),
            series("geoq_redis_errors_total", "0+60x30", op="fetch"),
            series("geoq_redis_errors_total", "0x30", op="settle"),
            series("geoq_queue_depth", "2000+100x60", queue="default", state="ready"),
            series("geoq_queue_depth", "5x60", queue="bulk", state="ready"),
            series("geoq_queue_depth", "0+2x60", queue="default", state="dead"),
            series("geoq_queue_depth", "7x60", queue="bulk", state="dead"),
            series("geoq_fenced_outcomes_total", "0 0 0 3x30"),
        ],
        "alert_rule_test": [
            alert("GeoqWorkerDown", "1m"),
            alert("GeoqWorkerDown", "5m", {**TARGET, "severity": "critical"}),
            alert("GeoqJobsDying", "20m", {"type": "t.ok", "queue": "default", "severity": "warning"}),
            alert("GeoqHubBlocked", "20m", {**TARGET, "severity": "warning"}),
            alert("GeoqRedisErrors", "20m", {"instance": TARGET["instance"], "op": "fetch", "severity": "warning"}),
            alert("GeoqQueueBacklogGrowing", "10m"),
            alert("GeoqQueueBacklogGrowing", "45m", {"queue": "default", "severity": "warning"}),
            alert("GeoqDeadListGrowing", "45m", {"queue": "default", "severity": "warning"}),
            alert("GeoqWorkerReapedWhileAlive", "2m"),
            alert("GeoqWorkerReapedWhileAlive", "5m", {**TARGET, "severity": "warning"}),
        ],
    }]}
    path = tmp_path / "alerts_test.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    tested = promtool("test", "rules", str(path), cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
