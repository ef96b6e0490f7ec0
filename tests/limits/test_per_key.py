"""Per-key limits across real worker processes: each key value has its own rate; a key no
payload can give fails its job at once."""

from __future__ import annotations

import random

import geoq
from tests.support.keyspace import assert_settled, places
from tests.support.limit_runs import by_key, most_at_once, most_in_window, runs
from tests.support.waiting import wait_until
from tests.support.worker_process import WorkerProcess, write_config

H = "tests.support.limit_handlers"
HOSTS, PER_HOST = 50, 10
JITTER = 0.02   # a run starts a few milliseconds after its permit's time


def test_fifty_hosts_each_get_five_a_second_and_the_run_takes_the_slowest_hosts_share(
        redis_url, redis_client, ledger, tmp_path):
    routes = {"l.host": {"handler": f"{H}:record", "limits": {"per_key": {"key": "url_host", "rate": "5/s"}}}}
    items = [("l.host", {"url": f"https://h{h}.example/p/{n}", "k": f"h{h}"})
             for h in range(HOSTS) for n in range(PER_HOST)]
    random.Random(7).shuffle(items)
    jobs = geoq.Client(redis_url).enqueue_many(items)
    config = write_config(tmp_path / "w.yaml", redis_url, routes, worker={"concurrency": 500})
    workers = [WorkerProcess(config, env=ledger.env, log=tmp_path / f"w{i}.log") for i in range(2)]
    try:
        wait_until(lambda: ledger.client.llen("ledger:runs") >= len(items), timeout=60, interval=0.1,
                   message="every host's jobs to run")
    finally:
        for w in workers:
            assert w.stop() == 0, w.log()
    found = runs(ledger.client)
    for host, host_runs in by_key(found).items():
        starts = [r.start for r in host_runs]
        assert most_in_window(starts, 1.0 - JITTER) <= 5, f"{host}: {[round(s - starts[0], 3) for s in starts]}"
    starts = sorted(r.start for r in found)
    share = (PER_HOST - 1) / 5   # the slowest host's runs, at 5/s, the first at once
    took = max(r.end for r in found) - starts[0]
    assert took <= share * 1.25 + 0.5, f"the run took {took:.2f}s; the slowest host's share is {share:.2f}s"
    assert sorted(r.job_id for r in found) == sorted(j.id for j in jobs)
    assert_settled(redis_client, ["default"])


def test_a_job_whose_payload_lacks_its_key_fails_at_once_with_the_reason(redis_url, redis_client, ledger, tmp_path):
    routes = {"l.acct": {"handler": f"{H}:record",
                         "limits": {"per_key": {"key": "{payload.account_id}", "rate": "10/s"}}}}
    client = geoq.Client(redis_url)
    good = client.enqueue("l.acct", {"account_id": 7, "k": "7"})
    bad = client.enqueue("l.acct", {"account": 7})
    config = write_config(tmp_path / "w.yaml", redis_url, routes)
    with WorkerProcess(config, env=ledger.env) as worker:
        wait_until(lambda: client.status(bad.id).state == "dead" and client.status(good.id).state == "succeeded",
                   timeout=30, message="the keyless job dead, the other done")
        assert worker.stop() == 0, worker.log()
    status = client.status(bad.id)
    assert status.reason == "fail" and status.attempts == 1
    assert status.last_error == ("Fail: limits.per_key.key {payload.account_id}: the payload has no "
                                 "payload.account_id")
    assert [r.job_id for r in runs(ledger.client)] == [good.id]
    assert [d["id"] for d in assert_settled(redis_client, ["default"]).dead["default"]] == [bad.id]


def test_two_thousand_keys_leave_nothing_in_redis_once_idle(redis_url, redis_client, ledger, tmp_path):
    routes = {"l.acct": {"handler": f"{H}:record", "limits": {"per_key": {"key": "{payload.account}", "rate": "2/s",
                                                                           "concurrency": 5}}}}
    jobs = geoq.Client(redis_url).enqueue_many([("l.acct", {"account": n % 2000, "k": str(n)}) for n in range(4000)])
    config = write_config(tmp_path / "w.yaml", redis_url, routes, worker={"concurrency": 1000})
    with WorkerProcess(config, env=ledger.env) as worker:
        wait_until(lambda: ledger.client.llen("ledger:runs") >= len(jobs), timeout=60, interval=0.1,
                   message="every account's jobs to run")
        wait_until(lambda: not list(redis_client.scan_iter(match="geoq:{limit:l.acct}:k*", count=1000)),
                   timeout=10, message="the accounts' limit keys to expire")
        assert worker.stop() == 0, worker.log()
    limit_keys = sorted(k.decode() for k in redis_client.scan_iter(match="geoq:{limit:*", count=1000))
    assert limit_keys == ["geoq:{limit:l.acct}:state"]   # one small hash per route, kept an hour
    assert sorted(r.job_id for r in runs(ledger.client)) == sorted(j.id for j in jobs)
    assert_settled(redis_client, ["default"])


def test_a_slow_host_at_its_concurrency_does_not_hold_up_the_other_hosts_behind_it(
        redis_url, redis_client, ledger, tmp_path):
    routes = {"l.host": {"handler": f"{H}:record", "limits": {"per_key": {"key": "url_host", "concurrency": 2}}}}
    client = geoq.Client(redis_url)
    slow = client.enqueue_many([("l.host", {"url": "https://slow.example/x", "k": "slow", "sleep": 0.5})] * 200)
    fast = client.enqueue_many([("l.host", {"url": f"https://f{n % 10}.example/", "k": f"f{n % 10}"})
                                for n in range(500)])   # queued behind every slow job
    config = write_config(tmp_path / "w.yaml", redis_url, routes, worker={"concurrency": 2000})
    with WorkerProcess(config, env=ledger.env) as worker:
        wait_until(lambda: {r.job_id for r in runs(ledger.client)} >= {j.id for j in fast}, timeout=15,
                   interval=0.1, message="the other hosts' jobs to run while the slow host works through its own")
        assert worker.stop() == 0, worker.log()
    found = by_key(runs(ledger.client))
    slow_runs = found["slow"]
    assert len(slow_runs) < 100 and most_at_once(slow_runs) <= 2   # the slow host at its limit, far from done
    where = places(redis_client, ["default"])
    assert where.total("processing") == 0 and where.total("dead") == 0
    left = where.total("ready") + where.total("scheduled")
    assert left == len(slow) - len({r.job_id for r in slow_runs})   # the rest wait, none lost or run twice
