"""Real network pieces for the federation tester's tests: a DNS server answering SRV records
(dnslib), certificates from a throw-away CA (trustme), HTTPS servers on loopback."""

from __future__ import annotations

import datetime
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from dnslib import QTYPE, RCODE, RR, SRV
from dnslib.server import BaseResolver, DNSServer

from dagcore.protocol import signing
from dagcore.protocol.signing import SigningKey
from tests.federation.certs import ServerCert
from tests.federation.https_server import Answer, FakeHomeserver, Recorded


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SrvZone(BaseResolver):
    """SRV records by name (``_matrix-fed._tcp.localhost`` -> [(priority, weight, port, target)]);
    every other question is NXDOMAIN. Tests change ``records`` between runs."""

    def __init__(self) -> None:
        self.records: dict[str, list[tuple[int, int, int, str]]] = {}
        self.asked: list[str] = []

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".")
        self.asked.append(name)
        found = self.records.get(name) if request.q.qtype == QTYPE.SRV else None
        if not found:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for priority, weight, port, target in found:
            reply.add_answer(RR(request.q.qname, QTYPE.SRV, rdata=SRV(priority, weight, port, target), ttl=5))
        return reply


@dataclass
class DnsFixture:
    zone: SrvZone
    server: DNSServer
    port: int

    @property
    def resolver_entry(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.stop()


def start_dns() -> DnsFixture:
    zone = SrvZone()
    port = free_udp_port()
    server = DNSServer(zone, address="127.0.0.1", port=port)
    server.start_thread()
    return DnsFixture(zone, server, port)


class Certs:
    """A trustme CA and the server certificates a test needs, as PEM files."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.ca = trustme.CA()
        self.ca_path = directory / "trustme-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))

    def issue(self, stem: str, *names: str, days_valid: float = 90.0, expired: bool = False) -> ServerCert:
        now = datetime.datetime.now(datetime.UTC)
        if expired:
            not_before, not_after = now - datetime.timedelta(days=30), now - datetime.timedelta(days=1)
        else:
            not_before, not_after = (
                now - datetime.timedelta(hours=1),
                now + datetime.timedelta(days=days_valid),
            )
        leaf = self.ca.issue_cert(
            *(names or ("localhost", "127.0.0.1")), not_before=not_before, not_after=not_after
        )
        out = ServerCert(self.directory / f"{stem}.crt", self.directory / f"{stem}.key")
        out.cert_path.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(out.key_path))
        return out


def json_answer(body: Any, status: int = 200) -> Answer:
    return status, {}, json.dumps(body).encode()


def key_answer(
    server_name: str, key: SigningKey, *, signed_by: SigningKey | None = None, valid_for_ms: int = 86_400_000
) -> Callable[[Recorded], Answer]:
    """A ``/_matrix/key/v2/server`` handler listing ``key``, signed by ``signed_by`` (default: ``key``)."""

    def handler(_: Recorded) -> Answer:
        import time

        body = {
            "server_name": server_name,
            "valid_until_ts": int(time.time() * 1000) + valid_for_ms,
            "verify_keys": {signing.key_id(key): {"key": signing.encode_verify_key_base64(key)}},
            "old_verify_keys": {},
        }
        signer = signed_by or key
        if signed_by is not None:
            # The signature claims the listed key's ID but comes from another key.
            signer.version = key.version
        return json_answer(signing.sign_json(body, server_name=server_name, signing_key=signer))

    return handler


def fake_homeserver(
    cert: ServerCert, *, server_name_of: Callable[[int], str], signed_by: SigningKey | None = None
) -> FakeHomeserver:
    """An HTTPS server playing a homeserver's federation listener (keys and version)."""
    server = FakeHomeserver(cert)
    key = signing.generate_signing_key()
    name = server_name_of(server.port)
    server.routes["/_matrix/key/v2/server"] = key_answer(name, key, signed_by=signed_by)
    server.routes["/_matrix/federation/v1/version"] = lambda _: json_answer(
        {"server": {"name": "Fake", "version": "1"}}
    )
    return server
