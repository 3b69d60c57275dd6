"""The one exception tree of Confide, and the table that maps it to wire codes.

::

    ConfideError
    ├── ClientError          the client got something wrong: an `error` frame or a 4xx
    │   ├── BadRequest       bad_request   400   malformed or missing field
    │   ├── Unauthorized     unauthorized  401   no, bad or expired token
    │   ├── Forbidden        forbidden     403   not allowed for this user or room
    │   ├── NotFound         not_found     404   no such room, session, media
    │   ├── Conflict         conflict      409   the state changed under the request
    │   ├── TooLarge         too_large     413   frame, text or upload over its limit
    │   ├── RuleError        rule          422   against a session rule; names it (R1..R17)
    │   └── RateLimited      rate_limited  429   over the per-connection rate
    ├── ProtocolViolation    the peer cannot be talked to: close 4400
    └── InternalError        our own fault: `internal` / 500, details only in the log

Messages are short and never carry therapy content: ids, sizes and field names only.
"""

from __future__ import annotations

from typing import ClassVar


class ConfideError(Exception):
    """Base of every error Confide raises on purpose."""

    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ClientError(ConfideError):
    """Something the client did wrong; it is told, and the connection lives on."""

    code = "bad_request"
    status = 400


class BadRequest(ClientError):
    code = "bad_request"
    status = 400


class Unauthorized(ClientError):
    code = "unauthorized"
    status = 401


class Forbidden(ClientError):
    """Not allowed for this user or room; `rule` names the rule that says so, if one does."""

    code = "forbidden"
    status = 403

    def __init__(self, message: str, rule: str | None = None) -> None:
        super().__init__(message)
        self.rule = rule


class NotFound(ClientError):
    code = "not_found"
    status = 404


class Conflict(ClientError):
    code = "conflict"
    status = 409


class TooLarge(ClientError):
    code = "too_large"
    status = 413


class RateLimited(ClientError):
    code = "rate_limited"
    status = 429


class RuleError(ClientError):
    """A step a session rule forbids. `rule` is its number in RULES.md, e.g. ``"R3"``."""

    code = "rule"
    status = 422

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


class ProtocolViolation(ConfideError):
    """Undecodable input: the connection is closed with 4400."""

    code = "bad_request"
    status = 400


class InternalError(ConfideError):
    code = "internal"
    status = 500


# Close codes of the websocket protocol (PROTOCOL.md).
CLOSE_PROTOCOL = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_SLOW = 4408
CLOSE_RATE_LIMIT = 4429
CLOSE_SHUTDOWN = 1012


def error_body(exc: ConfideError) -> dict[str, object]:
    """The wire shape of an error, shared by `error` frames and HTTP bodies."""
    body: dict[str, object] = {"code": exc.code, "message": exc.message}
    rule = getattr(exc, "rule", None)
    if rule is not None:
        body["rule"] = rule
    return body
