"""The ledger: what test handlers recorded, read from outside the queue under test.

Handlers (tests/support/handlers.py and friends) push job ids to lists
``ledger:<what>`` in the database GEOQ_TEST_LEDGER names; tests read them here.
A Ledger also unpacks as ``url, client`` for tests that only need those.
"""

from __future__ import annotations

import collections
from typing import Iterable, Iterator

import redis

from tests.support.waiting import wait_until


class Ledger:
    def __init__(self, url: str, client: redis.Redis) -> None:
        self.url, self.client = url, client

    def __iter__(self) -> Iterator[object]:
        return iter((self.url, self.client))

    @property
    def env(self) -> dict[str, str]:
        """The environment a worker's handlers need to write here."""
        return {"GEOQ_TEST_LEDGER": self.url}

    def ids(self, what: str = "succeeded") -> collections.Counter[str]:
        """How many times each job id was recorded under ledger:<what>."""
        return collections.Counter(x.decode() for x in self.client.lrange(f"ledger:{what}", 0, -1))

    def started(self) -> collections.Counter[str]:
        return self.ids("started")

    def succeeded(self) -> collections.Counter[str]:
        return self.ids("succeeded")

    def count(self, what: str = "succeeded") -> int:
        return int(self.client.llen(f"ledger:{what}"))

    def set(self, flag: str) -> None:
        self.client.set(f"ledger:{flag}", "1")

    def by_process(self) -> dict[int, int]:
        """Runs per worker process id (recorded by tests/support/scale_handlers.py)."""
        return {int(pid): int(n) for pid, n in self.client.hgetall("ledger:by_pid").items()}

    def wait_for(self, n: int, what: str = "succeeded", timeout: float = 30.0, message: str | None = None) -> None:
        wait_until(lambda: self.count(what) >= n, timeout=timeout, interval=0.05,
                   message=message or f"{n} jobs recorded as {what}")

    def wait_for_ids(self, ids: list[str], timeout: float, message: str) -> None:
        """Until each of these jobs has succeeded at least once (duplicates do not count twice)."""
        wanted = set(ids)
        wait_until(lambda: self.count() >= len(wanted) and wanted <= set(self.succeeded()),
                   timeout=timeout, interval=0.1, message=message)

    def assert_accounted_for(self, expected: Iterable[str], in_flight_at_fault: int,
                             never_complete: Iterable[str] = ()) -> int:
        """Every expected job completed, nothing else ran; the number of duplicate completions.

        Jobs in `never_complete` (a poison job) may have started but must not have completed.
        """
        expected, never = set(expected), set(never_complete)
        done = self.succeeded()
        missing = expected - set(done)
        assert not missing, f"{len(missing)} jobs never completed, e.g. {sorted(missing)[:5]}"
        assert not never & set(done), f"jobs that cannot complete did: {sorted(never & set(done))}"
        unknown = (set(done) | set(self.started())) - expected - never
        assert not unknown, f"jobs nobody enqueued ran: {sorted(unknown)[:5]}"
        duplicates = sum(n - 1 for n in done.values())
        assert duplicates <= in_flight_at_fault, (
            f"{duplicates} duplicate completions, more than the {in_flight_at_fault} jobs in flight at the fault")
        return duplicates

    def assert_each_ran(self, ids: list[str], *, exactly_once: bool) -> int:
        """Every job succeeded, no other did; the number of duplicate runs (0 when exactly_once)."""
        done = self.succeeded()
        missing = set(ids) - set(done)
        assert not missing, f"{len(missing)} jobs never completed, e.g. {sorted(missing)[:5]}"
        assert set(done) == set(ids), f"jobs nobody enqueued ran: {sorted(set(done) - set(ids))[:5]}"
        duplicates = sum(n - 1 for n in done.values())
        if exactly_once:
            assert duplicates == 0, f"{duplicates} jobs ran more than once"
        return duplicates
