"""Device keys, one-time keys and fallback keys: upload, query, claim, and who changed.

Spec: client-server API "Key management API"
(https://spec.matrix.org/v1.19/client-server-api/#key-management-api) and
"Tracking the device list for a user". The server checks the shapes, the
device's self-signature and who may publish what; it never sees a private key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dagcore.actions import federated_keys
from dagcore.actions.device_lists import mark_device_list_changed
from dagcore.actions.published_keys import add_signatures as _add_signatures
from dagcore.actions.published_keys import own_signatures
from dagcore.http.errors import MatrixError
from dagcore.notifier import Change, notify
from dagcore.protocol.canonical_json import encode_canonical_json
from dagcore.protocol.signing import SignatureError, decode_verify_key_base64, verify_json_signature
from dagcore.server_keys import get_server_name
from dagcore.store import device_lists as device_list_store
from dagcore.store import e2e_counts, transaction
from dagcore.store import e2e_keys as key_store
from dagcore.store import rooms as room_store
from dagcore.store.streams import get_stream_positions

#: Most one-time keys accepted in one upload (clients send tens at a time).
MAX_ONE_TIME_KEYS_PER_UPLOAD = 1000
#: Most (user, device) pairs one ``/keys/claim`` may ask for.
MAX_CLAIMS = 10_000
#: Most users one ``/keys/query`` may ask about.
MAX_QUERY_USERS = 10_000
#: Longest algorithm name or key ID accepted.
MAX_NAME_LENGTH = 255


def dump(value: Any) -> str:
    return encode_canonical_json(value).decode()


def server_of(user_id: str) -> str:
    return user_id.partition(":")[2]


def _bad(msg: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", msg)


def _invalid(msg: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", msg)


def check_signed_by(obj: dict[str, Any], *, user_id: str, key_id: str, public_key: str) -> bool:
    """Whether ``obj`` carries a valid signature of ``user_id``'s ed25519 ``key_id`` (``public_key``).

    Spec appendices "Checking for a signature": the signature covers the canonical
    JSON of the object without ``signatures`` and ``unsigned``.
    """
    try:
        verify_key = decode_verify_key_base64(key_id, public_key)
        verify_json_signature(obj, server_name=user_id, key_id=key_id, verify_key=verify_key)
    except (SignatureError, ValueError):
        return False
    return True


def is_ed25519_public_key(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        decode_verify_key_base64("ed25519:x", value)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- upload


def _check_device_keys(device_keys: object, *, user_id: str, device_id: str) -> dict[str, Any]:
    """The device keys to store: well-formed, the caller's, and self-signed."""
    if not isinstance(device_keys, dict):
        raise _bad("device_keys must be an object")
    if device_keys.get("user_id") != user_id:
        raise _invalid("device_keys.user_id must be your user ID")
    if device_keys.get("device_id") != device_id:
        raise _invalid("device_keys.device_id must be the device of this access token")
    algorithms = device_keys.get("algorithms")
    if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
        raise _bad("device_keys.algorithms must be a list of strings")
    keys = device_keys.get("keys")
    if not isinstance(keys, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in keys.items()
    ):
        raise _bad("device_keys.keys must map key IDs to strings")
    signatures = device_keys.get("signatures")
    if not isinstance(signatures, dict) or not all(isinstance(v, dict) for v in signatures.values()):
        raise _bad("device_keys.signatures must be an object of objects")
    ed_key_id = f"ed25519:{device_id}"
    if not is_ed25519_public_key(keys.get(ed_key_id)):
        raise _invalid(f"device_keys.keys must hold the device's {ed_key_id} key")
    stored = {k: v for k, v in device_keys.items() if k != "unsigned"}
    # Spec "Uploading keys": the device keys are signed by the device's own ed25519 key.
    if not check_signed_by(stored, user_id=user_id, key_id=ed_key_id, public_key=keys[ed_key_id]):
        raise MatrixError(400, "M_INVALID_SIGNATURE", f"device_keys are not signed by {ed_key_id}")
    return stored


def _cross_signatures(device_keys: dict[str, Any], *, user_id: str, device_id: str) -> dict[str, str]:
    """The user's signatures on the device by keys other than the device's own (by key ID)."""
    mine = device_keys.get("signatures", {}).get(user_id, {})
    return {
        key_id: sig
        for key_id, sig in mine.items()
        if key_id.partition(":")[2] != device_id and isinstance(sig, str)
    }


