"""The SMTP handler called directly (no worker, no monkeypatching) against a real aiosmtpd server."""

from __future__ import annotations

import email
import email.policy

import pytest

from geoq.errors import ConfigError, Fail, Retry
from geoq.handlers.smtp import Send, build_envelope, send
from geoq.job import Job
from tests.support.ports import free_port
from tests.support.smtp_server import SmtpServer
from tests.support.waiting import wait_until

MAIL = {"to": "ann@example.com", "subject": "Hello", "body": "Hi Ann"}


@pytest.fixture
def server():
    with SmtpServer() as s:
        yield s


@pytest.fixture(scope="module")
def tls_server():
    with SmtpServer(starttls=True, auth=("mailer", "hunter2-pw")) as s:
        yield s


def job(payload):
    return Job(id="q:1", type="email.send", queue="q", payload=payload, attempt=1)


def outcome(handler, payload):
    try:
        return handler(job(payload))
    except (Retry, Fail) as e:
        return e


def parsed(received):
    return email.message_from_bytes(received.data, policy=email.policy.default)


def test_the_design_name_builds_the_class_once_per_route():
    assert send is Send


def test_a_mail_is_delivered_and_the_result_names_the_accepted_recipients(server):
    handler = Send(**server.options(), **{"from": "App <app@example.com>"})
    result = handler(job({**MAIL, "cc": ["Bob <bob@example.com>"], "bcc": "eve@example.com",
                          "reply_to": "help@example.com", "headers": {"X-Campaign": "7"}}))
    assert result["accepted"] == ["ann@example.com", "bob@example.com", "eve@example.com"]
    assert "refused" not in result
    [received] = server.messages
    assert received.mail_from == "app@example.com"
    assert received.rcpt_tos == ("ann@example.com", "bob@example.com", "eve@example.com")
    message = parsed(received)
    assert message["From"] == "App <app@example.com>" and message["Cc"] == "Bob <bob@example.com>"
    assert message["Bcc"] is None and message["Reply-To"] == "help@example.com"
    assert message["X-Campaign"] == "7" and message["Message-ID"] == result["message_id"]
    assert message.get_content().strip() == "Hi Ann"


def test_html_is_an_alternative_part_and_non_ascii_text_survives(server):
    Send(**server.options())(job({**MAIL, "from": "a@example.com", "subject": "Grüße", "body": "Größe ✓",
                                  "html": "<p>Größe ✓</p>"}))
    message = parsed(server.messages[0])
    assert message.get_content_type() == "multipart/alternative" and message["Subject"] == "Grüße"
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain.get_content().strip() == "Größe ✓" and html.get_content().strip() == "<p>Größe ✓</p>"
    assert all(byte < 128 for byte in server.messages[0].data)  # 7bit on the wire: no 8BITMIME needed


def test_connections_are_reused_across_jobs(server):
    handler = Send(**server.options(), **{"from": "a@example.com"})
    for i in range(10):
        handler(job({**MAIL, "to": f"u{i}@example.com"}))
    assert len(server.messages) == 10 and server.connections == 1


def test_starttls_and_auth_with_a_certificate_checked_against_ca_file(tls_server):
    handler = Send(**tls_server.options(), **{"from": "a@example.com"})
    before = len(tls_server.messages)
    assert handler(job(MAIL))["accepted"] == ["ann@example.com"]
    assert len(tls_server.messages) == before + 1 and "mailer" in tls_server.logins


def test_an_untrusted_certificate_retries_and_never_sends_in_clear(tls_server):
    options = {**tls_server.options(), "ca_file": ""}
    before = len(tls_server.messages)
    error = outcome(Send(**options, **{"from": "a@example.com"}), MAIL)
    assert isinstance(error, Retry) and "CERTIFICATE_VERIFY_FAILED" in str(error)
    assert len(tls_server.messages) == before


def test_a_wrong_password_retries_without_showing_the_password(tls_server):
    handler = Send(**{**tls_server.options(), "password": "wrong-pw-123"}, **{"from": "a@example.com"})
    error = outcome(handler, MAIL)
    assert isinstance(error, Retry) and "535" in str(error) and "mailer" in str(error)
    assert "wrong-pw-123" not in f"{error} {error!r} {handler!r}" and "hunter2" not in repr(Send(**tls_server.options()))


