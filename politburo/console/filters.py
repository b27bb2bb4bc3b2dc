"""Template filters every console page may use (a builtin library: no ``{% load %}`` needed).

``{{ ts|ms_time }}`` — integer ms since the epoch as ``2026-12-05 22:03:07 UTC`` ("—" for none);
``{{ n|bytes }}`` — a byte count as ``12.3 MiB``; ``{{ ms|duration }}`` — ``3 h 12 min``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django import template

register = template.Library()


@register.filter
def ms_time(value: object) -> str:
    if value is None or value == "":
        return "—"
    try:
        ms = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return str(value)
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@register.filter(name="bytes")
def bytes_(value: object) -> str:
    if value is None or value == "":
        return "—"
    try:
        n = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


@register.filter
def duration(value: object) -> str:
    if value is None or value == "":
        return "—"
    try:
        seconds = int(value) // 1000  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return str(value)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


@register.filter
def datetime_local(value: object) -> str:
    """ms since the epoch as an ``<input type=datetime-local>`` value (UTC), "" for none."""
    if value is None or value == "":
        return ""
    try:
        ms = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M")
