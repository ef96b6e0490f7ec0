"""geoq.job.built and fresh: the fast Job constructors (the worker's, enqueue_many's) make the same
frozen Job as Job(...)."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import pytest

from geoq.job import Job, JobControl, built, fresh

EVERY_FIELD = dict(id="mail:abc", type="send", queue="mail", payload={"to": "a@b"}, attempt=2,
                   enqueued_at=1.5, max_retries=3, timeout=9.0, history=((1.0, "boom"),), deaths=1,
                   due_at=2.5, meta=MappingProxyType({"tenant": "t"}), options=MappingProxyType({"x": 1}),
                   control=JobControl(expires_at=3.0, unique_key="k", unique_for=4.0))


def test_every_field_of_job_is_given_to_built() -> None:
    # A field added to Job and not to built() fails here: built(**...) refuses the unknown name.
    assert set(EVERY_FIELD) == {f.name for f in dataclasses.fields(Job)}


def test_built_equals_the_dataclass_constructor_field_by_field() -> None:
    job, expected = built(**EVERY_FIELD), Job(**EVERY_FIELD)
    assert type(job) is Job
    assert job == expected
    assert {name: getattr(job, name) for name in EVERY_FIELD} == EVERY_FIELD
    assert repr(job) == repr(expected)


def test_a_built_job_is_frozen_and_replaceable() -> None:
    job = built(**EVERY_FIELD)
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.attempt = 5  # type: ignore[misc]
    again = dataclasses.replace(job, attempt=5)
    assert again.attempt == 5 and again.id == job.id and type(again) is Job


def test_a_fresh_job_is_the_dataclass_constructor_with_every_other_field_at_its_default() -> None:
    job = fresh("mail:abc", "send", "mail", {"to": "a@b"}, 1.5)
    expected = Job(id="mail:abc", type="send", queue="mail", payload={"to": "a@b"}, enqueued_at=1.5)
    assert type(job) is Job
    assert {f.name: getattr(job, f.name) for f in dataclasses.fields(Job)} == \
        {f.name: getattr(expected, f.name) for f in dataclasses.fields(Job)}
    assert repr(job) == repr(expected)
