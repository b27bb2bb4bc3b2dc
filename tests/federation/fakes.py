"""In-memory stand-ins for what discovery and the keyring need from the network and the clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dagcore.federation.client import FederationUnreachable
from dagcore.federation.discovery import SrvTarget, WellKnownAnswer
from dagcore.protocol import signing
from dagcore.protocol.signing import SigningKey, VerifyKey


@dataclass
class FakeDns:
    records: dict[str, list[SrvTarget]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def lookup_srv(self, name: str) -> list[SrvTarget]:
        self.asked.append(name)
        return list(self.records.get(name, []))


@dataclass
class FakeWellKnown:
    answers: dict[str, WellKnownAnswer] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)

    def fetch_well_known(self, server_name: str, hostname: str) -> WellKnownAnswer:
        self.fetched.append(hostname)
        return self.answers.get(hostname, WellKnownAnswer(None))


@dataclass
class DictCache:
    entries: dict[str, tuple[str, int]] = field(default_factory=dict)

    def get(self, server_name: str, now_ms: int) -> str | None:
        entry = self.entries.get(server_name)
        return entry[0] if entry and entry[1] > now_ms else None

    def put(self, server_name: str, delegated_server: str, expires_ts: int) -> None:
        self.entries[server_name] = (delegated_server, expires_ts)


class Clock:
    def __init__(self, now: int = 1_700_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclass
class FakeKeyServer:
    """A server's key state: its current keys, their validity and its retired ones."""

    name: str
    keys: list[SigningKey]
    valid_for_ms: int = 24 * 3600 * 1000
    old_keys: dict[str, tuple[VerifyKey, int]] = field(default_factory=dict)
    #: Sign the answer with this key instead (a forger).
    signed_by: SigningKey | None = None

    def response(self, now_ms: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "server_name": self.name,
            "valid_until_ts": now_ms + self.valid_for_ms,
            "verify_keys": {
                signing.key_id(k): {"key": signing.encode_verify_key_base64(k)} for k in self.keys
            },
            "old_verify_keys": {
                kid: {"key": signing.encode_verify_key_base64(k), "expired_ts": ts}
                for kid, (k, ts) in self.old_keys.items()
            },
        }
        return signing.sign_json(body, server_name=self.name, signing_key=self.signed_by or self.keys[0])


@dataclass
class FakeFederation:
    """Plays the network for the keyring: servers answering ``/_matrix/key/v2/server`` and notaries."""

    clock: Clock
    servers: dict[str, FakeKeyServer] = field(default_factory=dict)
    #: Notary name -> its signing key (a notary answers for every server in ``servers``).
    notaries: dict[str, SigningKey] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)
    calls: list[tuple[str, str, Any]] = field(default_factory=list)

    def add(self, name: str, **kwargs: Any) -> FakeKeyServer:
        server = FakeKeyServer(name, [signing.generate_signing_key()], **kwargs)
        self.servers[name] = server
        return server

    def get_json(self, destination: str, path: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("GET", destination, path))
        if destination in self.down or destination not in self.servers:
            raise FederationUnreachable(destination, "down")
        assert path == "/_matrix/key/v2/server"
        return self.servers[destination].response(self.clock())

    def post_json(self, destination: str, path: str, content: Any, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("POST", destination, content))
        if destination in self.down or destination not in self.notaries:
            raise FederationUnreachable(destination, "down")
        assert path == "/_matrix/key/v2/query"
        answers = []
        for name in content["server_keys"]:
            if name in self.servers:
                answers.append(
                    signing.sign_json(
                        self.servers[name].response(self.clock()),
                        server_name=destination,
                        signing_key=self.notaries[destination],
                    )
                )
        return {"server_keys": answers}