def _check_key_map(value: object, *, field: str) -> list[tuple[str, str, str]]:
    """``{"<algorithm>:<key_id>": key}`` -> ``(algorithm, key_id, key_json)`` rows."""
    if value is None:
        return []
    if not isinstance(value, dict):
        raise _bad(f"{field} must be an object")
    rows = []
    for name, key in value.items():
        algorithm, sep, key_id = name.partition(":")
        if (
            not sep
            or not algorithm
            or not key_id
            or len(algorithm) > MAX_NAME_LENGTH
            or len(key_id) > MAX_NAME_LENGTH
        ):
            raise _invalid(f"{field}: {name!r} is not '<algorithm>:<key_id>'")
        if isinstance(key, dict):
            if not isinstance(key.get("key"), str):
                raise _bad(f"{field}.{name}.key must be a string")
        elif not isinstance(key, str):
            raise _bad(f"{field}.{name} must be a string or a key object")
        rows.append((algorithm, key_id, dump(key)))
    return rows


@dataclass(frozen=True)
class KeyUpload:
    #: Stored as uploaded, but with the device's own signatures only (see :func:`own_signatures`).
    device_keys: dict[str, Any] | None
    one_time_keys: list[tuple[str, str, str]]
    fallback_keys: list[tuple[str, str, str]]
    #: Signatures of the device by the user's cross-signing keys that came with the device keys.
    cross_signatures: dict[str, str] = field(default_factory=dict)


def check_key_upload(body: dict[str, Any], *, user_id: str, device_id: str) -> KeyUpload:
    """Validate a ``/keys/upload`` body (nothing is written)."""
    device_keys = body.get("device_keys")
    checked = None
    cross_signatures: dict[str, str] = {}
    if device_keys is not None:
        signed = _check_device_keys(device_keys, user_id=user_id, device_id=device_id)
        checked = own_signatures(signed, user_id=user_id, device_id=device_id)
        cross_signatures = _cross_signatures(signed, user_id=user_id, device_id=device_id)
    one_time = _check_key_map(body.get("one_time_keys"), field="one_time_keys")
    if len(one_time) > MAX_ONE_TIME_KEYS_PER_UPLOAD:
        raise _invalid(f"At most {MAX_ONE_TIME_KEYS_PER_UPLOAD} one-time keys per upload")
    # The unstable name (MSC2732) is still sent by older clients.
    fallback_raw = body.get("fallback_keys", body.get("org.matrix.msc2732.fallback_keys"))
    fallback = _check_key_map(fallback_raw, field="fallback_keys")
    algorithms = [a for a, _, _ in fallback]
    if len(set(algorithms)) != len(algorithms):
        # Spec: "There can only be at most one key per algorithm uploaded".
        raise _invalid("fallback_keys may hold at most one key per algorithm")
    return KeyUpload(checked, one_time, fallback, cross_signatures)


def do_upload_keys(*, user_id: str, device_id: str, upload: KeyUpload) -> dict[str, int]:
    """Store the upload; answers ``one_time_key_counts``.

    A device's identity keys are fixed: uploading the same keys again is fine,
    different ones are refused (a new key pair must be a new device, or every
    peer's trust in the device would silently move to another key). A one-time
    key ID already stored with other content is refused too. A signature of the
    device by the user's current self-signing (or master) key that came with the
    device keys is checked and stored like an uploaded signature; others are dropped.
    """
    with transaction.atomic():
        changed = False
        if upload.device_keys is not None:
            # Device keys are part of the user's key state: changed under its lock.
            key_store.lock_user_keys(user_ids=[user_id])
            if not key_store.device_exists(user_id=user_id, device_id=device_id):
                raise MatrixError(404, "M_NOT_FOUND", "Unknown device")
            stored = key_store.get_device_keys_json(user_id=user_id, device_id=device_id)
            if stored is None:
                key_json = dump(upload.device_keys)
                key_store.insert_device_keys(user_id=user_id, device_id=device_id, key_json=key_json)
                # A concurrent upload may have won the insert: compare with what is stored.
                stored = key_store.get_device_keys_json(user_id=user_id, device_id=device_id)
                changed = stored == key_json
            if stored is not None and _without_signatures(json.loads(stored)) != _without_signatures(
                upload.device_keys
            ):
                raise MatrixError(
                    400,
                    "M_INVALID_PARAM",
                    "This device already has different identity keys; log in as a new device",
                )
            if upload.cross_signatures and _store_cross_signatures(
                user_id=user_id, device_id=device_id, device_keys=upload.device_keys,
                signatures=upload.cross_signatures,
            ):  # fmt: skip
                changed = True
        if upload.one_time_keys:
            existing = key_store.get_one_time_keys(
                user_id=user_id, device_id=device_id, key_ids=[(a, k) for a, k, _ in upload.one_time_keys]
            )
            for algorithm, key_id, key_json in upload.one_time_keys:
                if existing.get((algorithm, key_id), key_json) != key_json:
                    raise _invalid(f"One-time key {algorithm}:{key_id} already exists with another key")
            key_store.insert_one_time_keys(user_id=user_id, device_id=device_id, keys=upload.one_time_keys)
        for algorithm, key_id, key_json in upload.fallback_keys:
            key_store.set_fallback_key(
                user_id=user_id, device_id=device_id, algorithm=algorithm, key_id=key_id, key_json=key_json
            )
        if changed:
            mark_device_list_changed(
                user_id=user_id, reason=f"device keys of {device_id}", device_ids=[device_id]
            )
        if upload.one_time_keys or upload.fallback_keys:
            _key_counts_changed([user_id])
    return e2e_counts.get_one_time_key_counts(user_id=user_id, device_id=device_id)


