"""Logging set-up for entry points (the library itself only logs), and the one line per job outcome.

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

FIELDS = "geoq"          # the LogRecord attribute holding a line's structured fields
ERROR_CHARS = 500        # an error message is cut to this, so a line stays a line
OUTCOME_LEVELS = {"succeeded": logging.INFO, "retried": logging.INFO, "dead": logging.ERROR}
_OUTCOME_NAMES = {"Succeeded": "succeeded", "RetryAt": "retried", "Dead": "dead"}


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


def log_outcome(logger: logging.Logger, job: Job, outcome: object, duration: float) -> None:
    """One record for a finished run: succeeded and retried at INFO, dead at ERROR with its traceback.

    `outcome` is a geoq.outcome Succeeded, RetryAt or Dead (read by name, so this
    module needs no gevent). Its result is not logged; neither is the payload.
    """
    name = _OUTCOME_NAMES.get(type(outcome).__name__, type(outcome).__name__.lower())
    level = OUTCOME_LEVELS.get(name, logging.INFO)
    if not logger.isEnabledFor(level):
        return  # the common case at level warning: build nothing
    fields: dict[str, Any] = {"id": job.id, "type": job.type, "queue": job.queue, "attempt": job.attempt,
                              "duration": round(duration, 6), "outcome": name}
    where, line, func, _ = logger.findCaller(stacklevel=2)  # as logger.log would: the caller's place
    record = logger.makeRecord(logger.name, level, where, line, "job %s %s queue=%s attempt=%d %s in %.3fs%s",
                               (job.id, job.type, job.queue, job.attempt, name, duration, _why(outcome, fields)),
                               None, func, {FIELDS: fields})
    if name == "dead":
        # The text already formatted (trimmed and bounded), where formatters look for a cached exception.
        record.exc_text = getattr(outcome, "traceback", None)
    logger.handle(record)


def _why(outcome: object, fields: dict[str, Any]) -> str:
    """The message's tail (delay or reason, then the error); adds those to `fields` too."""
    why = ""
    if fields["outcome"] == "retried":
        fields["delay"] = round(float(getattr(outcome, "delay", 0.0)), 3)
        why = f", retry in {fields['delay']:.1f}s"
    elif fields["outcome"] == "dead":
        fields["reason"] = str(getattr(outcome, "reason", ""))
        why = f" ({fields['reason']})"
    error = getattr(outcome, "error", None)
    if error:
        fields["error"] = one_line(str(error))
        why += f": {fields['error']}"
    return why


def one_line(text: str, limit: int = ERROR_CHARS) -> str:
    """Text folded onto one line and cut to `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"
