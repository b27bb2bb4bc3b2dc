"""Certificate and signing-key expiry, checked by beat and stored as check results
(``tls_certificate_expiry``, ``signing_keys``) for the dashboard and ``doctor``.

Other servers refuse our federation port once its certificate expires (spec: server-server
API "TLS"), and cannot check our events without our keys: both warn well before.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from django.conf import settings

from dagcore.server_keys import build_server_key_response, get_old_verify_keys
from dagcore.store import operations

#: certbot renews 30 days ahead: 21 days left means renewal has failed for over a week.
CERT_WARN_MS = 21 * 86_400_000


def check_tls_certificate(*, now: int) -> tuple[str, str]:
    path = settings.DAGMA.tls_certificate_path
    if not path:
        return "ok", "no TLS certificate configured (federation TLS ends at a reverse proxy, or none)"
    try:
        cert = x509.load_pem_x509_certificate(settings.DAGMA.resolve_path(path).read_bytes())
    except (OSError, ValueError) as exc:
        return "fail", f"tls_certificate_path {path}: not readable as a PEM certificate ({exc})"
    not_after = int(cert.not_valid_after_utc.timestamp() * 1000)
    days = (not_after - now) / 86_400_000
    if not_after <= now:
        return "fail", f"the TLS certificate {path} expired {-days:.0f} days ago: federation fails"
    if not_after - now < CERT_WARN_MS:
        return "warn", f"the TLS certificate {path} expires in {days:.0f} days: renew it"
    return "ok", f"the TLS certificate expires in {days:.0f} days"


def check_signing_keys(*, now: int) -> tuple[str, str]:
    key_path = Path(settings.DAGMA.signing_key_path)
    try:
        published = build_server_key_response(now_ms=now)
    except (OSError, RuntimeError, ValueError) as exc:
        return "fail", f"signing keys at {key_path} unusable: {exc}"
    future = sorted(kid for kid, (_, expired_ts) in get_old_verify_keys().items() if expired_ts > now)
    if future:
        # An old key "expiring" later still vouches for events until then: most likely a typo.
        return "warn", f"old_signing_keys {future} have an expired_ts in the future"
    return (
        "ok",
        f"signing with {', '.join(sorted(published['verify_keys']))}; {len(published['old_verify_keys'])} old keys published",
    )


def do_check_expiry(*, now: int) -> dict[str, str]:
    """Run both checks and record them; returns ``name -> status``."""
    out = {}
    for name, (status, summary) in (
        ("tls_certificate_expiry", check_tls_certificate(now=now)),
        ("signing_keys", check_signing_keys(now=now)),
    ):
        operations.insert_check_result(name=name, status=status, summary=summary, details={}, ts=now)
        out[name] = status
    return out
