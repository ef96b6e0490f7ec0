"""Dead jobs by error group at scale: 100,000 dead jobs in ~250 groups, buried through dead.lua.

    .venv/bin/python bench/dead_groups.py [--jobs 100000] [--groups 250]

Fills one queue's dead set the worker's way (jobs pushed into a processing list, then
Broker.settle's dead.lua, 1,000 burials per call), then times what the dashboard and
`geoq dead groups` do: a page of groups, a text-filtered page, a page of one group's jobs,
finding a job by id, retrying a group of ~2,000, deleting a group of ~25,000, trimming
10,000, rebuilding the index of an unindexed set; and the index's bytes per dead job.
Beside each, the longest single Redis command it sent (SLOWLOG at 0 µs): no call may hold
Redis for long, whatever the backlog. Prints one table.
"""

from __future__ import annotations

import argparse
import re
import statistics
import string
import time
from typing import Any, Callable

from common import RedisServer, print_table  # noqa: I001 - sets sys.path for geoq

from geoq import records
from geoq.admin import groups
from geoq.admin.session import Session, resolve_config
from geoq.broker import keys
from geoq.broker.broker import Broker, Bury, Retention, Settlement, trim_dead
from geoq.job import Job

QUEUE = "default"
K = keys.queue_keys(QUEUE)
KEEP_ALL = Retention(0, 10**9, 10.0**12)
BATCH = 1000
BIG, MEDIUM = 25_000, 2_000   # the sizes of the group deleted and of the group retried


def group_error(g: int, n: int) -> str:
    """Group g's error for its n-th job: the words name the group, the numbers and host vary."""
    word = "".join(string.ascii_lowercase[(g // 26 ** i) % 26] for i in range(3))
    return f"ValueError: stage {word} failed for user{n} at db-{n % 7}.example.com ({n * 31} rows)"


def sizes(jobs: int, count: int) -> list[int]:
    rest = jobs - BIG - MEDIUM
    return [BIG, MEDIUM] + [rest // (count - 2) + (1 if i < rest % (count - 2) else 0) for i in range(count - 2)]


def fill(client: Any, broker: Broker, jobs: int, count: int) -> tuple[float, list[str]]:
    """Bury `jobs` dead jobs over `count` groups, interleaved, 1,000 per dead.lua call: (seconds, ids)."""
    plan = [g for g, size in enumerate(sizes(jobs, count)) for _ in range(size)]
    plan = [plan[(i * 7919) % len(plan)] for i in range(len(plan))]   # groups interleaved in time
    ids, took = [], 0.0
    for start in range(0, len(plan), BATCH):
        chunk = []
        for n, g in enumerate(plan[start:start + BATCH], start):
            job = Job(id=f"{QUEUE}:bench-{n}", type=f"t.kind{g % 10}", queue=QUEUE, payload={"n": n, "pad": "x" * 200})
            envelope = records.encode(job, records.NO_LIMIT)
            chunk.append(Bury(envelope, records.encode_dead(QUEUE, job, job.id, "max_retries", group_error(g, n),
                                                            time.time()), True, job.id, b""))
            ids.append(job.id)
        client.rpush(K.processing("bench"), *(b.envelope for b in chunk))
        began = time.perf_counter()
        broker.settle("bench", [Settlement(QUEUE, burials=chunk)], KEEP_ALL)
        took += time.perf_counter() - began
    return took, ids


def longest(client: Any, act: Callable[[], Any]) -> tuple[Any, float, float]:
    """act()'s result, its seconds, and the longest Redis command it sent (seconds)."""
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", 200_000)
    client.slowlog_reset()
    began = time.perf_counter()
    result = act()
    took = time.perf_counter() - began
    log = client.slowlog_get(200_000)
    client.config_set("slowlog-log-slower-than", 10_000)
    return result, took, max((e["duration"] for e in log), default=0) / 1e6


def median_of(act: Callable[[], Any], runs: int = 20) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        act()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def index_bytes(client: Any) -> int:
    return sum(int(client.memory_usage(key, samples=0) or 0) for key in K.dead_index_keys)


def strip(client: Any) -> None:
    """Make the set look as an older geoq left it: no heads, no index (not timed)."""
    head = re.compile(rb'^\{"fp":"[0-9a-f]+","seq":\d+,')
    start = 0
    while True:
        page = client.zrange(K.dead, start, start + 999, withscores=True)
        pipe = client.pipeline(transaction=False)
        for member, score in page:
            pipe.zrem(K.dead, member)
            pipe.zadd(K.dead, {head.sub(b"{", member): score})
        pipe.execute()
        if len(page) < 1000:
            break
        start += 1000
    client.delete(*K.dead_index_keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=250)
    args = parser.parse_args()
    rows: list[list[str]] = []
    with RedisServer() as server:
        client = server.client()
        broker = Broker(client)
        s = Session(resolve_config(None, server.url, {}))
        took, ids = fill(client, broker, args.jobs, args.groups)
        n = client.zcard(K.dead)
        rows.append(["bury through dead.lua", ms(took), f"{n / took:,.0f} jobs/s", f"{n:,} dead jobs"])
        per_job = index_bytes(client) / n
        head = statistics.mean(len(m) - len(m.split(b",", 2)[2]) - 1 for m in client.zrange(K.dead, 0, 999))
        rows.append(["index bytes per dead job", f"{per_job:.0f} B", "", f"+ {head:.0f} B head in each record"])

        first = groups.list_groups(s, [QUEUE], limit=50)
        rows.append(["groups page (50)", ms(median_of(lambda: groups.list_groups(s, [QUEUE], limit=50))), "",
                     f"{first.total} groups"])
        texted = groups.list_groups(s, [QUEUE], text="stage a", limit=50)
        rows.append(["text-filtered page", ms(median_of(lambda: groups.list_groups(s, [QUEUE], text="stage a",
                                                                                    limit=50))),
                     "", f"{len(texted.groups)} shown, total {texted.total}"])
        big, medium = (groups.list_groups(s, [QUEUE], text=group_error(g, 0).split(" for ")[0][12:], limit=1)
                       .groups[0] for g in (0, 1))
        rows.append(["one group's page (50)", ms(median_of(lambda: groups.group_jobs(s, QUEUE, big.fingerprint,
                                                                                     limit=50))),
                     "", f"group of {big.count:,}"])
        rows.append(["find by id", ms(median_of(lambda: groups.find_dead(s, ids[len(ids) // 2]))), "", ""])

        retried, t, worst = longest(client, lambda: groups.retry_group(s, QUEUE, medium.fingerprint))
        rows.append(["retry a group", ms(t), f"longest command {ms(worst)}", f"{retried:,} jobs re-queued"])
        deleted, t, worst = longest(client, lambda: groups.delete_group(s, QUEUE, big.fingerprint))
        rows.append(["delete a group", ms(t), f"longest command {ms(worst)}", f"{deleted:,} jobs deleted"])
        left = client.zcard(K.dead)
        trimmed, t, worst = longest(client, lambda: trim_dead(client, broker.scripts, QUEUE,
                                                              Retention(0, max(0, left - 10_000), 10.0**12)))
        rows.append(["trim 10,000", ms(t), f"longest command {ms(worst)}", f"{trimmed:,} records dropped"])

        strip(client)
        indexed, t, worst = longest(client, lambda: groups.rebuild(s, QUEUE))
        rows.append(["rebuild the index", ms(t), f"longest command {ms(worst)}", f"{indexed:,} records indexed"])
        s.close()
    print_table(["operation", "time", "rate / longest command", "note"], rows)


if __name__ == "__main__":
    main()
