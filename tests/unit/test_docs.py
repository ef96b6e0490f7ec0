"""The README stays true to the code: every config key, the two commands first, a middleware example that works."""

import re
import sys
import types
from pathlib import Path
from typing import Any

from geoq.config import load_config
from geoq.config.schema import KEYS
from geoq.job import Job
from geoq.middleware import Chain
from geoq.outcome import Outcome, RetryPolicy, classify

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_every_leaf_config_key_is_in_the_readme_reference():
    parents = {k.path.rsplit(".", 1)[0] for k in KEYS if "." in k.path}
    leaves = [k.path for k in KEYS if k.path not in parents and k.path != "routes"]
    missing = [p for p in leaves if f"`{p}`" not in README]
    assert missing == []


def test_the_readme_gives_the_two_commands_first():
    first_code = README.split("```")[1]
    assert "bin/test" in first_code and "bin/demo" in first_code


def test_ci_runs_the_readme_test_command():
    assert "bin/test" in (ROOT / ".ci" / "run").read_text()


def section(title: str) -> str:
    return README.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def code_blocks(text: str, language: str) -> list[str]:
    return [block.split("\n", 1)[1] for block in text.split("```")[1::2] if block.startswith(language + "\n")]


def test_the_readmes_failure_hook_reports_dead_jobs_and_nothing_else(monkeypatch, tmp_path):
    """The Middleware section's example, run against a stand-in for sentry_sdk (its two calls, recorded)."""
    sent: list[tuple[str, object, dict[str, Any]]] = []
    sentry = types.ModuleType("sentry_sdk")
    sentry.init = lambda dsn: sent.append(("init", dsn, {}))  # type: ignore[attr-defined]
    sentry.capture_exception = lambda e, **kw: sent.append(("exception", e, kw))  # type: ignore[attr-defined]
    sentry.capture_message = lambda m, **kw: sent.append(("message", m, kw))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sentry_sdk", sentry)
    (example,) = code_blocks(section("Middleware"), "python")
    space: dict[str, Any] = {}
    exec(compile(example, "README.md", "exec"), space)
    chain = Chain([space["ReportDeaths"](dsn="https://key@sentry.example/1")])

    job = Job(id="default:j1", type="email.send", queue="default", payload={}, attempt=6)
    error = RuntimeError("smtp down")
    for outcome in (Outcome("succeeded", result=1), Outcome("retry", "RuntimeError: smtp down", delay=1.0),
                    Outcome("interrupted"), classify(job, RetryPolicy(max_retries=5), error, traceback="TB"),
                    Outcome("dead", "no route for job type 'email.send'", reason="unknown_type")):
        chain.after_run(job, outcome)
    tags = {"job_type": "email.send", "queue": "default"}
    assert sent == [
        ("init", "https://key@sentry.example/1", {}),
        ("exception", error, {"tags": {**tags, "reason": "max_retries"},
                              "extras": {"job_id": "default:j1", "attempts": 6, "traceback": "TB"}}),
        ("message", "no route for job type 'email.send'", {"level": "error", "tags": {**tags, "reason": "unknown_type"},
                                                            "extras": {"job_id": "default:j1", "attempts": 6,
                                                                       "traceback": None}})]


def test_the_readmes_middleware_list_is_a_valid_config(tmp_path):
    (example,) = code_blocks(section("Middleware"), "yaml")
    path = tmp_path / "m.yaml"
    path.write_text(example)
    config = load_config(path, env={})
    assert [(m.handler, dict(m.options)) for m in config.middleware] == [
        ("myapp.observe:AuditTrail", {}), ("myapp.observe:ReportDeaths", {"dsn": ""})]


def test_every_command_a_lua_script_calls_is_allowed_by_the_readmes_acl_line():
    # A script whose command the documented ACL user may not run fails every worker set up by the
    # README (NOPERM) only when that script runs: this finds it without a Redis.
    acl = re.search(r"^ACL SETUSER geoq .*$", README, re.M)
    assert acl, "README.md has no ACL SETUSER geoq line"
    allowed = {word[1:].lower() for word in acl[0].split() if word.startswith("+")}
    called = {(script.name, command.lower())
              for script in (ROOT / "geoq" / "broker" / "scripts").glob("*.lua")
              for command in re.findall(r"redis\.call\('(\w+)'", script.read_text())}
    assert called and {(name, c) for name, c in called if c not in allowed} == set()
