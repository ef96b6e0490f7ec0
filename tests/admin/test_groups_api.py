"""geoq.admin.groups, the interface the dashboard pages dead jobs through: every page bounded,
every move leaves the dead set and its index in step."""

from __future__ import annotations

import json
from typing import Iterator

import pytest

from geoq.admin import groups
from geoq.admin.errors import UsageError
from geoq.admin.session import Session, resolve_config
from geoq.broker import keys
from tests.support.dead_index import ORDER, SMTP, USER, assert_index_consistent, dead_ids, fp, seed

K = keys.queue_keys("default")


@pytest.fixture
def session(redis_url: str) -> Iterator[Session]:
    s = Session(resolve_config(None, redis_url, {}))
    yield s
    s.close()


def test_a_group_pages_its_jobs_newest_first_to_the_end(session, redis_client):
    ids = seed(redis_client, [SMTP.format(n=n) for n in range(7)])
    seed(redis_client, [USER.format(n=1)])

    pages, cursor = [], None
    while True:
        page, cursor = groups.group_jobs(session, "default", fp(SMTP), cursor, limit=3)
        pages.append([r.id for r in page])
        if cursor is None:
            break

    assert pages == [ids[6:3:-1], ids[3:0:-1], ids[:1]]
    with pytest.raises(UsageError):
        groups.group_jobs(session, "default", fp(SMTP), cursor=fp(USER) + ":x")
    assert groups.group_jobs(session, "default", "0123456789abcdef") == ([], None)


def test_find_dead_gives_the_newest_record_of_an_id_and_none_for_an_unknown_one(session, redis_client):
    (job_id,) = seed(redis_client, [SMTP.format(n=1)], queue="bulk")

    found = groups.find_dead(session, job_id)

    assert found is not None and (found.id, found.queue, found.body["error"]) == (job_id, "bulk", SMTP.format(n=1))
    assert found.fingerprint == fp(SMTP, queue="bulk")
    assert groups.find_dead(session, "default:nobody") is None


def test_one_job_a_group_or_all_are_retried_or_deleted_with_the_index_in_step(session, redis_client):
    smtp = seed(redis_client, [SMTP.format(n=n) for n in range(5)])
    user = seed(redis_client, [USER.format(n=n) for n in range(4)])
    order = seed(redis_client, [ORDER.format(n=n) for n in range(3)])

    assert groups.retry_dead(session, "default", [smtp[0], "default:nobody"]) == 1
    assert groups.delete_dead(session, "default", [smtp[1]]) == 1
    assert groups.retry_group(session, "default", fp(USER)) == 4
    assert groups.delete_group(session, "default", fp(ORDER)) == 3
    assert dict(assert_index_consistent(redis_client)) == {fp(SMTP): 3}
    assert groups.retry_all(session, "default") == 3

    assert {json.loads(e)["i"] for e in redis_client.lrange(K.ready, 0, -1)} == {smtp[0], *smtp[2:], *user}
    assert dead_ids(redis_client) == set() and dict(assert_index_consistent(redis_client)) == {}
    seed(redis_client, [ORDER.format(n=1)])
    assert groups.delete_all(session, "default") == 1
    assert redis_client.zcard(K.dead) == 0 and redis_client.exists(K.dead_groups) == 0


def test_a_filtered_page_looks_at_a_bounded_number_of_groups_and_its_total_is_then_estimated(
        session, redis_client, monkeypatch):
    for n in range(12):
        seed(redis_client, [f"ValueError: {'wanted' if n % 2 else 'other'} step " + "x" * n])
    monkeypatch.setattr(groups, "SCAN_BUDGET", 4)
    monkeypatch.setattr(groups, "EXACT_TOTAL", 5)

    first = groups.list_groups(session, ["default"], text="wanted", limit=10)

    assert len(first.groups) == 2 and first.next_cursor is not None
    assert (first.total, first.estimated) == (6, True)
    seen, cursor = list(first.groups), first.next_cursor
    while cursor is not None:
        page = groups.list_groups(session, ["default"], text="wanted", cursor=cursor, limit=10)
        seen += page.groups
        cursor = page.next_cursor
    assert len(seen) == 6 and all("wanted" in g.message for g in seen)
    assert [g.last_seen for g in seen] == sorted((g.last_seen for g in seen), reverse=True)
    monkeypatch.setattr(groups, "EXACT_TOTAL", 100)
    assert groups.list_groups(session, ["default"], text="WANTED", limit=1).total == 6


def test_a_queue_without_dead_jobs_has_no_groups(session, redis_client):
    page = groups.list_groups(session, ["default", "bulk"])
    assert (page.groups, page.next_cursor, page.total) == ([], None, 0)
    assert redis_client.dbsize() == 0
