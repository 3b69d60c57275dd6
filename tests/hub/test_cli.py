"""The `confide` command: bad configuration is refused with a message naming the setting."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from support.nodes import CONFIDE


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CONFIDE, *args], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin", **(env or {})})


@pytest.mark.parametrize(("args", "env", "named"), [
    (("--port", "seventy"), {}, "port"),
    (("--rate-limit-per-s", "-1"), {}, "rate_limit_per_s"),
    (("--sqlite-synchronous", "sometimes"), {}, "sqlite_synchronous"),
    ((), {"CONFIDE_HEARTBEAT_S": "often"}, "heartbeat_s"),
    (("--jwt-algorithm", "RS256"), {}, "jwt_public_key"),
    (("--turn-ttl-s", "3600"), {}, "turn_ttl_s"),
    (("--billing-webhook-url", "http://127.0.0.1:9/x"), {}, "billing_webhook_secret"),
    (("--redis", "redis://127.0.0.1:6379"), {}, "--redis"),
    (("--stun-urls", "http://127.0.0.1:3478"), {}, "stun_urls"),
])
def test_serve_refuses_bad_configuration_naming_it(tmp_path: Path, args: tuple[str, ...],
                                                   env: dict[str, str], named: str) -> None:
    result = run("serve", "--port", "0", "--data", str(tmp_path / "d"), *args, env=env)
    assert result.returncode == 2, result.stderr
    assert "configuration error" in result.stderr and named in result.stderr


def test_token_needs_the_nodes_key(tmp_path: Path) -> None:
    missing = run("token", "--data", str(tmp_path / "typo"), "--user", "u", "--role", "client")
    assert missing.returncode == 2 and "no signing key" in missing.stderr
    assert not (tmp_path / "typo").exists()  # nothing created by mistake
