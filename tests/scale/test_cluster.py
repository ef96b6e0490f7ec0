"""Redis Cluster: queues spread over three shards, two worker processes, a master killed mid-run."""

from __future__ import annotations

from pathlib import Path

import geoq
from tests.scale.conftest import PASSWORD, ROUTES, readme_acl_line
from tests.support.ledger import Ledger
from tests.support.cluster import LocalCluster
from tests.support.cluster_keyspace import assert_settled, master_port_of_slot, places, queue_key_names, slot
from tests.support.waiting import wait_until
from tests.support.worker_process import WorkerProcess, write_config

# Two queues on each master of a three-master cluster (CLUSTER KEYSLOT decides; the first test checks).
QUEUES = ["mail", "crawl", "critical", "images", "hooks", "sms"]
# Equal weights: every fetch visits the queues in a random order, so all shards work at once.
WEIGHTED = {q: 1 for q in QUEUES}
JOBS = 10_000


def start_workers(tmp_path: Path, url: str, ledger: Ledger, client, *, concurrency: int,
                  user: dict | None = None) -> list[WorkerProcess]:
    config = write_config(tmp_path / "w.yaml", url, ROUTES, worker={"queues": WEIGHTED, "concurrency": concurrency},
                          logging={"level": "warning"}, redis=user or {})
    workers = [WorkerProcess(config, env=ledger.env, log=tmp_path / f"w{i}.log") for i in (1, 2)]
    wait_until(lambda: client.hlen("geoq:workers") == 2, timeout=20, message="both workers registered")
    return workers


def stop_all(workers: list[WorkerProcess]) -> None:
    for w in workers:
        assert w.stop() == 0, w.log()


def enqueue(url: str, payload: dict) -> list[str]:
    with geoq.Client(url) as client:
        jobs = client.enqueue_many([("t.ok", payload, {"queue": QUEUES[i % len(QUEUES)]}) for i in range(JOBS)])
    return [job.id for job in jobs]


def test_every_key_of_a_queue_shares_one_slot_and_the_queues_cover_every_master(cluster, cluster_client):
    masters = set()
    for queue in QUEUES:
        slots = {slot(cluster_client, key) for key in queue_key_names(queue, job_id=f"{queue}:AbCdEfGhIjKlMnOp")}
        assert len(slots) == 1, (queue, slots)
        masters.add(master_port_of_slot(cluster_client, slots.pop()))
    assert masters == {node.port for node in cluster.masters()}


def test_ten_thousand_jobs_on_six_queues_over_three_masters_all_complete_with_two_workers(
        cluster, cluster_client, ledger, tmp_path):
    for node in cluster.nodes:  # the README's least-privilege user, on every node (ACLs are per node)
        node.client().execute_command("ACL", "SETUSER", *readme_acl_line())
        node.client().execute_command("ACL", "LOG", "RESET")
    user = {"username": "geoq", "password": PASSWORD}
    workers = start_workers(tmp_path, cluster.url, ledger, cluster_client, concurrency=200, user=user)
    try:
        ours = [c for node in cluster.masters() for c in node.client().client_list() if c["name"].startswith("geoq-")]
        assert ours and {c["user"] for c in ours} == {"geoq"}, ours
        ids = enqueue(cluster.url.replace("://", f"://geoq:{PASSWORD}@"), {})
        ledger.wait_for_ids(ids, timeout=120, message="not every job completed")
    finally:
        stop_all(workers)

    ledger.assert_each_ran(ids, exactly_once=True)
    assert set(ledger.by_process()) == {w.pid for w in workers}, "each worker process ran jobs"
    settled = assert_settled(cluster_client, QUEUES)
    assert settled.total("dead") == 0
    assert cluster_client.hlen("geoq:workers") == 0  # both deregistered
    for node in cluster.masters():
        assert node.client().execute_command("ACL", "LOG") == [], "the README's ACL line lacks a command"
    with geoq.Client(cluster.url) as client:
        assert client.status(ids[0]).state == "succeeded"  # found by id alone, on its queue's master
        assert client.result(ids[-1], timeout=1) == {"attempt": 1}


def test_a_master_killed_mid_run_is_replaced_by_its_replica_and_no_job_is_lost(ledger, tmp_path):
    with LocalCluster(node_timeout_ms=1000) as cluster:
        client = cluster.client()
        workers = start_workers(tmp_path, cluster.url, ledger, client, concurrency=100)
        try:
            ids = enqueue(cluster.url, {"sleep": 0.1})
            # Replication is asynchronous: an enqueue acknowledged but not yet copied dies with its
            # master (Redis's promise, not geoq's), so the kill waits until the replicas have them all.
            cluster.wait_replicated()
            ledger.wait_for(JOBS // 6, timeout=60, message="the run did not get going")
            victim = cluster.master_of("geoq:{mail}:ready")
            left = places(client, ["mail", "crawl"])
            assert left.total("ready") > 0, "the victim's queues were drained before the kill"
            victim.kill()
            promoted = cluster.wait_for_failover(victim)
            assert cluster.master_of("geoq:{mail}:ready").port == promoted.port
            ledger.wait_for_ids(ids, timeout=120, message="not every job completed after the failover")
            # Runs delivered again after the failover may still be going; a stop would hand them back.
            wait_until(lambda: _drained(cluster), timeout=60, interval=0.1,
                       message="the jobs delivered again did not finish")
        finally:
            stop_all(workers)
        client.close()
        client = cluster.client()  # the slot map of now
        duplicates = ledger.assert_each_ran(ids, exactly_once=False)
        # A run whose ack (or fetch) the dead master took but never copied to its replica
        # runs again: bounded by what was in flight around the kill.
        assert duplicates <= 2 * 100, duplicates
        assert_settled(client, QUEUES)
        client.close()
    print(f"failover: {duplicates} of {JOBS} jobs ran twice")


def _drained(cluster) -> bool:
    client = cluster.client()  # the slot map of now
    try:
        p = places(client, QUEUES)
    finally:
        client.close()
    return all(p.total(kind) == 0 for kind in ("ready", "scheduled", "processing", "live_states"))
