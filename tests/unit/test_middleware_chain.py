"""geoq.middleware.Chain: order, only overridden hooks, and a raising hook that never stops the others."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest

import geoq
from geoq.job import Job
from geoq.middleware import Chain, Middleware, WorkerInfo, chain
from geoq.outcome import Outcome

JOB = Job(id="default:j1", type="t.ok", queue="default", payload={"n": 1}, attempt=1)
WORKER = WorkerInfo("w1", ("default",), 10, lambda: 0.0, lambda: 0)
DONE = Outcome("succeeded", result=1, duration=0.1)


class Tracer(Middleware):
    """Writes "<name>.<hook>" to a shared list for every job hook and every hook_failed."""

    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls = name, calls

    def before_enqueue(self, job: Job) -> Job:
        self.calls.append(f"{self.name}.before_enqueue")
        return job

    def worker_started(self, worker: WorkerInfo) -> None:
        self.calls.append(f"{self.name}.worker_started")

    def before_run(self, job: Job) -> None:
        self.calls.append(f"{self.name}.before_run")

    def after_run(self, job: Job, outcome: Outcome) -> None:
        self.calls.append(f"{self.name}.after_run")

    def worker_stopping(self, worker: WorkerInfo) -> None:
        self.calls.append(f"{self.name}.worker_stopping")

    def hook_failed(self, hook: str, error: BaseException) -> None:
        self.calls.append(f"{self.name}.hook_failed({hook}: {error})")


class Broken(Middleware):
    """Raises `error` in after_run and before_run."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def before_run(self, job: Job) -> None:
        raise self.error

    def after_run(self, job: Job, outcome: Outcome) -> None:
        raise self.error


def run_every_hook(c: Chain) -> None:
    c.before_enqueue(JOB)
    c.worker_started(WORKER)
    c.before_run(JOB)
    c.after_run(JOB, DONE)
    c.worker_stopping(WORKER)


def chain_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "geoq.middleware"]


# -- order and selection -----------------------------------------------------------------------


def test_hooks_run_in_list_order_and_after_run_and_worker_stopping_in_reverse() -> None:
    calls: list[str] = []
    run_every_hook(Chain([Tracer("a", calls), Tracer("b", calls)]))
    assert calls == ["a.before_enqueue", "b.before_enqueue", "a.worker_started", "b.worker_started",
                     "a.before_run", "b.before_run", "b.after_run", "a.after_run",
                     "b.worker_stopping", "a.worker_stopping"]


def test_only_the_hooks_a_middleware_overrides_are_called(monkeypatch: pytest.MonkeyPatch) -> None:
    called: list[str] = []
    for hook in ("before_run", "worker_started", "after_run"):
        monkeypatch.setattr(Middleware, hook, lambda self, *a, _hook=hook: called.append(f"base.{_hook}"))

    class OnlyAfterRun(Middleware):
        def after_run(self, job: Job, outcome: Outcome) -> None:
            called.append("after_run")

    class Inherits(OnlyAfterRun):   # an override inherited from a subclass of Middleware still counts
        pass

    c = Chain([OnlyAfterRun(), Inherits()])
    c.before_run(JOB)
    c.worker_started(WORKER)
    c.after_run(JOB, DONE)
    assert called == ["after_run", "after_run"]


def test_a_chain_of_nothing_is_false_and_chain_keeps_an_existing_chain() -> None:
    existing = Chain([Middleware()])
    assert not Chain() and len(existing) == 1 and existing
    assert chain(existing) is existing and not chain(None) and len(chain([Middleware(), Middleware()])) == 2


def test_something_that_is_not_a_middleware_is_refused_when_the_chain_is_built() -> None:
    with pytest.raises(TypeError, match="must be geoq.Middleware instances, got function"):
        Chain([lambda job: job])  # type: ignore[list-item]


# -- a raising hook ----------------------------------------------------------------------------


