"""Dead-letter records as the CLI reads them, and the fresh envelope a retry puts back. Pure.

A record is the JSON the worker wrote when the job died (geoq.worker.executor.dead_record:
id, type, queue, reason, error, attempts, history, died_at, the last run's traceback, absent
or null when no run raised), completed by dead.lua with the original envelope text (or its
bytes in hex when they were not UTF-8). Its set score is the Redis time of
death, which the CLI reports as died_at because purges and trims are measured against it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Mapping

from geoq import job as jobs
from geoq.broker.admin import DeadEntry, Revival
from geoq.errors import InvalidJob

_NO_LIMIT = 2**31  # the size limit is the worker's to enforce when the job is fetched again


@dataclass(frozen=True, slots=True)
class DeadRecord:
    entry: DeadEntry
    body: Mapping[str, Any]

    @property
    def id(self) -> str:
        value = self.body.get("id")
        return value if isinstance(value, str) else ""

    @property
    def type(self) -> str | None:
        value = self.body.get("type")
        return value if isinstance(value, str) else None

    @property
    def history(self) -> list[tuple[float, str]]:
        out = []
        for item in self.body.get("history") or ():
            if isinstance(item, list) and len(item) == 2:
                out.append((float(item[0]), str(item[1])))
        return out

    @property
    def traceback(self) -> str | None:
        value = self.body.get("traceback")
        return value if isinstance(value, str) else None

    def summary(self) -> dict[str, Any]:
        """The `dead list --json` shape. It leaves out the traceback: up to 8 KiB per job would
        swamp a list; `dead show` and `job` give it."""
        return {"id": self.id, "type": self.type, "queue": self.entry.queue, "reason": self.body.get("reason"),
                "error": self.body.get("error"), "attempts": self.body.get("attempts", 0),
                "died_at": round(self.entry.died_at, 3)}

    def full(self) -> dict[str, Any]:
        """Everything the record holds (the `dead show --json` shape)."""
        return {**self.body, **self.summary(), "history": [list(h) for h in self.history],
                "traceback": self.traceback}


def parse(entry: DeadEntry) -> DeadRecord:
    """The record in a dead-set member; a member that is not a JSON object reads as an empty record."""
    try:
        body = json.loads(entry.member)
    except ValueError:
        body = {}
    return DeadRecord(entry, body if isinstance(body, dict) else {})


def revival(record: DeadRecord) -> Revival | str:
    """What a retry puts back: the original envelope with its runs, worker deaths and errors reset.

    Returns the reason instead when the record holds nothing that can run again.
    The rewrite happens here, not in Lua, because a script must never decode a payload.
    """
    text = record.body.get("envelope")
    if not isinstance(text, str):
        return "its bytes were not UTF-8 text, so they are not a job"
    try:
        job = jobs.decode(text.encode("utf-8"), record.entry.queue)
    except InvalidJob:
        return "its envelope is not a job"
    fresh = dataclasses.replace(job, attempt=0, history=(), deaths=0)
    return Revival(record.entry.member, jobs.encode(fresh, _NO_LIMIT), job.id)
