"""ASGI middleware in front of every route: API key, content type and request size.

Pure ASGI (not BaseHTTPMiddleware) so streaming responses pass through untouched. The body is
read here up to the limit and replayed to the app: an oversized body is refused before any JSON
parsing or model work.
"""
from __future__ import annotations

import hmac
import json

# Reachable without the API key: the health probe, and the studio page with its assets (plain files with
# no secrets and no model access; the page sends the key the user gives it with its API calls).
OPEN_PATHS = ("/health", "/")
OPEN_PREFIXES = ("/static/",)


async def _send_error(send, status: int, message: str, code: str, type_: str = "invalid_request_error") -> None:
    body = json.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app, api_key: str | None, max_body: int) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.max_body = max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.api_key and path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES):
            auth = headers.get("authorization", "")
            given = auth[7:].encode() if auth[:7].lower() == "bearer " else b""
            if not hmac.compare_digest(given, self.api_key):  # constant time, case-sensitive
                return await _send_error(send, 401, "invalid or missing API key: send 'Authorization: Bearer KEY'",
                                         "invalid_api_key", "authentication_error")
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return await _send_error(send, 415, f"content-type must be application/json, got {ctype or 'none'!r}",
                                     "unsupported_media_type")
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            return await _send_error(send, 413, f"request body of {declared} bytes exceeds the limit of "
                                     f"{self.max_body} bytes", "request_too_large")
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return None
            size += len(msg.get("body", b""))
            if size > self.max_body:
                return await _send_error(send, 413, f"request body exceeds the limit of {self.max_body} bytes",
                                         "request_too_large")
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: disconnect notifications pass through

        return await self.app(scope, replay, send)
