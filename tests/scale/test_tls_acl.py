"""TLS with client certificates and a least-privilege ACL user: the README's ACL line is enough for a
whole run (worker, reaper, metrics, producer, admin CLI), and every refusal is one line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis
import yaml

import geoq
from tests.metrics.conftest import get
from tests.scale.conftest import PASSWORD, readme_acl_line
from tests.support.cluster import LocalCluster
from tests.support.cluster_keyspace import assert_settled as assert_cluster_settled
from tests.support.keyspace import assert_settled
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer
from tests.support.tls import Certs, TLSRedisServer, make_certs
from tests.support.waiting import wait_until
from tests.support.worker_process import ROOT, WorkerProcess, run_worker_once, write_config

H = "tests.support.handlers"
ROUTES = {
    "t.ok": {"handler": f"{H}:ok"},
    "t.flaky": {"handler": f"{H}:flaky", "backoff": {"base": "10ms", "max": "20ms"}},
    "t.broken": {"handler": f"{H}:broken", "max_retries": 1, "backoff": {"base": "10ms", "max": "20ms"}},
}
DB = 3  # not 0: the ACL line must allow SELECT


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def server(certs) -> Iterator[TLSRedisServer]:
    """TLS only, client certificates required, and the README's geoq user."""
    with TLSRedisServer(certs, auth_clients="yes") as s:
        admin = s.client()
        admin.execute_command("ACL", "SETUSER", *readme_acl_line())
        admin.close()
        yield s


@pytest.fixture
def admin(server) -> Iterator[redis.Redis]:
    """The test's own view of the database, as the default user."""
    client = server.client(DB)
    client.flushdb()
    client.execute_command("ACL", "LOG", "RESET")
    yield client
    client.close()




def redis_section(server: RedisServer, certs: Certs, **changes: Any) -> dict[str, Any]:
    tls = {"ca_file": str(certs.ca), "cert_file": str(certs.client.cert), "key_file": str(certs.client.key)}
    section: dict[str, Any] = {"url": f"rediss://{server.host}:{server.port}/{DB}", "username": "geoq",
                               "password": "${GEOQ_TEST_REDIS_PASSWORD}", "tls": tls}
    for key, value in changes.items():
        if key == "tls":
            section["tls"] = {**tls, **value}
        else:
            section[key] = value
    return section


def config_file(path: Path, redis_values: dict[str, Any], **sections: Any) -> Path:
    config = write_config(path, "redis://unused", ROUTES, **sections)
    body = yaml.safe_load(config.read_text())
    body["redis"] = redis_values
    config.write_text(yaml.safe_dump(body, sort_keys=False))
    return config


def geoq_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(ROOT), "GEOQ_TEST_REDIS_PASSWORD": PASSWORD, "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, str(ROOT / "bin" / "geoq"), "-c", str(config), *args],
                          capture_output=True, text=True, timeout=30, env=env, cwd=ROOT)


def ledger_count(client: redis.Redis, what: str) -> int:
    return int(client.llen(f"ledger:{what}"))


def test_a_whole_run_over_mutual_tls_needs_no_more_than_the_readme_acl_line(
        server, certs, admin, ledger, tmp_path, monkeypatch):
    monkeypatch.setenv("GEOQ_TEST_REDIS_PASSWORD", PASSWORD)
    ledger_url, ledger_client = ledger
    port = free_port()
    config = config_file(tmp_path / "w.yaml", redis_section(server, certs),
                         worker={"concurrency": 50, "heartbeat": "1s", "dead_after": "3s"},
                         metrics={"listen": f"127.0.0.1:{port}"})
    env = {"GEOQ_TEST_LEDGER": ledger_url, "GEOQ_TEST_REDIS_PASSWORD": PASSWORD}
    producer = geoq.Client.from_config(str(config))
    assert admin.execute_command("ACL", "WHOAMI") == b"default"

    first = WorkerProcess(config, env=env, log=tmp_path / "first.log")
    ok = [j.id for j in producer.enqueue_many([("t.ok", {})] * 200)]
    flaky = [j.id for j in producer.enqueue_many([("t.flaky", {"failures": 1})] * 50)]
    broken = [j.id for j in producer.enqueue_many([("t.broken", {})] * 20)]
    delayed = producer.enqueue("t.ok", {}, delay=0.3).id
    wait_until(lambda: ledger_count(ledger_client, "succeeded") == 251 and admin.zcard("geoq:{default}:dead") == 20,
               timeout=60, message="the first run did not finish")
    assert producer.result(delayed, timeout=5) == {"id": delayed, "attempt": 1}
    assert get(port, "/readyz").status == 200
    assert 'geoq_queue_depth{queue="default",state="dead"} 20.0' in get(port, "/metrics").body

    # The reaper's moves under the same user: a worker killed while it holds jobs.
    held = [j.id for j in producer.enqueue_many([("t.ok", {"sleep": 1.5})] * 10)]
    wait_until(lambda: sum(admin.llen(k) for k in admin.scan_iter("geoq:{default}:processing:*")) == 10,
               timeout=10, message="the first worker did not take the slow jobs")
    first.kill()
    with WorkerProcess(config, env=env, log=tmp_path / "second.log") as second:
        wait_until(lambda: ledger_count(ledger_client, "succeeded") >= 261, timeout=30,
                   message="the dead worker's jobs were not reaped and run")
        _admin_commands_work(config, broken[0], ok[0])
        _job_control_works(producer, admin, config)
        ours = [c for c in admin.client_list() if c["name"].startswith("geoq-")]
        assert ours and {c["user"] for c in ours} == {"geoq"}, ours
        assert second.stop() == 0, second.log()
    producer.close()

    succeeded = {x.decode() for x in ledger_client.lrange("ledger:succeeded", 0, -1)}
    assert set(ok + flaky + held + [delayed]) <= succeeded
    settled = assert_settled(admin, ["default"])
    assert settled.total("dead") == 0  # all purged by the admin commands
    denied = admin.execute_command("ACL", "LOG")
    assert denied == [], f"the README's ACL line is missing something: {denied}"


