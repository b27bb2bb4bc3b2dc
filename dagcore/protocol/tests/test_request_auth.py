"""X-Matrix request authentication.

Spec: https://spec.matrix.org/v1.19/server-server-api/#request-authentication
Each refusal has a control built the same way beside it that is accepted, so a
test cannot pass by refusing everything.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from signedjson.sign import verify_signed_json

from dagcore.protocol.request_auth import (
    MAX_AUTHORIZATION_HEADERS,
    MAX_HEADER_BYTES,
    RequestAuthError,
    XMatrixAuth,
    authorization_header,
    parse_x_matrix,
    request_json,
    verify_request,
)
from dagcore.protocol.signing import (
    SigningKey,
    VerifyKey,
    decode_signing_key_base64,
    generate_signing_key,
    get_verify_key,
    key_id,
)

ORIGIN = "origin.example:8448"
US = "dest.example"
NOW = 1_700_000_000_000
URI = "/_matrix/federation/v1/send/txn%201?x=1"
BODY = {"origin": ORIGIN, "pdus": [], "edus": [{"edu_type": "m.typing", "content": {}}]}
SPEC_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"


@pytest.fixture
def key() -> SigningKey:
    return decode_signing_key_base64("ed25519:1", SPEC_SEED)


class KeyTable:
    """A :data:`VerifyKeyLookup` over fixed keys that records what it was asked."""

    def __init__(self, *keys: SigningKey, server: str = ORIGIN) -> None:
        self.table: dict[tuple[str, str], VerifyKey] = {(server, key_id(k)): get_verify_key(k) for k in keys}
        self.asked: list[tuple[str, str, int]] = []

    def __call__(self, server_name: str, kid: str, valid_at: int) -> VerifyKey | None:
        self.asked.append((server_name, kid, valid_at))
        return self.table.get((server_name, kid))


def header(key: SigningKey, *, method="PUT", uri=URI, origin=ORIGIN, destination=US, content=BODY) -> str:
    return authorization_header(
        method=method, uri=uri, origin=origin, destination=destination, signing_key=key, content=content
    )


def verify(key: SigningKey, headers: list[str], *, method="PUT", uri=URI, content=BODY, lookup=None) -> str:
    return verify_request(
        method=method,
        uri=uri,
        content=content,
        authorization=headers,
        our_server_name=US,
        get_verify_key=lookup or KeyTable(key),
        now_ms=NOW,
    )


# -- signing and verifying -------------------------------------------------------------------


def test_a_signed_request_verifies_and_names_its_origin(key: SigningKey) -> None:
    lookup = KeyTable(key)
    assert verify(key, [header(key)], lookup=lookup) == ORIGIN
    # The key is looked up for the origin, as valid now (not at some event's timestamp).
    assert lookup.asked == [(ORIGIN, "ed25519:1", NOW)]


def test_the_header_is_written_the_way_older_servers_read_it(key: SigningKey) -> None:
    value = header(key)
    assert value.startswith(
        'X-Matrix origin="origin.example:8448",destination="dest.example",key="ed25519:1",sig="'
    )
    assert "\\" not in value and "X-Matrix  " not in value


def test_the_signature_covers_the_spec_object(key: SigningKey) -> None:
    """The signed object is exactly {method, uri, origin, destination, content}: an independent
    verifier (signedjson) accepts the header's signature over it."""
    auth = parse_x_matrix(header(key))
    obj = request_json(method="put", uri=URI, origin=ORIGIN, destination=US, content=BODY)
    assert obj == {"method": "PUT", "uri": URI, "origin": ORIGIN, "destination": US, "content": BODY}
    obj["signatures"] = {ORIGIN: {auth.key_id: auth.signature}}
    verify_signed_json(obj, ORIGIN, get_verify_key(key))


def test_a_request_without_body_signs_no_content(key: SigningKey) -> None:
    assert "content" not in request_json(method="GET", uri="/x", origin=ORIGIN, destination=US)
    get_header = header(
        key, method="GET", uri="/_matrix/federation/v1/query/profile?user_id=%40a%3Ab", content=None
    )
    assert (
        verify(
            key,
            [get_header],
            method="GET",
            uri="/_matrix/federation/v1/query/profile?user_id=%40a%3Ab",
            content=None,
        )
        == ORIGIN
    )
    # The same GET presented with a body is a different request.
    with pytest.raises(RequestAuthError):
        verify(
            key,
            [get_header],
            method="GET",
            uri="/_matrix/federation/v1/query/profile?user_id=%40a%3Ab",
            content={},
        )


