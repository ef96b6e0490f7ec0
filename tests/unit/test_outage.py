"""An Outage tells one line when a loop starts failing and one when it works again."""

from __future__ import annotations

import logging

import pytest

from geoq.outage import Outage

Line = tuple[int, str]


def recording(lines: list[Line]):
    """A list sink: each line told, formatted as a log record would be."""
    def sink(level: int, msg: str, *args: object) -> None:
        lines.append((level, msg % args))
    return sink


def outage(lines: list[Line], **kw) -> Outage:
    return Outage(recording(lines), "fetch failed: %s", "fetching again", **kw)


def test_the_first_failure_of_an_outage_is_told_once_at_error_and_repeats_are_silent():
    lines: list[Line] = []
    o = outage(lines)
    for n in range(3):
        o.failed(OSError(f"refused {n}"))
    assert lines == [(logging.ERROR, "fetch failed: refused 0")]
    assert o.failing


def test_repeats_are_told_at_the_level_given_for_them():
    lines: list[Line] = []
    o = outage(lines, repeats=logging.DEBUG)
    o.failed("a")
    o.failed("b")
    assert lines == [(logging.ERROR, "fetch failed: a"), (logging.DEBUG, "fetch failed: b")]


def test_recovery_is_told_once_at_warning_after_a_failure():
    lines: list[Line] = []
    o = outage(lines)
    o.failed("down")
    o.recovered()
    o.recovered()
    assert lines == [(logging.ERROR, "fetch failed: down"), (logging.WARNING, "fetching again")]
    assert not o.failing


def test_success_without_a_failure_tells_nothing():
    lines: list[Line] = []
    o = outage(lines)
    o.recovered()
    assert lines == [] and not o.failing


def test_a_second_outage_is_told_again():
    lines: list[Line] = []
    o = outage(lines)
    o.failed("one")
    o.failed("one again")
    o.recovered()
    o.failed("two")
    assert [text for _, text in lines] == ["fetch failed: one", "fetching again", "fetch failed: two"]


def test_the_sink_sees_failing_already_updated_so_it_can_tell_the_lines_apart():
    seen: list[bool] = []
    o = Outage(lambda level, msg, *args: seen.append(o.failing), "down: %s", "up", repeats=logging.DEBUG)
    o.failed("x")
    o.failed("y")
    o.recovered()
    assert seen == [True, True, False]


def test_a_loggers_log_is_a_sink_and_keeps_the_loggers_name(caplog: pytest.LogCaptureFixture):
    log = logging.getLogger("geoq.worker.fetcher")
    o = Outage(log.log, "fetch failed, backing off: %s", "fetching again")
    with caplog.at_level(logging.DEBUG, logger=log.name):
        o.failed(ConnectionError("Connection refused"))
        o.failed(ConnectionError("Connection refused"))
        o.recovered()
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("geoq.worker.fetcher", logging.ERROR, "fetch failed, backing off: Connection refused"),
        ("geoq.worker.fetcher", logging.WARNING, "fetching again"),
    ]
