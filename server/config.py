"""The node's settings: one frozen record, read from flags and `CONFIDE_*` environment variables.

Every setting has a flag (`--rate-limit-per-s`) and an environment variable
(`CONFIDE_RATE_LIMIT_PER_S`); a flag wins over the environment, the environment over
the default. A value that does not parse, or is out of range, stops start-up with a
message naming the setting, what was given and what is accepted.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it."""


@dataclass(frozen=True)
class Settings:
    """What a node is configured with. Field docs are the configuration table of the README."""

    data: Path = Path("./confide-data")
    host: str = "127.0.0.1"
    port: int = 8080
    node: str = ""  # the node's id in `welcome`; defaults to host:port
    redis: str = ""  # Redis URL: run as one node of many (later issue)
    database: str = ""  # PostgreSQL URL (later issue)
    # Tokens
    jwt_algorithm: str = "HS256"  # HS256 with the node's key, or RS256 / EdDSA with jwt_public_key
    jwt_public_key: str = ""  # path to a PEM public key of an external identity provider
    jwt_issuer: str = ""  # if set, tokens must carry this `iss`
    token_ttl_s: int = 3600
    # Protocol limits
    hello_timeout_s: float = 10.0
    heartbeat_s: float = 20.0
    max_frame_bytes: int = 65536
    max_text_chars: int = 20000
    max_subscriptions: int = 1000
    max_connections_per_user: int = 10
    rate_limit_per_s: float = 20.0
    rate_limit_burst: int = 100
    rate_limit_strikes: int = 50  # refused frames in a row before close 4429
    outgoing_queue: int = 1024  # frames waiting behind a full send buffer before close 4408
    replay_page: int = 200  # messages per page when streaming a backlog
    history_max: int = 200
    # Store
    sqlite_synchronous: str = "FULL"  # FULL: fsync each group commit; NORMAL: survive kill -9 only
    group_commit_max: int = 512
    # Sessions
    public_url: str = ""  # base URL in join links; defaults to http://host:port
    billing_webhook_url: str = ""  # charges are POSTed here, signed; empty: not sent
    billing_webhook_secret: str = ""  # HMAC-SHA256 key for the Confide-Signature header
    deadline_poll_s: float = 30.0  # longest sleep between looks at the deadline jobs
    # Live sessions
    join_opens_min: float = 10.0  # R10: joining opens this many minutes before the start
    rejoin_grace_s: float = 60.0  # a dropped participant may rejoin within this
    stun_urls: str = ""  # comma-separated stun: URLs for ice_servers
    turn_urls: str = ""  # comma-separated turn:/turns: URLs for ice_servers
    turn_secret: str = ""  # coturn static-auth-secret (use-auth-secret); empty: no TURN
    turn_ttl_s: int = 300  # lifetime of TURN credentials (at most 300)
    max_signal_bytes: int = 65536  # largest live.signal `data`
    # Server
    graceful_shutdown_s: float = 10.0
    log_level: str = "info"

    def node_id(self) -> str:
        return self.node or f"{self.host}:{self.port}"

    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"


# Settings whose value must be strictly positive.
_POSITIVE = {
    "hello_timeout_s", "heartbeat_s", "max_frame_bytes", "max_text_chars", "max_subscriptions",
    "max_connections_per_user", "rate_limit_per_s", "rate_limit_burst", "rate_limit_strikes",
    "outgoing_queue", "replay_page", "history_max", "group_commit_max", "token_ttl_s",
    "deadline_poll_s", "rejoin_grace_s", "turn_ttl_s", "max_signal_bytes",
}
MAX_TOKEN_TTL_S = 30 * 86400  # the longest a token issued by a node lives
MAX_TOKEN_CHARS = 8192  # the longest token a node reads
MIN_FRAME_BYTES = MAX_TOKEN_CHARS + 1024  # a hello: its token and a little more
_CHOICES = {
    "jwt_algorithm": ("HS256", "RS256", "EdDSA"),
    "sqlite_synchronous": ("FULL", "NORMAL"),
    "log_level": ("debug", "info", "warning", "error"),
}


def make_data_folder(data: Path) -> None:
    """The node's data folder, made if missing (mode 0700); a `ConfigError` naming what
    is in the way otherwise."""
    try:
        data.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"data: cannot use {exc.filename or data}: "
                          f"{exc.strerror or exc}") from None


def env_name(name: str) -> str:
    return "CONFIDE_" + name.upper()


