"""Web pages and the API: CORS for the origins allowed, nothing done for any other."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from api_server import serving
from conftest import RunningWorker, run_onward
from onward.api_keys import ApiKeys
from onward.client import OnwardClient
from onward.starter.api import ApiSettings, api_app
from onward.starter.api.origins import web_origin

SLOW = {"prompt": "p", "script": [{"text": "slow", "delay_s": 30}]}
EVIL = "https://evil.example"
APP = "https://app.example"


def test_origins_are_read_as_a_browser_writes_them() -> None:
    assert web_origin("https://App.Example.com:443/") == "https://app.example.com"
    assert web_origin(" http://localhost:3000 ") == "http://localhost:3000"
    assert web_origin("http://[::1]:80") == "http://[::1]"
    assert web_origin("*") == "*"
    for wrong in ("app.example.com", "https://app.example.com/ui", "ftp://x", "http://x:99999"):
        with pytest.raises(ValueError, match="is not a web origin"):
            web_origin(wrong)


async def test_a_foreign_page_cannot_drive_a_keyless_api(worker: RunningWorker) -> None:
    # A page of any site its user visits could POST a cancel (no body: no preflight)
    # or an approve to the API on loopback, or open its WebSocket (no CORS at all).
    onward = OnwardClient(worker.client, task_queue=worker.task_queue)
    async with (
        serving(api_app(ApiSettings(), onward)) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):
        run = (await http.post("/v1/runs", json=SLOW)).json()
        url = run["status_url"]
        refused = await http.post(f"{url}/cancel", headers={"Origin": EVIL})
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == {
            "type": "OriginNotAllowed",
            "message": f"a web page of {EVIL} may not call this server; allow its origin with "
            "onward api --cors-origin (ONWARD_API_CORS_ORIGINS)",
            "problems": [],
        }
        with pytest.raises(InvalidStatus) as socket:
            async with connect("ws" + base.removeprefix("http") + f"{url}/ws", origin=Origin(EVIL)):
                pass
        assert socket.value.response.status_code == 403
        # A DNS rebinding makes the page its own origin: its Host gives it away.
        rebound = await http.post(
            f"{url}/cancel", headers={"Host": "evil.example:80", "Origin": "http://evil.example"}
        )
        assert rebound.status_code == 403 and "loopback" in rebound.json()["error"]["message"]
        assert (await http.get(url)).json()["state"] == "running"
        # The API's own pages (/docs) are their own origin; curl and SDKs send none.
        assert (await http.post(f"{url}/pause", headers={"Origin": base})).status_code == 200
        assert (await http.post(f"{url}/cancel")).status_code == 200


async def test_an_allowed_origin_gets_cors_answers(worker: RunningWorker, tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    key = ApiKeys.add(keys_file, "acme")
    onward = OnwardClient(worker.client, task_queue=worker.task_queue)
    settings = ApiSettings(keys=ApiKeys.load(keys_file), cors_origins=[APP])
    async with (
        serving(api_app(settings, onward)) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):
        preflight = await http.options(
            "/v1/runs",
            headers={
                "Origin": APP,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == APP
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        auth = {"Origin": APP, "Authorization": f"Bearer {key}"}
        created = await http.post("/v1/runs", json=SLOW, headers=auth)
        assert created.status_code == 202, created.text
        assert created.headers["access-control-allow-origin"] == APP
        assert "location" in created.headers["access-control-expose-headers"].lower()
        # Errors carry the headers too, so the page can read why.
        unauthorized = await http.get("/v1/runs", headers={"Origin": APP})
        assert unauthorized.status_code == 401
        assert unauthorized.headers["access-control-allow-origin"] == APP
        url = created.json()["status_url"]
        other = await http.post(f"{url}/cancel", headers={**auth, "Origin": EVIL})
        assert other.status_code == 403
        assert "access-control-allow-origin" not in other.headers
        cancelled = await http.post(f"{url}/cancel", headers=auth)
        assert cancelled.status_code == 200, cancelled.text


async def test_cors_origins_are_checked_before_the_api_serves(tmp_path: Path) -> None:
    env = {"ONWARD_API_KEYS_FILE": ""}
    path = await run_onward("api", "--cors-origin", "https://app.example/ui", env=env)
    assert path.code == 2 and "is not a web origin" in path.stderr
    listed = await run_onward("api", env={**env, "ONWARD_API_CORS_ORIGINS": f"{APP},app.example"})
    assert listed.code == 2
    assert "ONWARD_API_CORS_ORIGINS: 'app.example' is not a web origin" in listed.stderr
    anyone = await run_onward("api", "--cors-origin", "*", env=env)
    assert anyone.code == 2 and "any web page drive the API" in anyone.stderr
    assert "Traceback" not in path.stderr + listed.stderr + anyone.stderr
