"""The one exception the auth rules raise."""

from __future__ import annotations


class AuthError(Exception):
    """The event is not authorised; ``reason`` names the rule that failed.

    Spec: https://spec.matrix.org/v1.19/server-server-api/#checks-performed-on-receipt-of-a-pdu
    — an event failing the auth rules is *rejected* (or soft-failed against current state).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
