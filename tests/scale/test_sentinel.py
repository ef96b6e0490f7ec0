"""Sentinel: the worker and the producer follow the master Sentinel names, through a crash and a demotion."""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import pytest
import redis

import geoq
from tests.scale.conftest import ROUTES
from tests.support.keyspace import assert_settled, places
from tests.support.ledger import Ledger
from tests.support.sentinel import LocalSentinel
from tests.support.waiting import wait_until
from tests.support.worker_process import WorkerProcess, run_worker_once, write_config

JOBS = 4000
CONCURRENCY = 200


def worker_config(tmp_path, url):
    return write_config(tmp_path / "w.yaml", url, ROUTES, worker={"concurrency": CONCURRENCY},
                        logging={"level": "warning"})


def enqueue(url: str, n: int, payload: dict) -> list[str]:
    with geoq.Client(url) as client:
        return [job.id for job in client.enqueue_many([("t.ok", payload)] * n)]


def master_client(sentinel: LocalSentinel) -> redis.Redis:
    host, port = sentinel.master_address()
    return redis.Redis(host=host, port=port, socket_timeout=5)


def wait_drained(sentinel: LocalSentinel, worker: WorkerProcess) -> None:
    """Until the jobs delivered again after a failover (their acks were lost) have run too.

    Every id having succeeded once is not enough before a stop: a second delivery still
    running would be handed back and show up as ready.
    """
    def drained() -> bool:
        with master_client(sentinel) as client:
            found = places(client, ["default"])
        return all(found.total(kind) == 0 for kind in ("ready", "scheduled", "processing", "live_states"))

    with explained(sentinel, worker):
        wait_until(drained, timeout=60, interval=0.1, message="the jobs delivered again did not finish",
                   ignore=(redis.ConnectionError, redis.TimeoutError))


@contextlib.contextmanager
def explained(sentinel: LocalSentinel, worker: WorkerProcess, ids: Sequence[str] = (),
              ledger: Ledger | None = None) -> Iterator[None]:
    """A failed wait inside says where the jobs are: what the master holds, the jobs that never
    succeeded, and the end of the worker's log."""
    try:
        yield
    except AssertionError as e:
        raise AssertionError(f"{e}\n{where_jobs_are(sentinel, worker, ids, ledger)}") from None


def where_jobs_are(sentinel: LocalSentinel, worker: WorkerProcess, ids: Sequence[str], ledger: Ledger | None) -> str:
    lines = []
    try:
        with master_client(sentinel) as client:
            lines.append(f"places: {places(client, ['default'])}")
            lines.append("processing lists: " + str({k.decode(): client.llen(k) for k in
                                                     client.scan_iter(match="geoq:{default}:processing:*")}))
    except redis.RedisError as e:
        lines.append(f"master unreadable: {e!r}")
    if ledger is not None:
        missing = sorted(set(ids) - set(ledger.succeeded()))
        lines.append(f"{len(missing)} jobs never succeeded, e.g. {missing[:5]}")
    tail = "\n".join(worker.log().splitlines()[-40:])
    return "\n".join(lines) + f"\nthe worker's log ends:\n{tail}"


