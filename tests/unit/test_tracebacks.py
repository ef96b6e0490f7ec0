"""A failed run's kept traceback: the handler's frames and the exception, no worker frames, no locals, bounded."""

from __future__ import annotations

import json
import time
from types import MappingProxyType
from typing import Any

import gevent

from geoq import tracebacks
from geoq.broker.broker import Bury, RetryLater
from geoq.outcome import RetryPolicy
from geoq.job import Job
from geoq.routing import Route, Router
from geoq.worker.executor import Executor, Prepared
from tests.support.handlers import check_token, descend

HEADER = "Traceback (most recent call last):"
NESTED = "ValueError: token rejected by the nested check"


def nested(job: Job) -> None:
    check_token(str(job.payload["token"]))


def sleepy(job: Job) -> None:
    gevent.sleep(5)


def chained(job: Job) -> None:
    try:
        {}["missing"]
    except KeyError as e:
        raise RuntimeError("lookup failed") from e


def deep(job: Job) -> None:
    descend(300)


def loud(job: Job) -> None:
    raise ValueError("é" * 50_000)


def settle_one(handler: Any, max_retries: int = 0, timeout: float = 5.0) -> RetryLater | Bury:
    """Run one job through a real Executor and return the settlement it hands on."""
    route = Route(type="t", queue="default", handler=handler, timeout=timeout,
                  retry=RetryPolicy(max_retries, base=1.0, max=1.0, jitter="none"), options=MappingProxyType({}))
    out: list[Any] = []
    executor = Executor(Router({"t": route}), lambda queue, item: out.append(item), max_payload=2**20, keep=60,
                        clock=time.time)  # a unit test: no Redis, so the host clock stands in
    job = Job(id="default:x", type="t", queue="default", payload={"token": "hunter2-secret"}, attempt=1)
    executor.run(Prepared("default", b"{}", job, route))
    (settlement,) = out
    assert isinstance(settlement, (RetryLater, Bury))
    return settlement


def buried_traceback(handler: Any, timeout: float = 5.0) -> str:
    settlement = settle_one(handler, timeout=timeout)
    assert isinstance(settlement, Bury)
    record = json.loads(settlement.record)
    assert json.loads(settlement.done)["tb"] == record["traceback"]
    text: str = record["traceback"]
    return text


def test_a_failure_keeps_the_handlers_frames_and_the_exception_line_but_no_worker_frame() -> None:
    text = buried_traceback(nested)
    lines = text.splitlines()
    assert lines[0] == HEADER and lines[-1] == NESTED
    assert ", in nested" in lines[1] and any(", in check_token" in line for line in lines)
    assert "geoq/worker" not in text and "executor" not in text


def test_no_local_variable_or_argument_value_is_kept() -> None:
    assert "hunter2" not in buried_traceback(nested)


def test_a_retry_carries_the_traceback_into_the_state_value() -> None:
    settlement = settle_one(nested, max_retries=1)
    assert isinstance(settlement, RetryLater)
    error, _, text = settlement.detail.partition("\n")
    assert error == NESTED and text.startswith(HEADER) and ", in check_token" in text


def test_a_timeout_shows_where_the_handler_was_when_it_was_interrupted() -> None:
    text = buried_traceback(sleepy, timeout=0.05)
    lines = text.splitlines()
    assert ", in sleepy" in lines[1] and "gevent.sleep(5)" in lines[2]
    assert lines[-1].startswith("gevent.timeout.Timeout") and "geoq/worker" not in text


def test_a_chained_exception_keeps_its_cause() -> None:
    text = buried_traceback(chained)
    assert "KeyError: 'missing'" in text and "direct cause" in text
    assert text.splitlines()[-1] == "RuntimeError: lookup failed"


def test_deep_recursion_is_cut_to_the_innermost_frames_within_the_bound() -> None:
    text = buried_traceback(deep)
    lines = text.splitlines()
    assert len(text.encode()) <= tracebacks.LIMIT
    assert lines[0] == HEADER and "outer frames cut" in lines[1]
    assert lines[-1] == "RuntimeError: hit the bottom of a deep recursion" and ", in hit_bottom" in lines[-3]
    assert sum(", in descend" in line or ", in ascend" in line for line in lines) < tracebacks.MAX_FRAMES


def test_a_huge_exception_message_is_cut_and_the_frames_stay() -> None:
    text = buried_traceback(loud)
    assert len(text.encode()) <= tracebacks.LIMIT
    assert text.startswith(HEADER) and ", in loud" in text and "bytes cut]" in text


def test_bound_leaves_short_text_alone() -> None:
    chunks = [HEADER + "\n", "  frame 1\n", "E: x\n"]
    assert tracebacks.bound(chunks, 1000) == "".join(chunks)


def test_bound_keeps_the_first_line_a_marker_and_the_innermost_entries_that_fit() -> None:
    chunks = [HEADER + "\n"] + [f"  frame {n:03d} " + "." * 80 + "\n" for n in range(100)] + ["E: x\n"]
    text = tracebacks.bound(chunks, 2000)
    lines = text.splitlines()
    assert len(text.encode()) <= 2000
    assert lines[0] == HEADER and lines[-1] == "E: x" and lines[-2].startswith("  frame 099")
    cut = 100 - (len(lines) - 3)
    assert lines[1] == f"  [... {cut} entries cut: a kept traceback is at most 2000 bytes]"


def test_bound_cuts_a_long_entry_without_splitting_a_character() -> None:
    text = tracebacks.bound([HEADER + "\n", "E: " + "é" * 3000 + "\n"], 2000)
    assert len(text.encode()) <= 2000 and text.endswith("bytes cut]\n")
    text.encode("utf-8")  # no half character left behind
