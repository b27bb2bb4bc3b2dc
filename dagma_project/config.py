"""The operator's configuration file (``dagma.yaml``) and its environment overrides.

One YAML file, generated with a fresh signing key on first start. Where an option
means what a Synapse option means, it has Synapse's name and shape, so an
operator's Synapse knowledge carries over. Every option is declared once in
:data:`OPTIONS` (name, default, example, description, validator); the generated
file, ``docs``-style listing (``manage.py generate_config --list``) and the
start-up validation all come from that table.

Precedence: built-in default < YAML file < environment variable. Each top-level
option can be overridden with ``DAGMA_<NAME_IN_UPPER_CASE>`` (parsed as a YAML
scalar, so ``DAGMA_ENABLE_REGISTRATION=true`` works); ``DAGMA_DATABASE_URL``
and ``DAGMA_REDIS_URL`` take URLs for container deployments.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import yaml


class ConfigError(Exception):
    """A bad configuration value. The message names the key and what is allowed."""


# --------------------------------------------------------------------------- validators


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{key}: expected a boolean (true or false), got {value!r}")


def _str(key: str, value: Any) -> str:
    if isinstance(value, str) and value:
        return value
    raise ConfigError(f"{key}: expected a non-empty string, got {value!r}")


def _opt_str(key: str, value: Any) -> str | None:
    if value is None:
        return None
    return _str(key, value)


_DURATION_RE = re.compile(r"^\s*\d+\s*(ms|s|m|h|d|w|y)?\s*$", re.ASCII)


def _duration(key: str, value: Any) -> str | int:
    """Synapse-style durations: ``5m``, ``1h``, ``7d``, ``500ms``, or milliseconds as a number."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and _DURATION_RE.match(value):
        return value
    raise ConfigError(f"{key}: expected a duration such as 5m, 1h or 7d; got {value!r}")


def _int(minimum: int, maximum: int) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= maximum:
            return value
        raise ConfigError(f"{key}: expected an integer from {minimum} to {maximum}, got {value!r}")

    return check


def _choice(*allowed: str) -> Callable[[str, Any], str]:
    def check(key: str, value: Any) -> str:
        if value in allowed:
            return str(value)
        raise ConfigError(f"{key}: expected one of {', '.join(allowed)}; got {value!r}")

    return check


_SIZE_RE = re.compile(r"^(\d+)\s*([KMG]?)B?$", re.IGNORECASE | re.ASCII)


