"""The dashboard's pure pieces: escaping by construction, masking of secrets, basic auth, form tokens."""

from __future__ import annotations

import base64

import pytest

from geoq.dashboard import security
from geoq.dashboard.html import Markup, el, escape, table
from geoq.dashboard.security import MASK, masked


def test_text_is_escaped_and_markup_is_not_escaped_again() -> None:
    cell = el("td", "<b>&\"'", el("i", "x"), title='"><script>')
    assert cell == '<td title="&quot;&gt;&lt;script&gt;">&lt;b&gt;&amp;&quot;&#x27;<i>x</i></td>'
    assert escape(Markup("<i>")) == "<i>" and escape(None) == ""


def test_attributes_true_false_none_and_names() -> None:
    assert el("input", type="checkbox", checked=True, disabled=False, value=None, data_confirm="ok?") == \
        '<input type="checkbox" checked data-confirm="ok?">'
    assert el("div", class_="x") == '<div class="x"></div>'


def test_an_empty_table_says_so() -> None:
    assert table(("a",), [], empty="none yet") == '<p class="empty">none yet</p>'


@pytest.mark.parametrize("name", ["password", "db_password", "Password", "passwd", "accessToken", "api_key", "apiKey",
                                  "Authorization", "auth", "x-auth", "client_secret", "session_id", "pin",
                                  "private_key", "Cookie", "signature"])
def test_secret_looking_keys_are_masked(name: str) -> None:
    assert masked({name: "v", "keep": "v"}) == {name: MASK, "keep": "v"}


@pytest.mark.parametrize("name", ["author", "passenger", "compass", "spinner", "sessions", "to", "subject", "url"])
def test_ordinary_keys_are_kept(name: str) -> None:
    assert masked({name: "v"}) == {name: "v"}


def test_masking_reaches_every_depth_and_passwords_in_urls() -> None:
    value = {"a": [{"token": 1, "n": [1, 2]}], "url": "redis://user:pw@host:6379/0", "empty_password": ""}
    assert masked(value) == {"a": [{"token": MASK, "n": [1, 2]}], "url": f"redis://user:{MASK}@host:6379/0",
                             "empty_password": ""}


def test_basic_auth_accepts_only_the_exact_credentials() -> None:
    def header(text: str) -> str:
        return "Basic " + base64.b64encode(text.encode()).decode()
    assert security.basic_auth_ok(header("ops:pw:with:colons"), "ops", "pw:with:colons")
    for bad in (header("ops:wrong"), header("ops"), header("other:pw"), "Basic !!!", "Bearer x", None, ""):
        assert not security.basic_auth_ok(bad, "ops", "pw"), bad


def test_a_form_token_is_bound_to_its_cookie_and_the_secret() -> None:
    nonce = security.new_nonce()
    token = security.form_token(b"k" * 32, nonce)
    assert security.token_ok(b"k" * 32, nonce, token)
    assert not security.token_ok(b"k" * 32, security.new_nonce(), token)
    assert not security.token_ok(b"j" * 32, nonce, token)
    assert not security.token_ok(b"k" * 32, None, token) and not security.token_ok(b"k" * 32, nonce, None)