def _without_signatures(keys: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in keys.items() if k not in ("signatures", "unsigned")}


def _store_cross_signatures(
    *, user_id: str, device_id: str, device_keys: dict[str, Any], signatures: dict[str, str]
) -> bool:
    """Store the valid signatures of the device by the user's current self-signing or master
    key (under the user's key lock); whether any was new."""
    signers = {
        f"ed25519:{k.public_key}": k.public_key
        for k in key_store.get_cross_signing_keys([user_id], ["self_signing", "master"])
    }
    stored = {
        (signer, signer_key): sig
        for _, target_key, signer, signer_key, sig in key_store.get_signatures_on(target_user_ids=[user_id])
        if target_key == device_id
    }
    rows = []
    for key_id, sig in signatures.items():
        if key_id not in signers or stored.get((user_id, key_id)) == sig:
            continue
        signed = {**device_keys, "signatures": {user_id: {key_id: sig}}}
        if check_signed_by(signed, user_id=user_id, key_id=key_id, public_key=signers[key_id]):
            rows.append((user_id, key_id, user_id, device_id, sig))
    if rows:
        key_store.upsert_signatures(rows)
    return bool(rows)


# --------------------------------------------------------------------------- query


def check_timeout(timeout: object) -> int | None:
    """The request's ``timeout`` (ms to wait for other servers), or None for the default."""
    if timeout is None:
        return None
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0:
        raise _bad("timeout must be a non-negative integer (milliseconds)")
    return timeout


def check_query_request(device_keys: object) -> dict[str, list[str]]:
    if not isinstance(device_keys, dict):
        raise _bad("device_keys must be an object")
    if len(device_keys) > MAX_QUERY_USERS:
        raise _invalid(f"At most {MAX_QUERY_USERS} users per query")
    out: dict[str, list[str]] = {}
    for user_id, devices in device_keys.items():
        if not user_id.startswith("@") or ":" not in user_id:
            raise _invalid(f"{user_id!r} is not a user ID")
        if devices is None:
            devices = []
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
            raise _bad(f"device_keys.{user_id} must be a list of device IDs")
        out[user_id] = devices
    return out


