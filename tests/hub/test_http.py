"""The fixed HTTP calls: errors in one shape, admin-only calls, and outside identity providers."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from support.client import Client
from support.nodes import RunningNode, node_in_process


async def test_healthz_and_unknown_paths_answer_in_the_error_shape(node: RunningNode) -> None:
    async with httpx.AsyncClient(base_url=node.url) as http:
        assert (await http.get("/healthz")).status_code == 200
        missing = await http.get("/v1/nothing-here")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        wrong = await http.delete("/v1/rooms")
        assert wrong.status_code == 405 and "DELETE" in wrong.json()["error"]["message"]
        plain = await http.get("/ws")  # the websocket's path, without the upgrade
        assert plain.status_code == 426 and plain.headers["upgrade"] == "websocket"
        assert "Upgrade: websocket" in plain.json()["error"]["message"]
        long_id = await http.get("/v1/rooms/" + "a" * 3000, headers=node.admin)
        assert long_id.status_code == 404 and "a" * 200 not in long_id.text
        assert long_id.json()["error"]["message"] == (
            "no such room: no id is longer than 128 characters or unprintable")


async def test_admin_calls_need_an_admin_token(node: RunningNode) -> None:
    async with httpx.AsyncClient(base_url=node.url) as http:
        body = {"client": "c", "provider": "p", "plan": "self_pay", "service": "therapy"}
        assert (await http.post("/v1/rooms", json=body)).status_code == 401
        as_client = {"authorization": "Bearer " + node.token("c")}
        r = await http.post("/v1/rooms", json=body, headers=as_client)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        r = await http.post("/v1/tokens", json={"user": "x", "role": "client"},
                            headers={"authorization": "Bearer garbage"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


async def test_refused_tokens_say_what_is_wrong_with_them(node: RunningNode) -> None:
    key = (node.settings.data / "node.key").read_bytes().strip()
    no_exp = jwt.encode({"sub": "c", "role": "client"}, key, algorithm="HS256")
    critical = jwt.encode({"sub": "c", "role": "client", "exp": int(time.time()) + 60}, key,
                          algorithm="HS256", headers={"crit": ["words-from-the-token"]})
    wrong_key = jwt.encode({"sub": "c", "role": "client", "exp": int(time.time()) + 60},
                           b"k" * 32, algorithm="HS256")
    cases = [("x" * 9000, "token is longer than 8192 characters"),
             (no_exp, "invalid token: it has no `exp` claim"),
             (wrong_key, "invalid token: its signature does not match the key"),
             ("garbage", "invalid token: not a well-formed JWT"),
             (critical, "invalid token: InvalidTokenError")]  # never the header's text
    async with httpx.AsyncClient(base_url=node.url) as http:
        for token, says in cases:
            r = await http.get("/v1/stats", headers={"authorization": "Bearer " + token})
            assert r.status_code == 401 and r.json()["error"]["message"] == says, r.text


@pytest.mark.parametrize(("body", "field"), [
    ("not json", "JSON"), ("[1, 2]", "object"),
    ('{"client": "c", "provider": "c", "plan": "self_pay"}', "different"),
    ('{"client": "c", "provider": "p", "plan": "gold"}', "plan"),
    ('{"client": "c", "provider": "p", "plan": "eap", "service": "surgery"}', "service"),
    ('{"client": "c", "provider": "p", "plan": "eap", "room": "r\u00f6\u00f6m"}', "ASCII"),
    ('{"client": "c", "provider": "p", "plan": "eap", "room": "\u0663\u0664"}', "ASCII"),
    ('{"client": "c", "provider": "p", "plan": "self_pay", "messaging": false}',
     "`messaging: false` is for `org` plans only"),
    ("[" * 30_000 + "]" * 30_000, "nested deeper than 64"),
    ('{"a": ' * 100 + "1" + "}" * 100, "nested deeper than 64"),
    ('{"client": "", "provider": "p", "plan": "eap"}', "`client` must be 1..128 printable"),
    ('{"client": "c", "plan": "eap"}', "`provider` is required"),
    ('{"client": "c", "provider": 7, "plan": "eap"}', "`provider` must be a string"),
    ('{"client": "c", "provider": "system", "plan": "eap"}', "`provider` may not be 'system'"),
])
async def test_bad_room_bodies_say_what_is_wrong(node: RunningNode, body: str,
                                                 field: str) -> None:
    async with httpx.AsyncClient(base_url=node.url) as http:
        r = await http.post("/v1/rooms", content=body, headers=node.admin)
        assert r.status_code == 400, r.text
        assert field in r.json()["error"]["message"]
        big = await http.post("/v1/rooms", content="x" * 70_000, headers=node.admin)
        assert big.status_code == 413 and big.json()["error"]["code"] == "too_large"


async def test_tokens_issued_over_http_open_a_websocket(node: RunningNode) -> None:
    async with httpx.AsyncClient(base_url=node.url) as http:
        r = await http.post("/v1/tokens", json={"user": "u9", "role": "provider", "ttl": 60},
                            headers=node.admin)
        assert r.status_code == 201
        bad = await http.post("/v1/tokens", json={"user": "u9", "role": "root"},
                              headers=node.admin)
        assert bad.status_code == 400 and "role" in bad.json()["error"]["message"]
        nobody = await http.post("/v1/tokens", json={"role": "client"}, headers=node.admin)
        assert nobody.status_code == 400
        assert "`user` is required" in nobody.json()["error"]["message"]
    client = await Client.connect(node.url, r.json()["token"])
    assert client.welcome["user"] == "u9" and client.welcome["role"] == "provider"


@pytest.mark.parametrize("algorithm", ["RS256", "EdDSA"])
async def test_tokens_of_an_outside_identity_provider_are_checked_with_its_public_key(
        tmp_path: Path, algorithm: str) -> None:
    private: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if algorithm == "RS256" else ed25519.Ed25519PrivateKey.generate())
    pem = tmp_path / "idp.pem"
    pem.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    async with node_in_process(tmp_path / "d", jwt_algorithm=algorithm,
                               jwt_public_key=str(pem)) as node:
        now = int(time.time())
        good = jwt.encode({"sub": "ana", "role": "client", "exp": now + 60}, private,
                          algorithm=algorithm)
        client = await Client.connect(node.url, good)
        assert client.welcome["user"] == "ana"
        forged = jwt.encode({"sub": "ana", "role": "admin", "exp": now + 60}, "x" * 32,
                            algorithm="HS256")
        intruder = await Client.connect(node.url, hello=False)
        await intruder.send({"t": "hello", "token": forged})
        assert (await intruder.closed())[0] == 4401
        admin = jwt.encode({"sub": "ops", "role": "admin", "exp": now + 60}, private,
                           algorithm=algorithm)
        async with httpx.AsyncClient(base_url=node.url) as http:
            r = await http.post("/v1/tokens", json={"user": "x", "role": "client"},
                                headers={"authorization": f"Bearer {admin}"})
            assert r.status_code == 403  # this node checks tokens, it issues none


async def test_join_page_is_served_and_unknown_assets_answer_in_the_error_shape(
        node: RunningNode) -> None:
    async with httpx.AsyncClient(base_url=node.url) as http:
        page = await http.get("/live/s_any")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "default-src 'none'" in page.headers["content-security-policy"]
        script = await http.get("/live/assets/live.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        missing = await http.get("/live/assets/nothing.js")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_stats_are_counts_for_admins_only(node: RunningNode) -> None:
    await Client.connect(node.url, node.token("c1"))
    async with httpx.AsyncClient(base_url=node.url) as http:
        assert (await http.get("/v1/stats", headers={
            "authorization": "Bearer " + node.token("c1")})).status_code == 403
        stats = (await http.get("/v1/stats", headers=node.admin)).json()
    assert stats["connections"] == 1 and stats["users_online"] == 1
    assert set(stats) == {"node", "connections", "users_online", "rooms_followed",
                          "delivered", "uptime_s"}


async def test_room_ids_take_ascii_letters_digits_dashes_and_underscores(node: RunningNode
                                                                          ) -> None:
    async with httpx.AsyncClient(base_url=node.url) as http:
        for room in ("__--", "Room_2-b", "x" * 64):
            r = await http.post("/v1/rooms", headers=node.admin, json={
                "client": "c", "provider": "p", "plan": "org", "messaging": False, "room": room})
            assert r.status_code == 201 and r.json()["room"] == room, r.text
            assert r.json()["messaging"] is False


async def test_json_bodies_in_any_encoding_json_allows_are_read(node: RunningNode) -> None:
    body = '{"client": "c", "provider": "p", "plan": "eap", "room": "%s"}'
    async with httpx.AsyncClient(base_url=node.url) as http:
        for n, raw in enumerate((b"\xef\xbb\xbf" + (body % "bom").encode(),
                                 (body % "utf16").encode("utf-16"),
                                 (body % "utf32").encode("utf-32"))):
            r = await http.post("/v1/rooms", content=raw, headers=node.admin)
            assert r.status_code == 201, (n, r.text)
