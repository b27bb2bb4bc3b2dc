"""Our signing keys for operators: list, rotate, import from / export to Synapse, and the
"key compromised" flow. ``manage.py signing_key``, ``manage.py compromised`` and Politburo's
Keys page call these.

Spec: server-server API "Publishing Keys" (``old_verify_keys`` with ``expired_ts``) and
rooms v5 "Signing key validity period": a server receiving an event in a v5+ room checks the
signing key was valid at the event's ``origin_server_ts``, so an old key's ``expired_ts``
tells everyone which of its signatures to refuse.

Every process reads the keys from the database (``dagcore.server_keys``), so a rotation needs
no restart; each process switches within ``KEY_REFRESH_S``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from django.conf import settings

from dagcore import server_keys
from dagcore.actions.audit import Actor, record_audit
from dagcore.clock import now_ms
from dagcore.protocol import signing
from dagcore.store import key_compromise as compromise_store
from dagcore.store import server_keys as key_store
from dagcore.store.server_keys import OwnKey

#: A normal rotation leaves the old key valid this much longer than "now": a process still
#: holding it (it re-reads within ``KEY_REFRESH_S``) may sign an event meanwhile, and that
#: event must stay valid for everyone.
ROTATION_OVERLAP_MS = int(10 * server_keys.KEY_REFRESH_S * 1000)


class KeyAdminError(ValueError):
    """Bad input for a key operation: nothing was changed."""


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    verify_key: str
    created_ts: int | None
    expired_ts: int | None
    #: ``current`` (signs), ``old`` (published under old_verify_keys).
    state: str
    #: Whether we hold the private half (no for lost keys and for ``old_signing_keys``).
    private: bool
    origin: str


def list_our_keys() -> list[KeyInfo]:
    """Our keys as stored, plus the config's ``old_signing_keys``; current first, then newest."""
    out = [
        KeyInfo(
            key_id=k.key_id,
            verify_key=k.verify_key,
            created_ts=k.created_ts,
            expired_ts=k.expired_ts,
            state="current" if k.expired_ts is None else "old",
            private=k.seed is not None,
            origin=k.origin,
        )
        for k in key_store.list_own_keys()
    ]
    if not any(k.state == "current" for k in out):
        server_keys.get_signing_key()  # seeds the table from the key file
        return list_our_keys()
    known = {k.key_id for k in out}
    for kid, (key, expired_ts) in server_keys.get_old_verify_keys().items():
        if kid not in known:
            out.append(
                KeyInfo(
                    key_id=kid,
                    verify_key=signing.encode_verify_key_base64(key),
                    created_ts=None,
                    expired_ts=expired_ts,
                    state="old",
                    private=False,
                    origin="config",
                )
            )
    out.sort(key=lambda k: (k.state != "current", -(k.expired_ts or 0), k.key_id))
    return out


def _key_listener_url() -> str | None:
    """``scheme://host:port`` of this host's listener serving our key endpoint, if any."""
    for listener in settings.DAGMA.listeners:
        if {"keys", "federation"} & set(listener["names"]):
            host = (listener["bind_addresses"] or ["127.0.0.1"])[0]
            host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104 - a bind address
            host = f"[{host}]" if ":" in host else host
            return f"{'https' if listener['tls'] else 'http'}://{host}:{listener['port']}"
    return None


