"""Asking another server for its users' devices and keys (outbound side).

Spec: server-server API "End-to-End Encryption" (``POST /user/keys/query``,
``POST /user/keys/claim``) and "Device Management" (``GET /user/devices/{userId}``).
Every answer is checked before anything of it is used or cached: only the asked
server's own users, only what was asked for, device keys that carry their device's
own valid signature. A server whose answer fails the checks fails that request,
naming the server (:class:`BadKeyAnswer`); nothing of the answer is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dagcore.federation.client import (
    FederationBadResponse,
    FederationError,
    encode_path,
    get_federation_client,
)
from dagcore.protocol.signing import SignatureError, decode_verify_key_base64, verify_json_signature

#: Device and key answers are small; a user with many devices still fits.
MAX_ANSWER_BYTES = 4 * 1024 * 1024


class BadKeyAnswer(FederationBadResponse):
    """The server answered, but not with keys we may use."""


def server_of(user_id: str) -> str:
    return user_id.partition(":")[2]


def device_keys_valid(keys: object, *, user_id: str, device_id: str) -> bool:
    """Device keys of ``user_id``'s ``device_id``, signed by the device's own ed25519 key (spec
    client-server "Downloading keys": "clients MUST verify... the signature"; we check too,
    so a server cannot hand out keys its device never made)."""
    if not isinstance(keys, dict) or keys.get("user_id") != user_id or keys.get("device_id") != device_id:
        return False
    key_map = keys.get("keys")
    key_id = f"ed25519:{device_id}"
    if not isinstance(key_map, dict) or not isinstance(key_map.get(key_id), str):
        return False
    try:
        verify_key = decode_verify_key_base64(key_id, key_map[key_id])
        verify_json_signature(keys, server_name=user_id, key_id=key_id, verify_key=verify_key)
    except (SignatureError, ValueError):
        return False
    return True


def cross_signing_key_valid(key: object, *, user_id: str, usage: str) -> bool:
    if not isinstance(key, dict) or key.get("user_id") != user_id:
        return False
    usages = key.get("usage")
    keys = key.get("keys")
    return (
        isinstance(usages, list)
        and usage in usages
        and isinstance(keys, dict)
        and len(keys) == 1
        and all(
            isinstance(k, str) and k.startswith("ed25519:") and isinstance(v, str) for k, v in keys.items()
        )
    )


@dataclass
class RemoteDeviceList:
    """A ``/user/devices`` answer, checked."""

    user_id: str
    stream_id: int
    #: ``(device_id, keys, display name)``.
    devices: list[tuple[str, dict[str, Any], str | None]]
    master_key: dict[str, Any] | None
    self_signing_key: dict[str, Any] | None


def fetch_user_devices(*, user_id: str, timeout: float) -> RemoteDeviceList:
    """``GET /_matrix/federation/v1/user/devices/{userId}`` on the user's server."""
    server = server_of(user_id)
    answer = get_federation_client().get_json(
        server,
        encode_path("/_matrix/federation/v1/user/devices/{}", user_id),
        max_bytes=MAX_ANSWER_BYTES,
        timeout=timeout,
    )
    return parse_user_devices(answer, user_id=user_id, server=server)


def parse_user_devices(answer: dict[str, Any], *, user_id: str, server: str) -> RemoteDeviceList:
    if answer.get("user_id") != user_id:
        raise BadKeyAnswer(server, f"user/devices answered for {str(answer.get('user_id'))[:255]!r}")
    stream_id = answer.get("stream_id")
    devices = answer.get("devices")
    if not isinstance(stream_id, int) or isinstance(stream_id, bool) or not isinstance(devices, list):
        raise BadKeyAnswer(server, "user/devices: stream_id must be an integer and devices a list")
    out: list[tuple[str, dict[str, Any], str | None]] = []
    for device in devices:
        if not isinstance(device, dict) or not isinstance(device.get("device_id"), str):
            raise BadKeyAnswer(server, "user/devices: a device without a device_id")
        device_id = device["device_id"]
        keys = device.get("keys")
        if not device_keys_valid(keys, user_id=user_id, device_id=device_id):
            raise BadKeyAnswer(server, f"user/devices: the keys of {device_id[:255]} are not validly signed")
        assert isinstance(keys, dict)
        name = device.get("device_display_name")
        out.append((device_id, keys, name[:255] if isinstance(name, str) else None))
    master = answer.get("master_key")
    self_signing = answer.get("self_signing_key")
    if master is not None and not cross_signing_key_valid(master, user_id=user_id, usage="master"):
        raise BadKeyAnswer(server, "user/devices: master_key is not a master key of the user")
    if self_signing is not None and not cross_signing_key_valid(
        self_signing, user_id=user_id, usage="self_signing"
    ):
        raise BadKeyAnswer(server, "user/devices: self_signing_key is not a self-signing key of the user")
    return RemoteDeviceList(user_id, stream_id, out, master, self_signing)


