"""Bad input of every kind gets a clear 4xx in the error shape and changes nothing.

Path tricks go over a raw socket so that no client library normalises them first.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import LiveServer, make_settings, wait_for
from tests.process import ServerProcess
from tests.security.common import PHONE, assert_error

# As they would be typed into a URL path (percent-encoded where a client must).
BAD_PATH_IDS = [
    "..",
    "%2e%2e",
    ".hidden",
    "-x",
    "a" * 65,
    "%00",
    "a%0Ab",
    "%1B%5B31m",
    "%C3%A9",
    "%E2%80%AEevil",
    "a%20b",
    "a%5Cb",
    "..%5C..%5Cetc",
    "%252e%252e",
]
# These decode to a "/": no route matches, yet the id as written is named as the problem.
NO_ROUTE_PATH_IDS = ["a%2Fb", "%2F", "..%2F..%2Fetc", "%2e%2e%2f"]
# As they would arrive in a JSON body.
BAD_BODY_IDS: list[Any] = [
    "..",
    ".hidden",
    "-x",
    "a" * 65,
    "a/b",
    "../../etc/passwd",
    "%2e%2e",
    "%2F",
    "a\x00b",
    "a\nb",
    "\x1b[31m",
    "é",
    "a b",
    "a\\b",
    "",
    -1,
]
PATH_ROUTES = [
    ("GET", "/tenants/{}/status"),
    ("GET", "/tenants/{}/qr"),
    ("POST", "/tenants/{}/send"),
    ("POST", "/send/{}"),
    ("POST", "/restart/{}"),
    ("POST", "/tenants/{}/start"),
    ("POST", "/tenants/{}/logout"),
    ("PUT", "/tenants/{}/webhook"),
    ("GET", "/tenants/{}/messages"),
    ("GET", "/tenants/{}/events"),
    ("POST", "/tenants/{}/token"),
    ("DELETE", "/tenants/{}"),
    ("POST", "/sandbox/tenants/{}/fault"),
]
PATH_BODY = {"phone": PHONE, "message": "x", "url": "http://127.0.0.1:9/h", "kind": "disconnect"}


def refused_as(bad: Any, code: str) -> str:
    """The code a bad value is refused with: NUL anywhere in a request is refused as
    such first (``nul_character``), before any field is looked at."""
    return "nul_character" if isinstance(bad, str) and ("\x00" in bad or "%00" in bad) else code


async def raw_request(port: int, method: str, target: str, body: Any = None) -> httpx.Response:
    """One HTTP/1.1 request with exactly this request-target, answered as httpx would."""
    payload = b"" if body is None else json.dumps(body).encode()
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode() + payload)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head_bytes, _, content = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = [tuple(line.split(": ", 1)) for line in lines[1:]]
    return httpx.Response(status, headers=headers, content=content)


def tree(root: Path) -> set[str]:
    """Every file and directory under ``root`` (SQLite's own journal files left out)."""
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if not p.name.endswith(("-journal", "-wal", "-shm"))
    }


class Unchanged:
    """Asserts on exit that the tenants and the directory tree are as they were."""

    def __init__(self, server: LiveServer, root: Path) -> None:
        self.server, self.root = server, root

    async def tenants(self) -> Any:
        return (await self.server.http.get("/tenants")).json()["tenants"]

    async def __aenter__(self) -> Unchanged:
        self.before = (await self.tenants(), tree(self.root))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if exc[0] is None:
            assert (await self.tenants(), tree(self.root)) == self.before


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "deploy"


@pytest.fixture
async def live(root: Path) -> AsyncIterator[LiveServer]:
    settings = make_settings(
        root, data_dir=root / "srv" / "data", auth_dir=root / "srv" / "auth", media_max_bytes=65536
    )
    async with LiveServer(settings) as server:
        await server.create_paired("alpha")
        yield server


@pytest.fixture
def watch(live: LiveServer, tmp_path: Path) -> Iterator[Unchanged]:
    yield Unchanged(live, tmp_path)


async def test_bad_tenant_ids_in_the_path_change_nothing(
    live: LiveServer, watch: Unchanged
) -> None:
    async with watch:
        for (method, template), bad in [(r, b) for r in PATH_ROUTES for b in BAD_PATH_IDS]:
            response = await raw_request(
                live.settings.port, method, template.format(bad), PATH_BODY
            )
            assert_error(response, 400, refused_as(bad, "invalid_tenant_id"))
        for (method, template), bad in [(r, b) for r in PATH_ROUTES for b in NO_ROUTE_PATH_IDS]:
            response = await raw_request(
                live.settings.port, method, template.format(bad), PATH_BODY
            )
            assert_error(response, 400, "invalid_tenant_id")


