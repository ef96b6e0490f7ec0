"""A private Sentinel setup for tests: a master, one replica and three sentinels, on free loopback ports.

    with LocalSentinel(down_after_ms=1000) as s:
        s.url                       # redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/geoq/0
        s.master.kill()             # SIGKILL; the sentinels promote the replica
        new = s.wait_for_failover()

Every process is a tests.support.redis_server.RedisServer (own port, own temp
dir, stopped by PID); a sentinel is redis-server in sentinel mode with a config
file of its own (Sentinel rewrites it as it learns).
"""

from __future__ import annotations

from types import TracebackType

import redis

from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_until

SERVICE = "geoq"
READY_TIMEOUT = 30.0
# A replica's full sync starts at once, instead of waiting 5 s for more replicas to join it.
DATA_CONFIG = {"repl-diskless-sync-delay": 0}


class SentinelServer(RedisServer):
    """redis-server in sentinel mode, watching `service` at master_port."""

    def __init__(self, master_port: int, service: str, quorum: int, down_after_ms: int,
                 password: str | None = None) -> None:
        super().__init__()
        self.master_port, self.service = master_port, service
        self.quorum, self.down_after_ms = quorum, down_after_ms
        self.password = password

    def client(self, db: int = 0, **kwargs: object) -> redis.Redis:
        """A client of this sentinel, logged in when the sentinel asks for a password."""
        if self.password is not None:
            kwargs.setdefault("password", self.password)
        return super().client(db, **kwargs)

    def _argv(self) -> list[str]:
        conf = self.dir / "sentinel.conf"
        conf.write_text("\n".join([
            f"port {self.port}",
            f"bind {self.host}",
            f"dir {self.dir}",
            f"logfile {self.log_path}",
            f"sentinel monitor {self.service} {self.host} {self.master_port} {self.quorum}",
            f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}",
            # Also how long Sentinel waits before it turns a demoted master into a replica.
            f"sentinel failover-timeout {self.service} 2000",
            f"sentinel parallel-syncs {self.service} 1",
            # With a password, the sentinels also need it to talk to each other.
            *([f"requirepass {self.password}", f"sentinel sentinel-pass {self.password}"] if self.password else []),
        ]) + "\n")
        return [self.executable, str(conf), "--sentinel"]

    def quicken(self) -> None:
        """Sentinel's own periods, shortened for tests (SENTINEL DEBUG, a facility of Redis 7):
        sentinels find each other at once, and a demoted master that still says it is one is
        noticed and turned into a replica within a second instead of after ten."""
        client = self.client(socket_timeout=1)
        try:
            client.execute_command("SENTINEL", "DEBUG", "info-period", 500, "publish-period", 200)
        finally:
            client.close()


class LocalSentinel:
    """A master, one replica of it, and three sentinels (quorum two) watching them."""

    def __init__(self, down_after_ms: int = 1000, service: str = SERVICE, sentinel_password: str | None = None) -> None:
        self.service, self.down_after_ms = service, down_after_ms
        self.sentinel_password = sentinel_password
        self.master = RedisServer(config=DATA_CONFIG)
        self.replica: RedisServer | None = None
        self.sentinels: list[SentinelServer] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"{s.host}:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    @property
    def servers(self) -> list[RedisServer]:
        return [self.master] + ([self.replica] if self.replica else [])

    def start(self) -> "LocalSentinel":
        try:
            self.master.start()
            self.replica = RedisServer(config={**DATA_CONFIG,
                                               "replicaof": f"{self.master.host} {self.master.port}"}).start()
            self.sentinels = [SentinelServer(self.master.port, self.service, 2, self.down_after_ms,
                                             self.sentinel_password).start() for _ in range(3)]
            for sentinel in self.sentinels:
                sentinel.quicken()
            wait_until(self._ready, timeout=READY_TIMEOUT, interval=0.05, ignore=(redis.RedisError,),
                       message="the sentinels did not find the master, its replica and each other")
        except BaseException:
            self.close()
            raise
        return self

    def _ready(self) -> bool:
        for sentinel in self.sentinels:
            client = sentinel.client(socket_timeout=1)
            try:
                state = client.sentinel_master(self.service)
                replicas = client.sentinel_slaves(self.service)
            finally:
                client.close()
            if int(state["num-other-sentinels"]) != 2 or not any(not r["is_sdown"] for r in replicas):
                return False
        return self._replica_in_sync()

    def _replica_in_sync(self) -> bool:
        assert self.replica is not None
        client = self.replica.client(socket_timeout=1)
        try:
            return bool(client.info("replication").get("master_link_status") == "up")
        finally:
            client.close()

    def master_address(self) -> tuple[str, int]:
        """Where the sentinels say the master is now (the first that answers)."""
        for sentinel in self.sentinels:
            if sentinel.is_running():
                client = sentinel.client(socket_timeout=1)
                try:
                    host, port = client.sentinel_get_master_addr_by_name(self.service)
                    return host.decode() if isinstance(host, bytes) else host, int(port)
                finally:
                    client.close()
        raise AssertionError("no sentinel is running")

    def wait_for_failover(self, timeout: float = READY_TIMEOUT) -> RedisServer:
        """After the master died: wait until every sentinel names the replica and it acts as master."""
        assert self.replica is not None
        replica = self.replica

        def promoted() -> bool:
            for sentinel in self.sentinels:
                client = sentinel.client(socket_timeout=1)
                try:
                    _, port = client.sentinel_get_master_addr_by_name(self.service)
                finally:
                    client.close()
                if int(port) != replica.port:
                    return False
            probe = replica.client(socket_timeout=1)
            try:
                return bool(probe.execute_command("ROLE")[0] == b"master")
            finally:
                probe.close()

        wait_until(promoted, timeout=timeout, interval=0.05, message="the sentinels did not promote the replica",
                   ignore=(redis.RedisError,))
        return replica

    def wait_replicated(self, timeout: float = 10.0) -> None:
        """The replica has applied everything the master wrote so far."""
        assert self.replica is not None
        replica = self.replica

        def caught_up() -> bool:
            master, copy = self.master.client(socket_timeout=1), replica.client(socket_timeout=1)
            try:
                wanted = int(master.info("replication")["master_repl_offset"])
                return int(copy.info("replication")["slave_repl_offset"]) >= wanted
            finally:
                master.close()
                copy.close()

        wait_until(caught_up, timeout=timeout, interval=0.02, message="the replica did not catch up",
                   ignore=(redis.RedisError,))

    def close(self) -> None:
        for server in [*self.sentinels, *self.servers]:
            server.close()

    def __enter__(self) -> "LocalSentinel":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