def get_keys_for_users(
    *, requester: str, device_keys: dict[str, list[str]], timeout_ms: object = None
) -> dict[str, Any]:
    """The ``/keys/query`` answer: a fixed number of queries whatever the number of users.

    Visibility (spec "Cross-signing"): everyone sees a user's device keys, master
    and self-signing keys with the signatures the user made on their own keys;
    the requester also sees their own signatures on others' master keys (their
    user-signing key's, i.e. whom they verified). A user-signing key is shown
    to its owner only.
    """
    local_server = get_server_name()
    local = [u for u in device_keys if server_of(u) == local_server]
    remote = federated_keys.get_remote_keys(
        device_keys={u: d for u, d in device_keys.items() if server_of(u) != local_server},
        timeout_ms=timeout_ms,
    )
    usages = (
        ["master", "self_signing", "user_signing"] if requester in device_keys else ["master", "self_signing"]
    )

    if requester in local:
        # Read your own writes: a change of the requester's keys that had begun when
        # this query arrived is answered, not the state before it. A cross-signing
        # reset holds the user's key lock from before its password check (see
        # ``cross_signing.do_upload_cross_signing_keys``), so a device that sent its
        # new keys and then asks for its own keys gets the new ones: an answer with
        # the old ones would make matrix-sdk-crypto drop the private keys it has just
        # made (they do not match "its" public identity any more).
        key_store.wait_for_key_changes(user_id=requester)
    # One snapshot for the whole answer: never signatures from before a change with
    # keys from after it.
    with key_store.consistent_reads():
        # Remote users' keys carry their own signatures as their server published them;
        # here only the requester's on them (whom they verified: spec "Cross-signing").
        signature_rows = key_store.get_signatures_on(
            target_user_ids=list(device_keys), visible_signers=[requester]
        )
        device_rows = key_store.get_device_keys_for_users(local)
        cross_signing_rows = key_store.get_cross_signing_keys(local, usages)

    signatures: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    for target_user, target_key, signer, signer_key, sig in signature_rows:
        signatures.setdefault((target_user, target_key), []).append((signer, signer_key, sig))

    devices_out: dict[str, dict[str, Any]] = {u: {} for u in local}
    for row in device_rows:
        wanted = device_keys[row.user_id]
        if wanted and row.device_id not in wanted:
            continue
        # Other users' signatures on a device are never shown: only the owner signs
        # their devices (with the self-signing key). Cross-signatures come from the
        # signatures table only (keys stored before they were split off may still
        # carry some that a reset has made void).
        own = [s for s in signatures.get((row.user_id, row.device_id), ()) if s[0] == row.user_id]
        device = own_signatures(row.keys, user_id=row.user_id, device_id=row.device_id)
        key = _add_signatures(device, own)
        if row.display_name is not None:
            key = {**key, "unsigned": {"device_display_name": row.display_name}}
        devices_out[row.user_id][row.device_id] = key

    devices_out.update(remote.device_keys)
    answer: dict[str, Any] = {"device_keys": devices_out, "failures": remote.failures}
    masters: dict[str, Any] = {}
    self_signing: dict[str, Any] = {}
    user_signing: dict[str, Any] = {}
    for csk in cross_signing_rows:
        if csk.usage == "master":
            masters[csk.user_id] = _add_signatures(csk.key, signatures.get((csk.user_id, csk.public_key), ()))
        elif csk.usage == "self_signing":
            self_signing[csk.user_id] = csk.key
        elif csk.user_id == requester:
            user_signing[csk.user_id] = csk.key
    for user_id, key in remote.master_keys.items():
        public_key = next(iter(key.get("keys", {}).values()), None)
        mine = [s for s in signatures.get((user_id, str(public_key)), ()) if s[0] == requester]
        masters.setdefault(user_id, _add_signatures(key, mine))
    answer["master_keys"] = masters
    answer["self_signing_keys"] = {**remote.self_signing_keys, **self_signing}
    answer["user_signing_keys"] = user_signing
    return answer


# --------------------------------------------------------------------------- claim


def check_claim_request(one_time_keys: object) -> list[tuple[str, str, str]]:
    if not isinstance(one_time_keys, dict):
        raise _bad("one_time_keys must be an object")
    wanted: list[tuple[str, str, str]] = []
    for user_id, devices in one_time_keys.items():
        if not user_id.startswith("@") or ":" not in user_id:
            raise _invalid(f"{user_id!r} is not a user ID")
        if not isinstance(devices, dict) or not all(isinstance(a, str) and a for a in devices.values()):
            raise _bad(f"one_time_keys.{user_id} must map device IDs to algorithm names")
        wanted.extend((user_id, device_id, algorithm) for device_id, algorithm in devices.items())
    if len(wanted) > MAX_CLAIMS:
        raise _invalid(f"At most {MAX_CLAIMS} keys per claim")
    return wanted


#: Not a stream of sync tokens: the name of the notifier's change for key counts.
KEY_COUNTS_STREAM = "e2e_key_counts"