def parse_size(key: str, value: Any) -> int:
    """Synapse-style sizes: ``50M``, ``10K``, ``1G`` or a plain number of bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value.strip())
        if m:
            mult = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[m.group(2).upper()]
            return int(m.group(1)) * mult
    raise ConfigError(f"{key}: expected a size such as 50M, 512K or a number of bytes; got {value!r}")


_SERVER_NAME_RE = re.compile(
    r"^(?:\[[0-9A-Fa-f:.]{2,45}\]|\d{1,3}(?:\.\d{1,3}){3}|[A-Za-z0-9](?:[A-Za-z0-9\-.]{0,253}))(?::\d{1,5})?$"
)


def _server_name(key: str, value: Any) -> str:
    if isinstance(value, str) and len(value) <= 255 and _SERVER_NAME_RE.match(value):
        return value
    raise ConfigError(
        f"{key}: expected a server name (hostname, IPv4 or [IPv6] with optional :port, "
        f"as in the spec's server name grammar); got {value!r}"
    )


def _url(key: str, value: Any) -> str:
    if isinstance(value, str):
        parsed = urlparse(value)
        if parsed.scheme in ("http", "https") and parsed.netloc:
            return value if value.endswith("/") else value + "/"
    raise ConfigError(f"{key}: expected an http(s) URL such as https://matrix.example.com/; got {value!r}")


def _ip_ranges(key: str, value: Any) -> list[str]:
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list of CIDR ranges such as ['10.0.0.0/8']; got {value!r}")
    out = []
    for item in value:
        try:
            out.append(str(ipaddress.ip_network(str(item), strict=False)))
        except ValueError:
            raise ConfigError(
                f"{key}: {item!r} is not a CIDR range (e.g. 192.168.0.0/16 or fe80::/10)"
            ) from None
    return out


def _room_version(key: str, value: Any) -> str:
    allowed = [str(n) for n in range(2, 13)]
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value in allowed:
        return str(value)
    raise ConfigError(
        f"{key}: expected one of the supported room versions {', '.join(allowed)}; got {value!r}"
    )


def _rate(defaults: dict[str, float]) -> Callable[[str, Any], dict[str, float]]:
    def check(key: str, value: Any) -> dict[str, float]:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping with per_second and burst_count; got {value!r}")
        out = dict(defaults)
        for sub, v in value.items():
            if sub not in ("per_second", "burst_count"):
                raise ConfigError(f"{key}.{sub}: unknown setting; allowed: per_second, burst_count")
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                raise ConfigError(f"{key}.{sub}: expected a non-negative number; got {v!r}")
            out[sub] = float(v)
        return out

    return check


def _rc_login(key: str, value: Any) -> dict[str, dict[str, float]]:
    if not isinstance(value, dict):
        raise ConfigError(
            f"{key}: expected a mapping with address, account and failed_attempts; got {value!r}"
        )
    out = {k: dict(v) for k, v in RC_LOGIN_DEFAULT.items()}
    for sub, v in value.items():
        if sub not in out:
            raise ConfigError(f"{key}.{sub}: unknown setting; allowed: address, account, failed_attempts")
        out[sub] = _rate(out[sub])(f"{key}.{sub}", v)
    return out


def _rc_federation(key: str, value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ConfigError(
            f"{key}: expected a mapping with window_size, sleep_limit, sleep_delay, reject_limit, "
            f"concurrent (as in Synapse); got {value!r}"
        )
    out = dict(RC_FEDERATION_DEFAULT)
    for sub, v in value.items():
        if sub not in out:
            raise ConfigError(f"{key}.{sub}: unknown setting; allowed: {', '.join(RC_FEDERATION_DEFAULT)}")
        minimum = 1 if sub in ("window_size", "concurrent") else 0
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ConfigError(f"{key}.{sub}: expected an integer of at least {minimum}; got {v!r}")
        out[sub] = v
    return out


def _database(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping with name and args (as in Synapse); got {value!r}")
    name = value.get("name", "sqlite3")
    if name not in ("sqlite3", "psycopg2", "psycopg", "postgresql"):
        raise ConfigError(f"{key}.name: expected one of sqlite3, psycopg2 (PostgreSQL); got {name!r}")
    args = value.get("args", {}) or {}
    if not isinstance(args, dict):
        raise ConfigError(f"{key}.args: expected a mapping; got {args!r}")
    if name == "sqlite3":
        return {"name": "sqlite3", "args": {"database": str(args.get("database", "homeserver.db"))}}
    allowed = {
        "database", "dbname", "user", "password", "host", "port", "cp_min", "cp_max", "sslmode",
        "prepared_statements",
    }  # fmt: skip
    for sub in args:
        if sub not in allowed:
            raise ConfigError(f"{key}.args.{sub}: unknown setting; allowed: {', '.join(sorted(allowed))}")
    if "prepared_statements" in args:
        _bool(f"{key}.args.prepared_statements", args["prepared_statements"])
    return {"name": "psycopg2", "args": dict(args)}


def _redis(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(
            f"{key}: expected a mapping with enabled, host, port (as in Synapse); got {value!r}"
        )
    out = {"enabled": False, "host": "localhost", "port": 6379, "dbid": 0, "password": None}
    for sub, v in value.items():
        if sub not in out:
            raise ConfigError(f"{key}.{sub}: unknown setting; allowed: {', '.join(out)}")
        out[sub] = v
    _bool(f"{key}.enabled", out["enabled"])
    _int(1, 65535)(f"{key}.port", out["port"])
    _int(0, 1000)(f"{key}.dbid", out["dbid"])
    return out


LISTENER_RESOURCES = {"client", "media", "federation", "keys", "admin", "health", "metrics"}


def _listeners(key: str, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{key}: expected a non-empty list of listeners (port, bind_addresses, resources)")
    out = []
    for i, item in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a mapping")
        port = _int(1, 65535)(f"{where}.port", item.get("port"))
        binds = item.get("bind_addresses", ["127.0.0.1"])
        if not isinstance(binds, list) or not all(isinstance(b, str) for b in binds):
            raise ConfigError(
                f"{where}.bind_addresses: expected a list of addresses such as ['::1', '127.0.0.1']"
            )
        names: set[str] = set()
        for res in item.get("resources", []) or []:
            for n in (res or {}).get("names", []) or []:
                if n not in LISTENER_RESOURCES:
                    raise ConfigError(
                        f"{where}.resources.names: {n!r} is not a resource; allowed: {', '.join(sorted(LISTENER_RESOURCES))}"
                    )
                names.add(n)
        if not names:
            raise ConfigError(f"{where}.resources: give at least one resource name (e.g. client, federation)")
        ltype = item.get("type", "http")
        if ltype != "http":
            raise ConfigError(f"{where}.type: expected http; got {ltype!r}")
        out.append(
            {
                "port": port,
                "bind_addresses": binds,
                "names": sorted(names),
                "x_forwarded": bool(item.get("x_forwarded", False)),
                "tls": _bool(f"{where}.tls", item.get("tls", False)),
            }
        )
    return out


_KEY_ID_RE = re.compile(r"^ed25519:[a-zA-Z0-9_]+$")
_UNPADDED_B64_RE = re.compile(r"^[A-Za-z0-9+/]{43}$")  # an Ed25519 public key: 32 bytes


def _trusted_key_servers(key: str, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list of {{server_name: ..., verify_keys: {{...}}}} entries")
    for i, item in enumerate(value):
        if not isinstance(item, dict) or "server_name" not in item:
            raise ConfigError(f"{key}[{i}]: each entry needs a server_name")
        _server_name(f"{key}[{i}].server_name", item["server_name"])
        unknown = sorted(set(item) - {"server_name", "verify_keys"})
        if unknown:
            raise ConfigError(f"{key}[{i}].{unknown[0]}: unknown setting; allowed: server_name, verify_keys")
        keys = item.get("verify_keys", {}) or {}
        if not isinstance(keys, dict):
            raise ConfigError(f"{key}[{i}].verify_keys: expected a mapping of key ID to unpadded Base64 key")
        for kid, b64 in keys.items():
            if not isinstance(kid, str) or not _KEY_ID_RE.match(kid):
                raise ConfigError(f"{key}[{i}].verify_keys: {kid!r} is not an ed25519 key ID (ed25519:abc)")
            if not isinstance(b64, str) or not _UNPADDED_B64_RE.match(b64):
                raise ConfigError(
                    f"{key}[{i}].verify_keys.{kid}: expected the unpadded Base64 of a 32-byte Ed25519 key"
                )
    return value


def _old_signing_keys(key: str, value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping of key ID to {{key: ..., expired_ts: ...}}")
    for kid, entry in value.items():
        if not isinstance(kid, str) or not _KEY_ID_RE.match(kid):
            raise ConfigError(f"{key}: {kid!r} is not an ed25519 key ID (ed25519:abc)")
        if not isinstance(entry, dict) or set(entry) != {"key", "expired_ts"}:
            raise ConfigError(f"{key}.{kid}: expected exactly key and expired_ts")
        if not isinstance(entry["key"], str) or not _UNPADDED_B64_RE.match(entry["key"]):
            raise ConfigError(
                f"{key}.{kid}.key: expected the unpadded Base64 of a 32-byte Ed25519 public key"
            )
        _int(0, 2**53)(f"{key}.{kid}.expired_ts", entry["expired_ts"])
    return value


def _str_list(key: str, value: Any) -> list[str]:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ConfigError(f"{key}: expected a list of strings; got {value!r}")


def _turn_uris(key: str, value: Any) -> list[str]:
    uris = _str_list(key, value)
    for i, uri in enumerate(uris):
        if not uri.startswith(("turn:", "turns:")):
            raise ConfigError(
                f"{key}[{i}]: expected a turn: or turns: URI, e.g. turn:turn.example.com:3478?transport=udp"
            )
    return uris


def _opt_str_list(key: str, value: Any) -> list[str] | None:
    return None if value is None else _str_list(key, value)


def _dns_resolvers(key: str, value: Any) -> list[str]:
    """``host`` or ``host:port`` (IPv6: ``[addr]:port``): IP addresses of DNS servers."""
    entries = _str_list(key, value)
    for i, entry in enumerate(entries):
        host, port = split_resolver(entry)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(
                f"{key}[{i}]: expected an IP address with an optional :port; got {entry!r}"
            ) from None
        if not 0 < port < 65536:
            raise ConfigError(f"{key}[{i}]: port out of range in {entry!r}")
    return entries


def split_resolver(entry: str) -> tuple[str, int]:
    """``("1.2.3.4", 53)`` for ``1.2.3.4``, ``("::1", 5353)`` for ``[::1]:5353``."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest.removeprefix(":")
    elif entry.count(":") == 1:
        host, _, port = entry.partition(":")
    else:
        host, port = entry, ""
    try:
        return host, int(port) if port else 53
    except ValueError:
        return host, -1


