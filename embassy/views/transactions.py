"""Transactions from other servers.

Spec: https://spec.matrix.org/v1.19/server-server-api/#transactions
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from embassy.http import FederationRequest, federation_endpoint
from embassy.inbound import check_send_transaction


@federation_endpoint(authenticated=True, methods=("PUT",))
def send_transaction(fed: FederationRequest, txn_id: str) -> dict[str, Any]:
    """PUT /_matrix/federation/v1/send/{txnId}"""
    assert fed.origin is not None  # authenticated endpoint
    # The path is matched raw (percent-encoded): the txnId is decoded once, here.
    return check_send_transaction(origin=fed.origin, txn_id=unquote(txn_id), body=fed.body)
