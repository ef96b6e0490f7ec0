"""Redis Cluster behind the same client interface the broker uses for one Redis.

redis-py's RedisCluster does three things a job queue cannot accept:

- its pipeline refuses EVALSHA, and every geoq move is a script;
- when a connection breaks while a pipeline is being read, it sends every
  command of that node again, one by one, although the first sending may have
  run them (a fetch would move a second batch of jobs, the first one's reply
  lost);
- it connects in its constructor, so a producer's ``Client(...)`` or a
  worker's set-up would fail or block while the cluster is down.

``ClusterClient`` wraps a RedisCluster that is made on first use, and its
``pipeline()`` returns a ``SlotPipeline``: the commands are grouped by the
master that serves each key's slot and sent as one ordinary pipeline per
master. Redirections (MOVED, ASK, TRYAGAIN) are answers to commands that did
not run, so those commands are sent again, to the node named; a broken
connection is raised to the caller like any other (nothing is sent twice),
and the slot map is refreshed before the next pipeline. Every command of one
geoq move names keys of one queue, so one hash tag, one slot, one master.

Single commands go straight to RedisCluster, built with ``retry`` set to no
retries: it still follows MOVED and ASK, but never repeats a command after a
connection error or CLUSTERDOWN (``cluster_error_retry_attempts`` is the
deprecated spelling of the same count, and is ignored when ``retry`` is given).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Sequence, cast

from redis.client import Pipeline
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import AskError, ClusterDownError, RedisClusterException, RedisError, ResponseError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

Command = tuple[tuple[Any, ...], dict[str, Any]]

_REDIRECTED = (AskError, TryAgainError)   # MovedError is an AskError: none of them ran the command
_BROKEN = (RedisConnectionError, RedisTimeoutError, OSError)


class ClusterClient:
    """A RedisCluster made on first use by `factory`, with a pipeline that never repeats a command.

    Attribute access other than pipeline() and close() goes to the RedisCluster, so
    the broker calls single commands (LRANGE, SCAN, SCRIPT LOAD, ...) as on one Redis:
    redis-py sends SCRIPT LOAD to every master and SCAN to every master in turn.
    """

    def __init__(self, factory: Callable[[], RedisCluster]) -> None:
        self._factory = factory
        self._cluster: RedisCluster | None = None
        self._lock = threading.Lock()
        self._stale = False  # a connection broke: refresh the slot map before the next pipeline

    @property
    def cluster(self) -> RedisCluster:
        if self._cluster is None:
            with self._lock:
                if self._cluster is None:
                    self._cluster = self._factory()
        return self._cluster

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cluster, name)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> "SlotPipeline":
        """Only transaction=False: geoq's atomic moves are scripts, and MULTI cannot span slots."""
        if transaction:
            raise ValueError("a cluster pipeline of geoq is never a transaction: pass transaction=False")
        return SlotPipeline(self)

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.close()

    def refresh(self) -> None:
        """Read the slot map again now, as after a failover (redis-py would wait for its next due
        refresh). A cluster that cannot be reached keeps the old map: the next command says so."""
        if self._cluster is None:
            return
        try:
            self._cluster.nodes_manager.initialize()
        except (RedisError, RedisClusterException, OSError):
            self._stale = True
        else:
            self._stale = False

    def run(self, stack: Sequence[Command]) -> list[Any]:
        """Replies of `stack` in order: error replies in place, a broken connection raised."""
        cluster = self.cluster
        if self._stale:
            cluster.nodes_manager.initialize()
            self._stale = False
        groups: dict[str, tuple[ClusterNode, list[int]]] = {}
        for i, (args, _) in enumerate(stack):
            node = _node_for(cluster, args)
            groups.setdefault(node.name, (node, []))[1].append(i)
        replies: list[Any] = [None] * len(stack)
        for node, positions in groups.values():
            for i, reply in zip(positions, self._send(cluster, node, [stack[i] for i in positions])):
                replies[i] = reply
        for i, reply in enumerate(replies):
            if isinstance(reply, _REDIRECTED):
                replies[i] = self._resend(cluster, stack[i])
            elif isinstance(reply, ClusterDownError):
                self._stale = True  # a failover is under way: its outcome changes the slot map
        return replies

    def _send(self, cluster: RedisCluster, node: ClusterNode, commands: Sequence[Command]) -> list[Any]:
        pipe = cluster.get_redis_connection(node).pipeline(transaction=False)
        for args, options in commands:
            pipe.pipeline_execute_command(*args, **options)
        try:
            return list(pipe.execute(raise_on_error=False))
        except _BROKEN:
            self._stale = True
            raise

    def _resend(self, cluster: RedisCluster, command: Command) -> Any:
        """A command a node did not run because its slot is elsewhere: RedisCluster follows the redirection."""
        args, options = command
        try:
            return cluster.execute_command(*args, **options)  # type: ignore[no-untyped-call]
        except ResponseError as e:
            return e
        except _BROKEN:
            self._stale = True
            raise


class SlotPipeline(Pipeline):
    """redis-py's pipeline interface (commands are queued the same way); execute() routes by slot.

    Non-transactional, like every pipeline geoq uses: each command is atomic by
    itself, and commands of different slots go to different masters.
    """

    def __init__(self, owner: ClusterClient) -> None:
        super().__init__(None, {}, False, None)  # type: ignore[arg-type]  # never uses a pool of its own
        self.owner = owner

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        stack, self.command_stack = self.command_stack, []
        if not stack:
            return []
        replies = self.owner.run(stack)
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return replies


def _node_for(cluster: RedisCluster, args: tuple[Any, ...]) -> ClusterNode:
    """The master that serves a command's keys; keyless commands such as TIME go to the default node."""
    name = str(args[0]).upper()
    flag = cluster.command_flags.get(name)
    node: ClusterNode | None
    if flag == RedisCluster.DEFAULT_NODE:
        node = cluster.get_default_node()  # type: ignore[no-untyped-call]
    elif flag is not None:
        raise ValueError(f"{name} runs on several nodes and cannot be part of a pipeline")
    else:
        node = cluster.nodes_manager.get_node_from_slot(cast(int, cluster.determine_slot(*args)))
    if node is None:
        raise RedisConnectionError("no node of the cluster is known")
    return node
