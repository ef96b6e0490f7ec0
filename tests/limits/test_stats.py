"""`geoq stats` shows each limited route's state: its rate now, slots in use, keys paused."""

from __future__ import annotations

import json

import geoq
from geoq.broker.limits import LimitBroker
from geoq.broker.scripts import Scripts
from geoq.config import load_config
from geoq.routing import limit_spec
from tests.admin.helpers import run_geoq
from tests.support.keyspace import places
from tests.support.waiting import wait_until
from tests.support.worker_process import WorkerProcess, write_config

H = "tests.support.limit_handlers"
LIMITS = {"rate": "50/s", "concurrency": 5, "adaptive": True,
          "per_key": {"key": "{payload.k}", "concurrency": 3}}


def stats(config) -> dict:
    done = run_geoq("-c", str(config), "stats", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_stats_shows_a_limited_routes_rate_slots_in_use_and_paused_keys(redis_url, redis_client, ledger, tmp_path):
    routes = {"l.shown": {"handler": f"{H}:record", "limits": LIMITS}, "l.plain": {"handler": f"{H}:record"}}
    config = write_config(tmp_path / "w.yaml", redis_url, routes)
    spec = limit_spec("l.shown", load_config(config).routes["l.shown"].limits)
    LimitBroker(redis_client, Scripts()).pause(spec, "paused-key", 60)
    client = geoq.Client(redis_url)
    jobs = client.enqueue_many([("l.shown", {"sleep": 1.0, "k": f"k{i % 4}"}) for i in range(20)])
    held = client.enqueue("l.shown", {"k": "paused-key"})
    with WorkerProcess(config, env=ledger.env) as worker:
        shown = wait_until(lambda: stats(config)["limits"]["l.shown"]["slots_in_use"] > 0 and stats(config),
                           timeout=30, message="slots in use to show")
        wait_until(lambda: ledger.client.llen("ledger:runs") >= 20, timeout=60, message="the jobs to run")
        assert client.status(held.id).state == "scheduled"   # its key is paused: it waits
        text = run_geoq("-c", str(config), "stats").stdout
        assert worker.stop() == 0, worker.log()
    route = shown["limits"]["l.shown"]
    assert 0 < route["slots_in_use"] <= 5 and route["keys_paused"] == 1 and route["rate"] >= 0
    assert route["limit"] == {"rate": 50.0, "concurrency": 5, "adaptive": True,
                              "per_key": {"key": "{payload.k}", "rate": None, "concurrency": 3}}
    assert set(shown["limits"]) == {"l.shown"} and set(shown) >= {"queues", "workers"}
    assert "LIMITED ROUTE" in text and "l.shown" in text and "{payload.k}" in text
    after = stats(config)["limits"]["l.shown"]
    assert after["slots_in_use"] == 0 and after["keys_paused"] == 1
    where = places(redis_client, ["default"])   # every job ran once, but the one its paused key holds back
    assert (where.scheduled, where.total("ready"), where.total("processing")) == ({"default": 1}, 0, 0)
    assert sorted(r.split()[-1] for r in map(bytes.decode, ledger.client.lrange("ledger:runs", 0, -1))) == \
        sorted(j.id for j in jobs)
