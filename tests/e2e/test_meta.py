"""job.meta end to end: set by enqueue(meta=) or a producer's middleware, seen by every run of
the job in bin/geoq-worker, through retries, the dead set and `geoq dead retry`; bad meta is
refused with one line before anything is stored."""

from __future__ import annotations

import dataclasses
import json

import pytest

import geoq
from geoq import records
from tests.admin.helpers import run_geoq
from tests.support.handlers import meta_seen
from tests.support.keyspace import assert_settled, places
from tests.support.waiting import wait_until
from tests.support.worker_process import WorkerProcess, write_config

ROUTES = {"t.meta": {"handler": "tests.support.handlers:show_meta", "max_retries": 1,
                     "backoff": {"base": "10ms", "max": "20ms"}}}
META = {"tenant": "acme", "request": {"id": "r-17", "tags": ["a", "b"]}, "n": 3}


class Tenancy(geoq.Middleware):
    """A producer middleware that stamps every job with its tenant, as a team would for audit."""

    def before_enqueue(self, job: geoq.Job) -> geoq.Job:
        return dataclasses.replace(job, meta={**job.meta, "tenant": "from-middleware"})


def test_meta_reaches_every_run_through_retries_the_dead_set_and_dead_retry(redis_url, redis_client, ledger,
                                                                          tmp_path):
    config = write_config(tmp_path / "w.yaml", redis_url, ROUTES)
    ledger.client.set("meta:fail", 1)
    client = geoq.Client(redis_url)
    job = client.enqueue("t.meta", {}, meta=META)
    assert job.meta == META

    with WorkerProcess(config, env=ledger.env) as worker:
        wait_until(lambda: places(redis_client, ["default"]).total("dead") == 1, timeout=20,
                   message="the failing job did not reach the dead set")
        shown = run_geoq("-c", str(config), "--json", "dead", "show", job.id)
        assert shown.returncode == 0, shown.stderr
        assert records.decode(json.loads(shown.stdout)["envelope"].encode(), "default").meta == META

        ledger.client.delete("meta:fail")
        retried = run_geoq("-c", str(config), "dead", "retry", job.id)
        assert retried.returncode == 0, retried.stderr
        wait_until(lambda: client.status(job.id).state == "succeeded", timeout=20,
                   message="the retried job did not succeed")
        assert worker.stop() == 0, worker.log()

    runs = meta_seen(ledger.client, job.id)
    assert [r["attempt"] for r in runs] == [1, 2, 1]  # two runs, dead, then one more after dead retry
    assert all(r["meta"] == META for r in runs)
    assert client.result(job.id, timeout=1) == {"meta": META}
    assert assert_settled(redis_client, ["default"]).dead == {"default": []}


def test_a_producer_middleware_sets_meta_for_enqueue_and_enqueue_many(redis_url, redis_client, ledger, tmp_path):
    config = write_config(tmp_path / "w.yaml", redis_url, ROUTES)
    client = geoq.Client(redis_url, middleware=[Tenancy()])
    one = client.enqueue("t.meta", {}, meta={"request": "r-1"})
    many = client.enqueue_many([("t.meta", {}), ("t.meta", {}, {"meta": {"request": "r-2"}})])

    with WorkerProcess(config, env=ledger.env) as worker:
        wait_until(lambda: all(client.status(j.id).state == "succeeded" for j in [one, *many]), timeout=20,
                   message="the jobs did not all succeed")
        assert worker.stop() == 0, worker.log()

    assert meta_seen(ledger.client, one.id)[0]["meta"] == {"request": "r-1", "tenant": "from-middleware"}
    assert meta_seen(ledger.client, many[0].id)[0]["meta"] == {"tenant": "from-middleware"}
    assert meta_seen(ledger.client, many[1].id)[0]["meta"] == {"request": "r-2", "tenant": "from-middleware"}
    assert_settled(redis_client, ["default"])


@pytest.mark.parametrize("meta, message", [
    (["tenant"], "meta must be a dict of JSON values, got ['tenant']"),
    ({1: "x"}, "meta of t.meta must be a dict with string keys, got {1: 'x'}"),
    ({"at": object()}, "meta of t.meta is not JSON-serialisable: Object of type object is not JSON serializable"),
    ({"big": "x" * 5000}, f"meta of t.meta is 5010 bytes encoded; the limit is {records.META_LIMIT}"),
])
def test_bad_meta_is_refused_in_one_line_and_nothing_is_stored(redis_url, redis_client, meta, message):
    client = geoq.Client(redis_url)
    with pytest.raises(geoq.InvalidJob) as caught:
        client.enqueue("t.meta", {}, meta=meta)
    assert str(caught.value) == message
    assert redis_client.keys("geoq:*") == []


def test_meta_counts_in_max_payload(redis_url, redis_client, tmp_path):
    config = write_config(tmp_path / "w.yaml", redis_url, ROUTES, worker={"max_payload": "1KiB"})
    client = geoq.Client.from_config(str(config))
    client.enqueue("t.meta", {}, meta={"fits": "x" * 500})
    with pytest.raises(geoq.PayloadTooLarge, match="the limit is 1024"):
        client.enqueue("t.meta", {}, meta={"fits": "x" * 1000})
    assert places(redis_client, ["default"]).ready == {"default": 1}