def fetch_published_keys(*, url: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
    """What our ``/_matrix/key/v2/server`` publishes, asked of the Embassy listening on this host
    (or ``url``): ``{"ok": True, "url": ..., "answer": {...}}`` or ``{"ok": False, "error": ...}``.

    Our own process on loopback: the certificate is not what is checked here (other servers do
    that), the answer is.
    """
    base = url or _key_listener_url()
    if base is None:
        return {"ok": False, "error": "no listener with the federation or keys resource in this config"}
    try:
        r = httpx.get(base.rstrip("/") + "/_matrix/key/v2/server", verify=False, timeout=timeout)  # noqa: S501
        r.raise_for_status()
        answer = r.json()
    except (httpx.HTTPError, ValueError) as exc:
        return {"ok": False, "url": base, "error": f"{type(exc).__name__}: {exc}"}
    if not isinstance(answer, dict):
        return {"ok": False, "url": base, "error": "the answer is not a JSON object"}
    return {"ok": True, "url": base, "answer": answer}


def key_overview(*, fetch: bool = True, timeout: float = 10.0) -> dict[str, Any]:
    """Ours beside what is published (the CLI's ``list`` and the console's Keys page)."""
    ours = [asdict(k) for k in list_our_keys()]
    out: dict[str, Any] = {"server_name": server_keys.get_server_name(), "keys": ours}
    if fetch:
        published = fetch_published_keys(timeout=timeout)
        out["published"] = published
        if published["ok"]:
            answer = published["answer"]
            verify = answer.get("verify_keys") if isinstance(answer.get("verify_keys"), dict) else {}
            old = answer.get("old_verify_keys") if isinstance(answer.get("old_verify_keys"), dict) else {}
            for k in ours:
                if k["key_id"] in verify:
                    k["published"] = "verify_keys"
                elif k["key_id"] in old:
                    k["published"] = f"old_verify_keys (expired_ts {old[k['key_id']].get('expired_ts')})"
                else:
                    k["published"] = "not published"
    return out


# --------------------------------------------------------------------------- key file


def _write_key_file(path: Path, keys: list[signing.SigningKey]) -> str:
    """Replace the key file atomically (mode 0600); returns what happened, for the operator."""
    text = signing.write_signing_keys(keys)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".signing-key-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        return f"key file {path} not updated ({exc}); the database holds the key"
    return f"key file {path} now holds {signing.key_id(keys[0])}"


def _configured_key_file() -> Path:
    return Path(settings.DAGMA.signing_key_path)


# --------------------------------------------------------------------------- rotation


@dataclass
class RotationResult:
    dry_run: bool
    new_key_id: str | None
    expired: list[str]
    expired_ts: int
    lost: list[str] = field(default_factory=list)
    key_file: str = ""


def _own(key: signing.SigningKey, *, origin: str) -> OwnKey:
    return OwnKey(
        key_id=signing.key_id(key),
        verify_key=signing.encode_verify_key_base64(key),
        seed=server_keys.encode_seed(key),
        created_ts=now_ms(),
        expired_ts=None,
        origin=origin,
    )


def check_lost_key(*, key_id: str, public_key: str | None, expired_ts: int) -> OwnKey:
    """The public half of a key whose private half is lost, to keep publishing it (synapse#11373):
    from our table, the config's ``old_signing_keys``, or ``public_key`` (unpadded Base64, e.g.
    read from a notary: ``GET https://matrix.org/_matrix/key/v2/query/<our server>``)."""
    try:
        signing.decode_verify_key_base64(key_id, "A" * 43)
    except ValueError as exc:
        raise KeyAdminError(f"{key_id!r}: {exc}") from None
    known = {k.key_id: k.verify_key for k in list_our_keys()}
    b64 = public_key or known.get(key_id)
    if b64 is None:
        raise KeyAdminError(
            f"the public half of {key_id} is unknown here: give it with --public-key (a notary "
            f"such as matrix.org lists it at /_matrix/key/v2/query/{server_keys.get_server_name()})"
        )
    try:
        signing.decode_verify_key_base64(key_id, b64)
    except ValueError as exc:
        raise KeyAdminError(f"--public-key: {exc}") from None
    if key_id in known and known[key_id] != b64:
        raise KeyAdminError(f"{key_id} is known here with another public key ({known[key_id]})")
    return OwnKey(
        key_id=key_id, verify_key=b64, seed=None, created_ts=now_ms(), expired_ts=expired_ts, origin="lost"
    )


def do_rotate_signing_key(
    *,
    actor: Actor,
    dry_run: bool = False,
    lost: list[OwnKey] | None = None,
    expire_at: int | None = None,
    new_key: signing.SigningKey | None = None,
    origin: str = "rotate",
    action: str = "signing_key.rotate",
) -> RotationResult:
    """A new key signs from now on; the current one moves to ``old_verify_keys`` with
    ``expired_ts`` = ``expire_at`` (default: now plus :data:`ROTATION_OVERLAP_MS`). ``lost`` keys
    are published as old keys without their private half. The key file is rewritten."""
    now = now_ms()
    expired_ts = expire_at if expire_at is not None else now + ROTATION_OVERLAP_MS
    current = [k.key_id for k in list_our_keys() if k.state == "current"]
    lost = lost or []
    key = new_key or signing.generate_signing_key()
    new_id = signing.key_id(key)
    result = RotationResult(
        dry_run=dry_run,
        new_key_id=None if dry_run else new_id,
        expired=[kid for kid in current if kid != new_id],
        expired_ts=expired_ts,
        lost=[k.key_id for k in lost],
    )
    params = {"expired_ts": expired_ts, "lost": result.lost}
    if dry_run:
        record_audit(actor=actor, action=action, target=",".join(current), params=params,
                     counts={"expired": len(result.expired)}, result="dry-run")  # fmt: skip
        return result
    lost_rows = [OwnKey(**{**asdict(k), "expired_ts": k.expired_ts or expired_ts}) for k in lost]
    key_store.replace_current_key(new=_own(key, origin=origin), expire_at=expired_ts, old=lost_rows)
    # A lost key that was current has no private half any more: only its public half stays.
    if lost_rows:
        key_store.forget_private_halves(key_ids=[k.key_id for k in lost_rows])
    server_keys.forget_cached_keys()
    result.key_file = _write_key_file(_configured_key_file(), [key])
    record_audit(actor=actor, action=action, target=new_id, params=params,
                 counts={"expired": len(result.expired)})  # fmt: skip
    return result


# --------------------------------------------------------------------------- Synapse import/export


@dataclass
class ImportResult:
    dry_run: bool
    key_id: str
    old_keys: list[str]
    expired: list[str]
    key_file: str = ""


def read_synapse_old_keys(config_path: Path) -> dict[str, dict[str, Any]]:
    """The ``old_signing_keys`` section of a Synapse ``homeserver.yaml`` (checked)."""
    try:
        config = yaml.safe_load(config_path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise KeyAdminError(f"{config_path}: {exc}") from None
    section = (config or {}).get("old_signing_keys") if isinstance(config, dict) else None
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise KeyAdminError(f"{config_path}: old_signing_keys is not a mapping")
    out: dict[str, dict[str, Any]] = {}
    for kid, entry in section.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
            raise KeyAdminError(f"{config_path}: old_signing_keys.{kid}: expected key and expired_ts")
        expired = entry.get("expired_ts")
        if not isinstance(expired, int) or isinstance(expired, bool) or expired < 0:
            raise KeyAdminError(f"{config_path}: old_signing_keys.{kid}.expired_ts is not a timestamp (ms)")
        try:
            signing.decode_verify_key_base64(str(kid), entry["key"])
        except ValueError as exc:
            raise KeyAdminError(f"{config_path}: old_signing_keys.{kid}: {exc}") from None
        out[str(kid)] = {"key": entry["key"], "expired_ts": expired}
    return out


def do_import_synapse_keys(
    *, actor: Actor, key_file: Path, synapse_config: Path | None = None, dry_run: bool = False
) -> ImportResult:
    """Take over a Synapse server's identity (synapse#5958): its key file's first key signs from
    now on, its ``old_signing_keys`` are published as ours; our previous key becomes old."""
    try:
        keys = signing.read_signing_keys(key_file.read_text())
    except (OSError, UnicodeDecodeError, signing.SigningKeyFileError) as exc:
        raise KeyAdminError(f"{key_file}: {exc}") from None
    if not keys:
        raise KeyAdminError(f"{key_file}: no key in the file")
    old = read_synapse_old_keys(synapse_config) if synapse_config else {}
    key = keys[0]
    new_id = signing.key_id(key)
    known = {k.key_id: k for k in list_our_keys()}
    if new_id in known and known[new_id].verify_key != signing.encode_verify_key_base64(key):
        raise KeyAdminError(f"{new_id} is already one of our keys, with another public key")
    if new_id in known and known[new_id].state == "old":
        # An expired key (maybe a leaked one) must not sign again: rotate to a new key instead.
        raise KeyAdminError(
            f"{new_id} is one of our old keys (expired_ts {known[new_id].expired_ts}): not made current again"
        )
    old_rows = [
        OwnKey(
            key_id=kid,
            verify_key=e["key"],
            seed=None,
            created_ts=now_ms(),
            expired_ts=e["expired_ts"],
            origin="import",
        )
        for kid, e in old.items()
        if kid != new_id
    ]
    # Further keys of the file (Synapse signs with the first only) are kept as old keys too.
    for extra in keys[1:]:
        old_rows.append(_own(extra, origin="import"))
    now = now_ms()
    old_rows = [OwnKey(**{**asdict(k), "expired_ts": k.expired_ts or now}) for k in old_rows]
    current = [k.key_id for k in known.values() if k.state == "current" and k.key_id != new_id]
    result = ImportResult(
        dry_run=dry_run, key_id=new_id, old_keys=[k.key_id for k in old_rows], expired=current
    )
    params = {
        "key_file": str(key_file),
        "synapse_config": str(synapse_config or ""),
        "old_keys": result.old_keys,
    }
    if dry_run:
        record_audit(actor=actor, action="signing_key.import", target=new_id, params=params, result="dry-run")
        return result
    key_store.replace_current_key(
        new=_own(key, origin="import"), expire_at=now + ROTATION_OVERLAP_MS, old=old_rows
    )
    server_keys.forget_cached_keys()
    result.key_file = _write_key_file(_configured_key_file(), [key])
    record_audit(actor=actor, action="signing_key.import", target=new_id, params=params,
                 counts={"old_keys": len(old_rows), "expired": len(current)})  # fmt: skip
    return result


def export_synapse_keys() -> tuple[str, dict[str, dict[str, Any]]]:
    """Our identity in Synapse's shapes: the signing key file's text (the key that signs now)
    and the ``old_signing_keys`` config section (every old key's public half and expired_ts)."""
    ours = server_keys.get_our_keys()
    text = signing.write_signing_keys([ours.signing[0]])
    old = {
        kid: {"key": signing.encode_verify_key_base64(key), "expired_ts": expired_ts}
        for kid, (key, expired_ts) in server_keys.get_all_old_verify_keys().items()
    }
    for extra in ours.signing[1:]:  # Synapse publishes only its first key as current
        old[signing.key_id(extra)] = {"key": signing.encode_verify_key_base64(extra), "expired_ts": now_ms()}
    return text, old


def do_export_synapse_keys(*, actor: Actor, key_out: Path, old_keys_out: Path | None) -> dict[str, Any]:
    """Write :func:`export_synapse_keys` to files (the key file with mode 0600)."""
    text, old = export_synapse_keys()
    if key_out.exists():
        raise KeyAdminError(f"{key_out} exists: refusing to overwrite a key file")
    try:
        fd = os.open(key_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        if old_keys_out is not None:
            old_keys_out.write_text(yaml.safe_dump({"old_signing_keys": old}, sort_keys=True))
    except OSError as exc:
        raise KeyAdminError(str(exc)) from None
    record_audit(actor=actor, action="signing_key.export", target=str(key_out),
                 params={"old_keys_out": str(old_keys_out or "")}, counts={"old_keys": len(old)})  # fmt: skip
    return {"key_file": str(key_out), "old_signing_keys": old}


# --------------------------------------------------------------------------- compromise


@dataclass
class CompromiseReport:
    dry_run: bool
    since_ts: int
    expired: list[str]
    new_key_id: str | None
    access_tokens: int
    refresh_tokens: int
    console_sessions: int
    events: list[dict[str, Any]]
    #: Servers sharing rooms with us (name, rooms), most first: whom to ask to drop the old key.
    servers: list[tuple[str, int]]
    checklist: list[str]
    key_file: str = ""


def do_compromised(*, actor: Actor, since_ts: int, dry_run: bool = False) -> CompromiseReport:
    """Our signing key leaked at ``since_ts``: it is published as expired then (rooms v5+ refuse
    what it signed later), a new key signs from now on, every access/refresh token and console
    session is revoked, and our users' events since then are listed for review."""
    now = now_ms()
    if since_ts > now:
        raise KeyAdminError("--since is in the future: a key cannot have leaked yet")
    if since_ts < 0:
        raise KeyAdminError("--since is before 1970")
    current = [k.key_id for k in list_our_keys() if k.state == "current"]
    access, refresh, sessions = compromise_store.count_sessions()
    events = [
        asdict(e)
        for e in compromise_store.local_events_since(
            since_ts=since_ts, server_name=server_keys.get_server_name()
        )
    ]
    servers = compromise_store.federating_servers(our_server=server_keys.get_server_name())
    new_id: str | None = None
    key_file = ""
    if not dry_run:
        rotation = do_rotate_signing_key(
            actor=actor, expire_at=since_ts, origin="compromised", action="signing_key.compromised_rotate"
        )
        new_id, key_file = rotation.new_key_id, rotation.key_file
        # Nobody may sign with a leaked key again, not even us: only its public half stays.
        key_store.forget_private_halves(key_ids=current)
        access, refresh, sessions = compromise_store.delete_all_sessions()
    report = CompromiseReport(
        dry_run=dry_run,
        since_ts=since_ts,
        expired=current,
        new_key_id=new_id,
        access_tokens=access,
        refresh_tokens=refresh,
        console_sessions=sessions,
        events=events,
        servers=servers,
        checklist=compromise_checklist(
            expired=current, since_ts=since_ts, servers=[name for name, _ in servers]
        ),
        key_file=key_file,
    )
    record_audit(
        actor=actor,
        action="signing_key.compromised",
        target=",".join(current),
        params={"since_ts": since_ts},
        counts={"access_tokens": access, "refresh_tokens": refresh, "event_groups": len(events),
                "console_sessions": sessions},
        result="dry-run" if dry_run else "ok",
    )  # fmt: skip
    return report


def compromise_checklist(*, expired: list[str], since_ts: int, servers: list[str]) -> list[str]:
    """What the operator still has to do by hand after :func:`do_compromised`."""
    keys = ", ".join(expired) or "the old key"
    steps = [
        f"Check every process switched: `manage.py signing_key list` shows the new key published and "
        f"{keys} under old_verify_keys with expired_ts {since_ts}.",
        f"Servers that cached {keys} before now trust it until their cached valid_until_ts (we publish "
        "keys for 24 hours; servers cap at 7 days), and rooms v1-v4 never check key validity: ask the "
        "admins of the servers you federate with most to drop their cached keys of this server"
        + (f" ({', '.join(servers[:10])}{', ...' if len(servers) > 10 else ''})." if servers else "."),
        "Delete every copy of the old private key: the old key file on other hosts, backups, config "
        "management; ship the new key file (`manage.py signing_key export`) where it is needed.",
        "Compare the events listed above with what your users really sent; forged events signed with "
        "the stolen key exist only on other servers — redact what is not yours "
        "(`manage.py dag redact`) and tell the rooms' admins.",
        "Your users and admins must log in again (every access and refresh token and every console "
        "session was revoked); tell them why.",
        "Rotate the other secrets that lived beside the key: registration_shared_secret, "
        "macaroon/form secrets, the TLS private key, database and Redis passwords.",
        "Find out how the key leaked before trusting the host again.",
    ]
    return steps
