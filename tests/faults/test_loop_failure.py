"""A worker loop that raises (a bug in geoq) stops the worker cleanly with exit 1, not a silent hang.

Before, a fetch loop that raised (a foreign envelope's string expiry did) left the worker
running and registered, beating, taking no job ever again. The fault is injected the only
way a bug can be: a sitecustomize shim on the worker's PYTHONPATH makes Fetcher._round raise
on its third call, once the module is imported (the shim imports no geoq and no gevent, so
the worker still monkeypatches first).
"""

from __future__ import annotations

import os
from pathlib import Path

import geoq
from tests.support.keyspace import assert_settled, places
from tests.support.waiting import wait_until
from tests.support.worker_process import ROOT, WorkerProcess, write_config

ROUTES = {"f.sleep": {"handler": "tests.support.fault_handlers:sleeper"}}
SHIM = '''
import importlib.abc, importlib.util, sys

class _Inject(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "geoq.worker.fetcher":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            real, calls = module.Fetcher._round, []

            def _round(fetcher, free):
                calls.append(free)
                if len(calls) == 3:
                    raise RuntimeError("injected fault in the fetch loop")
                return real(fetcher, free)
            module.Fetcher._round = _round
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, _Inject())
'''


def faulty_path(tmp_path: Path) -> str:
    shim = tmp_path / "loop_fault_shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SHIM)
    return f"{shim}{os.pathsep}{ROOT}"


def test_a_fetch_loop_that_raises_stops_the_worker_with_exit_1_and_every_job_runs_once_in_the_end(
        redis_url, redis_client, ledger, tmp_path):
    client = geoq.Client(redis_url)
    ids = [j.id for j in client.enqueue_many([("f.sleep", {"sleep": 0.3}) for _ in range(120)])]
    config = write_config(tmp_path / "w.yaml", redis_url, ROUTES, worker={"concurrency": 20, "fetch_batch": 10})
    faulty = WorkerProcess(config, env={**ledger.env, "PYTHONPATH": faulty_path(tmp_path)})
    assert faulty.proc.wait(timeout=30) == 1, faulty.log()
    log = faulty.log()
    assert "its loop Fetcher.run failed (RuntimeError: injected fault in the fetch loop); stopping" in log, log
    assert "stopping: no new jobs" in log and "Traceback" in log    # gevent's report of the loop, then the stop
    ran_first = set(ledger.succeeded())
    assert 0 < len(ran_first) < len(ids)           # it ran what it had fetched, then stopped taking jobs
    at_stop = places(redis_client, ["default"])
    assert at_stop.total("processing") == 0 and redis_client.hlen("geoq:workers") == 0   # nothing left held

    with WorkerProcess(config, env=ledger.env) as healthy:
        wait_until(lambda: set(ledger.succeeded()) == set(ids), timeout=60, message="the rest ran")
        assert healthy.stop() == 0, healthy.log()
    assert ledger.succeeded() == {i: 1 for i in ids}
    assert_settled(redis_client, ["default"])
