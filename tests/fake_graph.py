"""A fake of Meta's Graph API (the WhatsApp Cloud API part), written from Meta's
documented shapes, on a real port; and the webhook posts Meta would send.

It lives in tests/, not in the package: users who want WhatsApp without a phone or
the internet have the sandbox engine; this only stands in for Meta in zapmux's own
tests, and shipping it would suggest a supported Meta simulator.

    GET  /v23.0/{phone-number-id}?fields=…      → {display_phone_number, verified_name, id}
    POST /v23.0/{phone-number-id}/messages      → {messaging_product, contacts, messages[{id}]}
    POST /v23.0/{phone-number-id}/media         → {id}       (multipart upload)
    GET  /v23.0/{media-id}                      → {url, mime_type, sha256, file_size, id}
    GET  /download/{media-id}                   → the bytes (bearer token required)

Errors are Graph's ``{"error": {"message", "type", "code", "error_subcode",
"fbtrace_id"}}``; ``fail_next`` queues the errors the next sends answer with.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.helpers import free_port, serve

VERSION = "v23.0"


@dataclass
class Number:
    """A business phone number registered at the fake Meta."""

    token: str
    display_phone_number: str = "+55 11 98888-0000"
    verified_name: str = "Clínica Sorriso"


def graph_error(
    code: int, message: str, status: int = 400, subcode: int | None = None
) -> tuple[int, dict[str, Any]]:
    error: dict[str, Any] = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "AbCdEfGhIjK",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return status, {"error": error}


TOKEN_EXPIRED = graph_error(
    190, "Error validating access token: Session has expired.", 401, subcode=463
)
THROTTLED = graph_error(130429, "(#130429) Rate limit hit")
PAIR_RATE = graph_error(
    131056, "(#131056) (Business Account, Consumer Account) pair rate limit hit"
)
OUTSIDE_WINDOW = graph_error(131047, "(#131047) Re-engagement message")


@dataclass
class FakeGraph:
    numbers: dict[str, Number] = field(default_factory=dict)
    sent: list[dict[str, Any]] = field(default_factory=list)  # bodies of accepted sends
    wamids: list[str] = field(default_factory=list)  # the ids given to them, in order
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, auth
    fail_next: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    runner: web.AppRunner | None = None
    _ids: Any = field(default_factory=itertools.count)

    @property
    def url(self) -> str:
        """What ``ZAPMUX_CLOUD_API_URL`` is set to."""
        return f"http://127.0.0.1:{self.port}/{VERSION}"

    def register(self, phone_number_id: str, token: str, **details: str) -> Number:
        self.numbers[phone_number_id] = Number(token, **details)
        return self.numbers[phone_number_id]

    def add_media(self, data: bytes, mimetype: str) -> str:
        media_id = f"{next(self._ids) + 1000}"
        self.media[media_id] = (data, mimetype)
        return media_id

    # --- the server -------------------------------------------------------------------
    async def __aenter__(self) -> FakeGraph:
        app = web.Application()
        app.router.add_get(f"/{VERSION}/{{node}}", self._get_node)
        app.router.add_post(f"/{VERSION}/{{number}}/messages", self._messages)
        app.router.add_post(f"/{VERSION}/{{number}}/media", self._upload)
        app.router.add_get("/download/{media}", self._download)
        self.runner = await serve(app, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.runner:
            await self.runner.cleanup()

    def _auth(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        self.requests.append((request.method, request.path, header or None))
        return header[7:] if header.startswith("Bearer ") else None

    def _number(self, request: web.Request, number_id: str) -> Number | web.Response:
        token = self._auth(request)
        number = self.numbers.get(number_id)
        if token is None or (number is not None and number.token != token):
            return _answer(
                graph_error(190, "Invalid OAuth access token - Cannot parse access token", 401)
            )
        if number is None:
            return _answer(
                graph_error(
                    100,
                    f"Unsupported get request. Object with ID '{number_id}' does not exist",
                    subcode=33,
                )
            )
        return number

    async def _get_node(self, request: web.Request) -> web.Response:
        node = request.match_info["node"]
        if node in self.media:
            self._auth(request)
            data, mimetype = self.media[node]
            return web.json_response(
                {
                    "messaging_product": "whatsapp",
                    "url": f"http://127.0.0.1:{self.port}/download/{node}",
                    "mime_type": mimetype,
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "file_size": len(data),
                    "id": node,
                }
            )
        number = self._number(request, node)
        if isinstance(number, web.Response):
            return number
        return web.json_response(
            {
                "display_phone_number": number.display_phone_number,
                "verified_name": number.verified_name,
                "id": node,
            }
        )

    async def _messages(self, request: web.Request) -> web.Response:
        number = self._number(request, request.match_info["number"])
        if isinstance(number, web.Response):
            return number
        body = await request.json()
        if body.get("status") == "read":
            return web.json_response({"success": True})
        if self.fail_next:
            return _answer(self.fail_next.pop(0))
        if body.get("messaging_product") != "whatsapp" or not body.get("to"):
            return _answer(graph_error(100, "(#100) Invalid parameter"))
        self.sent.append(body)
        wamid = f"wamid.HBgN{next(self._ids):08d}FAKE"
        self.wamids.append(wamid)
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                "messages": [{"id": wamid}],
            }
        )

    async def _upload(self, request: web.Request) -> web.Response:
        number = self._number(request, request.match_info["number"])
        if isinstance(number, web.Response):
            return number
        form = await request.post()
        upload = form.get("file")
        if form.get("messaging_product") != "whatsapp" or not isinstance(upload, web.FileField):
            return _answer(graph_error(100, "(#100) The parameter file is required"))
        return web.json_response({"id": self.add_media(upload.file.read(), str(form.get("type")))})

    async def _download(self, request: web.Request) -> web.Response:
        if self._auth(request) is None:
            return web.Response(status=401)
        data, mimetype = self.media[request.match_info["media"]]
        return web.Response(body=data, content_type=mimetype)


def _answer(error: tuple[int, dict[str, Any]]) -> web.Response:
    status, body = error
    return web.json_response(body, status=status)


# --- what Meta posts to the webhook --------------------------------------------------
def post(phone_number_id: str, value: dict[str, Any]) -> dict[str, Any]:
    """A webhook post for one business number (``value`` without its metadata)."""
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "5511988880000",
                                "phone_number_id": phone_number_id,
                            },
                            **value,
                        },
                    }
                ],
            }
        ],
    }


def message_post(
    phone_number_id: str,
    sender: str,
    message: dict[str, Any],
    name: str = "Maria Cliente",
    message_id: str | None = None,
) -> dict[str, Any]:
    """A customer's message: ``message`` is its typed part, e.g. ``{"type": "text",
    "text": {"body": "oi"}}``."""
    return post(
        phone_number_id,
        {
            "contacts": [{"profile": {"name": name}, "wa_id": sender}],
            "messages": [
                {
                    "from": sender,
                    "id": message_id or f"wamid.IN{time.time_ns()}",
                    "timestamp": str(int(time.time())),
                    **message,
                }
            ],
        },
    )


def status_post(
    phone_number_id: str,
    wamid: str,
    status: str,
    recipient: str,
    error_code: int | None = None,
) -> dict[str, Any]:
    """What became of a message the business sent."""
    item: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(int(time.time())),
        "recipient_id": recipient,
    }
    if error_code is not None:
        item["errors"] = [
            {
                "code": error_code,
                "title": "Re-engagement message"
                if error_code == 131047
                else "Message undeliverable",
                "message": "Re-engagement message",
                "error_data": {
                    "details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."
                },
            }
        ]
    return post(phone_number_id, {"statuses": [item]})


def signed(body: dict[str, Any], app_secret: str) -> tuple[bytes, dict[str, str]]:
    """The raw body and the headers Meta sends with it (``X-Hub-Signature-256``)."""
    raw = json.dumps(body).encode()
    digest = hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}
