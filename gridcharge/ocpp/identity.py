"""The grammar of charger (OCPP charging-station identity) and site ids, checked where ids enter the service.

A charger id is the station's OCPP identity: the last segment of its websocket URL ``/ocpp/<id>`` and the user of
its HTTP Basic credentials. Hence: 1 to 48 characters (OCPP's identity limit), visible ASCII only (0x21-0x7E: every
charger firmware can put it in a URL and a header), no ``/`` (a URL segment), and for chargers no ``:`` (RFC 7617:
the Basic user-id cannot hold a colon, so such a charger could never log in). Site ids share the grammar (they are
URL segments of the operator API), colon allowed.
"""

from __future__ import annotations

import re

#: the most characters of an id [characters]
MAX_ID_CHARACTERS = 48

_SITE_ID = re.compile(r"[\x21-\x2e\x30-\x7e]{1,%d}" % MAX_ID_CHARACTERS)
_CHARGER_ID = re.compile(r"[\x21-\x2e\x30-\x39\x3b-\x7e]{1,%d}" % MAX_ID_CHARACTERS)

SITE_ID_EXPECTED = (f"1 to {MAX_ID_CHARACTERS} visible ASCII characters (0x21-0x7E) without '/'")
CHARGER_ID_EXPECTED = (f"an OCPP identity: 1 to {MAX_ID_CHARACTERS} visible ASCII characters (0x21-0x7E) without "
                       f"'/' or ':'")


def is_site_id(value) -> bool:
    """Whether ``value`` is a valid site id (see the module docstring)."""
    return isinstance(value, str) and _SITE_ID.fullmatch(value) is not None


def is_charger_id(value) -> bool:
    """Whether ``value`` is a valid charger id: an OCPP charging-station identity (see the module docstring)."""
    return isinstance(value, str) and _CHARGER_ID.fullmatch(value) is not None


__all__ = ["CHARGER_ID_EXPECTED", "MAX_ID_CHARACTERS", "SITE_ID_EXPECTED", "is_charger_id", "is_site_id"]
