"""Short-lived TURN credentials in coturn's REST-API scheme, and the ``ice_servers`` list.

Theory of operation
-------------------
coturn started with ``use-auth-secret`` and ``static-auth-secret=SECRET`` shares
one secret with us and keeps no user table. We mint, for each user and each
``live.start``::

    username   = "<expiry unix time>:<user id>"
    credential = base64(HMAC-SHA1(key=SECRET, msg=username))

coturn splits the username at the first ``:`` (its ``rest-api-separator``),
refuses a timestamp in the past, and checks the HMAC. The expiry is checked only
when an allocation is made: a relay that is running keeps running after it, but an
ICE restart allocates anew and needs fresh credentials. That is why every
``live.start`` (first or resume) carries freshly minted ones, and why their
lifetime can be short: at most `MAX_TTL` (300 s), so a credential that leaks from
a browser is worth little.

No secret configured: STUN only, no TURN entry. No URLs at all: an empty list
(the browsers' defaults, host candidates only).

The secret never appears in a repr, a log or an error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NotRequired, TypedDict

from server.ids import UserId

MAX_TTL = timedelta(seconds=300)
"""The longest lifetime a TURN credential may have (a setting can only shorten it)."""

SEPARATOR = ":"
"""coturn's default ``rest-api-separator``."""

MAX_USERNAME_BYTES = 512
"""A STUN USERNAME attribute holds less than 513 bytes (RFC 8489, 14.3)."""


class IceServer(TypedDict):
    """An ``RTCIceServer`` as the browser takes it in ``RTCConfiguration.iceServers``."""

    urls: list[str]
    username: NotRequired[str]
    credential: NotRequired[str]


@dataclass(frozen=True, slots=True)
class IceSettings:
    """Where the STUN and TURN servers are, and the secret shared with coturn.

    ``stun_urls`` must use ``stun:`` / ``stuns:``, ``turn_urls`` ``turn:`` / ``turns:``.
    ``ttl`` is the credentials' lifetime, 1 s to `MAX_TTL`.
    """

    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    secret: str | None = field(default=None, repr=False)
    ttl: timedelta = MAX_TTL

    def __post_init__(self) -> None:
        for url in self.stun_urls:
            if not url.startswith(("stun:", "stuns:")):
                raise ValueError("a STUN url starts with stun: or stuns:")
        for url in self.turn_urls:
            if not url.startswith(("turn:", "turns:")):
                raise ValueError("a TURN url starts with turn: or turns:")
        if not timedelta(seconds=1) <= self.ttl <= MAX_TTL:
            raise ValueError(f"TURN credentials live 1 to {int(MAX_TTL.total_seconds())} s")
        if self.secret == "":
            raise ValueError("an empty TURN secret; leave it unset for STUN only")


@dataclass(frozen=True, slots=True)
class TurnCredentials:
    """One user's TURN username and credential, valid until ``expires_at``."""

    username: str
    credential: str = field(repr=False)
    expires_at: datetime


def turn_credentials(user: UserId, now: datetime, secret: str, ttl: timedelta) -> TurnCredentials:
    """Mint credentials for `user`, valid from `now` for `ttl` (whole seconds, rounded down)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not timedelta(seconds=1) <= ttl <= MAX_TTL:
        raise ValueError(f"TURN credentials live 1 to {int(MAX_TTL.total_seconds())} s")
    expiry = int(now.timestamp()) + int(ttl.total_seconds())
    username = f"{expiry}{SEPARATOR}{user}"
    if len(username.encode()) > MAX_USERNAME_BYTES:
        raise ValueError("user id too long for a TURN username")
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredentials(
        username=username,
        credential=base64.b64encode(digest).decode("ascii"),
        expires_at=datetime.fromtimestamp(expiry, tz=now.tzinfo),
    )


def ice_servers(user: UserId, now: datetime, settings: IceSettings) -> list[IceServer]:
    """The ``ice_servers`` of a ``live.start`` frame for `user`, minted at `now`.

    STUN urls come first, in one entry without credentials; TURN urls follow in one
    entry with `user`'s fresh credentials, or are left out when no secret is set.
    """
    servers: list[IceServer] = []
    if settings.stun_urls:
        servers.append({"urls": list(settings.stun_urls)})
    if settings.turn_urls and settings.secret is not None:
        creds = turn_credentials(user, now, settings.secret, settings.ttl)
        servers.append(
            {
                "urls": list(settings.turn_urls),
                "username": creds.username,
                "credential": creds.credential,
            }
        )
    return servers
