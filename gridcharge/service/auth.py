"""Tokens of the schedule service: generation, hashing, constant-time comparison.

Design
------
- A token is random bytes from :mod:`secrets`, URL-safe base64, prefixed ``gco_`` (operator) or ``gcc_`` (charger)
  so that a leaked token says what it opens: the operator token 32 bytes (47 characters in all), a charger token
  12 bytes (20 characters in all), because a charger also uses its token as its OCPP password, and OCPP 1.6's
  ``AuthorizationKey`` holds 16-20 bytes and 2.0.1's ``BasicAuthPassword`` 16-40 characters. It is shown once (site
  creation prints the charger tokens in the response; the operator token is printed once at first start) and only
  its SHA-256 is stored. A plain SHA-256 (not a slow password hash) is enough because the tokens carry 96 to 256
  bits of entropy: there is no dictionary to try (2**96 guesses is out of reach), and it keeps a profile fetch cheap
  (one hash, ~1 µs).
- Comparison: the presented token is hashed and compared with the stored hash by :func:`hmac.compare_digest`
  (constant time). A charger's own hash is looked up by the charger id in the URL, so the comparison that decides
  "this is charger X" is always the constant-time one; the reverse look-up hash → charger, used only to tell a
  *valid but wrong* token (403) from an unknown one (401), is a dictionary keyed by the hash of the token, which
  leaks at most timing about a hash, not about a token.
- Requests carry ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

OPERATOR_PREFIX = "gco_"
CHARGER_PREFIX = "gcc_"


#: Random bytes per token: charger tokens fit OCPP's password limits with their prefix (20 characters).
TOKEN_BYTES = {OPERATOR_PREFIX: 32, CHARGER_PREFIX: 12}


def new_token(prefix: str) -> str:
    """A fresh random token with ``prefix`` (``TOKEN_BYTES[prefix]`` random bytes, URL-safe base64)."""
    return prefix + secrets.token_urlsafe(TOKEN_BYTES[prefix])


def token_hash(token: str) -> str:
    """SHA-256 of the token, hex (what the store keeps)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def matches(token: str | None, stored_hash: str | None) -> bool:
    """Whether ``token`` hashes to ``stored_hash`` (constant-time comparison of the hashes)."""
    if token is None or stored_hash is None:
        return False
    return hmac.compare_digest(token_hash(token).encode("ascii"), stored_hash.encode("ascii"))


def bearer(header_value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not header_value:
        return None
    scheme, _, value = header_value.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
