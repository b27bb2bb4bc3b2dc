"""Our TLS certificate (``tls_certificate_path``) and signing key."""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from django.conf import settings

from dagcore.clock import now_ms
from dagcore.doctor import FAIL, OK, Verdict
from dagcore.doctor.federation_tester import certificate_expiry_step
from dagcore.protocol import signing
from dagcore.server_keys import get_signing_keys

DAY_MS = 24 * 3600 * 1000
RENEW_FIX = (
    "renew the certificate (e.g. `certbot renew`), then restart the Embassy (`manage.py serve embassy`)"
)


def check_certificate() -> Verdict:
    config = settings.DAGMA
    if not config.tls_certificate_path:
        return Verdict(
            "certificate", OK, "no tls_certificate_path: TLS is terminated elsewhere (see federation)"
        )
    path = config.resolve_path(config.tls_certificate_path)
    try:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        return Verdict(
            "certificate", FAIL, f"tls_certificate_path {path}: {type(exc).__name__}: {str(exc)[:150]}",
            fix="point tls_certificate_path at a readable PEM certificate chain",
        )  # fmt: skip
    not_after = int(cert.not_valid_after_utc.timestamp() * 1000)
    step = certificate_expiry_step("certificate", not_after, now=now_ms())
    return Verdict(
        "certificate", step.status, f"{path}: {step.summary}", fix=RENEW_FIX if step.status != OK else "",
        details={**step.details, "path": str(path), "subject": cert.subject.rfc4514_string()},
    )  # fmt: skip


def check_signing_key() -> Verdict:
    try:
        keys = get_signing_keys()
    except Exception as exc:  # unreadable or malformed key file: say which
        return Verdict(
            "signing_key", FAIL, f"signing key: {str(exc)[:200]}",
            fix="restore signing_key_path from backup (a new key breaks other servers' trust in old events)",
        )  # fmt: skip
    path = Path(settings.DAGMA.signing_key_path)
    try:
        mtime_ms = int(path.stat().st_mtime * 1000)
    except OSError:
        mtime_ms = now_ms()
    age_days = max(0, (now_ms() - mtime_ms) // DAY_MS)
    since = datetime.datetime.fromtimestamp(mtime_ms / 1000, tz=datetime.UTC).strftime("%Y-%m-%d")
    ids = [signing.key_id(k) for k in keys]
    return Verdict(
        "signing_key", OK, f"{', '.join(ids)}: key file unchanged for {age_days} days (since {since})",
        details={"key_ids": ids, "age_days": age_days, "path": str(path)},
    )  # fmt: skip