def _admin_commands_work(config: Path, dead_id: str, done_id: str) -> None:
    stats = geoq_cli(config, "stats", "--json")
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["queues"]["default"]["dead"] == 20
    for args in (["workers", "--json"], ["dead", "list", "--json"], ["dead", "show", dead_id],
                 ["job", done_id, "--json"], ["dead", "retry", dead_id], ["enqueue", "t.none", "--delay", "1h"],
                 ["purge", "default", "--yes"]):
        done = geoq_cli(config, *args)
        assert done.returncode == 0, (args, done.stderr)
    wait_until(lambda: geoq_cli(config, "dead", "show", dead_id).returncode == 0 and
               json.loads(geoq_cli(config, "stats", "--json").stdout)["queues"]["default"]["dead"] == 20,
               timeout=20, message="the retried dead job did not die again")
    groups = geoq_cli(config, "dead", "groups", "--json", "--rebuild")
    assert groups.returncode == 0, groups.stderr
    (group,) = json.loads(groups.stdout)["groups"]
    assert group["count"] == 20
    retried = geoq_cli(config, "dead", "retry", "--group", group["fingerprint"], "--json")
    assert retried.returncode == 0 and json.loads(retried.stdout)["retried"] == 20, retried.stderr
    wait_until(lambda: json.loads(geoq_cli(config, "stats", "--json").stdout)["queues"]["default"]["dead"] == 20,
               timeout=20, message="the retried group did not die again")
    dropped = geoq_cli(config, "dead", "purge", "--group", group["fingerprint"], "--json")
    assert dropped.returncode == 0 and json.loads(dropped.stdout)["purged"] == 20, dropped.stderr
    purged = geoq_cli(config, "dead", "purge", "--all")
    assert purged.returncode == 0, purged.stderr


def _job_control_works(producer: geoq.Client, admin: redis.Redis, config: Path) -> None:
    """Unique jobs, pause, cancel (waiting and running) and expiry, under the same user."""
    unique = producer.enqueue("t.ok", {"u": 1}, unique_for=1).id
    assert producer.enqueue("t.ok", {"u": 1}, unique_for=1).id == unique
    assert geoq_cli(config, "pause", "default").returncode == 0
    waiting = producer.enqueue("t.ok", {}).id
    expiring = producer.enqueue("t.ok", {}, expires=0.5).id
    assert producer.cancel(waiting)
    time.sleep(1.0)   # the queue is paused: the expiry passes while the job waits
    assert geoq_cli(config, "resume", "default").returncode == 0
    slow = producer.enqueue("t.ok", {"sleep": 30}).id
    wait_until(lambda: producer.status(slow).state == "running", timeout=10, message="the slow job did not start")
    assert geoq_cli(config, "cancel", slow).returncode == 0
    wait_until(lambda: producer.status(slow).state == "cancelled" and producer.status(unique).state == "succeeded"
               and producer.status(expiring).state == "dead", timeout=10, message="job control did not settle")
    assert producer.status(waiting).state == "cancelled" and producer.status(expiring).reason == "expired"
    assert geoq_cli(config, "dead", "purge", "--all").returncode == 0


REFUSALS = {
    "wrong password": ({"password": "not-the-password"}, "invalid username-password"),
    "server certificate from an untrusted CA": ({"tls": {"ca_file": "OTHER_CA"}}, "certificate verify failed"),
    # With TLS 1.3 the server's "unknown ca" alert races the client's first write, which may meet
    # an EOF instead; either way the one line must name the refusal.
    "client certificate from an untrusted CA": ({"tls": {"cert_file": "STRANGER", "key_file": "STRANGER_KEY"}},
                                                "refused the TLS session"),
    "no client certificate": ({"tls": {"cert_file": "", "key_file": ""}}, "refused the TLS session"),
}


