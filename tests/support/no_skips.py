"""pytest plugin: when the CI environment variable is set, a skip is a failure.

A test that skips in CI (a missing redis-server, an importorskip, a forgotten
``@pytest.mark.skip``) would otherwise pass silently.  Expected failures
(``xfail``) are left alone; pytest.ini makes an unexpected pass fail.
"""

from __future__ import annotations

import os
from typing import Any, Generator

import pytest


def skips_are_failures() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _fail_instead(report: pytest.TestReport | pytest.CollectReport) -> None:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    report.outcome = "failed"
    report.longrepr = (
        f"skipped, and a skip is a failure when CI is set "
        f"(CI={os.environ.get('CI')!r}): {reason}"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and skips_are_failures():
        _fail_instead(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    if report.skipped and skips_are_failures():
        _fail_instead(report)
