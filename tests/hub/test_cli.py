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
    ((), {"CONFIDE_RATE_LIMIT_PER_S": "nan"}, "rate_limit_per_s: must be a finite number"),
    ((), {"CONFIDE_HEARTBEAT_S": "inf"}, "heartbeat_s: must be a finite number"),
    (("--join-opens-min", "nan"), {}, "join_opens_min: must be a finite number"),
    (("--graceful-shutdown-s", "-1"), {}, "graceful_shutdown_s: must be 0 or more"),
    (("--token-ttl-s", "2592001"), {}, "token_ttl_s: tokens issued here live at most"),
    (("--host", ""), {}, "host: empty"),
    (("--max-frame-bytes", "10"), {}, "max_frame_bytes: at least 9216"),
    (("--public-url", "not a url"), {}, "public_url: must be an http"),
    (("--jwt-public-key", "/etc/hostname"), {}, "jwt_public_key: only with"),
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


def test_serve_refuses_a_data_folder_it_cannot_use_naming_it(tmp_path: Path) -> None:
    a_file = tmp_path / "plain-file"
    a_file.write_text("not a folder")
    result = run("serve", "--port", "0", "--data", str(a_file))
    assert result.returncode == 2, result.stderr
    assert "configuration error: data: cannot use" in result.stderr
    assert "Traceback" not in result.stderr

    keyed = tmp_path / "key-is-a-folder"
    (keyed / "node.key").mkdir(parents=True)
    for command in (("serve", "--port", "0"), ("token", "--user", "u", "--role", "client")):
        result = run(*command, "--data", str(keyed))
        assert result.returncode == 2, result.stderr
        assert "node.key" in result.stderr and "Traceback" not in result.stderr


def test_serve_refuses_a_database_that_does_not_open_and_leaves_it_alone(tmp_path: Path
                                                                         ) -> None:
    data = tmp_path / "d"
    data.mkdir()
    junk = b"these bytes are not an SQLite database" * 100
    (data / "confide.db").write_bytes(junk)
    result = run("serve", "--port", "0", "--data", str(data))
    assert result.returncode == 2, result.stderr
    assert "confide.db does not open as an SQLite database" in result.stderr
    assert (data / "confide.db").read_bytes() == junk  # nothing lost
    assert sorted(p.name for p in data.iterdir()) == ["confide.db"]  # nothing added


def test_serve_refuses_a_jwt_public_key_that_is_not_one(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    private = tmp_path / "private.pem"
    private.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    for algorithm, key, says in (("RS256", not_pem, "is not a PEM public key for RS256"),
                                 ("EdDSA", private, "holds a private key")):
        result = run("serve", "--port", "0", "--data", str(tmp_path / "d"),
                     "--jwt-algorithm", algorithm, "--jwt-public-key", str(key))
        assert result.returncode == 2, result.stderr
        assert f"jwt_public_key: {key} {says}" in result.stderr


def test_token_refuses_a_lifetime_outside_one_second_to_thirty_days(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    from server.auth import load_or_create_key

    load_or_create_key(data)
    for ttl in ("0", "-100", str(30 * 86400 + 1)):
        result = run("token", "--data", str(data), "--user", "u", "--role", "client",
                     "--ttl", ttl)
        assert result.returncode == 2 and "`ttl` must be 1..2592000 seconds" in result.stderr
    ok = run("token", "--data", str(data), "--user", "u", "--role", "client", "--ttl", "60")
    assert ok.returncode == 0 and ok.stdout.count(".") == 2
