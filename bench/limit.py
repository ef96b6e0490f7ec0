"""The floor: what this machine allows a gevent worker that makes geoq's Redis moves, with no geoq code.

    .venv/bin/python bench/limit.py REDIS_URL [--concurrency 100] [--batch 100]

Runs until SIGTERM, like bin/geoq-worker, so bench/core.py drains the same jobs through
it and through geoq in one run and prints geoq's rate as a share of this one. Per batch
it makes exactly the worker's round trips (geoq.worker.fetcher, settler; geoq.broker.broker):

- the fetch: one pipeline of BLMOVE for the first job and fetch.lua for the rest (which marks
  each job running, after checking the queue's paused flag);
- the settle: ack.lua (each job out of the processing list, its state entry deleted, its done
  record stored), the outcomes of a batch in one call;

and spawns one greenlet per job into a bounded pool, whose run does nothing but hand its
job to the settling greenlet. The Lua is geoq's own files, read as text; nothing is
imported from geoq, so every microsecond geoq spends beyond this is geoq's.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import redis  # noqa: E402
from gevent.event import Event  # noqa: E402
from gevent.pool import Pool  # noqa: E402
from gevent.queue import Queue  # noqa: E402

SCRIPTS = Path(__file__).resolve().parents[1] / "geoq" / "broker" / "scripts"
TAG = "geoq:{default}"
READY, STATE, PAUSED = f"{TAG}:ready", f"{TAG}:state", f"{TAG}:paused"
HEADER_ID = re.compile(rb'^\{"i":"([^"]+)","a":(\d+)')
KEEP = 86400  # results.keep's default: every job leaves its done record, as in the drain rows


class Floor:
    def __init__(self, url: str, concurrency: int, batch: int) -> None:
        self.redis = redis.Redis.from_url(url, socket_timeout=10)
        self.blocking = redis.Redis.from_url(url, socket_timeout=15)
        self.id = f"{socket.gethostname()}.{os.getpid()}.floor"
        self.processing = f"{TAG}:processing:{self.id}"
        self.pool, self.batch = Pool(concurrency), batch
        self.outcomes: Queue = Queue(maxsize=concurrency + batch)
        self.stopping = Event()
        self.sha = {name: self.redis.script_load((SCRIPTS / f"{name}.lua").read_text())
                    for name in ("fetch", "ack")}

    def fetch_loop(self) -> None:
        self.redis.sadd(f"{TAG}:workers", self.id)  # so the bench's poll sees this processing list
        while not self.stopping.is_set():
            self.pool.wait_available()
            free = min(self.pool.free_count(), self.batch)
            pipe = self.blocking.pipeline(transaction=False)
            pipe.blmove(READY, self.processing, 1.0, "LEFT", "RIGHT")
            pipe.evalsha(self.sha["fetch"], 4, READY, self.processing, STATE, PAUSED, free - 1)  # moves, marks running
            first, (tail_gone, _paused, *more) = pipe.execute()
            envelopes = ([first] if first is not None and not tail_gone else []) + list(more)
            self.dispatch(envelopes)

    def dispatch(self, envelopes: list[bytes]) -> None:
        jobs = []
        for envelope in envelopes:
            match = HEADER_ID.match(envelope)
            assert match, envelope[:80]
            jobs.append((envelope, match[1].decode(), int(match[2]) + 1))
        for job in jobs:
            self.pool.spawn(self.outcomes.put, ("ack", job))  # the no-op run: its outcome, handed over

    def settle_loop(self) -> None:
        while True:
            batch = [self.outcomes.get()]
            while len(batch) < 1000 and not self.outcomes.empty():
                batch.append(self.outcomes.get_nowait())
            acks = [job for _, job in batch]
            pipe = self.redis.pipeline(transaction=False)
            if acks:
                args = [KEEP]
                for envelope, _, runs in acks:
                    args += [envelope, b'{"s":"succeeded","t":"bench.noop","a":%d,"e":null,"r":null,'
                                       b'"x":null}' % runs]
                done = [f"{TAG}:done:{job_id}" for _, job_id, _ in acks]
                pipe.evalsha(self.sha["ack"], 2 + len(done), self.processing, STATE, *done, *args)
            pipe.execute()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    floor = Floor(args.url, args.concurrency, args.batch)
    gevent.signal_handler(signal.SIGTERM, floor.stopping.set)
    settler = gevent.spawn(floor.settle_loop)
    fetcher = gevent.spawn(floor.fetch_loop)
    floor.stopping.wait()
    fetcher.join(timeout=5)
    floor.pool.join(timeout=5)
    gevent.sleep(0.1)  # the last outcomes' flush
    settler.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
