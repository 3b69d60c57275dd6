"""Tokens: the node's signing key, issuing tokens and checking them.

A node keeps one HS256 secret in `DATA/node.key`, created on first start with mode 0600.
`confide token` and `POST /v1/tokens` sign with it. An operator who uses an outside
identity provider configures its RS256 or EdDSA public key instead; the node then only
checks tokens and cannot issue any.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from server.config import (
    MAX_TOKEN_CHARS,
    MAX_TOKEN_TTL_S,
    ConfigError,
    Settings,
    make_data_folder,
)
from server.errors import BadRequest, Forbidden, Unauthorized
from server.ids import ROLES, Role, UserId

log = logging.getLogger("confide.auth")
KEY_FILE = "node.key"
MAX_USER_ID = 128


@dataclass(frozen=True)
class Identity:
    """Who a verified token speaks for, and until when (unix seconds)."""

    user: UserId
    role: Role
    expires_at: float


def load_or_create_key(data: Path, create: bool = True) -> bytes:
    """The node's HS256 secret, created in `data` on first use (when `create`)."""
    path = data / KEY_FILE
    if not create and not path.exists():
        raise ConfigError(f"no signing key in {data}: start the node once with "
                          f"`confide serve --data {data}`")
    make_data_folder(data)
    try:
        key = _read_or_create_key(path)
    except OSError as exc:
        where = exc.filename or data
        raise ConfigError(f"data: cannot use {where}: {exc.strerror or exc}") from None
    if len(key) < 32:
        raise ConfigError(f"{path}: the signing key is shorter than 32 bytes")
    return key


def _read_or_create_key(path: Path) -> bytes:
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    log.warning("created a new signing key in %s: tokens signed with any other key "
                "are refused", path)
    key = secrets.token_hex(32).encode()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)  # fails if another process created it first
    except FileExistsError:
        pass
    tmp.unlink()
    return path.read_bytes().strip()


def _public_key(path: str, raw: bytes, algorithm: str) -> Any:
    """The identity provider's public key, parsed at start-up: a file that is not one is a
    configuration error, not a refusal of every token later."""
    try:
        key = jwt.get_algorithm_by_name(algorithm).prepare_key(raw)
    except (jwt.InvalidKeyError, ValueError, TypeError):
        raise ConfigError(f"jwt_public_key: {path} is not a PEM public key for "
                          f"{algorithm}") from None
    if not hasattr(key, "verify"):  # a private key: it signs, it does not check
        raise ConfigError(f"jwt_public_key: {path} holds a private key; give the identity "
                          "provider's public key")
    return key


VERIFIED_CACHE = 100_000  # tokens remembered as checked (about 0.5 KB each)