@dataclass
class RemoteKeys:
    """A ``/user/keys/query`` answer, checked: only the asked users and devices."""

    device_keys: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    master_keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    self_signing_keys: dict[str, dict[str, Any]] = field(default_factory=dict)


def query_user_keys(*, server: str, device_keys: dict[str, list[str]], timeout: float) -> RemoteKeys:
    """``POST /_matrix/federation/v1/user/keys/query`` for users of ``server``."""
    answer = get_federation_client().post_json(
        server,
        "/_matrix/federation/v1/user/keys/query",
        {"device_keys": device_keys},
        max_bytes=MAX_ANSWER_BYTES,
        timeout=timeout,
    )
    return parse_user_keys(answer, server=server, asked=device_keys)


def parse_user_keys(answer: dict[str, Any], *, server: str, asked: dict[str, list[str]]) -> RemoteKeys:
    out = RemoteKeys()
    devices = answer.get("device_keys", {})
    if not isinstance(devices, dict):
        raise BadKeyAnswer(server, "user/keys/query: device_keys must be an object")
    for user_id, by_device in devices.items():
        if user_id not in asked:
            continue  # not asked for (nor, then, the server's to tell)
        if not isinstance(by_device, dict):
            raise BadKeyAnswer(server, f"user/keys/query: device_keys.{user_id[:255]} must be an object")
        wanted = asked[user_id]
        for device_id, keys in by_device.items():
            if wanted and device_id not in wanted:
                continue
            if not device_keys_valid(keys, user_id=user_id, device_id=device_id):
                raise BadKeyAnswer(
                    server,
                    f"user/keys/query: the keys of {user_id[:255]} {device_id[:255]} are not validly signed",
                )
            out.device_keys.setdefault(user_id, {})[device_id] = keys
    for name, usage, target in (
        ("master_keys", "master", out.master_keys),
        ("self_signing_keys", "self_signing", out.self_signing_keys),
    ):
        keys_of = answer.get(name, {})
        if not isinstance(keys_of, dict):
            raise BadKeyAnswer(server, f"user/keys/query: {name} must be an object")
        for user_id, key in keys_of.items():
            if user_id not in asked:
                continue
            if not cross_signing_key_valid(key, user_id=user_id, usage=usage):
                raise BadKeyAnswer(server, f"user/keys/query: {name}.{user_id[:255]} is not a {usage} key")
            target[user_id] = key
    return out


def claim_user_keys(
    *, server: str, one_time_keys: dict[str, dict[str, str]], timeout: float
) -> dict[str, dict[str, dict[str, Any]]]:
    """``POST /_matrix/federation/v1/user/keys/claim``: the keys claimed, only for what was asked."""
    answer = get_federation_client().post_json(
        server,
        "/_matrix/federation/v1/user/keys/claim",
        {"one_time_keys": one_time_keys},
        max_bytes=MAX_ANSWER_BYTES,
        timeout=timeout,
    )
    claimed = answer.get("one_time_keys", {})
    if not isinstance(claimed, dict):
        raise BadKeyAnswer(server, "user/keys/claim: one_time_keys must be an object")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for user_id, by_device in claimed.items():
        if user_id not in one_time_keys:
            continue
        if not isinstance(by_device, dict):
            raise BadKeyAnswer(server, f"user/keys/claim: one_time_keys.{user_id[:255]} must be an object")
        for device_id, keys in by_device.items():
            if device_id not in one_time_keys[user_id]:
                continue
            if not isinstance(keys, dict) or not all(
                isinstance(k, str) and isinstance(v, (dict, str)) for k, v in keys.items()
            ):
                raise BadKeyAnswer(
                    server, f"user/keys/claim: the keys of {device_id[:255]} must be an object"
                )
            out.setdefault(user_id, {})[device_id] = keys
    return out


__all__ = [
    "BadKeyAnswer",
    "FederationError",
    "RemoteDeviceList",
    "RemoteKeys",
    "claim_user_keys",
    "fetch_user_devices",
    "query_user_keys",
]
