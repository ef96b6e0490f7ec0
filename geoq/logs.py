"""Logging set-up for entry points (the library itself only logs), and JobLog: the one line per job outcome.

JobLog is a middleware (geoq.middleware): the worker knows nothing of logging lines per job.

Plain lines read ``TIME LEVEL LOGGER: MESSAGE``; JSON lines are one object
each with ``ts, time, level, logger, msg`` and, for job lines, the job's
``id, type, queue, attempt, duration, outcome`` (and ``reason``, ``error``,
``delay`` when they apply) as keys of their own. A job's death is logged at
ERROR as one record carrying its last run's traceback, as a logged exception
would be (plain: the lines after the message; JSON: ``exc``). Payloads are never
logged.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from geoq.config import LoggingConfig
from geoq.job import Job
from geoq.middleware import Middleware
from geoq.outcome import DEAD, INTERRUPTED, RETRY, SUCCEEDED, Outcome

FIELDS = "geoq"          # the LogRecord attribute holding a line's structured fields
ERROR_CHARS = 500        # an error message is cut to this, so a line stays a line
OUTCOME_LEVELS = {"succeeded": logging.INFO, "retried": logging.INFO, "dead": logging.ERROR}
JOB_LOGGER = "geoq.worker.executor"   # the logger job lines have always come from, which filters name


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, any structured fields, the exception."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {"ts": round(record.created, 3),
                                "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
                                "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            body.update((k, v) for k, v in fields.items() if k not in body)
        exc = self.formatException(record.exc_info) if record.exc_info else record.exc_text
        if exc:
            body["exc"] = exc
        return json.dumps(body, ensure_ascii=False, default=str)


def configure(cfg: LoggingConfig, stream: object = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    if cfg.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(cfg.level.upper())


class JobLog(Middleware):
    """geoq's job log lines: one record per finished run (see log_outcome), and a warning for each
    job buried as fetched (undecodable, not a job, unknown type, oversize). An interrupted run
    logs nothing here: the worker's stop says how many it interrupted."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger(JOB_LOGGER)

    def after_run(self, job: Job, outcome: Outcome) -> None:
        state = outcome.state
        if state == SUCCEEDED and not self.log.isEnabledFor(logging.INFO):
            return   # most runs, at level warning: one level check (logging caches it), nothing read or built
        if state == INTERRUPTED:
            return
        if outcome.ran:
            log_outcome(self.log, job, outcome)
        else:
            self.log.warning("job %s of type %s in queue %s is dead: %s: %s", job.id, job.type, job.queue,
                             outcome.reason, outcome.error)


def log_outcome(logger: logging.Logger, job: Job, outcome: Outcome) -> None:
    """One record for a finished run: succeeded and retried at INFO, dead at ERROR with its traceback.

    Its result is not logged; neither is the payload.
    """
    name = outcome.label
    level = OUTCOME_LEVELS.get(name, logging.INFO)
    if not logger.isEnabledFor(level):
        return  # the common case at level warning: build nothing
    fields: dict[str, Any] = {"id": job.id, "type": job.type, "queue": job.queue, "attempt": job.attempt,
                              "duration": round(outcome.duration, 6), "outcome": name}
    where, line, func, _ = logger.findCaller(stacklevel=2)  # as logger.log would: the caller's place
    record = logger.makeRecord(logger.name, level, where, line, "job %s %s queue=%s attempt=%d %s in %.3fs%s",
                               (job.id, job.type, job.queue, job.attempt, name, outcome.duration,
                                _why(outcome, fields)), None, func, {FIELDS: fields})
    if outcome.state == DEAD:
        # The text already formatted (trimmed and bounded), where formatters look for a cached exception.
        record.exc_text = outcome.traceback
    logger.handle(record)


def _why(outcome: Outcome, fields: dict[str, Any]) -> str:
    """The message's tail (delay or reason, then the error); adds those to `fields` too."""
    why = ""
    if outcome.state == RETRY:
        fields["delay"] = round(outcome.delay or 0.0, 3)
        why = f", retry in {fields['delay']:.1f}s"
    elif outcome.state == DEAD:
        fields["reason"] = outcome.reason or ""
        why = f" ({fields['reason']})"
    if outcome.error:
        fields["error"] = one_line(outcome.error)
        why += f": {fields['error']}"
    return why


def one_line(text: str, limit: int = ERROR_CHARS) -> str:
    """Text folded onto one line and cut to `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"