async def test_bad_tenant_ids_in_bodies_and_queries_change_nothing(
    live: LiveServer, watch: Unchanged
) -> None:
    http = live.http
    async with watch:
        for bad in BAD_BODY_IDS:
            for key in ("tenantId", "tenant_id", "empresa_id"):
                answer = await http.post("/tenants", json={key: bad})
                assert_error(answer, 400, refused_as(bad, "invalid_tenant_id"))
            message = {"from": PHONE, "tenant_id": bad, "text": "x"}
            assert_error(
                await http.post("/sandbox/messages", json=message), 400, "invalid_tenant_id"
            )
            relay = {"phone": PHONE, "message": "x", "empresa_id": bad}
            answer = await http.post("/webhook", json=relay)
            assert_error(answer, 400, refused_as(bad, "invalid_tenant_id"))
            if isinstance(bad, str) and bad:
                for path in ("/deliveries", "/deliveries/retry-dead"):
                    method = "GET" if path == "/deliveries" else "POST"
                    answer = await http.request(method, path, params={"tenant_id": bad})
                    assert_error(answer)
        for wrong_type in (True, 1.5, None, [], {}, ["alpha"]):
            assert_error(await http.post("/tenants", json={"tenantId": wrong_type}), 422)


async def test_bad_json_and_wrong_types(live: LiveServer, watch: Unchanged) -> None:
    http = live.http
    json_header = {"Content-Type": "application/json"}
    async with watch:
        for raw in (b"{bad", b'{"tenantId": "x",}', b"\xff\xfe{", b"[" * 200_000, b'{"a":'):
            answer = await http.post("/tenants", content=raw, headers=json_header)
            assert_error(answer, 400, "invalid_json")
            answer = await http.post("/send/alpha", content=raw, headers=json_header)
            assert_error(answer, 400, "invalid_json")
        wrong = [
            ("/tenants", None),
            ("/tenants", []),
            ("/tenants", "alpha"),
            ("/tenants", {}),
            ("/send/alpha", {"phone": True, "message": "x"}),
            ("/send/alpha", {"phone": [PHONE], "message": "x"}),
            ("/send/alpha", {"phone": PHONE, "message": {"text": "x"}}),
            ("/send/alpha", {"phone": PHONE, "image": "not-an-object"}),
            ("/tenants/alpha/check", {"phones": PHONE}),
            ("/tenants/alpha/check", {"phones": []}),
            ("/tenants/alpha/check", {"phones": [PHONE] * 101}),
            ("/clear-all", {"purge_sessions": "yes"}),
            ("/sandbox/tenants/alpha/fault", {"kind": "explode"}),
        ]
        for path, body in wrong:
            assert_error(await http.post(path, json=body), 422, "validation_error")
        answer = await http.put("/tenants/alpha/webhook", json={"url": 5})
        assert_error(answer, 422, "validation_error")
        typo = {"url": "http://127.0.0.1:9/h", "secert": "s3cret-value"}
        answer = await http.put("/tenants/alpha/webhook", json=typo)
        assert_error(answer, 422, "validation_error")
        assert "secert" in answer.json()["error"]["message"]
        answer = await http.get("/tenants/alpha/messages", params={"limit": "lots"})
        assert_error(answer, 422, "validation_error")


def _big(size: int) -> bytes:
    return b'{"tenantId": "big", "pad": "' + b"a" * size + b'"}'


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 65536):
        yield data[start : start + 65536]


async def test_two_mib_body_is_413_with_or_without_content_length(
    live: LiveServer, watch: Unchanged
) -> None:
    http = live.http
    body = _big(2 * 1024 * 1024)
    json_header = {"Content-Type": "application/json"}
    async with watch:
        for path in ("/tenants", "/tenants/alpha/webhook", "/send/alpha", "/tenants/alpha/send"):
            method = "PUT" if path.endswith("/webhook") else "POST"
            sized = await http.request(method, path, content=body, headers=json_header)
            assert_error(sized, 413, "payload_too_large")
            chunked = await http.request(method, path, content=_chunks(body), headers=json_header)
            assert_error(chunked, 413, "payload_too_large")
        inbox = await http.get(f"/sandbox/phones/{PHONE}/messages")
        assert inbox.json()["messages"] == []


async def test_json_just_under_the_limit_is_read(live: LiveServer) -> None:
    """The cap is 1 MiB: a body just under it gets to validation, not 413."""
    answer = await live.http.post(
        "/clear-all", content=_big(1024 * 1024 - 100), headers={"Content-Type": "application/json"}
    )
    assert_error(answer, 422, "validation_error")  # read, and its fields are not /clear-all's
    assert "pad" in answer.json()["error"]["message"]