def test_the_master_killed_mid_run_the_worker_follows_the_promoted_replica_and_no_job_is_lost(ledger, tmp_path):
    with LocalSentinel(down_after_ms=1000) as sentinel:
        with WorkerProcess(worker_config(tmp_path, sentinel.url), env=ledger.env) as worker:
            ids = enqueue(sentinel.url, JOBS, {"sleep": 0.1})
            sentinel.wait_replicated()  # an enqueue not yet copied would die with the master: Redis's promise
            ledger.wait_for(JOBS // 4, timeout=60, message="the run did not get going")
            assert sentinel.master.client().llen("geoq:{default}:ready") > 0, "drained before the kill"
            sentinel.master.kill()
            sentinel.wait_for_failover()
            with explained(sentinel, worker, ids, ledger):
                ledger.wait_for_ids(ids, timeout=120, message="not every job completed after the failover")
            wait_drained(sentinel, worker)
            assert worker.stop() == 0, worker.log()
        duplicates = ledger.assert_each_ran(ids, exactly_once=False)
        assert duplicates <= CONCURRENCY, duplicates
        with master_client(sentinel) as client:
            assert_settled(client, ["default"])
        with geoq.Client(sentinel.url) as producer:  # a new producer finds the new master too
            assert producer.status(ids[0]).state == "succeeded"


def test_a_switchover_while_the_worker_is_busy_loses_no_job_and_the_producer_follows(ledger, tmp_path):
    with LocalSentinel(down_after_ms=1000) as sentinel:
        producer = geoq.Client(sentinel.url)
        with WorkerProcess(worker_config(tmp_path, sentinel.url), env=ledger.env) as worker:
            busy = enqueue(sentinel.url, JOBS, {"sleep": 0.1})
            ledger.wait_for(JOBS // 4, timeout=60, message="the run did not get going")
            first = sentinel.master_address()
            # The old master lives on as a replica. Writes it took after the promotion are dropped
            # by its resync: acks among them leave jobs in the worker's processing list, which it
            # finds and runs again.
            sentinel.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", sentinel.service)
            wait_until(lambda: sentinel.master_address() != first, timeout=30, message="no switchover")
            wait_until(lambda: _replica_in_sync(first), timeout=30, message="the old master demoted")
            late = [_enqueue_until_stored(producer, f"default:late-{i}") for i in range(100)]
            with explained(sentinel, worker, busy + late, ledger):
                ledger.wait_for_ids(busy + late, timeout=120, message="not every job completed after the switchover")
            wait_drained(sentinel, worker)
            assert worker.stop() == 0, worker.log()
        producer.close()
        ledger.assert_each_ran(busy + late, exactly_once=False)
        with master_client(sentinel) as client:
            assert_settled(client, ["default"])


def _enqueue_until_stored(producer: geoq.Client, job_id: str) -> str:
    """What DESIGN.md asks of a producer that saw an error: enqueue again with the same id.

    The producer's pooled connections still lead to the demoted master (or were cut by
    Sentinel): the first write fails, and the next connection asks the sentinels where
    the master is now.
    """
    def stored() -> bool:
        producer.enqueue("t.ok", {}, id=job_id)
        return True

    wait_until(stored, timeout=30, ignore=(geoq.RedisUnavailable, geoq.RedisFull), message=f"enqueue {job_id}")
    return job_id


def _replica_in_sync(address: tuple[str, int]) -> bool:
    client = redis.Redis(host=address[0], port=address[1], socket_timeout=1)
    try:
        info = client.info("replication")
        return info["role"] == "slave" and info.get("master_link_status") == "up"
    finally:
        client.close()


SENTINEL_PASSWORD = "sentinel-s3cret"


def test_sentinels_that_ask_for_a_password_are_logged_in_with_redis_sentinel_password(ledger, tmp_path, monkeypatch):
    monkeypatch.setenv("GEOQ_TEST_SENTINEL_PASSWORD", SENTINEL_PASSWORD)
    with LocalSentinel(sentinel_password=SENTINEL_PASSWORD) as sentinel:
        config = write_config(tmp_path / "w.yaml", sentinel.url, ROUTES, logging={"level": "warning"},
                              redis={"sentinel": {"password": "${GEOQ_TEST_SENTINEL_PASSWORD}"}})
        with WorkerProcess(config, env=ledger.env) as worker:
            with geoq.Client.from_config(str(config)) as producer:
                ids = [job.id for job in producer.enqueue_many([("t.ok", {})] * 200)]
            ledger.wait_for_ids(ids, timeout=60, message="not every job ran behind password-protected sentinels")
            assert worker.stop() == 0, worker.log()
        ledger.assert_each_ran(ids, exactly_once=True)
        with master_client(sentinel) as client:
            assert_settled(client, ["default"])


@pytest.mark.parametrize("password", [None, "not-the-password"])
def test_a_refused_sentinel_login_is_one_line_and_exit_2(tmp_path, password):
    with LocalSentinel(sentinel_password=SENTINEL_PASSWORD) as sentinel:
        section = {"sentinel": {"password": password}} if password else {}
        config = write_config(tmp_path / "w.yaml", sentinel.url, ROUTES, redis=section)
        done = run_worker_once(config, timeout=60)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("geoq-worker: "), done.stderr
        assert SENTINEL_PASSWORD not in done.stderr and (password is None or password not in done.stderr)
