"""Suite-wide fixtures: a signing key for the test server, account and room builders."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings


@pytest.fixture(scope="session", autouse=True)
def _server_signing_key() -> None:
    from dagcore.protocol import signing

    path = Path(settings.DAGMA["signing_key_path"])
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(signing.write_signing_keys([signing.generate_signing_key()]))
