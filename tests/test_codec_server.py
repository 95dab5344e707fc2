"""The codec server over real HTTP: what the Web UI sends, what it gets back."""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from google.protobuf.json_format import MessageToDict
from temporalio.api.common.v1 import Payload, Payloads

from conftest import eventually, run_onward, spawn_onward
from onward.encryption import EncryptionCodec, parse_keys
from onward.starter.codec_server import (
    DEFAULT_UI_ORIGINS,
    MAX_BODY_BYTES,
    codec_app,
    ui_origin,
    ui_origins,
)
from onward.starter.devserver import DevServer

UI = "http://localhost:8233"


def codec() -> EncryptionCodec:
    return EncryptionCodec(parse_keys(f"k:{base64.b64encode(os.urandom(32)).decode()}"))


def client(app_codec: EncryptionCodec) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=codec_app(app_codec))
    return httpx.AsyncClient(transport=transport, base_url="http://codec")


async def test_the_ui_decodes_what_workers_encrypted() -> None:
    shared = codec()
    original = Payload(metadata={"encoding": b"json/plain"}, data=b'{"prompt": "secret"}')
    sealed = await shared.encode([original])
    async with client(shared) as http:
        response = await http.post(
            "/decode",
            json=MessageToDict(Payloads(payloads=sealed)),
            headers={"Origin": UI, "X-Namespace": "default"},
        )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == UI
    decoded = response.json()["payloads"][0]
    assert base64.b64decode(decoded["data"]) == b'{"prompt": "secret"}'
    assert base64.b64decode(decoded["metadata"]["encoding"]) == b"json/plain"


async def test_encode_then_decode_round_trips() -> None:
    shared = codec()
    body = MessageToDict(
        Payloads(payloads=[Payload(metadata={"encoding": b"json/plain"}, data=b"1")])
    )
    async with client(shared) as http:
        sealed = (await http.post("/encode", json=body)).json()
        assert (
            base64.b64decode(sealed["payloads"][0]["metadata"]["encoding"]) == b"binary/encrypted"
        )
        opened = (await http.post("/decode", json=sealed)).json()
    assert opened == body


async def test_cors_preflight_allows_only_the_ui() -> None:
    async with client(codec()) as http:
        allowed = await http.options(
            "/decode",
            headers={
                "Origin": UI,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace",
            },
        )
        refused = await http.options(
            "/decode",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == UI
    assert "access-control-allow-origin" not in refused.headers


async def test_bad_bodies_and_foreign_keys_get_clear_errors() -> None:
    async with client(codec()) as http:
        bad = await http.post("/decode", content=b"not json")
        sealed = await codec().encode([Payload(data=b"x")])  # another key
        foreign = await http.post("/decode", json=MessageToDict(Payloads(payloads=sealed)))
        deep = await http.post("/decode", content=b"[" * 100_000)  # RecursionError: a 500
    assert bad.status_code == 400 and "payloads" in bad.json()["detail"]
    assert deep.status_code == 400
    assert foreign.status_code == 422 and "integrity check" in foreign.json()["detail"]


async def test_a_cut_payload_is_a_clear_error_not_a_crash() -> None:
    shared = codec()
    [sealed] = await shared.encode([Payload(data=b"x")])
    sealed.data = sealed.data[:4]
    async with client(shared) as http:
        cut = await http.post("/decode", json=MessageToDict(Payloads(payloads=[sealed])))
    assert cut.status_code == 422 and "integrity check" in cut.json()["detail"]


async def test_a_body_over_the_limit_is_refused_before_it_is_all_read() -> None:
    chunk = b" " * (1024 * 1024)
    sent = 0

    async def huge() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(4 * MAX_BODY_BYTES // len(chunk)):
            sent += len(chunk)
            yield chunk

    async with client(codec()) as http:
        streamed = await http.post("/decode", content=huge())  # chunked: no length said
        declared = await http.post(
            "/decode", content=b"{}", headers={"Content-Length": str(MAX_BODY_BYTES + 1)}
        )
    assert streamed.status_code == 413 and "over" in streamed.json()["detail"]
    assert sent <= MAX_BODY_BYTES + 2 * len(chunk)
    assert declared.status_code == 413


async def test_the_command_serves_the_codec_on_a_real_port() -> None:
    keys = f"k:{base64.b64encode(os.urandom(32)).decode()}"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = await spawn_onward(
        "codec-server", "--port", str(port), env={"ONWARD_ENCRYPTION_KEYS": keys}
    )
    try:
        sealed = await EncryptionCodec(parse_keys(keys)).encode([Payload(data=b'"hi"')])
        async with httpx.AsyncClient() as http:

            async def answers() -> bool:
                try:
                    await http.options(f"http://127.0.0.1:{port}/decode")
                except httpx.TransportError:
                    return False
                return True

            await eventually(answers)
            response = await http.post(
                f"http://127.0.0.1:{port}/decode", json=MessageToDict(Payloads(payloads=sealed))
            )
        assert base64.b64decode(response.json()["payloads"][0]["data"]) == b'"hi"'
    finally:
        process.terminate()
        await process.wait()


async def test_the_command_needs_the_keys() -> None:
    done = await run_onward("codec-server", env={"ONWARD_ENCRYPTION_KEYS": ""})
    assert done.code == 2
    assert "ONWARD_ENCRYPTION_KEYS is not set" in done.stderr


async def test_a_port_out_of_range_is_a_usage_error() -> None:
    keys = {"ONWARD_ENCRYPTION_KEYS": f"k:{base64.b64encode(os.urandom(32)).decode()}"}
    done = await run_onward("codec-server", "--port", "99999", env=keys)
    assert done.code == 2, done.stderr
    assert "99999 is not a port (1 to 65535)" in done.stderr
    assert "Traceback" not in done.stderr and "codec server on" not in done.stdout


async def test_a_ui_origin_must_be_one_origin() -> None:
    """'*' let every web page read what the codec decrypts (CORS with credentials);
    a trailing slash matched no browser's Origin, so the UI showed ciphertext."""
    keys = {"ONWARD_ENCRYPTION_KEYS": f"k:{base64.b64encode(os.urandom(32)).decode()}"}
    for given, problem in (("*", "every web page"), ("localhost:8233", "is not a web origin")):
        done = await run_onward("codec-server", "--ui-origin", given, env=keys)
        assert done.code == 2, done.stderr
        assert problem in done.stderr and "Traceback" not in done.stderr
    assert ui_origin("http://LocalHost:8233/") == "http://localhost:8233"
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=codec_app(codec(), [ui_origin(UI + "/")])),
        base_url="http://codec",
    ) as http:
        preflight = await http.options(
            "/decode", headers={"Origin": UI, "Access-Control-Request-Method": "POST"}
        )
    assert preflight.headers["access-control-allow-origin"] == UI


