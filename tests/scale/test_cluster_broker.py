"""The broker's client on Redis Cluster: pipelines split by slot, redirections followed, nothing sent twice."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time

import pytest
import redis

import geoq
from geoq.broker import keys
from geoq.broker.admin import AdminBroker
from geoq.broker.broker import Broker
from geoq.broker.connection import connect
from geoq.broker.inspect import queue_depths
from geoq.broker.liveness import Registry
from geoq.config import default_config
from tests.support.cluster_keyspace import processing_lists
from tests.support.dead_index import SMTP, fp, seed
from tests.support.ports import free_port
from tests.support.worker_process import ROOT

QUEUES = ["mail", "critical", "hooks"]   # one on each master


def broker_on(url: str, **changes) -> Broker:
    return Broker(connect(dataclasses.replace(default_config(url).redis, **changes), name="geoq-test"))


def test_one_pipeline_reaches_every_master_and_keeps_the_order_of_replies(cluster, cluster_client):
    broker = broker_on(cluster.url)
    with geoq.Client(cluster.url) as producer:
        for n, queue in enumerate(QUEUES, start=1):
            producer.enqueue_many([("t.ok", {})] * n, ) if queue == "default" else \
                producer.enqueue_many([("t.ok", {}, {"queue": queue})] * n)
    registry = Registry(broker.client, broker.scripts)
    registry.register("w1", "{}", QUEUES, ttl=60)
    for queue in QUEUES:
        assert len(broker.fetch(broker.client, queue, "w1", 1, None)) == 1
    depths = queue_depths(broker, QUEUES)  # ready, scheduled, dead and the workers' sets in one pipeline
    assert depths == {"mail": {"ready": 0, "scheduled": 0, "processing": 1, "dead": 0},
                      "critical": {"ready": 1, "scheduled": 0, "processing": 1, "dead": 0},
                      "hooks": {"ready": 2, "scheduled": 0, "processing": 1, "dead": 0}}
    assert len({cluster.master_of(k).port for k in processing_lists(cluster_client)}) == 3


def test_the_admin_scan_finds_the_queues_and_processing_lists_of_every_master(cluster, cluster_client):
    broker = broker_on(cluster.url)
    with geoq.Client(cluster.url) as producer:
        for queue in QUEUES:
            producer.enqueue_many([("t.ok", {}, {"queue": queue})] * 2)
    for queue in QUEUES:
        broker.fetch(broker.client, queue, f"w-{queue}", 1, None)
    admin = AdminBroker(broker.client)
    scan = admin.scan_queues()
    assert scan.queues == set(QUEUES)
    assert dict(scan.processing) == {q: (f"w-{q}",) for q in QUEUES}
    stats = subprocess.run([sys.executable, str(ROOT / "bin" / "geoq"), "--redis-url", cluster.url, "stats", "--json"],
                           capture_output=True, text=True, timeout=30, env={"PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert stats.returncode == 0, stats.stderr
    queues = json.loads(stats.stdout)["queues"]  # the default queue (named by the config) and what the scan found
    assert {q: queues[q]["processing"] for q in QUEUES} == {q: 1 for q in QUEUES}


def test_a_pipeline_whose_connection_breaks_is_raised_and_never_sent_again(cluster, cluster_client):
    """redis-py's own cluster pipeline would send both commands again, one by one: a second push."""
    broker = broker_on(cluster.url, socket_timeout=0.3)
    pipe = broker.client.pipeline(transaction=False)
    pipe.lpush("geoq:{t}:pushed", "x")
    pipe.blmove("geoq:{t}:empty", "geoq:{t}:moved", 2, "LEFT", "RIGHT")  # outlasts the read timeout
    with pytest.raises(redis.TimeoutError):
        pipe.execute()
    assert cluster_client.llen("geoq:{t}:pushed") == 1
    assert broker.client.llen("geoq:{t}:pushed") == 1  # the client goes on, with a fresh slot map