def _write_all_then_read(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    """What urllib does (and requests): the whole body goes out before the answer is
    read, on a connection it asks to close."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_a_client_that_writes_a_big_body_first_gets_the_413_not_a_reset(
    tmp_path: Path,
) -> None:
    """Past the socket buffers, a server that answers without reading the body resets
    the connection under the writer: it must read (and drop) the body to be heard."""
    with ServerProcess(tmp_path / "srv") as server:
        # (a send's cap is higher: media, base64-encoded)
        for path, mib in [("/tenants", 8), ("/tenants", 60), ("/send/alpha", 30), ("/send/a", 60)]:
            status, answer = _write_all_then_read(server.port, path, _big(mib * 1024 * 1024))
            assert status == 413 and json.loads(answer)["error"]["code"] == "payload_too_large"


async def test_unknown_fields_are_422_except_in_the_seeds_bodies(
    live: LiveServer, watch: Unchanged
) -> None:
    """A misspelt field is refused (it would be silently ignored); what Flask sends to
    the seed's /send and /webhook may carry extras, as the old server allowed."""
    http = live.http
    async with watch:
        typos = [
            ("POST", "/tenants", {"tenantId": "x", "enigne": "cloud"}, "enigne"),
            ("POST", "/tenants/alpha/check", {"phones": [PHONE], "phnoes": []}, "phnoes"),
            ("POST", "/tenants/alpha/pair-code", {"phone": PHONE, "extra": 1}, "extra"),
            ("POST", "/clear-all", {"purge_session": True}, "purge_session"),
            ("POST", "/sandbox/phones", {"phone": PHONE, "on_whatsap": False}, "on_whatsap"),
            (
                "POST",
                "/send/alpha",
                {"phone": PHONE, "image": {"url": "x", "captoin": "c"}},
                "captoin",
            ),
        ]
        for method, path, body, field in typos:
            answer = await http.request(method, path, json=body)
            assert_error(answer, 422, "validation_error")
            assert field in answer.json()["error"]["message"], answer.text
    sent = await http.post("/send/alpha", json={"phone": PHONE, "message": "oi", "origem": "flask"})
    assert sent.status_code == 200, sent.text
    relay = {"phone": PHONE, "message": "x", "empresa_id": "alpha", "origem": "flask"}
    assert (await http.post("/webhook", json=relay)).status_code == 202


async def test_invalid_phone_numbers_are_400(live: LiveServer, watch: Unchanged) -> None:
    http = live.http
    bad_phones: list[Any] = [
        "abc",
        "123",
        "",
        "+",
        "55 11 9",
        "5511999999999999999",
        "٥٥١١٩٩٩٩٩٩٩٩٩",
        "5511999999999; DROP TABLE tenants",
        "../../5511999999999",
        -5511999999999,
    ]
    async with watch:
        for phone in bad_phones:
            for path, body in [
                ("/send/alpha", {"phone": phone, "message": "x"}),
                ("/tenants/alpha/send", {"phone": phone, "message": "x"}),
                ("/tenants/alpha/check", {"phones": [PHONE, phone]}),
                ("/tenants/alpha/pair-code", {"phone": phone}),
                ("/sandbox/scan", {"qr": "2@x", "phone": phone}),
                ("/sandbox/messages", {"from": phone, "tenant_id": "alpha", "text": "x"}),
                ("/webhook", {"phone": phone, "message": "x"}),
            ]:
                assert_error(await http.post(path, json=body), 400, "invalid_phone")
        for phone in ("abc", "123", "%2e%2e", "a%00"):
            answer = await raw_request(
                live.settings.port, "GET", f"/sandbox/phones/{phone}/messages"
            )
            assert_error(answer, 400, refused_as(phone, "invalid_phone"))
        inbox = await http.get(f"/sandbox/phones/{PHONE}/messages")
        assert inbox.json()["messages"] == []


BAD_URLS = [
    "ftp://example.com/hook",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "gopher://127.0.0.1:25/",
    "data:text/plain,hi",
    "http://",
    "http:///path",
    "//example.com/hook",
    "example.com/hook",
    "not a url",
    "",
]


async def test_webhook_urls_must_be_http(live: LiveServer, watch: Unchanged) -> None:
    http = live.http
    async with watch:
        for url in BAD_URLS:
            answer = await http.put("/tenants/alpha/webhook", json={"url": url})
            assert_error(answer, 400, "invalid_url")
        current = (await http.get("/tenants/alpha/webhook")).json()["webhook"]
        assert current["default"] is True


async def test_webhook_allow_list(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, webhook_allowed_hosts="hooks.example.com, 127.0.0.1")
    async with LiveServer(settings) as server:
        http = server.http
        assert (await http.post("/tenants", json={"tenantId": "shop"})).status_code == 201
        for url in (
            "https://evil.example.com/hook",
            "https://hooks.example.com.evil.com/hook",
            "https://hooks.example.com@evil.com/hook",
            "https://evil.com/?u=https://hooks.example.com/",
            "https://evil.com#@hooks.example.com",
            "http://localhost:8080/admin",
        ):
            answer = await http.put("/tenants/shop/webhook", json={"url": url})
            assert_error(answer, 400, "webhook_host_not_allowed")
        metadata = "http://169.254.169.254/latest/meta-data/"  # never, listed or not
        answer = await http.put("/tenants/shop/webhook", json={"url": metadata})
        assert_error(answer, 400, "webhook_url_not_allowed")
        for url in (
            "https://hooks.example.com/zap",
            "https://HOOKS.example.com/x",
            "http://127.0.0.1:9/h",
        ):
            answer = await http.put("/tenants/shop/webhook", json={"url": url})
            assert answer.status_code == 200, answer.text


#: the answers that show tenant alpha's webhook, or what was queued for it
WEBHOOK_SHOWN = [
    "/tenants/alpha/webhook",
    "/tenants",
    "/tenants/alpha/status",
    "/status",
    "/deliveries",
]


async def _webhook_shown(http: httpx.AsyncClient) -> list[httpx.Response]:
    return [await http.get(path) for path in WEBHOOK_SHOWN]


async def test_a_webhook_secret_is_never_echoed(live: LiveServer) -> None:
    secret = "very-secret-webhook-key-9876"
    http = live.http
    put = await http.put(
        "/tenants/alpha/webhook", json={"url": "http://127.0.0.1:9/h", "secret": secret}
    )
    assert put.status_code == 200
    assert put.json()["webhook"]["secret_set"] is True
    for answer in [put, *await _webhook_shown(http)]:
        assert secret not in answer.text and secret[:-4] not in answer.text


async def test_credentials_inside_a_webhook_url_are_never_echoed(live: LiveServer) -> None:
    url = "http://hook-user:hook-pass-123@127.0.0.1:9/h?token=tok-456&v=1"
    http = live.http
    put = await http.put(
        "/tenants/alpha/webhook", json={"url": url, "events": ["message", "status"]}
    )
    assert put.status_code == 200
    assert put.json()["webhook"]["url"] == "http://***@127.0.0.1:9/h?token=***&v=***"
    await http.post("/tenants/alpha/stop")  # a status event: a delivery to that URL
    for answer in [put, *await _webhook_shown(http)]:
        assert "hook-pass-123" not in answer.text and "tok-456" not in answer.text, answer.text
    assert any(
        d["url"].startswith("http://***@")
        for d in (await http.get("/deliveries")).json()["deliveries"]
    )


@pytest.mark.parametrize(
    ("filename", "mimetype", "served_as"),
    [
        ("relatório.pdf", "application/pdf", "application/pdf"),
        ('a"b\r\nSet-Cookie: x=1.pdf', "application/pdf", "application/pdf"),
        ("😀.png", "image/png", "image/png"),
        ("voz.ogg", "audio/ogg; codecs=opus", "audio/ogg; codecs=opus"),
        ("page.html", "text/html\r\nX-Evil: 1", "application/octet-stream"),
        (None, "image/jpeg", "image/jpeg"),
    ],
)
async def test_media_from_a_phone_is_always_a_safe_download(
    live: LiveServer, filename: str | None, mimetype: str, served_as: str
) -> None:
    """Whatever name and type a phone gives its file, downloading it works and cannot
    inject a header or be rendered as a page."""
    document = {"base64": "JVBERi0x", "filename": filename, "mimetype": mimetype}
    sent = await live.http.post(
        "/sandbox/messages",
        json={"from": PHONE, "tenant_id": "alpha", "media": document, "media_kind": "document"},
    )
    assert sent.status_code == 201, sent.text
    url = f"/tenants/alpha/messages/{sent.json()['message_id']}/media"

    async def fetched() -> httpx.Response | None:
        answer = await live.http.get(url)
        return answer if answer.status_code == 200 else None

    media = await wait_for(fetched, what="the media")
    assert media.content == b"%PDF-1"
    assert media.headers["content-type"].startswith(served_as)
    assert media.headers["content-disposition"].startswith("attachment")
    assert media.headers["x-content-type-options"] == "nosniff"
    assert "set-cookie" not in media.headers and "x-evil" not in media.headers
