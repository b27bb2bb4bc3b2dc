"""Other servers' signing keys: found in the cache, at a notary, or at the server itself.

Spec: https://spec.matrix.org/v1.19/server-server-api/#retrieving-server-keys and
https://spec.matrix.org/v1.19/rooms/v5/#signing-key-validity-period.

A key is asked for as :class:`KeyRequest` ``(server, key ID, minimum_valid_until_ts)``
— the time the key must be valid at (an event's ``origin_server_ts`` in room v5+,
now for a request signature, 0 in rooms v1-v4). The keyring answers, in order:

1. from the database cache, when the cached key is valid long enough;
2. from each of ``trusted_key_servers`` in turn (``POST /_matrix/key/v2/query``):
   the answer must be signed by the notary with a key from its configuration
   entry (or, if the entry names none, a key fetched from the notary itself),
   and by the queried server;
3. from the server itself (``GET /_matrix/key/v2/server``), self-signed.

Every key that arrives is stored, valid until the lesser of its
``valid_until_ts`` and 7 days after the fetch (a key under ``old_verify_keys``:
until its ``expired_ts``). Many requests — the PDUs of one transaction — are
answered together: one notary query for all of them, one fetch per server.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard

from django.conf import settings

from dagcore.clock import now_ms as _now_ms
from dagcore.federation.client import FederationError, get_federation_client
from dagcore.protocol.canonical_json import encode_canonical_json
from dagcore.protocol.identifiers import is_valid_server_name
from dagcore.protocol.signing import (
    SignatureError,
    VerifyKey,
    VerifyKeyLookup,
    decode_verify_key_base64,
    verify_json_signature,
)
from dagcore.server_keys import build_server_key_response, get_server_name
from dagcore.store import server_keys as key_store
from dagcore.store.server_keys import StoredServerKey

logger = logging.getLogger("dagma.federation")

#: Spec: "Servers MUST use the lesser of this field and 7 days into the future".
MAX_KEY_VALIDITY_MS = 7 * 24 * 3600 * 1000
#: A key answer is a few hundred bytes per key; a notary's answer holds many servers.
KEY_RESPONSE_MAX_BYTES = 512 * 1024
NOTARY_RESPONSE_MAX_BYTES = 4 * 1024 * 1024
KEY_FETCH_TIMEOUT_S = 15.0


class KeyLookupError(Exception):
    """A key answer is malformed or not signed as it must be."""


@dataclass(frozen=True)
class KeyRequest:
    server_name: str
    key_id: str
    #: The key must be valid until at least this time (ms; 0: any key the server ever had).
    minimum_valid_until_ts: int = 0


@dataclass(frozen=True)
class TrustedKeyServer:
    server_name: str
    #: The notary's own keys, from the configuration; empty: fetched from the notary itself.
    verify_keys: Mapping[str, VerifyKey] = field(default_factory=dict)

    @classmethod
    def from_config(cls, entry: Mapping[str, Any]) -> TrustedKeyServer:
        keys = entry.get("verify_keys") or {}
        return cls(
            server_name=str(entry["server_name"]),
            verify_keys={kid: decode_verify_key_base64(kid, b64) for kid, b64 in keys.items()},
        )


class KeyTransport(Protocol):
    """What the keyring needs from the network (:class:`~dagcore.federation.client.FederationClient`)."""

    def get_json(self, destination: str, path: str, **kwargs: Any) -> dict[str, Any]: ...

    def post_json(self, destination: str, path: str, content: Any, **kwargs: Any) -> dict[str, Any]: ...


def _int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_key_response(
    response: Any, *, server_name: str, from_server: str, fetched_ts: int
) -> list[StoredServerKey]:
    """The keys in one ``/_matrix/key/v2/server`` answer of ``server_name``, checked.

    The answer must be about ``server_name`` and signed by it with at least one of
    the keys it lists under ``verify_keys``; every such signature present must
    verify (signatures by keys it does not list prove nothing and are ignored).
    """
    if not isinstance(response, dict):
        raise KeyLookupError(f"key answer for {server_name} is not an object")
    if response.get("server_name") != server_name:
        raise KeyLookupError(f"key answer for {server_name} names another server")
    valid_until = response.get("valid_until_ts")
    verify_keys = response.get("verify_keys")
    old_keys = response.get("old_verify_keys", {})
    if not _int(valid_until) or not isinstance(verify_keys, dict) or not isinstance(old_keys, dict):
        raise KeyLookupError(f"key answer for {server_name} lacks valid_until_ts or verify_keys")
    current: dict[str, tuple[str, VerifyKey]] = {}
    for kid, entry in verify_keys.items():
        if not str(kid).startswith("ed25519:"):
            continue  # unknown algorithms are someone else's business
        b64 = entry.get("key") if isinstance(entry, dict) else None
        try:
            current[kid] = (str(b64), decode_verify_key_base64(kid, str(b64)))
        except ValueError as exc:
            raise KeyLookupError(f"key {kid[:100]} of {server_name} is invalid: {exc}") from None
    signatures = response.get("signatures")
    own = signatures.get(server_name) if isinstance(signatures, dict) else None
    signed_with = [kid for kid in (own if isinstance(own, dict) else {}) if kid in current]
    if not signed_with:
        raise KeyLookupError(f"key answer for {server_name} is not signed by one of its keys")
    for kid in signed_with:
        try:
            verify_json_signature(response, server_name=server_name, key_id=kid, verify_key=current[kid][1])
        except SignatureError as exc:
            raise KeyLookupError(str(exc)) from None
    key_json = encode_canonical_json(response).decode("utf-8")
    capped = min(valid_until, fetched_ts + MAX_KEY_VALIDITY_MS)
    out = [
        StoredServerKey(server_name, kid, b64, capped, None, from_server, fetched_ts, key_json)
        for kid, (b64, _key) in current.items()
    ]
    for kid, entry in old_keys.items():
        if kid in current or not str(kid).startswith("ed25519:") or not isinstance(entry, dict):
            continue
        expired_ts = entry.get("expired_ts")
        b64 = entry.get("key")
        if not _int(expired_ts) or not isinstance(b64, str):
            continue  # an unusable old key: the current ones are still good
        try:
            decode_verify_key_base64(kid, b64)
        except ValueError:
            continue
        out.append(
            StoredServerKey(server_name, kid, b64, expired_ts, expired_ts, from_server, fetched_ts, key_json)
        )
    return out


def signature_key_requests(pdus: Iterable[Any]) -> list[KeyRequest]:
    """The keys of every signature on these PDUs (each valid at its PDU's ``origin_server_ts``),
    for :meth:`Keyring.lookup_for`: the keys of a transaction or of a ``send_join`` answer are
    read together, not once per PDU (a thousand-member room's state is a thousand PDUs)."""
    requests: list[KeyRequest] = []
    for pdu in pdus:
        if not isinstance(pdu, Mapping):
            continue
        signatures = pdu.get("signatures")
        ts = pdu.get("origin_server_ts")
        if not isinstance(signatures, dict):
            continue
        for server, keys in signatures.items():
            if isinstance(server, str) and isinstance(keys, dict):
                requests.extend(
                    KeyRequest(server, k, ts if isinstance(ts, int) else 0)
                    for k in keys
                    if isinstance(k, str)
                )
    return requests


def _wanted(requests: Iterable[KeyRequest]) -> dict[tuple[str, str], int]:
    """``(server, key_id) -> minimum_valid_until_ts``, the strictest of duplicate requests."""
    out: dict[tuple[str, str], int] = {}
    for r in requests:
        pair = (r.server_name, r.key_id)
        out[pair] = max(out.get(pair, 0), r.minimum_valid_until_ts)
    return out


class Keyring:
    def __init__(
        self,
        *,
        transport: KeyTransport,
        trusted_key_servers: Iterable[TrustedKeyServer] = (),
        our_server_name: str,
        our_key_response: Callable[[int], dict[str, Any]],
        clock: Callable[[], int] = _now_ms,
    ) -> None:
        self.transport = transport
        self.trusted_key_servers = list(trusted_key_servers)
        self.our_server_name = our_server_name
        self.our_key_response = our_key_response
        self.clock = clock

    # -- lookups ---------------------------------------------------------------------------

    def get_verify_keys(self, requests: Iterable[KeyRequest]) -> dict[tuple[str, str], VerifyKey]:
        """The keys among ``requests`` that are found valid long enough, fetched together."""
        wanted = _wanted(requests)
        found: dict[tuple[str, str], StoredServerKey] = {}
        ours = [pair for pair in wanted if pair[0] == self.our_server_name]
        if ours:
            now = self.clock()
            for key in parse_key_response(
                self.our_key_response(now),
                server_name=self.our_server_name,
                from_server=self.our_server_name,
                fetched_ts=now,
            ):
                found[(key.server_name, key.key_id)] = key
        found.update(key_store.get_server_keys(keys=[p for p in wanted if p[0] != self.our_server_name]))

        def missing() -> dict[tuple[str, str], int]:
            return {
                pair: minimum
                for pair, minimum in wanted.items()
                if pair[0] != self.our_server_name
                and (pair not in found or found[pair].valid_until_ts < minimum)
            }

        if missing():
            for notary in self.trusted_key_servers:
                found.update(self._from_notary(notary, missing()))
                if not missing():
                    break
        for server_name in sorted({server for server, _ in missing()}):
            found.update(self._from_origin(server_name))
        return {
            pair: decode_verify_key_base64(pair[1], found[pair].verify_key)
            for pair, minimum in wanted.items()
            if pair in found and found[pair].valid_until_ts >= minimum
        }

    def get_verify_key(self, server_name: str, key_id: str, valid_at_ts: int) -> VerifyKey | None:
        """A :data:`~dagcore.protocol.signing.VerifyKeyLookup`."""
        return self.get_verify_keys([KeyRequest(server_name, key_id, valid_at_ts)]).get((server_name, key_id))

    def lookup_for(self, requests: Iterable[KeyRequest]) -> VerifyKeyLookup:
        """A lookup that fetched ``requests`` together first (the keys of one transaction)."""
        wanted = _wanted(requests)
        batch = self.get_verify_keys(KeyRequest(s, k, m) for (s, k), m in wanted.items())

        def lookup(server_name: str, key_id: str, valid_at_ts: int) -> VerifyKey | None:
            pair = (server_name, key_id)
            if pair in batch and wanted[pair] >= valid_at_ts:
                return batch[pair]
            return self.get_verify_key(server_name, key_id, valid_at_ts)

        return lookup

    # -- serving as a notary ---------------------------------------------------------------

    def get_key_responses(self, server_name: str, criteria: Mapping[str, int]) -> list[dict[str, Any]]:
        """Signed key answers of ``server_name`` for a notary query (without our signature).

        ``criteria`` is ``key_id -> minimum_valid_until_ts`` (empty: all keys, valid now).
        Cached answers are served when they satisfy the query; otherwise the server is
        asked, and when it cannot be reached the last answers we have are served anyway
        (spec: "notary servers should continue to return the last response they received").
        """
        now = self.clock()
        if server_name == self.our_server_name:
            return [self.our_key_response(now)]
        cached = key_store.get_keys_of_servers(server_names=[server_name])
        by_id = {k.key_id: k for k in cached}
        if criteria:
            fresh = all(kid in by_id and by_id[kid].valid_until_ts >= m for kid, m in criteria.items())
        else:
            fresh = any(k.expired_ts is None and k.valid_until_ts >= now for k in cached)
        if not fresh and self._from_origin(server_name):
            cached = key_store.get_keys_of_servers(server_names=[server_name])
        answers: dict[str, dict[str, Any]] = {}
        for key in sorted(cached, key=lambda k: -k.fetched_ts):
            if key.key_json not in answers:
                answers[key.key_json] = _decode(key.key_json)
        return list(answers.values())

    # -- fetching --------------------------------------------------------------------------

    def _store(self, keys: list[StoredServerKey]) -> dict[tuple[str, str], StoredServerKey]:
        key_store.store_server_keys(keys=keys)
        return {(k.server_name, k.key_id): k for k in keys}

    def _from_origin(self, server_name: str) -> dict[tuple[str, str], StoredServerKey]:
        """Every key ``server_name`` publishes, fetched from it and stored; ``{}`` on failure."""
        if not is_valid_server_name(server_name):
            return {}
        try:
            response = self.transport.get_json(
                server_name,
                "/_matrix/key/v2/server",
                signed=False,
                max_bytes=KEY_RESPONSE_MAX_BYTES,
                timeout=KEY_FETCH_TIMEOUT_S,
            )
            keys = parse_key_response(
                response, server_name=server_name, from_server=server_name, fetched_ts=self.clock()
            )
        except (FederationError, KeyLookupError) as exc:
            logger.info("fetching the keys of %s failed: %s", server_name[:255], exc)
            return {}
        return self._store(keys)

    def _notary_key(self, notary: TrustedKeyServer, key_id: str) -> VerifyKey | None:
        if notary.verify_keys:
            return notary.verify_keys.get(key_id)
        # No keys configured for the notary: trust what it serves itself, over verified TLS
        # (never through a notary, which could be the very one whose answer we check).
        pair = (notary.server_name, key_id)
        now = self.clock()
        cached = key_store.get_server_keys(keys=[pair]).get(pair)
        if cached is None or cached.valid_until_ts < now:
            cached = self._from_origin(notary.server_name).get(pair)
        if cached is None or cached.valid_until_ts < now:
            return None
        return decode_verify_key_base64(key_id, cached.verify_key)

    def _from_notary(
        self, notary: TrustedKeyServer, missing: Mapping[tuple[str, str], int]
    ) -> dict[tuple[str, str], StoredServerKey]:
        query: dict[str, dict[str, dict[str, int]]] = {}
        for (server_name, key_id), minimum in missing.items():
            query.setdefault(server_name, {})[key_id] = {"minimum_valid_until_ts": minimum}
        try:
            response = self.transport.post_json(
                notary.server_name,
                "/_matrix/key/v2/query",
                {"server_keys": query},
                max_bytes=NOTARY_RESPONSE_MAX_BYTES,
                timeout=KEY_FETCH_TIMEOUT_S,
            )
        except FederationError as exc:
            logger.info("notary %s did not answer: %s", notary.server_name[:255], exc)
            return {}
        items = response.get("server_keys")
        fetched_ts = self.clock()
        stored: list[StoredServerKey] = []
        for item in items if isinstance(items, list) else []:
            about = item.get("server_name") if isinstance(item, dict) else None
            if not isinstance(about, str) or about not in query:
                continue  # only what we asked about
            try:
                self._check_notary_signature(notary, item)
                stored.extend(
                    parse_key_response(
                        item, server_name=about, from_server=notary.server_name, fetched_ts=fetched_ts
                    )
                )
            except KeyLookupError as exc:
                logger.info("notary %s answered badly for %s: %s", notary.server_name[:255], about, exc)
        return self._store(stored)

    def _check_notary_signature(self, notary: TrustedKeyServer, item: dict[str, Any]) -> None:
        signatures = item.get("signatures")
        by_notary = signatures.get(notary.server_name) if isinstance(signatures, dict) else None
        for kid in sorted(by_notary) if isinstance(by_notary, dict) else []:
            key = self._notary_key(notary, kid)
            if key is None:
                continue
            try:
                verify_json_signature(item, server_name=notary.server_name, key_id=kid, verify_key=key)
            except SignatureError as exc:
                raise KeyLookupError(str(exc)) from None
            return
        raise KeyLookupError(f"not signed with a known key of notary {notary.server_name}")


def _decode(key_json: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(key_json)
    return value


@functools.cache
def get_keyring() -> Keyring:
    """This process's keyring, configured from ``dagma.yaml``."""
    return Keyring(
        transport=get_federation_client(),
        trusted_key_servers=[TrustedKeyServer.from_config(e) for e in settings.DAGMA.trusted_key_servers],
        our_server_name=get_server_name(),
        our_key_response=lambda now: build_server_key_response(now_ms=now),
    )