def _publication_rules(key: str, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise ConfigError(
            f"{key}: expected a list of rules like {{user_id: '*', alias: '*', room_id: '*', action: allow}}"
        )
    for i, rule in enumerate(value):
        if not isinstance(rule, dict) or rule.get("action") not in ("allow", "deny"):
            raise ConfigError(f"{key}[{i}].action: expected allow or deny")
    return value


def _log_level(key: str, value: Any) -> str:
    return _choice("DEBUG", "INFO", "WARNING", "ERROR")(
        key, str(value).upper() if isinstance(value, str) else value
    )


def _server_notices(key: str, value: Any) -> dict[str, Any] | None:
    """Synapse's ``server_notices``: off unless ``system_mxid_localpart`` is given."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping; got {value!r}")
    known = {"system_mxid_localpart", "system_mxid_display_name", "system_mxid_avatar_url", "room_name",
             "room_avatar_url", "room_topic", "auto_join"}  # fmt: skip
    for name, item in value.items():
        if name not in known:
            raise ConfigError(f"{key}.{name}: unknown option (known: {', '.join(sorted(known))})")
        if name == "auto_join":
            if not isinstance(item, bool):
                raise ConfigError(f"{key}.auto_join: expected true or false; got {item!r}")
        elif item is not None and not isinstance(item, str):
            raise ConfigError(f"{key}.{name}: expected a string; got {item!r}")
    if not value.get("system_mxid_localpart"):
        raise ConfigError(f"{key}.system_mxid_localpart: required to enable server notices")
    return dict(value)


def _any_mapping(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    raise ConfigError(f"{key}: expected a mapping; got {value!r}")


def _retention(key: str, value: Any) -> dict[str, Any]:
    """Synapse's ``retention`` block: enabled, default_policy {min_lifetime, max_lifetime},
    allowed_lifetime_min/max, purge_jobs [{shortest_max_lifetime?, longest_max_lifetime?, interval}]."""
    if not isinstance(value, dict):
        raise ConfigError(
            f"{key}: expected a mapping (enabled, default_policy, allowed_lifetime_min/max, purge_jobs)"
        )
    allowed = {"enabled", "default_policy", "allowed_lifetime_min", "allowed_lifetime_max", "purge_jobs"}
    for sub in value:
        if sub not in allowed:
            raise ConfigError(f"{key}.{sub}: unknown setting; allowed: {', '.join(sorted(allowed))}")
    out: dict[str, Any] = {"enabled": _bool(f"{key}.enabled", value.get("enabled", False))}
    policy = value.get("default_policy") or {}
    if not isinstance(policy, dict) or set(policy) - {"min_lifetime", "max_lifetime"}:
        raise ConfigError(f"{key}.default_policy: expected {{min_lifetime, max_lifetime}}; got {policy!r}")
    out["default_policy"] = {
        k: _duration(f"{key}.default_policy.{k}", v) for k, v in policy.items() if v is not None
    }
    for sub in ("allowed_lifetime_min", "allowed_lifetime_max"):
        if value.get(sub) is not None:
            out[sub] = _duration(f"{key}.{sub}", value[sub])
    jobs = value.get("purge_jobs")
    if jobs is not None:
        if not isinstance(jobs, list):
            raise ConfigError(
                f"{key}.purge_jobs: expected a list of {{shortest_max_lifetime, longest_max_lifetime, interval}}"
            )
        for i, job in enumerate(jobs):
            if (
                not isinstance(job, dict)
                or "interval" not in job
                or set(job) - {"shortest_max_lifetime", "longest_max_lifetime", "interval"}
            ):
                raise ConfigError(
                    f"{key}.purge_jobs[{i}]: expected interval, with optional shortest_max_lifetime and longest_max_lifetime"
                )
            for k, v in job.items():
                _duration(f"{key}.purge_jobs[{i}].{k}", v)
        out["purge_jobs"] = jobs
    return out


def _opt_duration(key: str, value: Any) -> str | int | None:
    return None if value is None else _duration(key, value)


def _backup_schedule(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping {{dir, keep, media, verify}}; got {value!r}")
    allowed = {"dir", "keep", "media", "verify"}
    for sub in value:
        if sub not in allowed:
            raise ConfigError(f"{key}.{sub}: unknown setting; allowed: {', '.join(sorted(allowed))}")
    return {
        "dir": _opt_str(f"{key}.dir", value.get("dir")),
        "keep": _int(1, 1000)(f"{key}.keep", value.get("keep", 7)),
        "media": _bool(f"{key}.media", value.get("media", True)),
        "verify": _bool(f"{key}.verify", value.get("verify", True)),
    }


# --------------------------------------------------------------------------- the table

# Synapse's private-range defaults for outbound requests (SSRF), spec-agnostic.
DEFAULT_IP_RANGE_BLACKLIST = [
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
    "192.0.0.0/24", "169.254.0.0/16", "192.88.99.0/24", "198.18.0.0/15", "192.0.2.0/24",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "0.0.0.0/8", "240.0.0.0/4",
    "255.255.255.255/32", "::1/128", "fe80::/10", "fc00::/7", "2001:db8::/32", "ff00::/8",
    "fec0::/10", "::/128", "::ffff:0:0/96", "64:ff9b::/96", "2002::/16", "2001::/32",
]  # fmt: skip

#: Synapse's ``rc_federation`` defaults: per origin server, requests beyond ``sleep_limit`` in
#: ``window_size`` ms wait ``sleep_delay`` ms each, at most ``concurrent`` run at once, and a
#: request finding more than ``reject_limit`` of the origin's requests waiting is refused (429).
RC_FEDERATION_DEFAULT = {
    "window_size": 1000,
    "sleep_limit": 10,
    "sleep_delay": 500,
    "reject_limit": 50,
    "concurrent": 3,
}

RC_LOGIN_DEFAULT = {
    "address": {"per_second": 0.003, "burst_count": 5.0},
    "account": {"per_second": 0.003, "burst_count": 5.0},
    "failed_attempts": {"per_second": 0.17, "burst_count": 3.0},
}


@dataclass(frozen=True)
class Option:
    name: str
    default: Any
    validate: Callable[[str, Any], Any]
    doc: str
    example: Any = None
    section: str = "Server"
    #: Written into a freshly generated config (otherwise documented only).
    in_generated: bool = False


OPTIONS: list[Option] = [
    # Server
    Option(
        "server_name",
        None,
        _server_name,
        "The domain of user IDs and room aliases on this server (@alice:<server_name>). Cannot be changed later.",
        "example.com",
        in_generated=True,
    ),
    Option(
        "public_baseurl",
        None,
        _url,
        "The public URL clients use to reach Tribune. Default: http://<server_name>:8008/ (or http://localhost:8008/ for localhost).",
        "https://matrix.example.com/",
        in_generated=True,
    ),
    Option(
        "signing_key_path",
        None,
        _str,
        "File with this server's Ed25519 signing keys (Synapse format). Default: <config dir>/<server_name>.signing.key, created on first start.",
        "/etc/dagma/example.com.signing.key",
        in_generated=True,
    ),
    Option(
        "form_secret",
        None,
        _opt_str,
        "Secret used to sign admin-console sessions and forms. Generated with the config; keep it secret.",
        "<random>",
        in_generated=True,
    ),
    Option(
        "listeners",
        [
            {
                "port": 8008,
                "bind_addresses": ["::1", "127.0.0.1"],
                "type": "http",
                "resources": [{"names": ["client", "federation"]}],
            }
        ],
        _listeners,
        "Where each server listens. Resources client/media -> Tribune, federation/keys -> Embassy, admin -> Politburo (keep it on 127.0.0.1).",
        [{"port": 8008, "bind_addresses": ["127.0.0.1"], "resources": [{"names": ["client"]}]}],
        in_generated=True,
    ),
    Option(
        "admin_listener_port",
        8009,
        _int(1, 65535),
        "Port Politburo (admin console) listens on, always on 127.0.0.1, when no listener has the admin resource.",
        8009,
    ),
    Option(
        "admin_allowed_hosts",
        [],
        _str_list,
        "Host names (besides localhost, 127.0.0.1 and [::1]) under which Politburo answers, e.g. the "
        "name of an SSH tunnel or VPN address. Any other Host header gets 400: a web page elsewhere "
        "cannot reach the console through DNS rebinding.",
        ["admin.internal.example.com"],
    ),
    Option(
        "admin_session_idle_timeout",
        "30m",
        _duration,
        "A Politburo console session ends after this long without a request (and always 8 h after login).",
        "15m",
    ),
    Option(
        "admin_idle_shutdown",
        None,
        _duration,
        "If set, a Politburo process stops by itself after this long without a request "
        "(offline by default: start it when needed, it goes away when forgotten).",
        "30m",
    ),
    Option(
        "log_level",
        "INFO",
        _log_level,
        "Log level for the logs on stdout: DEBUG, INFO, WARNING or ERROR.",
        "INFO",
        section="Logging and monitoring",
    ),
    Option(
        "log_format",
        "json",
        _choice("json", "text"),
        "Log lines on stdout: json (one object per line, for Loki/ELK) or text (for people). Under "
        "systemd (JOURNAL_STREAM set) each line starts with its syslog priority (<3> errors, <4> "
        "warnings, <6> info, <7> debug), so `journalctl -u 'dagma-*' -p err` lists the errors.",
        "text",
        section="Logging and monitoring",
    ),
    Option(
        "enable_metrics",
        False,
        _bool,
        "Serve Prometheus metrics (dagma_* series, process CPU/memory) on metrics_port, one "
        "listener per process. Several processes on one host: give each its own port "
        "(`serve --metrics-port N`, DAGMA_METRICS_PORT=N for Celery workers and beat).",
        True,
        section="Logging and monitoring",
    ),
    Option(
        "metrics_port",
        9000,
        _int(1, 65535),
        "Port of the metrics listener (any path answers, e.g. /metrics).",
        9000,
        section="Logging and monitoring",
    ),
    Option(
        "metrics_bind_address",
        "127.0.0.1",
        _str,
        "Address of the metrics listener. Metrics show traffic and the server's internals: "
        "keep it private (loopback, or a monitoring network).",
        "10.0.0.5",
        section="Logging and monitoring",
    ),
    Option(
        "default_room_version",
        "12",
        _room_version,
        "Room version for new rooms when the client does not ask for one.",
        "12",
        section="Rooms",
    ),
    Option(
        "presence",
        {"enabled": True},
        _any_mapping,
        "Presence: {enabled: true|false}.",
        {"enabled": False},
        section="Rooms",
    ),
    Option(
        "server_notices",
        None,
        _server_notices,
        "Server notices (Synapse's option): a room per user where the admin API's send_server_notice "
        "posts, from system_mxid_localpart (with system_mxid_display_name, system_mxid_avatar_url); "
        "room_name, room_avatar_url, room_topic, auto_join. Off when unset.",
        {
            "system_mxid_localpart": "notices",
            "system_mxid_display_name": "Server Notices",
            "room_name": "Server Notices",
        },
        section="Rooms",
    ),
    # Database & Redis
    Option(
        "database",
        {"name": "sqlite3", "args": {"database": "homeserver.db"}},
        _database,
        "Database. sqlite3 (embedded default, for trying Dagma) or psycopg2 (PostgreSQL, production). Env: DAGMA_DATABASE_URL=postgres://user@host:5432/db or sqlite:///path.",
        {
            "name": "psycopg2",
            "args": {"user": "dagma", "database": "dagma", "host": "127.0.0.1", "cp_min": 5, "cp_max": 10},
        },
        section="Database",
        in_generated=True,
    ),
    Option(
        "redis",
        {"enabled": False, "host": "localhost", "port": 6379, "dbid": 0, "password": None},
        _redis,
        "Redis: Celery broker and the channel layer between processes. Required when more than one process serves the homeserver. Env: DAGMA_REDIS_URL=redis://host:6379/0.",
        {"enabled": True, "host": "127.0.0.1", "port": 6379},
        section="Database",
        in_generated=True,
    ),
    # Registration
    Option(
        "enable_registration",
        False,
        _bool,
        "Allow anyone to register an account through the client API.",
        True,
        section="Registration",
        in_generated=True,
    ),
    Option(
        "enable_registration_without_verification",
        False,
        _bool,
        "Required (true) together with enable_registration when no email/captcha verification is configured, as in Synapse.",
        True,
        section="Registration",
    ),
    Option(
        "registration_requires_token",
        False,
        _bool,
        "Registration needs a token (m.login.registration_token); create tokens with the admin API.",
        True,
        section="Registration",
    ),
    Option(
        "registration_shared_secret",
        None,
        _opt_str,
        "Shared secret for the admin registration endpoint /_synapse/admin/v1/register, served by Politburo "
        "(the admin listener), so Synapse's register_new_matrix_user works against it. Generated with the "
        "config; null turns the endpoint off.",
        "<random>",
        section="Registration",
    ),
    Option(
        "allow_guest_access",
        False,
        _bool,
        "Allow guest accounts (kind=guest).",
        False,
        section="Registration",
    ),
    # VoIP
    Option(
        "turn_uris",
        [],
        _turn_uris,
        "TURN server URIs handed to clients for voice and video calls (GET /voip/turnServer); empty: no TURN server.",
        ["turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:5349?transport=tcp"],
        section="VoIP",
    ),
    Option(
        "turn_shared_secret",
        None,
        _opt_str,
        "The TURN server's shared secret (coturn static-auth-secret): each user gets short-lived credentials signed with it.",
        "<random>",
        section="VoIP",
    ),
    Option(
        "turn_username",
        None,
        _opt_str,
        "Fixed TURN username for everyone, when no turn_shared_secret is set.",
        "dagma",
        section="VoIP",
    ),
    Option(
        "turn_password",
        None,
        _opt_str,
        "Fixed TURN password, with turn_username.",
        "<password>",
        section="VoIP",
    ),
    Option(
        "turn_user_lifetime",
        "1h",
        _duration,
        "How long TURN credentials from turn_shared_secret stay valid.",
        "1d",
        section="VoIP",
    ),
    Option(
        "turn_allow_guests",
        True,
        _bool,
        "Whether guest accounts may get TURN credentials.",
        False,
        section="VoIP",
    ),
    Option(
        "rc_message",
        {"per_second": 0.2, "burst_count": 10.0},
        _rate({"per_second": 0.2, "burst_count": 10.0}),
        "Rate limit for sending events per user.",
        {"per_second": 0.5, "burst_count": 30},
        section="Rate limits",
    ),
    Option(
        "rc_registration",
        {"per_second": 0.17, "burst_count": 3.0},
        _rate({"per_second": 0.17, "burst_count": 3.0}),
        "Rate limit for registration per client address.",
        {"per_second": 0.17, "burst_count": 3},
        section="Rate limits",
    ),
    Option(
        "rc_login",
        RC_LOGIN_DEFAULT,
        _rc_login,
        "Rate limits for login: per address, per account and for failed attempts per account.",
        {"address": {"per_second": 0.003, "burst_count": 5}},
        section="Rate limits",
    ),
    Option(
        "rc_joins",
        {"per_second": 0.1, "burst_count": 10.0},
        _rate({"per_second": 0.1, "burst_count": 10.0}),
        "Rate limit for joining rooms per user.",
        {"per_second": 0.1, "burst_count": 10},
        section="Rate limits",
    ),
    Option(
        "rc_media_create",
        {"per_second": 10.0, "burst_count": 50.0},
        _rate({"per_second": 10.0, "burst_count": 50.0}),
        "Rate limit for creating media (POST /upload and /create) per user (Synapse's defaults).",
        {"per_second": 10, "burst_count": 50},
        section="Rate limits",
    ),
    Option(
        "rc_federation",
        RC_FEDERATION_DEFAULT,
        _rc_federation,
        "Rate limit per origin server on the federation API (Synapse's names and defaults): "
        "window_size (ms), sleep_limit (requests per window before each waits sleep_delay ms), "
        "reject_limit (the origin's waiting requests beyond which one is refused with 429), "
        "concurrent (the origin's requests processed at once). Transactions (PUT /send) are "
        "never delayed, as in Synapse: only concurrent and reject_limit apply to them.",
        {"window_size": 1000, "sleep_limit": 10, "sleep_delay": 500, "reject_limit": 50, "concurrent": 3},
        section="Rate limits",
    ),
    # Media
    Option(
        "media_store_path",
        "media_store",
        _str,
        "Directory for uploaded and cached media (relative paths are relative to the config file).",
        "/var/lib/dagma/media",
        section="Media",
        in_generated=True,
    ),
    Option(
        "max_upload_size",
        "50M",
        parse_size,
        "Largest accepted upload (bytes, or with K/M/G suffix).",
        "100M",
        section="Media",
    ),
    Option(
        "max_image_pixels",
        "32M",
        parse_size,
        "Largest image (in pixels) Dagma will thumbnail.",
        "32M",
        section="Media",
    ),
    Option(
        "dynamic_thumbnails",
        True,
        _bool,
        "Generate thumbnails of requested sizes on demand (else only the pre-generated sizes).",
        True,
        section="Media",
    ),
    Option(
        "url_preview_enabled",
        False,
        _bool,
        "Enable URL previews (/preview_url). Private address ranges are always refused unless whitelisted.",
        False,
        section="Media",
    ),
    Option(
        "url_preview_ip_range_blacklist",
        DEFAULT_IP_RANGE_BLACKLIST,
        _ip_ranges,
        "Address ranges URL previews may never fetch.",
        ["10.0.0.0/8"],
        section="Media",
    ),
    Option(
        "url_preview_ip_range_whitelist",
        [],
        _ip_ranges,
        "Exceptions to url_preview_ip_range_blacklist.",
        ["192.168.1.5/32"],
        section="Media",
    ),
    Option(
        "media_retention",
        {},
        _any_mapping,
        "{local_media_lifetime, remote_media_lifetime} e.g. 90d; unset keeps media forever.",
        {"remote_media_lifetime": "14d"},
        section="Media",
    ),
    Option(
        "enable_authenticated_media",
        True,
        _bool,
        "Media uploaded while this is true is only served by the authenticated /_matrix/client/v1/media endpoints; the legacy unauthenticated /_matrix/media/v3 download and thumbnail endpoints answer 404 for it (spec v1.11 'freeze', as in Synapse). false: also serve new uploads without authentication.",
        False,
        section="Media",
    ),
    # Federation
    Option(
        "federation_enabled",
        True,
        _bool,
        "Federate with other servers (Embassy). false = a private island: no inbound or outbound federation.",
        False,
        section="Federation",
    ),
    Option(
        "tls_certificate_path",
        None,
        _opt_str,
        "PEM certificate chain for listeners with tls: true (Embassy's federation port; the spec requires "
        "TLS between servers). Checked at start-up together with tls_private_key_path.",
        "/etc/dagma/example.com.tls.crt",
        section="Federation",
    ),
    Option(
        "tls_private_key_path",
        None,
        _opt_str,
        "PEM private key of tls_certificate_path.",
        "/etc/dagma/example.com.tls.key",
        section="Federation",
    ),
    Option(
        "federation_verify_certificates",
        True,
        _bool,
        "Verify the TLS certificates of remote servers (for the name server discovery gives). "
        "false only for testing: anyone on the path could then impersonate any server.",
        True,
        section="Federation",
    ),
    Option(
        "federation_custom_ca_list",
        None,
        _opt_str_list,
        "PEM files of the certificate authorities trusted for federation, replacing the system's.",
        ["/etc/dagma/federation-ca.pem"],
        section="Federation",
    ),
    Option(
        "federation_domain_whitelist",
        None,
        _opt_str_list,
        "If set, federate only with these server names: requests from other servers are refused "
        "(403 M_FORBIDDEN) and none are sent to them, .well-known look-ups included.",
        ["example.org"],
        section="Federation",
    ),
    Option(
        "ip_range_blacklist",
        DEFAULT_IP_RANGE_BLACKLIST,
        _ip_ranges,
        "Address ranges outbound requests (federation, remote media) may never reach (SSRF protection).",
        ["10.0.0.0/8"],
        section="Federation",
    ),
    Option(
        "ip_range_whitelist",
        [],
        _ip_ranges,
        "Exceptions to ip_range_blacklist, e.g. a federation peer on the LAN.",
        ["192.168.1.0/24"],
        section="Federation",
    ),
    Option(
        "trusted_key_servers",
        [],
        _trusted_key_servers,
        "Notary servers asked for other servers' signing keys before the servers themselves, each "
        "{server_name, verify_keys: {key ID: unpadded Base64}} (without verify_keys the notary's keys are "
        "fetched from it). Unlike Synapse (matrix.org) the default is none: trusting a third party with "
        "every key we learn is the operator's choice, not a hidden one.",
        [
            {
                "server_name": "matrix.org",
                "verify_keys": {"ed25519:auto": "Noi6WqcDj0QmPxCNQqgezwTlBKrfqehY1u2FyWP9uYw"},
            }
        ],
        section="Federation",
    ),
    Option(
        "old_signing_keys",
        {},
        _old_signing_keys,
        "Signing keys this server used before (their public halves), served as old_verify_keys so other "
        "servers can still check our older events: {key ID: {key: unpadded Base64, expired_ts: ms}}.",
        {
            "ed25519:a_Old1": {
                "key": "l8Hft5qXKn1vfHrg3p4+W8gELQVo8N13JkluMfmn2sQ",
                "expired_ts": 1736000000000,
            }
        },
        section="Federation",
    ),
    Option(
        "allow_public_rooms_over_federation",
        False,
        _bool,
        "Let other servers read our public room directory.",
        True,
        section="Federation",
    ),
    Option(
        "dns_resolvers",
        [],
        _dns_resolvers,
        "DNS servers (IP[:port]) asked for federation SRV records (_matrix-fed._tcp, _matrix._tcp) by "
        "server discovery and the federation tester; empty: the system's resolver (/etc/resolv.conf).",
        ["127.0.0.1:5353"],
        section="Federation",
    ),
    # Operations
    Option(
        "forward_extremities_warn",
        10,
        _int(1, 1_000_000),
        "`manage.py doctor` warns about rooms with more forward extremities than this (each one is "
        "state resolution work on every new event).",
        10,
        section="Operations",
    ),
    # Directory
    Option(
        "room_list_publication_rules",
        [{"action": "allow"}],
        _publication_rules,
        "Who may publish rooms to the public directory (first matching rule wins; fields user_id, alias, room_id accept globs).",
        [{"user_id": "@admin:*", "action": "allow"}, {"action": "deny"}],
        section="Directory",
    ),
    Option(
        "allow_public_rooms_without_auth",
        False,
        _bool,
        "Serve /publicRooms to clients without an access token.",
        False,
        section="Directory",
    ),
    Option(
        "user_directory",
        {"enabled": True, "search_all_users": False},
        _any_mapping,
        "User directory: {enabled, search_all_users} (false: only users sharing a room or in public rooms).",
        {"search_all_users": True},
        section="Directory",
    ),
    Option(
        "require_auth_for_profile_requests",
        False,
        _bool,
        "Profiles are only visible to logged-in users.",
        False,
        section="Directory",
    ),
    Option(
        "allow_profile_lookup_over_federation",
        True,
        _bool,
        "Let other servers look up our users' profiles (query/profile); false answers them 403.",
        False,
        section="Directory",
    ),
    # Retention
    Option(
        "redaction_retention_period",
        "7d",
        _str,
        "How long the original content of redacted events is kept before it is erased.",
        "7d",
        section="Retention",
    ),
    Option(
        "access_token_lifetime",
        None,
        _duration,
        "If set (e.g. 5m), clients that support refresh tokens get access tokens expiring after this long, and refresh them.",
        "60m",
        section="Accounts",
    ),
    # Operations
    Option(
        "environment",
        "development",
        _choice("development", "production"),
        "production: this server is for real users. A server is production when this says so or "
        "when any listener binds an address other than loopback (127.0.0.1, ::1); a production "
        "server refuses to start on SQLite unless allow_sqlite_in_production is true.",
        "production",
        section="Operations",
    ),
    Option(
        "allow_sqlite_in_production",
        False,
        _bool,
        "Start a production server (see environment) on SQLite anyway. SQLite serialises every "
        "write and cannot be shared by several processes: use PostgreSQL for real users.",
        False,
        section="Operations",
    ),
    Option(
        "retention",
        {"enabled": False},
        _retention,
        "Message retention, as in Synapse: {enabled, default_policy: {min_lifetime, max_lifetime}, "
        "allowed_lifetime_min, allowed_lifetime_max, purge_jobs: [{shortest_max_lifetime, "
        "longest_max_lifetime, interval}]}. Rooms' m.room.retention state (clamped to the allowed "
        "range) or the default policy decide when a message expires; expired messages lose their "
        "content (the room's current state and its newest events are never touched).",
        {
            "enabled": True,
            "default_policy": {"max_lifetime": "1y"},
            "allowed_lifetime_max": "1y",
            "purge_jobs": [{"interval": "1d"}],
        },
        section="Operations",
    ),
    Option(
        "delete_stale_devices_after",
        None,
        _opt_duration,
        "Delete devices (and their access tokens) not seen for this long, as in Synapse; unset keeps them.",
        "1y",
        section="Operations",
    ),
    Option(
        "backup_schedule",
        {"dir": None},
        _backup_schedule,
        "Nightly backup by beat: {dir, keep: 7, media: true, verify: true} writes dir/dagma-<time> every "
        "night, keeps the newest keep of them and verifies the newest once a week (manage.py backup).",
        {"dir": "/var/backups/dagma", "keep": 7, "media": True, "verify": True},
        section="Operations",
    ),
    # Testing
    Option(
        "enable_test_hooks",
        False,
        _bool,
        "TEST-ONLY, never on a real server: Tribune serves /_dagma/test/* (the number of /sync "
        "long-polls waiting per user; moving this homeserver's clock forward), so the test suite can "
        "observe and drive its live servers instead of sleeping.",
        False,
        section="Testing",
    ),
]

OPTIONS.append(
    Option(
        "federation_well_known_port",
        443,
        _int(1, 65535),
        "TEST-ONLY: the port https://<name>/.well-known/matrix/server and .../client are fetched from "
        "(the spec's is 443); the suite serves them on loopback ports.",
        443,
        section="Testing",
    )
)

OPTION_BY_NAME = {o.name: o for o in OPTIONS}

#: Options that may be left unset (None); build_config fills public_baseurl and signing_key_path.
OPTIONAL_OPTIONS = frozenset(
    {
        "access_token_lifetime",
        "admin_idle_shutdown",
        "delete_stale_devices_after",
        "federation_custom_ca_list",
        "federation_domain_whitelist",
        "form_secret",
        "public_baseurl",
        "registration_shared_secret",
        "server_notices",
        "signing_key_path",
        "tls_certificate_path",
        "tls_private_key_path",
        "turn_password",
        "turn_shared_secret",
        "turn_username",
    }
)


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class DagmaConfig:
    """A validated configuration: one typed attribute per option (``generate_config --list``
    documents each). Built only by :func:`build_config`; tests change it with
    ``dataclasses.replace`` under ``override_settings(DAGMA=...)``."""

    server_name: str
    public_baseurl: str
    signing_key_path: str
    form_secret: str | None
    listeners: list[dict[str, Any]]
    admin_listener_port: int
    admin_allowed_hosts: list[str]
    admin_session_idle_timeout: str | int
    admin_idle_shutdown: str | int | None
    log_level: str
    log_format: str
    enable_metrics: bool
    metrics_port: int
    metrics_bind_address: str
    default_room_version: str
    presence: dict[str, Any]
    server_notices: dict[str, Any] | None
    database: dict[str, Any]
    redis: dict[str, Any]
    enable_registration: bool
    enable_registration_without_verification: bool
    registration_requires_token: bool
    registration_shared_secret: str | None
    allow_guest_access: bool
    turn_uris: list[str]
    turn_shared_secret: str | None
    turn_username: str | None
    turn_password: str | None
    turn_user_lifetime: str | int
    turn_allow_guests: bool
    rc_message: dict[str, float]
    rc_registration: dict[str, float]
    rc_login: dict[str, dict[str, float]]
    rc_joins: dict[str, float]
    rc_media_create: dict[str, float]
    rc_federation: dict[str, int]
    media_store_path: str
    max_upload_size: int
    max_image_pixels: int
    dynamic_thumbnails: bool
    url_preview_enabled: bool
    url_preview_ip_range_blacklist: list[str]
    url_preview_ip_range_whitelist: list[str]
    media_retention: dict[str, Any]
    enable_authenticated_media: bool
    federation_enabled: bool
    tls_certificate_path: str | None
    tls_private_key_path: str | None
    federation_verify_certificates: bool
    federation_custom_ca_list: list[str] | None
    federation_domain_whitelist: list[str] | None
    ip_range_blacklist: list[str]
    ip_range_whitelist: list[str]
    trusted_key_servers: list[dict[str, Any]]
    old_signing_keys: dict[str, dict[str, Any]]
    allow_public_rooms_over_federation: bool
    room_list_publication_rules: list[dict[str, Any]]
    allow_public_rooms_without_auth: bool
    user_directory: dict[str, Any]
    require_auth_for_profile_requests: bool
    allow_profile_lookup_over_federation: bool
    redaction_retention_period: str
    access_token_lifetime: str | int | None
    environment: str
    allow_sqlite_in_production: bool
    retention: dict[str, Any]
    delete_stale_devices_after: str | int | None
    backup_schedule: dict[str, Any]
    enable_test_hooks: bool
    dns_resolvers: list[str]
    forward_extremities_warn: int
    federation_well_known_port: int
    #: The file it was read from (None: built from defaults and the environment only).
    path: Path | None = None
    #: Relative paths in the file are relative to its folder.
    config_dir: Path = field(default_factory=Path.cwd)

    def resolve_path(self, value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() else (self.config_dir / p)

    @property
    def uses_postgres(self) -> bool:
        return bool(self.database["name"] == "psycopg2")

    @property
    def redis_url(self) -> str | None:
        r = self.redis
        if not r["enabled"]:
            return None
        auth = f":{r['password']}@" if r.get("password") else ""
        return f"redis://{auth}{r['host']}:{r['port']}/{r['dbid']}"


def _database_from_url(url: str) -> dict[str, Any]:
    parsed = urlparse(url)
    if parsed.scheme in ("sqlite", "sqlite3"):
        # sqlite:///relative.db -> "relative.db"; sqlite:////abs/path.db -> "/abs/path.db"
        path = unquote(parsed.path)[1:]
        return {"name": "sqlite3", "args": {"database": path or "homeserver.db"}}
    if parsed.scheme in ("postgres", "postgresql", "psycopg", "psycopg2"):
        args: dict[str, Any] = {"database": unquote(parsed.path.lstrip("/")) or "dagma"}
        if parsed.username:
            args["user"] = unquote(parsed.username)
        if parsed.password:
            args["password"] = unquote(parsed.password)
        if parsed.hostname:
            args["host"] = parsed.hostname
        if parsed.port:
            args["port"] = parsed.port
        return {"name": "psycopg2", "args": args}
    raise ConfigError(f"DAGMA_DATABASE_URL: expected postgres://... or sqlite:///path; got {url!r}")


def _redis_from_url(url: str) -> dict[str, Any]:
    parsed = urlparse(url)
    if parsed.scheme != "redis":
        raise ConfigError(f"DAGMA_REDIS_URL: expected redis://host:port/db; got {url!r}")
    dbid = int(parsed.path.lstrip("/") or 0)
    return {
        "enabled": True,
        "host": parsed.hostname or "localhost",
        "port": parsed.port or 6379,
        "dbid": dbid,
        "password": parsed.password,
    }


def _env_overrides(env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for opt in OPTIONS:
        raw = env.get("DAGMA_" + opt.name.upper())
        if raw is not None:
            try:
                out[opt.name] = yaml.safe_load(raw)
            except yaml.YAMLError:
                out[opt.name] = raw
    if env.get("DAGMA_DATABASE_URL"):
        out["database"] = _database_from_url(env["DAGMA_DATABASE_URL"])
    if env.get("DAGMA_REDIS_URL"):
        out["redis"] = _redis_from_url(env["DAGMA_REDIS_URL"])
    return out


def build_config(
    raw: dict[str, Any], *, path: Path | None = None, env: dict[str, str] | None = None
) -> DagmaConfig:
    """Validate ``raw`` (parsed YAML) with environment overrides; raise ConfigError on the first bad key."""
    if not isinstance(raw, dict):
        raise ConfigError("the configuration file must be a YAML mapping of option: value")
    merged = dict(raw)
    merged.update(_env_overrides(dict(os.environ) if env is None else env))
    unknown = sorted(k for k in merged if k not in OPTION_BY_NAME)
    if unknown:
        raise ConfigError(
            f"{unknown[0]}: unknown option (see `manage.py generate_config --list` for the allowed options)"
        )
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        value = merged.get(opt.name, opt.default)
        if value is None and opt.name in OPTIONAL_OPTIONS:
            values[opt.name] = None
            continue
        if value is None:
            raise ConfigError(f"{opt.name}: required; {opt.doc}")
        values[opt.name] = opt.validate(opt.name, value)
    config_dir = path.parent.resolve() if path else Path.cwd()
    server_name = values["server_name"]
    if values["public_baseurl"] is None:
        host = "localhost" if server_name.split(":")[0] == "localhost" else server_name.split(":")[0]
        values["public_baseurl"] = f"http://{host}:{values['listeners'][0]['port']}/"
    if values["signing_key_path"] is None:
        values["signing_key_path"] = str(config_dir / f"{server_name.replace(':', '_')}.signing.key")
    if any(listener["tls"] for listener in values["listeners"]):
        for option in ("tls_certificate_path", "tls_private_key_path"):
            if values[option] is None:
                raise ConfigError(f"{option}: required when a listener has tls: true")
    if (
        values["enable_registration"]
        and not values["enable_registration_without_verification"]
        and not values["registration_requires_token"]
    ):
        raise ConfigError(
            "enable_registration: open registration without any verification lets anyone create accounts; "
            "also set enable_registration_without_verification: true, or registration_requires_token: true"
        )
    return DagmaConfig(**values, path=path, config_dir=config_dir)


_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def production_reasons(config: DagmaConfig) -> list[str]:
    """Why ``config`` is a production server (empty: it is not): ``environment: production``,
    or a listener binding a public (non-loopback) address."""
    reasons = ["environment: production"] if config.environment == "production" else []
    for listener in config.listeners:
        public = [a for a in listener["bind_addresses"] if a not in _LOOPBACK]
        if public:
            reasons.append(f"listener port {listener['port']} binds {', '.join(public)}")
    return reasons


def check_database_for_production(config: DagmaConfig) -> None:
    """A production server refuses SQLite unless ``allow_sqlite_in_production`` forces it."""
    if config.uses_postgres or config.allow_sqlite_in_production:
        return
    reasons = production_reasons(config)
    if reasons:
        raise ConfigError(
            f"database: SQLite is for trying Dagma, and this is a production server ({'; '.join(reasons)}). "
            "Use PostgreSQL (database: {name: psycopg2, args: {...}}, then `manage.py migrate`), "
            "or set allow_sqlite_in_production: true to start anyway"
        )


def check_tls_files(config: DagmaConfig) -> tuple[Path, Path]:
    """The certificate and key files of TLS listeners, loaded once to prove they are usable.

    A missing, unreadable or mismatched file stops start-up with a ConfigError naming the
    option, instead of a listener that fails every handshake.
    """
    cert = config.resolve_path(_str("tls_certificate_path", config.tls_certificate_path))
    key = config.resolve_path(_str("tls_private_key_path", config.tls_private_key_path))
    for option, path in (("tls_certificate_path", cert), ("tls_private_key_path", key)):
        try:
            path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{option}: cannot read {path}: {exc.strerror or exc}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as exc:
        raise ConfigError(
            f"tls_certificate_path / tls_private_key_path: {cert} and {key} are not a PEM certificate "
            f"chain and its private key ({exc.reason or exc})"
        ) from None
    return cert, key


def config_path_from_env() -> Path:
    return Path(os.environ.get("DAGMA_CONFIG", "dagma.yaml")).resolve()


def load_config(
    path: Path | None = None, *, allow_missing: bool = True, env: dict[str, str] | None = None
) -> DagmaConfig:
    """Load the config file. A missing file gives the embedded defaults (server_name localhost)."""
    path = path or config_path_from_env()
    if not path.exists():
        if not allow_missing:
            raise ConfigError(
                f"{path}: no such configuration file (create one with `manage.py generate_config`)"
            )
        return build_config({"server_name": "localhost"}, path=path, env=env)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return build_config(raw, path=path, env=env)


# --------------------------------------------------------------------------- generation


def generate_config_text(
    *, server_name: str, signing_key_path: str, database: dict[str, Any] | None = None
) -> str:
    """A commented YAML config for a new server; the signing key is written separately."""
    _server_name("server_name", server_name)
    lines = [
        "# Dagma homeserver configuration. Generated by `manage.py generate_config`.",
        "# Every option, its default and an example: `python3 manage.py generate_config --list`.",
        "# Environment variables DAGMA_<OPTION> override values here.",
        "",
    ]
    values: dict[str, Any] = {
        "server_name": server_name,
        "public_baseurl": None,
        "signing_key_path": signing_key_path,
        "form_secret": secrets.token_urlsafe(32),
        "registration_shared_secret": secrets.token_urlsafe(32),
    }
    if database is not None:
        values["database"] = database
    for opt in OPTIONS:
        if not (opt.in_generated or opt.name in values):
            continue
        value = values.get(opt.name, opt.default)
        lines.append(f"# {opt.name}: {opt.doc}")
        if value is None:
            lines.append(f"#{opt.name}: {_inline(opt.example)}")
        else:
            dumped = yaml.safe_dump({opt.name: value}, default_flow_style=False, sort_keys=False).rstrip()
            lines.extend(dumped.splitlines())
        lines.append("")
    return "\n".join(lines)


def _inline(value: Any) -> str:
    """One-line YAML for a value (no document-end marker)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("...").strip()


def describe_options() -> str:
    """Human-readable list of every option: name, default, example, description."""
    out: list[str] = []
    section = None
    for opt in OPTIONS:
        if opt.section != section:
            section = opt.section
            out.append(f"\n## {section}\n")
        default = "(required)" if opt.name == "server_name" else _inline(opt.default)
        example = _inline(opt.example)
        out.append(f"- `{opt.name}` — {opt.doc}\n  default: `{default}`  example: `{example}`")
    return "\n".join(out).lstrip() + "\n"
