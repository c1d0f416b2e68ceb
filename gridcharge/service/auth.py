"""Tokens of the schedule service: generation, hashing, constant-time comparison.

Design
------
- A token is 32 random bytes from :mod:`secrets`, URL-safe base64 (43 characters), prefixed ``gco_`` (operator) or
  ``gcc_`` (charger) so that a leaked token says what it opens. It is shown once (site creation prints the charger
  tokens in the response; the operator token is printed once at first start) and only its SHA-256 is stored.
  A plain SHA-256 (not a slow password hash) is enough because the tokens carry 256 bits of entropy: there is no
  dictionary to try, and it keeps a profile fetch cheap (one hash, ~1 µs).
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


def new_token(prefix: str) -> str:
    """A fresh random token (256 bits) with ``prefix``."""
    return prefix + secrets.token_urlsafe(32)


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
