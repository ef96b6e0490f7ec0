"""A private Redis Cluster for tests: three masters with one replica each, on free loopback ports.

    with LocalCluster(node_timeout_ms=1000) as cluster:
        client = cluster.client()                 # redis.cluster.RedisCluster (bytes replies)
        cluster.url                               # redis+cluster://127.0.0.1:P1,127.0.0.1:P2
        victim = cluster.master_of(b"geoq:{q}:ready")
        victim.kill()                             # SIGKILL; its replica takes over
        cluster.wait_for_failover(victim)

Each node is a tests.support.redis_server.RedisServer (own port, own temp dir,
stopped by PID) started with cluster-enabled; `redis-cli --cluster create`
assigns the slots and pairs each replica with a master. Nothing returns before
every node reports cluster_state:ok and every replica is in sync.
"""

from __future__ import annotations

import subprocess
from types import TracebackType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from tests.support.ports import free_port
from tests.support.redis_server import RedisServer, RedisServerError
from tests.support.tls import Certs, TLSRedisServer
from tests.support.waiting import wait_until

READY_TIMEOUT = 30.0


class ClusterNodeServer(RedisServer):
    """A RedisServer whose cluster bus gets a free port of its own (the default, port + 10000,
    does not exist for the high ports free_port() hands out)."""

    bus_port = 0
    _bus_for = 0

    def _argv(self) -> list[str]:
        if self._bus_for != self.port:  # a new client port (start() retries on "in use"): a new bus port
            self.bus_port, self._bus_for = free_port(self.host), self.port
        return [*super()._argv(), "--cluster-port", str(self.bus_port)]


class TLSClusterNodeServer(ClusterNodeServer, TLSRedisServer):
    """A cluster node that speaks only TLS, to clients, to its replicas and on the cluster bus."""