def test_a_5xx_for_the_only_recipient_fails_with_the_servers_reply():
    with SmtpServer(reject_domain="bad.example") as server:
        error = outcome(Send(**server.options()), {**MAIL, "from": "a@example.com", "to": "x@bad.example"})
    assert isinstance(error, Fail)
    assert "550 5.1.1 <x@bad.example>: recipient domain bad.example is not accepted here" in str(error)


def test_a_5xx_for_some_recipients_delivers_to_the_others_and_reports_the_refused():
    with SmtpServer(reject_domain="bad.example") as server:
        handler = Send(**server.options(), **{"from": "a@example.com"})
        result = handler(job({**MAIL, "to": ["x@bad.example", "ok@example.com"]}))
        assert result["accepted"] == ["ok@example.com"]
        assert result["refused"]["x@bad.example"].startswith("550 ")
        assert server.recipients() == ["ok@example.com"]
        handler(job(MAIL))  # the connection was left clean for the next job
        assert server.connections == 1


def test_a_4xx_at_the_end_of_data_retries_and_keeps_the_connection():
    with SmtpServer(fail_every=2) as server:
        handler = Send(**server.options(), **{"from": "a@example.com"})
        handler(job(MAIL))
        error = outcome(handler, MAIL)
        assert isinstance(error, Retry) and "451" in str(error) and error.delay is None
        handler(job(MAIL))
        assert len(server.messages) == 2 and server.connections == 1


def test_connections_the_server_closed_while_idle_are_replaced():
    with SmtpServer(idle_timeout=0.3) as server:
        handler = Send(**server.options(), **{"from": "a@example.com"})
        handler(job(MAIL))
        wait_until(lambda: server.open_connections == 0, message="server closed the idle connection")
        assert handler(job(MAIL))["accepted"] == ["ann@example.com"]
        assert len(server.messages) == 2 and server.connections == 2


def test_a_refused_connection_retries():
    error = outcome(Send(port=free_port(), **{"from": "a@example.com"}), MAIL)
    assert isinstance(error, Retry) and "cannot connect" in str(error)


@pytest.mark.parametrize("payload, message", [
    ("just text", "payload must be an object"), ({**MAIL, "to": []}, "no recipient"),
    ({**MAIL, "to": "not-an-address"}, "not an email address"), ({**MAIL, "subject": "a\r\nBcc: x@y.z"}, "linefeed"),
    ({**MAIL, "headers": {"From": "x@y.z"}}, "may not set From"), ({**MAIL, "attachments": []}, "attachments"),
    ({**MAIL, "body": 7}, "'body' must be a string"),
])
def test_a_malformed_payload_fails_at_once(payload, message):
    with pytest.raises(Fail, match=message):
        build_envelope(payload, "a@example.com")


def test_a_mail_without_a_sender_fails():
    with pytest.raises(Fail, match="no sender"):
        build_envelope(MAIL, None)


@pytest.mark.parametrize("options, message", [
    ({"ssl": True, "starttls": True}, "exclude each other"), ({"username": "u"}, "go together"),
    ({"username": "u", "password": "p"}, "in clear"), ({"port": "x"}, "'port'"), ({"max_connections": 0}, "max_conn"),
    ({"from": "nobody"}, "'from'"), ({"starttls": True, "ca_file": "/no/such.pem"}, "ca_file"),
    ({"hots": "x"}, "unknown option 'hots'"), ({"timeout": "never"}, "'timeout'"),
])
def test_bad_route_options_are_a_clear_error_at_start_up(options, message):
    with pytest.raises(ConfigError, match=message):
        Send(**options)


def test_a_bad_password_value_is_never_echoed_in_the_error():
    with pytest.raises(ConfigError) as caught:
        Send(username="u", password=["hunter2-list"], starttls=True)
    assert "hunter2" not in str(caught.value)


def test_implicit_tls_from_the_first_byte():
    with SmtpServer(implicit_tls=True, auth=("mailer", "pw")) as server:
        handler = Send(**server.options(), **{"from": "a@example.com"})
        assert handler.options.ssl and handler(job(MAIL))["accepted"] == ["ann@example.com"]
        assert server.logins == ["mailer"]
