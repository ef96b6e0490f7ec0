from types import MappingProxyType

import pytest

from geoq import backoff
from geoq.errors import Fail, JobTimeout, Retry
from geoq.job import Job
from geoq.outcome import DEAD, RETRY, SUCCEEDED, Outcome, RetryPolicy, classify


def route(max_retries=2):
    return RetryPolicy(max_retries, base=1.0, max=10.0, jitter="full")


def job(attempt, **kw):
    return Job(id="default:x", type="t", queue="default", payload=None, attempt=attempt, **kw)


def test_backoff_doubles_up_to_the_cap_without_jitter():
    assert [backoff.delay(n, 1.0, 10.0, "none") for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_full_jitter_draws_from_zero_to_the_ceiling():
    assert backoff.delay(3, 1.0, 10.0, "full", rand=lambda: 0.0) == 0.0
    assert backoff.delay(3, 1.0, 10.0, "full", rand=lambda: 0.5) == 2.0


def test_a_huge_retry_number_does_not_overflow():
    assert backoff.delay(10_000, 1.0, 600.0, "none") == 600.0


def test_a_return_value_succeeds():
    assert classify(job(1), route(), None, {"ok": 1}) == Outcome(SUCCEEDED, result={"ok": 1})


def test_a_raise_is_retried_while_attempt_is_at_most_max_retries():
    assert classify(job(1), route(2), ValueError("x")).state == RETRY
    assert classify(job(2), route(2), ValueError("x")).state == RETRY
    error = ValueError("x")
    dead = classify(job(3), route(2), error)
    assert dead == Outcome(DEAD, "ValueError: x", reason="max_retries") and dead.exception is error


def test_the_jobs_own_max_retries_wins_over_the_route():
    assert classify(job(1, max_retries=0), route(5), ValueError("x")).state == DEAD


def test_fail_dead_letters_at_once():
    assert classify(job(1), route(5), Fail("bad address")) == Outcome(DEAD, "Fail: bad address", reason="fail")


def test_retry_chooses_its_own_delay():
    assert classify(job(1), route(5), Retry(delay=42)).delay == 42


def test_a_timeout_is_a_failure_that_is_retried():
    out = classify(job(1), route(5), JobTimeout(1))
    assert out.state == RETRY and out.error.startswith("Timeout")


@pytest.mark.parametrize("attempt,ceiling", [(1, 1.0), (2, 2.0), (3, 4.0), (5, 10.0)])
def test_the_retry_delay_follows_the_routes_backoff(attempt, ceiling):
    out = classify(job(attempt), route(10), ValueError("x"), rand=lambda: 1.0)
    assert out.delay == ceiling


def test_weighted_queues_are_tried_first_in_proportion_to_their_weight():
    from geoq.worker.fetcher import Fetcher

    fetcher = Fetcher.__new__(Fetcher)  # only the ordering rule is under test: no Redis, no pool
    fetcher.queues, fetcher.weights = ["a", "b"], [3.0, 1.0]
    firsts = [fetcher._order()[0] for _ in range(20_000)]
    assert 0.72 < firsts.count("a") / len(firsts) < 0.78
    assert all(sorted(fetcher._order()) == ["a", "b"] for _ in range(100))
