"""Discovery, CORS and unknown endpoints, against a live server process."""

from __future__ import annotations

import pytest

from dagcore.protocol import signing
from tests.support.client import MatrixClient


def test_versions_lists_v1_1_to_v1_15_and_validates_against_the_spec(dagma_server) -> None:
    c = MatrixClient(dagma_server.base_url)
    r = c.get("/_matrix/client/versions", spec="/versions", auth=False)
    assert r.json["versions"][-5:] == ["v1.11", "v1.12", "v1.13", "v1.14", "v1.15"]
    assert "v1.1" in r.json["versions"]


@pytest.mark.parametrize(
    ("path", "body", "status", "errcode"),
    [
        ("/register/email/requestToken", {"email": "a@example.org"}, 403, "M_THREEPID_DENIED"),
        ("/register/msisdn/requestToken", {"country": "GB", "phone_number": "07700900001"}, 403,
         "M_THREEPID_DENIED"),
        ("/account/password/email/requestToken", {"email": "a@example.org"}, 403, "M_THREEPID_DENIED"),
        ("/account/password/msisdn/requestToken", {"country": "GB", "phone_number": "07700900001"}, 403,
         "M_THREEPID_DENIED"),
        ("/account/3pid/email/requestToken", {"email": "a@example.org"}, 400, "M_THREEPID_MEDIUM_NOT_SUPPORTED"),
        ("/account/3pid/msisdn/requestToken", {"country": "GB", "phone_number": "07700900001"}, 400,
         "M_THREEPID_MEDIUM_NOT_SUPPORTED"),
    ],
)  # fmt: skip
def test_third_party_identifier_tokens_are_refused_with_the_spec_codes(
    dagma_server, path: str, body: dict[str, str], status: int, errcode: str
) -> None:
    """No email or phone is ever bound here (``m.3pid_changes`` is off): the v1.13 error
    codes (MSC4178) instead of the catch-all 404, and a body that is no JSON is still M_NOT_JSON."""
    c = MatrixClient(dagma_server.base_url)
    full = {"client_secret": "s3cr3t", "send_attempt": 1, **body}
    r = c.post(f"/_matrix/client/v3{path}", full, auth=False, expect=status, spec=path)
    assert r.json["errcode"] == errcode
    raw = c.request("POST", f"/_matrix/client/v3{path}", content=b"{nope", auth=False, expect=400)
    assert raw.json["errcode"] == "M_NOT_JSON"


def test_every_response_carries_cors_headers_errors_included(dagma_server) -> None:
    c = MatrixClient(dagma_server.base_url)
    ok = c.get("/_matrix/client/versions", auth=False)
    err = c.get("/_matrix/client/v3/nonsense", expect=404, auth=False)
    for r in (ok, err):
        assert r.raw.headers["Access-Control-Allow-Origin"] == "*"
        assert "Authorization" in r.raw.headers["Access-Control-Allow-Headers"]


def test_options_preflight_answers_204_without_auth(dagma_server) -> None:
    c = MatrixClient(dagma_server.base_url)
    r = c.request("OPTIONS", "/_matrix/client/v3/sync", expect=204, auth=False)
    assert r.raw.headers["Access-Control-Allow-Methods"]


def test_unknown_endpoints_answer_json_m_unrecognized(dagma_server) -> None:
    c = MatrixClient(dagma_server.base_url)
    for path in ("/_matrix/client/v3/unstable/thing", "/_matrix/client/unstable/org.example/x", "/nope"):
        r = c.get(path, expect=404, auth=False)
        assert r.json["errcode"] == "M_UNRECOGNIZED"


def test_well_known_client_points_at_public_baseurl(dagma_server) -> None:
    c = MatrixClient(dagma_server.base_url)
    r = c.get("/.well-known/matrix/client", auth=False)
    assert r.json["m.homeserver"]["base_url"] == dagma_server.base_url


def test_server_keys_are_self_signed(dagma_server) -> None:
    c = MatrixClient(dagma_server.base_url)
    body = c.get("/_matrix/key/v2/server", auth=False).json
    assert body["server_name"] == dagma_server.server_name
    key_id, entry = next(iter(body["verify_keys"].items()))
    assert set(body["signatures"][body["server_name"]]) == set(body["verify_keys"])
    verify_key = signing.decode_verify_key_base64(key_id, entry["key"])
    # The signature verifies with the key the document itself publishes (raises if not) ...
    signing.verify_json_signature(body, server_name=body["server_name"], key_id=key_id, verify_key=verify_key)
    # ... and covers the document: a changed validity would not verify.
    forged = {**body, "valid_until_ts": body["valid_until_ts"] + 1}
    with pytest.raises(signing.SignatureError):
        signing.verify_json_signature(
            forged, server_name=body["server_name"], key_id=key_id, verify_key=verify_key
        )


def test_third_party_lookups_answer_the_spec_shapes_with_no_bridges(make_client) -> None:
    """Element asks for the protocol list at start-up: no bridges means none, not an error."""
    alice = make_client()
    assert alice.get("/thirdparty/protocols", spec="/thirdparty/protocols").json == {}
    for path, spec in (
        ("/thirdparty/protocol/irc", "/thirdparty/protocol/{protocol}"),
        ("/thirdparty/location/irc", "/thirdparty/location/{protocol}"),
        ("/thirdparty/user/irc", "/thirdparty/user/{protocol}"),
    ):
        assert alice.get(path, expect=404, spec=spec).json["errcode"] == "M_NOT_FOUND"
    assert alice.get("/thirdparty/location", params={"alias": "#a:b"}, spec="/thirdparty/location").json == []
    assert alice.get("/thirdparty/user", params={"userid": "@a:b"}, spec="/thirdparty/user").json == []
    # An access token is required, as for every lookup.
    anonymous = alice.get("/thirdparty/protocols", expect=401, auth=False)
    assert anonymous.json["errcode"] == "M_MISSING_TOKEN"
