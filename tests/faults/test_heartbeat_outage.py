"""The heartbeat thread's outage: one ERROR line, DEBUG for each repeat, one WARNING on recovery.

The thread never logs itself; its lines travel as news the hub's tick greenlet
logs, and each failed beat is counted as a Redis error there. Run in a
subprocess: only a worker's entry point may monkeypatch. The program owns a
redis-server of its own, which it stops and restarts under the beating thread.
"""

from __future__ import annotations

import json
import textwrap

from tests.support.program import run_program

PROGRAM = textwrap.dedent("""
    from gevent import monkey; monkey.patch_all()
    import json, logging
    from dataclasses import replace
    from geoq.broker.broker import Broker
    from geoq.broker.clock import RedisClock
    from geoq.broker.connection import connect
    from geoq.broker.liveness import Registry
    from geoq.config import default_config
    from geoq.middleware import Chain, Middleware
    from geoq.worker.heartbeat import Heartbeat
    from tests.support.redis_server import RedisServer
    from tests.support.waiting import wait_until

    class Lines(logging.Handler):
        def __init__(self):
            super().__init__()
            self.lines = []
        def emit(self, record):
            self.lines.append([record.levelname, record.getMessage()])

    class Errors(Middleware):
        def __init__(self):
            self.ops = []
        def redis_error(self, op):
            self.ops.append(op)

    lines, errors = Lines(), Errors()
    log = logging.getLogger("geoq.worker.heartbeat")
    log.addHandler(lines)
    log.setLevel(logging.DEBUG)
    with RedisServer() as server:
        config = default_config(server.url)
        config = replace(config, worker=replace(config.worker, heartbeat=0.1, dead_after=30.0))
        client = connect(config.redis)
        beat = Heartbeat(config, Registry(client, Broker(client).scripts), "w", ["q"], in_flight=lambda: 0,
                         on_fenced=lambda: None, clock=RedisClock(), events=Chain([errors]))
        beat.register()
        tick = beat.start()
        server.stop()
        wait_until(lambda: len(errors.ops) >= 3, timeout=30, message="three failed beats counted")
        server.restart()
        wait_until(lambda: ["WARNING", "heartbeat written again"] in lines.lines, timeout=30,
                   message="the recovery logged")
        beat.stop()
        assert beat.join(10)
        tick.kill()
    print(json.dumps({"lines": lines.lines, "errors": errors.ops}))
""")


def test_a_heartbeat_outage_logs_error_once_debug_for_repeats_and_warning_once_on_recovery():
    report = json.loads(run_program(PROGRAM).splitlines()[-1])
    levels = [level for level, _ in report["lines"]]
    failures = len(levels) - 1
    assert failures >= 3, report
    assert levels == ["ERROR"] + ["DEBUG"] * (failures - 1) + ["WARNING"], report
    assert all(text.startswith("heartbeat failed: ") for _, text in report["lines"][:-1]), report
    assert report["lines"][-1] == ["WARNING", "heartbeat written again"]
    assert report["errors"] == ["heartbeat"] * failures, report
