"""Job control under geoq.testing.Harness: expiry follows the harness clock, a cancelled job never runs."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from geoq.testing import Harness
from tests.support import harness_handlers
from tests.support.harness_handlers import RAN

MakeConfig = Callable[..., Path]
CONFIG = """
routes:
  report.build: {handler: "tests.support.harness_handlers:report"}
"""


@pytest.fixture(autouse=True)
def fresh_record():
    RAN.clear()
    yield
    harness_handlers.RELEASE.set()


def test_jobs_expire_on_the_harness_clock_when_fetched_and_when_promoted(tmp_config: MakeConfig):
    with Harness(tmp_config(CONFIG), start=1_800_000_030.0) as h:
        waiting = h.client.enqueue("report.build", {"id": 1}, expires=60)
        delayed = h.client.enqueue("report.build", {"id": 2}, delay=30, expires=60)
        in_time = h.client.enqueue("report.build", {"id": 3}, expires=600)
        h.advance(120)
        assert h.drain() == 2   # the run in time, and the burial of the job that expired waiting
        for job in (waiting, delayed):
            st = h.client.status(job.id)
            assert (st.state, st.reason, st.attempts) == ("dead", "expired", 0)
        assert h.client.status(in_time.id).state == "succeeded"
    assert [i for _, i, _ in RAN] == [in_time.id]


def test_a_cancelled_job_never_runs_and_a_unique_key_holds_on_the_harness(tmp_config: MakeConfig):
    with Harness(tmp_config(CONFIG)) as h:
        queued = h.client.enqueue("report.build", {"id": 1})
        assert h.client.cancel(queued.id)
        first = h.client.enqueue("report.build", {"id": 2}, unique_for=60)
        assert h.client.enqueue("report.build", {"id": 2}, unique_for=60).id == first.id
        assert h.drain() == 1
        assert h.client.status(queued.id).state == "cancelled"
        assert h.client.enqueue("report.build", {"id": 2}, unique_for=60).id == first.id   # its window
    assert [i for _, i, _ in RAN] == [first.id]
