"""``onward codec-server``: Temporal's remote codec protocol, so the Web UI can read encrypted runs.

With ``ONWARD_ENCRYPTION_KEYS`` set, payloads in Temporal are ciphertext (see
:mod:`onward.encryption`). The Web UI decodes them by POSTing them to a codec
server: set its address in the UI (Settings, "Codec Server", or the
``TEMPORAL_CODEC_ENDPOINT`` of the UI server). The server answers
``POST /decode`` and ``POST /encode`` with Temporal's JSON form of payloads
(``{"payloads": [{"metadata": {...}, "data": "<base64>"}]}``) and allows the
UI's origin by CORS, nothing else. Whoever can reach it can decrypt: bind it
to loopback (the default) or put it behind your own authentication.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from fastapi import FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from temporalio.api.common.v1 import Payload, Payloads

from onward.encryption import EncryptionCodec, EncryptionError
from onward.starter.api.origins import OriginGate, web_origin
from onward.starter.devserver import DevServer

__all__ = ["DEFAULT_UI_ORIGINS", "MAX_BODY_BYTES", "codec_app", "ui_origin", "ui_origins"]

DEFAULT_UI_ORIGINS = ("http://localhost:8233", "http://127.0.0.1:8233")
"""The embedded dev server's Web UI on its default port; pass the origins of your own UI."""
MAX_BODY_BYTES = 8 * 1024 * 1024
"""Larger requests are refused (the UI sends a run's payloads a few at a time)."""


def ui_origins(server: DevServer | None) -> list[str]:
    """The origins of ``server``'s Web UI (``onward dev --ui-port``); the default port's
    without one."""
    if server is None:
        return list(DEFAULT_UI_ORIGINS)
    return [f"http://localhost:{server.ui_port}", f"http://127.0.0.1:{server.ui_port}"]


def ui_origin(text: str) -> str:
    """``text`` as the origin CORS compares with a browser's ``Origin`` header
    (:func:`~onward.starter.api.origins.web_origin`: a trailing ``/``, which would
    match no request and leave the UI on ciphertext with no hint why, is dropped).

    Raises:
        ValueError: ``*`` (every site could have the codec decrypt for it), or not
            ``http(s)://host[:port]``.
    """
    if text.strip() == "*":
        raise ValueError(
            "'*' would let every web page have the codec server decrypt for it: "
            "name the Web UI's origin, e.g. http://localhost:8233"
        )
    return web_origin(text)


def codec_app(
    codec: EncryptionCodec,
    ui_origins: Sequence[str] = DEFAULT_UI_ORIGINS,
    loopback_only: bool = False,
) -> FastAPI:
    """The codec server's ASGI app (serve it with uvicorn).

    ``loopback_only`` (a server listening on loopback): a request addressed to any
    other name is refused, as a page a DNS rebinding points here would send.
    """
    app = FastAPI(title="Onward codec server", docs_url=None, redoc_url=None)
    app.add_middleware(
        OriginGate,
        allowed=ui_origins,
        loopback_only=loopback_only,
        flag="onward codec-server --ui-origin",
        own_pages=False,
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(ui_origins),
        allow_methods=["POST", "OPTIONS"],
        allow_headers=["content-type", "x-namespace", "authorization"],
        allow_credentials=True,
    )

    async def payloads_of(request: Request) -> Payloads:
        body = await _capped_body(request)
        try:
            return ParseDict(json.loads(body or b"{}"), Payloads())
        except (ParseError, ValueError, RecursionError) as err:  # nested past the parser
            raise HTTPException(400, f'expected {{"payloads": [...]}}: {err}') from None

    def answer(payloads: Sequence[Payload]) -> JSONResponse:
        return JSONResponse(MessageToDict(Payloads(payloads=payloads)))

    @app.post("/decode")
    async def decode(request: Request) -> JSONResponse:
        payloads = await payloads_of(request)
        try:
            return answer(await codec.decode(list(payloads.payloads)))
        except EncryptionError as err:
            raise HTTPException(422, str(err)) from None

    @app.post("/encode")
    async def encode(request: Request) -> JSONResponse:
        payloads = await payloads_of(request)
        return answer(await codec.encode(list(payloads.payloads)))

    return app


async def _capped_body(request: Request) -> bytes:
    """The body, refused (413) as soon as it is known to be over :data:`MAX_BODY_BYTES`:
    by its ``Content-Length``, or while it arrives, never after holding all of it."""
    too_large = HTTPException(413, f"the body is over {MAX_BODY_BYTES} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise too_large
    return bytes(body)
