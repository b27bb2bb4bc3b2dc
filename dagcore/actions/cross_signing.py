"""Cross-signing keys and signatures (spec: client-server API "Cross-signing",
https://spec.matrix.org/v1.19/client-server-api/#cross-signing).

Each user has a master key, which signs their self-signing key (which signs
their own devices) and their user-signing key (which signs other users' master
keys); their devices sign the master key. The server checks every signature
before storing it, so a client that trusts what ``/keys/query`` returns never
receives a forged attestation from here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from dagcore.actions import federated_keys
from dagcore.actions.device_lists import mark_device_list_changed, mark_signed_by
from dagcore.actions.e2e_keys import check_signed_by, dump, is_ed25519_public_key, own_signatures
from dagcore.http.errors import MatrixError
from dagcore.server_keys import get_server_name
from dagcore.store import e2e_keys as key_store
from dagcore.store import transaction

#: Body field -> usage, in the order they are checked (the master key signs the others).
FIELDS = {"master_key": "master", "self_signing_key": "self_signing", "user_signing_key": "user_signing"}


class ReplacingKeysNeedsAuth(Exception):
    """The upload would replace existing cross-signing keys: the caller must run UIA first."""


#: Runs the user-interactive authentication that replacing keys needs: the block is
#: entered once it is complete, else it raises (a 401 ``MatrixError``).
Authorize = Callable[[], AbstractContextManager[object]]


@dataclass(frozen=True)
class CrossSigningUpload:
    #: usage -> (public key, key object as stored)
    keys: dict[str, tuple[str, dict[str, Any]]]

    def to_json(self) -> dict[str, Any]:
        """What a UIA session is bound to: the keys it was started for."""
        return {usage: key for usage, (_, key) in self.keys.items()}


def _check_key(value: object, *, user_id: str, usage: str, field: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise MatrixError(400, "M_BAD_JSON", f"{field} must be an object")
    if value.get("user_id") != user_id:
        raise MatrixError(400, "M_INVALID_PARAM", f"{field}.user_id must be your user ID")
    usages = value.get("usage")
    if not isinstance(usages, list) or usage not in usages or not all(isinstance(u, str) for u in usages):
        raise MatrixError(400, "M_INVALID_PARAM", f"{field}.usage must contain {usage!r}")
    keys = value.get("keys")
    # Spec CrossSigningKey.keys: "exactly one property, whose name is
    # <algorithm>:<unpadded_base64_public_key>, and whose value is the public key".
    if not isinstance(keys, dict) or len(keys) != 1:
        raise MatrixError(400, "M_INVALID_PARAM", f"{field}.keys must hold exactly one key")
    ((key_id, public_key),) = keys.items()
    if not is_ed25519_public_key(public_key) or key_id != f"ed25519:{public_key}":
        raise MatrixError(
            400, "M_INVALID_PARAM", f"{field}.keys must be {{'ed25519:<public key>': '<public key>'}}"
        )
    signatures = value.get("signatures", {})
    if not isinstance(signatures, dict) or not all(isinstance(s, dict) for s in signatures.values()):
        raise MatrixError(400, "M_BAD_JSON", f"{field}.signatures must be an object of objects")
    return public_key, {k: v for k, v in value.items() if k != "unsigned"}


def check_cross_signing_upload(body: dict[str, Any], *, user_id: str) -> CrossSigningUpload:
    """Validate the shapes of a ``/keys/device_signing/upload`` body (signatures are checked when stored)."""
    keys = {
        usage: _check_key(body[field], user_id=user_id, usage=usage, field=field)
        for field, usage in FIELDS.items()
        if body.get(field) is not None
    }
    if not keys:
        raise MatrixError(400, "M_MISSING_PARAM", "No cross-signing key to upload")
    return CrossSigningUpload(keys)


def do_upload_cross_signing_keys(
    *, user_id: str, upload: CrossSigningUpload, authorize: Authorize | None = None
) -> None:
    """Store the user's new cross-signing keys.

    Spec: UIA is needed unless the user has no master key yet, or the request
    only repeats the keys already stored (so a retried upload is idempotent);
    then ``authorize`` runs it (without one, :class:`ReplacingKeysNeedsAuth`).
    The self-signing and user-signing keys must be signed by the master key (the
    new one, or the stored one). A replaced key takes its signatures with it: a
    new master key resets the trust others placed in the old one, a new
    self-signing key drops the signatures it made on devices, a new user-signing
    key those it made on other users.

    The user's key lock is taken first and held through the authentication (a
    password check takes a noticeable time): a ``/keys/query`` of the user's own
    keys that arrives meanwhile waits for the outcome instead of answering with the
    keys being replaced (see ``e2e_keys.get_keys_for_users``). What the
    authentication recorded (its session, a completed stage) is committed even
    when it answers 401, as it would be without the lock.
    """
    with _committed_even_if_refused():
        key_store.lock_user_keys(user_ids=[user_id])
        try:
            _store_cross_signing_keys(user_id=user_id, upload=upload, authorized=False)
        except ReplacingKeysNeedsAuth:
            if authorize is None:
                raise
            with authorize():
                _store_cross_signing_keys(user_id=user_id, upload=upload, authorized=True)


@contextmanager
def _committed_even_if_refused() -> Iterator[None]:
    """A transaction that commits when its block answers with a ``MatrixError`` (the error
    is raised after the commit); any other exception rolls it back."""
    refused: MatrixError | None = None
    with transaction.atomic():
        try:
            yield
        except MatrixError as exc:
            refused = exc
    if refused is not None:
        raise refused


def _store_cross_signing_keys(*, user_id: str, upload: CrossSigningUpload, authorized: bool) -> None:
    """The change itself, under the user's key lock (its own savepoint: a refusal undoes it)."""
    with transaction.atomic():
        existing = key_store.get_cross_signing_keys_for_update(user_id)
        new = {
            usage: upload.keys[usage]
            for usage in upload.keys
            if _differs(existing.get(usage), upload.keys[usage])
        }
        if not new:
            return
        if "master" in existing and not authorized:
            raise ReplacingKeysNeedsAuth
        if "master" in upload.keys:
            master_pk = upload.keys["master"][0]
        elif "master" in existing:
            master_pk = existing["master"].public_key
        else:
            raise MatrixError(400, "M_MISSING_PARAM", "No master signing key is available")
        for usage in ("self_signing", "user_signing"):
            if usage in upload.keys:
                public_key, key = upload.keys[usage]
                master_key_id = f"ed25519:{master_pk}"
                if not check_signed_by(key, user_id=user_id, key_id=master_key_id, public_key=master_pk):
                    raise MatrixError(
                        400, "M_INVALID_SIGNATURE", f"The {usage} key is not signed by the master key"
                    )
        device_ids = key_store.get_device_ids(user_id=user_id)
        for public_key, _ in upload.keys.values():
            if public_key in device_ids:
                # Spec 403: a cross-signing key ID that is also a device ID would make
                # "ed25519:<id>" ambiguous in signatures.
                raise MatrixError(403, "M_FORBIDDEN", "Key ID in use by a device")
        if "master" in new:
            # Keys the old master key signed are not the new one's: drop those the
            # upload does not replace.
            for usage in ("self_signing", "user_signing"):
                if usage in existing and usage not in upload.keys:
                    _forget_key(user_id, existing[usage])
                    key_store.delete_cross_signing_key(user_id=user_id, usage=usage)
        for usage, (public_key, key) in new.items():
            if usage in existing:
                _forget_key(user_id, existing[usage])
            key_store.set_cross_signing_key(
                user_id=user_id, usage=usage, public_key=public_key, key_json=dump(key)
            )
        mark_device_list_changed(
            user_id=user_id, reason="cross-signing keys " + ", ".join(sorted(new)), cross_signing=True
        )


