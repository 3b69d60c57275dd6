"""TURN credentials in coturn's REST-API scheme (use-auth-secret) and the ice_servers list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from server.ids import UserId
from signaling.turn import MAX_TTL, IceSettings, ice_servers, turn_credentials

NOW = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)  # unix time 1741014000
USER = UserId("u-client")
SECRET = "north-secret"


def test_credentials_match_coturn_scheme() -> None:
    creds = turn_credentials(USER, NOW, SECRET, timedelta(seconds=300))
    assert creds.username == "1741014300:u-client"  # "<expiry unix time>:<user id>"
    # printf '%s' 1741014300:u-client | openssl dgst -sha1 -hmac north-secret -binary | base64
    assert creds.credential == "g8aDFy5ibs+tOjNM0JetxgenXlg="
    assert creds.expires_at == NOW + timedelta(seconds=300)


def test_credentials_never_outlive_the_cap() -> None:
    with pytest.raises(ValueError):
        turn_credentials(USER, NOW, SECRET, MAX_TTL + timedelta(seconds=1))
    with pytest.raises(ValueError):
        IceSettings(ttl=timedelta(minutes=10))
    short = turn_credentials(USER, NOW, SECRET, timedelta(seconds=90))
    assert short.username.startswith(f"{int(NOW.timestamp()) + 90}:")


def test_ice_servers_stun_then_turn_with_fresh_credentials() -> None:
    settings = IceSettings(
        stun_urls=("stun:turn.example.org:3478",),
        turn_urls=("turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"),
        secret=SECRET,
    )
    servers = ice_servers(USER, NOW, settings)
    assert servers[0] == {"urls": ["stun:turn.example.org:3478"]}
    assert servers[1]["urls"] == list(settings.turn_urls)
    assert servers[1].get("username") == "1741014300:u-client"
    assert servers[1].get("credential") == "g8aDFy5ibs+tOjNM0JetxgenXlg="
    later = ice_servers(USER, NOW + timedelta(minutes=40), settings)
    assert later[1].get("username") == "1741016700:u-client"


def test_no_secret_means_stun_only() -> None:
    settings = IceSettings(
        stun_urls=("stun:stun.example.org",), turn_urls=("turn:turn.example.org",)
    )
    assert ice_servers(USER, NOW, settings) == [{"urls": ["stun:stun.example.org"]}]
    assert ice_servers(USER, NOW, IceSettings()) == []


def test_secret_never_in_repr_and_urls_are_checked() -> None:
    settings = IceSettings(turn_urls=("turn:t.example.org",), secret=SECRET)
    assert SECRET not in repr(settings)
    creds = turn_credentials(USER, NOW, SECRET, MAX_TTL)
    assert creds.credential not in repr(creds)
    with pytest.raises(ValueError):
        IceSettings(stun_urls=("turn:t.example.org",))
    with pytest.raises(ValueError):
        IceSettings(turn_urls=("stun:t.example.org",))
    with pytest.raises(ValueError):
        IceSettings(secret="")
    with pytest.raises(ValueError):
        turn_credentials(USER, datetime(2025, 3, 3), SECRET, MAX_TTL)
