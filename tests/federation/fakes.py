"""In-memory stand-ins for what discovery and the keyring need from the network and the clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from dagcore.federation.discovery import SrvTarget, WellKnownAnswer


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