def test_a_raising_hook_is_logged_once_reported_each_time_and_the_next_middleware_still_runs(
        caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    c = Chain([Tracer("first", calls), Broken(RuntimeError("boom")), Tracer("last", calls)])
    c.after_run(JOB, DONE)
    c.after_run(JOB, DONE)
    one_call = ["last.after_run", "first.hook_failed(after_run: boom)", "last.hook_failed(after_run: boom)",
                "first.after_run"]   # every middleware's hook_failed hears of it
    assert calls == one_call * 2
    (logged,) = chain_errors(caplog)
    assert logged.levelno == logging.ERROR
    assert logged.getMessage() == "middleware Broken.after_run raised (ignored; the job goes on): RuntimeError: boom"
    assert logged.exc_info is not None and logged.exc_info[1] is c.middleware[1].error   # type: ignore[attr-defined]


def test_each_hook_of_each_middleware_is_logged_on_its_own(caplog: pytest.LogCaptureFixture) -> None:
    c = Chain([Broken(ValueError("x")), Broken(ValueError("y"))])
    for _ in range(3):
        c.before_run(JOB)
        c.after_run(JOB, DONE)
    assert sorted(r.getMessage().split(" raised")[0] for r in chain_errors(caplog)) == [
        "middleware Broken.after_run", "middleware Broken.after_run",
        "middleware Broken.before_run", "middleware Broken.before_run"]


def test_a_raising_hook_failed_is_logged_and_not_reported_again(caplog: pytest.LogCaptureFixture) -> None:
    class BadReporter(Middleware):
        reports = 0

        def hook_failed(self, hook: str, error: BaseException) -> None:
            BadReporter.reports += 1
            raise RuntimeError("the reporter is broken too")

    c = Chain([BadReporter(), Broken(RuntimeError("boom"))])
    c.after_run(JOB, DONE)
    assert BadReporter.reports == 1
    assert [r.getMessage() for r in chain_errors(caplog)][-1] == (
        "middleware BadReporter.hook_failed raised: the reporter is broken too")


def test_fail_raised_in_after_run_is_only_a_hook_error(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    Chain([Tracer("t", calls), Broken(geoq.Fail("too late"))]).after_run(JOB, DONE)
    assert calls == ["t.hook_failed(after_run: too late)", "t.after_run"]


# -- before_enqueue and before_run -------------------------------------------------------------


class AddToPayload(Middleware):
    def __init__(self, key: str) -> None:
        self.key = key

    def before_enqueue(self, job: Job) -> Job:
        return replace(job, payload={**job.payload, self.key: sorted(job.payload)})


def test_before_enqueue_hands_each_changed_job_to_the_next_and_returns_the_last() -> None:
    out = Chain([AddToPayload("a"), AddToPayload("b")]).before_enqueue(JOB)
    assert out.payload == {"n": 1, "a": ["n"], "b": ["a", "n"]} and out.id == JOB.id
    assert JOB.payload == {"n": 1}


@pytest.mark.parametrize("returned", [None, {"id": "x"}])
def test_before_enqueue_returning_no_job_is_reported_and_its_change_skipped(
        returned: Any, caplog: pytest.LogCaptureFixture) -> None:
    class Forgetful(Middleware):
        def before_enqueue(self, job: Job) -> Job:
            return returned  # type: ignore[no-any-return]

    calls: list[str] = []
    out = Chain([Tracer("t", calls), Forgetful(), AddToPayload("after")]).before_enqueue(JOB)
    assert out.payload == {"n": 1, "after": ["n"]}
    reported = f"t.hook_failed(before_enqueue: returned {type(returned).__name__}, not a Job)"
    assert calls == ["t.before_enqueue", reported]
    assert "Forgetful.before_enqueue raised" in chain_errors(caplog)[0].getMessage()


def test_before_enqueue_raising_passes_the_job_on_unchanged(caplog: pytest.LogCaptureFixture) -> None:
    class Raising(Middleware):
        def before_enqueue(self, job: Job) -> Job:
            raise KeyError("tenant")

    assert Chain([Raising()]).before_enqueue(JOB) is JOB
    assert len(chain_errors(caplog)) == 1


@pytest.mark.parametrize("signal", [geoq.Fail("no"), geoq.Retry(delay=5)])
def test_fail_and_retry_from_before_run_propagate_and_stop_the_later_before_runs(
        signal: Exception, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    c = Chain([Tracer("first", calls), Broken(signal), Tracer("last", calls)])
    with pytest.raises(type(signal)) as raised:
        c.before_run(JOB)
    assert raised.value is signal
    assert calls == ["first.before_run"] and chain_errors(caplog) == []
