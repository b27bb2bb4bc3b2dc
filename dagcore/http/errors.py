"""Matrix error responses (spec: client-server API "Standard error response").

Shared by Tribune and Embassy: both answer ``{"errcode": ..., "error": ...}``
with the spec's HTTP status. Views raise :class:`MatrixError`; the endpoint
wrapper turns it into a response.
"""

from __future__ import annotations

from typing import Any


class MatrixError(Exception):
    def __init__(self, status: int, errcode: str, error: str, **extra: Any) -> None:
        super().__init__(f"{errcode}: {error}")
        self.status = status
        self.errcode = errcode
        self.error = error
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        return {"errcode": self.errcode, "error": self.error, **self.extra}


def forbidden(msg: str = "You are not allowed to do that") -> MatrixError:
    return MatrixError(403, "M_FORBIDDEN", msg)


def not_in_room() -> MatrixError:
    """What a non-member is told about a room, whether or not it exists.

    Unknown local rooms answer exactly as rooms the requester is not in, so room
    IDs cannot be probed (as Synapse answers read requests: 403 M_FORBIDDEN).
    """
    return MatrixError(403, "M_FORBIDDEN", "You are not a member of this room")


def not_found(msg: str = "Not found") -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", msg)


def bad_json(msg: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", msg)


def not_json(msg: str = "Content not JSON.") -> MatrixError:
    return MatrixError(400, "M_NOT_JSON", msg)


def invalid_param(msg: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", msg)


def missing_param(msg: str) -> MatrixError:
    return MatrixError(400, "M_MISSING_PARAM", msg)


def unrecognized(msg: str = "Unrecognized request") -> MatrixError:
    return MatrixError(404, "M_UNRECOGNIZED", msg)


def limit_exceeded(retry_after_ms: int) -> MatrixError:
    return MatrixError(429, "M_LIMIT_EXCEEDED", "Too many requests", retry_after_ms=retry_after_ms)


def unknown(msg: str = "Internal server error") -> MatrixError:
    return MatrixError(500, "M_UNKNOWN", msg)
