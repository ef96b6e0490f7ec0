"""geoq.limits and what surrounds it without Redis: limit specs from the config (one clear line for
each mistake), limit keys from payloads, pauses from a server's signal, the handlers' signals and
identities, the metric, the key names."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from geoq.broker.keys import limit_keys
from geoq.config import load_config
from geoq.errors import ConfigError, LimitKeyError, Retry, Throttled
from geoq.handlers.http import FetchOptions, judge, parse_options, parse_request
from geoq.handlers.smtp import _Reply, build_envelope, job_message_id
from geoq.limits import KeyRule, LimitSpec, burst_of, key_of, parse_key, pause_for
from geoq.metrics import Metrics
from geoq.routing import limit_spec


def write(path: Path, limits: object) -> Path:
    """A config whose route r has this limits block, written on line 4 in flow style."""
    block = yaml.safe_dump(limits, default_flow_style=True, width=1000).strip().removesuffix("...").strip()
    path.write_text(f"routes:\n  r:\n    handler: geoq.handlers.builtin:noop\n    limits: {block}\n")
    return path


def limits_error(tmp_path: Path, limits: object) -> str:
    path = write(tmp_path / "c.yaml", limits)
    with pytest.raises(ConfigError) as e:
        load_config(path, env={})
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"{path}: routes.r.limits")
    return message.split(": ", 1)[1]


def spec_of(tmp_path: Path, limits: object) -> LimitSpec | None:
    path = write(tmp_path / "ok.yaml", limits)
    return limit_spec("r", load_config(path, env={}).routes["r"].limits)


# --- the config ---------------------------------------------------------------------------------


def test_a_limits_block_becomes_one_spec_with_every_limit(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, {"rate": "6000/m", "concurrency": 20, "adaptive": True, "pause": "5s",
                              "per_key": {"key": "acct-{payload.account.id}", "rate": "5/s", "concurrency": 2}})
    assert spec == LimitSpec("r", 100.0, 20, KeyRule("template", "acct-{payload.account.id}",
                                                      ("acct-", ("account", "id"), "")), 5.0, 2, True, 5.0, 300.0)
    assert spec.leased and spec_of(tmp_path, {"rate": "1/h"}) == LimitSpec("r", rate=1 / 3600)


def test_a_route_without_limits_has_no_spec_and_pays_nothing(tmp_path: Path) -> None:
    assert spec_of(tmp_path, None) is None and spec_of(tmp_path, {}) is None


@pytest.mark.parametrize("limits, expected", [
    (5, "routes.r.limits (line 4): expected a mapping, got 5"),
    ({"speed": "1/s"}, "routes.r.limits.speed (line 4): expected one of rate, concurrency, per_key, adaptive, pause, "
                       "max_pause, got an unknown key"),
    ({"rate": "fast"}, "routes.r.limits.rate (line 4): expected a rate > 0 such as 100/s, 10/m, 5/h, got 'fast'"),
    ({"rate": "0/s"}, "routes.r.limits.rate (line 4): expected a rate > 0 such as 100/s, 10/m, 5/h, got '0/s'"),
    ({"concurrency": 0}, "routes.r.limits.concurrency (line 4): expected an integer >= 1, got 0"),
    ({"per_key": {"key": "host", "rate": "1/s"}},
     "routes.r.limits.per_key.key (line 4): expected url_host, recipient_domain or a template such as "
     "{payload.account_id}, got 'host'"),
    ({"per_key": {"key": "{account_id}", "rate": "1/s"}},
     "routes.r.limits.per_key.key (line 4): expected url_host, recipient_domain or a template such as "
     "{payload.account_id}, got '{account_id}'"),
    ({"per_key": {"rate": "1/s"}}, "routes.r.limits.per_key.key (line 4): expected a key (url_host, "
     "recipient_domain or a template such as {payload.account_id}) for the per-key rate or concurrency, got null"),
    ({"per_key": {"key": "url_host"}}, "routes.r.limits.per_key (line 4): expected a per-key rate or concurrency, "
     "or adaptive: true, for the key, got key url_host alone"),
    ({"pause": "10m"}, "routes.r.limits.max_pause (line 4): expected a duration >= pause (600s), got 300s"),
])
def test_each_malformed_limits_block_is_one_line_naming_the_key(tmp_path: Path, limits: object,
                                                                 expected: str) -> None:
    assert limits_error(tmp_path, limits) == expected


# --- keys from payloads -----------------------------------------------------------------------


def test_built_in_keys_read_the_url_host_and_the_first_recipients_domain() -> None:
    assert key_of(parse_key("url_host"), {"url": "https://user:pw@API.Example.com:8443/x?q=1"}) == "api.example.com"
    rule = parse_key("recipient_domain")
    assert key_of(rule, {"to": "Ann <ann@Mail.Example.ORG>"}) == "mail.example.org"
    assert key_of(rule, {"to": ["b@one.example", "c@two.example"]}) == "one.example"


def test_a_template_joins_payload_fields_as_text() -> None:
    rule = parse_key("{payload.tenant}/{payload.account.id}")
    assert key_of(rule, {"tenant": "acme", "account": {"id": 7}}) == "acme/7"
    assert key_of(parse_key("{payload.flag}"), {"flag": True}) == "true"


@pytest.mark.parametrize("rule, payload, reason", [
    ("{payload.account_id}", {"account": 7}, "the payload has no payload.account_id"),
    ("{payload.a.b}", {"a": 1}, "the payload has no payload.a.b"),
    ("{payload.a}", {"a": {"b": 1}}, "payload.a is not a plain value"),
    ("{payload.a}", ["not", "an", "object"], "the payload has no payload.a"),
    ("url_host", {"url": "not a url"}, "the payload has no 'url' with a host"),
    ("recipient_domain", {"to": []}, "the payload has no 'to' address with a domain"),
])
def test_a_payload_without_its_key_is_one_clear_reason(rule: str, payload: object, reason: str) -> None:
    with pytest.raises(LimitKeyError) as e:
        key_of(parse_key(rule), payload)
    assert str(e.value) == f"limits.per_key.key {rule}: {reason}"


@pytest.mark.parametrize("text", ["", "host", "{payload}", "{payload.a", "x}{payload.a}", "{job.id}", 7])
def test_a_key_that_is_neither_built_in_nor_a_template_is_refused(text: object) -> None:
    with pytest.raises(ValueError):
        parse_key(text)


# --- pauses and bursts ------------------------------------------------------------------------


def test_a_pause_is_what_the_server_asked_capped_or_the_default_when_it_named_none() -> None:
    spec = LimitSpec("r", adaptive=True, pause=30.0, max_pause=300.0)
    assert pause_for(spec, Throttled(delay=2)) == 2.0
    assert pause_for(spec, Throttled()) == 30.0
    assert pause_for(spec, Throttled(delay=86400)) == 300.0
    assert pause_for(spec, Retry(delay=2)) is None            # an ordinary failure is not a pause
    assert pause_for(LimitSpec("r"), Throttled(delay=2)) is None   # nor is a signal on a route not adaptive


def test_a_burst_is_a_tenth_of_a_seconds_worth_and_at_least_one() -> None:
    assert (burst_of(100), burst_of(5), burst_of(1 / 60), burst_of(1e6)) == (10, 1, 1, 100000)


# --- the handlers' signals and identities -----------------------------------------------------


def request(payload: dict, **options: object):  # type: ignore[no-untyped-def]
    return parse_request(payload, parse_options(options) if options else FetchOptions(), job_id="default:abc")


def test_http_429_and_503_with_retry_after_ask_to_slow_down_and_other_failures_do_not() -> None:
    r = request({"url": "http://h.example/"})
    for status, after, delay in ((429, "2", 2.0), (429, None, None), (503, "7", 7.0)):
        with pytest.raises(Throttled) as e:
            judge(r, status, "x", after, 0.0)
        assert e.value.delay == delay
    for status in (503, 500, 408):
        with pytest.raises(Retry) as plain:
            judge(r, status, "x", None, 0.0)
        assert not isinstance(plain.value, Throttled)


def test_http_sends_the_job_id_as_idempotency_key_for_post_put_patch_unless_told_otherwise() -> None:
    key = "idempotency-key"
    assert request({"url": "http://h.example/", "json": {}}).headers[key] == "default:abc"
    assert request({"url": "http://h.example/", "method": "PATCH", "body": "x"}).headers[key] == "default:abc"
    assert key not in request({"url": "http://h.example/"}).headers
    assert request({"url": "http://h.example/"}, idempotency_key=True).headers[key] == "default:abc"
    assert key not in request({"url": "http://h.example/", "json": {}}, idempotency_key=False).headers
    own = request({"url": "http://h.example/", "json": {}, "headers": {"Idempotency-Key": "mine"}})
    assert own.headers[key] == "mine" and b"idempotency-key: default:abc" in request(
        {"url": "http://h.example/", "json": {}}).head.lower()


def test_an_idempotency_key_option_that_is_not_a_boolean_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="option 'idempotency_key': expected true or false"):
        parse_options({"idempotency_key": "yes"})


def test_smtp_421_and_451_ask_to_slow_down_while_other_4xx_retry_and_5xx_fail() -> None:
    assert all(isinstance(_Reply(c, "t", "RCPT", True).signal(), Throttled) for c in (421, 451))
    assert type(_Reply(450, "t", "RCPT", True).signal()) is Retry


def test_a_mails_message_id_is_its_jobs_id_recognisably() -> None:
    assert job_message_id("default:Ab_c+/9-x", "App <app@geoq.example>") == "<geoq.default=3AAb_c+/9-x@geoq.example>"
    assert job_message_id("a.b@c=d", "x@y.example") == "<geoq.a=2Eb=40c=3Dd@y.example>"
    envelope = build_envelope({"to": "a@b.example", "subject": "s", "body": "b"}, "x@y.example", "default:j1")
    again = build_envelope({"to": "a@b.example", "subject": "s", "body": "b", "html": "<p>b</p>"}, "x@y.example",
                           "default:j1")
    assert envelope.message_id == again.message_id == "<geoq.default=3Aj1@y.example>"
    assert b"Message-ID: <geoq.default=3Aj1@y.example>" in envelope.data and b"<geoq.default=3Aj1@" in again.data


# --- key names and the metric -----------------------------------------------------------------


def test_a_routes_limit_keys_share_one_hash_tag_even_for_odd_names() -> None:
    k = limit_keys("http.fetch")
    names = [k.state, k.leases, k.paused, k.reserved, k.key_state("h"), k.key_leases("h"), k.key_reserved("h")]
    assert all(n.startswith("geoq:{limit:http.fetch}:") for n in names)
    odd = limit_keys("a}b{c")
    assert odd.state.count("{") == 1 and odd.state.count("}") == 1
    assert len(k.key_state("x" * 5000)) < 300


def test_held_jobs_are_counted_by_route_and_limit_never_by_key() -> None:
    metrics = Metrics({"r": "default"}, ["default"], limited_routes=["r"])
    metrics.limited("r", "key_rate")
    metrics.limited("r", "key_rate")
    metrics.limited("not.a.route", "rate")
    text = generate_latest(metrics.registry).decode()
    assert 'geoq_limited_total{limit="key_rate",route="r"} 2.0' in text
    assert 'geoq_limited_total{limit="paused_key",route="r"} 0.0' in text     # preset, so rate() works at once
    assert 'geoq_limited_total{limit="rate",route="_unknown"} 1.0' in text