def test_a_slot_moved_to_another_master_is_followed_by_scripts_fetches_and_reads(cluster, cluster_client):
    broker = broker_on(cluster.url)
    with geoq.Client(cluster.url) as producer:
        first = producer.enqueue("t.ok", {}, queue="moving")
        slot = cluster.slot_of("geoq:{moving}:ready")
        source = cluster.master_of("geoq:{moving}:ready")
        target = next(m for m in cluster.masters() if m is not source)
        cluster.move_slot(slot, target)  # both clients still map the slot to the source: MOVED
        second = producer.enqueue("t.ok", {}, queue="moving")
        assert producer.status(first.id).state == "queued"
    assert len(broker.fetch(broker.client, "moving", "w1", 10, None)) == 2
    assert queue_depths(broker, ["moving"])["moving"]["ready"] == 0
    assert cluster.master_of("geoq:{moving}:state") is target
    assert target.client().hlen("geoq:{moving}:state") == 2 and second.id


def test_a_producer_is_built_while_the_cluster_is_down_and_fails_only_when_it_writes():
    url = f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    with geoq.Client(url) as producer:  # nothing connects yet
        with pytest.raises(geoq.RedisUnavailable) as caught:
            producer.enqueue("t.ok", {})
    assert "\n" not in str(caught.value)
    stats = subprocess.run([sys.executable, str(ROOT / "bin" / "geoq"), "--redis-url", url, "stats"],
                           capture_output=True, text=True, timeout=30, env={"PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert stats.returncode == 3 and len(stats.stderr.strip().splitlines()) == 1, stats.stderr


def test_job_control_moves_stay_inside_each_queues_slot_on_a_cluster(cluster, cluster_client):
    broker = broker_on(cluster.url)
    with geoq.Client(cluster.url) as producer:
        for queue in QUEUES:
            unique = producer.enqueue("t.ok", {"u": 1}, queue=queue, unique_for=60)
            assert producer.enqueue("t.ok", {"u": 1}, queue=queue, unique_for=60).id == unique.id
            later = producer.enqueue("t.ok", {}, queue=queue, delay=600)
            assert producer.cancel(later.id) and producer.status(later.id).state == "cancelled"
            assert producer.pause(queue)
            assert broker.fetch(broker.client, queue, "w1", 5, None).paused
            assert producer.resume(queue)
            assert len(broker.fetch(broker.client, queue, "w1", 5, None)) == 1
            assert producer.cancel(unique.id) and broker.cancel_requests([queue]) == {unique.id}
            producer.enqueue("t.ok", {}, queue=queue, delay=0.01, expires=0.02)
    time.sleep(0.1)   # due and expired
    for queue in QUEUES:
        promotion = broker.promote_due(queue, 100, 60)
        assert (promotion.moved, len(promotion.expired)) == (0, 1)


def test_dead_groups_are_indexed_listed_found_and_purged_on_every_master(cluster, cluster_client):
    ids = {queue: seed(cluster_client, [SMTP.format(n=n) for n in range(3)], queue=queue) for queue in QUEUES}

    def geoq_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(ROOT / "bin" / "geoq"), "--redis-url", cluster.url, *args],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)

    listed = geoq_cli("dead", "groups", "--json")
    assert listed.returncode == 0, listed.stderr
    groups = {g["queue"]: g for g in json.loads(listed.stdout)["groups"]}
    assert {q: (g["fingerprint"], g["count"]) for q, g in groups.items()} == {
        q: (fp(SMTP, queue=q), 3) for q in QUEUES}
    shown = geoq_cli("dead", "show", ids["hooks"][1], "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["fp"] == fp(SMTP, queue="hooks"), shown.stderr
    for queue in QUEUES:
        purged = geoq_cli("dead", "purge", "--group", groups[queue]["fingerprint"], "--json")
        assert purged.returncode == 0 and json.loads(purged.stdout)["purged"] == 3, purged.stderr
    for queue in QUEUES:
        k = keys.queue_keys(queue)
        assert cluster_client.zcard(k.dead) == 0 and cluster_client.llen(k.processing("seeder")) == 0
        assert all(cluster_client.exists(key) == 0 for key in k.dead_index_keys[:4])
    assert len({cluster.master_of(keys.queue_keys(q).dead_index).port for q in QUEUES}) == 3
