"""OCPP: SetChargingProfile payloads for 1.6 / 2.0.1 / 2.1 and fail-safe default limits (:mod:`.profiles`).

See :mod:`gridcharge.ocpp.profiles` for the exact public functions.
"""

from .profiles import (PROFILE_IDS, VERSIONS, PayloadError, ProfilePayload, build_set_charging_profile,
                       failsafe_limits_kw, failsafe_profile, number_of_phases, validate_payload)

__all__ = ["PROFILE_IDS", "VERSIONS", "PayloadError", "ProfilePayload", "build_set_charging_profile",
           "failsafe_limits_kw", "failsafe_profile", "number_of_phases", "validate_payload"]
