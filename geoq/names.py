"""What queues and job ids may be called. Pure: the config schema, the job model and the
broker's key names all check names here, so none of them imports another for the rule."""

from __future__ import annotations

import functools
import re

QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
"""What a queue may be called: the name sits inside a Redis Cluster hash tag, so never a brace."""
QUEUE_NAME_RULE = "1-100 characters of A-Z a-z 0-9 _ . : -, starting with a letter or digit"

JOB_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,200}")
"""What a job id may be: characters JSON never escapes, so a Lua script can match the id at the
head of an envelope as plain text (geoq.records)."""
JOB_ID_RULE = "1-200 characters of A-Z a-z 0-9 . _ : @ / + = -"


def is_queue_name(name: object) -> bool:
    return isinstance(name, str) and _is_queue_name(name)


@functools.lru_cache(maxsize=1024)  # a producer names the same few queues for every job
def _is_queue_name(name: str) -> bool:
    return QUEUE_NAME.fullmatch(name) is not None


def is_job_id(job_id: object) -> bool:
    return isinstance(job_id, str) and JOB_ID.fullmatch(job_id) is not None