def _differs(current: key_store.StoredCrossSigningKey | None, new: tuple[str, dict[str, Any]]) -> bool:
    return current is None or dump(current.key) != dump(new[1])


def _forget_key(user_id: str, old: key_store.StoredCrossSigningKey) -> None:
    """Drop the signatures made by ``old`` and made on it."""
    key_store.delete_signatures_by_signer(signer_user_id=user_id, signer_key_id=f"ed25519:{old.public_key}")
    key_store.delete_signatures_on(target_user_id=user_id, target_key_id=old.public_key)


# --------------------------------------------------------------------------- signatures


def _failure(errcode: str, error: str) -> dict[str, str]:
    return {"errcode": errcode, "error": error}


def check_signatures_upload(body: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    for user_id, keys in body.items():
        if not user_id.startswith("@") or ":" not in user_id:
            raise MatrixError(400, "M_INVALID_PARAM", f"{user_id!r} is not a user ID")
        if not isinstance(keys, dict) or not all(isinstance(k, dict) for k in keys.values()):
            raise MatrixError(400, "M_BAD_JSON", f"{user_id} must map key IDs to signed key objects")
    return body


def do_upload_signatures(*, requester: str, signed: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Check and store signatures; answers the spec's per-key ``failures``.

    What may sign what (spec "Cross-signing"): the requester's self-signing key
    (or master key) signs the requester's own devices; the requester's devices
    sign the requester's master key; the requester's user-signing key signs
    other users' master keys. The signed object must be the stored key (only
    ``signatures`` may differ), and only the requester's new signatures count.
    """
    failures: dict[str, dict[str, Any]] = {}
    to_store: list[tuple[str, str, str, str, str]] = []
    remote_masters = _remote_master_keys(requester=requester, signed=signed, failures=failures)
    with transaction.atomic():
        # Checked and stored against one state of the keys involved: a reset running
        # meanwhile either comes first (then a signature by a replaced key is refused)
        # or after (then it forgets the signatures the replaced keys made).
        key_store.lock_user_keys(user_ids=[requester, *signed])
        own = key_store.get_cross_signing_keys([requester], ["master", "self_signing", "user_signing"])
        own_keys = {k.usage: k for k in own}
        targets = key_store.get_cross_signing_keys(list(signed), ["master"])
        masters = {**remote_masters, **{k.user_id: k for k in targets}}
        device_keys = {
            (d.user_id, d.device_id): own_signatures(d.keys, user_id=d.user_id, device_id=d.device_id)
            for d in key_store.get_device_keys_for_users([requester])
        }
        for user_id, keys in signed.items():
            if user_id in failures:
                continue  # their server could not tell us their master key
            for key_id, obj in keys.items():
                try:
                    to_store += _check_one(
                        requester=requester, user_id=user_id, key_id=key_id, obj=obj,
                        own_keys=own_keys, masters=masters, device_keys=device_keys,
                    )  # fmt: skip
                except _Refused as exc:
                    failures.setdefault(user_id, {})[key_id] = _failure(exc.errcode, exc.error)
        if to_store:
            key_store.upsert_signatures(to_store)
            # The requester's own devices and peers re-query them; for signatures on
            # others, only the requester can see them, so only their list changed.
            # Other servers hear of the requester's devices signed (their keys changed) and
            # of a signed master key; a signature of another user's key is the requester's
            # private business (spec "Cross-signing": user-signing signatures).
            own_devices = {d for (u, d) in device_keys if u == requester}
            signed_devices = [t for _, _, u, t, _ in to_store if u == requester and t in own_devices]
            own_master = any(u == requester and t not in own_devices for _, _, u, t, _ in to_store)
            if signed_devices or own_master:
                mark_device_list_changed(
                    user_id=requester, reason=f"{len(to_store)} signature(s)", device_ids=signed_devices,
                    cross_signing=own_master,
                )  # fmt: skip
            others = sorted({u for _, _, u, _, _ in to_store if u != requester})
            if others:
                mark_signed_by(signer=requester, user_ids=others)
    return {"failures": failures}


def _remote_master_keys(
    *, requester: str, signed: dict[str, dict[str, dict[str, Any]]], failures: dict[str, dict[str, Any]]
) -> dict[str, key_store.StoredCrossSigningKey]:
    """The master keys of the other servers' users among those ``signed``, as their servers
    publish them (our cache of a user sharing a room with ours, else asked live, before any
    lock is taken); a user whose server cannot be asked gets a failure for every key.

    Spec "Cross-signing": a user-signing key signs other users' master keys, wherever those
    users are; the signature stays on this server (only its signer ever sees it).
    """
    ours = get_server_name()
    remote = sorted(u for u in signed if u != requester and u.partition(":")[2] != ours)
    if not remote:
        return {}
    answer = federated_keys.get_remote_keys(device_keys={u: [] for u in remote})
    out: dict[str, key_store.StoredCrossSigningKey] = {}
    for user_id in remote:
        server = user_id.partition(":")[2]
        key = answer.master_keys.get(user_id)
        if server in answer.failures:
            error = f"Could not fetch the master key: {answer.failures[server]['message']}"
            failures[user_id] = {key_id: _failure("M_UNKNOWN", error) for key_id in signed[user_id]}
        elif isinstance(key, dict) and isinstance(key.get("keys"), dict) and len(key["keys"]) == 1:
            (public_key,) = key["keys"].values()
            out[user_id] = key_store.StoredCrossSigningKey(user_id, "master", public_key, key)
    return out


class _Refused(Exception):
    def __init__(self, errcode: str, error: str) -> None:
        super().__init__(error)
        self.errcode = errcode
        self.error = error


def _check_one(
    *,
    requester: str,
    user_id: str,
    key_id: str,
    obj: dict[str, Any],
    own_keys: dict[str, key_store.StoredCrossSigningKey],
    masters: dict[str, key_store.StoredCrossSigningKey],
    device_keys: dict[tuple[str, str], dict[str, Any]],
) -> list[tuple[str, str, str, str, str]]:
    """The ``(signer_user, signer_key_id, target_user, target_key_id, signature)`` rows to store for one key."""
    # Which key is signed, and which of the requester's keys may sign it.
    signers: dict[str, str] = {}  # signer key ID -> public key
    if user_id == requester and (user_id, key_id) in device_keys:
        stored = device_keys[(user_id, key_id)]
        for usage in ("self_signing", "master"):
            if usage in own_keys:
                signers[f"ed25519:{own_keys[usage].public_key}"] = own_keys[usage].public_key
    elif user_id in masters and masters[user_id].public_key == key_id:
        stored = masters[user_id].key
        if user_id == requester:
            for (_, device_id), keys in device_keys.items():
                public = keys.get("keys", {}).get(f"ed25519:{device_id}")
                if isinstance(public, str):
                    signers[f"ed25519:{device_id}"] = public
        elif "user_signing" in own_keys:
            signers[f"ed25519:{own_keys['user_signing'].public_key}"] = own_keys["user_signing"].public_key
    elif user_id == requester:
        raise _Refused("M_NOT_FOUND", "Unknown device or key")
    else:
        raise _Refused(
            "M_INVALID_SIGNATURE", "Only another user's master key may be signed (with a user-signing key)"
        )
    if _unsigned(obj) != _unsigned(stored):
        raise _Refused("M_INVALID_SIGNATURE", "The signed object does not match the stored key")
    ours = obj.get("signatures", {}).get(requester)
    if not isinstance(ours, dict):
        raise _Refused("M_INVALID_SIGNATURE", "No signature of yours on this key")
    already = stored.get("signatures", {}).get(requester, {})
    rows = []
    for signer_key_id, signature in ours.items():
        if already.get(signer_key_id) == signature:
            continue  # a signature the key carried already (e.g. a device's self-signature)
        if signer_key_id not in signers:
            raise _Refused("M_INVALID_SIGNATURE", f"{signer_key_id} may not sign this key")
        if not isinstance(signature, str) or not check_signed_by(
            obj, user_id=requester, key_id=signer_key_id, public_key=signers[signer_key_id]
        ):
            raise _Refused("M_INVALID_SIGNATURE", f"Invalid signature by {signer_key_id}")
        rows.append((requester, signer_key_id, user_id, key_id, signature))
    return rows


def _unsigned(key: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in key.items() if k not in ("signatures", "unsigned")}, sort_keys=True)
