"""Transactions from other servers.

Spec: https://spec.matrix.org/v1.19/server-server-api/#transactions
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from dagcore.observability.metrics import FEDERATION_PDUS_RECEIVED, FEDERATION_RECEIVE_SECONDS
from embassy.http import FederationRequest, federation_endpoint
from embassy.inbound import check_send_transaction


@federation_endpoint(authenticated=True, methods=("PUT",), transactions=True)
def send_transaction(fed: FederationRequest, txn_id: str) -> dict[str, Any]:
    """PUT /_matrix/federation/v1/send/{txnId}"""
    assert fed.origin is not None  # authenticated endpoint
    # The path is matched raw (percent-encoded): the txnId is decoded once, here.
    pdus = fed.body.get("pdus") if isinstance(fed.body, dict) else None
    if isinstance(pdus, list):
        FEDERATION_PDUS_RECEIVED.inc(len(pdus))
    with FEDERATION_RECEIVE_SECONDS.time():
        return check_send_transaction(origin=fed.origin, txn_id=unquote(txn_id), body=fed.body)