async def test_a_host_beyond_loopback_is_warned_about() -> None:
    keys = {"ONWARD_ENCRYPTION_KEYS": f"k:{base64.b64encode(os.urandom(32)).decode()}"}
    # TEST-NET-1: never this machine's, so the bind fails at once after the warning.
    done = await run_onward("codec-server", "--host", "192.0.2.1", "--port", "8702", env=keys)
    assert done.code != 0
    assert "192.0.2.1 is not loopback" in done.stderr and "whoever reaches it" in done.stderr
    with socket.socket() as taken:  # so that this one's bind fails at once too
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        quiet = await run_onward("codec-server", "--host", "127.0.0.1", "--port", port, env=keys)
    assert quiet.code != 0 and "not loopback" not in quiet.stderr


def test_the_ui_allowed_by_default_is_that_of_onward_dev_on_its_port(tmp_path: Path) -> None:
    assert ui_origins(None) == list(DEFAULT_UI_ORIGINS)  # no dev server of this ONWARD_HOME
    server = DevServer(home=tmp_path, port=7300, ui_port=8300)  # onward dev --ui-port 8300
    assert ui_origins(server) == ["http://localhost:8300", "http://127.0.0.1:8300"]


async def test_a_loopback_codec_server_answers_no_other_host_or_page() -> None:
    # On loopback it has no authentication: a page a DNS rebinding points at it is
    # its own origin (CORS lets it read), so only the Host its browser sends tells.
    shared = codec()
    sealed = await shared.encode([Payload(metadata={"encoding": b"json/plain"}, data=b'"s"')])
    body = MessageToDict(Payloads(payloads=sealed))
    app = codec_app(shared, [UI], loopback_only=True)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8702"
    ) as http:
        assert (await http.post("/decode", json=body, headers={"Origin": UI})).status_code == 200
        rebound = await http.post(
            "/decode",
            json=body,
            headers={"Host": "attacker.example:8702", "Origin": "http://attacker.example:8702"},
        )
        assert rebound.status_code == 403 and "loopback" in rebound.text
        foreign = await http.post("/decode", json=body, headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403 and "--ui-origin" in foreign.text
    # Off loopback (--host 0.0.0.0) a rebound page still has the server's host for its
    # origin: the codec server has no pages of its own, so that is no pass either.
    anywhere = codec_app(shared, [UI])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=anywhere), base_url="http://203.0.113.5:8702"
    ) as http:
        own = {"Origin": "http://203.0.113.5:8702"}
        assert (await http.post("/decode", json=body, headers=own)).status_code == 403
