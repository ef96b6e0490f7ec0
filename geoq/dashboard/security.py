"""The dashboard's guards, pure: basic auth, form tokens (CSRF) and the masking of secrets.

Form tokens: a browser gets a random nonce in a cookie (HttpOnly, SameSite=Strict); each
form carries HMAC(secret, nonce). A POST passes only when its token matches its own cookie's
nonce under the secret, so a page on another site, which can neither read that cookie nor
know the secret, cannot forge one, even if it manages to plant a cookie.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from typing import Any

COOKIE = "geoq_csrf"
FIELD = "csrf"
MASK = "••••••"

# Keys whose values are secrets wherever they sit in a payload (matched inside a key: db_password too).
_SECRET_PART = re.compile(r"pass(?:word|wd|phrase)|secret|token|authori[sz]ation|api[-_]?key|credential|"
                          r"private[-_]?key|cookie|signature", re.IGNORECASE)
_SECRET_WORDS = frozenset({"pass", "auth", "pin", "cvv", "ssn", "session", "sid"})   # only as whole words
_WORD_BREAK = re.compile(r"[-_. ]+|(?<=[a-z])(?=[A-Z])")
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+(?=@)", re.IGNORECASE)


def basic_auth_ok(header: str | None, username: str, password: str) -> bool:
    """Whether an Authorization header carries these credentials (compared in constant time)."""
    if not header or not header.startswith("Basic "):
        return False
    try:
        given = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user, sep, word = given.partition(":")
    same_user = hmac.compare_digest(user.encode(), username.encode())
    return bool(sep) & same_user & hmac.compare_digest(word.encode(), password.encode())


def new_nonce() -> str:
    return secrets.token_urlsafe(18)


def form_token(secret: bytes, nonce: str) -> str:
    return hmac.new(secret, nonce.encode(), hashlib.sha256).hexdigest()


def token_ok(secret: bytes, nonce: str | None, token: str | None) -> bool:
    if not nonce or not token:
        return False
    return hmac.compare_digest(form_token(secret, nonce).encode(), token.encode())


def is_secret_key(name: str) -> bool:
    """Whether a key names a secret: db_password, apiKey, Authorization, auth_header, pin ...
    (a part such as "password" anywhere; a short word such as "auth" only as a whole word)."""
    if _SECRET_PART.search(name):
        return True
    return any(word.lower() in _SECRET_WORDS for word in _WORD_BREAK.split(name))


def masked(value: Any) -> Any:
    """A JSON value with the values of secret-looking keys replaced by MASK, and passwords in
    URLs (scheme://user:PASSWORD@host) too, at any depth."""
    if isinstance(value, dict):
        return {k: MASK if is_secret_key(str(k)) and value[k] not in (None, "") else masked(value[k])
                for k in value}
    if isinstance(value, list):
        return [masked(item) for item in value]
    if isinstance(value, str):
        return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, value)
    return value