def _resolve(certs: Certs, changes: dict[str, Any]) -> dict[str, Any]:
    names = {"OTHER_CA": str(certs.other_ca), "STRANGER": str(certs.stranger.cert),
             "STRANGER_KEY": str(certs.stranger.key)}
    return {k: ({kk: names.get(vv, vv) for kk, vv in v.items()} if isinstance(v, dict) else v)
            for k, v in changes.items()}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_refused_credential_or_certificate_is_one_line_and_exit_2(server, certs, tmp_path, monkeypatch, case):
    monkeypatch.setenv("GEOQ_TEST_REDIS_PASSWORD", PASSWORD)
    changes, words = REFUSALS[case]
    config = config_file(tmp_path / "bad.yaml", redis_section(server, certs, **_resolve(certs, changes)))
    _assert_refused(config, words)


def test_hostname_checking_is_on_by_default_and_can_be_turned_off(certs, tmp_path, monkeypatch):
    monkeypatch.setenv("GEOQ_TEST_REDIS_PASSWORD", PASSWORD)
    with TLSRedisServer(certs, auth_clients="yes", server_pair=certs.no_name) as elsewhere:
        admin = elsewhere.client()
        admin.execute_command("ACL", "SETUSER", *readme_acl_line())
        admin.close()
        _assert_refused(config_file(tmp_path / "checked.yaml", redis_section(elsewhere, certs)), "mismatch")
        unchecked = config_file(tmp_path / "unchecked.yaml",
                                redis_section(elsewhere, certs, tls={"check_hostname": False}))
        with geoq.Client.from_config(str(unchecked)) as producer:
            job = producer.enqueue("t.ok", {})
            assert producer.status(job.id).state == "queued"


def test_the_config_credentials_win_over_the_urls(server, certs, admin, tmp_path, monkeypatch):
    monkeypatch.setenv("GEOQ_TEST_REDIS_PASSWORD", PASSWORD)
    url = f"rediss://nobody:wrong@{server.host}:{server.port}/{DB}"
    with geoq.Client.from_config(str(config_file(tmp_path / "c.yaml", redis_section(server, certs, url=url)))) as c:
        job = c.enqueue("t.ok", {})
    assert admin.hexists("geoq:{default}:state", job.id)


def _assert_refused(config: Path, words: str) -> None:
    worker = run_worker_once(config, timeout=30)
    cli = geoq_cli(config, "stats")
    for name, done in (("geoq-worker", worker), ("geoq", cli)):
        lines = _without_stall_reports(done.stderr)
        assert done.returncode == 2, (name, done.returncode, done.stderr[-2000:])
        assert len(lines) == 1 and lines[0].startswith(f"{name}: ") and words in lines[0], (name, done.stderr)
        assert PASSWORD not in done.stderr and "Traceback" not in done.stderr


def _without_stall_reports(stderr: str) -> list[str]:
    """stderr's lines but the worker's hub-stall reports: on a loaded machine, loading the CA store for
    the first TLS connection can hold the hub past the stall threshold, and the worker rightly says so."""
    return [line for line in stderr.strip().splitlines() if "hub blocked for about" not in line]


def test_a_cluster_over_mutual_tls_with_the_acl_user_runs_jobs_on_every_master(certs, ledger, tmp_path, monkeypatch):
    monkeypatch.setenv("GEOQ_TEST_REDIS_PASSWORD", PASSWORD)
    ledger_url, ledger_client = ledger
    queues = ["mail", "critical", "hooks"]  # one on each master
    with LocalCluster(tls=certs) as cluster:
        for node in cluster.nodes:
            admin = node.client()
            admin.execute_command("ACL", "SETUSER", *readme_acl_line())
            admin.close()
        seed = cluster.nodes[0]
        config = config_file(tmp_path / "c.yaml", redis_section(seed, certs, url=f"rediss://{seed.host}:{seed.port}",
                                                                cluster=True),
                             worker={"queues": queues}, logging={"level": "warning"})
        with geoq.Client.from_config(str(config)) as producer:
            ids = [j.id for q in queues for j in producer.enqueue_many([("t.ok", {}, {"queue": q})] * 100)]
        with WorkerProcess(config, env={"GEOQ_TEST_LEDGER": ledger_url, "GEOQ_TEST_REDIS_PASSWORD": PASSWORD}) as w:
            wait_until(lambda: ledger_count(ledger_client, "succeeded") == len(ids), timeout=30,
                       message="the jobs did not all run")
            assert w.stop() == 0, w.log()
        client = cluster.client()
        assert_cluster_settled(client, queues)
        assert {cluster.master_of(f"geoq:{{{q}}}:ready").port for q in queues} == {m.port for m in cluster.masters()}
        client.close()
        for node in cluster.masters():
            admin = node.client()
            assert admin.execute_command("ACL", "LOG") == [], "the README's ACL line lacks a command"
            admin.close()
    assert {x.decode() for x in ledger_client.lrange("ledger:succeeded", 0, -1)} == set(ids)
