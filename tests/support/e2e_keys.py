"""Real Ed25519 device and cross-signing keys for E2EE API tests (what a client would upload)."""

from __future__ import annotations

import secrets
from typing import Any

import nacl.signing
from unpaddedbase64 import encode_base64

from dagcore.protocol.signing import sign_json


def _key(version: str | None = None) -> Any:
    key = nacl.signing.SigningKey.generate()
    key.alg = "ed25519"  # type: ignore[attr-defined]
    key.version = version or encode_base64(bytes(key.verify_key))  # type: ignore[attr-defined]
    return key


def public(key: Any) -> str:
    return encode_base64(bytes(key.verify_key))


def sign(obj: dict[str, Any], *, user_id: str, key: Any) -> dict[str, Any]:
    return sign_json(obj, server_name=user_id, signing_key=key)


class DeviceKeys:
    """A device's Ed25519 identity key, and the objects it signs."""

    def __init__(self, user_id: str, device_id: str) -> None:
        self.user_id = user_id
        self.device_id = device_id
        self.key = _key(device_id)
        self.curve = encode_base64(secrets.token_bytes(32))

    def device_keys(self) -> dict[str, Any]:
        obj = {
            "user_id": self.user_id,
            "device_id": self.device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {
                f"ed25519:{self.device_id}": public(self.key),
                f"curve25519:{self.device_id}": self.curve,
            },
        }
        return sign(obj, user_id=self.user_id, key=self.key)

    def one_time_keys(self, n: int, *, prefix: str = "k", fallback: bool = False) -> dict[str, Any]:
        out = {}
        for i in range(n):
            obj: dict[str, Any] = {"key": encode_base64(secrets.token_bytes(32))}
            if fallback:
                obj["fallback"] = True
            out[f"signed_curve25519:{prefix}{i}"] = sign(obj, user_id=self.user_id, key=self.key)
        return out


class CrossSigningKeys:
    """A user's master, self-signing and user-signing key pairs."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.master = _key()
        self.self_signing = _key()
        self.user_signing = _key()

    def key_object(self, usage: str) -> dict[str, Any]:
        key = {"master": self.master, "self_signing": self.self_signing, "user_signing": self.user_signing}[
            usage
        ]
        obj = {"user_id": self.user_id, "usage": [usage], "keys": {f"ed25519:{public(key)}": public(key)}}
        if usage != "master":
            obj = sign(obj, user_id=self.user_id, key=self.master)
        return obj

    def upload_body(self) -> dict[str, Any]:
        return {
            "master_key": self.key_object("master"),
            "self_signing_key": self.key_object("self_signing"),
            "user_signing_key": self.key_object("user_signing"),
        }

    @property
    def master_id(self) -> str:
        return public(self.master)