class TokenAuthority:
    """Signs and verifies Confide's JWTs (`sub`, `role`, `exp`)."""

    def __init__(self, settings: Settings, create_key: bool = True) -> None:
        self._algorithm = settings.jwt_algorithm
        self._issuer = settings.jwt_issuer or None
        self._default_ttl = settings.token_ttl_s
        self._signing_key: bytes | None = None
        self._verify_key: Any
        # Tokens already checked: a client reconnecting with the same token (every
        # reconnect, every storm) skips the signature check. Only valid tokens are kept;
        # each is still refused once its `exp` has passed.
        self._verified: dict[str, Identity] = {}
        if self._algorithm == "HS256":
            self._signing_key = load_or_create_key(settings.data, create_key)
            self._verify_key = self._signing_key
        else:
            try:
                raw = Path(settings.jwt_public_key).read_bytes()
            except OSError as exc:
                raise ConfigError(f"jwt_public_key: cannot read {settings.jwt_public_key}: "
                                  f"{exc.strerror}") from None
            self._verify_key = _public_key(settings.jwt_public_key, raw, self._algorithm)

    @property
    def can_issue(self) -> bool:
        return self._signing_key is not None

    def issue(self, user: str, role: str, ttl_s: int | None = None,
              now: float | None = None) -> str:
        if self._signing_key is None:
            raise Forbidden("this node checks tokens of an outside identity provider "
                            "and issues none")
        check_user_id(user)
        if role not in ROLES:
            raise BadRequest(f"role must be one of {', '.join(ROLES)}")
        ttl = self._default_ttl if ttl_s is None else ttl_s
        if not 1 <= ttl <= MAX_TOKEN_TTL_S:
            raise BadRequest(f"`ttl` must be 1..{MAX_TOKEN_TTL_S} seconds")
        now = time.time() if now is None else now
        claims: dict[str, Any] = {"sub": user, "role": role, "iat": int(now),
                                  "exp": int(now + ttl)}
        if self._issuer:
            claims["iss"] = self._issuer
        return jwt.encode(claims, self._signing_key, algorithm="HS256")

    def verify(self, token: object) -> Identity:
        """The identity of a valid token; `Unauthorized` saying why otherwise."""
        if not isinstance(token, str) or not token:
            raise Unauthorized("token must be a non-empty string")
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthorized(f"token is longer than {MAX_TOKEN_CHARS} characters")
        known = self._verified.get(token)
        if known is not None:
            if known.expires_at > time.time():
                return known
            del self._verified[token]
            raise Unauthorized("token expired")
        identity = self._check(token)
        if len(self._verified) >= VERIFIED_CACHE:
            del self._verified[next(iter(self._verified))]  # the oldest entry
        self._verified[token] = identity
        return identity

    def _check(self, token: str) -> Identity:
        try:
            claims = jwt.decode(
                token, self._verify_key, algorithms=[self._algorithm],
                issuer=self._issuer, options={"require": ["sub", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.InvalidTokenError as exc:  # fixed texts: PyJWT's may quote the token
            raise Unauthorized(f"invalid token: {_refusal(exc)}") from None
        user, role = claims.get("sub"), claims.get("role")
        if not isinstance(user, str) or not is_valid_user_id(user):
            raise Unauthorized("token `sub` is not a valid user id")
        if role not in ROLES:
            raise Unauthorized("token `role` must be client, provider or admin")
        return Identity(UserId(user), role, float(claims["exp"]))


# Why PyJWT refused a token, in words of our own (its messages may quote the token's
# header); the first class that matches, in order.
_REFUSALS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.InvalidSignatureError, "its signature does not match the key"),
    (jwt.InvalidAlgorithmError, "its algorithm is not the one this node accepts"),
    (jwt.ImmatureSignatureError, "it is not valid yet (`nbf` or `iat` in the future)"),
    (jwt.InvalidIssuedAtError, "`iat` must be a number"),
    (jwt.InvalidIssuerError, "its `iss` is not the configured issuer"),
    (jwt.InvalidAudienceError, "its `aud` is not accepted here"),
    (jwt.DecodeError, "not a well-formed JWT"),
)


def _refusal(exc: jwt.InvalidTokenError) -> str:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"it has no `{exc.claim}` claim"  # a claim we require, by name
    for kind, words in _REFUSALS:
        if isinstance(exc, kind):
            return words
    return type(exc).__name__


def is_valid_user_id(user: str) -> bool:
    return 0 < len(user) <= MAX_USER_ID and user.isprintable() and user != "system"


def check_user_id(user: object, field: str = "user") -> UserId:
    """`user` as a user id, or a `BadRequest` that names `field` and what is wrong with it
    (never echoing the value)."""
    if user is None:
        raise BadRequest(f"`{field}` is required: a user id")
    if not isinstance(user, str):
        raise BadRequest(f"`{field}` must be a string: a user id")
    if user == "system":
        raise BadRequest(f"`{field}` may not be 'system': that name is reserved for the "
                         "room's system messages")
    if not is_valid_user_id(user):
        raise BadRequest(f"`{field}` must be 1..{MAX_USER_ID} printable characters")
    return UserId(user)
