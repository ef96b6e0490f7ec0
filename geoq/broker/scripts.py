"""The Lua scripts of scripts/*.lua, called by SHA inside pipelines.

redis-py's own Script objects make every pipeline that holds one ask
SCRIPT EXISTS first: an extra round trip on the hot path. Here the SHA is
computed locally, EVALSHA goes straight into the pipeline, and only a
NOSCRIPT answer (a restarted or flushed Redis) loads the scripts and repeats
the commands it refused, which never ran.

A line "--#include NAME" in a script is replaced by scripts/NAME.lua (a file whose name
starts with "_", never run alone): code several scripts share, such as the dead-set index.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from typing import Any, Sequence

import redis
from redis.exceptions import NoScriptError

NAMES = ("enqueue", "fetch", "mark", "ack", "retry", "dead", "promote", "handback", "reap", "dead_retry", "purge",
         "trim", "tick", "limit_take", "limit_release", "limit_renew", "limit_pause", "cancel", "cancelled",
         "release", "history", "run_now", "dead_drop", "dead_group_drop",
         "dead_reindex")
_INCLUDE = re.compile(r"^--#include (_\w+)$", re.M)


class Scripts:
    """Source and SHA of every script, loaded once per process."""

    def __init__(self) -> None:
        folder = resources.files("geoq.broker") / "scripts"
        self.source = {name: _spliced((folder / f"{name}.lua").read_text(), folder) for name in NAMES}
        self.sha = {name: hashlib.sha1(text.encode()).hexdigest() for name, text in self.source.items()}

    def load(self, client: "redis.Redis") -> None:
        for text in self.source.values():
            client.script_load(text)


def _spliced(text: str, folder: Any) -> str:
    """The script with each include line replaced by the file it names."""
    return _INCLUDE.sub(lambda m: (folder / f"{m[1]}.lua").read_text().rstrip("\n"), text)


class Call:
    """One script call waiting to be put into a pipeline."""

    __slots__ = ("name", "keys", "args")

    def __init__(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> None:
        self.name, self.keys, self.args = name, keys, args


def run(client: "redis.Redis", scripts: Scripts, calls: Sequence[Call], raise_errors: bool = True) -> list[Any]:
    """Run calls in one pipeline and return their replies in order.

    An error reply is raised, or with raise_errors=False returned in its place
    (the other calls of the pipeline ran regardless).
    """
    replies = _send(client, scripts, calls)
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        scripts.load(client)
        for i, reply in zip(missing, _send(client, scripts, [calls[i] for i in missing])):
            replies[i] = reply
    for reply in replies:
        if raise_errors and isinstance(reply, Exception):
            raise reply
    return replies


def add(pipe: Any, scripts: Scripts, call: Call) -> None:
    """Put one script call into a pipeline, by SHA (a NOSCRIPT reply is the caller's to handle)."""
    pipe.evalsha(scripts.sha[call.name], len(call.keys), *call.keys, *call.args)


def _send(client: "redis.Redis", scripts: Scripts, calls: Sequence[Call]) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for call in calls:
        add(pipe, scripts, call)
    return list(pipe.execute(raise_on_error=False))