@pytest.mark.parametrize(
    ("what", "change"),
    [
        ("method", {"method": "POST"}),
        ("uri path", {"uri": "/_matrix/federation/v1/send/txn2"}),
        ("uri query", {"uri": "/_matrix/federation/v1/send/txn%201?x=2"}),
        ("uri encoding", {"uri": "/_matrix/federation/v1/send/txn 1?x=1"}),
        ("content", {"content": {**BODY, "pdus": [{"type": "m.room.message"}]}}),
        ("no content", {"content": None}),
    ],
)
def test_any_change_to_the_signed_request_is_refused(key: SigningKey, what: str, change: dict) -> None:
    signed = header(key)
    assert verify(key, [signed]) == ORIGIN  # control
    with pytest.raises(RequestAuthError, match="signature"):
        verify(key, [signed], **change)


def test_destination_must_be_us(key: SigningKey) -> None:
    """Spec: a destination that is present but not ours is denied with 401 — a request signed for
    another server cannot be replayed against us."""
    assert verify(key, [header(key, destination=US)]) == ORIGIN
    with pytest.raises(RequestAuthError, match=r"not addressed to dest\.example") as exc:
        verify(key, [header(key, destination="other.example")])
    assert exc.value.http_status == 401 and exc.value.errcode == "M_UNAUTHORIZED"


def test_older_senders_without_destination_are_accepted_when_they_signed_for_us(key: SigningKey) -> None:
    auth = parse_x_matrix(header(key))
    # The spec's older form: unquoted origin (with a port's colon), no destination.
    old_style = f'X-Matrix origin={ORIGIN},key="{auth.key_id}",sig="{auth.signature}"'
    assert verify(key, [old_style]) == ORIGIN
    # Signed for someone else, with the destination left out of the header: still refused.
    elsewhere = parse_x_matrix(header(key, destination="other.example"))
    old_style_elsewhere = f'X-Matrix origin={ORIGIN},key="{elsewhere.key_id}",sig="{elsewhere.signature}"'
    with pytest.raises(RequestAuthError, match="signature"):
        verify(key, [old_style_elsewhere])


def test_the_sender_must_hold_the_origins_key(key: SigningKey) -> None:
    impostor = generate_signing_key()
    impostor.version = key.version  # same key ID, different key
    with pytest.raises(RequestAuthError, match="signature"):
        verify(key, [header(impostor)])
    # Claiming another origin than the one whose key signed.
    forged = header(key).replace(f'origin="{ORIGIN}"', 'origin="victim.example"')
    with pytest.raises(RequestAuthError):
        verify(key, [forged], lookup=KeyTable(key, server="victim.example"))
    # Unknown key ID.
    with pytest.raises(RequestAuthError, match="no key ed25519:2"):
        verify(key, [header(key).replace('key="ed25519:1"', 'key="ed25519:2"')])


def test_one_valid_signature_among_several_headers_suffices(key: SigningKey) -> None:
    retired = generate_signing_key()  # a key the recipient cannot find any more
    headers = [header(retired), header(key)]
    assert verify(key, headers) == ORIGIN
    with pytest.raises(RequestAuthError, match="no key"):
        verify(key, [header(retired)])


def test_headers_naming_different_origins_are_refused(key: SigningKey) -> None:
    other = header(key).replace(f'origin="{ORIGIN}"', 'origin="other.example"')
    with pytest.raises(RequestAuthError, match="different origins"):
        verify(key, [header(key), other])


def test_missing_or_foreign_authorization_is_refused(key: SigningKey) -> None:
    with pytest.raises(RequestAuthError, match="Missing"):
        verify(key, [])
    with pytest.raises(RequestAuthError, match="Missing"):
        verify(key, ["Bearer syt_abc"])
    assert verify(key, ["Bearer syt_abc", header(key)]) == ORIGIN


def test_too_many_headers_are_refused_before_any_key_lookup(key: SigningKey) -> None:
    lookup = KeyTable(key)
    with pytest.raises(RequestAuthError, match="More than"):
        verify(key, [header(key)] * (MAX_AUTHORIZATION_HEADERS + 1), lookup=lookup)
    assert lookup.asked == []
    assert verify(key, [header(key)] * MAX_AUTHORIZATION_HEADERS) == ORIGIN