def _key_counts_changed(user_ids: list[str]) -> None:
    """After commit, tell the notifier these users' key counts moved: every ``/sync`` answer
    carries them (spec "Extensions to /sync"), and an answer made from timeline news alone
    reuses the last build's (``dagcore.sync.news``), so a change must reach it. Nothing is
    woken that would not build anyway: a sync that only sees this has no news and waits on."""
    if user_ids:
        notify(Change(stream=KEY_COUNTS_STREAM, position=0, user_ids=tuple(user_ids)))


def do_claim_keys(*, wanted: list[tuple[str, str, str]], timeout_ms: object = None) -> dict[str, Any]:
    """Hand out one one-time key per requested device, else its fallback key.

    Spec ``POST /keys/claim``: a one-time key is returned at most once (the store
    deletes it in the statement that picks it); a fallback key is reused until the
    device replaces it, and is marked used so the device learns it should. Keys of
    other servers' devices are claimed from them (``/user/keys/claim``, within
    ``timeout_ms``; unreachable servers in ``failures``).
    """
    local_server = get_server_name()
    local = [w for w in wanted if server_of(w[0]) == local_server]
    remote_keys, failures = federated_keys.claim_remote_keys(
        wanted=[w for w in wanted if server_of(w[0]) != local_server], timeout_ms=timeout_ms
    )
    out: dict[str, dict[str, dict[str, Any]]] = dict(remote_keys)
    with transaction.atomic():
        claimed: list[key_store.ClaimedKey] = []
        for start in range(0, len(local), 1000):
            claimed += key_store.claim_one_time_keys(local[start : start + 1000])
        got = {(u, d, a) for u, d, a, _, _ in claimed}
        missing = [w for w in local if w not in got]
        if missing:
            claimed += key_store.claim_fallback_keys(missing)
        _key_counts_changed(sorted({user_id for user_id, _, _, _, _ in claimed}))
    for user_id, device_id, algorithm, key_id, key_json in claimed:
        out.setdefault(user_id, {}).setdefault(device_id, {})[f"{algorithm}:{key_id}"] = json.loads(key_json)
    return {"one_time_keys": out, "failures": failures}


# --------------------------------------------------------------------------- who changed


@dataclass(frozen=True)
class DeviceListDelta:
    changed: list[str]
    left: list[str]


def get_device_list_changes(
    *,
    user_id: str,
    from_events: int,
    to_events: int | None,
    from_device_lists: int,
    to_device_lists: int | None,
) -> DeviceListDelta:
    """Users whose devices the user should re-query, and users they no longer share a room with.

    Spec ``GET /keys/changes`` and ``/sync`` ``device_lists``: ``changed`` holds
    users sharing a joined room with the user (and the user themself) whose
    device list changed between the tokens, plus users who came to share a room
    in between (someone joined a room of the user, or the user joined a room):
    the user has not tracked their devices before. ``left`` holds users who
    shared a room at ``from`` and share none now. ``to_*`` None: up to now.
    """
    if to_events is None or to_device_lists is None:
        now = get_stream_positions()
        to_events = now["events"] if to_events is None else to_events
        to_device_lists = now["device_lists"] if to_device_lists is None else to_device_lists
    joined = key_store.get_joined_room_nids(user_id=user_id)
    changed: set[str] = set()
    if to_device_lists > from_device_lists:
        moved = device_list_store.get_changed_users(
            after=from_device_lists, upto=to_device_lists, viewer=user_id
        )
        changed = room_store.get_users_sharing_a_room(user_id=user_id, candidates=moved)
        if user_id in moved:
            changed.add(user_id)
    left_candidates: set[str] = set()
    if to_events > from_events:
        mine = key_store.get_membership_changes(
            user_ids=[user_id], room_nids=None, after=from_events, upto=to_events
        )
        newly_joined = [room for _, room, membership in mine if membership == "join"]
        rooms_left = [room for _, room, membership in mine if membership != "join"]
        others = key_store.get_membership_changes(
            user_ids=None, room_nids=joined, after=from_events, upto=to_events
        )
        for other, _, membership in others:
            if other == user_id:
                continue
            if membership == "join":
                changed.add(other)
            else:
                left_candidates.add(other)
        changed |= key_store.get_joined_users(room_nids=newly_joined)
        left_candidates |= key_store.get_joined_users(room_nids=rooms_left)
        left_candidates.discard(user_id)
    left = left_candidates - room_store.get_users_sharing_a_room(user_id=user_id, candidates=left_candidates)
    return DeviceListDelta(changed=sorted(changed - left), left=sorted(left))
