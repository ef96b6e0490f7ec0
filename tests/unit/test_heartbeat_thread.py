"""The heartbeat's native thread ends, its hub destroyed, as soon as the worker stops.

A native thread still running greenlets of its own hub while the interpreter finalizes can
crash the process at exit (a worker was seen to exit with SIGSEGV after a clean stop), so the
worker stops the thread and waits for it. Run in a subprocess: only a worker's entry point
may monkeypatch. No Redis is reached: the thread connects lazily and beats only after an interval.
"""

from __future__ import annotations

import textwrap

from tests.support.program import run_program

PROGRAM = textwrap.dedent("""
    from gevent import monkey; monkey.patch_all()
    import time
    from dataclasses import replace
    import gevent
    from geoq.broker.broker import Broker
    from geoq.broker.clock import RedisClock
    from geoq.broker.connection import connect
    from geoq.broker.liveness import Registry
    from geoq.config import default_config
    from geoq.worker.heartbeat import Heartbeat

    config = default_config("redis://127.0.0.1:1/0")
    config = replace(config, worker=replace(config.worker, heartbeat=60.0, dead_after=180.0))
    client = connect(config.redis)
    beat = Heartbeat(config, Registry(client, Broker(client).scripts), "w", ["q"], in_flight=lambda: 0,
                     on_fenced=lambda: None, clock=RedisClock())
    tick = beat.start()
    gevent.sleep(0.3)                      # the thread is waiting out its 60 s interval
    print(beat.join(timeout=0.2))          # still running: join times out
    started = time.monotonic()
    beat.stop()
    print(beat.join(timeout=10), round(time.monotonic() - started, 1))
    tick.kill()
""")


def test_a_stopped_heartbeat_thread_ends_at_once_not_after_its_interval():
    before, after = run_program(PROGRAM).splitlines()
    assert before == "False"
    ended, seconds = after.split()
    assert ended == "True" and float(seconds) < 5.0, after