# -- parsing -----------------------------------------------------------------------------------


def test_parsing_follows_the_auth_param_grammar() -> None:
    expected = XMatrixAuth(origin="a.example", destination="b.example", key_id="ed25519:k1", signature="c2ln")
    assert (
        parse_x_matrix('X-Matrix origin="a.example",destination="b.example",key="ed25519:k1",sig="c2ln"')
        == expected
    )
    # Scheme and names case-insensitive, optional whitespace, order free, tokens unquoted.
    assert (
        parse_x_matrix('x-matrix  SIG=c2ln , Key = "ed25519:k1",destination=b.example,\tORIGIN="a.example"')
        == expected
    )
    # Backslash escapes are unescaped.
    assert (
        parse_x_matrix(r'X-Matrix origin="a\.example",destination="b.example",key="ed25519:k1",sig="c2ln"')
        == expected
    )
    # Unknown parameters are ignored; destination is optional.
    assert parse_x_matrix('X-Matrix origin=a.example,key=ed25519:k1,sig=c2ln,future="x"') == XMatrixAuth(
        origin="a.example", destination=None, key_id="ed25519:k1", signature="c2ln"
    )
    # IPv6 literal origins are server names too.
    assert parse_x_matrix('X-Matrix origin="[::1]:8448",key="ed25519:k1",sig="c2ln"').origin == "[::1]:8448"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ('Bearer origin="a.example",key="ed25519:k1",sig="c2ln"', "not of scheme"),
        ("X-Matrix", "not of scheme"),
        ('X-Matrixorigin="a.example",key="ed25519:k1",sig="c2ln"', "not of scheme"),
        ('X-Matrix key="ed25519:k1",sig="c2ln"', "lacks origin"),
        ('X-Matrix origin="a.example",sig="c2ln"', "lacks key"),
        ('X-Matrix origin="a.example",key="ed25519:k1",sig=""', "lacks sig"),
        ('X-Matrix origin="a.example",origin="b.example",key="ed25519:k1",sig="c2ln"', "given twice"),
        ('X-Matrix origin="a.example,key="ed25519:k1",sig="c2ln"', "Malformed"),
        ('X-Matrix origin="a.example",key="ed25519:k1",sig="c2ln', "Unterminated"),
        ('X-Matrix origin="a.example" key="ed25519:k1",sig="c2ln"', "Malformed"),
        ('X-Matrix origin,key="ed25519:k1",sig="c2ln"', "no value"),
        ('X-Matrix origin=,key="ed25519:k1",sig="c2ln"', "malformed value"),
        ('X-Matrix origin="a.ex\x00ample",key="ed25519:k1",sig="c2ln"', "Control character"),
        ('X-Matrix origin="../../etc",key="ed25519:k1",sig="c2ln"', "origin is not a valid server name"),
        (
            'X-Matrix origin="a.example",destination="b example",key="ed25519:k1",sig="c2ln"',
            "destination is not",
        ),
        (
            'X-Matrix origin="' + "a" * 300 + '",key="ed25519:k1",sig="c2ln"',
            "origin is not a valid server name",
        ),
        ('X-Matrix origin="a.example",key="k1",sig="c2ln"', "not a key ID"),
        ('X-Matrix origin="a.example",key="ed25519:k/1",sig="c2ln"', "not a key ID"),
    ],
)
def test_malformed_headers_are_refused_with_a_reason(value: str, reason: str) -> None:
    with pytest.raises(RequestAuthError, match=reason):
        parse_x_matrix(value)


def test_oversized_header_is_refused_before_parsing() -> None:
    base = 'X-Matrix origin="a.example",key="ed25519:k1",sig="c2ln",pad="'
    fits = base + "x" * (MAX_HEADER_BYTES - len(base) - 1) + '"'
    assert parse_x_matrix(fits).origin == "a.example"
    with pytest.raises(RequestAuthError, match="longer than"):
        parse_x_matrix(fits[:-1] + 'x"')


@given(st.text(max_size=300))
def test_arbitrary_header_text_never_raises_anything_else(text: str) -> None:
    for candidate in (text, "X-Matrix " + text):
        with contextlib.suppress(RequestAuthError):
            parse_x_matrix(candidate)