def _convert(name: str, raw: object, kind: type) -> object:
    if isinstance(raw, float) and kind is float and not math.isfinite(raw):
        raise ConfigError(f"{name}: must be a finite number, got {raw}")
    if isinstance(raw, kind) and not (kind is int and isinstance(raw, bool)):
        return raw
    text = str(raw).strip()
    try:
        if kind is Path:
            if not text:
                raise ValueError("empty path")
            return Path(text)
        if kind is int:
            return int(text)
        if kind is float:
            number = float(text)
            if not math.isfinite(number):
                raise ConfigError(f"{name}: must be a finite number, got {text!r}")
            return number
        if kind is str:
            return text
    except ConfigError:
        raise
    except ValueError:
        pass
    raise ConfigError(f"{name}: {text!r} is not a valid {kind.__name__}")


def load(overrides: Mapping[str, object] | None = None,
         environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from defaults, then `environ` (`CONFIDE_*`), then `overrides` (flags)."""
    environ = os.environ if environ is None else environ
    overrides = overrides or {}
    values: dict[str, object] = {}
    types = {"Path": Path, "int": int, "float": float, "str": str}
    for f in dataclasses.fields(Settings):
        kind = types[str(f.type)]
        raw: object | None = overrides.get(f.name)
        if raw is None and env_name(f.name) in environ:
            raw = environ[env_name(f.name)]
        if raw is None:
            continue
        value = _convert(f.name, raw, kind)
        if f.name in _POSITIVE and isinstance(value, int | float) and value <= 0:
            raise ConfigError(f"{f.name}: must be greater than 0, got {value}")
        choices = _CHOICES.get(f.name)
        if choices is not None:
            value = _canonical_choice(f.name, str(value), choices)
        values[f.name] = value
    port = values.get("port", Settings.port)
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"port: must be 0..65535, got {port}")
    settings = Settings(**values)  # type: ignore[arg-type]
    if settings.jwt_algorithm != "HS256" and not settings.jwt_public_key:
        raise ConfigError(f"jwt_algorithm: {settings.jwt_algorithm} needs jwt_public_key "
                          "(a PEM file)")
    for name, schemes in (("stun_urls", ("stun:", "stuns:")), ("turn_urls", ("turn:", "turns:"))):
        for url in filter(None, (u.strip() for u in getattr(settings, name).split(","))):
            if not url.startswith(schemes):
                raise ConfigError(f"{name}: {url[:60]!r} must start with {' or '.join(schemes)}")
    if not settings.host:
        raise ConfigError("host: empty; give an address (0.0.0.0 listens on every interface)")
    if settings.max_frame_bytes < MIN_FRAME_BYTES:
        raise ConfigError(f"max_frame_bytes: at least {MIN_FRAME_BYTES}, so that a hello "
                          "with its token fits")
    if settings.public_url and not settings.public_url.startswith(("http://", "https://")):
        raise ConfigError("public_url: must be an http:// or https:// URL")
    if settings.jwt_algorithm == "HS256" and settings.jwt_public_key:
        raise ConfigError("jwt_public_key: only with jwt_algorithm RS256 or EdDSA (HS256 "
                          "uses the node's own key)")
    if settings.token_ttl_s > MAX_TOKEN_TTL_S:
        raise ConfigError(f"token_ttl_s: tokens issued here live at most {MAX_TOKEN_TTL_S} s "
                          "(30 days)")
    if settings.graceful_shutdown_s < 0:
        raise ConfigError("graceful_shutdown_s: must be 0 or more")
    if settings.turn_ttl_s > 300:
        raise ConfigError("turn_ttl_s: TURN credentials live at most 300 seconds")
    if settings.join_opens_min < 0:
        raise ConfigError("join_opens_min: must be 0 or more")
    if bool(settings.turn_urls) and not settings.turn_secret:
        raise ConfigError("turn_urls needs turn_secret (coturn's static-auth-secret)")
    if bool(settings.billing_webhook_url) != bool(settings.billing_webhook_secret):
        raise ConfigError("billing_webhook_url and billing_webhook_secret go together")
    if settings.billing_webhook_url and not settings.billing_webhook_url.startswith(
            ("http://", "https://")):
        raise ConfigError("billing_webhook_url: must be an http:// or https:// URL")
    return settings


def _canonical_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    for choice in choices:
        if choice.lower() == value.lower():
            return choice
    raise ConfigError(f"{name}: {value!r} is not one of {', '.join(choices)}")