class LocalCluster:
    """`masters` masters with `replicas` replicas each; `node_timeout_ms` bounds how soon a failover starts.

    With `tls` (tests.support.tls.make_certs), every node speaks only TLS and requires
    a client certificate; node clients and client() use the trusted CA and client certificate.
    """

    def __init__(self, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 1000,
                 config: dict[str, object] | None = None, tls: Certs | None = None) -> None:
        self.masters_count, self.replicas_count = masters, replicas
        node_config: dict[str, object] = {
            "cluster-enabled": "yes",
            "cluster-config-file": "nodes.conf",
            "cluster-node-timeout": node_timeout_ms,
            # A replica that just lost its master must be allowed to take over at once.
            "cluster-replica-validity-factor": 0,
            # A replica's full sync starts at once, instead of waiting 5 s for more replicas to join it.
            "repl-diskless-sync-delay": 0,
            **(config or {}),
        }
        self.tls = tls
        count = masters * (1 + replicas)
        if tls is None:
            self.nodes: list[RedisServer] = [ClusterNodeServer(config=node_config) for _ in range(count)]
        else:
            args = [str(part) for key, value in {**node_config, "tls-cluster": "yes", "tls-replication": "yes"}.items()
                    for part in (f"--{key}", value)]
            self.nodes = [TLSClusterNodeServer(tls, extra_args=args) for _ in range(count)]
        self._original_masters: list[RedisServer] = []

    # -- addresses -----------------------------------------------------------

    @property
    def url(self) -> str:
        """A redis+cluster:// URL naming two seed nodes (any one is enough to find the rest)."""
        return "redis+cluster://" + ",".join(f"{n.host}:{n.port}" for n in self.nodes[:2])

    @property
    def seed_url(self) -> str:
        """redis://HOST:PORT of one node, for `redis.cluster: true`."""
        return f"redis://{self.nodes[0].host}:{self.nodes[0].port}"

    def client(self, **kwargs: Any) -> RedisCluster:
        """A redis-py cluster client on the live nodes; it does not retry (a test wants errors at once)."""
        kwargs.setdefault("decode_responses", False)
        if self.tls is not None:
            kwargs.update(ssl=True, ssl_ca_certs=str(self.tls.ca), ssl_certfile=str(self.tls.client.cert),
                          ssl_keyfile=str(self.tls.client.key), ssl_check_hostname=False)
        kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        kwargs.setdefault("socket_timeout", 5)
        live = [ClusterNode(n.host, n.port) for n in self.nodes if n.is_running()]
        return RedisCluster(startup_nodes=live, **kwargs)

    def node_at(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    def masters(self) -> list[RedisServer]:
        """The live nodes that are masters right now."""
        return [n for n in self.nodes if n.is_running() and _role(n) == "master"]

    def master_of(self, key: str | bytes) -> RedisServer:
        """The node that serves `key`'s slot now, as its own RedisServer."""
        return self._serving(self.slot_of(key))

    def slot_of(self, key: str | bytes) -> int:
        client = self.any_live().client(socket_timeout=1)
        try:
            return int(client.execute_command("CLUSTER", "KEYSLOT", key))
        finally:
            client.close()

    def replica_of(self, master: RedisServer) -> RedisServer:
        """A live replica of `master` (that it names itself by ROLE)."""
        for node in self.nodes:
            if node.is_running() and node is not master:
                client = node.client(socket_timeout=1)
                try:
                    role = client.execute_command("ROLE")
                finally:
                    client.close()
                if role[0] == b"slave" and int(role[2]) == master.port:
                    return node
        raise AssertionError(f"{master!r} has no live replica")

    def any_live(self) -> RedisServer:
        return next(n for n in self.nodes if n.is_running())

    # -- life cycle ----------------------------------------------------------

    def start(self) -> "LocalCluster":
        try:
            for node in self.nodes:
                node.start()
            self._create()
            self.wait_ready()
            self._original_masters = self.masters()
        except BaseException:
            self.close()
            raise
        return self

    def _create(self) -> None:
        addresses = [f"{n.host}:{n.port}" for n in self.nodes]
        tls = [] if self.tls is None else ["--tls", "--cacert", str(self.tls.ca), "--cert", str(self.tls.client.cert),
                                           "--key", str(self.tls.client.key)]
        done = subprocess.run(["redis-cli", *tls, "--cluster", "create", *addresses,
                               "--cluster-replicas", str(self.replicas_count), "--cluster-yes"],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RedisServerError(f"redis-cli --cluster create failed ({done.returncode}):\n"
                                   f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Every live node says cluster_state:ok, every slot has a master, every replica is in sync."""
        wait_until(self._ready, timeout=timeout, interval=0.05, message="the cluster did not become ready",
                   ignore=(redis.RedisError,))

    def _ready(self) -> bool:
        live = [n for n in self.nodes if n.is_running()]
        for node in live:
            client = node.client(socket_timeout=1)
            try:
                if b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                    return False
                slots = client.execute_command("CLUSTER", "SLOTS")
                if sum(end - start + 1 for start, end, *_ in slots) != 16384:
                    return False
                if _role(node) == "slave" and not _in_sync(client):
                    return False
            finally:
                client.close()
        return len(self.masters()) == self.masters_count

    def wait_for_failover(self, dead: RedisServer, timeout: float = READY_TIMEOUT) -> RedisServer:
        """After `dead` was killed: wait until every live node says a replica of it serves its
        slots and the cluster is ok again; that new master."""
        dead_port = dead.port

        def promoted() -> RedisServer | None:
            views = []
            for node in self.nodes:
                if not node.is_running():
                    continue
                client = node.client(socket_timeout=1)
                try:
                    if b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                        return None
                    views.append({int(master[1]) for _, _, master, *_ in client.execute_command("CLUSTER", "SLOTS")})
                finally:
                    client.close()
            if any(dead_port in view for view in views) or any(view != views[0] for view in views):
                return None
            new = [self.node_at(port) for port in views[0] if self.node_at(port) not in self._original_masters]
            return new[0] if len(new) == 1 else None

        return wait_until(promoted, timeout=timeout, interval=0.05, message="no replica took over",
                          ignore=(redis.RedisError,))

    def move_slot(self, slot: int, target: RedisServer) -> None:
        """Reshard one slot, keys and all, to `target` (a master), as redis-cli --cluster reshard does."""
        source = self._serving(slot)
        src, dst = source.client(socket_timeout=5), target.client(socket_timeout=5)
        try:
            src_id, dst_id = (c.execute_command("CLUSTER", "MYID").decode() for c in (src, dst))
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
            while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                src.execute_command("MIGRATE", target.host, target.port, "", 0, 5000, "KEYS", *keys)
            for node in self.masters():
                client = node.client(socket_timeout=5)
                try:
                    client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
                finally:
                    client.close()
        finally:
            src.close()
            dst.close()
        wait_until(lambda: all(self._serving(slot, asking=n) is target for n in self.nodes if n.is_running()),
                   timeout=READY_TIMEOUT, interval=0.05, message=f"slot {slot} did not move",
                   ignore=(redis.RedisError,))

    def _serving(self, slot: int, asking: RedisServer | None = None) -> RedisServer:
        """The master serving `slot`, in the view of `asking` (any live node by default)."""
        client = (asking or self.any_live()).client(socket_timeout=1)
        try:
            for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return self.node_at(int(master[1]))
        finally:
            client.close()
        raise AssertionError(f"no node serves slot {slot}")

    def wait_replicated(self, timeout: float = 10.0) -> None:
        """Every live replica has applied everything its master has written so far."""
        wait_until(lambda: all(_in_sync_now(self, n) for n in self.nodes if n.is_running() and _role(n) == "slave"),
                   timeout=timeout, interval=0.02, message="replicas did not catch up",
                   ignore=(redis.RedisError,))

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _role(node: RedisServer) -> str:
    client = node.client(socket_timeout=1)
    try:
        return str(client.execute_command("ROLE")[0].decode())
    finally:
        client.close()


def _in_sync(client: redis.Redis) -> bool:
    info = client.info("replication")
    return info.get("master_link_status") == "up" and not info.get("master_sync_in_progress")


def _in_sync_now(cluster: LocalCluster, node: RedisServer) -> bool:
    """A replica whose applied offset has reached its master's current one."""
    client = node.client(socket_timeout=1)
    try:
        info = client.info("replication")
        if info.get("master_link_status") != "up":
            return False
        master = cluster.node_at(int(info["master_port"])).client(socket_timeout=1)
        try:
            wanted = int(master.info("replication")["master_repl_offset"])
        finally:
            master.close()
        return int(client.info("replication")["slave_repl_offset"]) >= wanted
    finally:
        client.close()
