"""An envelope far over worker.max_payload is dead-lettered (reason oversize) at a bounded memory cost.

The worker's peak resident set (VmHWM) is reset through /proc/PID/clear_refs once it is warm
and idle, so each push is measured in a fresh worker on its own: from the resident set at the
reset to the peak reached by the time the job is dead. The bound is the issue's: twice the
envelope's size. Receiving it costs that already (the reply parser's buffer, then the bytes
object made from it); any copy made in Python on top (decoding it, JSON-encoding a record around
it, packing the command that buries it) breaks the bound. The warm-up buries a small oversize
envelope first: the first burial of a large envelope also costs a fixed third of a MiB or so
(buffers that later ones reuse), which is not the per-byte cost the bound is about.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import geoq
from geoq import records
from geoq.broker import keys
from geoq.job import Job
from tests.metrics.conftest import get, sample
from tests.support.keyspace import assert_settled, places
from tests.support.ports import free_port
from tests.support.waiting import wait_until
from tests.support.worker_process import WorkerProcess, write_config

MIB = 1024 * 1024
READY = keys.queue_keys("default").ready
DEAD = keys.queue_keys("default").dead


def big_envelope(job_id: str, size: int = 5 * MIB) -> bytes:
    """A real job's envelope of about `size` bytes, its payload full of characters JSON escapes."""
    job = Job(id=job_id, type="t.ok", queue="default", payload={"blob": 'a"b\\c/d\n\té' * (size // 15)})
    return records.encode(job, records.NO_LIMIT)


def reset_peak(pid: int) -> int:
    """Reset the process's peak resident set to its current one; that size, in bytes."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return peak(pid)


def peak(pid: int) -> int:
    """The process's peak resident set size since the last reset (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


SMALL = [Job(id=f"default:s{i}", type="t.ok", queue="default", payload={"n": i}) for i in range(10)]
SCENARIOS = {
    # Alone on an idle worker, it is the first job of a blocking BLMOVE.
    "alone": lambda: [big_envelope("default:big")],
    # Among small jobs pushed at once, it comes in the non-blocking rest of a fetch batch.
    "behind small jobs": lambda: [records.encode(j, 2**20) for j in SMALL[:5]] + [big_envelope("default:big")]
    + [records.encode(j, 2**20) for j in SMALL[5:]],
    # Bytes that are not UTF-8 are kept as hex: they cost the worker no more.
    "not utf-8": lambda: [b"\xff" * (5 * MIB)],
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_5_mib_envelope_is_dead_as_oversize_with_peak_memory_growth_under_twice_its_size(
        scenario, redis_url, redis_client, tmp_path, capsys):
    port = free_port()
    config = write_config(tmp_path / "w.yaml", redis_url, {"t.ok": {"handler": "geoq.handlers.builtin:noop"}},
                          worker={"max_payload": "1mb", "concurrency": 20, "fetch_batch": 20},
                          metrics={"listen": f"127.0.0.1:{port}"})
    client = geoq.Client(redis_url)
    warm = client.enqueue_many([("t.ok", {"n": i}) for i in range(200)])
    # Warm-up runs the oversize path once, with an envelope just over the limit (see the module's docstring).
    redis_client.rpush(READY, b"not json", big_envelope("default:warm", MIB + MIB // 8))
    push = SCENARIOS[scenario]()
    (big,) = [e for e in push if len(e) > MIB]
    smalls = SMALL if len(push) > 1 else []
    with WorkerProcess(config) as worker:
        wait_until(lambda: get(port, "/readyz").status == 200, timeout=30, ignore=(OSError,))
        wait_until(lambda: all(client.status(j.id).state == "succeeded" for j in warm), timeout=30)
        wait_until(lambda: redis_client.zcard(DEAD) == 2 and places(redis_client, ["default"]).total("processing") == 0,
                   timeout=10)
        start = reset_peak(worker.pid)
        redis_client.rpush(READY, *push)
        wait_until(lambda: redis_client.zcard(DEAD) == 3, timeout=30, message="the oversize job is not dead")
        wait_until(lambda: all(client.status(j.id) is not None for j in smalls), timeout=30)
        growth = peak(worker.pid) - start
        scraped = get(port, "/metrics").body
        assert worker.stop() == 0, worker.log()
    with capsys.disabled():
        print(f"\n{scenario}: peak RSS growth {growth / MIB:.1f} MiB for a {len(big) / MIB:.1f} MiB envelope")
    assert growth <= 2 * len(big), f"peak RSS grew {growth / MIB:.1f} MiB for {len(big) / MIB:.1f} MiB"

    dead = assert_settled(redis_client, ["default"]).dead["default"]
    assert sorted((d["id"], d["reason"]) for d in dead) == sorted([
        ("", "undecodable"), ("default:warm", "oversize"), ("default:big" if records.is_utf8(big) else "", "oversize")])
    (record,) = [d for d in dead if d["reason"] == "oversize" and d["id"] != "default:warm"]
    if records.is_utf8(big):
        assert record["id"] == "default:big" and record["envelope"].encode() == big
        assert client.status("default:big").state == "dead" and client.status("default:big").reason == "oversize"
    else:
        assert record["id"] == "" and bytes.fromhex(record["envelope_hex"]) == big
    assert all(client.status(j.id).state == "succeeded" for j in warm + smalls)
    assert sample(scraped, "geoq_jobs_total", type="_unknown", queue="default", outcome="dead") == 3
